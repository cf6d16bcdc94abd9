#!/usr/bin/env bash
# Offline validation of k8s/ (the kustomize base; k8s/monitoring/ is owned and
# checked elsewhere).
#
#   1. every *.yaml in k8s/base is listed in kustomization.yaml, and each one
#      validates on its own with `kubernetes-validate --strict` (schemas ship
#      inside the PyPI package: no network needed once it is installed);
#   2. the kustomization renders (`kubectl kustomize`) and the rendered
#      stream validates too, if a kubectl can be had (on PATH, or Debian's
#      kubernetes-client package);
#   3. the pod's design decisions hold (native sidecar, exec probes, readiness
#      excludes the memory check, grace period > drain + shutdown, socket
#      group == fsGroup, flags ConfigMap mounted as a directory, ...).
#
# Env: KUBE_VERSIONS  Kubernetes versions to validate against
#                     (default: 1.30.0, the oldest the Deployment supports, and 1.37.0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE="$ROOT/k8s/base"
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.30.0 1.37.0"}
KV_VERSION=1.37.0 # kubernetes-validate release installed when missing
start=$(date +%s)

log() { printf '[k8s-validate] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

PY=python3
command -v "$PY" >/dev/null || die "python3 is required"

# --- tools --------------------------------------------------------------
if ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
  log "installing kubernetes-validate==$KV_VERSION (pip)"
  "$PY" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" >&2
fi
kv() { "$PY" -m kubernetes_validate "$@"; }

KUBECTL=""
if command -v kubectl >/dev/null 2>&1; then
  KUBECTL=$(command -v kubectl)
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "kubectl not found: trying Debian's kubernetes-client"
  if { apt-get install -y -qq --no-install-recommends kubernetes-client \
       || { apt-get update -qq && apt-get install -y -qq --no-install-recommends kubernetes-client; }; \
     } >/dev/null 2>&1; then
    KUBECTL=$(command -v kubectl || true)
  fi
fi
[ -n "$KUBECTL" ] || log "no kubectl: skipping the rendered check, validating the plain files only"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. plain files -------------------------------------------------------
mapfile -t listed < <(
  "$PY" - "$BASE/kustomization.yaml" <<'EOF'
import sys, yaml
k = yaml.safe_load(open(sys.argv[1]))
for r in k.get("resources", []):
    print(r)
EOF
)
[ "${#listed[@]}" -gt 0 ] || die "kustomization.yaml lists no resources"
for f in "$BASE"/*.yaml "$BASE"/*.yml; do
  [ -e "$f" ] || continue
  b=$(basename "$f")
  [ "$b" = kustomization.yaml ] && continue
  printf '%s\n' "${listed[@]}" | grep -qxF "$b" || die "$b is not listed in kustomization.yaml"
done
files=()
for r in "${listed[@]}"; do
  [ -f "$BASE/$r" ] || die "kustomization.yaml lists $r, which is not a file in k8s/base"
  files+=("$BASE/$r")
done
for v in $KUBE_VERSIONS; do
  log "kubernetes-validate --strict -k $v: ${listed[*]}"
  kv --strict --quiet -k "$v" "${files[@]}" || die "schema validation failed against $v"
done

# --- 2. rendered ----------------------------------------------------------
rendered="$tmp/rendered.yaml"
if [ -n "$KUBECTL" ]; then
  log "rendering with $KUBECTL kustomize"
  "$KUBECTL" kustomize "$BASE" >"$rendered" || die "kubectl kustomize failed"
  for v in $KUBE_VERSIONS; do
    kv --strict --quiet -k "$v" "$rendered" || die "rendered manifests do not validate against $v"
  done
  log "rendered: $(grep -c '^kind:' "$rendered") objects, valid"
else
  # Same stream the renderer would produce (the base has no transformers).
  for f in "${files[@]}"; do cat "$f"; printf '\n---\n'; done >"$rendered"
fi

# --- 3. design checks -----------------------------------------------------
"$PY" - "$rendered" <<'EOF'
import json, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

def opt(args, name):
    """Value of --name=V or --name V in an argv list, else None."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None

for k in ("Deployment", "ConfigMap", "PodDisruptionBudget"):
    check(k in by_kind, f"no {k} in the rendered output")
dep = by_kind["Deployment"][0]
pod = dep["spec"]["template"]["spec"]
psc = pod.get("securityContext", {})
check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile must be RuntimeDefault")
fs_group = psc.get("fsGroup")
check(fs_group is not None, "pod needs an fsGroup (it is the socket's group)")

normd = [c for c in pod.get("initContainers", []) if c["name"] == "normd"]
check(len(normd) == 1, "normd must be an initContainers entry (native sidecar)")
n = normd[0]
check(n.get("restartPolicy") == "Always", "normd needs restartPolicy: Always (native sidecar)")
args = n.get("args", [])
env = {e["name"]: e for e in n.get("env", [])}
sc = n.get("securityContext", {})
check(sc.get("runAsUser") == 65532, "normd runs as 65532")
check(sc.get("readOnlyRootFilesystem") is True, "normd: readOnlyRootFilesystem")
check(sc.get("allowPrivilegeEscalation") is False, "normd: allowPrivilegeEscalation false")
check(sc.get("capabilities", {}).get("drop") == ["ALL"], "normd: drop ALL capabilities")

sock = opt(args, "--socket")
check(sock == "/run/normd/normd.sock", f"normd --socket is {sock!r}")
check(opt(args, "--socket-mode") == "0660", "normd --socket-mode must be 0660")
group = opt(args, "--socket-group") or env.get("NORMD_SOCKET_GROUP", {}).get("value")
check(group is None or str(group) == str(fs_group),
      f"socket group {group} must equal the pod fsGroup {fs_group}")
mem = env.get("NORMD_MEMORY_LIMIT", {}).get("valueFrom", {}).get("resourceFieldRef", {})
check(mem.get("containerName") == "normd" and mem.get("resource") == "limits.memory",
      "NORMD_MEMORY_LIMIT must come from normd's limits.memory")
check("memory" in n.get("resources", {}).get("limits", {}), "normd needs a memory limit")

# shared socket volume
mounts = {m["name"]: m for m in n.get("volumeMounts", [])}
vols = {v["name"]: v for v in pod.get("volumes", [])}
run = [m for m in mounts.values() if m["mountPath"] == "/run/normd"]
check(len(run) == 1 and "emptyDir" in vols.get(run[0]["name"], {}), "/run/normd must be an emptyDir")
app_containers = pod.get("containers", [])
check(any(any(m["mountPath"] == "/run/normd" for m in c.get("volumeMounts", [])) for c in app_containers),
      "the app container must mount /run/normd too")

# flags ConfigMap: mounted as a directory, file inside it, valid JSON
flags = opt(args, "--flags") or env.get("NORMD_FLAGS", {}).get("value")
check(flags is not None, "normd needs --flags")
if flags:
    fdir, fname = flags.rsplit("/", 1)
    fm = [m for m in mounts.values() if m["mountPath"] == fdir]
    check(len(fm) == 1 and "subPath" not in fm[0], f"{fdir} must be a directory mount (no subPath)")
    if fm:
        cm_name = vols.get(fm[0]["name"], {}).get("configMap", {}).get("name")
        cms = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == cm_name]
        check(len(cms) == 1, f"ConfigMap {cm_name} is not in the base")
        if cms:
            data = cms[0].get("data", {})
            check(fname in data, f"ConfigMap {cm_name} has no key {fname}")
            try:
                f = json.loads(data.get(fname, "{}"))
                check(isinstance(f.get("norm"), dict), "flags.json needs a 'norm' object")
            except ValueError as e:
                errors.append(f"{fname} is not JSON: {e}")

# probes: all exec, the right transports and checks
def cmd(p):
    return n[p]["exec"].get("command") or []
for p in ("startupProbe", "livenessProbe", "readinessProbe"):
    check(p in n and "exec" in n[p], f"normd {p} must be an exec probe (normd binds loopback only)")
if all(p in n and "exec" in n[p] for p in ("startupProbe", "livenessProbe", "readinessProbe")):
    s, l, r = cmd("startupProbe"), cmd("livenessProbe"), cmd("readinessProbe")
    check("probe" in s and "--live" in s and opt(s, "--tcp") and opt(s, "--socket"),
          "startupProbe: normd probe --socket ... --tcp ... --live")
    check("--live" in l, "livenessProbe: normd probe --live")
    check("--live" not in r and "memory" in (opt(r, "--exclude") or "").split(","),
          "readinessProbe: /readyz with --exclude memory")
    check(opt(r, "--socket") == sock, "readinessProbe must use normd's socket")

# shutdown budget
def ms(name, default):
    v = opt(args, name) or env.get("NORMD_" + name[2:].upper().replace("-", "_"), {}).get("value")
    return int(v) if v is not None else default
drain, shutdown = ms("--drain-delay-ms", 5000), ms("--shutdown-timeout-ms", 15000)
grace = pod.get("terminationGracePeriodSeconds", 30)
check(grace * 1000 > drain + shutdown,
      f"terminationGracePeriodSeconds {grace}s must exceed drain {drain}ms + shutdown {shutdown}ms")

pdb = by_kind["PodDisruptionBudget"][0]
check(pdb["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
      "the PDB selector must match the pod labels")

if errors:
    for e in errors:
        print("[k8s-validate] FAIL:", e, file=sys.stderr)
    sys.exit(1)
print("[k8s-validate] design checks: ok", file=sys.stderr)
EOF

log "ok in $(( $(date +%s) - start ))s"
