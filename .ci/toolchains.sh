#!/usr/bin/env bash
# Installs what the test suite needs besides cargo, when it is missing (Debian packages,
# as root): Node and npm (the Node client, the demo app), Go (the Go client has no
# module dependencies), a JDK (the Java client) and Python 3 (the Python client and the
# conformance kit's fault server). `.ci/test` and `.ci/run` both run it; with everything
# present it installs nothing and needs no network.
set -euo pipefail
missing=()
node=()
{ command -v node >/dev/null && command -v npm >/dev/null; } || node=(nodejs npm)
command -v go >/dev/null || missing+=(golang-go)
command -v javac >/dev/null || missing+=(default-jdk-headless)
command -v python3 >/dev/null || missing+=(python3)
if [ $((${#missing[@]} + ${#node[@]})) -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "toolchains: missing ${node[*]} ${missing[*]}; apt-get install them, or run as root" >&2
    exit 1
  fi
  apt-get update -qq
  # npm with its recommended packages, as Debian ships it; the rest without.
  [ ${#node[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node[@]}"
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
