"""The demo app (loadtest/app) at ROLLOUT=0 (job in the app) and ROLLOUT=100 (job in normd)
under the same open-loop load, in interleaved runs summarised by their medians."""

from __future__ import annotations

import json
import statistics

from .httpclient import http
from .loadgen import oha
from .log import log
from .procfs import RssSampler, cpu_ticks, proc_status, reset_peak
from .procs import DemoApp, Normd
from .settings import CLK_TCK
from .workload import payload_lines

ROLLOUTS = (0, 100)


def measure_demo_app(ctx) -> dict:
    """Each workload at ROLLOUT=0 and 100: the 4 KB set at a rate where the in-app job is
    cheap, and the 64 KB set, where it is not (which is where a GC'd app needs the
    sidecar)."""
    P = ctx.p
    workloads = []
    for size, rate in (("4k", P["app_rate"]), ("64k", P["app_rate_64k"])):
        # Interleaved repetitions (0, 100, 0, 100, …): a p99 of one 20 s window is decided
        # by a few dozen calls, which one stall of this shared machine can move; the
        # table shows each figure's median over a rollout's runs, and the report lists every run.
        reps = [{rollout: one_run(ctx, size, rate, i, rollout) for rollout in ROLLOUTS}
                for i in range(1, P["app_repeats"] + 1)]
        runs = {rollout: median_record([r[rollout] for r in reps]) for rollout in ROLLOUTS}
        workloads.append({"set": size, "rate": rate, "runs": runs, "reps": reps})
    return {"workloads": workloads}


def compared_workloads(c: dict | None):
    """(workload, ROLLOUT=0 record, ROLLOUT=100 record) for each workload that has both."""
    for wl in (c or {}).get("workloads", []):
        if len(wl["runs"]) == 2:
            yield wl, wl["runs"][0], wl["runs"][100]


def median_record(records: list):
    """One record shaped like each of `records`, with the median of every number
    (element by element in equal-length lists); other values from the first."""
    first = records[0]
    if isinstance(first, bool) or first is None:
        return first
    if isinstance(first, (int, float)):
        nums = [r for r in records if isinstance(r, (int, float))]
        if len(nums) != len(records):
            return first
        m = statistics.median(nums)
        return round(m) if all(isinstance(r, int) for r in nums) else m
    if isinstance(first, dict):
        return {k: median_record([r[k] for r in records if isinstance(r, dict) and k in r])
                for k in first}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == len(first) for r in records):
        return [median_record(list(col)) for col in zip(*records)]
    return first


def one_run(ctx, size: str, rate: int, repetition: int, rollout: int) -> dict:
    """A fresh normd and app at `rollout`: warm-up, reset the app's /stats, then the
    measured open loop on POST /orders, with RSS and CPU of both processes."""
    P = ctx.p
    lines = payload_lines(ctx, size)
    tag = f"app{size}-{rollout}" + (f"-r{repetition}" if repetition > 1 else "")
    with Normd(ctx, name=f"{tag}-normd") as n, DemoApp(ctx, n.sock, rollout, tag) as app:
        target = app.target
        log(f"c: {size} ROLLOUT={rollout} (run {repetition}/{P['app_repeats']}): "
            f"warm-up {P['app_warmup']}s at {rate}/s")
        oha(ctx, f"{tag}-warmup", target, lines, P["app_warmup"], 32,
            rate=rate, cpu=ctx.gen_cpu_app, url_path="/orders", keep_raw=False, db=False)
        http(target, "POST", "/stats/reset")
        reset_peak(n.pid)
        reset_peak(app.pid)
        a0, n0 = cpu_ticks(app.pid), cpu_ticks(n.pid)
        log(f"c: {size} ROLLOUT={rollout} (run {repetition}/{P['app_repeats']}): "
            f"measure {P['app']}s at {rate}/s")
        with RssSampler({"app": app.pid, "normd": n.pid}) as rs:
            r = oha(ctx, tag, target, lines, P["app"], 32,
                    rate=rate, cpu=ctx.gen_cpu_app, url_path="/orders")
        a1, n1 = cpu_ticks(app.pid), cpu_ticks(n.pid)
        stats = json.loads(http(target, "GET", "/stats")[1])
        (ctx.raw / f"{tag}-stats.json").write_text(json.dumps(stats, indent=1))
        served = stats["requests"]["total"]
        r.update({
            "stats": stats,
            "app_rss": proc_status(app.pid)["VmRSS"],
            "app_peak_rss": max(rs.peak["app"], proc_status(app.pid).get("VmHWM", 0)),
            "normd_rss": proc_status(n.pid)["VmRSS"],
            "normd_peak_rss": max(rs.peak["normd"], proc_status(n.pid).get("VmHWM", 0)),
            "app_cpu_s": (a1 - a0) / CLK_TCK, "normd_cpu_s": (n1 - n0) / CLK_TCK,
            "served": served,
        })
        r["cpu_us_per_req"] = ((r["app_cpu_s"] + r["normd_cpu_s"]) / served * 1e6) if served else None
        return r
