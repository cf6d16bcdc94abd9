#!/usr/bin/env bash
# The JVM demo app's test: builds it, then test_paths.py starts normd (NORMD_BIN) and the
# app at ROLLOUT=0 and ROLLOUT=100 and checks that both paths give the same answer bytes
# for every shared payload and the edge cases (see test_paths.py). 127.0.0.1 and a Unix
# socket only; ~30-60 s (`./test.sh --quick`, every 8th valid payload, as the CI smoke
# runs it: ~15 s). Ends with "N passed, N failed"; exit 1 on a failure.
#   NORMD_BIN=/path/to/normd ./test.sh        (default: target/release/normd, else target/debug/normd)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [ -z "${NORMD_BIN:-}" ]; then
  for b in "$repo/target/release/normd" "$repo/target/debug/normd"; do
    if [ -x "$b" ]; then NORMD_BIN="$b"; break; fi
  done
fi
[ -n "${NORMD_BIN:-}" ] && [ -x "$NORMD_BIN" ] || { echo "test.sh: set NORMD_BIN to a normd binary (or build target/debug/normd)" >&2; exit 2; }
"$here/build.sh"
exec python3 "$here/test_paths.py" --normd "$NORMD_BIN" "$@"
