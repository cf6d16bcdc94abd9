#!/usr/bin/env bash
# CI's load-test smoke run: every section of run.py for a few seconds at small rates,
# with target/release/normd if present, else target/debug/normd. No thresholds: it
# checks only that every step ran and wrote its report files (results/smoke/).
# Installs oha (cached at ~/.cache/normd-loadtest, see tools.sh) and matplotlib itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
started=$(date +%s)

export NORMD_LOADTEST_SMOKE=1
# shellcheck source=tools.sh
source "$here/tools.sh"
echo "loadtest smoke: tools ready in $(( $(date +%s) - started ))s"

tdir="${CARGO_TARGET_DIR:-$repo/target}"
case "$tdir" in /*) ;; *) tdir="$repo/$tdir" ;; esac
if [ -z "${NORMD_BIN:-}" ]; then
  if [ -x "$tdir/release/normd" ]; then NORMD_BIN="$tdir/release/normd"
  else
    [ -x "$tdir/debug/normd" ] || (cd "$repo" && cargo build --locked --bin normd)
    NORMD_BIN="$tdir/debug/normd"
  fi
fi

out="$here/results/smoke"
rm -rf "$out"
t0=$(date +%s)
"$PY" "$here/run.py" --smoke --normd "$NORMD_BIN" --out "$out"

missing=0
for f in report.md results.json latency-4k.png overload.png before-after-4k.png before-after-64k.png \
         raw/sat-4k-unix.oha.json raw/sat-4k-tcp.oha.json raw/sat-1k-unix.oha.json raw/sat-64k-unix.oha.json \
         raw/rate25-4k-unix.oha.json raw/rate50-4k-unix.oha.json raw/rate75-4k-unix.oha.json \
         raw/rate25-4k-tcp.oha.json raw/rate50-4k-tcp.oha.json raw/rate75-4k-tcp.oha.json raw/rate50-livez-unix.oha.json \
         raw/overload-4k-unix.oha.json raw/reject-4k-unix.oha.json raw/overload-64k-unix.oha.json raw/livez-floor-unix.oha.json \
         raw/app4k-0.oha.json raw/app4k-100.oha.json raw/app4k-0-stats.json raw/app4k-100-stats.json \
         raw/app64k-0.oha.json raw/app64k-100.oha.json raw/app64k-0-stats.json raw/app64k-100-stats.json \
         raw/app4k-0-r2.oha.json raw/app4k-100-r2-stats.json raw/app64k-100-r2.oha.json \
         raw/criterion-pipeline.txt; do
  if [ ! -s "$out/$f" ]; then echo "loadtest smoke: missing $out/$f" >&2; missing=1; fi
done
"$PY" - "$out/results.json" <<'PY' || missing=1
import json, sys
r = json.load(open(sys.argv[1]))
assert r["meta"]["complete"], "run.py did not complete"
for s in "abcd":
    assert s in r, f"section {s} missing"
assert r["a"]["sat"]["unix"]["requests"] > 0 and r["a"]["sat"]["tcp"]["requests"] > 0
for wl in r["c"]["workloads"]:
    assert wl["runs"]["0"]["served"] > 0 and wl["runs"]["100"]["served"] > 0, wl["set"]
assert r["d"]["ops_per_s"] > 0
PY
[ "$missing" = 0 ] || { echo "loadtest smoke: FAILED" >&2; exit 1; }

# Instructions per /norm call (callgrind.py), printed for the record, with no threshold. It
# counts the build the smoke runs: a debug build executes several times the instructions
# of the release figure in the README.
if ! command -v valgrind >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
if command -v valgrind >/dev/null; then
  profile=(); case "$NORMD_BIN" in */release/*) profile=(--release) ;; esac
  example="$(dirname "$NORMD_BIN")/examples/pipeline_count"
  [ -x "$example" ] || (cd "$repo" && cargo build --locked "${profile[@]}" --example pipeline_count)
  "$PY" "$here/callgrind.py" --normd "$NORMD_BIN" --example "$example" --calls 200 --warmup 20 \
    --pipeline-counts 20,220 --repeat 1 --out "$out/callgrind" \
    --rev "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
  echo "loadtest smoke: instructions per call ($NORMD_BIN):"
  sed -n '/^| instructions per call/,/^$/p' "$out/callgrind/summary.md"
else
  echo "loadtest smoke: valgrind is not installed; instructions per call not counted"
fi
echo "loadtest smoke: ok (run.py $(( $(date +%s) - t0 ))s, total $(( $(date +%s) - started ))s); report: $out/report.md"
