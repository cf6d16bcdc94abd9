#!/usr/bin/env bash
# The load tests: installs what is missing (tools.sh), builds the binary the image
# ships (static, release; cargo makes this a no-op when it is up to date), then runs
# run.py with the arguments given. Full run ≈ 12–15 min after the build:
#   bash loadtest/run.sh
# NORMD_BIN=PATH (or --normd PATH) measures another binary and skips the build.
# Report: loadtest/results/<UTC date>/report.md. `bash loadtest/run.sh --help` lists options.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools.sh
source "$here/tools.sh"
if [ -z "${NORMD_BIN:-}" ] && [[ " $* " != *" --normd "* ]] && [[ " $* " != *" --smoke "* ]]; then
  # The same build as the Dockerfile's: what is measured is what ships.
  host="$(rustc -vV | sed -n 's/^host: //p')"
  (cd "$here/.." && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$host" --bin normd)
  tdir="${CARGO_TARGET_DIR:-$here/../target}"
  export NORMD_BIN="$tdir/$host/release/normd"
fi
exec "$PY" "$here/run.py" "$@"
