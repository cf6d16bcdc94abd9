"""What normd itself spent in a step: its CPU in cores and per call (from /proc), and the
latency a server that never stalls would show on the step's own send schedule."""

from __future__ import annotations

from .loadgen import percentiles
from .procfs import cpu_ticks
from .settings import CLK_TCK


def record_server_cpu(r: dict, pid: int, ticks_before: int) -> None:
    """normd's CPU over an oha step: in cores, and per call answered. Below saturation
    every call also pays the threads' sleep and wake-up, which a saturated server
    amortizes, so the per-call figure shows what a call costs at that rate."""
    cpu_s = (cpu_ticks(pid) - ticks_before) / CLK_TCK
    r["server_cpu_util"] = cpu_s / r["seconds"]
    r["server_cpu_s_per_call"] = cpu_s / r["requests"] if r["requests"] else None


def record_ideal_server(r: dict) -> None:
    """What the step's own schedule would cost a server that never stalls: one FIFO
    server, busy for exactly normd's measured CPU per call, fed oha's scheduled send
    times. The gap between this and the measured percentiles is this machine's
    scheduling and stalls; this figure itself is the generator's pacing plus normd's
    CPU, the part normd's code can move."""
    sched, service = r.get("_sched"), r.get("server_cpu_s_per_call")
    if not sched or not service:
        return
    free_at, lat = 0.0, []
    for t in sched:
        free_at = max(t, free_at) + service
        lat.append(free_at - t)
    lat.sort()
    r["ideal"] = percentiles(lat)
