"""A run's context, built from the command line: step durations and rates (full or smoke),
the normd and oha binaries, tool versions, machine facts, and the output and temp dirs."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .log import log
from .settings import GEN_CPU, LOADTEST, REPO, SERVER_CPU, cargo_target_dir

# Seconds: idle_wait, warmup, sat, rate (each fixed-rate step), overload, reject (each
# refusal step), app_warmup, app. Requests/s: app_rate, app_rate_64k, probe_rate, and
# smoke_rate (a smoke run's rates derive from it instead of from saturation). Counts:
# starts, overload_conns, app_repeats.
FULL = dict(starts=10, idle_wait=3.0, warmup=3, sat=10, rate=15, overload=15, overload_conns=64,
            reject=5, app_warmup=10, app=20, app_rate=1000, app_rate_64k=250, app_repeats=3,
            smoke_rate=0, probe_rate=500)
SMOKE = dict(starts=3, idle_wait=0.5, warmup=0.5, sat=1, rate=1, overload=1.5, overload_conns=16,
             reject=1, app_warmup=1, app=1.5, app_rate=50, app_rate_64k=10, app_repeats=2,
             smoke_rate=50, probe_rate=100)


class Ctx:
    """What every step reads: p (step parameters), smoke, pin, normd / oha paths, the
    cores of the demo-app steps, versions and machine facts for the report's header,
    out / raw / tmp directories, and sets (payload sets used, filled as they are)."""


def sh(cmd, **kw) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw).stdout.strip()
    except Exception:
        return "?"


def build_context(args) -> Ctx:
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
    ctx.pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    # The demo app's steps give the app the generator's core to itself; oha joins normd.
    ctx.app_cpu, ctx.gen_cpu_app = GEN_CPU, SERVER_CPU

    ctx.normd = find_normd(args.normd, args.smoke)
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
        wait_for_quiet_machine(args.max_load)
    ctx.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.timezone.utc)
    ctx.stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    ctx.out = Path(args.out) if args.out else LOADTEST / "results" / ("smoke" if args.smoke else now.strftime("%Y-%m-%d"))
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.raw = ctx.out / "raw"
    if ctx.raw.exists():
        shutil.rmtree(ctx.raw)
    ctx.raw.mkdir()
    for stale in ctx.out.glob("*.png"):
        stale.unlink()
    ctx.tmp = Path(tempfile.mkdtemp(prefix="normd-loadtest-"))
    return ctx


def find_normd(given: str | None, smoke: bool) -> str:
    """--normd / $NORMD_BIN, else the release build, else (smoke only) the debug build."""
    normd = given
    if not normd:
        tdir = cargo_target_dir()
        rel, dbg = tdir / "release" / "normd", tdir / "debug" / "normd"
        normd = str(rel if rel.exists() else dbg)
        if not rel.exists() and not smoke:
            raise SystemExit(f"{rel} missing: cargo build --release --locked (or --normd PATH)")
    if not os.access(normd, os.X_OK):
        raise SystemExit(f"normd binary not found: {normd}")
    return str(Path(normd).resolve())


def wait_for_quiet_machine(max_load: float) -> None:
    """Waits (up to 10 min) until the 1-min load average is below `max_load`."""
    end = time.monotonic() + 600
    while os.getloadavg()[0] >= max_load and time.monotonic() < end:
        log(f"waiting for a quieter machine: load {os.getloadavg()[0]:.2f} ≥ {max_load}")
        time.sleep(15)
