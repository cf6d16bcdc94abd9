#!/usr/bin/env bash
# Builds the client with the JDK alone (no Maven: the library has no dependencies, and a
# script needs no registry): javac into build/classes, then build/normd-client.jar.
# With --tests also compiles the tests and the benchmark into build/test-classes.
set -euo pipefail
cd "$(dirname "$0")"

OUT=build
rm -rf "$OUT/classes" "$OUT/test-classes"
mkdir -p "$OUT/classes"

javac --release 17 -Xlint:all -Werror -d "$OUT/classes" $(find src/main/java -name '*.java')
jar --create --file "$OUT/normd-client.jar" -C "$OUT/classes" .
echo "built $OUT/normd-client.jar"

if [[ "${1:-}" == "--tests" ]]; then
  mkdir -p "$OUT/test-classes"
  javac --release 17 -Xlint:all,-serial,-try -Werror -cp "$OUT/classes" -d "$OUT/test-classes" \
    $(find src/test/java bench -name '*.java')
  echo "built $OUT/test-classes"
fi
