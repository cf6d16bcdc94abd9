#!/usr/bin/env bash
# CI smoke of the JVM before/after (loadtest/app-jvm, loadtest/jvm.py): builds the Java demo
# app, checks that its in-app and normd paths answer the same bytes (app-jvm/test_paths.py
# --quick: every 8th valid payload, every bad one and edge case), then runs a few seconds
# of load at ROLLOUT=0 and ROLLOUT=100 (4 KB and 64 KB sets) and prints the figures.
# No thresholds: it fails only when something is broken (the app does not build or start,
# a wrong or missing answer, ROLLOUT=100 never reaching normd). ≈ 55 s.
# normd: $NORMD_BIN, else target/release/normd, else target/debug/normd (never built here).
# Needs javac (default-jdk-headless) and Debian's Jackson (installed here when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

if [ ! -f /usr/share/java/jackson-databind.jar ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libjackson2-databind-java >/dev/null
  else
    echo "jvm-smoke: /usr/share/java/jackson-databind.jar missing: apt-get install libjackson2-databind-java" >&2
    exit 1
  fi
fi
command -v javac >/dev/null || { echo "jvm-smoke: javac missing (default-jdk-headless)" >&2; exit 1; }

tdir="${CARGO_TARGET_DIR:-target}"
if [ -z "${NORMD_BIN:-}" ]; then
  for b in "$tdir/release/normd" "$tdir/debug/normd"; do
    if [ -x "$b" ]; then NORMD_BIN="$b"; break; fi
  done
fi
[ -n "${NORMD_BIN:-}" ] && [ -x "$NORMD_BIN" ] || { echo "jvm-smoke: no normd binary (set NORMD_BIN or build target/debug/normd)" >&2; exit 1; }
NORMD_BIN="$(cd "$(dirname "$NORMD_BIN")" && pwd)/$(basename "$NORMD_BIN")"
echo "jvm-smoke: normd $NORMD_BIN"

loadtest/app-jvm/build.sh
python3 loadtest/app-jvm/test_paths.py --quick --normd "$NORMD_BIN"   # every 8th valid payload, all the rest
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python3 loadtest/jvm.py --smoke --no-build --normd "$NORMD_BIN" --out "$out"
echo "jvm-smoke: ok ($(( $(date +%s) - started )) s)"
