"""The load generator: runs oha for one step, bounded in time, and summarises it: statuses,
rates, generator and machine CPU, and exact percentiles from oha's per-request records."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

from .procfs import machine_busy_ticks
from .procs import pinned, spawn
from .settings import CLK_TCK, GEN_CPU, URL_PATH

QS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
# The points of each step's latency curve (kept for the plots, not in results.json).
CURVE_QS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999]


def pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def percentiles(sorted_vals: list[float]) -> dict:
    return {q: pct(sorted_vals, f) for q, f in QS.items()}


def oha(ctx, name: str, target, body_lines: Path, seconds: float, conns: int,
        rate: float | None = None, headers: tuple[str, ...] = (), cpu: str = GEN_CPU,
        url_path: str = URL_PATH, keep_raw: bool = True, db: bool = True,
        method: str = "POST") -> dict:
    """Runs oha once (bounded by -z and a hard timeout). Returns a summary with exact
    per-status percentiles from oha's per-request sqlite output.

    Latency: with a rate (-q) it is coordinated-omission corrected (measured from the
    request's scheduled send time: --latency-correction); `lat_uncorrected` is from the
    actual send. Closed loop (no rate): from the send."""
    kind, where = target
    if kind == "unix":
        url, extra = f"http://localhost{url_path}", ["--unix-socket", where]
    else:
        url, extra = f"http://127.0.0.1:{where}{url_path}", []
    out_json = ctx.tmp / f"{name}.oha.json"
    db_path = ctx.tmp / f"{name}.oha.db"
    for p in (out_json, db_path):
        if p.exists():
            p.unlink()
    cmd = [ctx.oha, "--no-tui", "--output-format", "json", "-o", str(out_json),
           "-z", f"{int(seconds * 1000)}ms", "-c", str(conns), "-w", "-m", method, *extra]
    if method == "POST":
        cmd += ["-T", "application/json", "-Z", str(body_lines)]
    if db:
        cmd += ["--db-url", str(db_path)]
    if rate:
        cmd += ["-q", str(int(rate)), "--latency-correction"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    busy0 = machine_busy_ticks()
    t0 = time.monotonic()
    # Bounded: -z plus time to finish in-flight requests and write the db.
    returncode, ru, stderr = _run_bounded(pinned(ctx, cpu, cmd), seconds + 60)
    wall = time.monotonic() - t0
    busy = (machine_busy_ticks() - busy0) / CLK_TCK
    if returncode != 0 or not out_json.exists():
        raise RuntimeError(f"oha {name} failed ({returncode}): {stderr[-2000:]}")
    j = json.loads(out_json.read_text())
    if keep_raw:
        (ctx.raw / f"{name}.oha.json").write_text(json.dumps(j, indent=1))
    dur = j["summary"]["total"]
    codes = {str(k): v for k, v in j.get("statusCodeDistribution", {}).items()}
    errors = dict(j.get("errorDistribution", {}))
    res = {
        "name": name, "transport": kind, "conns": conns, "rate": rate, "seconds": dur,
        "status": codes, "errors": errors, "requests": sum(codes.values()),
        "rps_all": sum(codes.values()) / dur if dur else 0.0,
        "rps_200": codes.get("200", 0) / dur if dur else 0.0,
        "gen_cpu_s": (ru.ru_utime + ru.ru_stime) if ru else None,
        "machine_busy_cpu_s": busy, "wall": wall,
        "oha_percentiles_s": j.get("latencyPercentiles", {}),
    }
    if db and db_path.exists():
        _add_request_figures(res, db_path)
    return res


def _run_bounded(cmd: list[str], limit: float):
    """Runs cmd for at most `limit` s (then SIGKILL, exit code -9). Returns the exit code,
    its rusage (the generator's own CPU) and its stderr."""
    p = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ru = None
    try:
        end = time.monotonic() + limit
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = -9
                break
            time.sleep(0.02)
    finally:
        stderr = p.stderr.read().decode(errors="replace") if p.stderr else ""
    return p.returncode, ru, stderr


def _add_request_figures(res: dict, db_path: Path) -> None:
    """Exact percentiles (all, by status, by status from the actual send), oha's burst
    size and the latency curve, from oha's per-request sqlite records; deletes the db."""
    con = sqlite3.connect(str(db_path))
    rows = con.execute(
        "select status, duration, end - start, start_latency_correction from oha").fetchall()
    con.close()
    db_path.unlink()
    by: dict[str, list[float]] = {}
    unc: dict[str, list[float]] = {}
    for st, d, u, _ in rows:
        by.setdefault(str(st), []).append(d)
        unc.setdefault(str(st), []).append(u)
    allv = sorted(r[1] for r in rows)
    sched = sorted(r[3] for r in rows if r[3] is not None)
    if len(sched) > 1:
        # oha's -q schedule is not smooth: it releases requests in bursts (its timer
        # ticks about every 1-2 ms). A burst = sends scheduled < 100 µs apart.
        bursts = 1 + sum(1 for a, b in zip(sched, sched[1:]) if b - a > 100e-6)
        res["burst_mean"] = len(sched) / bursts
        res["_sched"] = sched
    res["lat"] = percentiles(allv)
    res["lat"]["max"] = allv[-1] if allv else None
    res["lat_by_status"] = {}
    res["lat_uncorrected_by_status"] = {}
    for st, v in by.items():
        v.sort()
        res["lat_by_status"][st] = percentiles(v) | {"n": len(v)}
    for st, v in unc.items():
        v.sort()
        res["lat_uncorrected_by_status"][st] = percentiles(v)
    res["_curve"] = [allv[min(len(allv) - 1, int(f * len(allv)))] for f in CURVE_QS] if allv else []
