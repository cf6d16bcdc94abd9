#!/usr/bin/env python3
"""Instructions per /norm call, counted by callgrind: a cost figure that does not move.

Wall-clock figures on these shared machines move ±25 % between runs; the user-space
instructions a call executes do not (valgrind counts them; two counts of the same build
agree within 0.2 %, in practice within 0.02 %). Two figures, each counted --repeat times:

  server    `normd serve --workers 1` under `valgrind --tool=callgrind`
            (--separate-threads=yes: a file per thread, summed); after --warmup
            calls, the counters are zeroed (`callgrind_control -z`), --calls sequential
            `POST /norm?schema=order.v1` calls go over ONE keep-alive connection on the
            Unix socket, and the counters are dumped (`callgrind_control -d`). Every
            thread of the process counts: I/O thread, worker, log writer, timers.
  pipeline  the pure pipeline in-process (`examples/pipeline_count`, the same default
            plan + order.v1), under callgrind at two counts (--pipeline-counts, 200 and
            1200): the difference ÷ 1000 is one call, start-up and schema compilation
            cancel out.

server − pipeline is what the HTTP, admission, logging and metrics layers cost per call.

The self-probe is set to once an hour (--probe-interval-ms 3600000): its first round runs
at start-up, before the counters are zeroed, so no canary is counted. What still runs on
a timer during the counted window (the 100 ms memory sampler, timer wheel upkeep) is
counted too, and grows with valgrind's wall time, not with calls (0.3-0.8 % of a call
here): the script counts it on its own in an idle window of --idle-seconds (zero, wait,
dump) and leaves idle rate × the calls' wall time out of the headline *per call*; the
figure as counted is reported beside it.

SHA-256: sha2 picks its implementation by CPUID, and valgrind's virtual CPU does not
offer the SHA extensions, so under valgrind sha2 runs its software rounds while the real
CPU (sha_ni) runs a few instructions per block. The script finds which path ran (from the
functions and source files the instructions belong to) and reports every figure with
and without SHA-256.

A symbolized release binary, without touching the committed profile (stripped, no debug
info): override the profile from the environment, into a target dir of your own:

  CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \\
    nice -n 10 cargo build --release --locked --target-dir /tmp/normd-sym \\
    --bin normd --example pipeline_count
  python3 loadtest/callgrind.py --normd /tmp/normd-sym/release/normd --out /tmp/cg

(`loadtest/callgrind.sh` does both.) --example defaults to `examples/pipeline_count`
beside the normd binary's directory. Writes to --out: summary.json, summary.md,
callgrind-server.txt, callgrind-pipeline.txt; the raw callgrind.out files stay in a
temp dir (printed; --raw DIR to choose it). Stdlib only. Traffic goes only to a Unix
socket in a private temp dir; every wait has a timeout and valgrind is killed at the end
whatever happens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # lt/, from any working directory (and when anchors.py imports this)

from lt.children import CHILDREN, exit_on_signals, kill_children, pin, stop  # noqa: E402
from lt.log import log  # noqa: E402

REPO = HERE.parent
SHARED = Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
DEFAULT_PAYLOADS = SHARED / "bench" / "payloads" / "4k"
URL = "/norm?schema=order.v1"
SERVER_CPU, CLIENT_CPU = 0, 1


# ----------------------------------------------------------------------------- HTTP


class UnixConnection(http.client.HTTPConnection):
    """http.client over a Unix socket: keep-alive, one request at a time."""

    def __init__(self, path: str, timeout: float = 60.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def get_once(path: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    c = UnixConnection(path, timeout=timeout)
    try:
        c.request("GET", url, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(sock: str, proc: subprocess.Popen, timeout: float) -> float:
    """Polls GET /readyz on the socket until 200; returns the seconds it took."""
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"normd exited with {proc.returncode} before it was ready")
        if os.path.exists(sock):
            try:
                st, body = get_once(sock, "/readyz", timeout=10)
                if st == 200:
                    return time.monotonic() - t0
                last = f"{st} {body[:200]!r}"
            except OSError as e:
                last = str(e)
        time.sleep(0.1)
    raise TimeoutError(f"normd not ready within {timeout:.0f}s (last: {last})")


def send_calls(conn: UnixConnection, docs: list[bytes], n: int, start: int, deadline: float) -> tuple[int, int]:
    """n sequential POST /norm calls on one keep-alive connection; every one must be 200.
    Returns the response body bytes and the SHA-256 blocks hashed (from the canonical sizes)."""
    got = blocks = 0
    for i in range(n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"calls not done in time ({i} of {n})")
        body = docs[(start + i) % len(docs)]
        conn.request("POST", URL, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"call {start + i}: {r.status} {data[:300]!r}")
        if r.getheader("Connection", "").lower() == "close":
            raise RuntimeError(f"call {start + i}: normd closed the connection")
        got += len(data)
        blocks += (int(r.getheader("X-Normd-Canonical-Bytes", "0")) + 9 + 63) // 64
    return got, blocks


# ----------------------------------------------------------------------------- callgrind files

_NAME = re.compile(r"^\((\d+)\)\s?(.*)$")


def parse_out(path: Path) -> dict:
    """Reads a callgrind.out file (any dump) without callgrind_annotate: totals, and the
    first event's self cost per function and per source file (inlined code counts for the
    file it came from, `fi=`/`fe=`), and each function's inclusive cost (self + its calls'
    inclusive costs, as `callgrind_annotate --inclusive=yes` computes it)."""
    names = {"fl": {}, "fn": {}, "ob": {}}
    kinds = {"fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
             "fn": "fn", "cfn": "fn", "ob": "ob", "cob": "ob"}

    def name(kind: str, rest: str) -> str:
        table = names[kinds[kind]]
        m = _NAME.match(rest)
        if not m:
            return rest
        key, text = m.group(1), m.group(2)
        if text:
            table[key] = text
            return text
        return table.get(key, f"({key})")

    npos = 1
    thread = None
    totals = None
    summary = None
    ob = fl = cur_file = fn = None
    after_calls = False
    self_fn: Counter = Counter()
    calls_fn: Counter = Counter()
    self_file: Counter = Counter()
    fn_file: dict = {}
    with open(path, errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[npos]) if len(parts) > npos else 0
                if after_calls:
                    calls_fn[(ob, fn)] += cost
                    after_calls = False
                else:
                    self_fn[(ob, fn)] += cost
                    self_file[(ob, cur_file)] += cost
                continue
            key, sep, rest = line.rstrip("\n").partition("=")
            if sep and key in kinds:
                v = name(key, rest)
                if key == "ob":
                    ob = v
                elif key == "fl":
                    fl = cur_file = v
                elif key in ("fi", "fe"):
                    cur_file = v
                elif key == "fn":
                    fn = v
                    cur_file = fl
                    fn_file.setdefault((ob, fn), fl)
                continue
            if line.startswith("calls="):
                after_calls = True
            elif line.startswith("positions:"):
                npos = len(line.split()[1:])
            elif line.startswith("thread:"):
                thread = int(line.split()[1])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    total = totals if totals is not None else summary
    counted = sum(self_fn.values())
    incl = {k: self_fn.get(k, 0) + calls_fn.get(k, 0) for k in set(self_fn) | set(calls_fn)}
    return {"total": total, "self_sum": counted, "self_fn": self_fn, "incl_fn": incl,
            "self_file": self_file, "fn_file": fn_file, "thread": thread, "path": str(path)}


def merge(parts: list[dict]) -> dict:
    """One profile from the per-thread dump files of one dump."""
    out = {"total": 0, "self_sum": 0, "self_fn": Counter(), "incl_fn": Counter(), "self_file": Counter(),
           "fn_file": {}, "threads": []}
    for p in parts:
        out["total"] += p["total"] or 0
        out["self_sum"] += p["self_sum"]
        out["self_fn"].update(p["self_fn"])
        out["incl_fn"].update(p["incl_fn"])
        out["self_file"].update(p["self_file"])
        out["threads"].append({"thread": p["thread"], "role": thread_role(p), "total": p["total"] or 0,
                               "path": p["path"]})
    return out


def thread_role(p: dict) -> str:
    """What a thread is, from the code it ran (callgrind numbers threads, it does not name them)."""
    fns = [fn or "" for (ob, fn), v in p["incl_fn"].items() if v]
    if p["thread"] == 1:
        return "main"
    if any(f.startswith("normd::pipeline::norm") for f in fns):
        return "worker (normd-worker-N)"
    if any(f.startswith(("tokio::runtime::scheduler::multi_thread::worker", "hyper::")) for f in fns):
        return "I/O (normd-io)"
    if any("tracing_appender" in f for f in fns):
        return "log writer (tracing-appender)"
    return "other"


def crate_of(ob: str | None, file: str | None) -> str:
    """A readable owner for a source file: the crate (registry path), std/core/alloc,
    normd itself, or the object file for code without line info (libc, ld.so…)."""
    f = file or "???"
    m = re.search(r"/registry/src/[^/]+/([^/]+?)-\d+\.\d+[^/]*/", f)
    if m:
        return m.group(1)
    m = re.search(r"/rustc/[0-9a-f]+/library/([^/]+)/", f) or re.search(r"/library/(std|core|alloc)/src/", f)
    if m:
        return m.group(1)
    if f.endswith(".rs"):
        return "normd"  # the only Rust source outside the registry and the toolchain
    if f == "???" or not f:
        return "[" + os.path.basename(ob or "?") + "]"
    return f


def is_sha2(file: str | None, fn: str | None) -> bool:
    return bool((file and "/sha2-" in file) or (fn and re.search(r"\bsha2::", fn)))


SHA_ROOTS = ("sha2::sha256::compress256", "sha2::sha256::x86::digest_blocks", "sha2::sha256::soft::compress")


def sha_path(parsed: dict) -> dict:
    """Which sha2 backend ran. On x86 sha2 has two: `x86::digest_blocks` (SHA-NI, its own
    symbol: a target_feature function is not inlined) and the portable rounds, which fat
    LTO inlines into `compress256`. CPUID decides at run time (`x86::shani_cpuid`)."""
    self_of = Counter()
    for (ob, fn), v in parsed["self_fn"].items():
        if fn and "sha2::" in fn:
            self_of[fn] += v
    shani = sum(v for fn, v in self_of.items() if "sha256::x86::digest_blocks" in fn)
    soft = sum(v for fn, v in self_of.items() if fn.endswith(("sha256::compress256", "sha256::soft::compress")))
    path = "x86 SHA-NI (digest_blocks)" if shani > soft else ("portable rounds (soft)" if soft else "not found")
    return {"path": path, "shani_self": shani, "soft_self": soft,
            "functions": [fn for fn, v in self_of.most_common() if v]}


def sha_cost(parsed: dict) -> int:
    """Instructions of SHA-256 block processing: the inclusive cost of sha2's compression
    entry point (all backends run inside it), else whatever sha2 code ran."""
    roots = sum(v for (ob, fn), v in parsed["incl_fn"].items() if fn == SHA_ROOTS[0])
    if roots:
        return roots
    return sum(v for (ob, fn), v in parsed["self_fn"].items() if fn and re.search(r"\bsha2::", fn))


def by_crate(parsed: dict) -> Counter:
    out: Counter = Counter()
    for (ob, file), v in parsed["self_file"].items():
        out[crate_of(ob, file)] += v
    return out


def annotate_head(path: Path, top: int) -> list[str]:
    """callgrind_annotate's own inclusive view: its totals line and first rows."""
    cmd = ["callgrind_annotate", "--auto=no", "--inclusive=yes", str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout.splitlines()
    except (subprocess.SubprocessError, OSError) as e:
        return [f"(callgrind_annotate failed: {e})"]
    keep = [l for l in out if "PROGRAM TOTALS" in l]
    try:
        i = next(i for i, l in enumerate(out) if "file:function" in l)
        keep += [l for l in out[i + 2:] if l.strip()][:top]
    except StopIteration:
        pass
    return keep


# ----------------------------------------------------------------------------- runs


def valgrind_cmd(out_file: Path, prog: list[str], threads: bool = False) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
            "--dump-instr=no", "--collect-atstart=yes", "--vgdb=yes",
            f"--separate-threads={'yes' if threads else 'no'}", "--trace-children=no"] + prog


def callgrind_control(args: list[str], timeout: float = 120) -> None:
    r = subprocess.run(["callgrind_control"] + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: rc {r.returncode}: {r.stdout}{r.stderr}")


def complete(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 4096))
            tail = f.read()
        return b"\ntotals:" in tail or tail.startswith(b"totals:")
    except OSError:
        return False


def wait_dump(raw: Path, before: set[str], timeout: float) -> list[Path]:
    """The dump files (one per thread) that appeared since `before`, once every one has
    its totals line and no more appear."""
    t0 = time.monotonic()
    last: list[str] = []
    while time.monotonic() - t0 < timeout:
        new = sorted(n for n in set(os.listdir(raw)) - before if ".callgrind.out" in n)
        if new and new == last and all(complete(raw / n) for n in new):
            return [raw / n for n in new]
        last = new
        time.sleep(0.5)
    raise TimeoutError(f"no complete callgrind dump in {raw} within {timeout:.0f}s")


def run_server(a, docs: list[bytes], raw: Path, rep: int) -> dict:
    """One server count: start under callgrind, warm up, [idle window], zero, N calls, dump."""
    tmp = Path(tempfile.mkdtemp(prefix="normd-cg-"))
    sock = str(tmp / "normd.sock")
    base = raw / f"server-{rep}.callgrind.out"
    prog = [a.normd, "serve", "--workers", "1", "--socket", sock, "--listen", "",
            "--schemas", str(a.schemas), "--flags", "", "--drain-delay-ms", "0",
            "--probe-interval-ms", "3600000",
            # Under valgrind a call takes ~50× its native time: a 20 ms budget would
            # answer 504. A longer default changes only a timer's expiry, not the path.
            "--default-deadline-ms", "60000", "--max-deadline-ms", "60000"] + a.normd_arg
    errf = open(tmp / "normd.log", "wb")
    t_start = time.monotonic()
    proc = subprocess.Popen(pin(SERVER_CPU, valgrind_cmd(base, prog, threads=True)), cwd=tmp, stdout=errf,
                            stderr=subprocess.STDOUT, start_new_session=True)
    CHILDREN.append(proc)
    res: dict = {"rep": rep}
    try:
        res["ready_s"] = round(wait_ready(sock, proc, a.start_timeout), 1)
        pid = str(proc.pid)
        conn = UnixConnection(sock, timeout=a.call_timeout)
        deadline = time.monotonic() + a.run_timeout
        t0 = time.monotonic()
        send_calls(conn, docs, a.warmup, 0, deadline)
        res["warmup_s"] = round(time.monotonic() - t0, 1)
        idle = None
        if a.idle_seconds > 0:
            before = set(os.listdir(raw))
            callgrind_control(["-z", pid])
            t0 = time.monotonic()
            time.sleep(a.idle_seconds)
            callgrind_control(["-d", pid])
            idle_wall = time.monotonic() - t0
            idle_p = merge([parse_out(f) for f in wait_dump(raw, before, 120)])
            idle = idle_p["total"]
            res["idle"] = {"instructions": idle, "seconds": round(idle_wall, 2),
                           "per_second": round(idle / idle_wall),
                           "top_self": [{"fn": fn, "instructions": v} for (ob, fn), v in idle_p["self_fn"].most_common(8)]}
        before = set(os.listdir(raw))
        callgrind_control(["-z", pid])
        t0 = time.monotonic()
        out_bytes, blocks = send_calls(conn, docs, a.calls, a.warmup, deadline)
        calls_wall = time.monotonic() - t0
        callgrind_control(["-d", pid])
        dump = wait_dump(raw, before, 300)
        conn.close()
        res["calls_s"] = round(calls_wall, 1)
        res["out_bytes_per_call"] = round(out_bytes / a.calls, 1)
        res["sha256_blocks_per_call"] = blocks / a.calls
        res["dump"] = [str(d) for d in dump]
        # Stop normd: SIGTERM, bounded wait.
        res["exit"] = proc.returncode if stop(proc, a.stop_timeout) else "killed after SIGTERM timeout"
        res["wall_s"] = round(time.monotonic() - t_start, 1)
        if idle is not None:
            res["idle"]["per_call_during_calls"] = round(res["idle"]["per_second"] * calls_wall / a.calls)
        return res
    finally:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        errf.close()
        if proc.returncode not in (0, None) and "exit" not in res:
            sys.stderr.write((tmp / "normd.log").read_text(errors="replace")[-3000:])
        shutil.copy(tmp / "normd.log", raw / f"server-{rep}.log")
        shutil.rmtree(tmp, ignore_errors=True)


def run_pipeline(a, count: int, raw: Path, rep: int) -> Path:
    out = raw / f"pipeline-{rep}-{count}.callgrind.out"
    cmd = pin(SERVER_CPU, valgrind_cmd(out, [a.example, "--count", str(count), "--payloads", str(a.payloads)]))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    CHILDREN.append(p)
    try:
        so, se = p.communicate(timeout=a.run_timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10)
        raise
    if p.returncode != 0:
        raise RuntimeError(f"pipeline_count --count {count}: rc {p.returncode}\n{se[-2000:]}")
    (raw / f"pipeline-{rep}-{count}.stdout").write_text(so)
    return out


# ----------------------------------------------------------------------------- report


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / statistics.mean(xs) * 100 if len(xs) > 1 else 0.0


def table_rows(rows, per: float, total: float) -> list[str]:
    """rows: [((object, function), instructions)]; per: calls the figures cover."""
    L = [f"{'per call':>12}  {'%':>6}   function  [object]"]
    for (ob, fn), v in rows:
        L.append(f"{v / per:>12,.0f}  {100 * v / total:>6.2f}%  {fn}  [{os.path.basename(ob or '')}]")
    return L


def slope_rows(lo: dict, hi: dict, key: str, n: int, top: int) -> list[tuple]:
    a, b = lo[key], hi[key]
    rows = [(k, (b.get(k, 0) - a.get(k, 0)) / n) for k in set(a) | set(b)]
    rows.sort(key=lambda kv: -kv[1])
    return rows[:top]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), required=not os.environ.get("NORMD_BIN"),
                    help="a release normd built with symbols (see above); default $NORMD_BIN")
    ap.add_argument("--example", help="pipeline_count binary (default: <normd's dir>/examples/pipeline_count)")
    ap.add_argument("--payloads", type=Path, default=DEFAULT_PAYLOADS, help=f"payload dir (default {DEFAULT_PAYLOADS})")
    ap.add_argument("--schemas", type=Path, default=REPO / "schemas", help="normd serve --schemas (default the repo's schemas/)")
    ap.add_argument("--calls", type=int, default=2000, help="counted calls (default 2000)")
    ap.add_argument("--warmup", type=int, default=200, help="calls before the counters are zeroed (default 200)")
    ap.add_argument("--pipeline-counts", default="200,1200", help="the two in-process counts (default 200,1200)")
    ap.add_argument("--repeat", type=int, default=2, help="count everything this many times (default 2)")
    ap.add_argument("--idle-seconds", type=float, default=5.0,
                    help="idle window measured before the calls, for the timers' own cost (0: skip; default 5)")
    ap.add_argument("--top", type=int, default=15, help="functions listed by self cost (default 15)")
    ap.add_argument("--top-inclusive", type=int, default=25,
                    help="functions listed by inclusive cost (default 25: the first are thread entry points)")
    ap.add_argument("--only", choices=["server", "pipeline"], help="count only one of the two")
    ap.add_argument("--normd-arg", action="append", default=[], help="extra `normd serve` argument (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="where summary.{json,md} and callgrind-*.txt go")
    ap.add_argument("--rev", help="what the binary was built from (a commit), shown in the summary")
    ap.add_argument("--raw", type=Path, help="where the raw callgrind.out files go (default a new /tmp dir, kept)")
    ap.add_argument("--start-timeout", type=float, default=300, help="s for normd under valgrind to be ready")
    ap.add_argument("--run-timeout", type=float, default=1800, help="s for one count's calls / one pipeline run")
    ap.add_argument("--call-timeout", type=float, default=60, help="s for one call's answer")
    ap.add_argument("--stop-timeout", type=float, default=60, help="s for normd to exit after SIGTERM")
    a = ap.parse_args()

    a.normd = str(Path(a.normd).resolve())
    if not os.access(a.normd, os.X_OK):
        raise SystemExit(f"not an executable: {a.normd}")
    a.example = str(Path(a.example).resolve()) if a.example else str(Path(a.normd).parent / "examples" / "pipeline_count")
    if a.only != "server" and not os.access(a.example, os.X_OK):
        raise SystemExit(f"pipeline_count not found: {a.example} (cargo build --release --example pipeline_count, or --example PATH)")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (apt-get install valgrind)")
    lo_n, hi_n = (int(x) for x in a.pipeline_counts.split(","))
    files = sorted(p for p in a.payloads.glob("*.json"))
    docs = [p.read_bytes() for p in files]
    if not docs:
        raise SystemExit(f"no *.json in {a.payloads}")
    if (hi_n - lo_n) % len(docs):
        log(f"note: {hi_n} − {lo_n} is not a multiple of the {len(docs)} payloads: the slope weighs some more")
    syms = subprocess.run(["file", "-L", a.normd], capture_output=True, text=True).stdout if shutil.which("file") else ""
    if "stripped" in syms and "not stripped" not in syms:
        log("warning: the normd binary is stripped: functions will show as addresses (see --help)")
    a.out.mkdir(parents=True, exist_ok=True)
    raw = a.raw or Path(tempfile.mkdtemp(prefix="normd-callgrind-raw-"))
    raw.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {CLIENT_CPU} if (os.cpu_count() or 1) >= 2 else os.sched_getaffinity(0))

    exit_on_signals(kill_children)

    t_all = time.monotonic()
    S: dict = {"stamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "normd": a.normd, "example": a.example, "payloads": str(a.payloads), "documents": len(docs),
               "mean_bytes": round(sum(map(len, docs)) / len(docs)), "url": URL, "calls": a.calls,
               "warmup": a.warmup, "pipeline_counts": [lo_n, hi_n], "repeat": a.repeat,
               "valgrind": subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip(),
               "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "raw_dir": str(raw)}
    S["rev"] = a.rev
    server_runs, pipe_runs = [], []
    srv_parsed = pipe_parsed = None
    try:
        for rep in range(1, a.repeat + 1):
            if a.only != "pipeline":
                log(f"server count {rep}/{a.repeat}: normd under callgrind, {a.warmup} warm-up + {a.calls} calls")
                r = run_server(a, docs, raw, rep)
                p = merge([parse_out(Path(f)) for f in r["dump"]])
                r["instructions"] = p["total"]
                r["per_call"] = p["total"] / a.calls
                r["sha256_per_call"] = sha_cost(p) / a.calls
                r["threads"] = [{"role": t["role"], "thread": t["thread"], "per_call": t["total"] / a.calls}
                                for t in sorted(p["threads"], key=lambda t: -t["total"])]
                if r.get("idle"):
                    r["per_call_without_timers"] = r["per_call"] - r["idle"]["per_call_during_calls"]
                server_runs.append(r)
                srv_parsed = srv_parsed or p
                log(f"  {fmt(r['per_call'])} instructions/call (ready {r['ready_s']} s, calls {r['calls_s']} s)")
            if a.only != "server":
                log(f"pipeline count {rep}/{a.repeat}: pipeline_count --count {lo_n} and {hi_n} under callgrind")
                t0 = time.monotonic()
                f_lo = run_pipeline(a, lo_n, raw, rep)
                f_hi = run_pipeline(a, hi_n, raw, rep)
                lo, hi = parse_out(f_lo), parse_out(f_hi)
                n = hi_n - lo_n
                r = {"rep": rep, "lo": lo["total"], "hi": hi["total"], "per_call": (hi["total"] - lo["total"]) / n,
                     "sha256_per_call": (sha_cost(hi) - sha_cost(lo)) / n, "wall_s": round(time.monotonic() - t0, 1),
                     "fixed": lo["total"] - lo_n * (hi["total"] - lo["total"]) / n,
                     "checksum": (raw / f"pipeline-{rep}-{hi_n}.stdout").read_text().strip()}
                pipe_runs.append(r)
                pipe_parsed = pipe_parsed or (lo, hi, f_lo, f_hi)
                log(f"  {fmt(r['per_call'])} instructions/call (both runs {r['wall_s']} s)")
    finally:
        kill_children()

    # ---- figures
    R = S
    R["seconds_total"] = round(time.monotonic() - t_all)
    if server_runs:
        per = [r["per_call"] for r in server_runs]
        R["server"] = {"per_call": statistics.mean(per), "runs": server_runs, "spread_pct": spread(per),
                       "sha256_per_call": statistics.mean(r["sha256_per_call"] for r in server_runs)}
        R["server"]["per_call_without_sha256"] = R["server"]["per_call"] - R["server"]["sha256_per_call"]
        R["server"]["sha256_path"] = sha_path(srv_parsed)
        R["server"]["sha256_blocks_per_call"] = server_runs[0]["sha256_blocks_per_call"]
        nets = [r["per_call_without_timers"] for r in server_runs if "per_call_without_timers" in r]
        if len(nets) == len(server_runs):
            R["server"]["per_call_without_timers"] = statistics.mean(nets)
            R["server"]["spread_without_timers_pct"] = spread(nets)
            R["server"]["timers_per_call_estimate"] = R["server"]["per_call"] - R["server"]["per_call_without_timers"]
        roles: dict[str, list[float]] = defaultdict(list)
        for r in server_runs:
            acc: dict[str, float] = defaultdict(float)
            for t in r["threads"]:
                acc[t["role"]] += t["per_call"]
            for k, v in acc.items():
                roles[k].append(v)
        R["server"]["by_thread"] = {k: statistics.mean(v) for k, v in sorted(roles.items(), key=lambda kv: -max(kv[1]))}
    if pipe_runs:
        per = [r["per_call"] for r in pipe_runs]
        R["pipeline"] = {"per_call": statistics.mean(per), "runs": pipe_runs, "spread_pct": spread(per),
                         "sha256_per_call": statistics.mean(r["sha256_per_call"] for r in pipe_runs)}
        R["pipeline"]["per_call_without_sha256"] = R["pipeline"]["per_call"] - R["pipeline"]["sha256_per_call"]
        R["pipeline"]["sha256_path"] = sha_path(pipe_parsed[1])
    if server_runs and pipe_runs:
        R["difference"] = {"per_call": R["server"]["per_call"] - R["pipeline"]["per_call"],
                           "per_call_without_sha256": R["server"]["per_call_without_sha256"]
                           - R["pipeline"]["per_call_without_sha256"]}
        if "per_call_without_timers" in R["server"]:
            R["difference"]["per_call_without_timers"] = R["server"]["per_call_without_timers"] - R["pipeline"]["per_call"]

    # ---- text files
    N = a.calls
    crates_srv = None
    if server_runs:
        p = srv_parsed
        total = p["total"]
        L = [f"normd serve under callgrind: {N} sequential POST {URL} over one keep-alive Unix-socket",
             f"connection after {a.warmup} warm-up calls; every thread counted (--separate-threads=yes, summed).",
             f"Count 1 of {len(server_runs)}: {fmt(total)} instructions = {fmt(total / N)} per call.",
             f"Binary: {a.normd}", "",
             "Functions are merged over the source files of their inlined code (callgrind_annotate lists",
             "one row per function and file, so a function with inlined core code shows up several times).",
             "Inclusive = self + the inclusive cost of its calls, as callgrind_annotate --inclusive=yes.", ""]
        L.append("== instructions per call by thread ==")
        for t in server_runs[0]["threads"]:
            L.append(f"{t['per_call']:>12,.0f}  {100 * t['per_call'] * N / total:>6.2f}%  thread {t['thread']}: {t['role']}")
        L += ["", f"== top {a.top_inclusive} functions, inclusive, per call =="]
        L += table_rows(sorted(p["incl_fn"].items(), key=lambda kv: -kv[1])[:a.top_inclusive], N, total)
        L += ["", f"== top {a.top} functions, self, per call =="]
        L += table_rows(p["self_fn"].most_common(a.top), N, total)
        crates_srv = by_crate(p)
        L += ["", "== self cost by crate / source owner, per call (by the source file of each instruction: inlined",
              "   code counts for the crate it came from, e.g. the SHA-256 rounds' additions count for core) =="]
        for k, v in crates_srv.most_common(25):
            L.append(f"{v / N:>12,.0f}  {100 * v / total:>6.2f}%  {k}")
        idle = server_runs[0].get("idle")
        if idle:
            L += ["", f"== idle window ({idle['seconds']} s, no calls): {fmt(idle['instructions'])} instructions, "
                  f"{fmt(idle['per_second'])}/s; top self =="]
            for x in idle["top_self"]:
                L.append(f"{x['instructions']:>12,}  {x['fn']}")
        worker = max(p["threads"], key=lambda t: t["total"])
        L += ["", f"== callgrind_annotate --inclusive=yes, busiest thread ({worker['role']}), first {a.top} rows (cross-check) =="]
        L += annotate_head(Path(worker["path"]), a.top)
        (a.out / "callgrind-server.txt").write_text("\n".join(L) + "\n")
    crates_pipe = None
    if pipe_runs:
        lo, hi, f_lo, f_hi = pipe_parsed
        n = hi_n - lo_n
        per_call = (hi["total"] - lo["total"]) / n
        L = ["pipeline_count (the pure /norm pipeline, default plan + order.v1) under callgrind:",
             f"({fmt(hi['total'])} at --count {hi_n} − {fmt(lo['total'])} at --count {lo_n}) ÷ {n} = {fmt(per_call)} per call.",
             "Per-function figures are the same slope, function by function (merged over inlined source files).", ""]
        L.append(f"== top {a.top_inclusive} functions, inclusive, per call ==")
        L += table_rows(slope_rows(lo, hi, "incl_fn", n, a.top_inclusive), 1, per_call)
        L += ["", f"== top {a.top} functions, self, per call =="]
        L += table_rows(slope_rows(lo, hi, "self_fn", n, a.top), 1, per_call)
        crates_pipe = Counter()
        clo, chi = by_crate(lo), by_crate(hi)
        for k in set(clo) | set(chi):
            crates_pipe[k] = (chi.get(k, 0) - clo.get(k, 0)) / n
        L += ["", "== self cost by crate / source owner, per call =="]
        for k, v in crates_pipe.most_common(20):
            L.append(f"{v:>12,.0f}  {100 * v / per_call:>6.2f}%  {k}")
        (a.out / "callgrind-pipeline.txt").write_text("\n".join(L) + "\n")
    if crates_srv is not None and crates_pipe is not None:
        rows = []
        for k in set(crates_srv) | set(crates_pipe):
            sv = crates_srv.get(k, 0) / N
            q = crates_pipe.get(k, 0)
            rows.append((k, sv, q, sv - q))
        rows.sort(key=lambda r: -abs(r[3]))
        R["difference"]["by_crate_top"] = [{"owner": k, "server": round(sv), "pipeline": round(q), "difference": round(d)}
                                           for k, sv, q, d in rows[:20]]

    split = a.out / "cpu-split.json"
    if split.exists():  # cpu_split.py's result in the same dir (summary.md embeds its table too)
        R["cpu_split"] = json.loads(split.read_text())
    (a.out / "summary.json").write_text(json.dumps(R, indent=1, default=str) + "\n")
    (a.out / "summary.md").write_text(summary_md(R, a) + "\n")
    log(f"wrote {a.out}/summary.md, summary.json, callgrind-*.txt ({R['seconds_total']} s); raw files in {raw}")
    if "server" in R:
        sv = R["server"]
        log(f"server {fmt(sv['per_call'])} /call as counted (spread {sv['spread_pct']:.3f} %)"
            + (f", {fmt(sv['per_call_without_timers'])} without timers (spread {sv['spread_without_timers_pct']:.3f} %)"
               if "per_call_without_timers" in sv else ""))
    if "pipeline" in R:
        log(f"pipeline {fmt(R['pipeline']['per_call'])} /call (spread {R['pipeline']['spread_pct']:.3f} %)")
    return 0


def summary_md(R: dict, a) -> str:
    L = []
    w = L.append
    shown = os.path.relpath(R["normd"], REPO) if R["normd"].startswith(str(REPO)) else R["normd"]
    w("# Instructions per call (callgrind)")
    w("")
    w(f"{R['stamp']} · `{shown}` (source: {R.get('rev') or '?'}) · {R['documents']} documents of "
      f"`{R['payloads']}` (mean {R['mean_bytes']} B) · `POST {R['url']}` · {R['valgrind']} · "
      f"load at start {R['loadavg_start']} · {R['seconds_total']} s in all")
    w("")
    w("User-space instructions counted by `valgrind --tool=callgrind`, every thread of the process. "
      f"Counted {R['repeat']} times; the spread is (max − min) ÷ mean.")
    w("")
    w("The *whole server* figure leaves out what normd's timers execute while the calls run (measured in an idle "
      "window, see below): that part follows wall-clock time, not calls, and moves with valgrind's speed.")
    w("")
    w("| instructions per call | **per call** | without SHA-256 | spread | as counted (timers in) |")
    w("| --- | ---: | ---: | ---: | ---: |")
    if "server" in R:
        s = R["server"]
        net = s.get("per_call_without_timers", s["per_call"])
        nets = [r.get("per_call_without_timers", r["per_call"]) for r in s["runs"]]
        w(f"| **whole server** (`normd serve --workers 1`; {R['calls']} sequential calls on one keep-alive "
          f"Unix-socket connection, after {R['warmup']}) | **{fmt(net)}** | {fmt(net - s['sha256_per_call'])} | "
          f"{s.get('spread_without_timers_pct', s['spread_pct']):.3f} % ({' / '.join(fmt(x) for x in nets)}) | "
          f"{' / '.join(fmt(r['per_call']) for r in s['runs'])} |")
    if "pipeline" in R:
        p = R["pipeline"]
        lo, hi = R["pipeline_counts"]
        w(f"| **pipeline alone** (in-process `pipeline::norm`, slope {lo} → {hi} calls) | **{fmt(p['per_call'])}** | "
          f"{fmt(p['per_call_without_sha256'])} | {p['spread_pct']:.3f} % ({' / '.join(fmt(r['per_call']) for r in p['runs'])}) | – |")
    if "difference" in R:
        d = R["difference"]
        dn = d.get("per_call_without_timers", d["per_call"])
        w(f"| **difference**: HTTP, admission, logging, metrics | **{fmt(dn)}** | {fmt(dn)} | | {fmt(d['per_call'])} |")
    w("")
    if "server" in R:
        s = R["server"]
        sp = s["sha256_path"]
        share = 100 * s["sha256_per_call"] / s["per_call"]
        w(f"- **SHA-256** (the `X-Normd-Digest` of the canonical bytes): {fmt(s['sha256_per_call'])} instructions per "
          f"call, {share:.1f} % of the server's, on sha2's **{sp['path']}** under valgrind "
          f"({s['sha256_blocks_per_call']:.1f} blocks of 64 bytes per call, "
          f"{s['sha256_per_call'] / max(s['sha256_blocks_per_call'], 1):,.0f} instructions per block). sha2 picks its backend by "
          "CPUID; valgrind's virtual CPU does not offer the SHA extensions, so the count runs the portable rounds, while "
          "the real CPU here (sha_ni) runs `x86::digest_blocks`, a small fraction of these instructions per block. "
          "The *without SHA-256* column leaves all of it out: the native figure lies between the two columns, close "
          "to the right one.")
        if "per_call_without_timers" in s:
            idle = [r["idle"] for r in s["runs"]]
            w(f"- **Timers**: the 100 ms memory sampler and the runtime's upkeep run on wall-clock time, not per call. "
              f"Idle, normd executes {' / '.join(fmt(i['per_second']) for i in idle)} instructions/s under valgrind; over "
              f"the calls' wall time ({' / '.join(str(r['calls_s']) for r in s['runs'])} s) that is ≈ "
              f"{fmt(s['timers_per_call_estimate'])} per call ({100 * s['timers_per_call_estimate'] / s['per_call']:.2f} %), "
              f"idle mostly the memory sampler's /proc read and gauge updates; "
              f"left out of *per call* above (counted in: spread {s['spread_pct']:.3f} %).")
        if s.get("by_thread"):
            parts = [f"{k} {fmt(v)}" for k, v in s["by_thread"].items() if v >= 1]
            w(f"- **By thread** (instructions per call): {'; '.join(parts)}.")
        runs = s["runs"]
        w(f"- Server counts: ready under valgrind in {' / '.join(str(r['ready_s']) for r in runs)} s; the "
          f"{R['calls']} counted calls took {' / '.join(str(r['calls_s']) for r in runs)} s; whole count "
          f"{' / '.join(str(r['wall_s']) for r in runs)} s. Self-probe every hour (`--probe-interval-ms 3600000`): "
          "its first round runs at start-up, before the counters are zeroed, so no canary is counted. "
          "`--default-deadline-ms 60000` (a call under valgrind outlives the 20 ms default).")
    if "pipeline" in R:
        p = R["pipeline"]
        w(f"- Pipeline counts: {' / '.join(str(r['wall_s']) for r in p['runs'])} s per pair; the fixed part (start-up, "
          f"reading the payloads, compiling the schemas) is ≈ {fmt(p['runs'][0]['fixed'])} instructions; "
          f"`{p['runs'][0]['checksum']}`; sha2 ran its {p['sha256_path']['path']}.")
    if "difference" in R and R["difference"].get("by_crate_top"):
        w("")
        w("Where the difference goes: self instructions per call by crate (by each instruction's source file, so "
          "inlined code counts for the crate it came from; `[object]`: code without line info, e.g. libc):")
        w("")
        w("| owner | server | pipeline | difference |")
        w("| --- | ---: | ---: | ---: |")
        for r in R["difference"]["by_crate_top"][:15]:
            w(f"| {r['owner']} | {fmt(r['server'])} | {fmt(r['pipeline'])} | {r['difference']:+,} |")
    w("")
    w("Top functions: `callgrind-server.txt` (by thread, inclusive, self, by crate, the idle window) and "
      "`callgrind-pipeline.txt` (the same as slopes). The raw `callgrind.out` files are not kept here "
      f"(this run's are in `{R['raw_dir']}`).")
    extra = a.out / "cpu-split.md"
    if extra.exists():
        w("")
        w(extra.read_text().replace("# ", "## ", 1).rstrip())
    return "\n".join(L)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()
