"""Overload and refusals over the Unix socket: 10x saturation at a 20 ms budget, how fast a
429 comes back (1-slot queue; one caller during a flood), 64 KB bodies at that budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .loadgen import oha
from .log import log
from .metrics import metric_delta
from .procfs import RssSampler, cpu_ticks, proc_status, reset_peak
from .procs import Normd
from .server_cost import record_server_cpu
from .workload import DEADLINE_20MS, payload_lines

REJECTION_REASONS = ("overloaded", "deadline", "memory_pressure")


def measure_overload(ctx, sat_rps: float) -> dict:
    lines4k = payload_lines(ctx, "4k")
    res: dict = {"overload": ten_times_saturation(ctx, sat_rps, lines4k)}
    res.update(refusal_latency(ctx, lines4k))
    res["overload64k"] = large_bodies(ctx)
    return res


def ten_times_saturation(ctx, sat_rps: float, lines4k: Path) -> dict:
    """Open loop at 10 x `sat_rps`, default queue: goodput, statuses, normd's rejection
    counters, peak RSS and an RSS timeline."""
    P = ctx.p
    rate = 10 * sat_rps if not ctx.smoke else P["smoke_rate"] * 10
    n = Normd(ctx, name="overload")  # default queue: 16 x workers
    with n:
        target = ("unix", n.sock)
        log(f"b: overload, open loop at {rate:.0f}/s (10x saturation) for {P['overload']}s")
        oha(ctx, "warmup-overload", target, lines4k, P["warmup"], 32, keep_raw=False, db=False)
        m0 = n.metrics()
        reset_peak(n.pid)
        c0 = cpu_ticks(n.pid)
        with RssSampler({"normd": n.pid}) as rs:
            r = oha(ctx, "overload-4k-unix", target, lines4k, P["overload"], P["overload_conns"],
                    rate=rate, headers=DEADLINE_20MS)
        m1 = n.metrics()
        record_server_cpu(r, n.pid, c0)
        r["peak_rss"] = max(proc_status(n.pid).get("VmHWM", 0), rs.peak["normd"])
        r["rss_timeline"] = [(round(t, 2), row["normd"]) for t, row in rs.timeline[::4]]
        r["requested_rate"] = rate
        r["rejections"] = {reason: metric_delta(m0, m1, "normd_rejections_total", reason=reason)
                           for reason in REJECTION_REASONS}
        r["cmd"] = n.cmdline()
    return r


def refusal_latency(ctx, lines4k: Path) -> dict:
    """With a 1-slot queue: the `GET /livez` floor on one connection, the 429s of a
    4-connection closed loop, and one caller during such a flood."""
    P = ctx.p
    res: dict = {}
    n = Normd(ctx, "--max-queue", "1", name="tinyqueue")
    with n:
        target = ("unix", n.sock)
        log("b: floor: GET /livez, 1 connection (what any answer costs over the socket)")
        res["floor"] = oha(ctx, "livez-floor-unix", target, lines4k, P["reject"], 1,
                           url_path="/livez", method="GET")
        log("b: 429 latency with a 1-slot queue (closed loop, 4 connections)")
        r = oha(ctx, "reject-4k-unix", target, lines4k, P["reject"], 4, headers=DEADLINE_20MS)
        r["cmd"] = n.cmdline()
        res["reject"] = r
        res["single"] = single_caller(ctx, target, lines4k)
    return res


def single_caller(ctx, target, lines4k: Path) -> dict:
    """How long one caller waits for its "no" while normd is flooded, next to how long any
    answer takes at that moment: one extra connection sends at a fixed rate, first
    `GET /livez` to the idle server, then, during a 4-connection flood of the 1-slot
    queue, `POST /norm` (answered 429 whenever the queue is full) and `GET /livez` again.
    The closed-loop flood measures refusals back to back on busy cores; a caller that
    sends now and then also pays for waking both sides, which on a VM costs more than
    the refusal itself."""
    P = ctx.p
    rate = P["probe_rate"]
    res = {"rate": rate}
    log(f"b: one caller at {rate}/s: GET /livez, idle server")
    res["idle_livez"] = oha(ctx, "single-livez-idle", target, lines4k, P["reject"], 1, rate=rate,
                            url_path="/livez", method="GET")
    flood_seconds = 2 * P["reject"] + 2
    flood: dict = {}

    def run_flood() -> None:
        try:
            flood["r"] = oha(ctx, "single-flood", target, lines4k, flood_seconds, 4,
                             headers=DEADLINE_20MS, keep_raw=False, db=False)
        except Exception as e:  # reported below; the probes' figures stand on their own
            flood["error"] = str(e)

    t = threading.Thread(target=run_flood, daemon=True)
    t.start()
    time.sleep(1)
    log(f"b: one caller at {rate}/s during the 1-slot flood: POST /norm, then GET /livez")
    res["busy_norm"] = oha(ctx, "single-norm-flood", target, lines4k, P["reject"], 1, rate=rate,
                           headers=DEADLINE_20MS)
    res["busy_livez"] = oha(ctx, "single-livez-flood", target, lines4k, P["reject"], 1, rate=rate,
                            url_path="/livez", method="GET")
    t.join(flood_seconds + 90)
    res["flood_status"] = flood["r"]["status"] if "r" in flood else flood.get("error", "unfinished")
    return res


def large_bodies(ctx) -> dict:
    """The 64 KB set, closed loop, 32 connections, at the 20 ms budget and default queue."""
    n = Normd(ctx, name="overload64k")  # defaults again: queue 16, 20 ms budget
    with n:
        log("b: 64 KB bodies, closed loop, 32 connections, X-Deadline-Ms 20")
        lines64k = payload_lines(ctx, "64k")
        r = oha(ctx, "overload-64k-unix", ("unix", n.sock), lines64k, ctx.p["reject"], 32,
                headers=DEADLINE_20MS)
        r["cmd"] = n.cmdline()
    return r
