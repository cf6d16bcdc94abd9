"""normd by itself on the 4 KB set: cold start, idle RSS, then per transport saturation and
fixed-rate latency on one server, and the 1 KB and 64 KB sets at saturation (socket)."""

from __future__ import annotations

import time

from .latency import fixed_rates
from .log import log
from .procfs import proc_status
from .procs import Normd
from .saturation import closed_loop
from .workload import payload_lines


def measure_normd_alone(ctx) -> dict:
    P = ctx.p
    res: dict = {"cold_start_ms": [], "sat": {}, "rates": {}, "sizes": {}}
    lines4k = payload_lines(ctx, "4k")
    res["cold_start_ms"] = cold_starts_ms(ctx)
    res["idle_rss"], res["idle_cmd"] = idle_rss(ctx)
    for transport in ("unix", "tcp"):
        # A queue deep enough for every connection, so the closed loop measures the
        # server's capacity, not its admission policy (the overload steps do that).
        n = Normd(ctx, "--max-queue", "64", name=f"sat-{transport}")
        with n:
            target = ("unix", n.sock) if transport == "unix" else ("tcp", n.port)
            r = closed_loop(ctx, n, target, transport, "4k", lines4k, sample_rss=True)
            r["cmd"] = n.cmdline()
            res["sat"][transport] = r
            res["rates"][transport], floor = fixed_rates(ctx, n, target, transport, r["rps_200"], lines4k)
            if floor:
                res["rate_floor"] = floor
            if transport == "unix":
                for size in ("1k", "64k"):
                    res["sizes"][size] = closed_loop(ctx, n, target, transport, size, payload_lines(ctx, size))
                time.sleep(P["idle_wait"])
                res["rss_after_load"] = proc_status(n.pid)["VmRSS"]
    return res


def cold_starts_ms(ctx) -> list[float]:
    """Spawn → first 200 from GET /readyz, once per fresh normd."""
    log(f"a: cold start x{ctx.p['starts']}")
    out = []
    for i in range(ctx.p["starts"]):
        n = Normd(ctx, name=f"cold{i}")
        try:
            out.append(n.start() * 1000)
        finally:
            n.stop()
    return out


def idle_rss(ctx) -> tuple[int, str]:
    """VmRSS of a fresh normd after the idle wait, and its command line."""
    log("a: idle RSS")
    with Normd(ctx, name="idle") as n:
        time.sleep(ctx.p["idle_wait"])
        return proc_status(n.pid)["VmRSS"], n.cmdline()
