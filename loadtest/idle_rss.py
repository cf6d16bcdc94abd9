#!/usr/bin/env python3
"""Idle RSS of `normd serve`, broken down by mapping from /proc/PID/smaps.

Starts normd the way run.py's section a does (Unix socket + TCP, one worker, the bench
config), waits for the first 200 from GET /readyz, then --settle seconds (3), and reads
VmRSS and every mapping's Rss/Anonymous/Shared figures. Mappings are grouped by what they
hold: the binary's segments (text, read-only data, data/bss), heap ([heap]), thread stacks
(an anonymous mapping that holds a thread's stack pointer, from the `[stack]` line or the
size of a pthread stack), other anonymous memory (mimalloc's segments and arenas, tokio's
and the metrics' allocations end up here), shared libraries, vdso/vvar.

  python3 loadtest/idle_rss.py --normd /tmp/t/release/normd [--repeat 3] [--out DIR]

Stdlib only; prints a table and, with --out, writes idle-rss.md beside the other results.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = HERE / "normd-bench.toml"


def readyz(sock: str) -> bool:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(0.5)
        s.connect(sock)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def kb(line: str) -> int:
    return int(line.split()[1])


def smaps(pid: int) -> list[dict]:
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                cur = {
                    "start": int(m.group(1), 16),
                    "end": int(m.group(2), 16),
                    "perms": m.group(3),
                    "path": m.group(4).strip(),
                }
                maps.append(cur)
            elif cur is not None and ":" in line:
                key, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    cur[key] = kb(line)
    return maps


def thread_stack_pointers(pid: int) -> dict[int, str]:
    """Stack pointer of every thread (field 29 of stat is 0 on recent kernels unless the
    thread is being traced, so the syscall line's stack pointer is used instead)."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/syscall") as f:
                parts = f.read().split()
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if len(parts) >= 8:
            out[int(parts[-2], 16)] = name
    return out


def classify(m: dict, binary: str, stacks: dict[int, str]) -> str:
    path = m["path"]
    if path == binary or (path and os.path.basename(path) == os.path.basename(binary)):
        if "x" in m["perms"]:
            return "binary: text"
        if "w" in m["perms"]:
            return "binary: data/relro"
        return "binary: read-only data"
    if path == "[heap]":
        return "heap ([heap], brk)"
    if path == "[stack]":
        return "thread stack: main"
    if path in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
        return "vdso/vvar"
    if path.endswith(".so") or ".so." in path:
        return "shared libraries"
    if path == "":
        for sp, name in stacks.items():
            if m["start"] <= sp < m["end"]:
                return f"thread stack: {name}"
        return "anonymous (allocator segments, other)"
    return f"other: {path}"


def measure(normd: str, settle: float, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="normd-idle-"))
    sock = str(tmp / "normd.sock")
    cmd = [normd, "serve", "--config", str(CONFIG), "--schemas", str(REPO / "schemas"),
           "--socket", sock, "--listen", "127.0.0.1:0", "--workers", "1",
           "--memory-limit", "256Mi", "--drain-delay-ms", "0", *extra]
    log = open(tmp / "normd.log", "wb")
    p = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not readyz(sock):
            if p.poll() is not None or time.monotonic() - t0 > 30:
                raise SystemExit(f"normd did not become ready: {(tmp / 'normd.log').read_text()[-2000:]}")
            time.sleep(0.01)
        time.sleep(settle)
        with open(f"/proc/{p.pid}/status") as f:
            status = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in f if ":" in l}
        stacks = thread_stack_pointers(p.pid)
        maps = smaps(p.pid)
        binary = os.path.realpath(normd)
        groups: dict[str, dict] = {}
        for m in maps:
            g = groups.setdefault(classify(m, binary, stacks), {"Rss": 0, "Size": 0, "n": 0, "Anonymous": 0})
            g["Rss"] += m.get("Rss", 0)
            g["Size"] += m.get("Size", 0)
            g["Anonymous"] += m.get("Anonymous", 0)
            g["n"] += 1
        big_anon = sorted(
            (m for m in maps if m["path"] == "" and m.get("Rss", 0) > 0),
            key=lambda m: -m.get("Rss", 0),
        )[:8]
        return {
            "VmRSS": status.get("VmRSS"),
            "RssAnon": status.get("RssAnon"),
            "RssFile": status.get("RssFile"),
            "Threads": status.get("Threads"),
            "groups": groups,
            "threads": sorted(stacks.values()),
            "big_anon": [(hex(m["start"]), m["Size"], m["Rss"]) for m in big_anon],
        }
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--normd", required=True)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after ready (3, as run.py)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--normd-arg", action="append", default=[])
    ap.add_argument("--out", help="directory for idle-rss.md")
    a = ap.parse_args()
    lines = [f"# Idle RSS by mapping\n", f"`{a.normd}` · `serve --workers 1` + bench config · {a.settle:g} s after ready\n"]
    for i in range(a.repeat):
        r = measure(a.normd, a.settle, a.normd_arg)
        lines.append(f"\n## run {i + 1}: VmRSS {r['VmRSS']} (anon {r['RssAnon']}, file {r['RssFile']}), {r['Threads']} threads: {', '.join(r['threads'])}\n")
        lines.append("| mappings | count | size KiB | resident KiB | of which anonymous KiB |")
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for name, g in sorted(r["groups"].items(), key=lambda kv: -kv[1]["Rss"]):
            lines.append(f"| {name} | {g['n']} | {g['Size']:,} | **{g['Rss']:,}** | {g['Anonymous']:,} |")
        lines.append("\nLargest resident anonymous mappings (start, size KiB, resident KiB): "
                     + "; ".join(f"{s} {sz:,}/{rss:,}" for s, sz, rss in r["big_anon"]))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "idle-rss.md").write_text(text)


if __name__ == "__main__":
    main()
