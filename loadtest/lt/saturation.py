"""Capacity: one closed-loop step (32 keep-alive connections, after a warm-up) against a
running normd, with normd's CPU per call and peak RSS."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from .loadgen import oha
from .log import log
from .procfs import RssSampler, cpu_ticks, proc_status, reset_peak
from .server_cost import record_server_cpu
from .workload import DEADLINE_1S

CONNS = 32


def closed_loop(ctx, n, target, transport: str, size: str, lines: Path,
                sample_rss: bool = False) -> dict:
    """Saturation of normd `n` over `target` with the `size` set. The peak RSS is VmHWM
    (reset before the step); with `sample_rss`, VmRSS sampled during the step stands in
    when VmHWM is unavailable."""
    P = ctx.p
    log(f"a: saturation {size} {transport}")
    oha(ctx, f"warmup-{size}-{transport}", target, lines, P["warmup"], CONNS, headers=DEADLINE_1S,
        keep_raw=False, db=False)
    reset_peak(n.pid)
    c0 = cpu_ticks(n.pid)
    sampler = RssSampler({"normd": n.pid}) if sample_rss else None
    with sampler or nullcontext():
        r = oha(ctx, f"sat-{size}-{transport}", target, lines, P["sat"], CONNS, headers=DEADLINE_1S)
    record_server_cpu(r, n.pid, c0)
    hwm = proc_status(n.pid).get("VmHWM")
    r["peak_rss"] = (hwm or sampler.peak["normd"]) if sampler else hwm
    return r
