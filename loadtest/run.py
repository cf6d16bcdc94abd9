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
# The steps live in loadtest/lt/, one module per job; loadtest/README.md lists them.

from __future__ import annotations

import argparse
import json
import os
import signal
import shutil
import sys
import time

from lt.context import build_context
from lt.demo import measure_demo_app
from lt.log import log
from lt.normd_alone import measure_normd_alone
from lt.overload import measure_overload
from lt.pipeline import measure_pipeline
from lt.plots import make_plots
from lt.procs import cleanup
from lt.report import report
from lt.settings import GEN_CPU


def parse_args() -> argparse.Namespace:
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
    return ap.parse_args()


def run_sections(ctx, sections: str, R: dict) -> None:
    """The chosen sections into R as each completes (so a failed run still writes what
    it measured), in the order d, a, b, c: the overload steps offer 10x the socket
    saturation that a measures ($NORMD_SAT_RPS or 5000/s without a)."""
    if "d" in sections:
        R["d"] = measure_pipeline(ctx)
    if "a" in sections:
        R["a"] = measure_normd_alone(ctx)
    if "b" in sections:
        sat = R["a"]["sat"]["unix"]["rps_200"] if "a" in R else float(os.environ.get("NORMD_SAT_RPS", "5000"))
        R["b"] = measure_overload(ctx, sat)
    if "c" in sections:
        R["c"] = measure_demo_app(ctx)


def without_private(o):
    """o without the keys that start with "_" (per-request data kept for the plots)."""
    if isinstance(o, dict):
        return {str(k): without_private(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, list):
        return [without_private(v) for v in o]
    return o


def main() -> int:
    args = parse_args()
    ctx = build_context(args)
    if ctx.pin:
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
        run_sections(ctx, args.sections, R)
        ok = True
    finally:
        cleanup()
        R["meta"] = {"stamp": ctx.stamp, "normd": ctx.normd_rel, "build": ctx.build, "oha": ctx.oha_version,
                     "git": ctx.git, "loadavg_start": ctx.loadavg, "params": ctx.p, "smoke": ctx.smoke,
                     "sets": ctx.sets, "seconds": time.monotonic() - t0, "complete": ok}
        (ctx.out / "results.json").write_text(json.dumps(without_private(R), indent=1))
        if ok:
            pngs = make_plots(ctx, R)
            (ctx.out / "report.md").write_text(report(ctx, R, pngs))
            log(f"report: {ctx.out / 'report.md'} ({time.monotonic() - t0:.0f}s)")
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
