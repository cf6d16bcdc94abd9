#!/usr/bin/env python3
"""Small jobs inline on the I/O thread, or always on the pool: two builds side by side.

Runs two normd binaries (--before: every job on the pool; --after: small jobs inline when
the pool is idle) in interleaved rounds, each under three loads, with the loader of
cpu_split.py (normd on core 0 with `--workers 1`, the loader on core 1, the 4 KB set,
`POST /norm?schema=order.v1`, Unix socket):

- saturation: 32 keep-alive connections, closed loop, and one more connection sending
  `GET /livez` every --livez-ms: the promise under test is that health checks and other
  connections do not wait longer behind work than before;
- half: the same 32 connections paced at half the *before* build's saturated rate in the
  same round (open loop while fewer than 32 are outstanding), with the /livez prober;
- light: one connection, closed loop (each call alone, the sidecar's everyday case).

Per load and build: CPU per call (user+sys, and on-CPU from schedstat), context switches
per call, req/s, /norm latency p50/p99, /livez latency p50/p99/max, and the share of calls
whose job ran inline (`normd_jobs_inline_total`, read from /metrics after the window).

  python3 loadtest/inline.py --before /tmp/a/normd --after /tmp/b/normd --out DIR

Stdlib only. Traffic goes only to a Unix socket in a private temp dir; every loop is
bounded in time and count; normd is stopped whatever happens. Writes inline.json and
inline.md to --out.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import cpu_split  # noqa: E402
from lt.children import exit_on_signals, kill_children, stop  # noqa: E402
from lt.httpclient import http  # noqa: E402
from lt.log import log  # noqa: E402

LOADS = ("saturation", "half", "light")


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def inline_jobs(sock: str) -> float | None:
    """normd_jobs_inline_total from /metrics (None when the build has no such series)."""
    try:
        status, body = http(("unix", sock), "GET", "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("normd_jobs_inline_total"):
            return float(line.split()[-1])
    return None


def one(a, binary: str, load: str, rate: float | None, reqs: list[bytes]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="normd-inline-"))
    try:
        a.normd = binary
        p, sock = cpu_split.start_normd(a, tmp)
        conns = 1 if load == "light" else a.conns
        livez = None if load == "light" else a.livez_ms / 1000
        inline_before = inline_jobs(sock)
        res = cpu_split.load(sock, reqs, conns, a.warmup, a.duration, a.max_calls, p.pid,
                             rate=rate if load == "half" else None, livez_every=livez)
        inline_after = inline_jobs(sock)
        stop(p)
        f = cpu_split.figures(res)
        # The counter also counts warm-up calls: the share is of all calls answered.
        total = res["calls"]
        f["inline_jobs"] = None if inline_after is None else inline_after - (inline_before or 0)
        f["norm_p50_ms"] = 1000 * (pct(res["latencies_s"], 0.50) or 0)
        f["norm_p99_ms"] = 1000 * (pct(res["latencies_s"], 0.99) or 0)
        lz = res["livez_s"]
        f["livez_n"] = len(lz)
        f["livez_p50_ms"] = 1000 * pct(lz, 0.50) if lz else None
        f["livez_p99_ms"] = 1000 * pct(lz, 0.99) if lz else None
        f["livez_max_ms"] = 1000 * max(lz) if lz else None
        f["window_calls"] = total
        f["cpu_us_per_call"] = f["user_us_per_call"] + f["system_us_per_call"]
        return f
    finally:
        kill_children()
        shutil.rmtree(tmp, ignore_errors=True)


def med(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def md(R: dict) -> str:
    L = []
    w = L.append
    w("# Small jobs inline, or every job on the pool")
    w("")
    w(f"{R['stamp']} · before `{R['before']}` · after `{R['after']}` · {R['documents']} documents of "
      f"{R['payloads']} (mean {R['mean_bytes']} B) · `POST {R['url']}` · normd `--workers 1` on core 0, loader on "
      f"core 1 · {R['rounds']} interleaved round(s), {R['warmup']} s warm-up + {R['duration']} s window each · "
      f"/livez every {R['livez_ms']} ms · load average at start {R['loadavg_start']}, at end {R['loadavg_end']}")
    w("")
    w("Medians over the rounds (per call unless said):")
    w("")
    w("| load | build | req/s | CPU µs (user+sys) | on-CPU µs | ctx switches | jobs inline | /norm p50 / p99 ms "
      "| /livez p50 / p99 / max ms |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def f(v, d=1):
        return "–" if v is None else f"{v:,.{d}f}"

    for load in LOADS:
        for build in ("before", "after"):
            runs = [r[load][build] for r in R["rounds_data"] if load in r]
            if not runs:
                continue
            share = None
            if all(r.get("inline_jobs") is not None for r in runs):
                share = statistics.median(
                    100 * r["inline_jobs"] / max(1, r["window_calls"]) for r in runs)
            lz = "–" if med(runs, "livez_p50_ms") is None else (
                f"{f(med(runs, 'livez_p50_ms'), 2)} / {f(med(runs, 'livez_p99_ms'), 2)} / "
                f"{f(med(runs, 'livez_max_ms'), 2)}")
            w(f"| {load} | {build} | {f(med(runs, 'rps'), 0)} | **{f(med(runs, 'cpu_us_per_call'))}** | "
              f"{f(med(runs, 'oncpu_us_per_call'))} | {f(med(runs, 'ctx_voluntary_per_call'), 2)} + "
              f"{f(med(runs, 'ctx_nonvoluntary_per_call'), 2)} | {'–' if share is None else f'{share:.0f} %'} | "
              f"{f(med(runs, 'norm_p50_ms'), 2)} / {f(med(runs, 'norm_p99_ms'), 2)} | {lz} |")
    w("")
    w("Per round (CPU µs per call, user+sys; /livez p99 ms):")
    w("")
    for load in LOADS:
        cells = []
        for r in R["rounds_data"]:
            if load not in r:
                continue
            b, x = r[load]["before"], r[load]["after"]
            lz = ""
            if b.get("livez_p99_ms") is not None:
                lz = f", /livez p99 {b['livez_p99_ms']:.2f} → {x['livez_p99_ms']:.2f}"
            cells.append(f"{b['cpu_us_per_call']:.1f} → {x['cpu_us_per_call']:.1f}{lz}")
        w(f"- {load}: " + "; ".join(cells))
    w("")
    w("- *jobs inline*: `normd_jobs_inline_total` over the run ÷ calls answered in the window (the counter "
      "includes the warm-up, so the share reads high by up to warm-up ÷ window at 100 %); `–`: the build has "
      "no such counter.")
    w("- *half*: paced at half the before build's saturated req/s of the same round.")
    w("- CPU from utime/stime of every normd thread (1/CLK_TCK s ticks) over the window; on-CPU from "
      "schedstat; context switches voluntary + involuntary, all threads. Latencies are the loader's view "
      "(Python, on its own core). Wall-clock figures on this shared VM move ±25 % between runs: compare within "
      "a round.")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--payloads", type=Path, default=cpu_split.DEFAULT_PAYLOADS)
    ap.add_argument("--schemas", type=Path, default=cpu_split.REPO / "schemas")
    ap.add_argument("--url", default="/norm?schema=order.v1")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--max-calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--livez-ms", type=float, default=5.0)
    ap.add_argument("--loads", default=",".join(LOADS), help="comma-separated subset of " + ",".join(LOADS))
    ap.add_argument("--normd-arg", action="append", default=[])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    loads = [x for x in a.loads.split(",") if x]
    if any(x not in LOADS for x in loads):
        raise SystemExit(f"--loads: one of {LOADS}")
    before, after = str(Path(a.before).resolve()), str(Path(a.after).resolve())
    docs, reqs = cpu_split.norm_requests(a.payloads, a.url)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu_split.LOADER_CPU})
    exit_on_signals(kill_children)
    R = {"stamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "before": before,
         "after": after, "payloads": str(a.payloads), "documents": len(docs),
         "mean_bytes": round(sum(map(len, docs)) / len(docs)), "url": a.url, "rounds": a.rounds,
         "warmup": a.warmup, "duration": a.duration, "livez_ms": a.livez_ms,
         "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "rounds_data": []}
    try:
        for i in range(a.rounds):
            rd: dict = {}
            sat_rate = None
            for load in loads:
                rd[load] = {}
                for build, binary in (("before", before), ("after", after)):
                    if load == "half" and sat_rate is None:
                        raise SystemExit("--loads: half needs saturation first")
                    rate = sat_rate / 2 if load == "half" else None
                    log(f"round {i + 1}/{a.rounds}: {load}, {build}")
                    r = one(a, binary, load, rate, reqs)
                    rd[load][build] = r
                    log(f"  {r['rps']:,.0f} req/s, {r['cpu_us_per_call']:.1f} µs CPU/call, inline "
                        f"{r['inline_jobs']}, /norm p99 {r['norm_p99_ms']:.2f} ms, /livez p99 "
                        f"{r['livez_p99_ms'] if r['livez_p99_ms'] is None else round(r['livez_p99_ms'], 2)} ms")
                    if load == "saturation" and build == "before":
                        sat_rate = r["rps"]
            R["rounds_data"].append(rd)
    finally:
        kill_children()
    R["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "inline.json").write_text(json.dumps(R, indent=1) + "\n")
    (a.out / "inline.md").write_text(md(R) + "\n")
    log(f"wrote {a.out}/inline.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()
