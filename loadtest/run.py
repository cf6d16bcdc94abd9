#!/usr/bin/env python3
"""normd load tests → loadtest/results/<date>/report.md (+ PNG plots, raw JSON).

Sections (see loadtest/README.md):
  a  normd alone, 4 KB set, Unix socket and TCP: cold start, idle RSS, saturation
     (closed loop), latency at 25/50/75 % of saturation (open loop, coordinated-omission
     corrected); 1 KB and 64 KB sets at saturation.
  b  overload: open loop at 10x saturation, X-Deadline-Ms 20, default queue; plus the
     latency of a 429 measured with a tiny queue.
  c  the demo app (loadtest/app) at ROLLOUT=0 and ROLLOUT=100 under the same load.
  d  the in-process pipeline (criterion, `cargo bench --bench pipeline -- pipeline/`).

Stdlib only, except matplotlib for the plots (run.sh puts it in loadtest/.venv).
Traffic goes only to 127.0.0.1 and Unix sockets under a private temp dir; every load
step is bounded in time by oha's -z and by a hard subprocess timeout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
PAYLOADS = SHARED / "bench" / "payloads"
APP_SCHEMA = SHARED / "bench" / "schemas" / "order.v1.json"
CONFIG = HERE / "normd-bench.toml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, GEN_CPU = "0", "1"
URL_PATH = "/norm?profile=bench"

# ----------------------------------------------------------------------------- utils

_children: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cleanup() -> None:
    """Ends every process this script started (by pid, never by name)."""
    for p in _children:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=5)
            except Exception:
                pass


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return (["taskset", "-c", cpu] if PIN else []) + cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(target, method: str, path: str, body: bytes = b"", timeout: float = 2.0):
    """One HTTP/1.1 request (Connection: close) to ('unix', path) or ('tcp', port).
    Returns (status, body) or raises OSError."""
    kind, where = target
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = where
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = ("127.0.0.1", where)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = b"", rest
        while buf:
            line, _, buf = buf.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                break
            out, buf = out + buf[:n], buf[n + 2:]
        rest = out
    return status, rest


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


# ----------------------------------------------------------------------------- normd


class Normd:
    def __init__(self, ctx, *extra: str, name: str = "normd"):
        self.ctx = ctx
        self.sock = str(ctx.tmp / f"{name}.sock")
        self.port = free_port()
        self.extra = list(extra)
        self.err_path = ctx.tmp / f"{name}.stderr.log"
        self.proc: subprocess.Popen | None = None

    @property
    def args(self) -> list[str]:
        return [
            "serve", "--config", str(CONFIG), "--schemas", str(REPO / "schemas"),
            "--socket", self.sock, "--listen", f"127.0.0.1:{self.port}",
            "--workers", "1", "--memory-limit", "256Mi",
            "--drain-delay-ms", "0", "--shutdown-timeout-ms", "5000",
            *self.ctx.normd_args, *self.extra,
        ]

    def cmdline(self) -> str:
        return " ".join(["normd"] + self.args).replace(str(REPO) + "/", "")

    def start(self, timeout: float = 10.0) -> float:
        """Spawns normd pinned to the server core; returns seconds from spawn to the
        first 200 from GET /readyz on the Unix socket (polled tightly)."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        err = open(self.err_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, [self.ctx.normd] + self.args),
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
        )
        _children.append(self.proc)
        err.close()
        deadline = t0 + timeout
        target = ("unix", self.sock)
        while True:
            try:
                if http(target, "GET", "/readyz", timeout=1.0)[0] == 200:
                    return time.perf_counter() - t0
            except (OSError, ValueError, IndexError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"normd exited with {self.proc.returncode}; see {self.err_path}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"normd not ready after {timeout}s; see {self.err_path}")
            time.sleep(0.0002)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> str:
        try:
            return http(("unix", self.sock), "GET", "/metrics")[1].decode()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def hist_over(t0: str, t1: str, name: str, le: str, **labels) -> float | None:
    """Share of observations of histogram `name` above bucket `le` between two scrapes."""
    def cnt(text, bound):
        return metric_sum(text, name + "_bucket", le=bound, **labels)
    total = cnt(t1, "+Inf") - cnt(t0, "+Inf")
    if total <= 0:
        return None
    return 1 - (cnt(t1, le) - cnt(t0, le)) / total


def metric_sum(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# ----------------------------------------------------------------------------- oha


def pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


QS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


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
    p = subprocess.Popen(pinned(cpu, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _children.append(p)
    ru = None
    try:
        # Bounded: -z plus time to finish in-flight requests and write the db.
        end = time.monotonic() + seconds + 60
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
    wall = time.monotonic() - t0
    busy = (machine_busy_ticks() - busy0) / CLK_TCK
    if p.returncode != 0 or not out_json.exists():
        raise RuntimeError(f"oha {name} failed ({p.returncode}): {stderr[-2000:]}")
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
        res["lat"] = {q: pct(allv, f) for q, f in QS.items()}
        res["lat"]["max"] = allv[-1] if allv else None
        res["lat_by_status"] = {}
        res["lat_uncorrected_by_status"] = {}
        for st, v in by.items():
            v.sort()
            res["lat_by_status"][st] = {q: pct(v, f) for q, f in QS.items()} | {"n": len(v)}
        for st, v in unc.items():
            v.sort()
            res["lat_uncorrected_by_status"][st] = {q: pct(v, f) for q, f in QS.items()}
        res["_curve"] = [allv[min(len(allv) - 1, int(f * len(allv)))] for f in CURVE_QS] if allv else []
    return res


# Saturation measures capacity: a budget that covers 32 queued 64 KB calls, so the
# closed loop is not cut short by deadline-based admission (section b tests that).
SAT_HDR = ("X-Deadline-Ms: 1000",)

CURVE_QS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999]


def payload_lines(ctx, size: str) -> Path:
    """All documents of a shared set, one per line (they are single-line JSON), for
    oha -Z: every request takes the next document in turn."""
    out = ctx.tmp / f"payloads-{size}.lines"
    if not out.exists():
        d = PAYLOADS / size
        files = sorted(d.glob("*.json"))
        if not files:
            raise SystemExit(f"no payloads in {d} (shared/ must sit next to the repository)")
        docs = [f.read_bytes() for f in files]
        for f, b in zip(files, docs):
            if b"\n" in b.rstrip(b"\n"):
                raise SystemExit(f"{f} spans several lines; oha -Z needs one document per line")
        out.write_bytes(b"\n".join(b.rstrip(b"\n") for b in docs) + b"\n")
        ctx.sets[size] = {"files": len(docs), "mean_bytes": sum(map(len, docs)) / len(docs)}
    return out


# ----------------------------------------------------------------------------- sections


def server_cpu(r: dict, pid: int, ticks_before: int) -> None:
    """normd's CPU over an oha step: in cores, and per call answered. Below saturation
    every call also pays the threads' sleep and wake-up, which a saturated server
    amortizes, so the per-call figure shows what a call costs at that rate."""
    cpu_s = (cpu_ticks(pid) - ticks_before) / CLK_TCK
    r["server_cpu_util"] = cpu_s / r["seconds"]
    r["server_cpu_s_per_call"] = cpu_s / r["requests"] if r["requests"] else None


def ideal_server(r: dict) -> None:
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
    r["ideal"] = {q: pct(lat, f) for q, f in QS.items()}


def section_a(ctx) -> dict:
    P = ctx.p
    res: dict = {"cold_start_ms": [], "sat": {}, "rates": {}, "sizes": {}}
    lines4k = payload_lines(ctx, "4k")

    log(f"a: cold start x{P['starts']}")
    for i in range(P["starts"]):
        n = Normd(ctx, name=f"cold{i}")
        try:
            res["cold_start_ms"].append(n.start() * 1000)
        finally:
            n.stop()

    log("a: idle RSS")
    n = Normd(ctx, name="idle")
    with n:
        time.sleep(P["idle_wait"])
        res["idle_rss"] = proc_status(n.pid)["VmRSS"]
        res["idle_cmd"] = n.cmdline()

    for transport in ("unix", "tcp"):
        # Saturation: a queue deep enough for every connection, so the closed loop
        # measures the server's capacity, not its admission policy (section b does that).
        n = Normd(ctx, "--max-queue", "64", name=f"sat-{transport}")
        with n:
            target = ("unix", n.sock) if transport == "unix" else ("tcp", n.port)
            log(f"a: saturation 4k {transport}")
            oha(ctx, f"warmup-{transport}", target, lines4k, P["warmup"], 32, headers=SAT_HDR,
                keep_raw=False, db=False)
            reset_peak(n.pid)
            c0 = cpu_ticks(n.pid)
            with RssSampler({"normd": n.pid}) as rs:
                r = oha(ctx, f"sat-4k-{transport}", target, lines4k, P["sat"], 32, headers=SAT_HDR)
            server_cpu(r, n.pid, c0)
            r["peak_rss"] = proc_status(n.pid).get("VmHWM") or rs.peak["normd"]
            r["cmd"] = n.cmdline()
            res["sat"][transport] = r
            sat = r["rps_200"]
            res["rates"][transport] = []
            for frac in (0.25, 0.5, 0.75):
                rate = max(1.0, frac * sat) if not ctx.smoke else P["smoke_rate"] * frac * 4
                log(f"a: open loop {transport} {frac:.0%} of saturation = {rate:.0f}/s")
                reset_peak(n.pid)
                m0 = n.metrics()
                c0 = cpu_ticks(n.pid)
                rr = oha(ctx, f"rate{int(frac * 100)}-4k-{transport}", target, lines4k,
                         P["rate"], 32, rate=rate)
                server_cpu(rr, n.pid, c0)
                ideal_server(rr)
                m1 = n.metrics()
                rr["server_over_1ms"] = hist_over(m0, m1, "normd_request_duration_seconds", "0.001", route="norm")
                rr["queue_wait_over_1ms"] = hist_over(m0, m1, "normd_queue_wait_seconds", "0.001")
                rr["frac"] = frac
                rr["peak_rss"] = proc_status(n.pid).get("VmHWM")
                res["rates"][transport].append(rr)
                if frac == 0.5 and transport == "unix":
                    # The same schedule against GET /livez (no body, no pipeline): what the
                    # generator's pacing and this machine's scheduling alone add to the tail.
                    log(f"a: open loop unix GET /livez at {rate:.0f}/s (floor of the 50% row)")
                    res["rate_floor"] = oha(ctx, "rate50-livez-unix", target, lines4k, P["rate"], 32,
                                            rate=rate, url_path="/livez", method="GET")
            if transport == "unix":
                for size in ("1k", "64k"):
                    log(f"a: saturation {size} unix")
                    lines = payload_lines(ctx, size)
                    oha(ctx, f"warmup-{size}", target, lines, P["warmup"], 32, headers=SAT_HDR,
                        keep_raw=False, db=False)
                    reset_peak(n.pid)
                    c0 = cpu_ticks(n.pid)
                    r = oha(ctx, f"sat-{size}-unix", target, lines, P["sat"], 32, headers=SAT_HDR)
                    server_cpu(r, n.pid, c0)
                    r["peak_rss"] = proc_status(n.pid).get("VmHWM")
                    res["sizes"][size] = r
                time.sleep(P["idle_wait"])
                res["rss_after_load"] = proc_status(n.pid)["VmRSS"]
    return res


def section_b(ctx, sat_rps: float) -> dict:
    P = ctx.p
    res: dict = {}
    lines4k = payload_lines(ctx, "4k")
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
                    rate=rate, headers=("X-Deadline-Ms: 20",))
        m1 = n.metrics()
        server_cpu(r, n.pid, c0)
        r["peak_rss"] = max(proc_status(n.pid).get("VmHWM", 0), rs.peak["normd"])
        r["rss_timeline"] = [(round(t, 2), row["normd"]) for t, row in rs.timeline[::4]]
        r["requested_rate"] = rate
        r["rejections"] = {
            reason: metric_sum(m1, "normd_rejections_total", reason=reason)
            - metric_sum(m0, "normd_rejections_total", reason=reason)
            for reason in ("overloaded", "deadline", "memory_pressure")}
        r["cmd"] = n.cmdline()
        res["overload"] = r
    n = Normd(ctx, "--max-queue", "1", name="tinyqueue")
    with n:
        target = ("unix", n.sock)
        log("b: floor: GET /livez, 1 connection (what any answer costs over the socket)")
        r = oha(ctx, "livez-floor-unix", target, lines4k, P["reject"], 1, url_path="/livez", method="GET")
        res["floor"] = r
        log("b: 429 latency with a 1-slot queue (closed loop, 4 connections)")
        r = oha(ctx, "reject-4k-unix", target, lines4k, P["reject"], 4,
                headers=("X-Deadline-Ms: 20",))
        r["cmd"] = n.cmdline()
        res["reject"] = r
        res["single"] = single_caller(ctx, target, lines4k)
    n = Normd(ctx, name="overload64k")  # defaults again: queue 16, 20 ms budget
    with n:
        log("b: 64 KB bodies, closed loop, 32 connections, X-Deadline-Ms 20")
        lines64k = payload_lines(ctx, "64k")
        r = oha(ctx, "overload-64k-unix", ("unix", n.sock), lines64k, P["reject"], 32,
                headers=("X-Deadline-Ms: 20",))
        r["cmd"] = n.cmdline()
        res["overload64k"] = r
    return res


def single_caller(ctx, target, lines4k: Path) -> dict:
    """How long one caller waits for its "no" while normd is flooded, next to how long any
    answer takes at that moment: one extra connection sends at a fixed rate, first
    `GET /livez` to the idle server, then, during the 4-connection 1-slot flood above,
    `POST /norm` (answered 429 whenever the queue is full) and `GET /livez` again. The
    closed-loop flood measures refusals back to back on busy cores; a caller that sends
    now and then also pays for waking both sides, which on a VM costs more than the
    refusal itself."""
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
                             headers=("X-Deadline-Ms: 20",), keep_raw=False, db=False)
        except Exception as e:  # reported below; the probes' figures stand on their own
            flood["error"] = str(e)

    t = threading.Thread(target=run_flood, daemon=True)
    t.start()
    time.sleep(1)
    log(f"b: one caller at {rate}/s during the 1-slot flood: POST /norm, then GET /livez")
    res["busy_norm"] = oha(ctx, "single-norm-flood", target, lines4k, P["reject"], 1, rate=rate,
                           headers=("X-Deadline-Ms: 20",))
    res["busy_livez"] = oha(ctx, "single-livez-flood", target, lines4k, P["reject"], 1, rate=rate,
                            url_path="/livez", method="GET")
    t.join(flood_seconds + 90)
    res["flood_status"] = flood["r"]["status"] if "r" in flood else flood.get("error", "unfinished")
    return res


def app_env(ctx, port: int, sock: str, rollout: int) -> dict:
    env = dict(os.environ)
    env.update({
        "PORT": str(port), "SCHEMA": str(APP_SCHEMA), "NORMD_SOCKET": sock,
        "ROLLOUT": str(rollout), "NORMD_PROFILE": "bench", "NORMD_DEADLINE_MS": "20",
    })
    return env


def section_c(ctx) -> dict:
    """The demo app at ROLLOUT=0 and 100 for each workload: the 4 KB set at a rate where
    the in-app job is cheap, and the 64 KB set, where it is not (which is where a GC'd
    app needs the sidecar)."""
    P = ctx.p
    workloads = []
    for size, rate in (("4k", P["app_rate"]), ("64k", P["app_rate_64k"])):
        # Interleaved repetitions (0, 100, 0, 100, …): a p99 of one 20 s window is decided
        # by a few dozen calls, which one stall of this shared machine can move; the
        # table shows each figure's median over a rollout's runs, and the report lists every run.
        reps = [demo_runs(ctx, size, rate, i) for i in range(1, P["app_repeats"] + 1)]
        runs = {rollout: median_record([r[rollout] for r in reps]) for rollout in (0, 100)}
        workloads.append({"set": size, "rate": rate, "runs": runs, "reps": reps})
    return {"workloads": workloads}


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


def demo_runs(ctx, size: str, rate: int, repetition: int) -> dict:
    P = ctx.p
    runs: dict = {}
    lines = payload_lines(ctx, size)
    app_dir = HERE / "app"
    for rollout in (0, 100):
        tag = f"app{size}-{rollout}" + (f"-r{repetition}" if repetition > 1 else "")
        n = Normd(ctx, name=f"{tag}-normd")
        with n:
            port = free_port()
            err = open(ctx.tmp / f"{tag}.log", "ab")
            app = subprocess.Popen(pinned(ctx.app_cpu, ["node", "server.js"]), cwd=app_dir,
                                   env=app_env(ctx, port, n.sock, rollout),
                                   stdout=err, stderr=err, stdin=subprocess.DEVNULL)
            _children.append(app)
            err.close()
            try:
                end = time.monotonic() + 15
                while True:
                    try:
                        if http(("tcp", port), "GET", "/healthz")[0] == 200:
                            break
                    except OSError:
                        pass
                    if app.poll() is not None or time.monotonic() > end:
                        raise RuntimeError(f"demo app did not start; see {ctx.tmp}/{tag}.log")
                    time.sleep(0.02)
                target = ("tcp", port)
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
                runs[rollout] = r
            finally:
                if app.poll() is None:
                    app.send_signal(signal.SIGTERM)
                    try:
                        app.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        app.kill()
                        app.wait()
    return runs


def section_d(ctx) -> dict:
    P = ctx.p
    if not any((PAYLOADS / "4k").glob("*.json")):
        raise SystemExit(f"no payloads in {PAYLOADS / '4k'} (shared/ must sit next to the repository, "
                         "or NORMD_SHARED=DIR)")
    env = dict(os.environ, NORMD_BENCH_PAYLOADS=str(PAYLOADS / "4k"))
    prof = ["--profile", "dev"] if ctx.smoke else []
    log("d: cargo bench --bench pipeline --no-run" + (" (dev profile: smoke)" if ctx.smoke else ""))
    subprocess.run(["cargo", "bench", "--locked", "--bench", "pipeline", *prof, "--no-run"],
                   cwd=REPO, env=env, check=True, timeout=1800,
                   stdout=subprocess.DEVNULL)
    crit_args = ["pipeline/"]
    if ctx.smoke:
        crit_args += ["--warm-up-time", "0.1", "--measurement-time", "0.3"]
    log("d: criterion pipeline/ on the server core")
    started = time.time()
    out = subprocess.run(pinned(SERVER_CPU, ["cargo", "bench", "--locked", "--bench", "pipeline", *prof,
                                             "--", *crit_args]),
                         cwd=REPO, env=env, check=True, timeout=900, capture_output=True, text=True)
    (ctx.raw / "criterion-pipeline.txt").write_text(out.stdout + out.stderr)
    tdir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not tdir.is_absolute():
        tdir = REPO / tdir
    found = {}
    for est in glob.glob(str(tdir / "criterion" / "pipeline" / "*" / "new" / "estimates.json")):
        if os.path.getmtime(est) < started - 1:
            continue
        e = json.loads(Path(est).read_text())
        bench = Path(est).parent.parent.name
        found[bench] = {"mean_ns": e["mean"]["point_estimate"],
                        "ci_ns": [e["mean"]["confidence_interval"]["lower_bound"],
                                  e["mean"]["confidence_interval"]["upper_bound"]],
                        "path": str(Path(est).relative_to(tdir))}
        (ctx.raw / f"criterion-{bench}.estimates.json").write_text(json.dumps(e, indent=1))
    if not found:
        raise RuntimeError("criterion wrote no pipeline/*/new/estimates.json")
    name, best = next(iter(sorted(found.items())))
    return {"bench": name, "mean_ns": best["mean_ns"], "ci_ns": best["ci_ns"],
            "ops_per_s": 1e9 / best["mean_ns"], "path": best["path"], "all": found,
            "profile": "dev" if ctx.smoke else "bench (release)"}


# ----------------------------------------------------------------------------- report


def ms(v, nd=3):
    return "–" if v is None else f"{v * 1000:.{nd}f}"


def ideal(r: dict) -> str:
    i = r.get("ideal")
    return f"{ms(i['p99'])} / {ms(i['p99.9'])}" if i else "–"


def us(v):
    return "–" if v is None else f"{v * 1e6:.0f}"


def mib(v):
    return "–" if v is None else f"{v / 1048576:.1f}"


def pc(v):
    return "–" if v is None else f"{v:.2%}"


def statuses(r):
    return ", ".join(f"{k}: {v}" for k, v in sorted(r["status"].items())) or "none"


def plots(ctx, R) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plots (run.sh installs it into loadtest/.venv)")
        return []
    made = []
    a = R.get("a")
    if a:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80, sharey=True)
        for ax, transport in zip(axes, ("unix", "tcp")):
            for rr in a["rates"].get(transport, []):
                curve = rr.get("_curve") or []
                if not curve:
                    continue
                pts = [(1 / (1 - q), c) for q, c in zip(CURVE_QS, curve) if q >= 0.5]
                ax.plot([x for x, _ in pts], [c * 1000 for _, c in pts], marker=".",
                        label=f"{rr['frac']:.0%} ({rr['rate']:.0f}/s)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([2, 10, 100, 1000, 10000])
            ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
            ax.set_title(f"4 KB, {transport}, open loop (CO-corrected)", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("latency (ms)")
        fig.tight_layout()
        fig.savefig(ctx.out / "latency-4k.png")
        plt.close(fig)
        made.append("latency-4k.png")
    b = R.get("b")
    if b:
        o = b["overload"]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.0), dpi=80)
        sts = sorted(o["lat_uncorrected_by_status"])
        qs = list(QS)
        for st in sts:
            vals = [o["lat_uncorrected_by_status"][st][q] for q in qs]
            axes[0].plot(qs, [v * 1000 for v in vals], marker="o", label=st)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("latency (ms)")
        axes[0].set_title("overload: latency by status (from send)", fontsize=9)
        axes[0].legend(fontsize=7)
        axes[0].grid(True, alpha=0.3)
        tl = o.get("rss_timeline") or []
        axes[1].plot([t for t, _ in tl], [v / 1048576 for _, v in tl])
        axes[1].set_xlabel("s")
        axes[1].set_ylabel("normd RSS (MiB)")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title("overload: normd RSS", fontsize=9)
        axes[1].grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(ctx.out / "overload.png")
        plt.close(fig)
        made.append("overload.png")
    c = R.get("c")
    for wl in (c or {}).get("workloads", []):
        if len(wl["runs"]) != 2:
            continue
        r0, r1 = wl["runs"][0], wl["runs"][100]
        fig, axes = plt.subplots(1, 3, figsize=(8, 2.8), dpi=80)
        fig.suptitle(f"demo app, {wl['set']} set at {wl['rate']}/s", fontsize=9)
        labels = ["ROLLOUT 0", "ROLLOUT 100"]
        axes[0].bar(labels, [r0["app_rss"] / 1048576, r1["app_rss"] / 1048576], label="app")
        axes[0].bar(labels, [r0["normd_rss"] / 1048576, r1["normd_rss"] / 1048576],
                    bottom=[r0["app_rss"] / 1048576, r1["app_rss"] / 1048576], label="normd")
        axes[0].set_title("RSS (MiB)", fontsize=9)
        axes[0].legend(fontsize=7)
        for ax, key, title in ((axes[1], "p95", "endpoint p95 (ms)"), (axes[2], "p99", "endpoint p99 (ms)")):
            ax.bar(labels, [r0["stats"]["latency"][key], r1["stats"]["latency"][key]])
            ax.set_title(title, fontsize=9)
        for ax in axes:
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        name = f"before-after-{wl['set']}.png"
        fig.savefig(ctx.out / name)
        plt.close(fig)
        made.append(name)
    return made


def verdict(ok):
    return "–" if ok is None else ("**pass**" if ok else "**MISS**")


def report(ctx, R, pngs) -> str:
    P, L = ctx.p, []
    w = L.append
    w(f"# normd load test — {ctx.stamp}{' (SMOKE: tiny durations and rates, figures meaningless)' if ctx.smoke else ''}")
    w("")
    w(f"- normd: `{ctx.normd_rel}` ({ctx.build}); oha {ctx.oha_version}; node {ctx.node_version}")
    w(f"- machine: {os.cpu_count()} CPUs, `{ctx.cpu_model}`, kernel {os.uname().release}; "
      f"pinning: {'normd on core 0, load generator on core 1' if PIN else 'none (fewer than 2 CPUs)'}")
    w(f"- repo: `{ctx.git}`")
    w(f"- load average at start: {ctx.loadavg}; each table's *busy* column is the whole "
      f"machine's CPU seconds per second during the step (2.0 = both cores busy), so "
      f"foreign load shows up: compare it with server + generator CPU")
    w(f"- command: `{ctx.command}`")
    w("")
    for s, info in sorted(ctx.sets.items()):
        w(f"- payload set `{s}`: {info['files']} documents, mean {info['mean_bytes']:.0f} B, all of them "
          f"in turn (oha `-Z`, one document per line)")
    w("")
    a, b, c, d = R.get("a"), R.get("b"), R.get("c"), R.get("d")
    if a:
        sat_u = a["sat"]["unix"]
        w("## a. normd alone (4 KB set, `?profile=bench`: trim, order.v1, gzip 1; `--workers 1`)")
        w("")
        w(f"Server: `{sat_u['cmd']}`")
        w("")
        cs = sorted(a["cold_start_ms"])
        w(f"- **cold start → ready**: median {statistics.median(cs):.1f} ms over {len(cs)} starts "
          f"(min {cs[0]:.1f}, max {cs[-1]:.1f}): spawn → first 200 from `GET /readyz` on the socket, polled every 0.2 ms")
        w(f"- **idle RSS**: {mib(a['idle_rss'])} MiB (after {P['idle_wait']} s idle, self-probe running); "
          f"after all section-a load, idle again: {mib(a.get('rss_after_load'))} MiB")
        w("")
        w("### Saturation (closed loop, 32 keep-alive connections, `--max-queue 64`, `X-Deadline-Ms: 1000`)")
        w("")
        w("| set | transport | 200/s | other statuses / errors | p50 ms | p99 ms | p99.9 ms | normd CPU (cores) | normd CPU µs/call | generator CPU (cores) | busy | peak RSS MiB |")
        w("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        rows = [("4k", a["sat"]["unix"]), ("4k", a["sat"]["tcp"])] + [(s, r) for s, r in a["sizes"].items()]
        for s, r in rows:
            other = {k: v for k, v in r["status"].items() if k != "200"}
            w(f"| {s} | {r['transport']} | {r['rps_200']:,.0f} | {other or '–'} {r['errors'] or ''} | "
              f"{ms(r['lat']['p50'])} | {ms(r['lat']['p99'])} | {ms(r['lat']['p99.9'])} | "
              f"{r['server_cpu_util']:.2f} | {us(r.get('server_cpu_s_per_call'))} | {r['gen_cpu_s'] / r['seconds']:.2f} | {r['machine_busy_cpu_s'] / r['wall']:.2f} | {mib(r['peak_rss'])} |")
        w("")
        w("### Latency at fixed rates (open loop, `-q`, coordinated-omission corrected, 32 connections)")
        w("")
        w("| transport | rate | offered/s | 200/s | other | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | ideal p99 / p99.9 ms | normd CPU µs/call | busy | oha burst | server > 1 ms | queue wait > 1 ms |")
        w("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for transport in ("unix", "tcp"):
            for rr in a["rates"][transport]:
                other = {k: v for k, v in rr["status"].items() if k != "200"}
                w(f"| {transport} | {rr['frac']:.0%} of sat. | {rr['rate']:,.0f} | {rr['rps_200']:,.0f} | "
                  f"{other or '–'} {rr['errors'] or ''} | {ms(rr['lat']['p50'])} | {ms(rr['lat']['p90'])} | "
                  f"{ms(rr['lat']['p99'])} | {ms(rr['lat']['p99.9'])} | {ms(rr['lat']['max'])} | "
                  f"{ideal(rr)} | {us(rr.get('server_cpu_s_per_call'))} | {rr['machine_busy_cpu_s'] / rr['wall']:.2f} | {rr.get('burst_mean', 0):.1f} | "
                  f"{pc(rr.get('server_over_1ms'))} | {pc(rr.get('queue_wait_over_1ms'))} |")
                if transport == "unix" and rr["frac"] == 0.5 and a.get("rate_floor"):
                    fl = a["rate_floor"]
                    w(f"| unix | floor: `GET /livez`, same rate | {fl['rate']:,.0f} | {fl['rps_200']:,.0f} | – | "
                      f"{ms(fl['lat']['p50'])} | {ms(fl['lat']['p90'])} | {ms(fl['lat']['p99'])} | "
                      f"{ms(fl['lat']['p99.9'])} | {ms(fl['lat']['max'])} | – | – | "
                      f"{fl['machine_busy_cpu_s'] / fl['wall']:.2f} | {fl.get('burst_mean', 0):.1f} | – | – |")
        w("")
        w("*ideal*: the p99 and p99.9 that one server busy for exactly the row's *normd CPU "
          "µs/call*, one call at a time and never stalled, would give on oha's own send schedule "
          "of that step: the generator's pacing plus normd's own CPU. Above it, the measured "
          "figure is what this machine's scheduling and stalls add.")
        w("")
        w("*floor*: the 50 % row's schedule sent to `GET /livez`, which does no work and never "
          "queues: the generator's pacing plus this machine's scheduling, the least any row can "
          "show. *oha burst*: mean number of requests oha schedules together (< 100 µs apart): its `-q` "
          "pacing is not smooth, and a burst of k requests on one core makes the k-th wait k−1 "
          "service times. *server > 1 ms*: share of calls whose time inside normd (handler entry → "
          "response built, `normd_request_duration_seconds{route=\"norm\"}`) exceeded 1 ms; "
          "*queue wait > 1 ms*: the same for `normd_queue_wait_seconds` (both from /metrics "
          "before/after the step). *normd CPU µs/call*: normd's CPU time over the step divided "
          "by the calls answered; below saturation each call also pays its threads' sleep and "
          "wake-up, which a saturated server amortizes.")
        w("")
        if "latency-4k.png" in pngs:
            w("![latency percentiles](latency-4k.png)")
            w("")
    if b:
        o, rj = b["overload"], b["reject"]
        tot = o["requests"] or 1
        w("## b. Overload (4 KB, Unix socket, `X-Deadline-Ms: 20`, default queue 16, `--workers 1`)")
        w("")
        w(f"Server: `{o['cmd']}`")
        w("")
        w(f"- requested offered load: {o['requested_rate']:,.0f}/s (10 × saturation) for {o['seconds']:.1f} s, "
          f"{P['overload_conns']} connections; **achieved** by the generator: {o['rps_all']:,.0f}/s "
          f"({o['rps_all'] / (o['requested_rate'] / 10):.1f} × saturation; generator CPU "
          f"{o['gen_cpu_s'] / o['seconds']:.2f} cores)")
        w(f"- **goodput**: {o['rps_200']:,.0f} 200/s ({o['rps_200'] / (o['requested_rate'] / 10):.0%} of saturation)")
        shares = ", ".join(f"{k}: {v} ({v / tot:.1%})" for k, v in sorted(o["status"].items()))
        w(f"- statuses: {shares}")
        bad = {k: v for k, v in o["status"].items() if k not in ("200", "429", "503", "504")}
        w(f"- outside 200/429/503/504: {bad or 'none'}; connection errors: {o['errors'] or 'none'}")
        w(f"- normd's own count of rejections in the window: {o['rejections']}")
        w(f"- **peak RSS of normd**: {mib(o['peak_rss'])} MiB; normd CPU {o['server_cpu_util']:.2f} cores")
        w("")
        w("Latency by status, measured from the actual send (the generator could not keep the schedule, "
          "so the CO-corrected figures mostly measure its own backlog; they are in the raw JSON):")
        w("")
        w("| status | n | p50 ms | p90 ms | p99 ms | p99.9 ms |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for st, v in sorted(o["lat_uncorrected_by_status"].items()):
            w(f"| {st} | {o['lat_by_status'][st]['n']} | {ms(v['p50'])} | {ms(v['p90'])} | {ms(v['p99'])} | {ms(v['p99.9'])} |")
        w("")
        w(f"**429 latency with a 1-slot queue** (`{rj['cmd']}`; closed loop, 4 connections, "
          f"{rj['seconds']:.1f} s; the generator is not saturated here, so this is the server's answer time "
          f"plus the loopback round trip): statuses {statuses(rj)}; errors {rj['errors'] or 'none'}")
        w("")
        w("| status | n | p50 µs | p90 µs | p99 µs | p99.9 µs |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        for st, v in sorted(rj["lat_by_status"].items()):
            w(f"| {st} | {v['n']} | {us(v['p50'])} | {us(v['p90'])} | {us(v['p99'])} | {us(v['p99.9'])} |")
        fl = b.get("floor")
        if fl and fl.get("lat_by_status", {}).get("200"):
            v = fl["lat_by_status"]["200"]
            w(f"| floor: `GET /livez`, idle server, 1 connection | {v['n']} | {us(v['p50'])} | {us(v['p90'])} | {us(v['p99'])} | {us(v['p99.9'])} |")
        w("")
        sc = b.get("single")
        if sc:
            w(f"**One caller during that flood** (an extra connection at {sc['rate']}/s, open loop, "
              f"CO-corrected; the flood's statuses: {sc['flood_status']}): the 429 it gets, next to "
              "`GET /livez` sent the same way at the same moment, and to an idle normd. The flood row "
              "above answers refusals back to back on busy cores; a caller that sends now and then "
              "also pays for waking both sides, which on this VM costs more than the refusal.")
            w("")
            w("| request | status | n | p50 µs | p90 µs | p99 µs | p99.9 µs |")
            w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
            for key, what in (("idle_livez", "`GET /livez`, idle normd"),
                              ("busy_norm", "`POST /norm`, during the flood"),
                              ("busy_livez", "`GET /livez`, during the flood")):
                for st, v in sorted(sc[key].get("lat_by_status", {}).items()):
                    w(f"| {what} | {st} | {v['n']} | {us(v['p50'])} | {us(v['p90'])} | {us(v['p99'])} | {us(v['p99.9'])} |")
            w("")
        o64 = b.get("overload64k")
        if o64:
            bad = {k: v for k, v in o64["status"].items() if k not in ("200", "429", "503", "504")}
            w(f"**64 KB bodies at the default budget** (closed loop, 32 connections, `X-Deadline-Ms: 20`, "
              f"{o64['seconds']:.1f} s): statuses {statuses(o64)}; outside 200/429/503/504: {bad or 'none'}; "
              f"**connection errors: {o64['errors'] or 'none'}**")
            w("")
        if "overload.png" in pngs:
            w("![overload](overload.png)")
            w("")
    if c and c.get("workloads"):
        w(f"## c. Demo app before/after (POST /orders, open loop, {P['app_warmup']} s warm-up, "
          f"{P['app']} s measured, {P['app_repeats']} runs per rollout)")
        w("")
        w(f"Each workload runs ROLLOUT=0 and ROLLOUT=100 in turn, {P['app_repeats']} times (fresh "
          f"normd and app each run). Every figure in the tables is the median over the runs of "
          f"that rollout; the line under each table lists every run's endpoint p99 and app RSS.")
        w("")
        w(f"Placement, the same for every run: normd on core 0, the app (`node server.js`) on core "
          f"{ctx.app_cpu}, the load generator on core {ctx.gen_cpu_app} (sharing normd's core: the app keeps a core "
          f"to itself in both runs, so the 'after' run is not flattered). App env: `ROLLOUT=0|100 "
          f"NORMD_PROFILE=bench NORMD_DEADLINE_MS=20 SCHEMA=shared/bench/schemas/order.v1.json`. "
          f"Two workloads: the 4 KB set, where the in-app job costs a few hundred µs, and the "
          f"64 KB set, where it costs milliseconds of the app's event loop.")
        w("")
    for wl in (c or {}).get("workloads", []):
        if len(wl["runs"]) != 2:
            continue
        r0, r1 = wl["runs"][0], wl["runs"][100]
        w(f"### {wl['set']} set at {wl['rate']}/s")
        w("")
        w("| | ROLLOUT=0 (in-app) | ROLLOUT=100 (normd) |")
        w("| --- | ---: | ---: |")

        def row(label, f):
            w(f"| {label} | {f(r0)} | {f(r1)} |")
        row("requests served (app `/stats`)", lambda r: f"{r['served']:,}")
        row("by path", lambda r: str(r["stats"]["requests"]["by_path"]))
        row("fallbacks", lambda r: str({k: v for k, v in ((r['stats'].get('client') or {}).get('fallback_by_reason') or {}).items() if v}) or "–")
        row("statuses at the generator", lambda r: statuses(r))
        row("app RSS MiB (end / peak)", lambda r: f"{mib(r['app_rss'])} / {mib(r['app_peak_rss'])}")
        row("app heap used MiB", lambda r: mib(r["stats"]["process"]["heap_used_bytes"]))
        row("normd RSS MiB (end / peak)", lambda r: f"{mib(r['normd_rss'])} / {mib(r['normd_peak_rss'])}")
        row("**total RSS MiB** (app + normd, end)", lambda r: f"**{mib(r['app_rss'] + r['normd_rss'])}**")
        row("app GC pauses: count / p95 ms / total ms", lambda r: f"{r['stats']['gc']['count']} / {r['stats']['gc']['p95']:.2f} / {r['stats']['gc']['total']:.0f}")
        row("**endpoint p95 / p99 ms** (app handler)", lambda r: f"**{r['stats']['latency']['p95']:.2f} / {r['stats']['latency']['p99']:.2f}**")
        row("client-side p50 / p99 ms (oha, CO-corrected)", lambda r: f"{ms(r['lat']['p50'], 2)} / {ms(r['lat']['p99'], 2)}")
        row("app CPU s / normd CPU s", lambda r: f"{r['app_cpu_s']:.2f} / {r['normd_cpu_s']:.2f}")
        row("**CPU per request µs** (app + normd)", lambda r: f"**{r['cpu_us_per_req']:.0f}**" if r["cpu_us_per_req"] else "–")
        row("busy (machine, cores)", lambda r: f"{r['machine_busy_cpu_s'] / r['wall']:.2f}")
        w("")
        reps = wl.get("reps") or []
        if len(reps) > 1:
            for rollout in (0, 100):
                p99s = ", ".join(f"{x[rollout]['stats']['latency']['p99']:.2f}" for x in reps)
                rss = ", ".join(mib(x[rollout]["app_rss"]) for x in reps)
                w(f"- ROLLOUT={rollout}, run by run: endpoint p99 {p99s} ms; app RSS {rss} MiB")
            w("")
        png = f"before-after-{wl['set']}.png"
        if png in pngs:
            w(f"![before/after {wl['set']}]({png})")
            w("")
    if d:
        w("## d. In-process pipeline (criterion, one core)")
        w("")
        w(f"`taskset -c 0 cargo bench --bench pipeline -- 'pipeline/'` ({d['profile']}): `{d['bench']}` mean "
          f"{d['mean_ns'] / 1000:.1f} µs (95 % CI {d['ci_ns'][0] / 1000:.1f}–{d['ci_ns'][1] / 1000:.1f}) → "
          f"**{d['ops_per_s']:,.0f} ops/s**")
        if a:
            w(f"- saturation over the Unix socket ÷ in-process: {a['sat']['unix']['rps_200']:,.0f} / "
              f"{d['ops_per_s']:,.0f} = **{a['sat']['unix']['rps_200'] / d['ops_per_s']:.2f}**")
        w("")
    w("## Targets")
    w("")
    w("| target | figure | verdict |")
    w("| --- | --- | --- |")
    T = []
    if a and d:
        ratio = a["sat"]["unix"]["rps_200"] / d["ops_per_s"]
        T.append(("saturation ≥ 0.85 × in-process (4 KB, socket, 1 core)", f"{ratio:.2f} ×", ratio >= 0.85))
    if a:
        half = a["rates"]["unix"][1]
        T.append(("p99 ≤ 1 ms at 50 % of saturation (socket)", f"{ms(half['lat']['p99'])} ms", half["lat"]["p99"] <= 0.001))
        T.append(("p99.9 ≤ 2 ms at 50 % of saturation (socket)", f"{ms(half['lat']['p99.9'])} ms", half["lat"]["p99.9"] <= 0.002))
    if b:
        v = b["reject"]["lat_by_status"].get("429")
        T.append(("a 429 answered in ≤ 50 µs (p50, 1-slot queue)", f"{us(v['p50']) if v else '–'} µs", (v["p50"] <= 50e-6) if v else None))
        sc = b.get("single")
        v1 = sc["busy_norm"]["lat_by_status"].get("429") if sc else None
        if v1:
            lv = sc["busy_livez"]["lat_by_status"].get("200")
            T.append((f"… p50 for one caller at {sc['rate']}/s during the flood",
                      f"{us(v1['p50'])} µs (`/livez` then: {us(lv['p50']) if lv else '–'} µs)", v1["p50"] <= 50e-6))
        o = b["overload"]["lat_uncorrected_by_status"].get("429")
        if o:
            T.append(("… p50 of the 429s under the 10× overload", f"{us(o['p50'])} µs", o["p50"] <= 50e-6))
    if a:
        T.append(("idle RSS ≤ 8 MB", f"{a['idle_rss'] / 1e6:.1f} MB", a["idle_rss"] <= 8e6))
    if b:
        o64 = b.get("overload64k")
        if o64:
            ok64 = all(k in ("200", "429", "503", "504") for k in o64["status"]) and not o64["errors"]
            T.append(("… the same with 64 KB bodies", "yes" if ok64 else f"no: {sum(o64['errors'].values())} connection errors", ok64))
        pk = b["overload"]["peak_rss"]
        T.append(("peak RSS under 10× overload ≤ 48 MB", f"{pk / 1e6:.1f} MB", pk <= 48e6))
        ok_statuses = all(k in ("200", "429", "503", "504") for k in b["overload"]["status"]) and not b["overload"]["errors"]
        T.append(("every overload response is 200/429/503/504, no connection error", "yes" if ok_statuses else "no", ok_statuses))
    if a:
        med = statistics.median(a["cold_start_ms"])
        T.append(("cold start to ready ≤ 20 ms", f"{med:.1f} ms", med <= 20))
    for wl in (c or {}).get("workloads", []):
        if len(wl["runs"]) != 2:
            continue
        r0, r1 = wl["runs"][0], wl["runs"][100]
        at = f"{wl['set']} at {wl['rate']}/s"
        T.append((f"demo app ({at}): lower app RSS at 100 % than at 0 %", f"{mib(r1['app_rss'])} vs {mib(r0['app_rss'])} MiB", r1["app_rss"] < r0["app_rss"]))
        T.append((f"demo app ({at}): lower endpoint p99 at 100 % than at 0 %", f"{r1['stats']['latency']['p99']:.2f} vs {r0['stats']['latency']['p99']:.2f} ms", r1["stats"]["latency"]["p99"] < r0["stats"]["latency"]["p99"]))
    for t, f, ok in T:
        w(f"| {t} | {f} | {verdict(None if ctx.smoke else ok)} |")
    if ctx.smoke:
        w("")
        w("Smoke run: verdicts are not judged.")
    w("")
    w("## How to read this")
    w("")
    w("- *200/s* counts only 200s. *busy* is the whole machine's CPU (cores) during the step: with "
      "normd (≤ 1 core) and the generator (≤ 1 core) alone it is their sum; more means other "
      "processes competed and the step's figures are pessimistic.")
    w("- Open-loop latency is measured from when each request was *scheduled* (oha "
      "`--latency-correction`), so a stall is charged to every request that should have been sent "
      "during it (no coordinated omission). Percentiles are exact, from oha's per-request records.")
    w("- Raw data: `raw/*.oha.json` (oha's own summary of every step), `raw/app*-stats.json` "
      "(the demo app's `/stats`), `raw/criterion-*`, and `results.json` (every figure in this report).")
    w("")
    return "\n".join(L)


# ----------------------------------------------------------------------------- main

FULL = dict(starts=10, idle_wait=3.0, warmup=3, sat=10, rate=15, overload=15, overload_conns=64,
            reject=5, app_warmup=10, app=20, app_rate=1000, app_rate_64k=250, app_repeats=3,
            smoke_rate=0, probe_rate=500)
SMOKE = dict(starts=3, idle_wait=0.5, warmup=0.5, sat=1, rate=1, overload=1.5, overload_conns=16,
             reject=1, app_warmup=1, app=1.5, app_rate=50, app_rate_64k=10, app_repeats=2,
             smoke_rate=50, probe_rate=100)

PIN = True


class Ctx:
    pass


def sh(cmd, **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw).stdout.strip()
    except Exception:
        return "?"


def main() -> int:
    global PIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="seconds-long steps at small rates; no verdicts")
    ap.add_argument("--sections", default="abcd", help="which sections to run (default abcd)")
    ap.add_argument("--out", help="output dir (default results/<UTC date>, or results/smoke)")
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), help="normd binary "
                    "(default $NORMD_BIN, else target/release/normd, else target/debug/normd with --smoke)")
    ap.add_argument("--oha", default=os.environ.get("OHA", "oha"))
    ap.add_argument("--app-rate", type=int, help="section c offered rate, 4 KB set (default 1000/s)")
    ap.add_argument("--app-rate-64k", type=int, help="section c offered rate, 64 KB set (default 250/s)")
    ap.add_argument("--app-repeats", type=int, help="section c runs per rollout, interleaved (default 3)")
    ap.add_argument("--normd-arg", action="append", default=[], help="extra `normd serve` argument (repeatable)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait (up to 10 min) until the 1-min load average is below this before starting")
    args = ap.parse_args()

    ctx = Ctx()
    ctx.smoke = args.smoke
    ctx.p = dict(SMOKE if args.smoke else FULL)
    if args.app_rate:
        ctx.p["app_rate"] = args.app_rate
    if args.app_rate_64k:
        ctx.p["app_rate_64k"] = args.app_rate_64k
    if args.app_repeats:
        ctx.p["app_repeats"] = max(1, args.app_repeats)
    ctx.normd_args = args.normd_arg
    ctx.sets = {}
    PIN = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    ctx.app_cpu, ctx.gen_cpu_app = GEN_CPU, SERVER_CPU

    tdir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not tdir.is_absolute():
        tdir = REPO / tdir
    normd = args.normd
    if not normd:
        rel, dbg = tdir / "release" / "normd", tdir / "debug" / "normd"
        normd = str(rel if rel.exists() else dbg)
        if not rel.exists() and not args.smoke:
            raise SystemExit(f"{rel} missing: cargo build --release --locked (or --normd PATH)")
    if not os.access(normd, os.X_OK):
        raise SystemExit(f"normd binary not found: {normd}")
    ctx.normd = str(Path(normd).resolve())
    ctx.normd_rel = os.path.relpath(ctx.normd, REPO)
    ctx.build = "release" if "/release/" in ctx.normd else ("debug" if "/debug/" in ctx.normd else "?")
    oha_bin = shutil.which(args.oha) or args.oha
    if not os.access(oha_bin, os.X_OK):
        raise SystemExit(f"oha not found ({args.oha}); run loadtest/run.sh, which installs it")
    ctx.oha = oha_bin
    ctx.oha_version = sh([oha_bin, "--version"]).replace("oha ", "")
    ctx.node_version = sh(["node", "--version"])
    ctx.cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    ctx.git = sh(["git", "-C", str(REPO), "describe", "--always", "--dirty"]) or \
        os.environ.get("NORMD_LOADTEST_REV", "(not a git checkout)")
    ctx.command = " ".join(["loadtest/run.py"] + sys.argv[1:])

    if args.max_load is not None:
        end = time.monotonic() + 600
        while os.getloadavg()[0] >= args.max_load and time.monotonic() < end:
            log(f"waiting for a quieter machine: load {os.getloadavg()[0]:.2f} ≥ {args.max_load}")
            time.sleep(15)
    ctx.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.timezone.utc)
    ctx.stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    ctx.out = Path(args.out) if args.out else HERE / "results" / ("smoke" if args.smoke else now.strftime("%Y-%m-%d"))
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.raw = ctx.out / "raw"
    if ctx.raw.exists():
        shutil.rmtree(ctx.raw)
    ctx.raw.mkdir()
    for stale in ctx.out.glob("*.png"):
        stale.unlink()
    ctx.tmp = Path(tempfile.mkdtemp(prefix="normd-loadtest-"))
    if PIN:
        os.sched_setaffinity(0, {int(GEN_CPU)})  # the driver itself stays off the server core

    def on_signal(sig, _frame):
        cleanup()
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    R: dict = {}
    t0 = time.monotonic()
    ok = False
    try:
        if "d" in args.sections:
            R["d"] = section_d(ctx)
        if "a" in args.sections:
            R["a"] = section_a(ctx)
        if "b" in args.sections:
            sat = R["a"]["sat"]["unix"]["rps_200"] if "a" in R else float(os.environ.get("NORMD_SAT_RPS", "5000"))
            R["b"] = section_b(ctx, sat)
        if "c" in args.sections:
            R["c"] = section_c(ctx)
        ok = True
    finally:
        cleanup()
        R["meta"] = {"stamp": ctx.stamp, "normd": ctx.normd_rel, "build": ctx.build, "oha": ctx.oha_version,
                     "git": ctx.git, "loadavg_start": ctx.loadavg, "params": ctx.p, "smoke": ctx.smoke,
                     "sets": ctx.sets, "seconds": time.monotonic() - t0, "complete": ok}

        def strip(o):
            if isinstance(o, dict):
                return {str(k): strip(v) for k, v in o.items() if not str(k).startswith("_")}
            if isinstance(o, list):
                return [strip(v) for v in o]
            return o
        (ctx.out / "results.json").write_text(json.dumps(strip(R), indent=1))
        if ok:
            pngs = plots(ctx, R)
            (ctx.out / "report.md").write_text(report(ctx, R, pngs))
            log(f"report: {ctx.out / 'report.md'} ({time.monotonic() - t0:.0f}s)")
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
