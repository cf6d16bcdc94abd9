#!/usr/bin/env python3
"""The JVM before/after: the Java demo app (loadtest/app-jvm) at ROLLOUT=0 (the order job
in-app, on the JVM's heap) and ROLLOUT=100 (the job in normd, through the Java client),
under the same fixed offered load, with G1 and a fixed heap.

For each workload (payload set + rate) and rollout: a fresh normd and a fresh app, a
warm-up at the workload's rate, `POST /stats/reset`, then a measured open-loop window.
Figures per run:

- GC pauses in the window from the JVM's unified log (`-Xlog:gc*,safepoint:file=…`):
  count, p50/p95/p99/max, total, and the heap after each pause (`…->NM(…)`);
  stop-the-world total from the safepoint lines;
- RSS of the app and of normd (sampled every second: mean and max, and at the end), sum;
- endpoint latency p50/p95/p99 (the app's own histogram, handler entry → response written)
  and the client-side latency from the scheduled send time (no coordinated omission);
- CPU per request: utime+stime of app and normd from /proc/PID/stat over the window ÷
  answered requests.

The load generator is this script (stdlib asyncio, open loop, keep-alive connections to
127.0.0.1), since the repo's oha needs a 10-16 min `cargo install` and the smoke run must
not. Every loop is bounded in count and time. Placement (2 cores): the app on core 1
(`taskset -c 1`: the JVM sees 1 CPU, like a 1-CPU container), normd and the generator on
core 0 — the same for both rollouts.

    python3 loadtest/jvm.py --normd PATH --out loadtest/results/DATE-jvm     # ≈ 16 min
    python3 loadtest/jvm.py --normd PATH --smoke                              # ≈ 40 s, no plot
    python3 loadtest/jvm.py --help
"""
import argparse
import asyncio
import collections
import datetime
import json
import math
import os
import pathlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # lt/, from any working directory

from lt import httpclient  # noqa: E402
from lt.children import CHILDREN  # noqa: E402
from lt.children import stop as stop_child  # noqa: E402
from lt.httpclient import wait_unix_ready  # noqa: E402
from lt.procfs import RssSampler, cpu_ticks, machine_busy_ticks, proc_status  # noqa: E402

REPO = HERE.parent
APP_DIR = HERE / "app-jvm"
CONFIG = HERE / "normd-bench.toml"


def shared_dir() -> pathlib.Path:
    for p in (os.environ.get("NORMD_SHARED"), REPO.parent / "shared", "/work/shared"):
        if p and (pathlib.Path(p) / "bench" / "payloads").is_dir():
            return pathlib.Path(p)
    sys.exit("jvm.py: no shared/bench/payloads (set NORMD_SHARED)")


TICK = os.sysconf("SC_CLK_TCK")


def pinned(cpu: str | None, cmd: list[str]) -> list[str]:
    """cmd under `taskset -c cpu` when cpu is given and taskset is installed."""
    return (["taskset", "-c", cpu] + cmd) if cpu is not None and shutil.which("taskset") else cmd


def rss_samples(sampler: RssSampler, key: str) -> list[int]:
    """The non-zero VmRSS samples (bytes) an RssSampler took of one of its pids."""
    return [row[key] for _, row in sampler.timeline if row.get(key)]


# ----------------------------------------------------------------------------- HTTP helpers


def http(port: int, method: str, path: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 request (Connection: close) to the app on 127.0.0.1:port; returns (status, body)."""
    return httpclient.http(("tcp", port), method, path, body, timeout)


# ----------------------------------------------------------------------------- load generator


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, gen):
        self.gen, self.tr, self.buf, self.job = gen, None, b"", None
        self.need = -1
        self.status = 0
        self.open = False

    def connection_made(self, tr):
        self.tr, self.open = tr, True

    def send(self, job):
        self.job, self.buf, self.need = job, b"", -1
        job[2] = self.gen.loop.time()
        self.tr.write(job[3])

    def data_received(self, data):
        self.buf += data
        if self.need < 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].lower()
            clen = 0
            try:
                self.status = int(head[9:12])
                j = head.find(b"\r\ncontent-length:")
                if j >= 0:
                    k = head.find(b"\r\n", j + 2)
                    clen = int(head[j + 17:k if k > 0 else len(head)])
            except ValueError:
                self.gen.fail(self, "bad response head")
                return
            self.body_at = i + 4
            self.need = i + 4 + clen
        if len(self.buf) >= self.need:
            job, self.job = self.job, None
            self.gen.done(self, job, self.status, self.buf[self.body_at:self.need])

    def connection_lost(self, exc):
        self.open = False
        self.gen.lost(self)


class OpenLoop:
    """Sends `rate` requests/s for `duration` s (count = rate × duration), each at its
    scheduled time on an idle keep-alive connection (a new one up to `max_conns`, else it
    waits in a FIFO). Latency is measured from the scheduled time."""

    def __init__(self, port: int, bodies: list[bytes], rate: float, duration: float, key_prefix: str,
                 conns: int = 16, max_conns: int = 128, check_body=None):
        self.port, self.bodies, self.rate, self.duration = port, bodies, rate, duration
        self.key_prefix, self.conns, self.max_conns = key_prefix, conns, max_conns
        self.check_body = check_body
        self.lat_ms: list[float] = []
        self.statuses = collections.Counter()
        self.errors = collections.Counter()
        self.sent = 0
        self.retries = 0
        self.backlog_max = 0
        self.per_second: list[list[float]] = []

    def _request(self, i: int) -> bytes:
        body = self.bodies[i % len(self.bodies)]
        return (f"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-Request-Key: {self.key_prefix}-{i}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    def done(self, conn, job, status, body):
        now = self.loop.time()
        self.statuses[status] += 1
        if status == 200 and self.check_body is not None and not self.check_body(body):
            self.errors["bad 200 body"] += 1
        ms = (now - job[1]) * 1000.0
        self.lat_ms.append(ms)
        sec = int(job[1] - self.t0)
        while len(self.per_second) <= sec:
            self.per_second.append([])
        self.per_second[sec].append(ms)
        self.outstanding -= 1
        self._next(conn)

    def fail(self, conn, why):
        self.errors[why] += 1
        if conn.job is not None:
            conn.job = None
            self.outstanding -= 1
        conn.tr.close()

    def lost(self, conn):
        if conn in self.idle:
            self.idle.remove(conn)
        self.n_conns -= 1
        if conn.job is not None:
            job, conn.job = conn.job, None
            if not conn.buf and len(job) < 7:
                # A keep-alive connection the server closed (com.sun.net.httpserver closes
                # some when a stall backs connections up): re-send on a fresh one, at most
                # 3 times, as HTTP clients do for a request that got no byte of an answer.
                # Latency still counts from the first scheduled time.
                self.retries += 1
                job.append("retried")
                self.backlog.appendleft(job)
            elif conn.buf:
                self.errors["connection closed during the answer"] += 1
                self.outstanding -= 1
            else:
                self.errors["connection closed, 3 re-sends failed"] += 1
                self.outstanding -= 1
        if self.backlog and self.n_conns < self.max_conns:
            self.loop.create_task(self._connect_and_send())

    def _next(self, conn):
        if self.backlog:
            conn.send(self.backlog.popleft())
        elif conn.open:
            self.idle.append(conn)

    async def _connect_and_send(self):
        self.n_conns += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.port)
        except OSError as e:
            self.n_conns -= 1
            self.errors[f"connect: {e.__class__.__name__}"] += 1
            if self.backlog:
                self.backlog.popleft()
                self.outstanding -= 1
            return
        self._next(conn)

    def _dispatch(self, job):
        self.sent += 1
        self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(job)
            return
        self.backlog.append(job)
        self.backlog_max = max(self.backlog_max, len(self.backlog))
        if self.n_conns < self.max_conns:
            self.loop.create_task(self._connect_and_send())

    async def run(self):
        self.loop = asyncio.get_running_loop()
        # FIFO: every connection is used in turn, so none sits idle past the server's
        # keep-alive idle timeout (com.sun.net.httpserver: 30 s) and races its close.
        self.idle, self.backlog = collections.deque(), collections.deque()
        self.n_conns, self.outstanding = 0, 0
        for _ in range(self.conns):
            self.n_conns += 1
            try:
                _, c = await self.loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.port)
                self.idle.append(c)
            except OSError as e:
                self.n_conns -= 1
                self.errors[f"connect: {e.__class__.__name__}"] += 1
        n_total = int(self.rate * self.duration)
        self.t0 = self.loop.time() + 0.02
        i = 0
        offset = random.randrange(len(self.bodies))
        while i < n_total:
            now = self.loop.time()
            due = min(n_total, int((now - self.t0) * self.rate) + 1)
            while i < due:
                t_sched = self.t0 + i / self.rate
                self._dispatch([i, t_sched, 0.0, self._request(i + offset)])
                i += 1
            await asyncio.sleep(max(0.0, self.t0 + i / self.rate - self.loop.time()))
        # drain: at most 10 s for the stragglers
        end = self.loop.time() + 10
        while self.outstanding > 0 and self.loop.time() < end:
            await asyncio.sleep(0.01)
        if self.outstanding > 0:
            self.errors["unanswered after 10 s"] += self.outstanding
        for c in list(self.idle):
            c.tr.close()
        await asyncio.sleep(0.05)

    def summary(self) -> dict:
        lat = sorted(self.lat_ms)
        return {
            "offered_rate": self.rate, "duration_s": self.duration, "sent": self.sent, "answered": len(lat),
            "statuses": dict(self.statuses), "errors": dict(self.errors), "backlog_max": self.backlog_max,
            "retried_on_fresh_connection": self.retries,
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
            "max_ms": lat[-1] if lat else None,
            "p99_by_second_ms": [round(pct(sorted(s), 99), 3) if s else None for s in self.per_second],
        }


def pct(sorted_vals: list[float], p: float):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def load(port, bodies, rate, duration, key_prefix, check_body=None) -> dict:
    g = OpenLoop(port, bodies, rate, duration, key_prefix, check_body=check_body)
    asyncio.run(g.run())
    return g.summary()


# ----------------------------------------------------------------------------- GC log

GC_PAUSE = re.compile(r"^\[(\d+\.\d+)s\]\[info\s*\]\[gc\s*\] GC\((\d+)\) (Pause .+?) (\d+)M->(\d+)M\((\d+)M\) (\d+\.\d+)ms")
SAFEPOINT = re.compile(r"^\[(\d+\.\d+)s\]\[info\s*\]\[safepoint\s*\] Safepoint \"(\w+)\".*Total: (\d+) ns")


def parse_gc_log(path: pathlib.Path, t_from: float, t_to: float) -> dict:
    pauses, safepoints = [], []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        m = GC_PAUSE.match(line)
        if m:
            t = float(m.group(1))
            if t_from <= t <= t_to:
                pauses.append({"t": round(t - t_from, 3), "gc": int(m.group(2)), "kind": m.group(3),
                               "before_mb": int(m.group(4)), "after_mb": int(m.group(5)),
                               "committed_mb": int(m.group(6)), "ms": float(m.group(7))})
            continue
        m = SAFEPOINT.match(line)
        if m and t_from <= float(m.group(1)) <= t_to:
            safepoints.append((m.group(2), int(m.group(3)) / 1e6))
    ms = sorted(p["ms"] for p in pauses)
    after = [p["after_mb"] for p in pauses]
    kinds = collections.Counter(re.sub(r" \(G1 .*\)$| \(System.gc\(\)\)$", "", p["kind"]) for p in pauses)
    return {
        "count": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99),
        "max_ms": ms[-1] if ms else None, "total_ms": round(sum(ms), 3),
        "kinds": dict(kinds),
        "heap_after_gc_mb": {"median": statistics.median(after) if after else None,
                             "max": max(after) if after else None, "min": min(after) if after else None},
        "heap_before_gc_mb_median": statistics.median([p["before_mb"] for p in pauses]) if pauses else None,
        "committed_mb_max": max((p["committed_mb"] for p in pauses), default=None),
        "safepoints": len(safepoints), "safepoint_total_ms": round(sum(s[1] for s in safepoints), 3),
        "pauses": pauses,
    }


# ----------------------------------------------------------------------------- one run


class Ctx:
    pass


def start_normd(ctx, tag: str) -> tuple[subprocess.Popen, str]:
    sock = str(ctx.tmp / f"{tag}.sock")
    log = open(ctx.tmp / f"{tag}.normd.log", "wb")
    args = [ctx.normd, "serve", "--config", str(CONFIG), "--schemas", str(REPO / "schemas"), "--socket", sock,
            "--listen", "", "--workers", "1", "--memory-limit", "256Mi", "--drain-delay-ms", "0",
            "--shutdown-timeout-ms", "3000"]
    p = subprocess.Popen(pinned(ctx.normd_cpu, args), stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    CHILDREN.append(p)
    if wait_unix_ready(p, sock, 15, 0.02):
        return p, sock
    raise RuntimeError(f"normd did not get ready (see {ctx.tmp / (tag + '.normd.log')})")


def start_app(ctx, tag: str, rollout: int, sock: str) -> tuple[subprocess.Popen, int, pathlib.Path]:
    gclog = ctx.tmp / f"{tag}.gc.log"
    env = dict(os.environ, PORT="0", ROLLOUT=str(rollout), NORMD_SOCKET=sock, NORMD_PROFILE="bench",
               NORMD_DEADLINE_MS=str(ctx.deadline_ms), CACHE_MB=str(ctx.cache_mb), WORKERS=str(ctx.workers))
    cmd = ["java", "-XX:+UseG1GC", f"-Xms{ctx.heap}", f"-Xmx{ctx.heap}",
           f"-Xlog:gc*,safepoint:file={gclog}:uptime,level,tags", *ctx.jvm_args,
           "-cp", ctx.classpath, "dev.normd.demo.App"]
    err = open(ctx.tmp / f"{tag}.app.stderr.log", "wb")
    p = subprocess.Popen(pinned(ctx.app_cpu, cmd), env=env, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    CHILDREN.append(p)
    line = b""
    t_end = time.monotonic() + 30
    # the first line is {"msg":"listening","port":N,...}; readline is bounded by the app's exit
    while time.monotonic() < t_end:
        line = p.stdout.readline()
        if line.startswith(b"{") or not line:
            break
    try:
        port = json.loads(line)["port"]
    except (ValueError, KeyError):
        p.kill()
        raise RuntimeError(f"app did not start: {line!r} (see {ctx.tmp / (tag + '.app.stderr.log')})")
    return p, port, gclog


def stop(p: subprocess.Popen, timeout: float = 10):
    """SIGTERM, up to `timeout` s, then SIGKILL (up to 5 s); p leaves the list of children."""
    stop_child(p, timeout, kill_wait=5)


def check_answer(body: bytes) -> bool:
    return body.startswith(b'{"ok":true,')


def wait_for_quiet(max_load: float | None, limit_s: float = 300):
    if max_load is None:
        return
    t_end = time.monotonic() + limit_s
    while os.getloadavg()[0] > max_load and time.monotonic() < t_end:
        time.sleep(5)


def one_run(ctx, wl: dict, rollout: int, rep: int) -> dict:
    tag = f"{wl['name']}-{rollout}" + (f"-r{rep}" if rep else "")
    wait_for_quiet(ctx.max_load)
    run_loadavg = os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: {wl['rate']}/s × {wl['duration']} s after {wl['warmup']} s warm-up",
          flush=True)
    normd, sock = start_normd(ctx, tag)
    app = None
    try:
        app, port, gclog = start_app(ctx, tag, rollout, sock)
        t_ready = time.monotonic()
        while time.monotonic() - t_ready < 15:
            try:
                if http(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        warm = load(port, wl["bodies"], wl["rate"], wl["warmup"], f"{tag}-w", check_answer)
        # A warm-up the app could not keep up with leaves exchanges queued in it: let them
        # drain (≤ 30 s) so the measured window starts from an empty queue.
        drained_in = None
        t_drain = time.monotonic()
        while time.monotonic() - t_drain < 30:
            b = json.loads(http(port, "GET", "/stats")[1]).get("backlog", {})
            if b.get("queued", 0) == 0 and b.get("active", 1) <= 1:
                drained_in = time.monotonic() - t_drain
                break
            time.sleep(0.2)
        http(port, "POST", "/stats/reset")
        t_from = json.loads(http(port, "GET", "/stats")[1])["uptime_ms"] / 1000.0
        c_app0, c_normd0, busy0, w0 = cpu_ticks(app.pid), cpu_ticks(normd.pid), machine_busy_ticks(), time.monotonic()
        with RssSampler({"app": app.pid, "normd": normd.pid}, period=1.0) as sampler:
            res = load(port, wl["bodies"], wl["rate"], wl["duration"], tag, check_answer)
        c_app1, c_normd1, busy1, w1 = cpu_ticks(app.pid), cpu_ticks(normd.pid), machine_busy_ticks(), time.monotonic()
        stats = json.loads(http(port, "GET", "/stats")[1])
        t_to = stats["uptime_ms"] / 1000.0
        mem_app, mem_normd = proc_status(app.pid), proc_status(normd.pid)
    finally:
        if app is not None:
            stop(app)
        stop(normd)
    gc = parse_gc_log(gclog, t_from, t_to)
    served = stats["latency"]["count"]
    app_cpu_s = (c_app1 - c_app0) / TICK
    normd_cpu_s = (c_normd1 - c_normd0) / TICK
    rss_app = rss_samples(sampler, "app") or [mem_app.get("VmRSS", 0)]
    rss_normd = rss_samples(sampler, "normd") or [mem_normd.get("VmRSS", 0)]
    run = {
        "tag": tag, "set": wl["name"], "rollout": rollout, "rate": wl["rate"], "duration_s": wl["duration"],
        "warmup_s": wl["warmup"], "warmup_errors": warm["errors"], "warmup_statuses": warm["statuses"],
        "warmup_backlog_drained_s": drained_in,
        "load": res, "app_stats": stats, "gc": gc,
        "served": served,
        "by_path": {"normd": stats["requests"]["normd"], "inapp": stats["requests"]["inapp"]},
        "inapp_reasons": stats["requests"]["inapp_reasons"],
        "endpoint_ms": {k: stats["latency"][k] for k in ("p50", "p95", "p99", "max", "mean")},
        "rss_mb": {
            "app_end": mem_app.get("VmRSS", 0) / 2**20, "app_mean": statistics.mean(rss_app) / 2**20,
            "app_max": max(rss_app) / 2**20, "app_hwm": mem_app.get("VmHWM", 0) / 2**20,
            "normd_end": mem_normd.get("VmRSS", 0) / 2**20, "normd_mean": statistics.mean(rss_normd) / 2**20,
            "normd_max": max(rss_normd) / 2**20,
        },
        "heap_used_mb_end": stats["process"]["heap_used_bytes"] / 2**20,
        "cpu_s": {"app": app_cpu_s, "normd": normd_cpu_s},
        "cpu_us_per_req": {
            "app": app_cpu_s / served * 1e6 if served else None,
            "normd": normd_cpu_s / served * 1e6 if served else None,
            "total": (app_cpu_s + normd_cpu_s) / served * 1e6 if served else None,
        },
        "machine_busy_cores": (busy1 - busy0) / TICK / (w1 - w0),
        "loadavg_before": run_loadavg, "loadavg_after": os.getloadavg(),
    }
    run["rss_mb"]["sum_mean"] = run["rss_mb"]["app_mean"] + run["rss_mb"]["normd_mean"]
    run["rss_mb"]["sum_end"] = run["rss_mb"]["app_end"] + run["rss_mb"]["normd_end"]
    bad = {k: v for k, v in res["statuses"].items() if k != 200}
    run["broken"] = []
    if bad:
        run["broken"].append(f"non-200 answers {bad}")
    if res["errors"]:
        run["broken"].append(f"generator errors {res['errors']}")
    if any(k != "unanswered after 10 s" for k in warm["errors"]):
        run["broken"].append(f"warm-up errors {warm['errors']}")
    if rollout == 100 and stats["requests"]["inapp"]:
        run["note"] = f"{stats['requests']['inapp']} calls fell back in-app: {stats['requests']['inapp_reasons']}"
        if ctx.smoke and not stats["requests"]["normd"]:
            run["broken"].append("ROLLOUT=100 but normd answered no call")
    print(f"    served {served}, endpoint p50/p99 {fmt(run['endpoint_ms']['p50'])}/{fmt(run['endpoint_ms']['p99'])} ms, "
          f"GC {gc['count']} pauses p95 {fmt(gc['p95_ms'])} ms total {fmt(gc['total_ms'])} ms, "
          f"RSS app {run['rss_mb']['app_mean']:.0f} + normd {run['rss_mb']['normd_mean']:.0f} MiB, "
          f"CPU {fmt(run['cpu_us_per_req']['total'], 0)} µs/req, busy {run['machine_busy_cores']:.2f}"
          + (f"  BROKEN: {run['broken']}" if run["broken"] else ""), flush=True)
    return run


def fmt(v, nd=2):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


# ----------------------------------------------------------------------------- report


def median_of(runs, f):
    vals = [f(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def table_for(wl_name: str, runs: list[dict]) -> list[str]:
    r0 = [r for r in runs if r["set"] == wl_name and r["rollout"] == 0]
    r1 = [r for r in runs if r["set"] == wl_name and r["rollout"] == 100]
    if not r0 or not r1:
        return []
    a = lambda f, nd=2: fmt(median_of(r0, f), nd)  # noqa: E731
    b = lambda f, nd=2: fmt(median_of(r1, f), nd)  # noqa: E731
    rows = [
        ("requests answered in the window", lambda r: r["served"], 0),
        ("answered by normd / in-app", None, None),
        ("**GC pause p95** ms", lambda r: r["gc"]["p95_ms"], 2),
        ("GC pauses: count / p50 / p99 / max ms", None, None),
        ("GC pause total ms (share of the window)", None, None),
        ("stop-the-world total ms (all safepoints)", lambda r: r["gc"]["safepoint_total_ms"], 1),
        ("**heap after GC** MiB (median / max)", None, None),
        ("heap before GC MiB (median)", lambda r: r["gc"]["heap_before_gc_mb_median"], 0),
        ("app RSS MiB (mean / max in the window)", None, None),
        ("normd RSS MiB (mean / max)", None, None),
        ("**memory: app + normd RSS** MiB (mean)", lambda r: r["rss_mb"]["sum_mean"], 1),
        ("**endpoint p50 / p95 / p99** ms (app's histogram)", None, None),
        ("client-side p50 / p99 ms (from scheduled send)", None, None),
        ("app CPU / normd CPU (s in the window)", None, None),
        ("**CPU per request** µs (app + normd)", lambda r: r["cpu_us_per_req"]["total"], 0),
        ("… of which app / normd µs", None, None),
        ("machine busy (cores, of 2)", lambda r: r["machine_busy_cores"], 2),
    ]
    out = ["| | ROLLOUT=0 (in-app) | ROLLOUT=100 (normd) |", "| --- | ---: | ---: |"]
    for label, f, nd in rows:
        if f is not None:
            out.append(f"| {label} | {a(f, nd)} | {b(f, nd)} |")
            continue
        cells = []
        for rs, g in ((r0, a), (r1, b)):
            if label.startswith("answered by"):
                cells.append(f"{g(lambda r: r['by_path']['normd'], 0)} / {g(lambda r: r['by_path']['inapp'], 0)}")
            elif label.startswith("GC pauses"):
                cells.append(" / ".join([g(lambda r: r["gc"]["count"], 0), g(lambda r: r["gc"]["p50_ms"]),
                                         g(lambda r: r["gc"]["p99_ms"]), g(lambda r: r["gc"]["max_ms"])]))
            elif label.startswith("GC pause total"):
                tot = median_of(rs, lambda r: r["gc"]["total_ms"])
                share = median_of(rs, lambda r: r["gc"]["total_ms"] / (r["duration_s"] * 10))
                cells.append(f"{fmt(tot, 1)} ({fmt(share, 2)} %)")
            elif label.startswith("**heap after"):
                cells.append(f"{g(lambda r: r['gc']['heap_after_gc_mb']['median'], 0)} / "
                             f"{g(lambda r: r['gc']['heap_after_gc_mb']['max'], 0)}")
            elif label.startswith("app RSS"):
                cells.append(f"{g(lambda r: r['rss_mb']['app_mean'], 1)} / {g(lambda r: r['rss_mb']['app_max'], 1)}")
            elif label.startswith("normd RSS"):
                cells.append(f"{g(lambda r: r['rss_mb']['normd_mean'], 1)} / {g(lambda r: r['rss_mb']['normd_max'], 1)}")
            elif label.startswith("**endpoint"):
                cells.append(" / ".join(g(lambda r, k=k: r["endpoint_ms"][k], 3) for k in ("p50", "p95", "p99")))
            elif label.startswith("client-side"):
                cells.append(f"{g(lambda r: r['load']['p50_ms'], 3)} / {g(lambda r: r['load']['p99_ms'], 3)}")
            elif label.startswith("app CPU"):
                cells.append(f"{g(lambda r: r['cpu_s']['app'], 1)} / {g(lambda r: r['cpu_s']['normd'], 1)}")
            elif label.startswith("… of which"):
                cells.append(f"{g(lambda r: r['cpu_us_per_req']['app'], 0)} / {g(lambda r: r['cpu_us_per_req']['normd'], 0)}")
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if len(r0) > 1 or len(r1) > 1:
        out.append("")
        out.append(f"Medians over {len(r0)} + {len(r1)} runs. Run by run:")
        for r in r0 + r1:
            out.append(f"- {r['tag']}: endpoint p99 {fmt(r['endpoint_ms']['p99'], 3)} ms, GC p95 {fmt(r['gc']['p95_ms'])} ms, "
                       f"app RSS {fmt(r['rss_mb']['app_mean'], 1)} MiB, CPU {fmt(r['cpu_us_per_req']['total'], 0)} µs/req")
    return out


def plot(runs: list[dict], out: pathlib.Path, sets: list[str]) -> list[str]:
    """GC pauses over time, both rollouts, one panel per workload. PNG with matplotlib,
    else a hand-written SVG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [plot_svg(runs, out, s) for s in sets]
    files = []
    for s in sets:
        rs = [r for r in runs if r["set"] == s]
        if not rs:
            continue
        fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
        for r in rs:
            color = "tab:red" if r["rollout"] == 0 else "tab:blue"
            lab = "ROLLOUT=0 (in-app)" if r["rollout"] == 0 else "ROLLOUT=100 (normd)"
            t = [p["t"] for p in r["gc"]["pauses"]]
            ms = [p["ms"] for p in r["gc"]["pauses"]]
            axes[0].vlines(t, 0, ms, color=color, alpha=0.6, linewidth=1)
            axes[0].scatter(t, ms, s=10, color=color, label=f"{lab}: {len(ms)} pauses, p95 {fmt(r['gc']['p95_ms'])} ms, "
                                                              f"total {fmt(r['gc']['total_ms'], 0)} ms")
            axes[1].plot(t, [p["after_mb"] for p in r["gc"]["pauses"]], marker=".", color=color, linewidth=1,
                         label=f"{lab}: heap after GC")
        axes[0].set_ylabel("GC pause (ms)")
        axes[0].set_title(f"G1 pauses over the measured window — {s} set at {rs[0]['rate']}/s, -Xmx{CTX_HEAP[0]}")
        axes[0].legend(fontsize=8, loc="upper right")
        axes[0].set_ylim(bottom=0)
        axes[0].set_xlim(0, max(r["duration_s"] for r in rs))
        axes[1].set_ylabel("heap after GC (MiB)")
        axes[1].set_xlabel("seconds since /stats/reset")
        axes[1].legend(fontsize=8, loc="lower right")
        axes[1].set_ylim(bottom=0)
        fig.tight_layout()
        f = out / f"gc-pauses-{s}.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f.name)
    return files


def plot_svg(runs, out, s) -> str:
    rs = [r for r in runs if r["set"] == s]
    W, H, L, B = 900, 320, 60, 40
    tmax = max((r["duration_s"] for r in rs), default=1)
    mmax = max((p["ms"] for r in rs for p in r["gc"]["pauses"]), default=1) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<text x="{L}" y="15">GC pauses over time, {s} set (red: in-app, blue: normd)</text>',
             f'<line x1="{L}" y1="{H - B}" x2="{W - 10}" y2="{H - B}" stroke="black"/>',
             f'<line x1="{L}" y1="25" x2="{L}" y2="{H - B}" stroke="black"/>',
             f'<text x="5" y="30">{mmax:.1f} ms</text><text x="{W - 60}" y="{H - 10}">{tmax} s</text>']
    for r in rs:
        c = "red" if r["rollout"] == 0 else "blue"
        for p in r["gc"]["pauses"]:
            x = L + (W - 10 - L) * p["t"] / tmax
            y = (H - B) - (H - B - 25) * p["ms"] / mmax
            parts.append(f'<line x1="{x:.1f}" y1="{H - B}" x2="{x:.1f}" y2="{y:.1f}" stroke="{c}" stroke-opacity="0.6"/>')
    parts.append("</svg>")
    f = out / f"gc-pauses-{s}.svg"
    f.write_text("\n".join(parts))
    return f.name


CTX_HEAP = ["256m"]


def size_table(ctx, runs: list[dict]) -> list[str]:
    """One row per payload set: where normd starts to win, in CPU and in latency."""
    out = ["| set (mean bytes) | rate/s | CPU µs/req in-app | CPU µs/req normd path (app + normd) | normd ÷ in-app CPU "
           "| endpoint p50 ms in-app / normd | endpoint p99 ms in-app / normd | GC pause ms per 1000 req in-app / normd "
           "| GC pauses per 1000 req in-app / normd |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = []
    for wl in ctx.workloads:
        r0 = [r for r in runs if r["set"] == wl["name"] and r["rollout"] == 0]
        r1 = [r for r in runs if r["set"] == wl["name"] and r["rollout"] == 100]
        if not r0 or not r1:
            continue
        m = lambda rs, f: median_of(rs, f)  # noqa: E731
        c0 = m(r0, lambda r: r["cpu_us_per_req"]["total"])
        c1 = m(r1, lambda r: r["cpu_us_per_req"]["total"])
        c1a = m(r1, lambda r: r["cpu_us_per_req"]["app"])
        c1n = m(r1, lambda r: r["cpu_us_per_req"]["normd"])
        g = lambda rs, k: m(rs, lambda r: r["gc"][k] / r["served"] * 1000 if r["served"] else None)  # noqa: E731
        rows.append((ctx.sets[wl["name"]]["mean"], f"| {wl['name']} ({ctx.sets[wl['name']]['mean']:,.0f}) | {wl['rate']} | {fmt(c0, 0)} "
                     f"| {fmt(c1, 0)} ({fmt(c1a, 0)} + {fmt(c1n, 0)}) | {fmt(c1 / c0 if c0 and c1 else None)} "
                     f"| {fmt(m(r0, lambda r: r['endpoint_ms']['p50']), 3)} / {fmt(m(r1, lambda r: r['endpoint_ms']['p50']), 3)} "
                     f"| {fmt(m(r0, lambda r: r['endpoint_ms']['p99']), 3)} / {fmt(m(r1, lambda r: r['endpoint_ms']['p99']), 3)} "
                     f"| {fmt(g(r0, 'total_ms'), 1)} / {fmt(g(r1, 'total_ms'), 1)} | {fmt(g(r0, 'count'), 2)} / {fmt(g(r1, 'count'), 2)} |"))
    return out + [r[1] for r in sorted(rows)] if rows else []


def write_report(ctx, runs: list[dict], out: pathlib.Path, plots: list[str]):
    L = [f"# normd on the JVM — before/after ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC)", ""]
    L.append(f"- command: `{ctx.command}`")
    L.append(f"- normd: `{ctx.normd_label}`; app: `loadtest/app-jvm` (JDK {ctx.java_version}), repo `{ctx.rev}`")
    L.append(f"- JVM: `-XX:+UseG1GC -Xms{ctx.heap} -Xmx{ctx.heap}` {' '.join(ctx.jvm_args)}, "
             f"`CACHE_MB={ctx.cache_mb}` (LRU of recent orders), `WORKERS={ctx.workers}`, `NORMD_DEADLINE_MS={ctx.deadline_ms}`")
    L.append(f"- placement: app on core {ctx.app_cpu} (the JVM sees 1 CPU), normd (`--workers 1`) and the load generator "
             f"on core {ctx.normd_cpu}; machine {os.cpu_count()} CPUs; load average at start {ctx.loadavg}")
    L.append("- generator: `loadtest/jvm.py` (asyncio open loop, keep-alive, latency from the scheduled send time)")
    for s, info in ctx.sets.items():
        L.append(f"- payload set `{s}`: {info['n']} documents, mean {info['mean']:.0f} B ({info['src']})")
    L.append("")
    st = size_table(ctx, runs)
    if st:
        L.append("## By payload size")
        L.append("")
        L += st
        L.append("")
    for wl in ctx.workloads:
        t = table_for(wl["name"], runs)
        if not t:
            continue
        L.append(f"## {wl['name']} set at {wl['rate']}/s ({wl['warmup']} s warm-up, {wl['duration']} s measured)")
        L.append("")
        L += t
        L.append("")
        for r in runs:
            if r["set"] == wl["name"] and (r.get("note") or r["broken"]):
                L.append(f"- {r['tag']}: {r.get('note', '')} {'BROKEN: ' + '; '.join(r['broken']) if r['broken'] else ''}")
        f = next((p for p in plots if p.startswith(f"gc-pauses-{wl['name']}.")), None)
        if f:
            L.append(f"![GC pauses {wl['name']}]({f})")
            L.append("")
    (out / "report.md").write_text("\n".join(L) + "\n")


# ----------------------------------------------------------------------------- main


def payload_set(shared: pathlib.Path, name: str, tmp: pathlib.Path) -> tuple[list[bytes], str]:
    d = shared / "bench" / "payloads" / name
    if d.is_dir():
        return [f.read_bytes() for f in sorted(d.glob("*.json"))], f"shared/bench/payloads/{name}"
    m = re.fullmatch(r"(\d+)k", name)
    if not m:
        sys.exit(f"jvm.py: no payload set {name}")
    # Sizes between the shared sets: gen_payloads.make_doc with as many line items as it
    # takes (deterministic seed), ~165 B of JSON per item over a ~1.2 KB fixed part.
    sys.path.insert(0, str(shared / "bench"))
    import gen_payloads  # noqa: E402
    target = int(m.group(1)) * 1024
    r = random.Random(20261207 + target)
    n_items = max(1, round((target - 1200) / 160))
    docs = []
    for _ in range(40):
        raw = gen_payloads.dump(gen_payloads.make_doc(r, n_items))
        docs.append(raw.encode() if isinstance(raw, str) else raw)
    return docs, f"generated with shared/bench/gen_payloads.make_doc, {n_items} items each"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), help="normd binary (default $NORMD_BIN)")
    ap.add_argument("--out", help="results directory (default loadtest/results/<UTC date>-jvm)")
    ap.add_argument("--workload", action="append", metavar="SET:RATE:SECONDS:WARMUP",
                    help="e.g. 4k:1000:150:30 (repeatable; default: 4k and 64k main runs, 1k and 16k short)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per rollout and workload, interleaved (0,100,0,100…)")
    ap.add_argument("--heap", default="256m", help="-Xms/-Xmx (default 256m)")
    ap.add_argument("--cache-mb", type=int, default=64, help="the app's LRU working set budget (default 64)")
    ap.add_argument("--workers", type=int, default=16, help="the app's handler threads (default 16)")
    ap.add_argument("--deadline-ms", type=int, help="NORMD_DEADLINE_MS (default 200, so a busy VM's stalls do not open the "
                    "client's breaker and the 'after' run measures normd, not the fallback; --deadline-ms 20 for the "
                    "production budget; --smoke: 1000, for a debug normd)")
    ap.add_argument("--jvm-arg", action="append", default=[], help="extra JVM option (repeatable)")
    ap.add_argument("--app-cpu", default="1")
    ap.add_argument("--normd-cpu", default="0")
    ap.add_argument("--smoke", action="store_true", help="CI: a few seconds per run, 4k and 64k, no plot")
    ap.add_argument("--no-build", action="store_true", help="do not run app-jvm/build.sh")
    ap.add_argument("--max-load", type=float, help="before each run, wait (at most 5 min) for a 1-min load average ≤ this")
    args = ap.parse_args()
    if not args.normd or not os.access(args.normd, os.X_OK):
        sys.exit("jvm.py: --normd PATH (or NORMD_BIN) must name a normd binary")

    ctx = Ctx()
    ctx.normd = os.path.abspath(args.normd)
    ctx.normd_label = os.path.relpath(ctx.normd, REPO) if ctx.normd.startswith(str(REPO)) else ctx.normd
    ctx.heap, ctx.cache_mb, ctx.workers = args.heap, args.cache_mb, args.workers
    ctx.deadline_ms = args.deadline_ms or (1000 if args.smoke else 200)
    CTX_HEAP[0] = args.heap
    ctx.jvm_args = args.jvm_arg
    ctx.app_cpu, ctx.normd_cpu = args.app_cpu, args.normd_cpu
    ctx.max_load = args.max_load
    ctx.smoke = args.smoke
    ctx.tmp = pathlib.Path(tempfile.mkdtemp(prefix="normd-jvm-"))
    ctx.command = "python3 loadtest/jvm.py " + " ".join(a if a == "" or " " not in a else repr(a) for a in sys.argv[1:])
    ctx.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        ctx.rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() \
            + (" + uncommitted changes" if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout.strip() else "")
    except OSError:
        ctx.rev = "?"
    jv = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    ctx.java_version = (re.search(r'version "([^"]+)"', jv) or re.search(r"(.*)", jv)).group(1)

    if not args.no_build:
        subprocess.run([str(APP_DIR / "build.sh")], check=True, stdout=subprocess.DEVNULL)
    ctx.classpath = (APP_DIR / "build" / "classpath").read_text().strip()

    if args.workload:
        specs = args.workload
    elif args.smoke:
        specs = ["4k:200:2:1.5", "64k:30:2:1.5"]
    else:
        specs = ["4k:800:120:40", "64k:80:120:40", "1k:800:45:20", "16k:300:45:20"]
    shared = shared_dir()
    ctx.workloads, ctx.sets = [], {}
    for spec in specs:
        name, rate, dur, warm = spec.split(":")
        bodies, src = payload_set(shared, name, ctx.tmp)
        ctx.sets[name] = {"n": len(bodies), "mean": statistics.mean(len(b) for b in bodies), "src": src}
        ctx.workloads.append({"name": name, "rate": float(rate) if "." in rate else int(rate), "duration": float(dur),
                              "warmup": float(warm), "bodies": bodies})
    total = sum((w["duration"] + w["warmup"] + 8) * 2 * args.repeats for w in ctx.workloads)
    if total > 40 * 60:
        sys.exit(f"jvm.py: that plan takes ≈ {total / 60:.0f} min; keep it under 40")
    out = pathlib.Path(args.out) if args.out else (HERE / "results" / (
        "smoke-jvm" if args.smoke else f"{datetime.datetime.utcnow():%Y-%m-%d}-jvm"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw").mkdir(exist_ok=True)
    print(f"jvm.py: {len(ctx.workloads)} workloads × 2 rollouts × {args.repeats}: ≈ {total / 60:.1f} min; out {out}", flush=True)

    runs = []
    broken = []
    try:
        for wl in ctx.workloads:
            for rep in range(args.repeats):
                for rollout in (0, 100):
                    try:
                        r = one_run(ctx, wl, rollout, rep)
                    except (RuntimeError, OSError) as e:
                        broken.append(f"{wl['name']}-{rollout}: {e}")
                        print(f"    FAILED: {e}", flush=True)
                        continue
                    runs.append(r)
                    broken += [f"{r['tag']}: {b}" for b in r["broken"]]
                    raw = {k: v for k, v in r.items() if k not in ("gc",)}
                    raw["gc"] = {k: v for k, v in r["gc"].items() if k != "pauses"}
                    (out / "raw" / f"{r['tag']}.json").write_text(json.dumps(raw, indent=1, default=str))
                    (out / "raw" / f"{r['tag']}-gc-pauses.json").write_text(json.dumps(r["gc"]["pauses"]))
    finally:
        for p in list(CHILDREN):
            stop(p, 5)
    plots = [] if args.smoke else plot(runs, out, [w["name"] for w in ctx.workloads])
    summary = {"meta": {"command": ctx.command, "normd": ctx.normd_label, "heap": ctx.heap, "cache_mb": ctx.cache_mb,
                        "workers": ctx.workers, "java": ctx.java_version, "rev": ctx.rev, "loadavg_start": ctx.loadavg,
                        "sets": ctx.sets, "broken": broken},
               "runs": [{k: v for k, v in r.items() if k not in ("app_stats", "load", "gc")}
                        | {"gc": {k: v for k, v in r["gc"].items() if k != "pauses"},
                           "client": {k: v for k, v in r["load"].items() if k != "p99_by_second_ms"}} for r in runs]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_report(ctx, runs, out, plots)
    print()
    print((out / "report.md").read_text())
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    if broken:
        print("jvm.py: BROKEN:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
