# Sourced by run.sh: finds or installs the load-test tools, exports OHA and PY.
#   oha (pinned)      → $NORMD_LOADTEST_CACHE/bin/oha (default ~/.cache/normd-loadtest),
#                       a stable path so the ~10-16 min `cargo install` happens once per machine;
#                       $OHA overrides it.
#   matplotlib (pinned) → loadtest/.venv (not committed).
#   the demo app's node_modules (npm ci) if missing.
OHA_VERSION=1.16.0
MATPLOTLIB_VERSION=3.11.2
_lt_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NORMD_LOADTEST_CACHE="${NORMD_LOADTEST_CACHE:-$HOME/.cache/normd-loadtest}"

_oha_ok() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -qF "$OHA_VERSION"; }
if [ -z "${OHA:-}" ]; then
  OHA="$NORMD_LOADTEST_CACHE/bin/oha"
  if ! _oha_ok "$OHA"; then
    if [ "${NORMD_LOADTEST_SMOKE:-0}" = 1 ]; then
      # The smoke run asserts no figures, so an unoptimized oha does: it builds in
      # about half the time of a release one on a fresh CI machine. Kept apart so a
      # real run never measures with it.
      _root="$NORMD_LOADTEST_CACHE/smoke"
      OHA="$_root/bin/oha"
      _profile=(--debug)
    else
      _root="$NORMD_LOADTEST_CACHE"
      _profile=()
    fi
    if ! _oha_ok "$OHA"; then
      echo "loadtest: installing oha $OHA_VERSION into $_root (once per machine; takes minutes)" >&2
      # (--no-default-features, i.e. without TLS, does not compile in 1.16.0.)
      cargo install oha --locked --version "$OHA_VERSION" --root "$_root" --quiet "${_profile[@]}"
    fi
  fi
fi
export OHA

PY="$_lt_dir/.venv/bin/python"
if ! { [ -x "$PY" ] && "$PY" -c "import matplotlib" 2>/dev/null; }; then
  echo "loadtest: creating loadtest/.venv with matplotlib $MATPLOTLIB_VERSION" >&2
  if ! python3 -m venv "$_lt_dir/.venv" 2>/dev/null; then
    # Debian's python3 needs python3-venv for `python3 -m venv`.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$_lt_dir/.venv"
    python3 -m venv "$_lt_dir/.venv"
  fi
  "$_lt_dir/.venv/bin/pip" install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi
export PY

for _tool in taskset node; do
  command -v "$_tool" >/dev/null || { echo "loadtest: $_tool is required" >&2; exit 1; }
done
if [ ! -d "$_lt_dir/app/node_modules" ]; then
  (cd "$_lt_dir/app" && npm ci --no-audit --no-fund --loglevel=error)
fi
