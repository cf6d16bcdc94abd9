"""The child processes a load-test script starts (callgrind.py, cpu_split.py, anchors.py,
jvm.py): registered in CHILDREN so they can be ended by pid (never by name), pinned to a
core, stopped, and ended on SIGTERM / SIGINT."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Callable

CHILDREN: list[subprocess.Popen] = []


def pin(cpu: int, cmd: list[str]) -> list[str]:
    """cmd under `taskset -c cpu` when the machine has 2 CPUs or more and taskset is installed."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + cmd
    return cmd


def _end(p: subprocess.Popen, how: Callable[[subprocess.Popen], None], timeout: float) -> None:
    """If p still runs: how(p) (kill or terminate), then up to `timeout` s for it to exit; errors ignored."""
    if p.poll() is None:
        try:
            how(p)
            p.wait(timeout=timeout)
        except Exception:
            pass


def kill_children() -> None:
    """Ends every process in CHILDREN that still runs, by pid: SIGKILL, up to 10 s to reap it."""
    for p in CHILDREN:
        _end(p, subprocess.Popen.kill, 10)


def terminate_children() -> None:
    """Ends every process in CHILDREN that still runs, by pid: SIGTERM first (so a child
    script can stop what it started), then SIGKILL to its process group (start_new_session:
    pgid = pid) if it is still there after 20 s."""
    for p in CHILDREN:
        _end(p, subprocess.Popen.terminate, 20)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(timeout=10)
            except Exception:
                pass


def stop(p: subprocess.Popen, timeout: float = 20, kill_wait: float = 10) -> bool:
    """SIGTERM, up to `timeout` s for p to exit, then SIGKILL and up to `kill_wait` s; drops p
    from CHILDREN. True when p exited without the SIGKILL."""
    exited = True
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=kill_wait)
            exited = False
    if p in CHILDREN:
        CHILDREN.remove(p)
    return exited


def exit_on_signals(cleanup: Callable[[], None]) -> None:
    """On SIGTERM or SIGINT: cleanup(), then exit with status 128 + the signal's number."""
    def on_signal(sig, _frame):
        cleanup()
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
