"""/proc readings: a process's RSS and peak RSS (and resetting the peak), its CPU ticks,
the machine's busy ticks, and a background RSS sampler."""

from __future__ import annotations

import threading
import time


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/<pid>/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak(pid: int) -> bool:
    """Resets VmHWM (Linux: write 5 to clear_refs) so a phase's peak RSS is its own."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks() -> int:
    """Busy ticks of the whole machine so far (/proc/stat: user nice system irq softirq steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


class RssSampler:
    """Samples VmRSS of some pids every `period` s; keeps the max and a timeline."""

    def __init__(self, pids: dict[str, int], period: float = 0.05):
        self.pids, self.period = pids, period
        self.peak = {k: 0 for k in pids}
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            row = {}
            for k, pid in self.pids.items():
                rss = proc_status(pid).get("VmRSS", 0)
                row[k] = rss
                self.peak[k] = max(self.peak[k], rss)
            self.timeline.append((time.monotonic() - t0, row))
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
