#!/usr/bin/env bash
# Supply-chain checks for normd:
#   - cargo deny check licenses bans sources   (policy: deny.toml; advisories are
#     not run, see the comment there: their database is not reachable offline)
#   - an SBOM of the dependency tree, written to target/sbom/ (not committed):
#       target/sbom/normd.cdx.json    CycloneDX 1.6 JSON
#       target/sbom/normd.spdx.json   SPDX 2.3 JSON
#     made with cargo-sbom, the cheaper of the two SBOM tools to install here
#     (2-core machine, `cargo install --locked`: cargo-sbom 128 s release /
#     51 s debug, cargo-cyclonedx 145 s release / 97 s debug).
#
# Tools: a pinned version already on PATH is used as is; otherwise it is
# installed once with `cargo install --locked --debug` into $NORMD_TOOLS_DIR
# (default ~/.cache/normd-tools/<tool>-<version>) and reused by later runs.
# --debug because installing is what costs: on this 2-core machine (busy with
# other builds) it cut the install of both tools from 5-6.5 min to 2.3-3.4 min,
# while the checks themselves only go from ~1 s to ~3 s.
# Neither tool builds the crate; cargo fetches crate metadata from the registry.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_DENY_VERSION=0.20.2
CARGO_SBOM_VERSION=0.10.0
TOOLS_DIR=${NORMD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/normd-tools}
SBOM_DIR="$ROOT/target/sbom"

T0=$(date +%s)
log() { printf '[supply-chain %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

command -v cargo >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v cargo >/dev/null 2>&1 || die "cargo not found"

# tool <cargo subcommand> <crate> <version> -> prints the binary to use
tool() {
  local sub=$1 crate=$2 version=$3 bin dir t
  bin=$(command -v "cargo-$sub" 2>/dev/null || true)
  if [ -n "$bin" ] && "$bin" "$sub" --version 2>/dev/null | grep -qF " $version"; then
    echo "$bin"; return
  fi
  dir="$TOOLS_DIR/$crate-$version"
  if [ ! -x "$dir/bin/cargo-$sub" ]; then
    log "installing $crate $version (cargo install --locked --debug, once per machine)"
    t=$(date +%s)
    cargo install --quiet --locked --debug --root "$dir" --version "$version" "$crate" >&2 \
      || die "cargo install $crate $version failed"
    log "installed $crate $version in $(( $(date +%s) - t ))s"
  fi
  echo "$dir/bin/cargo-$sub"
}

DENY=$(tool deny cargo-deny "$CARGO_DENY_VERSION")
SBOM=$(tool sbom cargo-sbom "$CARGO_SBOM_VERSION")
t_tools=$(( $(date +%s) - T0 ))

cd "$ROOT"
[ -f deny.toml ] || die "deny.toml missing"
log "cargo deny check licenses bans sources"
"$DENY" deny --locked check --show-stats licenses bans sources \
  || die "cargo deny found a licence, ban or source problem (policy: deny.toml)"

log "SBOM -> ${SBOM_DIR#"$ROOT"/}"
mkdir -p "$SBOM_DIR"
"$SBOM" sbom --cargo-package normd --output-format cyclone_dx_json_1_6 >"$SBOM_DIR/normd.cdx.json.tmp"
"$SBOM" sbom --cargo-package normd --output-format spdx_json_2_3 >"$SBOM_DIR/normd.spdx.json.tmp"
mv "$SBOM_DIR/normd.cdx.json.tmp" "$SBOM_DIR/normd.cdx.json"
mv "$SBOM_DIR/normd.spdx.json.tmp" "$SBOM_DIR/normd.spdx.json"
python3 - "$SBOM_DIR" <<'EOF' || die "the SBOM files are not what they should be"
import json, sys
d = sys.argv[1]
cdx = json.load(open(f"{d}/normd.cdx.json"))
spdx = json.load(open(f"{d}/normd.spdx.json"))
assert cdx.get("bomFormat") == "CycloneDX", "not CycloneDX"
names = {c.get("name") for c in cdx.get("components", [])}
for dep in ("tokio", "axum", "zstd-sys", "jsonschema"):
    assert dep in names, f"{dep} missing from the CycloneDX SBOM"
assert spdx.get("spdxVersion", "").startswith("SPDX-"), "not SPDX"
print(f"[supply-chain] SBOM: {len(cdx['components'])} CycloneDX components, "
      f"{len(spdx.get('packages', []))} SPDX packages", file=sys.stderr)
EOF

log "ok (tools ${t_tools}s, checks $(( $(date +%s) - T0 - t_tools ))s)"
