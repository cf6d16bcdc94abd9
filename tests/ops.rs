//! Observability and operations of a real `normd` process (README: Metrics and logs, Feature flags, schema reload):
//! the Prometheus exposition, the access log and trace ids, the flags file (API, the
//! `normd flags` subcommand, invalid files, a Kubernetes ConfigMap symlink swap) and
//! SIGHUP schema reload.
//!
//! Every change normd picks up on its own (a flags poll, a reload) is waited for by
//! polling what it serves, with a bound; nothing sleeps.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_problem, fixture, header, json, poll_until, run_normd, Normd, Reply};
use serde_json::{json, Value};
use support::*;

/// The latency buckets normd promises (telemetry::LATENCY_BUCKETS), 50 µs to 1 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Args of every normd here: calls may carry the 30 s budget of [`post_json`], and an
/// explicit memory limit far above normd's RSS keeps readiness independent of the
/// machine (with none, normd compares the CI runner's whole cgroup to its limit).
const BASE_ARGS: [&str; 4] = ["--max-deadline-ms", "60000", "--memory-limit", "64Gi"];

fn post_json(
    n: &Normd,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Reply {
    // A 30 s budget (normds here allow 60 s): a loaded CI machine must not turn a call
    // that this file expects to succeed into a 504.
    let mut h = vec![("content-type", "application/json")];
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-deadline-ms"))
    {
        h.push(("x-deadline-ms", "30000"));
    }
    h.extend_from_slice(headers);
    n.unix("POST", path, &h, body)
}

/// Replaces `path` atomically (temp file in the same dir + rename), as an operator or
/// a config tool would, so a poll never sees half a file.
fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, content).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn flags_doc(n: &Normd) -> Value {
    let (status, _, body) = n.unix("GET", "/flags", &[], "");
    assert_eq!(status.as_u16(), 200);
    json(&body)
}

/// Polls GET /flags until `pred` holds; returns that document.
fn wait_flags(n: &Normd, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = poll_until(WAIT, || {
        last = flags_doc(n);
        pred(&last)
    });
    assert!(ok, "GET /flags never showed {what}; last: {last:#}");
    last
}

/// A temp dir holding `flags/flags.json` with `content`, and that file's path.
fn dir_with_flags(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags_dir = dir.path().join("flags");
    std::fs::create_dir(&flags_dir).expect("mkdir");
    let path = flags_dir.join("flags.json");
    std::fs::write(&path, content).expect("write flags");
    (dir, path)
}

fn start_with_flags(dir: tempfile::TempDir, path: &Path, extra: &[&str]) -> Normd {
    Normd::builder()
        .dir(dir)
        .args(&[
            "--flags",
            &path.display().to_string(),
            "--flags-poll-ms",
            "100",
        ])
        .args(&BASE_ARGS)
        .args(extra)
        .start()
}

/// Issue: /metrics is valid Prometheus text, has every series the README's metrics table names, with the
/// documented buckets, and its counters move by exactly what the test did.
#[test]
fn metrics_parse_have_every_series_and_count_exactly() {
    let (dir, flags) = dir_with_flags(r#"{"norm": {"enabled": true, "rollout_percent": 100}}"#);
    let n = start_with_flags(dir, &flags, &QUIET_PROBE);
    wait_first_probe_round(&n);
    let before = metrics(&n);

    let order = fixture("order_1k.json");
    let sent = 5;
    let mut out_bytes = 0usize;
    for _ in 0..sent {
        let (status, headers, body) = post_json(&n, "/norm", &[], order.clone());
        assert_eq!(status.as_u16(), 200);
        assert_eq!(header(&headers, "x-normd-encoding"), "gzip");
        out_bytes += body.len();
    }
    let invalid_body = fixture("order_invalid.json");
    let invalid_len = invalid_body.len();
    let invalid = post_json(&n, "/norm?schema=order.v1", &[], invalid_body);
    assert_problem(&invalid, 422, "schema_violation");
    // A flags reload, to have a reload counted.
    write_atomically(
        &flags,
        r#"{"norm": {"enabled": true, "rollout_percent": 50}}"#,
    );
    let m = wait_metrics(&n, "the flags reload to be counted", |m| {
        m.sum("normd_flag_reloads_total", &[("result", "ok")]) >= 1.0
    });

    // Every series of the contract is there, with its declared type.
    let expected: [(&str, &str, &str); 18] = [
        ("normd_requests_total", "counter", "normd_requests_total"),
        (
            "normd_request_duration_seconds",
            "histogram",
            "normd_request_duration_seconds_bucket",
        ),
        (
            "normd_queue_wait_seconds",
            "histogram",
            "normd_queue_wait_seconds_bucket",
        ),
        (
            "normd_inflight_requests",
            "gauge",
            "normd_inflight_requests",
        ),
        ("normd_queue_depth", "gauge", "normd_queue_depth"),
        (
            "normd_rejections_total",
            "counter",
            "normd_rejections_total",
        ),
        ("normd_bytes_in_total", "counter", "normd_bytes_in_total"),
        ("normd_bytes_out_total", "counter", "normd_bytes_out_total"),
        (
            "normd_compression_ratio",
            "histogram",
            "normd_compression_ratio_bucket",
        ),
        (
            "normd_schema_failures_total",
            "counter",
            "normd_schema_failures_total",
        ),
        (
            "normd_probe_failures_total",
            "counter",
            "normd_probe_failures_total",
        ),
        (
            "normd_flag_reloads_total",
            "counter",
            "normd_flag_reloads_total",
        ),
        ("normd_build_info", "gauge", "normd_build_info"),
        (
            "normd_memory_releases_total",
            "counter",
            "normd_memory_releases_total",
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "process_resident_memory_bytes",
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "process_cpu_seconds_total",
        ),
        ("process_open_fds", "gauge", "process_open_fds"),
        (
            "process_start_time_seconds",
            "gauge",
            "process_start_time_seconds",
        ),
    ];
    for (family, kind, sample) in expected {
        assert!(m.has(sample), "no {sample} in /metrics:\n{}", m.text);
        assert_eq!(
            m.type_of(family).as_deref(),
            Some(kind),
            "# TYPE of {family}"
        );
    }
    for reason in ["overloaded", "deadline", "memory_pressure", "disabled"] {
        assert!(
            m.matching("normd_rejections_total", &[("reason", reason)])
                .next()
                .is_some(),
            "rejections by reason {reason:?} is exported"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.sum("normd_build_info", &[("version", version)]), 1.0);
    assert!(m.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.sum("process_open_fds", &[]) > 0.0);
    assert!(m.sum("process_start_time_seconds", &[]) > 1.6e9);

    // The latency histogram of /norm: exactly the documented buckets, cumulative.
    let norm = [("route", "norm")];
    let mut buckets: Vec<(f64, f64)> = m
        .matching("normd_request_duration_seconds_bucket", &norm)
        .map(|s| (parse_value(&s.labels["le"]).expect("le"), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    let mut want = LATENCY_BUCKETS.to_vec();
    want.push(f64::INFINITY);
    assert_eq!(les, want, "le buckets of normd_request_duration_seconds");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
    let count = m.sum("normd_request_duration_seconds_count", &norm);
    assert_eq!(buckets.last().unwrap().1, count, "+Inf bucket == _count");
    assert!(m.has("normd_request_duration_seconds_sum"));
    let queue_les: Vec<f64> = m
        .matching("normd_queue_wait_seconds_bucket", &[])
        .map(|s| parse_value(&s.labels["le"]).expect("le"))
        .collect();
    assert_eq!(queue_les.len(), want.len(), "queue wait buckets");

    // Counters moved by exactly what was sent.
    let delta =
        |name: &str, labels: &[(&str, &str)]| m.sum(name, labels) - before.sum(name, labels);
    assert_eq!(
        delta(
            "normd_requests_total",
            &[("route", "norm"), ("status", "200")]
        ),
        sent as f64
    );
    assert_eq!(
        delta(
            "normd_requests_total",
            &[
                ("route", "norm"),
                ("status", "422"),
                ("code", "schema_violation")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta("normd_request_duration_seconds_count", &norm),
        sent as f64 + 1.0
    );
    // Every answer's bytes, the 422 (its body in, its problem out) as well as the 200s.
    assert_eq!(
        delta("normd_bytes_in_total", &norm),
        (sent * order.len() + invalid_len) as f64
    );
    assert_eq!(
        delta("normd_bytes_out_total", &norm),
        (out_bytes + invalid.2.len()) as f64
    );
    assert_eq!(
        delta("normd_compression_ratio_count", &[("encoding", "gzip")]),
        sent as f64
    );
    assert_eq!(
        delta("normd_schema_failures_total", &[("schema", "order.v1")]),
        1.0
    );
    assert_eq!(delta("normd_flag_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(
        delta("normd_flag_reloads_total", &[("result", "error")]),
        0.0
    );
    // The self-probe's canaries are counted apart, not as /norm traffic.
    assert!(m.sum("normd_requests_total", &[("route", "probe")]) >= 1.0);
    assert!(m.sum("normd_bytes_in_total", &[("route", "probe")]) > 0.0);
    assert_eq!(m.sum("normd_inflight_requests", &[]), 0.0);
    assert_eq!(m.sum("normd_queue_depth", &[]), 0.0);
    assert_eq!(
        m.sum("normd_flag_rollout_percent", &[("endpoint", "norm")]),
        50.0
    );
}

/// Issue: one JSON access-log line per request with every field, the trace id taken from
/// `traceparent`, else `X-Request-Id`, else generated, and echoed as `X-Request-Id`.
#[test]
fn access_log_lines_carry_every_field_and_the_trace_id() {
    let n = Normd::start(&BASE_ARGS);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let body = r#"{"b": 2, "a": 1}"#;

    let find = |id: &str| {
        n.wait_for_log(WAIT, |l| l["msg"] == "request" && l["trace_id"] == id)
            .unwrap_or_else(|| panic!("no access-log line with trace_id {id}: {:#?}", n.logs()))
    };

    // traceparent wins over X-Request-Id.
    let (status, headers, out) = post_json(
        &n,
        "/norm",
        &[
            ("traceparent", &traceparent),
            ("x-request-id", "ignored-id"),
        ],
        body,
    );
    assert_eq!(status.as_u16(), 200);
    assert_eq!(header(&headers, "x-request-id"), trace);
    let line = find(trace);
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "ts",
        "level",
        "trace_id",
        "route",
        "status",
        "in_bytes",
        "out_bytes",
        "millis",
        "msg",
    ] {
        assert!(keys.contains(&k), "field {k} missing: {line:#}");
    }
    assert!(!keys.contains(&"code"), "no code on success: {line:#}");
    let ts = line["ts"].as_str().expect("ts is a string");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
        "RFC 3339 UTC ts: {ts}"
    );
    assert_eq!(line["level"], "info");
    assert_eq!(line["route"], "norm");
    assert_eq!(line["status"], 200);
    assert_eq!(line["in_bytes"], body.len());
    assert_eq!(line["out_bytes"], out.len());
    assert!(
        line["millis"].as_f64().is_some_and(|m| m >= 0.0),
        "{line:#}"
    );

    // X-Request-Id alone is used (over TCP too).
    let (status, headers, _) = n.tcp(
        "POST",
        "/normalize",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-7f3a-01"),
            ("x-deadline-ms", "30000"),
        ],
        body,
    );
    assert_eq!(status.as_u16(), 200);
    assert_eq!(header(&headers, "x-request-id"), "req-7f3a-01");
    let line = find("req-7f3a-01");
    assert_eq!(line["route"], "normalize");

    // An error carries its code.
    let bad_trace = "0af7651916cd43dd8448eb211c80319c";
    let reply = post_json(
        &n,
        "/norm",
        &[(
            "traceparent",
            &format!("00-{bad_trace}-b7ad6b7169203331-01"),
        )],
        "{not json",
    );
    assert_problem(&reply, 400, "invalid_json");
    assert_eq!(header(&reply.1, "x-request-id"), bad_trace);
    let line = find(bad_trace);
    assert_eq!(line["status"], 400);
    assert_eq!(line["code"], "invalid_json");
    assert_eq!(line["in_bytes"], "{not json".len());

    // Neither header: a generated 32-hex id, echoed and logged.
    let (_, headers, _) = post_json(&n, "/validate", &[], body);
    let generated = header(&headers, "x-request-id").to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(find(&generated)["route"], "validate");

    // Health checks and scrapes get their line too.
    for (path, route) in [
        ("/livez", "livez"),
        ("/readyz", "readyz"),
        ("/metrics", "metrics"),
    ] {
        let id = format!("req-{route}");
        let (status, _, _) = n.unix("GET", path, &[("x-request-id", &id)], "");
        let line = find(&id);
        assert_eq!(line["route"], route);
        assert_eq!(line["status"], status.as_u16());
    }
}

/// Issue: flipping `norm.enabled` off → on → off is seen through the API (GET /flags
/// version, 503 `disabled` with Retry-After, then 200); `normd flags set` edits the file
/// atomically (no temp file left) and `normd flags get` shows what normd serves.
#[test]
fn a_flag_flip_off_on_off_is_served_and_the_flags_subcommand_edits_atomically() {
    let (dir, path) = dir_with_flags(r#"{"norm": {"enabled": true, "rollout_percent": 100}}"#);
    let n = start_with_flags(dir, &path, &[]);
    let file = path.display().to_string();
    let v0 = flags_doc(&n);
    assert_eq!(v0["flags"]["norm"]["enabled"], true);
    assert!(v0["mtime"].is_string(), "{v0:#}");
    assert_eq!(post_json(&n, "/norm", &[], r#"{"a":1}"#).0.as_u16(), 200);

    let norm_off = |n: &Normd| {
        let reply = post_json(n, "/norm", &[], r#"{"a":1}"#);
        let doc = assert_problem(&reply, 503, "disabled");
        assert!(header(&reply.1, "retry-after").parse::<u64>().unwrap() >= 1);
        doc
    };

    // Off, by writing the file.
    write_atomically(
        &path,
        r#"{"norm": {"enabled": false, "rollout_percent": 100}}"#,
    );
    let v1 = wait_flags(&n, "a new version", |d| d["version"] != v0["version"]);
    assert_eq!(v1["flags"]["norm"]["enabled"], false);
    norm_off(&n);
    // Other endpoints are not affected.
    assert_eq!(
        post_json(&n, "/normalize", &[], r#"{"a":1}"#).0.as_u16(),
        200
    );

    // On, with the subcommand.
    let t = Duration::from_secs(30);
    let (status, out, err) = run_normd(&["flags", "set", "norm.enabled=true", "--flags", &file], t);
    assert_eq!(status.code(), Some(0), "{out}{err}");
    let v2 = wait_flags(&n, "the subcommand's edit", |d| {
        d["version"] != v1["version"]
    });
    assert_eq!(v2["flags"]["norm"]["enabled"], true);
    assert_eq!(post_json(&n, "/norm", &[], r#"{"a":1}"#).0.as_u16(), 200);

    // Off again, with the subcommand, and a rollout change in the same edit.
    let (status, out, err) = run_normd(
        &[
            "flags",
            "set",
            "norm.enabled=false",
            "norm.rollout_percent=25",
            "--flags",
            &file,
        ],
        t,
    );
    assert_eq!(status.code(), Some(0), "{out}{err}");
    let v3 = wait_flags(&n, "the second edit", |d| d["version"] != v2["version"]);
    assert_eq!(
        v3["flags"]["norm"],
        json!({"enabled": false, "rollout_percent": 25, "shadow_percent": 0})
    );
    norm_off(&n);

    // Atomic: only the flags file is in its directory (no temp file left behind).
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["flags.json".to_owned()]);

    // `flags get` shows the same flags, and the same version, as normd serves.
    let (status, out, err) = run_normd(&["flags", "get", "--flags", &file], t);
    assert_eq!(status.code(), Some(0), "{err}");
    let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(got["flags"], v3["flags"]);
    assert_eq!(got["version"], v3["version"]);
    let m = metrics(&n);
    assert_eq!(m.sum("normd_flag_enabled", &[("endpoint", "norm")]), 0.0);
    assert!(m.sum("normd_rejections_total", &[("reason", "disabled")]) >= 2.0);
}

/// Issue (README: Configuration, Feature flags): `normd flags set norm.rollout_percent=25` works as written, on
/// `./flags.json` (created if missing); `flags show` is `flags get`; `normd serve` reads
/// `./flags.json` when it exists and nothing names another file, and polls it.
#[test]
fn the_flags_subcommands_and_serve_default_to_dot_flags_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Duration::from_secs(30);
    let flags = |args: &[&str]| {
        let (status, out, err) = common::run_normd_with(args, Some(dir.path()), &[], t);
        assert_eq!(status.code(), Some(0), "{args:?}: {out}{err}");
        out
    };
    let (_, help, _) = run_normd(&["flags", "--help"], t);
    assert!(
        help.contains("show") && help.contains("[default: ./flags.json]"),
        "{help}"
    );

    let shown: Value = serde_json::from_str(&flags(&["flags", "show"])).expect("JSON");
    assert_eq!(shown["version"], "default");
    assert!(
        !dir.path().join("flags.json").exists(),
        "show writes nothing"
    );
    flags(&["flags", "set", "norm.rollout_percent=25"]);
    let written = dir.path().join("flags.json");
    assert!(written.is_file(), "set creates ./flags.json");
    let shown: Value = serde_json::from_str(&flags(&["flags", "show"])).expect("JSON");
    assert_eq!(shown["flags"]["norm"]["rollout_percent"], 25);
    let got: Value = serde_json::from_str(&flags(&["flags", "get"])).expect("JSON");
    assert_eq!(got, shown);

    // serve, run in that directory with no --flags, reads and polls ./flags.json.
    let n = Normd::builder()
        .dir(dir)
        .args(&BASE_ARGS)
        .args(&["--flags-poll-ms", "100"])
        .start();
    let doc = flags_doc(&n);
    assert_eq!(doc["source"], "./flags.json");
    assert_eq!(doc["flags"]["norm"]["rollout_percent"], 25);
    let (status, out, err) = common::run_normd_with(
        &["flags", "set", "norm.enabled=false"],
        Some(n.dir.path()),
        &[],
        t,
    );
    assert_eq!(status.code(), Some(0), "{out}{err}");
    wait_flags(&n, "the edit of ./flags.json", |d| {
        d["flags"]["norm"]["enabled"] == false
    });
    assert_problem(&post_json(&n, "/norm", &[], "{}"), 503, "disabled");

    // `--flags ''` says "no flags file" even with ./flags.json present.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("flags.json"),
        r#"{"norm": {"enabled": false}}"#,
    )
    .expect("write flags");
    let m = Normd::builder()
        .dir(dir)
        .args(&BASE_ARGS)
        .args(&["--flags", ""])
        .start();
    let doc = flags_doc(&m);
    assert_eq!(doc["source"], Value::Null);
    assert_eq!(doc["flags"]["norm"]["enabled"], true);
}

/// Issue: an invalid flags file keeps the last good flags (the endpoint stays as it
/// was), GET /flags names the error, and the error is counted. An emptied file (what a
/// poll sees during `echo > flags.json`) is invalid too: it must not undo a kill switch.
#[test]
fn an_invalid_flags_file_keeps_the_last_good_flags() {
    let (dir, path) = dir_with_flags(r#"{"norm": {"enabled": false}}"#);
    let n = start_with_flags(dir, &path, &[]);
    let good = flags_doc(&n);
    assert_eq!(good["last_error"], Value::Null);
    assert_problem(&post_json(&n, "/norm", &[], "{}"), 503, "disabled");
    let errors_before = metrics(&n).sum("normd_flag_reloads_total", &[("result", "error")]);

    let mut previous_error = Value::Null;
    for broken in [
        "{not json",
        r#"{"nrom": {"enabled": true}}"#,
        r#"{"norm": {"enabled": true, "rollout_percent": 101}}"#,
        "\n",
    ] {
        write_atomically(&path, broken);
        let doc = wait_flags(&n, "the new error", |d| {
            d["last_error"].is_string() && d["last_error"] != previous_error
        });
        assert_eq!(doc["version"], good["version"], "the last good flags stay");
        assert_eq!(doc["flags"], good["flags"]);
        assert_problem(&post_json(&n, "/norm", &[], "{}"), 503, "disabled");
        previous_error = doc["last_error"].clone();
    }
    assert!(
        previous_error.as_str().is_some_and(|e| e.contains("empty")),
        "{previous_error}"
    );
    let m = wait_metrics(&n, "four counted errors", |m| {
        m.sum("normd_flag_reloads_total", &[("result", "error")]) >= errors_before + 4.0
    });
    assert_eq!(
        m.sum("normd_flag_reloads_total", &[("result", "error")]),
        errors_before + 4.0,
        "each bad content is counted once"
    );

    // A good file again takes effect and clears the error.
    write_atomically(&path, r#"{"norm": {"enabled": true}}"#);
    let doc = wait_flags(&n, "the good file", |d| {
        d["flags"]["norm"]["enabled"] == true
    });
    assert_eq!(doc["last_error"], Value::Null);
    assert_eq!(post_json(&n, "/norm", &[], "{}").0.as_u16(), 200);
}

/// Issue: a flags file that disappears, or cannot be read, keeps the last flags, and
/// says so: one warning, `last_error` on GET /flags, one counted error; all cleared
/// when the file is back.
#[test]
fn a_missing_or_unreadable_flags_file_is_named_once_and_cleared_when_back() {
    let content = r#"{"norm": {"enabled": false}}"#;
    let (dir, path) = dir_with_flags(content);
    let n = start_with_flags(dir, &path, &[]);
    let good = flags_doc(&n);
    let errors = |n: &Normd| metrics(n).sum("normd_flag_reloads_total", &[("result", "error")]);
    let warnings = |n: &Normd, msg: &str| {
        n.log_json()
            .iter()
            .filter(|l| l["level"] == "warn" && l["msg"].as_str() == Some(msg))
            .count()
    };
    let before = errors(&n);

    // Gone (an operator's rm, a volume unmounted).
    std::fs::remove_file(&path).expect("rm");
    let doc = wait_flags(&n, "the missing file", |d| {
        d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("missing"))
    });
    assert_eq!(doc["flags"], good["flags"], "the last flags are kept");
    assert_eq!(doc["version"], good["version"]);
    assert_problem(&post_json(&n, "/norm", &[], "{}"), 503, "disabled");
    write_atomically(&path, content);
    wait_flags(&n, "the file back", |d| d["last_error"].is_null());
    assert_eq!(
        warnings(&n, "flags file missing; keeping the last flags"),
        1,
        "{:#?}",
        n.logs()
    );
    assert_eq!(errors(&n), before + 1.0);

    // Unreadable (a directory in its place: permission bits do not stop root).
    std::fs::remove_file(&path).expect("rm");
    std::fs::create_dir(&path).expect("mkdir");
    let doc = wait_flags(&n, "the unreadable file", |d| {
        d["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read"))
    });
    assert_eq!(doc["flags"], good["flags"]);
    std::fs::remove_dir(&path).expect("rmdir");
    write_atomically(&path, r#"{"norm": {"enabled": true}}"#);
    let doc = wait_flags(&n, "the new file", |d| {
        d["flags"]["norm"]["enabled"] == true
    });
    assert_eq!(doc["last_error"], Value::Null);
    assert_eq!(
        warnings(&n, "flags file unreadable; keeping the last flags"),
        1
    );
    // Unreadable, then (between the rmdir and the write) possibly missing: one each.
    let counted = errors(&n) - before;
    assert!((2.0..=3.0).contains(&counted), "{counted}");
    assert_eq!(post_json(&n, "/norm", &[], "{}").0.as_u16(), 200);
}

/// Issue: an empty flags file at startup is a startup error, like any file that does
/// not parse, in JSON and in YAML.
#[test]
fn an_empty_flags_file_fails_startup() {
    for (name, content) in [("flags.json", ""), ("flags.yaml", "# nothing yet\n")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write flags");
        let failure = Normd::builder()
            .dir(dir)
            .args(&["--flags", &path.display().to_string()])
            .try_start()
            .err()
            .unwrap_or_else(|| panic!("normd started with an empty {name}"));
        assert!(!failure.status.expect("exit status").success());
        assert!(
            failure.stderr.contains(&path.display().to_string())
                && failure.stderr.contains("write {} for the defaults"),
            "{}",
            failure.stderr
        );
    }
}

/// Issue: a Kubernetes ConfigMap update (the `..data` symlink swapped atomically to a
/// new timestamped dir) is picked up through `<dir>/flags.json -> ..data/flags.json`.
#[test]
fn a_configmap_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let cm = dir.path().join("config");
    std::fs::create_dir_all(cm.join("..2026_01_01")).unwrap();
    std::fs::write(
        cm.join("..2026_01_01/flags.json"),
        r#"{"norm": {"enabled": true, "rollout_percent": 10}}"#,
    )
    .unwrap();
    symlink("..2026_01_01", cm.join("..data")).unwrap();
    symlink("..data/flags.json", cm.join("flags.json")).unwrap();
    let path = cm.join("flags.json");
    let n = start_with_flags(dir, &path, &[]);
    let first = flags_doc(&n);
    assert_eq!(first["flags"]["norm"]["rollout_percent"], 10);
    assert_eq!(post_json(&n, "/norm", &[], "{}").0.as_u16(), 200);

    // What the kubelet does: write the new version beside, then swap `..data`.
    std::fs::create_dir(cm.join("..2026_01_02")).unwrap();
    std::fs::write(
        cm.join("..2026_01_02/flags.json"),
        r#"{"norm": {"enabled": false, "rollout_percent": 20}}"#,
    )
    .unwrap();
    symlink("..2026_01_02", cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    std::fs::remove_dir_all(cm.join("..2026_01_01")).unwrap();

    let doc = wait_flags(&n, "the swapped ConfigMap", |d| {
        d["flags"]["norm"]["rollout_percent"] == 20
    });
    assert_ne!(doc["version"], first["version"]);
    assert_eq!(doc["flags"]["norm"]["enabled"], false);
    assert_eq!(doc["last_error"], Value::Null);
    assert_problem(&post_json(&n, "/norm", &[], "{}"), 503, "disabled");
}

fn schema_names(n: &Normd) -> Vec<String> {
    let (status, _, body) = n.unix("GET", "/schemas", &[], "");
    assert_eq!(status.as_u16(), 200);
    let mut names: Vec<String> = json(&body)["schemas"]
        .as_array()
        .expect("schemas list")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

/// Issue: SIGHUP reloads the schemas dir: a new schema appears (and validates); a broken
/// file makes the reload fail, the previous set stays in force, and the failure is
/// counted as `normd_schema_reloads_total{result="error"}`.
#[test]
fn sighup_reloads_schemas_and_a_broken_reload_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    for entry in std::fs::read_dir(common::repo_path("schemas")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && p.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&p, schemas.join(p.file_name().unwrap())).unwrap();
        }
    }
    let n = Normd::builder()
        .dir(dir)
        .args(&["--schemas", &schemas.display().to_string()])
        .args(&BASE_ARGS)
        .start();
    wait_signal_handlers(&n, &[SIGHUP]);
    let initial = schema_names(&n);
    assert!(initial.contains(&"order.v1".to_owned()), "{initial:?}");
    assert!(!initial.contains(&"widget.v1".to_owned()));
    assert_problem(
        &post_json(&n, "/validate?schema=widget.v1", &[], "{}"),
        400,
        "unknown_schema",
    );

    std::fs::write(
        schemas.join("widget.v1.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object", "required": ["w"], "properties": {"w": {"type": "integer"}}}"#,
    )
    .unwrap();
    n.send_signal("HUP");
    assert!(
        poll_until(WAIT, || schema_names(&n).contains(&"widget.v1".to_owned())),
        "widget.v1 never listed after SIGHUP: {:?}",
        schema_names(&n)
    );
    let (status, _, body) = post_json(&n, "/validate?schema=widget.v1", &[], r#"{"w": "x"}"#);
    assert_eq!(status.as_u16(), 200);
    assert_eq!(json(&body)["valid"], false);
    let with_widget = schema_names(&n);

    std::fs::write(schemas.join("broken.v1.json"), "{ this is not json").unwrap();
    n.send_signal("HUP");
    let m = wait_metrics(&n, "the failed reload to be counted", |m| {
        m.sum("normd_schema_reloads_total", &[("result", "error")]) >= 1.0
    });
    assert_eq!(
        m.sum("normd_schema_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        schema_names(&n),
        with_widget,
        "the previous set stays in force"
    );
    let (status, _, body) = post_json(&n, "/validate?schema=widget.v1", &[], r#"{"w": 1}"#);
    assert_eq!(status.as_u16(), 200);
    assert_eq!(json(&body)["valid"], true);
    assert!(n
        .wait_for_log(WAIT, |l| l["level"] == "error"
            && l["msg"]
                .as_str()
                .unwrap_or("")
                .contains("schema reload failed"))
        .is_some());
    // Still ready: a failed reload is not an outage.
    let (status, doc, _) = readyz(&n, "");
    assert_eq!(status, 200, "{doc:#}");
}

/// An empty schemas dir (a missing mount, more often than a choice) is "schemas not
/// loaded": /readyz fails `schemas`, a call that names a schema gets 503 `not_ready`
/// (the app falls back), calls without one are served. A SIGHUP that finds schemas makes
/// normd ready; a later reload of an emptied dir keeps the working set.
#[test]
fn an_empty_schemas_dir_is_not_ready_until_a_reload_finds_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    let n = Normd::builder()
        .dir(dir)
        .args(&["--schemas", &schemas.display().to_string()])
        .args(&BASE_ARGS)
        .start();
    wait_signal_handlers(&n, &[SIGHUP]);

    let (status, doc, _) = readyz(&n, "");
    assert_eq!(status, 503, "{doc:#}");
    assert_eq!(doc["checks"]["schemas"]["ok"], false, "{doc:#}");
    assert_eq!(doc["checks"]["schemas"]["count"], 0);
    let reply = post_json(&n, "/norm?schema=order.v1", &[], "{}");
    let p = assert_problem(&reply, 503, "not_ready");
    assert!(
        p["detail"].as_str().unwrap_or("").contains("order.v1"),
        "{p}"
    );
    assert_eq!(header(&reply.1, "retry-after"), "1");
    let (status, _, _) = post_json(&n, "/normalize", &[], r#"{"b":1,"a":2}"#);
    assert_eq!(status.as_u16(), 200, "work without a schema is served");

    let order = common::repo_path("schemas").join("order.v1.json");
    let address = common::repo_path("schemas").join("address.v1.json");
    std::fs::copy(&order, schemas.join("order.v1.json")).unwrap();
    std::fs::copy(&address, schemas.join("address.v1.json")).unwrap();
    n.send_signal("HUP");
    assert!(
        poll_until(WAIT, || readyz(&n, "").0 == 200),
        "never ready after the reload: {:#}",
        readyz(&n, "").1
    );
    let (status, _, body) = post_json(&n, "/validate?schema=order.v1", &[], "{}");
    assert_eq!(status.as_u16(), 200);
    assert_eq!(json(&body)["valid"], false);

    std::fs::remove_file(schemas.join("order.v1.json")).unwrap();
    std::fs::remove_file(schemas.join("address.v1.json")).unwrap();
    n.send_signal("HUP");
    wait_metrics(&n, "the reload of the emptied dir to fail", |m| {
        m.sum("normd_schema_reloads_total", &[("result", "error")]) >= 1.0
    });
    assert_eq!(
        schema_names(&n),
        ["address.v1".to_owned(), "order.v1".to_owned()],
        "the working set stays"
    );
    assert_eq!(readyz(&n, "").0, 200);
}

/// Without a flags file the flag gauges still exist, at their defaults (dashboards and
/// alerts read them either way).
#[test]
fn the_flag_gauges_exist_without_a_flags_file() {
    let n = Normd::start(&BASE_ARGS);
    let m = metrics(&n);
    for endpoint in ["norm", "normalize", "validate", "compress"] {
        assert_eq!(m.sum("normd_flag_enabled", &[("endpoint", endpoint)]), 1.0);
        assert_eq!(
            m.sum("normd_flag_rollout_percent", &[("endpoint", endpoint)]),
            100.0
        );
    }
    assert!(
        m.text.contains("normd_flag_enabled{endpoint=\"norm\"} 1"),
        "{}",
        m.text
    );
}
