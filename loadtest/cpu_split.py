#!/usr/bin/env python3
"""Where normd's CPU goes per /norm call under closed-loop load, thread by thread.

normd runs on core 0 (`taskset -c 0`, `--workers 1`: one worker thread, one I/O thread);
this script is the load generator, pinned to core 1: --conns keep-alive connections over
the Unix socket, each sending its next `POST /norm?schema=order.v1` (every document of
the payload set in turn) as soon as the previous answer is in. After --warmup seconds it
samples, for every thread of normd, /proc/PID/task/TID/stat (utime, stime),
.../schedstat (time on CPU, ns) and .../status (voluntary / nonvoluntary context
switches), runs --duration seconds (at most --max-calls calls), samples again, and
reports per call: user µs, system µs, on-CPU µs, each thread group's share (the I/O
threads `normd-io`, the workers `normd-worker-N`, the rest), context switches, and the
req/s. utime/stime tick at 1/CLK_TCK s (10 ms), so over a 10 s window they resolve
≈ 0.1 %; schedstat is exact and gives the split.

The loader is stdlib Python (selectors, non-blocking AF_UNIX): it samples /proc at the
exact window edges, in its own loop, and needs no install. Its own CPU is reported: when
its core is ~100 % busy and normd's is not, the window measured the rate the loader could
offer, where normd's threads also sleep and wake per call (costlier per call than at
saturation, see loadtest/README.md).

  python3 loadtest/cpu_split.py --normd target/release/normd --out /tmp/split

normd: `serve --workers 1 --socket <tmp>/normd.sock --listen '' --schemas <repo>/schemas
--flags '' --drain-delay-ms 0 --probe-interval-ms 3600000 --max-queue 64` (a deep queue
and `X-Deadline-Ms: 1000`, like run.py's saturation step, so the loop measures work, not
admission; --normd-arg adds more). Default logging (one JSON line per call, to a file).
Writes cpu-split.json and cpu-split.md to --out, and adds them to a summary.json /
summary.md of callgrind.py found there. Traffic goes only to a Unix socket in a
private temp dir; every loop is bounded in time and count; normd is stopped (SIGTERM,
then SIGKILL) whatever happens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # lt/, from any working directory

from lt.children import CHILDREN, exit_on_signals, kill_children, pin, stop  # noqa: E402
from lt.context import wait_for_quiet_machine  # noqa: E402
from lt.httpclient import wait_unix_ready  # noqa: E402
from lt.log import log  # noqa: E402
from lt.procfs import machine_busy_ticks  # noqa: E402

REPO = HERE.parent
SHARED = Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
DEFAULT_PAYLOADS = SHARED / "bench" / "payloads" / "4k"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADER_CPU = 0, 1


# ----------------------------------------------------------------------------- /proc


def group_of(comm: str) -> str:
    """The thread group of a normd thread name: io, worker or other."""
    if comm.startswith("normd-io"):
        return "io"
    if comm.startswith("normd-worker"):
        return "worker"
    return "other"


def snapshot(pid: int) -> dict:
    """Per thread: name, utime/stime ticks, on-CPU ns, context switches; and the process."""
    threads = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/stat") as f:
                s = f.read()
            comm = s[s.index("(") + 1:s.rindex(")")]
            fields = s[s.rindex(")") + 2:].split()
            ut, st = int(fields[11]), int(fields[12])
            with open(f"{base}/{tid}/schedstat") as f:
                run_ns = int(f.read().split()[0])
            vol = invol = 0
            with open(f"{base}/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol = int(line.split()[1])
        except (OSError, ValueError):
            continue  # the thread ended between listdir and read
        threads[tid] = {"comm": comm, "ut": ut, "st": st, "run_ns": run_ns, "vol": vol, "invol": invol}
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return {"t": time.monotonic(), "threads": threads, "proc_ut": int(fields[11]), "proc_st": int(fields[12]),
            "self": os.times(), "machine": machine_busy_ticks()}


# ----------------------------------------------------------------------------- loader


class Conn:
    __slots__ = ("sock", "out", "off", "inbuf", "sent_at", "busy")

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.out = b""
        self.off = 0
        self.inbuf = bytearray()
        self.sent_at = 0.0
        self.busy = False


def response_end(buf: bytearray) -> tuple[int, int] | None:
    """(status, bytes used) when buf holds a whole response, else None."""
    h = buf.find(b"\r\n\r\n")
    if h < 0:
        return None
    head = bytes(buf[:h]).lower()
    status = int(head[9:12])
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        n = int(head[i + 17:j if j >= 0 else len(head)].strip())
        end = h + 4 + n
        return (status, end) if len(buf) >= end else None
    if b"transfer-encoding: chunked" in head:
        k = buf.find(b"\r\n0\r\n\r\n", h)
        if k < 0 and buf[h + 4:h + 9] == b"0\r\n\r\n":
            return status, h + 9
        return (status, k + 7) if k >= 0 else None
    return status, h + 4


LIVEZ = b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"


def load(sock: str, reqs: list[bytes], conns: int, warmup: float, duration: float, max_calls: int,
         pid: int, stall: float = 10.0, rate: float | None = None, livez_every: float | None = None) -> dict:
    """Closed loop: `conns` connections, each sends its next request when the answer is in.
    With `rate` (req/s), paced instead: a request leaves every 1/rate s on an idle connection
    (open loop while fewer than `conns` are outstanding). With `livez_every` (s), one more
    connection sends `GET /livez` that often (after its previous answer). Snapshots /proc at
    the end of the warm-up and at the end of the window; latencies are those of the window."""
    sel = selectors.DefaultSelector()
    cs = [Conn(sock) for _ in range(conns)]
    idle: list[Conn] = []
    nxt = 0
    t_next = time.monotonic()  # paced: when the next request is due

    def send(c: Conn, data: bytes) -> None:
        c.out = data
        c.off = 0
        c.sent_at = time.monotonic()
        c.busy = True
        sel.modify(c.sock, selectors.EVENT_WRITE, c) if c.sock in sel.get_map() else \
            sel.register(c.sock, selectors.EVENT_WRITE, c)

    def send_next(c: Conn) -> None:
        nonlocal nxt, t_next
        if rate is not None:
            if time.monotonic() < t_next:
                idle.append(c)
                return
            t_next += 1.0 / rate
        send(c, reqs[nxt % len(reqs)])
        nxt += 1

    probe = Conn(sock) if livez_every else None
    probe_due = time.monotonic()
    livez: list[float] = []
    lats: list[float] = []

    t_start = time.monotonic()
    t_window = t_start + warmup
    t_end = t_window + duration
    before = None
    done = 0  # calls completed inside the window
    statuses: dict[str, int] = {}
    lat_sum = 0.0
    for c in cs:
        send_next(c)
    while True:
        now = time.monotonic()
        if before is None and now >= t_window:
            before = snapshot(pid)
        if before is not None and (now >= t_end or done >= max_calls):
            after = snapshot(pid)
            break
        if now > t_end + 30:
            raise TimeoutError("loader: window never ended")
        while idle and now >= t_next:
            send_next(idle.pop())
        if probe is not None and not probe.busy and now >= probe_due:
            send(probe, LIVEZ)
            probe_due = now + livez_every
        wait = 0.05
        if idle:
            wait = min(wait, max(0.0, t_next - now))
        if probe is not None and not probe.busy:
            wait = min(wait, max(0.0, probe_due - now))
        for key, ev in sel.select(timeout=wait):
            c: Conn = key.data
            try:
                if ev & selectors.EVENT_WRITE:
                    n = c.sock.send(memoryview(c.out)[c.off:])
                    c.off += n
                    if c.off >= len(c.out):
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                chunk = c.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                raise
            if not chunk:
                raise ConnectionError("normd closed a connection")
            c.inbuf += chunk
            while True:
                r = response_end(c.inbuf)
                if r is None:
                    break
                status, used = r
                del c.inbuf[:used]
                t = time.monotonic()
                c.busy = False
                if c is probe:
                    if before is not None:
                        livez.append(t - c.sent_at)
                    continue
                if before is not None:
                    done += 1
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    lat_sum += t - c.sent_at
                    lats.append(t - c.sent_at)
                send_next(c)
        now = time.monotonic()
        for c in cs + ([probe] if probe else []):
            if c.busy and now - c.sent_at > stall:
                raise TimeoutError(f"no answer for {stall:.0f}s on a connection")
    for c in cs + ([probe] if probe else []):
        try:
            sel.unregister(c.sock)
        except Exception:
            pass
        c.sock.close()
    return {"before": before, "after": after, "calls": done, "statuses": statuses,
            "mean_latency_ms": 1000 * lat_sum / done if done else None,
            "latencies_s": lats, "livez_s": livez}


# ----------------------------------------------------------------------------- figures


def figures(res: dict) -> dict:
    b, a = res["before"], res["after"]
    n = res["calls"]
    wall = a["t"] - b["t"]
    groups: dict[str, dict] = {}
    names: dict[str, set] = {}
    for tid, x in a["threads"].items():
        y = b["threads"].get(tid, {"ut": 0, "st": 0, "run_ns": 0, "vol": 0, "invol": 0})
        g = group_of(x["comm"])
        names.setdefault(g, set()).add(x["comm"])
        d = groups.setdefault(g, {"ut": 0, "st": 0, "run_ns": 0, "vol": 0, "invol": 0, "threads": 0})
        for k in ("ut", "st", "run_ns", "vol", "invol"):
            d[k] += x[k] - y[k]
        d["threads"] += 1
    tot = {k: sum(g[k] for g in groups.values()) for k in ("ut", "st", "run_ns", "vol", "invol")}
    us = 1e6 / CLK_TCK
    out = {"calls": n, "wall_s": wall, "rps": n / wall, "statuses": res["statuses"],
           "mean_latency_ms": res["mean_latency_ms"],
           "user_us_per_call": tot["ut"] * us / n, "system_us_per_call": tot["st"] * us / n,
           "oncpu_us_per_call": tot["run_ns"] / 1e3 / n,
           "proc_user_us_per_call": (a["proc_ut"] - b["proc_ut"]) * us / n,
           "proc_system_us_per_call": (a["proc_st"] - b["proc_st"]) * us / n,
           "normd_cores": tot["run_ns"] / 1e9 / wall,
           "ctx_voluntary_per_call": tot["vol"] / n, "ctx_nonvoluntary_per_call": tot["invol"] / n,
           "groups": {}}
    for g, d in sorted(groups.items()):
        out["groups"][g] = {
            "threads": d["threads"], "names": sorted(names[g]),
            "user_us_per_call": d["ut"] * us / n, "system_us_per_call": d["st"] * us / n,
            "oncpu_us_per_call": d["run_ns"] / 1e3 / n,
            "share_oncpu_pct": 100 * d["run_ns"] / tot["run_ns"] if tot["run_ns"] else 0,
            "ctx_voluntary_per_call": d["vol"] / n, "ctx_nonvoluntary_per_call": d["invol"] / n}
    sb, sa = b["self"], a["self"]
    out["loader_cpu_us_per_call"] = ((sa.user - sb.user) + (sa.system - sb.system)) * 1e6 / n
    out["loader_cores"] = ((sa.user - sb.user) + (sa.system - sb.system)) / wall
    mb, ma = b["machine"], a["machine"]
    out["machine_busy_cores"] = (ma - mb) / CLK_TCK / wall
    return out


def norm_requests(payloads: Path, url: str) -> tuple[list[bytes], list[bytes]]:
    """The documents of a payload directory, and one keep-alive request per document
    (`X-Deadline-Ms: 1000`, so the loop measures work, not admission)."""
    files = sorted(payloads.glob("*.json"))
    if not files:
        raise SystemExit(f"no *.json in {payloads}")
    docs = [p.read_bytes() for p in files]
    reqs = [(f"POST {url} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             f"X-Deadline-Ms: 1000\r\nContent-Length: {len(d)}\r\n\r\n").encode() + d for d in docs]
    return docs, reqs


def start_normd(a, tmp: Path) -> tuple[subprocess.Popen, str]:
    """Starts `normd serve --workers 1` on core SERVER_CPU and a Unix socket in tmp; returns it once /readyz says 200."""
    sock = str(tmp / "normd.sock")
    cmd = [a.normd, "serve", "--workers", "1", "--socket", sock, "--listen", "", "--schemas", str(a.schemas),
           "--flags", "", "--drain-delay-ms", "0", "--probe-interval-ms", "3600000", "--max-queue", "64"] + a.normd_arg
    errf = open(tmp / "normd.log", "wb")
    p = subprocess.Popen(pin(SERVER_CPU, cmd), cwd=tmp, stdout=errf, stderr=subprocess.STDOUT, start_new_session=True)
    errf.close()
    CHILDREN.append(p)
    if wait_unix_ready(p, sock, 30, 0.02, probe_timeout=2):
        return p, sock
    if p.poll() is not None:
        raise RuntimeError(f"normd exited ({p.returncode}): " + (tmp / "normd.log").read_text()[-2000:])
    raise TimeoutError("normd not ready within 30 s")


def md(R: dict) -> str:
    runs = R["runs"]
    L = []
    w = L.append
    w("# CPU per call, thread by thread (closed loop, Unix socket)")
    w("")
    w(f"{R['stamp']} · `{R['normd_shown']}` · `POST {R['url']}` · {R['documents']} documents "
      f"(mean {R['mean_bytes']} B) · {R['conns']} keep-alive connections, {R['warmup']} s warm-up + "
      f"{R['duration']} s window, {len(runs)} runs · normd on core {SERVER_CPU}, loader on core {LOADER_CPU} · "
      f"load at start {R['loadavg_start']}")
    w("")
    hdr = "| per call | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |"
    w(hdr)
    w("|" + " --- |" + " ---: |" * (len(runs) + 1))

    def row(label, f, digits=1):
        vals = [f(r) for r in runs]
        shown = [("–" if v is None else f"{v:,.{digits}f}") for v in vals]
        good = [v for v in vals if v is not None]
        med = f"{statistics.median(good):,.{digits}f}" if good else "–"
        w(f"| {label} | " + " | ".join(shown) + f" | **{med}** |")

    row("req/s (all answers)", lambda r: r["rps"], 0)
    row("normd user µs", lambda r: r["user_us_per_call"])
    row("normd system µs", lambda r: r["system_us_per_call"])
    row("normd on-CPU µs (schedstat)", lambda r: r["oncpu_us_per_call"])
    row("context switches (all threads, voluntary + not)",
        lambda r: r["ctx_voluntary_per_call"] + r["ctx_nonvoluntary_per_call"], 2)
    row("loader CPU µs", lambda r: r["loader_cpu_us_per_call"])
    row("mean latency ms (loader's view)", lambda r: r["mean_latency_ms"], 2)
    row("normd busy, cores (on-CPU ÷ wall)", lambda r: r["normd_cores"], 2)
    row("loader busy, cores", lambda r: r["loader_cores"], 2)
    row("machine busy, cores (all processes)", lambda r: r["machine_busy_cores"], 2)
    w("")
    w("By thread group, per call (median over the runs):")
    w("")
    w("| threads | user µs | system µs | on-CPU µs | share of normd's on-CPU | context switches vol. / invol. |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    labels = {"io": "I/O (`normd-io`)", "worker": "workers (`normd-worker-N`)", "other": "other (main, log writer)"}
    for g in ("io", "worker", "other"):
        have = [r["groups"][g] for r in runs if g in r["groups"]]
        if not have:
            continue
        m = {k: statistics.median(x[k] for x in have) for k in
             ("user_us_per_call", "system_us_per_call", "oncpu_us_per_call", "share_oncpu_pct",
              "ctx_voluntary_per_call", "ctx_nonvoluntary_per_call")}
        w(f"| {labels[g]} | {m['user_us_per_call']:.1f} | {m['system_us_per_call']:.1f} | "
          f"**{m['oncpu_us_per_call']:.1f}** | **{m['share_oncpu_pct']:.0f} %** | "
          f"{m['ctx_voluntary_per_call']:.2f} / {m['ctx_nonvoluntary_per_call']:.2f} |")
    w("")
    st: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            st[k] = st.get(k, 0) + v
    names = sorted({n for r in runs for g in r["groups"].values() for n in g["names"]})
    w(f"- Statuses over all windows: {', '.join(f'{k}: {v:,}' for k, v in sorted(st.items()))}. "
      f"Threads seen: {', '.join('`' + n + '`' for n in names)} (\"other\": the main thread, the log writer, "
      "any blocking-pool thread not named normd-io).")
    w("- *user/system* come from utime/stime (1/CLK_TCK s ticks); *on-CPU* from schedstat (ns, exact). "
      "Context switches are summed over normd's threads (/proc/PID/task/*/status), not the main thread's "
      "line in /proc/PID/status, which counts only the main thread.")
    w("- *normd busy* below 1.0 means normd's core was not saturated by this load: either the loader could not "
      "offer more (its core near 1.0) or other processes took core 0 (*machine busy* near 2.0 with normd + loader "
      "well below it). Either way normd's threads then also sleep and wake up between calls, which costs CPU per "
      "call, and req/s is not normd's capacity.")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", default=os.environ.get("NORMD_BIN"), required=not os.environ.get("NORMD_BIN"))
    ap.add_argument("--payloads", type=Path, default=DEFAULT_PAYLOADS)
    ap.add_argument("--schemas", type=Path, default=REPO / "schemas")
    ap.add_argument("--url", default="/norm?schema=order.v1")
    ap.add_argument("--conns", type=int, default=32, help="keep-alive connections (default 32, as run.py's saturation)")
    ap.add_argument("--warmup", type=float, default=3.0, help="s of load before the window (default 3)")
    ap.add_argument("--duration", type=float, default=10.0, help="s in the window (default 10)")
    ap.add_argument("--max-calls", type=int, default=1_000_000, help="end the window early after this many calls")
    ap.add_argument("--repeat", type=int, default=3, help="runs, each with a fresh normd (default 3)")
    ap.add_argument("--normd-arg", action="append", default=[], help="extra `normd serve` argument (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-load", type=float, help="first wait (at most 10 min) for a 1-min load average below this")
    a = ap.parse_args()
    a.normd = str(Path(a.normd).resolve())
    docs, reqs = norm_requests(a.payloads, a.url)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {LOADER_CPU})

    exit_on_signals(kill_children)
    if a.max_load is not None:
        wait_for_quiet_machine(a.max_load)
    R = {"stamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "normd": a.normd,
         "normd_shown": os.path.relpath(a.normd, REPO) if a.normd.startswith(str(REPO)) else a.normd,
         "url": a.url, "documents": len(docs), "mean_bytes": round(sum(map(len, docs)) / len(docs)),
         "conns": a.conns, "warmup": a.warmup, "duration": a.duration, "clk_tck": CLK_TCK,
         "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "runs": []}
    try:
        for i in range(a.repeat):
            tmp = Path(tempfile.mkdtemp(prefix="normd-split-"))
            try:
                p, sock = start_normd(a, tmp)
                log(f"run {i + 1}/{a.repeat}: {a.conns} connections, {a.warmup}+{a.duration} s")
                res = load(sock, reqs, a.conns, a.warmup, a.duration, a.max_calls, p.pid)
                stop(p)
                f = figures(res)
                R["runs"].append(f)
                log(f"  {f['rps']:,.0f} req/s, normd {f['oncpu_us_per_call']:.1f} µs on-CPU/call "
                    f"(user {f['user_us_per_call']:.1f}, sys {f['system_us_per_call']:.1f}), "
                    f"io {f['groups'].get('io', {}).get('share_oncpu_pct', 0):.0f} % / "
                    f"worker {f['groups'].get('worker', {}).get('share_oncpu_pct', 0):.0f} %, "
                    f"loader {f['loader_cores']:.2f} cores")
            finally:
                kill_children()
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        kill_children()
    if not R["runs"]:
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cpu-split.json").write_text(json.dumps(R, indent=1) + "\n")
    (a.out / "cpu-split.md").write_text(md(R) + "\n")
    log(f"wrote {a.out}/cpu-split.md and cpu-split.json")
    # Beside callgrind.py's summary (same --out): add this run to it.
    sj, sm = a.out / "summary.json", a.out / "summary.md"
    if sj.exists():
        S = json.loads(sj.read_text())
        S["cpu_split"] = R
        sj.write_text(json.dumps(S, indent=1, default=str) + "\n")
    if sm.exists():
        text = sm.read_text()
        marker = "\n## CPU per call, thread by thread"
        if marker in text:
            text = text[:text.index(marker)]
        sm.write_text(text.rstrip() + "\n\n" + md(R).replace("# ", "## ", 1) + "\n")
        log(f"added to {sm} and {sj}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()
