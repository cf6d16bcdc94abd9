"""Latency at fixed rates: open loop at 25/50/75 % of a transport's saturation (coordinated-
omission corrected), normd's histograms around each step, and the GET /livez floor."""

from __future__ import annotations

from pathlib import Path

from .loadgen import oha
from .log import log
from .metrics import share_above
from .procfs import cpu_ticks, proc_status, reset_peak
from .server_cost import record_ideal_server, record_server_cpu

FRACTIONS = (0.25, 0.5, 0.75)
CONNS = 32


def offered_rate(ctx, frac: float, sat_rps: float) -> float:
    """`frac` of saturation; in a smoke run a fixed small rate instead."""
    return max(1.0, frac * sat_rps) if not ctx.smoke else ctx.p["smoke_rate"] * frac * 4


def fixed_rates(ctx, n, target, transport: str, sat_rps: float, lines: Path):
    """One open-loop step per fraction of `sat_rps` against normd `n`. Returns the rows and,
    over the Unix socket, the /livez floor at the 50 % rate (else None)."""
    P = ctx.p
    rows, floor = [], None
    for frac in FRACTIONS:
        rate = offered_rate(ctx, frac, sat_rps)
        log(f"a: open loop {transport} {frac:.0%} of saturation = {rate:.0f}/s")
        reset_peak(n.pid)
        m0 = n.metrics()
        c0 = cpu_ticks(n.pid)
        rr = oha(ctx, f"rate{int(frac * 100)}-4k-{transport}", target, lines, P["rate"], CONNS, rate=rate)
        record_server_cpu(rr, n.pid, c0)
        record_ideal_server(rr)
        m1 = n.metrics()
        rr["server_over_1ms"] = share_above(m0, m1, "normd_request_duration_seconds", "0.001", route="norm")
        rr["queue_wait_over_1ms"] = share_above(m0, m1, "normd_queue_wait_seconds", "0.001")
        rr["frac"] = frac
        rr["peak_rss"] = proc_status(n.pid).get("VmHWM")
        rows.append(rr)
        if frac == 0.5 and transport == "unix":
            # The same schedule against GET /livez (no body, no pipeline): what the
            # generator's pacing and this machine's scheduling alone add to the tail.
            log(f"a: open loop unix GET /livez at {rate:.0f}/s (floor of the 50% row)")
            floor = oha(ctx, "rate50-livez-unix", target, lines, P["rate"], CONNS,
                        rate=rate, url_path="/livez", method="GET")
    return rows, floor
