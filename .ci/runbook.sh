#!/usr/bin/env bash
# Runs every command of RUNBOOK.md that does not need a cluster, against a live local normd.
#
# Fenced blocks, by info string:
#   ```sh                      run: bash -euo pipefail, in a scratch dir (schemas/ and tests/
#                              linked from the repo), with the environment below
#   ```sh cluster              needs a cluster: `bash -n` only
#   ```sh cluster fake-kubectl run with a stand-in `kubectl` on PATH for which the ConfigMap
#                              normd-flags is the flags file normd polls (what the kubelet does);
#                              any other kubectl call fails the block
#   ```sh env                  sets the variables the other blocks use: `bash -n` only (this
#                              script sets them itself)
#   ```promql                  parsed with `promtool check rules` when promtool is on PATH
#   anything else (console, json, ...) is skipped
# A block must exit 0, unless its last line is `# expect: exit N`.
#
# Environment of the blocks: normd (target/debug) first on PATH, SOCK (its socket), N (base URL:
# normd's loopback TCP port, standing in for `kubectl port-forward`), LOGS (its stderr, JSON
# lines), FLAGS (its --flags file, seeded from k8s/base/flags-configmap.yaml), NORMD_PID, NS, POD.
# Pass 1 runs every block as is; pass 2 re-runs the blocks that use curl with every curl call
# sent over the Unix socket (a wrapper adds --unix-socket "$SOCK"), so both transports are covered.
#
# Env: RUNBOOK (default RUNBOOK.md), BLOCK_TIMEOUT (seconds per block, default 150).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUNBOOK=${RUNBOOK:-RUNBOOK.md}
BLOCK_TIMEOUT=${BLOCK_TIMEOUT:-150}
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started))s"; }

# --- tools -------------------------------------------------------------------------------
need=()
for tool in jq curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bin=target/debug/normd
if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$bin" -print -quit)" ]; then
  echo "setup: cargo build --locked ($bin missing or older than the sources)"
  cargo build --locked --bin normd
fi
[ -f "$RUNBOOK" ] || { echo "runbook: $RUNBOOK not found" >&2; exit 1; }

# --- scratch dir, flags, stand-ins ---------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/normd-runbook.XXXXXX")
pid=""
stop_normd() {
  # SIGTERM, bounded wait (normd exits within --shutdown-timeout-ms), then SIGKILL.
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "runbook: normd did not stop within 10 s of SIGTERM; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  pid=""
  return "$rc"
}
cleanup() {
  stop_normd || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/cwd" "$work/bin" "$work/fake" "$work/blocks" "$work/flags"
ln -s "$REPO/schemas" "$work/cwd/schemas"
ln -s "$REPO/tests" "$work/cwd/tests"
ln -s "$REPO/$bin" "$work/bin/normd"

export SOCK="$work/normd.sock"
export LOGS="$work/normd.log"
export FLAGS="$work/flags/flags.json" # a directory, like the ConfigMap mount
export NS=default POD=demo-app-runbook-test
export PATH="$work/bin:$PATH"
REAL_CURL=$(command -v curl)
export REAL_CURL

# The flags the cluster starts from: flags.json of the ConfigMap (kept last in `data`, indented
# by 4 spaces, so a text filter extracts it).
sed -n '/^  flags.json: |/,$p' k8s/base/flags-configmap.yaml | tail -n +2 | sed 's/^    //' >"$FLAGS"
normd check --schemas schemas --flags "$FLAGS" >/dev/null ||
  { echo "runbook: flags.json of k8s/base/flags-configmap.yaml does not pass normd check" >&2; exit 1; }

cat >"$work/fake/kubectl" <<'EOF'
#!/usr/bin/env bash
# kubectl stand-in: ConfigMap normd-flags <-> $FLAGS. Anything else is not simulated.
set -euo pipefail
args=()
while [ $# -gt 0 ]; do
  case $1 in
    -n | --namespace) shift 2 ;;
    -n=* | --namespace=*) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"
if [ $# -eq 5 ] && [ "$*" = 'get configmap normd-flags -o jsonpath={.data.flags\.json}' ]; then
  cat "$FLAGS"
elif [ $# -eq 7 ] && [ "$1 $2 $3 $4 $5 $6" = "patch configmap normd-flags --type merge -p" ]; then
  # The kubelet swaps the projected file atomically; so does this.
  tmp=$(mktemp "$(dirname "$FLAGS")/..data.XXXXXX")
  printf '%s' "$7" | jq -je '.data["flags.json"] | strings' >"$tmp"
  mv "$tmp" "$FLAGS"
  echo "configmap/normd-flags patched"
else
  echo "fake kubectl: not simulated: kubectl $*" >&2
  exit 2
fi
EOF
cat >"$work/curl-over-socket" <<'EOF'
#!/usr/bin/env bash
exec "$REAL_CURL" --unix-socket "$SOCK" "$@"
EOF
chmod +x "$work/fake/kubectl" "$work/curl-over-socket"

# --- a live normd ---------------------------------------------------------------------------
for v in $(compgen -e | grep '^NORMD_' || true); do unset "$v"; done
"$bin" serve --socket "$SOCK" --listen 127.0.0.1:0 --flags "$FLAGS" --schemas "$REPO/schemas" \
  --drain-delay-ms 0 --memory-limit 1Gi 2>"$LOGS" &
pid=$!
export NORMD_PID=$pid

ready=0
for _ in $(seq 150); do # 15 s
  kill -0 "$pid" 2>/dev/null || { echo "runbook: normd exited at startup:" >&2; cat "$LOGS" >&2; exit 1; }
  if normd probe --socket "$SOCK" --timeout-ms 500 >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "runbook: normd not ready within 15 s:" >&2; cat "$LOGS" >&2; exit 1; }
addr=$(jq -rR 'fromjson? | select(.msg == "normd serving") | .listen' "$LOGS" | head -n1)
case "$addr" in 127.0.0.1:[1-9]*) ;; *) echo "runbook: no TCP address in normd's log" >&2; exit 1 ;; esac
export N="http://$addr"
echo "normd: pid $pid, socket $SOCK, tcp $addr ($(elapsed))"

# Some traffic, so the metrics and log queries of the runbook have something to find:
# 200s over both transports (one with a W3C traceparent), a schema_violation, a number_precision.
# A generous budget: a debug build on a busy CI machine can miss the default 20 ms.
J='Content-Type: application/json'
warm() { # expected-status curl-args...
  local want=$1 got
  shift
  got=$("$REAL_CURL" -s -o "$work/warm.body" -w '%{http_code}' --max-time 10 -H "$J" -H 'X-Deadline-Ms: 1000' "$@") || true
  if [ "$got" != "$want" ]; then
    echo "runbook: warm-up: expected $want, got ${got:-no answer} for: curl $*" >&2
    head -c 500 "$work/warm.body" >&2 2>/dev/null || true
    echo >&2
    tail -n 5 "$LOGS" >&2
    exit 1
  fi
}
for _ in 1 2 3 4 5; do
  warm 200 --unix-socket "$SOCK" --data-binary @tests/fixtures/order_1k.json 'http://localhost/norm?schema=order.v1'
done
warm 200 -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
  --data-binary @tests/fixtures/order_4k.json "$N/norm?encoding=br"
warm 422 --unix-socket "$SOCK" --data-binary @tests/fixtures/order_invalid.json 'http://localhost/norm?schema=order.v1'
warm 422 --unix-socket "$SOCK" -d '{"id": 9007199254740993}' http://localhost/norm

# --- blocks --------------------------------------------------------------------------------
# One file per block: NNN.<kind>.sh, kind = run | cluster | fake-kubectl | env; plus NNN.line.
awk -v dir="$work/blocks" '
  function kind_of(info) {
    if (info == "sh") return "run"
    if (info == "sh env") return "env"
    if (info == "sh cluster") return "cluster"
    if (info == "sh cluster fake-kubectl") return "fake-kubectl"
    if (info == "promql") return "promql"
    return ""
  }
  !inblock && /^```/ {
    info = substr($0, 4); gsub(/^[ \t]+|[ \t]+$/, "", info); gsub(/[ \t]+/, " ", info)
    inblock = 1; k = kind_of(info)
    if (k != "") { n++; file = sprintf("%s/%03d.%s.sh", dir, n, k); print NR + 1 > sprintf("%s/%03d.line", dir, n) }
    next
  }
  inblock && /^```[ \t]*$/ { inblock = 0; if (k != "") close(file); k = ""; next }
  inblock && k != "" { print > file }
  END { if (inblock) { print "runbook: unclosed code fence" > "/dev/stderr"; exit 1 } }
' "$RUNBOOK"

shopt -s nullglob
blocks=("$work"/blocks/*.sh)
shopt -u nullglob

ran=0 checked=0 failed=0 pass2=0
declare -a failures=()
indent() { sed 's/^/    /'; }

run_block() { # file kind label -> 0/1; prints the block's output
  local file=$1 kind=$2 label=$3 expect=0 rc=0 path=$PATH
  local last
  last=$(grep -v '^[[:space:]]*$' "$file" | tail -n1)
  if [[ $last =~ ^#[[:space:]]*expect:[[:space:]]*exit[[:space:]]+([0-9]+)[[:space:]]*$ ]]; then
    expect=${BASH_REMATCH[1]}
  fi
  [ "$kind" = fake-kubectl ] && path="$work/fake:$PATH"
  (cd "$work/cwd" && PATH=$path timeout -k 5 "$BLOCK_TIMEOUT" bash -euo pipefail "$file") \
    >"$work/out" 2>&1 </dev/null || rc=$?
  if [ "$label" = pass1 ]; then
    if [ -s "$work/out" ]; then head -n 25 "$work/out" | indent; else echo "    (no output)"; fi
    [ "$(wc -l <"$work/out")" -le 25 ] || echo "    … ($(wc -l <"$work/out") lines)"
  fi
  if [ "$rc" != "$expect" ]; then
    [ "$label" = pass1 ] || indent <"$work/out"
    echo "  FAIL: exit $rc, expected $expect"
    return 1
  fi
  return 0
}

echo
echo "=== pass 1: every block of $RUNBOOK"
for file in "${blocks[@]}"; do
  base=${file%.sh}
  kind=${base##*.}
  line=$(cat "${base%.*}.line")
  echo
  echo "--- $RUNBOOK:$line [$kind]"
  indent <"$file"
  if [ "$kind" != promql ] && ! bash -n "$file" 2>"$work/syntax"; then
    indent <"$work/syntax"
    echo "  FAIL: syntax"
    failed=$((failed + 1)); failures+=("$RUNBOOK:$line (syntax)")
    continue
  fi
  case $kind in
    cluster | env)
      checked=$((checked + 1))
      echo "  ok: syntax only ($kind)"
      ;;
    promql)
      if command -v promtool >/dev/null; then
        { echo "groups: [{name: runbook, rules: [{record: 'runbook:query', expr: $(jq -Rs . <"$file")}]}]"; } >"$work/q.rules.yaml"
        if promtool check rules "$work/q.rules.yaml" >"$work/syntax" 2>&1; then
          checked=$((checked + 1)); echo "  ok: parses (promtool)"
        else
          indent <"$work/syntax"; echo "  FAIL: promtool"
          failed=$((failed + 1)); failures+=("$RUNBOOK:$line (promql)")
        fi
      else
        echo "  skipped: no promtool on PATH (.ci/check-monitoring.sh installs it)"
      fi
      continue
      ;;
    run | fake-kubectl)
      ran=$((ran + 1))
      echo "  output:"
      if run_block "$file" "$kind" pass1; then
        echo "  ok"
      else
        failed=$((failed + 1)); failures+=("$RUNBOOK:$line")
      fi
      kill -0 "$pid" 2>/dev/null || { echo "runbook: normd died during $RUNBOOK:$line" >&2; cat "$LOGS" >&2; exit 1; }
      ;;
  esac
done

# Every metric the runbook names (blocks and prose) must be one normd exports; names are
# written in full (no `normd_(a|b)` groups) so that this check sees them.
echo
echo "=== metric names in $RUNBOOK"
"$REAL_CURL" -sf --max-time 5 "$N/metrics" | grep -v '^#' | sed -n 's/^\([a-zA-Z_:][a-zA-Z0-9_:]*\).*/\1/p' | sort -u >"$work/exported"
grep -o '\b\(normd\|process\)_[a-z0-9_]*[a-z0-9]' "$RUNBOOK" | sort -u >"$work/named"
unknown=$(comm -23 "$work/named" "$work/exported")
if grep -q '\bnormd_(' "$RUNBOOK"; then
  echo "FAIL  write metric names in full, not as normd_(a|b): $(grep -n '\bnormd_(' "$RUNBOOK" | cut -d: -f1 | tr '\n' ' ')"
  failed=$((failed + 1)); failures+=("grouped metric names")
elif [ -n "$unknown" ]; then
  echo "FAIL  not exported by normd: $(echo "$unknown" | tr '\n' ' ')"
  failed=$((failed + 1)); failures+=("unknown metric names")
else
  echo "ok    $(wc -l <"$work/named") metric names, all exported by normd"
fi

echo
echo "=== pass 2: the blocks that call curl, every curl over the Unix socket"
ln -s "$work/curl-over-socket" "$work/bin/curl"
# The wrapper must really take the socket (curl's remote_ip is the socket path then).
via=$(curl -s -o /dev/null -w '%{remote_ip}' "$N/livez")
[ "$via" = "$SOCK" ] || { echo "runbook: the socket wrapper does not take over curl (remote: $via)" >&2; exit 1; }
for file in "${blocks[@]}"; do
  base=${file%.sh}
  kind=${base##*.}
  line=$(cat "${base%.*}.line")
  case $kind in run | fake-kubectl) ;; *) continue ;; esac
  grep -qw curl "$file" || continue
  pass2=$((pass2 + 1))
  if run_block "$file" "$kind" pass2; then
    echo "ok    $RUNBOOK:$line"
  else
    echo "FAIL  $RUNBOOK:$line (over the socket)"
    failed=$((failed + 1)); failures+=("$RUNBOOK:$line (socket)")
  fi
done
rm -f "$work/bin/curl"

# normd still healthy after the runbook, then a clean shutdown.
if ! normd probe --socket "$SOCK" >/dev/null; then
  echo "runbook: normd is not ready after the runbook blocks" >&2
  failed=$((failed + 1)); failures+=("normd not ready at the end")
fi
if stop_normd; then
  echo
  echo "normd: exited 0 on SIGTERM"
else
  echo "runbook: normd did not exit 0 on SIGTERM" >&2
  failed=$((failed + 1)); failures+=("normd shutdown")
fi

echo
if [ "$ran" -eq 0 ]; then
  echo "runbook: FAILED: no runnable \`\`\`sh block found in $RUNBOOK"
  exit 1
fi
if [ "$failed" -gt 0 ]; then
  printf 'runbook: FAILED: %s\n' "${failures[@]}"
  echo "runbook: $failed failure(s); $ran blocks run, $pass2 re-run over the socket, $checked syntax-checked ($(elapsed))"
  exit 1
fi
echo "runbook: OK: $ran blocks run, $pass2 re-run over the socket, $checked syntax-checked ($(elapsed))"
