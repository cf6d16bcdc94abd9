#!/usr/bin/env bash
# Builds the client and its tests and runs them all with the small harness in
# src/test/java/dev/normd/testing (no JUnit: nothing to install). Ends with
# "N passed, N failed, N skipped"; exit code 1 on any failure.
#
#   NORMD_BIN=/path/to/normd ./test.sh    # + the real-normd tests and conformance scenarios
#   TEST_FILTER=Breaker ./test.sh         # only cases whose name contains the text
#   ./test.sh bench                       # the overhead benchmark (needs NORMD_BIN)
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../.. && pwd)

./build.sh --tests >/dev/null
CP=build/classes:build/test-classes

if [[ "${1:-}" == "bench" ]]; then
  : "${NORMD_BIN:?the benchmark needs NORMD_BIN}"
  exec java -cp "$CP" -Dnormd.repo="$REPO" -Dnormd.bin="$NORMD_BIN" Overhead "${@:2}"
fi

if [[ -z "${NORMD_BIN:-}" ]]; then
  echo "!!! NORMD_BIN is unset: the real-normd tests and the kit's normd scenarios are SKIPPED" >&2
fi

SUITES=$(cd build/test-classes && find . -name '*Test.class' ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
exec java -cp "$CP" -Dnormd.repo="$REPO" -Dnormd.bin="${NORMD_BIN:-}" \
  dev.normd.testing.Harness $SUITES
