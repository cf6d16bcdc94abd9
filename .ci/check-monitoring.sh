#!/usr/bin/env bash
# Checks the on-call monitoring artifacts in k8s/monitoring/:
#   - the Grafana dashboard parses, is well formed, uses only metrics normd exports, and its
#     PromQL parses;
#   - the Prometheus alert rules pass `promtool check rules`, carry severity, summary,
#     description and a runbook_url with a known anchor, and each alert has a unit test;
#   - the unit tests pass (`promtool test rules`);
#   - the runbook anchors exist, once RUNBOOK.md is in the repo.
#
# Runs as root on a fresh Debian 12 machine (CI) or a developer's. Installs what is missing:
#   - python3 (apt) if absent;
#   - promtool, taken from Debian's `prometheus` package: `apt-get download` + extract only
#     /usr/bin/promtool to /usr/local/bin. Installing the whole package would pull ~15 JS
#     packages and start a Prometheus server through its init script, which CI does not need.
# Idempotent: with promtool and python3 on PATH it installs nothing and needs no network.
# Set PROMTOOL=/path/to/promtool to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

MON=k8s/monitoring
DASHBOARD=$MON/normd-dashboard.json
RULES=$MON/normd-alerts.yaml
TESTS=$MON/normd-alerts.test.yaml

started=$(date +%s)
failures=0
checks=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pass() { checks=$((checks + 1)); printf 'PASS  %s\n' "$1"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); printf 'FAIL  %s\n' "$1"; }

# --- tools ---------------------------------------------------------------------------------
apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    echo "setup: apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

if ! command -v python3 >/dev/null 2>&1; then
  apt_update_once
  echo "setup: apt-get install python3"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi

if [ -z "${PROMTOOL:-}" ]; then
  PROMTOOL=$(command -v promtool || true)
fi
if [ -z "$PROMTOOL" ]; then
  apt_update_once
  echo "setup: promtool from Debian package 'prometheus' (binary only) -> /usr/local/bin/promtool"
  chmod 755 "$work"
  chown _apt "$work" 2>/dev/null || true # lets apt download as its sandbox user, without a warning
  (cd "$work" && apt-get download -qq prometheus)
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  install -m 0755 "$work/usr/bin/promtool" /usr/local/bin/promtool
  rm -f "$work"/prometheus_*.deb
  PROMTOOL=/usr/local/bin/promtool
fi
echo "setup: using $("$PROMTOOL" --version 2>&1 | head -n1) ($PROMTOOL), $(python3 --version 2>&1)"

# --- dashboard JSON ------------------------------------------------------------------------
if python3 -m json.tool "$DASHBOARD" >/dev/null 2>"$work/json.err"; then
  pass "dashboard: $DASHBOARD is valid JSON"
else
  fail "dashboard: $DASHBOARD is not valid JSON"
  cat "$work/json.err"
fi

# Structure, metric names, and PromQL extraction (written as recording rules so that promtool
# parses every dashboard query). The metric list is the README's metrics table, which a unit
# test (src/telemetry) keeps equal to the metrics normd declares.
if [ "$failures" = 0 ]; then
  if python3 - "$DASHBOARD" "$work/dashboard-queries.rules.yaml" >"$work/dash.out" 2>&1 <<'PY'
import json, re, sys

dashboard_path, rules_out = sys.argv[1], sys.argv[2]
d = json.load(open(dashboard_path))

def readme_metrics():
    """(plain names, histogram names) from the README's metrics table, the list a unit
    test keeps equal to the metrics table in src/telemetry."""
    section = open("README.md").read().split("## Metrics and logs")[1].split("\n## ")[0]
    plain, hist = set(), set()
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) < 3:
            continue
        for token in re.findall(r"`(normd_[^`]+)`", cells[1]):
            token = re.sub(r"\{[a-z_,]+\}$", "", token)
            m = re.search(r"\{([a-z_,]+)\}", token)
            names = [token[:m.start()] + p + token[m.end():] for p in m.group(1).split(",")] if m else [token]
            (hist if cells[2].strip().startswith("histogram") else plain).update(names)
    return plain, hist

_plain, _hist = readme_metrics()
assert "normd_requests_total" in _plain and "normd_request_duration_seconds" in _hist, "README metrics table not found"
PLAIN = sorted(_plain) + """
process_resident_memory_bytes process_cpu_seconds_total process_open_fds
process_start_time_seconds process_virtual_memory_bytes process_threads
""".split()
HISTOGRAMS = sorted(_hist)
ALLOWED = set(PLAIN) | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan",
            # aggregation operators: "sum by (x) (...)" has no "(" right after the name
            "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "limitk", "limit_ratio"}

def metric_names(expr):
    """Metric names referenced by a PromQL expression (Grafana variables allowed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"`[^`]*`", "``", e)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "", e)                # Grafana variables
    e = re.sub(r"\[[^\]]*\]", "", e)                        # ranges, subqueries
    e = re.sub(r"\{[^}]*\}", "", e)                         # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names

def label_values_metric(query):
    """label_values(<selector>, label) -> <selector>; label_values(label) -> None."""
    m = re.match(r"\s*label_values\((.*),\s*\w+\s*\)\s*$", query)
    return m.group(1) if m else None

# The checker must not be vacuous.
assert metric_names('sum by (route, le) (rate(normd_request_duration_seconds_bucket{route=~"$route"}[$__rate_interval]))') == {"normd_request_duration_seconds_bucket"}
assert metric_names('histogram_quantile(0.99, x_bucket) > 1e-3 and on (pod) up offset 5m') == {"x_bucket", "up"}
assert metric_names('max by (pod) (a) / on (pod) group_left (b) max without (c) (b)') == {"a", "b"}
assert not {"normd_request_duration_seconds"} <= ALLOWED and "normd_requests_totl" not in ALLOWED

errors = []
def err(msg):
    errors.append(msg)

ok_lines = []
queries = []  # (name, expr) for the promtool syntax check

# Dashboard level
if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    err(f"schemaVersion {d.get('schemaVersion')!r}: expected >= 36")
if not d.get("uid") or not d.get("title"):
    err("dashboard needs uid and title")
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
for name in ("datasource", "namespace", "pod"):
    if name not in variables:
        err(f"template variable ${name} is missing")
dsv = variables.get("datasource", {})
if dsv and (dsv.get("type") != "datasource" or dsv.get("query") != "prometheus"):
    err("$datasource must be a datasource variable of type prometheus")

def ds_ok(ds):
    return isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") == "${datasource}"

for name, v in variables.items():
    if v.get("type") == "query":
        if not ds_ok(v.get("datasource")):
            err(f"variable ${name}: datasource must be ${{datasource}}")
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        sel = label_values_metric(q or "")
        if sel:
            queries.append((f"variable_{name}", sel))

for i, a in enumerate(d.get("annotations", {}).get("list", [])):
    if a.get("builtIn"):
        continue
    if not ds_ok(a.get("datasource")) or not a.get("expr"):
        err(f"annotation {a.get('name')!r}: needs datasource ${{datasource}} and an expr")
    else:
        queries.append((f"annotation_{i}", a["expr"]))

# Panels (rows included: a collapsed row carries its panels inside)
def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))

panels = list(all_panels(d.get("panels", [])))
ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    err("panel ids are not unique")
grid = {}
n_panels = 0
for p in panels:
    title = p.get("title") or ""
    g = p.get("gridPos", {})
    if not title.strip():
        err(f"panel id {p.get('id')}: no title")
    if not all(k in g for k in ("x", "y", "w", "h")) or g["x"] + g["w"] > 24:
        err(f"panel {title!r}: bad gridPos {g}")
    else:
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in grid:
                    err(f"panel {title!r} overlaps {grid[(x, y)]!r}")
                    break
                grid[(x, y)] = title
    if p.get("type") == "row":
        continue
    n_panels += 1
    if not (p.get("description") or "").strip():
        err(f"panel {title!r}: no description")
    if not ds_ok(p.get("datasource")):
        err(f"panel {title!r}: datasource must be {{type: prometheus, uid: ${{datasource}}}}")
    targets = p.get("targets") or []
    if not targets:
        err(f"panel {title!r}: no targets")
    for t in targets:
        expr = (t.get("expr") or "").strip()
        ref = t.get("refId", "?")
        if not expr:
            err(f"panel {title!r} target {ref}: empty expr")
            continue
        if "datasource" in t and not ds_ok(t["datasource"]):
            err(f"panel {title!r} target {ref}: datasource must be ${{datasource}}")
        queries.append((f"panel_{p.get('id')}_{ref}", expr))

ok_lines.append(f"dashboard structure: {n_panels} panels, each with title, description, "
                f"${{datasource}} and non-empty queries; variables datasource/namespace/pod")

# Metric names
seen = set()
for name, expr in queries:
    names = metric_names(expr)
    if not names:
        err(f"{name}: no metric name found in {expr!r}")
    for m in sorted(names - ALLOWED):
        err(f"{name}: metric {m!r} is not exported by normd (expr: {expr})")
    seen |= names
ok_lines.append(f"dashboard metric names: {len(queries)} queries use {len(seen & ALLOWED)} "
                f"distinct metrics, all in normd's list")

# Queries as recording rules, Grafana variables replaced, for `promtool check rules`.
SUBST = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
         ("$namespace", "default"), ("$pod", ".*"), ("$route", ".*")]
with open(rules_out, "w") as f:
    f.write("groups:\n  - name: normd-dashboard-queries\n    rules:\n")
    for name, expr in queries:
        for a, b in SUBST:
            expr = expr.replace(a, b)
        expr = re.sub(r"\$\{[^}]*\}|\$\w+", "x", expr)
        f.write(f"      - record: normd_dashboard:{name}\n        expr: {json.dumps(expr)}\n")

if errors:
    for e in errors:
        print("  - " + e)
    sys.exit(1)
for line in ok_lines:
    print(line)
PY
  then
    while IFS= read -r line; do pass "$line"; done <"$work/dash.out"
  else
    fail "dashboard structure / metric names"
    cat "$work/dash.out"
  fi

  if [ -s "$work/dashboard-queries.rules.yaml" ] &&
    "$PROMTOOL" check rules "$work/dashboard-queries.rules.yaml" >"$work/dashq.out" 2>&1; then
    pass "dashboard PromQL: every query parses (promtool, variables substituted)"
  else
    fail "dashboard PromQL: a query does not parse"
    cat "$work/dashq.out" 2>/dev/null || true
  fi
fi

# --- alert rules ---------------------------------------------------------------------------
rule_count=0
if "$PROMTOOL" check rules "$RULES" >"$work/rules.out" 2>&1; then
  rule_count=$(sed -n 's/.*SUCCESS: \([0-9][0-9]*\) rules found.*/\1/p' "$work/rules.out" | head -n1)
  pass "promtool check rules $RULES ($rule_count rules)"
else
  fail "promtool check rules $RULES"
  cat "$work/rules.out"
fi

if python3 - "$RULES" "$TESTS" "${rule_count:-0}" >"$work/alerts.out" 2>&1 <<'PY'
import re, sys

rules_path, tests_path, promtool_count = sys.argv[1], sys.argv[2], int(sys.argv[3] or 0)
REQUIRED = ["NormdReadinessFlapping", "NormdNotReady", "NormdHigh429Ratio", "NormdP99OverBudget",
            "NormdRSSOverReadyWatermark", "NormdMemoryShedding", "NormdProbeFailures",
            "NormdFlagReloadErrors", "NormdSchemaReloadErrors"]
ANCHORS = {"p95-up", "429s", "503-memory-pressure", "not-ready", "oomkilled", "422-spike"}
SEVERITIES = {"critical", "warning", "info"}

lines = open(rules_path).read().splitlines()
tests = open(tests_path).read()

# Split into alert blocks: from "- alert: X" to the next "- alert:" / "- record:" / "- name:".
blocks, cur = [], None
for ln in lines:
    m = re.match(r"^(\s*)- (alert|record|name):\s*(\S+)", ln)
    if m:
        if cur:
            blocks.append(cur)
        cur = (m.group(3), []) if m.group(2) == "alert" else None
        continue
    if cur:
        cur[1].append(ln)
if cur:
    blocks.append(cur)

errors = []
names = [b[0] for b in blocks]
if promtool_count and len(blocks) != promtool_count:
    errors.append(f"found {len(blocks)} alerts, promtool found {promtool_count} rules: "
                  "keep one alert per '- alert:' entry and no recording rules in this file")
for r in REQUIRED:
    if r not in names:
        errors.append(f"required alert {r} is missing")
if len(set(names)) != len(names):
    errors.append("duplicate alert names")

def field(body, key):
    for ln in body:
        m = re.match(rf"^\s*{key}:\s*(.*)$", ln)
        if m:
            return m.group(1).strip().strip('"\'')
    return None

for name, body in blocks:
    sev = field(body, "severity")
    if sev not in SEVERITIES:
        errors.append(f"{name}: severity label {sev!r} not in {sorted(SEVERITIES)}")
    for key in ("summary", "description"):
        if not field(body, key):
            errors.append(f"{name}: {key} annotation missing")
    url = field(body, "runbook_url") or ""
    m = re.fullmatch(r"(?:.*/)?RUNBOOK\.md#([\w-]+)", url)
    if not m or m.group(1) not in ANCHORS:
        errors.append(f"{name}: runbook_url {url!r} must be RUNBOOK.md#<one of {sorted(ANCHORS)}>")
    if not re.search(rf"alertname:\s*{re.escape(name)}\s*$", tests, re.M):
        errors.append(f"{name}: no test case in {tests_path}")

if errors:
    for e in errors:
        print("  - " + e)
    sys.exit(1)
print(f"alert rules: {len(blocks)} alerts (all {len(REQUIRED)} required), each with severity, "
      "summary, description, runbook_url anchor and a unit test")
PY
then
  pass "$(cat "$work/alerts.out")"
else
  fail "alert rules: required alerts, labels and annotations"
  cat "$work/alerts.out"
fi

# promtool resolves rule_files relative to the test file.
if "$PROMTOOL" test rules "$TESTS" >"$work/test.out" 2>&1; then
  pass "promtool test rules $TESTS"
else
  fail "promtool test rules $TESTS"
  cat "$work/test.out"
fi

# --- runbook anchors -----------------------------------------------------------------------
if [ -f RUNBOOK.md ]; then
  if python3 - RUNBOOK.md "$RULES" >"$work/runbook.out" 2>&1 <<'PY'
import re, sys
runbook, rules = open(sys.argv[1]).read(), open(sys.argv[2]).read()
anchors = set()
for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", runbook, re.M):
    heading = m.group(1)
    explicit = re.search(r"\{#([\w-]+)\}\s*$", heading)
    if explicit:
        anchors.add(explicit.group(1))
        heading = heading[: explicit.start()]
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")  # GitHub's rule
    anchors.add(slug)
anchors |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", runbook))
wanted = sorted(set(re.findall(r"RUNBOOK\.md#([\w-]+)", rules)))
missing = [a for a in wanted if a not in anchors]
if missing:
    print("  - RUNBOOK.md has no heading for: " + ", ".join("#" + a for a in missing))
    sys.exit(1)
print(f"runbook: RUNBOOK.md has all {len(wanted)} anchors the alerts link to")
PY
  then
    pass "$(cat "$work/runbook.out")"
  else
    fail "runbook anchors"
    cat "$work/runbook.out"
  fi
else
  echo "SKIP  runbook: RUNBOOK.md not in the repo yet, anchors not checked"
fi

elapsed=$(($(date +%s) - started))
if [ "$failures" -gt 0 ]; then
  echo "check-monitoring: FAILED ($failures of $checks checks failed, ${elapsed}s)"
  exit 1
fi
echo "check-monitoring: OK ($checks checks, ${elapsed}s)"
