"""The in-process pipeline's speed: criterion's `pipeline/` bench on the server core, so
the report can set saturation over the socket beside it."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
from pathlib import Path

from .log import log
from .procs import pinned
from .settings import REPO, SERVER_CPU, cargo_target_dir
from .workload import payload_dir


def measure_pipeline(ctx) -> dict:
    env = dict(os.environ, NORMD_BENCH_PAYLOADS=str(payload_dir("4k")))
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
    out = subprocess.run(pinned(ctx, SERVER_CPU, ["cargo", "bench", "--locked", "--bench", "pipeline", *prof,
                                                  "--", *crit_args]),
                         cwd=REPO, env=env, check=True, timeout=900, capture_output=True, text=True)
    (ctx.raw / "criterion-pipeline.txt").write_text(out.stdout + out.stderr)
    found = fresh_estimates(ctx, started)
    if not found:
        raise RuntimeError("criterion wrote no pipeline/*/new/estimates.json")
    name, best = next(iter(sorted(found.items())))
    return {"bench": name, "mean_ns": best["mean_ns"], "ci_ns": best["ci_ns"],
            "ops_per_s": 1e9 / best["mean_ns"], "path": best["path"], "all": found,
            "profile": "dev" if ctx.smoke else "bench (release)"}


def fresh_estimates(ctx, started: float) -> dict:
    """Criterion's mean and 95 % CI of every `pipeline/*` bench written since `started`
    (older files are from earlier runs); copies each estimates.json into raw/."""
    tdir = cargo_target_dir()
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
    return found
