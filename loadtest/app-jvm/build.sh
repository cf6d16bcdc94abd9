#!/usr/bin/env bash
# Builds the JVM demo app with the JDK alone (no Maven: Maven Central is not reachable
# here): javac of the app and of the Java client's sources (../../clients/java, compiled
# from source into this build, so clients/java/build is not touched) against Debian's
# Jackson jars, into build/classes; build/classpath lists what `java -cp` needs.
#   Needs: JDK 17 (javac), libjackson2-databind-java (jars under /usr/share/java).
set -euo pipefail
cd "$(dirname "$0")"
JARDIR="${JACKSON_JARDIR:-/usr/share/java}"
cp=""
for j in jackson-core jackson-databind jackson-annotations; do
  if [ ! -f "$JARDIR/$j.jar" ]; then
    echo "build.sh: $JARDIR/$j.jar is missing: apt-get install -y libjackson2-databind-java" >&2
    exit 1
  fi
  cp="${cp:+$cp:}$JARDIR/$j.jar"
done

OUT=build
rm -rf "$OUT/classes"
mkdir -p "$OUT/classes"
javac --release 17 -Xlint:all,-serial -Werror -cp "$cp" -d "$OUT/classes" \
  $(find ../../clients/java/src/main/java src/main/java -name '*.java')
echo "$PWD/$OUT/classes:$cp" > "$OUT/classpath"
echo "built $OUT/classes (classpath in $OUT/classpath)"
