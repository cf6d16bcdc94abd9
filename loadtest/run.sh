#!/usr/bin/env bash
# The load tests: installs what is missing (tools.sh), then runs run.py with the
# arguments given. Full run (≈ 5 min after the build):
#   cargo build --release --locked && bash loadtest/run.sh
# Report: loadtest/results/<UTC date>/report.md. `bash loadtest/run.sh --help` lists options.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools.sh
source "$here/tools.sh"
exec "$PY" "$here/run.py" "$@"
