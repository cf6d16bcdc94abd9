#!/usr/bin/env python3
"""Anchors for issue #16 ("half the CPU per call"): normd's server CPU per call, measured in one
run beside the same job in-process (naive Rust loop) and in a Node app (the demo app's in-app path).

Three figures, each on core 0, interleaved over --rounds rounds (normd, naive, Node, normd, …) so
a busy spell of the shared machine hits all three alike; the table gives each one's median:

  normd   `loadtest/cpu_split.py --repeat 1` per round: `normd serve --workers 1` pinned to core 0,
          its stdlib closed-loop loader (32 keep-alive Unix-socket connections) on core 1,
          `POST /norm?schema=order.v1` (--url), a 3 s warm-up and a 10 s window; normd's
          utime+stime (and on-CPU, schedstat) summed over its threads ÷ calls answered.
  naive   `examples/naive_loop` (serde_json Value, trim, jsonschema, to_vec, a new flate2
          GzEncoder at level 1 per call, SHA-256) under `taskset -c 0`, --naive-count calls
          after one pass over the set; its own /proc/self/stat and schedstat.
  Node    `loadtest/anchors/node_loop.js` (loadtest/app/lib/inapp.js in a loop) under
          `taskset -c 0`, --node-count calls after --node-warmup; process.cpuUsage().

Optionally, instructions per call (user space, valgrind --tool=callgrind, counted the way
loadtest/callgrind.py counts `examples/pipeline_count`: the slope between two counts, 200 and
1200 by default, so start-up and schema compilation cancel out): the naive loop (--callgrind,
on by default when valgrind is installed), and with --callgrind-normd also normd's whole server
and pipeline alone (callgrind.py --repeat 1, a few minutes), so every CPU figure has a
figure that does not move with the machine's load beside it.

  cargo build --release --locked --target-dir /tmp/anchor-target --bin normd \\
    --example naive_loop --example pipeline_count
  (cd loadtest/app && npm ci)
  python3 loadtest/anchors.py --normd /tmp/anchor-target/release/normd --out /tmp/anchors

--naive defaults to $NAIVE_BIN, else examples/naive_loop beside --normd's directory ($NORMD_BIN
for --normd). Writes anchors.json and anchors.md to --out, and copies the small raw files there
(raw/: each round's cpu-split.md/json, callgrind.py's summary and tables, the naive counts'
stdout); the callgrind.out dumps stay in --raw (default a new /tmp dir). Stdlib only. Traffic goes only to a Unix socket in a private temp dir (cpu_split.py); every
child runs with a timeout, every loop is bounded in count, and every process this script started
is killed by pid at the end whatever happens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # lt/ and callgrind.py, from any working directory

from lt.children import CHILDREN, exit_on_signals, pin, terminate_children  # noqa: E402
from lt.context import wait_for_quiet_machine  # noqa: E402
from lt.log import log  # noqa: E402
from lt.procfs import machine_busy_ticks  # noqa: E402

REPO = HERE.parent
SHARED = Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
DEFAULT_PAYLOADS = SHARED / "bench" / "payloads" / "4k"
NODE_SCHEMA = SHARED / "bench" / "schemas" / "order.v1.json"  # the demo app's SCHEMA (run.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANCHOR_CPU, DRIVER_CPU = 0, 1
# The goal of issue #16: normd's server CPU per call ≤ these multiples of each anchor.
TARGETS = {"naive": 0.90, "node": 0.30}


def run(cmd: list[str], timeout: float, cwd: Path | None = None) -> str:
    """Runs cmd in its own session, bounded by timeout; returns stdout, raises on failure."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                         start_new_session=True)
    CHILDREN.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate_children()
        raise TimeoutError(f"{' '.join(cmd[:4])}…: no result within {timeout:.0f} s")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc {p.returncode}\n{err[-3000:]}")
    return out


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in: {text[-500:]!r}")


# ----------------------------------------------------------------------------- the three figures


def measure_normd(a, raw: Path, rnd: int) -> dict:
    out = raw / f"normd-round-{rnd}"
    cmd = [sys.executable, str(HERE / "cpu_split.py"), "--normd", a.normd, "--payloads", str(a.payloads),
           "--schemas", str(a.schemas), "--url", a.url, "--repeat", "1", "--warmup", str(a.split_warmup),
           "--duration", str(a.split_duration), "--out", str(out)]
    for x in a.normd_arg:
        cmd += ["--normd-arg", x]
    run(cmd, timeout=60 + a.split_warmup + a.split_duration + 90)
    R = json.loads((out / "cpu-split.json").read_text())
    r = R["runs"][0]
    return {"cpu_us_per_call": r["user_us_per_call"] + r["system_us_per_call"],
            "oncpu_us_per_call": r["oncpu_us_per_call"], "user_us_per_call": r["user_us_per_call"],
            "system_us_per_call": r["system_us_per_call"], "calls": r["calls"], "rps": r["rps"],
            "statuses": r["statuses"], "normd_cores": r["normd_cores"], "loader_cores": r["loader_cores"],
            "machine_busy_cores": r["machine_busy_cores"],
            "io_share_pct": r["groups"].get("io", {}).get("share_oncpu_pct"),
            "ctx_per_call": r["ctx_voluntary_per_call"] + r["ctx_nonvoluntary_per_call"]}


def measure_loop(cmd: list[str], timeout: float) -> dict:
    m0, t0 = machine_busy_ticks(), time.monotonic()
    out = run(pin(ANCHOR_CPU, cmd), timeout=timeout)
    wall = time.monotonic() - t0
    r = last_json(out)
    r["machine_busy_cores"] = (machine_busy_ticks() - m0) / CLK_TCK / wall
    return r


def measure_naive(a) -> dict:
    return measure_loop([a.naive, "--payloads", str(a.payloads), "--schemas", str(a.schemas),
                         "--count", str(a.naive_count)], timeout=a.loop_timeout)


def measure_node(a) -> dict:
    return measure_loop([a.node_bin, str(HERE / "anchors" / "node_loop.js"), "--payloads", str(a.payloads),
                         "--schema", str(a.node_schema), "--count", str(a.node_count),
                         "--warmup", str(a.node_warmup), "--max-seconds", str(int(a.loop_timeout) - 10)],
                        timeout=a.loop_timeout)


# ----------------------------------------------------------------------------- instructions


def callgrind_naive(a, raw: Path) -> dict:
    """The naive loop's instructions per call: (I(hi) − I(lo)) ÷ (hi − lo), as callgrind.py
    counts pipeline_count (its helpers: valgrind command line, dump parser, SHA-256 share)."""
    import callgrind as cg  # loadtest/callgrind.py (HERE is on sys.path): importing it runs nothing

    lo_n, hi_n = a.callgrind_counts
    parsed = {}
    t0 = time.monotonic()
    for n in (lo_n, hi_n):
        f = raw / f"naive-{n}.callgrind.out"
        cmd = cg.valgrind_cmd(f, [a.naive, "--payloads", str(a.payloads), "--schemas", str(a.schemas),
                                  "--count", str(n), "--warmup", "0"])
        (raw / f"naive-{n}.stdout").write_text(run(pin(ANCHOR_CPU, cmd), timeout=a.callgrind_timeout))
        parsed[n] = cg.parse_out(f)
    lo, hi = parsed[lo_n], parsed[hi_n]
    n = hi_n - lo_n
    per = (hi["total"] - lo["total"]) / n
    sha = (cg.sha_cost(hi) - cg.sha_cost(lo)) / n
    return {"per_call": per, "sha256_per_call": sha, "per_call_without_sha256": per - sha,
            "sha256_path": cg.sha_path(hi)["path"], "counts": [lo_n, hi_n], "lo": lo["total"], "hi": hi["total"],
            "fixed": lo["total"] - lo_n * per, "wall_s": round(time.monotonic() - t0, 1)}


def callgrind_normd(a, raw: Path) -> dict:
    """normd's whole server and pipeline alone, by callgrind.py itself (--repeat 1)."""
    out = raw / "callgrind-normd"
    cmd = [sys.executable, str(HERE / "callgrind.py"), "--normd", a.normd, "--payloads", str(a.payloads),
           "--schemas", str(a.schemas), "--repeat", "1", "--out", str(out), "--raw", str(raw / "callgrind-normd-raw"),
           "--pipeline-counts", f"{a.callgrind_counts[0]},{a.callgrind_counts[1]}"]
    if a.example:
        cmd += ["--example", a.example]
    run(cmd, timeout=3 * a.callgrind_timeout)
    S = json.loads((out / "summary.json").read_text())
    res = {}
    if "server" in S:
        s = S["server"]
        res["server"] = {"per_call": s.get("per_call_without_timers", s["per_call"]),
                         "per_call_as_counted": s["per_call"], "sha256_per_call": s["sha256_per_call"],
                         "per_call_without_sha256": s.get("per_call_without_timers", s["per_call"]) - s["sha256_per_call"],
                         "sha256_path": s["sha256_path"]["path"]}
    if "pipeline" in S:
        p = S["pipeline"]
        res["pipeline"] = {"per_call": p["per_call"], "sha256_per_call": p["sha256_per_call"],
                           "per_call_without_sha256": p["per_call_without_sha256"], "sha256_path": p["sha256_path"]["path"]}
    return res


# ----------------------------------------------------------------------------- report


def med(rows: list[dict], key: str) -> float | None:
    xs = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def f0(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def f1(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def md(R: dict) -> str:
    L: list[str] = []
    w = L.append
    S = R["summary"]
    w("# Anchors: normd beside the same job in-process (issue #16)")
    w("")
    w(f"{R['stamp']} · source `{R['rev']}` · normd `{R['normd']}` · naive `{R['naive']}` · {R['node_version']} · "
      f"{R['documents']} documents of `{R['payloads']}` (mean {R['mean_bytes']} B) · {R['rounds']} interleaved round(s) · "
      f"everything measured on core {ANCHOR_CPU} · load average at start {R['loadavg_start']}, at end {R['loadavg_end']} "
      f"· {R['seconds_total']} s in all")
    w("")
    w("| job | CPU µs/call (user+sys) | max req/s (1e6 ÷ µs) | on-CPU µs/call (schedstat) | per round (user+sys) | "
      "instructions/call (callgrind) | without SHA-256 |")
    w("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    labels = {"normd": f"**normd** server (`POST {R['url']}`, `--workers 1`, {R['conns']} keep-alive conns, closed loop)",
              "naive": "**naive Rust loop** in-process (`examples/naive_loop`, no HTTP)",
              "node": "**Node app** in-process (`loadtest/app/lib/inapp.js` in a loop)"}
    ins = R.get("instructions", {})
    ins_of = {"normd": ins.get("normd", {}).get("server"), "naive": ins.get("naive"), "node": None}
    for k in ("normd", "naive", "node"):
        s = S[k]
        rounds = " / ".join(f1(r["cpu_us_per_call"]) for r in R["rounds_data"][k])
        i = ins_of[k]
        w(f"| {labels[k]} | **{f1(s['cpu_us_per_call'])}** | {f0(s['max_rps'])} | {f1(s['oncpu_us_per_call'])} | "
          f"{rounds} | {f0(i and i['per_call'])} | {f0(i and i['per_call_without_sha256'])} |")
    pipe = ins.get("normd", {}).get("pipeline")
    if pipe:
        w(f"| normd's pipeline alone, in-process (`examples/pipeline_count`, for the instructions) | – | – | – | – | "
          f"{f0(pipe['per_call'])} | {f0(pipe['per_call_without_sha256'])} |")
    w("")
    w("| ratio (issue #16 target) | user+sys CPU | on-CPU | instructions | without SHA-256 |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for k, name in (("naive", "normd ÷ naive Rust loop (≤ 0.90)"), ("node", "normd ÷ Node app (≤ 0.30)")):
        r = R["ratios"][k]
        verdict = "meets" if r["cpu"] <= TARGETS[k] else "MISS"
        ri = r.get("instructions")
        w(f"| {name} | **{r['cpu']:.2f}** ({verdict}) | {r['oncpu']:.2f} | {'–' if ri is None else f'{ri:.2f}'} | "
          f"{'–' if r.get('instructions_without_sha256') is None else format(r['instructions_without_sha256'], '.2f')} |")
    w("")
    n = R["rounds_data"]["normd"]
    w("How it was measured and how far to trust it:")
    w("")
    w(f"- **normd**: `loadtest/cpu_split.py --repeat 1` per round (normd on core {ANCHOR_CPU}, its stdlib loader on "
      f"core {DRIVER_CPU}, {R['split_warmup']} s warm-up + {R['split_duration']} s window): utime+stime of all its "
      f"threads ÷ calls answered; on-CPU from schedstat. normd busy per round (cores, 1.0 = saturated): "
      f"{' / '.join(format(r['normd_cores'], '.2f') for r in n)}; loader "
      f"{' / '.join(format(r['loader_cores'], '.2f') for r in n)}; "
      f"req/s {' / '.join(f0(r['rps']) for r in n)}. Below 1.0 normd's threads also sleep and wake per call, which "
      "inflates its CPU per call (and req/s is not capacity).")
    w(f"- **naive**: {R['naive_count']} calls after one pass over the set, `taskset -c {ANCHOR_CPU}`; the system allocator; "
      "parse → trim every string (a new String each) → validate (compiled once, address.v1 registered) → `to_vec` → "
      "gzip level 1 with a new `GzEncoder` per call → SHA-256 of the JSON bytes (normd's digest is of the canonical "
      "bytes, so both pay for one). normd's default `/norm?schema=order.v1` runs no string rules (no trim); the "
      "anchors trim, which costs them a little more.")
    w(f"- **Node**: {R['node_count']} calls after {R['node_warmup']} warm-up calls, `taskset -c {ANCHOR_CPU}`; "
      "`process.cpuUsage()` (getrusage: every thread, V8's GC helpers included); the demo app's schema file "
      "(`shared/bench/schemas/order.v1.json`, address inline); no digest (the in-app path computes none).")
    busy = [r["machine_busy_cores"] for k in ("normd", "naive", "node") for r in R["rounds_data"][k]]
    w(f"- **Noise**: the machine was shared (busy {min(busy):.2f}–{max(busy):.2f} of 2 cores during the steps; "
      "load average above). Wall-clock and CPU-time figures on these machines move ±25 % between runs, and a "
      "process that shares its core with others also pays for cache and TLB refills it would not pay alone; "
      "compare within this run (the rounds are interleaved). The instruction counts do not move with load "
      "(repeatable to ~0.05 %) but are not time: system calls, wake-ups and cache misses cost time without "
      "user-space instructions, which is most of what the HTTP server pays over an in-process loop.")
    if ins:
        nv = ins.get("naive")
        w("- **Instructions**: user space, `valgrind --tool=callgrind`; the naive loop and normd's pipeline as the "
          f"slope between {R['callgrind_counts'][0]} and {R['callgrind_counts'][1]} calls (start-up and schema "
          "compilation cancel out); normd's server by `callgrind.py` (2000 sequential calls on one keep-alive "
          "connection after 200, every thread, the timers' idle rate left out). Under valgrind sha2 runs its portable "
          f"rounds (found here: {nv['sha256_path'] if nv else '–'}; ≈ 3,500 instructions per 64-byte block), while this CPU runs "
          "SHA-NI: the native count is close to the *without SHA-256* column. Node is not counted (a JIT under "
          "valgrind measures valgrind).")
    return "\n".join(L)


def keep_small(raw: Path, out: Path) -> None:
    """Copies the raw files worth keeping beside the report (a few KB each), not the dumps."""
    dest = out / "raw"
    for f in sorted(raw.rglob("*")):
        rel = f.relative_to(raw)
        if not f.is_file() or rel.parts[0] == "callgrind-normd-raw" or ".callgrind.out" in f.name:
            continue
        if f.suffix in (".json", ".md", ".txt", ".stdout") and f.stat().st_size < 200_000:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest / rel)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), required=not os.environ.get("NORMD_BIN"),
                    help="a release normd (default $NORMD_BIN)")
    ap.add_argument("--naive", default=os.environ.get("NAIVE_BIN"),
                    help="the built examples/naive_loop (default $NAIVE_BIN, else <normd's dir>/examples/naive_loop)")
    ap.add_argument("--example", default=os.environ.get("PIPELINE_COUNT_BIN"),
                    help="pipeline_count for --callgrind-normd (default: callgrind.py's, beside --normd)")
    ap.add_argument("--node", dest="node_bin", default=os.environ.get("NODE_BIN", "node"), help="node (default node)")
    ap.add_argument("--payloads", type=Path, default=DEFAULT_PAYLOADS, help=f"default {DEFAULT_PAYLOADS}")
    ap.add_argument("--schemas", type=Path, default=REPO / "schemas", help="normd's and naive_loop's schemas dir")
    ap.add_argument("--node-schema", type=Path, default=NODE_SCHEMA, help=f"the Node app's schema (default {NODE_SCHEMA})")
    ap.add_argument("--url", default="/norm?schema=order.v1", help="normd's request (cpu_split.py --url)")
    ap.add_argument("--normd-arg", action="append", default=[], help="extra `normd serve` argument (repeatable)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three (default 3)")
    ap.add_argument("--split-warmup", type=float, default=3.0, help="cpu_split.py --warmup (default 3 s)")
    ap.add_argument("--split-duration", type=float, default=10.0, help="cpu_split.py --duration (default 10 s)")
    ap.add_argument("--naive-count", type=int, default=20000, help="timed naive calls per round (default 20000)")
    ap.add_argument("--node-count", type=int, default=10000, help="timed Node calls per round (default 10000)")
    ap.add_argument("--node-warmup", type=int, default=2000, help="Node warm-up calls (default 2000)")
    ap.add_argument("--loop-timeout", type=float, default=300, help="s for one naive or Node run (default 300)")
    ap.add_argument("--callgrind", action=argparse.BooleanOptionalAction, default=None,
                    help="count the naive loop's instructions per call (default: when valgrind is installed)")
    ap.add_argument("--callgrind-normd", action="store_true",
                    help="also count normd's server and pipeline (callgrind.py --repeat 1: minutes)")
    ap.add_argument("--callgrind-counts", default="200,1200", help="the two counts of the slope (default 200,1200)")
    ap.add_argument("--callgrind-timeout", type=float, default=900, help="s for one callgrind count (default 900)")
    ap.add_argument("--max-load", type=float, help="first wait (at most 10 min) for a 1-min load average below this")
    ap.add_argument("--out", type=Path, required=True, help="where anchors.json and anchors.md go")
    ap.add_argument("--raw", type=Path, help="raw files (default a new /tmp dir, kept)")
    a = ap.parse_args()

    a.normd = str(Path(a.normd).resolve())
    a.naive = str(Path(a.naive).resolve()) if a.naive else str(Path(a.normd).parent / "examples" / "naive_loop")
    for b, how in ((a.normd, "--normd"), (a.naive, "cargo build --release --example naive_loop, or --naive")):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"not an executable: {b} ({how})")
    if not shutil.which(a.node_bin):
        raise SystemExit(f"node not found: {a.node_bin}")
    if not (REPO / "loadtest" / "app" / "node_modules" / "ajv").is_dir():
        raise SystemExit("loadtest/app/node_modules/ajv missing: run `npm ci` in loadtest/app")
    a.callgrind_counts = [int(x) for x in a.callgrind_counts.split(",")]
    have_vg = bool(shutil.which("valgrind"))
    if a.callgrind is None:
        a.callgrind = have_vg
    if (a.callgrind or a.callgrind_normd) and not have_vg:
        raise SystemExit("valgrind not found (apt-get install valgrind), or --no-callgrind")
    docs = sorted(a.payloads.glob("*.json"))
    if not docs:
        raise SystemExit(f"no *.json in {a.payloads}")
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {DRIVER_CPU})

    exit_on_signals(terminate_children)
    if a.max_load is not None:
        wait_for_quiet_machine(a.max_load)
    raw = a.raw or Path(tempfile.mkdtemp(prefix="normd-anchors-raw-"))
    raw.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip() or "?"
    node_version = subprocess.run([a.node_bin, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    t_all = time.monotonic()
    R: dict = {"stamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rev": rev,
               "normd": a.normd, "naive": a.naive, "node_version": f"Node {node_version}", "payloads": str(a.payloads),
               "documents": len(docs), "mean_bytes": round(sum(p.stat().st_size for p in docs) / len(docs)),
               "url": a.url, "conns": 32, "rounds": a.rounds, "split_warmup": a.split_warmup,
               "split_duration": a.split_duration, "naive_count": a.naive_count, "node_count": a.node_count,
               "node_warmup": a.node_warmup, "callgrind_counts": a.callgrind_counts, "targets": TARGETS,
               "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "raw_dir": str(raw),
               "rounds_data": {"normd": [], "naive": [], "node": []}}
    try:
        for rnd in range(1, a.rounds + 1):
            log(f"round {rnd}/{a.rounds}: normd (cpu_split.py, {a.split_warmup:g}+{a.split_duration:g} s)")
            x = measure_normd(a, raw, rnd)
            R["rounds_data"]["normd"].append(x)
            log(f"  normd {x['cpu_us_per_call']:.1f} µs user+sys, {x['oncpu_us_per_call']:.1f} on-CPU, "
                f"{x['rps']:,.0f} req/s, busy {x['normd_cores']:.2f}")
            x = measure_naive(a)
            R["rounds_data"]["naive"].append(x)
            log(f"  naive {x['cpu_us_per_call']:.1f} µs user+sys, {x['oncpu_us_per_call']:.1f} on-CPU "
                f"({x['calls']} calls, {x['wall_s']:.1f} s wall, machine {x['machine_busy_cores']:.2f})")
            x = measure_node(a)
            R["rounds_data"]["node"].append(x)
            log(f"  node  {x['cpu_us_per_call']:.1f} µs user+sys, {x['oncpu_us_per_call']:.1f} on-CPU "
                f"({x['calls']} calls, {x['wall_s']:.1f} s wall, machine {x['machine_busy_cores']:.2f})")
        ins: dict = {}
        if a.callgrind:
            log(f"callgrind: naive_loop at {a.callgrind_counts[0]} and {a.callgrind_counts[1]} calls")
            ins["naive"] = callgrind_naive(a, raw)
            log(f"  naive {ins['naive']['per_call']:,.0f} instructions/call "
                f"({ins['naive']['per_call_without_sha256']:,.0f} without SHA-256)")
        if a.callgrind_normd:
            log("callgrind: normd server and pipeline (callgrind.py --repeat 1)")
            ins["normd"] = callgrind_normd(a, raw)
            for k, v in ins["normd"].items():
                log(f"  normd {k} {v['per_call']:,.0f} instructions/call ({v['per_call_without_sha256']:,.0f} without SHA-256)")
        if ins:
            R["instructions"] = ins
    finally:
        terminate_children()

    S = {}
    for k, rows in R["rounds_data"].items():
        c = med(rows, "cpu_us_per_call")
        S[k] = {"cpu_us_per_call": c, "oncpu_us_per_call": med(rows, "oncpu_us_per_call"),
                "max_rps": 1e6 / c if c else None}
    R["summary"] = S
    R["ratios"] = {}
    srv = R.get("instructions", {}).get("normd", {}).get("server")
    for k in ("naive", "node"):
        r = {"cpu": S["normd"]["cpu_us_per_call"] / S[k]["cpu_us_per_call"],
             "oncpu": S["normd"]["oncpu_us_per_call"] / S[k]["oncpu_us_per_call"], "target": TARGETS[k]}
        r["meets_target"] = r["cpu"] <= TARGETS[k]
        other = R.get("instructions", {}).get(k)
        if srv and other:
            r["instructions"] = srv["per_call"] / other["per_call"]
            r["instructions_without_sha256"] = srv["per_call_without_sha256"] / other["per_call_without_sha256"]
        R["ratios"][k] = r
    R["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    R["seconds_total"] = round(time.monotonic() - t_all)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "anchors.json").write_text(json.dumps(R, indent=1, default=str) + "\n")
    (a.out / "anchors.md").write_text(md(R) + "\n")
    keep_small(raw, a.out)
    log(f"wrote {a.out}/anchors.md and anchors.json (raw files in {raw})")
    print(md(R))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        terminate_children()
