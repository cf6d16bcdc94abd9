#!/usr/bin/env python3
"""What the client itself costs per call: a 4 KB POST /norm through
NormdClient.norm() vs a bare http.client call over the same Unix socket,
sequential, interleaved call by call so both see the same normd and machine.

    NORMD_BIN=/path/to/normd python3 bench_overhead.py [--calls 2000] [--max-seconds 60]
    python3 bench_overhead.py --socket /run/normd/normd.sock   # an already running normd

The difference of the medians is the client's overhead (routing, breaker,
header building and checks, the deadline-bounded reader, Result). Wall-clock
numbers on a shared machine: compare runs side by side, not across machines.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.client import HTTPConnection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from normd_client import NormdClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def start_normd(binary: str, tmp: str):
    sock = os.path.join(tmp, "normd.sock")
    log_path = os.path.join(tmp, "normd.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--socket", sock, "--listen", "", "--schemas", str(REPO / "schemas"),
         "--flags", "", "--drain-delay-ms", "0", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=log)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"normd exited: {Path(log_path).read_text()[-2000:]}")
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return proc, log, sock
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("normd did not listen within 10 s")


def bare_conn(sock_path: str) -> HTTPConnection:
    conn = HTTPConnection("localhost", timeout=5)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock_path)
    conn.sock = s
    return conn


def bare_call(conn: HTTPConnection, body: bytes) -> bytes:
    conn.request("POST", "/norm", body=body, headers={"Host": "localhost", "Content-Type": "application/json",
                                                     "X-Deadline-Ms": "1000"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"bare call answered {r.status}: {data[:200]!r}")
    return data


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="stop measuring after this long")
    ap.add_argument("--payloads", default="/work/shared/bench/payloads/4k")
    ap.add_argument("--socket", help="use a running normd instead of starting $NORMD_BIN")
    args = ap.parse_args()

    payloads = [Path(p).read_bytes() for p in sorted(glob.glob(os.path.join(args.payloads, "*.json")))]
    if not payloads:
        raise SystemExit(f"no payloads in {args.payloads}")
    proc = log = None
    tmp = tempfile.mkdtemp(prefix="normd-py-bench-")
    try:
        if args.socket:
            sock = args.socket
        else:
            binary = os.environ.get("NORMD_BIN")
            if not binary:
                raise SystemExit("set NORMD_BIN or pass --socket")
            proc, log, sock = start_normd(binary, tmp)
        client = NormdClient(sock, rollout_percent=100, deadline_ms=1000, fallback=None)
        conn = bare_conn(sock)
        try:
            for i in range(args.warmup):
                body = payloads[i % len(payloads)]
                client.norm(body)
                bare_call(conn, body)
            t_client, t_bare = [], []
            stop_at = time.monotonic() + args.max_seconds
            for i in range(args.calls):
                if time.monotonic() > stop_at:
                    print(f"time bound reached after {i} calls", file=sys.stderr)
                    break
                body = payloads[i % len(payloads)]
                # Alternate which goes first: the second of a pair finds normd
                # (and the CPU caches) warmer, and that must not count as overhead.
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    t0 = time.perf_counter_ns()
                    if which == 0:
                        r = client.norm(body)
                    else:
                        bare_call(conn, body)
                    dt = (time.perf_counter_ns() - t0) / 1000
                    (t_client if which == 0 else t_bare).append(dt)
                if r.path != "normd":
                    raise SystemExit(f"client fell back: {r.reason}")
            s = client.stats()
        finally:
            client.close()
            conn.close()
        n = len(t_client)
        mean_size = statistics.mean(len(p) for p in payloads)
        print(f"{n} sequential POST /norm calls each, {len(payloads)} payloads of {mean_size:.0f} B mean, "
              f"Python {sys.version.split()[0]}")
        print(f"{'':22}{'median µs':>10}{'p99 µs':>10}{'mean µs':>10}")
        for name, xs in (("bare http.client", t_bare), ("NormdClient.norm()", t_client)):
            print(f"{name:22}{statistics.median(xs):10.1f}{pct(xs, 99):10.1f}{statistics.mean(xs):10.1f}")
        print(f"{'overhead':22}{statistics.median(t_client) - statistics.median(t_bare):10.1f}"
              f"{pct(t_client, 99) - pct(t_bare, 99):10.1f}{statistics.mean(t_client) - statistics.mean(t_bare):10.1f}")
        pairs = [c - b for c, b in zip(t_client, t_bare)]
        print(f"{'overhead, per pair':22}{statistics.median(pairs):10.1f}{'':10}{statistics.mean(pairs):10.1f}"
              "   (median/mean of client - bare, call by call: steadier than a difference of medians)")
        print(json.dumps({"normd_ok": s["normd_ok"], "fallback_total": s["fallback_total"],
                          "retries": s["retries"]}))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if log is not None:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
