"""Where the load tests find things (repository, shared payloads, normd's config, the demo
app) and which core runs what."""

from __future__ import annotations

import os
from pathlib import Path

LOADTEST = Path(__file__).resolve().parent.parent
REPO = LOADTEST.parent
SHARED = Path(os.environ.get("NORMD_SHARED", REPO.parent / "shared"))
PAYLOADS = SHARED / "bench" / "payloads"
APP_DIR = LOADTEST / "app"
APP_SCHEMA = SHARED / "bench" / "schemas" / "order.v1.json"
CONFIG = LOADTEST / "normd-bench.toml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# normd on one core, the load generator and the driver on the other (the demo app's
# steps swap them, see context.py).
SERVER_CPU, GEN_CPU = "0", "1"
URL_PATH = "/norm?profile=bench"


def cargo_target_dir() -> Path:
    """$CARGO_TARGET_DIR (relative to the repository if not absolute), else target/."""
    tdir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return tdir if tdir.is_absolute() else REPO / tdir
