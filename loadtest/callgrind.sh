#!/usr/bin/env bash
# Instructions per /norm call (callgrind.py), then the thread CPU split (cpu_split.py),
# of a release normd built WITH symbols, without touching the committed profile
# (stripped, no debug info): the profile is overridden from the environment, into a
# target dir of its own, so target/ (and whoever builds there) is left alone.
#
#   bash loadtest/callgrind.sh --out /tmp/cg                 # build (once) + both tools
#   bash loadtest/callgrind.sh --out DIR --no-split --calls 500 ...   # more callgrind.py options
#
# NORMD_SYM_TARGET   target dir of the symbolized build (default /tmp/normd-sym-target)
# NORMD_SPLIT_ARGS   extra cpu_split.py options, e.g. "--repeat 5 --max-load 1.5"
# The build runs under `nice -n 10` (minutes: fat LTO). Needs valgrind (apt-get install
# valgrind), taskset, python3; see loadtest/README.md, "Instructions per call".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
target="${NORMD_SYM_TARGET:-/tmp/normd-sym-target}"

split=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-split" ]; then split=0; else args+=("$a"); fi
done
out=""
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--out" ] && out="${args[$((i + 1))]:-}"
done
[ -n "$out" ] || { echo "usage: $0 --out DIR [--no-split] [callgrind.py options]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }

echo "callgrind.sh: building normd + examples/pipeline_count with symbols into $target"
(cd "$repo" && CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  nice -n 10 cargo build --release --locked --target-dir "$target" --bin normd --example pipeline_count)

rev="$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
python3 "$here/callgrind.py" --normd "$target/release/normd" --rev "$rev" "${args[@]}"
if [ "$split" = 1 ]; then
  # shellcheck disable=SC2086 # NORMD_SPLIT_ARGS is a list of options
  python3 "$here/cpu_split.py" --normd "$target/release/normd" --out "$out" ${NORMD_SPLIT_ARGS:-}
fi
echo "callgrind.sh: results in $out"
