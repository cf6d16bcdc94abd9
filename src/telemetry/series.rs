//! Every metric normd exports, in one table, and the functions that record them.
//!
//! [`METRICS`] is the one place a metric is declared: name (also a constant the recording
//! functions use), kind, labels, help text and the series created at start; the
//! descriptions, the histogram buckets and those zero series are derived from it. A
//! label whose values are seeded is an enum ([`Rejection`], [`Listener`], ...): its
//! `NAMES` are seeded and its `as_str` is what is emitted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, KeyName, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How a metric is exported; a histogram carries its buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Which series of a counter exist from the start, at 0: alerts on `increase()` miss an
/// event that creates its series.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seed {
    /// Created by its first event.
    No,
    /// The one unlabelled series.
    Plain,
    /// One series per value of its one label.
    Each(&'static [&'static str]),
}

/// One metric, as exported.
#[derive(Debug)]
struct Metric {
    name: &'static str,
    kind: Kind,
    /// Every label of every series, in the order recorded.
    labels: &'static [&'static str],
    unit: Option<Unit>,
    seed: Seed,
    help: &'static str,
}

/// Declares each metric's name constant and its [`METRICS`] row from one entry.
macro_rules! metrics_table {
    ($($id:ident: $kind:ident$(($buckets:expr))? $name:literal {$($label:ident),*}, $unit:expr, $seed:expr, $help:literal;)*) => {
        $(const $id: &str = $name;)*
        /// Every metric normd exports (besides the `process_*` ones of metrics-process).
        const METRICS: &[Metric] = &[$(Metric {
            name: $name,
            kind: Kind::$kind$(($buckets))?,
            labels: &[$(stringify!($label)),*],
            unit: $unit,
            seed: $seed,
            help: $help,
        }),*];
    };
}

const BYTES: Option<Unit> = Some(Unit::Bytes);
const SECONDS: Option<Unit> = Some(Unit::Seconds);

metrics_table! {
    // CONST: kind "name" {labels}, unit, series created at 0 on start,
    //     "help";
    REQUESTS_TOTAL: Counter "normd_requests_total" {route, status, code}, None, Seed::No,
        "Requests answered, by route, status and code";
    REQUEST_DURATION_SECONDS: Histogram(LATENCY_BUCKETS) "normd_request_duration_seconds" {route}, SECONDS, Seed::No,
        "Time from receipt to response, by route";
    QUEUE_WAIT_SECONDS: Histogram(LATENCY_BUCKETS) "normd_queue_wait_seconds" {}, SECONDS, Seed::No,
        "Time admitted work waited for a CPU worker";
    JOBS_INLINE_TOTAL: Counter "normd_jobs_inline_total" {}, None, Seed::Plain,
        "Jobs run inline on the I/O thread of their call (small, while the pool was idle)";
    INFLIGHT_REQUESTS: Gauge "normd_inflight_requests" {}, None, Seed::No,
        "Work requests being answered now";
    QUEUE_DEPTH: Gauge "normd_queue_depth" {}, None, Seed::No,
        "Calls admitted and not yet started";
    INFLIGHT_BYTES: Gauge "normd_inflight_bytes" {}, BYTES, Seed::No,
        "Request bytes held by calls in flight";
    OPEN_CONNECTIONS: Gauge "normd_open_connections" {listener}, None, Seed::No,
        "Open client connections, by listener";
    CONNECTIONS_REFUSED_TOTAL: Counter "normd_connections_refused_total" {listener}, None, Seed::Each(Listener::NAMES),
        "Connections answered 429 (or closed) past the connection limit, by listener";
    CONNECTIONS_EVICTED_TOTAL: Counter "normd_connections_evicted_total" {listener}, None, Seed::Each(Listener::NAMES),
        "Idle keep-alive connections closed at the connection limit to serve a new one, by listener";
    REJECTIONS_TOTAL: Counter "normd_rejections_total" {reason}, None, Seed::Each(Rejection::NAMES),
        "Calls answered 429/503/504 instead of a result, by reason";
    CANCELLED_TOTAL: Counter "normd_cancelled_before_start_total" {cause}, None, Seed::Each(Cancel::NAMES),
        "Queued calls skipped because their caller left or their budget ran out";
    BYTES_IN_TOTAL: Counter "normd_bytes_in_total" {route}, BYTES, Seed::No,
        "Request body bytes as received, by route";
    BYTES_OUT_TOTAL: Counter "normd_bytes_out_total" {route}, BYTES, Seed::No,
        "Response body bytes, by route";
    COMPRESSION_RATIO: Histogram(RATIO_BUCKETS) "normd_compression_ratio" {encoding}, None, Seed::No,
        "Canonical bytes / output bytes of /norm, by encoding";
    SCHEMA_FAILURES_TOTAL: Counter "normd_schema_failures_total" {schema}, None, Seed::No,
        "Documents that failed validation, by schema";
    SCHEMA_RELOADS_TOTAL: Counter "normd_schema_reloads_total" {result}, None, Seed::Each(Outcome::NAMES),
        "Schema set reloads, by result";
    PROBE_FAILURES_TOTAL: Counter "normd_probe_failures_total" {listener}, None, Seed::Each(Listener::PROBED),
        "Failed self-probes, by listener";
    FLAG_RELOADS_TOTAL: Counter "normd_flag_reloads_total" {result}, None, Seed::Each(Outcome::NAMES),
        "Flags file reloads, by result";
    FLAG_ENABLED: Gauge "normd_flag_enabled" {endpoint}, None, Seed::No,
        "1 when the endpoint's flag is enabled";
    FLAG_ROLLOUT_PERCENT: Gauge "normd_flag_rollout_percent" {endpoint}, None, Seed::No,
        "The endpoint's rollout_percent";
    FLAG_SHADOW_PERCENT: Gauge "normd_flag_shadow_percent" {endpoint}, None, Seed::No,
        "The endpoint's shadow_percent";
    READY: Gauge "normd_ready" {}, None, Seed::No,
        "1 when /readyz answers 200 (all checks)";
    CHECK_OK: Gauge "normd_check_ok" {check}, None, Seed::No,
        "1 when the named readiness check passes (the kubelet's probe excludes memory)";
    DRAINING: Gauge "normd_draining" {}, None, Seed::No,
        "1 once a shutdown signal arrived";
    MEMORY_SHEDDING: Gauge "normd_memory_shedding" {}, None, Seed::No,
        "1 while new work is refused for memory pressure";
    MEMORY_USAGE_BYTES: Gauge "normd_memory_usage_bytes" {}, BYTES, Seed::No,
        "Memory compared against the watermarks";
    MEMORY_LIMIT_BYTES: Gauge "normd_memory_limit_bytes" {}, BYTES, Seed::No,
        "Memory limit (0 = none known)";
    MEMORY_READY_WATERMARK_BYTES: Gauge "normd_memory_ready_watermark_bytes" {}, BYTES, Seed::No,
        "Usage at which readiness fails";
    MEMORY_SHED_WATERMARK_BYTES: Gauge "normd_memory_shed_watermark_bytes" {}, BYTES, Seed::No,
        "Usage at which new work is shed";
    MEMORY_RELEASES_TOTAL: Counter "normd_memory_releases_total" {}, None, Seed::Plain,
        "Times normd asked its allocator to return freed memory to the OS (over a memory watermark)";
    DEADLINE_BUDGET_SECONDS: Gauge "normd_deadline_budget_seconds" {}, SECONDS, Seed::No,
        "Default per-call budget";
    BUILD_INFO: Gauge "normd_build_info" {version, commit}, None, Seed::No,
        "Build information";
}

/// Latency buckets: 50 µs to 1 s, dense around the 20 ms default budget.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const RATIO_BUCKETS: &[f64] = &[1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0];

/// A label's values as an enum: `as_str` is what is emitted, `NAMES` what is seeded.
macro_rules! label_values {
    ($(#[$doc:meta])* enum $ty:ident { $($variant:ident = $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $ty {
            $($variant,)+
        }

        // Not every label uses every helper.
        #[allow(dead_code)]
        impl $ty {
            pub(crate) const NAMES: &'static [&'static str] = &[$($value,)+];

            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $value,)+
                }
            }

            /// The value named `s`, if it is one.
            pub(crate) fn parse(s: &str) -> Option<Self> {
                match s {
                    $($value => Some($ty::$variant),)+
                    _ => None,
                }
            }

            /// `s` checked against the values: one it does not know would not be seeded,
            /// so debug builds fail on it; release builds emit it as given.
            pub(crate) fn known(s: &'static str) -> &'static str {
                match Self::parse(s) {
                    Some(v) => v.as_str(),
                    None => {
                        debug_assert!(false, "{s:?} is not one of {:?}", Self::NAMES);
                        s
                    }
                }
            }
        }
    };
}

label_values! {
    /// Why a call was answered 429/503/504 instead of a result (`normd_rejections_total`).
    enum Rejection {
        Overloaded = "overloaded",
        Deadline = "deadline",
        MemoryPressure = "memory_pressure",
        Disabled = "disabled",
        Draining = "draining",
        NotReady = "not_ready",
    }
}

label_values! {
    /// The listeners, as the `listener` label names them.
    enum Listener {
        Unix = "unix",
        Tcp = "tcp",
        Metrics = "metrics",
    }
}

impl Listener {
    /// The listeners the self-probe sends its canary through (the work listeners).
    const PROBED: &'static [&'static str] = &[Listener::Unix.as_str(), Listener::Tcp.as_str()];
}

label_values! {
    /// Why a queued call was skipped before it started (`normd_cancelled_before_start_total`).
    enum Cancel {
        ClientLeft = "client_left",
        Deadline = "deadline",
    }
}

label_values! {
    /// The result of a reload (`normd_schema_reloads_total`, `normd_flag_reloads_total`).
    enum Outcome {
        Ok = "ok",
        Error = "error",
    }
}

impl Outcome {
    fn of(ok: bool) -> Self {
        if ok {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    sampled: Sampled,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Installs the process-wide recorder (idempotent: tests build many apps in one process).
pub fn install_metrics() {
    EXPORTER.get_or_init(|| {
        let builder = METRICS
            .iter()
            .try_fold(PrometheusBuilder::new(), |b, m| match m.kind {
                Kind::Histogram(buckets) => {
                    b.set_buckets_for_metric(Matcher::Full(m.name.into()), buckets)
                }
                Kind::Counter | Kind::Gauge => Ok(b),
            });
        let handle = match builder.and_then(|b| b.install_recorder()) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "metrics recorder not installed");
                return None;
            }
        };
        let process = metrics_process::Collector::default();
        process.describe();
        describe_and_seed();
        build_info();
        Some(Exporter {
            handle,
            process,
            sampled: Sampled::new(),
        })
    });
}

/// Describes every metric of [`METRICS`] and creates its seeded series at 0.
fn describe_and_seed() {
    metrics::with_recorder(|r| {
        for m in METRICS {
            let (name, help) = (
                KeyName::from_const_str(m.name),
                SharedString::const_str(m.help),
            );
            match m.kind {
                Kind::Counter => r.describe_counter(name, m.unit, help),
                Kind::Gauge => r.describe_gauge(name, m.unit, help),
                Kind::Histogram(_) => r.describe_histogram(name, m.unit, help),
            }
        }
    });
    for m in METRICS {
        match m.seed {
            Seed::No => {}
            Seed::Plain => counter!(m.name).increment(0),
            Seed::Each(values) => {
                for &value in values {
                    counter!(m.name, m.labels[0] => value).increment(0);
                }
            }
        }
    }
}

fn build_info() {
    let commit = option_env!("NORMD_COMMIT").unwrap_or("unknown");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => commit).set(1.0);
}

/// The Prometheus text exposition, process metrics refreshed first.
pub(crate) fn render() -> String {
    match EXPORTER.get() {
        Some(Some(e)) => {
            e.process.collect();
            exact_cpu_seconds(e.handle.render())
        }
        _ => String::new(),
    }
}

/// metrics-process records `process_cpu_seconds_total` in whole seconds, a staircase
/// under `rate()` for a sidecar using a fraction of a core: its sample line is rewritten
/// with the exact value (kernel ticks of 10 ms); the series stays a counter.
fn exact_cpu_seconds(text: String) -> String {
    const NAME: &str = "process_cpu_seconds_total ";
    let Some(seconds) = process_cpu_seconds() else {
        return text;
    };
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.starts_with(NAME) {
            out.push_str(NAME);
            out.push_str(&seconds.to_string());
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// This process's user + system CPU time, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// Runs the exporter's histogram upkeep; called periodically so memory stays flat.
pub(crate) fn upkeep() {
    if let Some(Some(e)) = EXPORTER.get() {
        e.handle.run_upkeep();
    }
}

/// Handles of the series touched on every request, kept per thread: a handle is one
/// atomic update, where the `counter!`/`gauge!` macros build, hash and look up the key
/// on every call. Filled only once the recorder is installed (a handle taken before
/// would be a no-op forever); until then the calls go through the macros.
struct SeriesCache {
    requests: HashMap<(&'static str, u16, &'static str), Counter>,
    durations: HashMap<&'static str, Histogram>,
    bytes: HashMap<&'static str, (Counter, Counter)>,
    rejections: HashMap<&'static str, Counter>,
    queue_depth: Gauge,
    queue_wait: Histogram,
    jobs_inline: Counter,
    inflight_bytes: Gauge,
    inflight_requests: Gauge,
}

impl SeriesCache {
    fn new() -> Self {
        Self {
            requests: HashMap::new(),
            durations: HashMap::new(),
            bytes: HashMap::new(),
            rejections: HashMap::new(),
            queue_depth: gauge!(QUEUE_DEPTH),
            queue_wait: histogram!(QUEUE_WAIT_SECONDS),
            jobs_inline: counter!(JOBS_INLINE_TOTAL),
            inflight_bytes: gauge!(INFLIGHT_BYTES),
            inflight_requests: gauge!(INFLIGHT_REQUESTS),
        }
    }
}

thread_local! {
    static SERIES: RefCell<Option<SeriesCache>> = const { RefCell::new(None) };
}

fn with_series(update: impl FnOnce(&mut SeriesCache)) {
    if !matches!(EXPORTER.get(), Some(Some(_))) {
        // No recorder yet (or none at all): fresh handles, not cached.
        update(&mut SeriesCache::new());
        return;
    }
    SERIES.with_borrow_mut(|cache| update(cache.get_or_insert_with(SeriesCache::new)));
}

/// Handles of the gauges the 100 ms memory sampler and readiness publishing set, taken
/// once with the recorder rather than looked up on every tick.
struct Sampled {
    ready: Gauge,
    draining: Gauge,
    shedding: Gauge,
    usage: Gauge,
    limit: Gauge,
    ready_watermark: Gauge,
    shed_watermark: Gauge,
    checks: Mutex<HashMap<&'static str, Gauge>>,
}

impl Sampled {
    fn new() -> Self {
        Self {
            ready: gauge!(READY),
            draining: gauge!(DRAINING),
            shedding: gauge!(MEMORY_SHEDDING),
            usage: gauge!(MEMORY_USAGE_BYTES),
            limit: gauge!(MEMORY_LIMIT_BYTES),
            ready_watermark: gauge!(MEMORY_READY_WATERMARK_BYTES),
            shed_watermark: gauge!(MEMORY_SHED_WATERMARK_BYTES),
            checks: Mutex::new(HashMap::new()),
        }
    }
}

fn with_sampled(update: impl FnOnce(&Sampled)) {
    match EXPORTER.get() {
        Some(Some(e)) => update(&e.sampled),
        // No recorder yet (or none at all): fresh handles, not kept.
        _ => update(&Sampled::new()),
    }
}

pub fn request_done(route: &'static str, status: u16, code: &'static str, took: Duration) {
    with_series(|c| {
        c.requests
            .entry((route, status, code))
            .or_insert_with(|| {
                counter!(REQUESTS_TOTAL, "route" => route, "status" => status_label(status), "code" => code)
            })
            .increment(1);
        c.durations
            .entry(route)
            .or_insert_with(|| histogram!(REQUEST_DURATION_SECONDS, "route" => route))
            .record(took.as_secs_f64());
    });
}

/// Avoids formatting a status string per request for the common ones.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

pub fn bytes(route: &'static str, input: usize, output: usize) {
    with_series(|c| {
        let (bytes_in, bytes_out) = c.bytes.entry(route).or_insert_with(|| {
            (
                counter!(BYTES_IN_TOTAL, "route" => route),
                counter!(BYTES_OUT_TOTAL, "route" => route),
            )
        });
        bytes_in.increment(input as u64);
        bytes_out.increment(output as u64);
    });
}

pub fn compression(encoding: &'static str, canonical: usize, output: usize) {
    if output > 0 {
        histogram!(COMPRESSION_RATIO, "encoding" => encoding)
            .record(canonical as f64 / output as f64);
    }
}

pub(crate) fn rejection(reason: Rejection) {
    let reason = reason.as_str();
    with_series(|c| {
        c.rejections
            .entry(reason)
            .or_insert_with(|| counter!(REJECTIONS_TOTAL, "reason" => reason))
            .increment(1);
    });
}

/// Creates the failure series of every loaded schema at 0, so the first 422 shows up
/// in `increase()`.
pub(crate) fn schema_known(schema: &str) {
    counter!(SCHEMA_FAILURES_TOTAL, "schema" => schema.to_owned()).increment(0);
}

pub(crate) fn schema_failure(schema: &str) {
    counter!(SCHEMA_FAILURES_TOTAL, "schema" => schema.to_owned()).increment(1);
}

pub(crate) fn schema_reload(ok: bool) {
    counter!(SCHEMA_RELOADS_TOTAL, "result" => Outcome::of(ok).as_str()).increment(1);
}

pub(crate) fn memory_released() {
    counter!(MEMORY_RELEASES_TOTAL).increment(1);
}

/// `listener` is one of [`Listener::PROBED`].
pub(crate) fn probe_failure(listener: &'static str) {
    debug_assert!(
        Listener::PROBED.contains(&listener),
        "{listener:?} is not probed"
    );
    counter!(PROBE_FAILURES_TOTAL, "listener" => listener).increment(1);
}

pub(crate) fn flag_reload(ok: bool) {
    counter!(FLAG_RELOADS_TOTAL, "result" => Outcome::of(ok).as_str()).increment(1);
}

/// An endpoint's flag: whether it is enabled, its rollout and shadow percentages.
pub(crate) fn flag_state(endpoint: &'static str, enabled: bool, rollout: u8, shadow: u8) {
    gauge!(FLAG_ENABLED, "endpoint" => endpoint).set(if enabled { 1.0 } else { 0.0 });
    gauge!(FLAG_ROLLOUT_PERCENT, "endpoint" => endpoint).set(f64::from(rollout));
    gauge!(FLAG_SHADOW_PERCENT, "endpoint" => endpoint).set(f64::from(shadow));
}

pub fn queue_depth(n: usize) {
    with_series(|c| c.queue_depth.set(n as f64));
}

pub fn queue_wait(d: Duration) {
    with_series(|c| c.queue_wait.record(d.as_secs_f64()));
}

pub(crate) fn job_inline() {
    with_series(|c| c.jobs_inline.increment(1));
}

pub(crate) fn inflight_bytes(n: usize) {
    with_series(|c| c.inflight_bytes.set(n as f64));
}

pub fn inflight_requests(delta: f64) {
    with_series(|c| c.inflight_requests.increment(delta));
}

/// `listener` is one of [`Listener`]'s values, here and below.
pub(crate) fn open_connections(listener: &'static str, delta: f64) {
    gauge!(OPEN_CONNECTIONS, "listener" => Listener::known(listener)).increment(delta);
}

pub(crate) fn connection_evicted(listener: &'static str) {
    counter!(CONNECTIONS_EVICTED_TOTAL, "listener" => Listener::known(listener)).increment(1);
}

pub(crate) fn connection_refused(listener: &'static str) {
    counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => Listener::known(listener)).increment(1);
}

pub(crate) fn cancelled_before_start(client_left: bool) {
    let cause = if client_left {
        Cancel::ClientLeft
    } else {
        Cancel::Deadline
    };
    counter!(CANCELLED_TOTAL, "cause" => cause.as_str()).increment(1);
}

pub(crate) fn health_state(ready: bool, draining: bool, shedding: bool) {
    with_sampled(|g| {
        g.ready.set(flag(ready));
        g.draining.set(flag(draining));
        g.shedding.set(flag(shedding));
    });
}

pub(crate) fn check_state(check: &'static str, ok: bool) {
    with_sampled(|g| {
        let mut checks = g.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks
            .entry(check)
            .or_insert_with(|| gauge!(CHECK_OK, "check" => check))
            .set(flag(ok));
    });
}

pub(crate) fn memory(usage: u64, limit: Option<u64>, ready_wm: Option<u64>, shed_wm: Option<u64>) {
    with_sampled(|g| {
        g.usage.set(usage as f64);
        g.limit.set(limit.unwrap_or(0) as f64);
        g.ready_watermark.set(ready_wm.unwrap_or(0) as f64);
        g.shed_watermark.set(shed_wm.unwrap_or(0) as f64);
    });
}

pub(crate) fn deadline_budget(d: Duration) {
    gauge!(DEADLINE_BUDGET_SECONDS).set(d.as_secs_f64());
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use metrics::{Key, Metadata, Recorder};

    use super::*;

    /// Records which series each recording function registers.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(Kind, Key)>>);

    impl Seen {
        fn push(&self, kind: Kind, key: &Key) {
            self.0.lock().unwrap().push((kind, key.clone()));
        }
    }

    impl Recorder for Seen {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.push(Kind::Counter, key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.push(Kind::Gauge, key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.push(Kind::Histogram(&[]), key);
            Histogram::noop()
        }
    }

    fn same_kind(a: Kind, b: Kind) -> bool {
        std::mem::discriminant(&a) == std::mem::discriminant(&b)
    }

    /// The metric names in the README's metrics table: backticked `normd_…` names, a
    /// trailing `{labels}` dropped and an inner `{a,b}` expanded.
    fn readme_metrics() -> HashSet<String> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Metrics and logs")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the README's metrics section");
        let mut names = HashSet::new();
        for token in table.split('`').skip(1).step_by(2) {
            let Some(name) = token.strip_prefix("normd_") else {
                continue;
            };
            let name = match name.rfind('{') {
                Some(i) if name.ends_with('}') && !name[..i].ends_with('_') => &name[..i],
                _ => name,
            };
            match (name.find('{'), name.find('}')) {
                (Some(open), Some(close)) => {
                    for part in name[open + 1..close].split(',') {
                        let expanded = format!("{}{part}{}", &name[..open], &name[close + 1..]);
                        names.insert(format!("normd_{expanded}"));
                    }
                }
                _ => {
                    names.insert(format!("normd_{name}"));
                }
            }
        }
        names
    }

    #[test]
    fn the_readme_names_every_metric_and_no_other() {
        let table: HashSet<String> = METRICS.iter().map(|m| m.name.to_owned()).collect();
        let readme = readme_metrics();
        let missing: Vec<_> = table.difference(&readme).collect();
        let unknown: Vec<_> = readme.difference(&table).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README metrics table: missing {missing:?}, unknown {unknown:?}"
        );
    }

    #[test]
    fn the_table_is_well_formed() {
        let names: HashSet<&str> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), METRICS.len(), "metric names are unique");
        for m in METRICS {
            assert!(m.name.starts_with("normd_"), "{}", m.name);
            assert!(!m.help.is_empty(), "{}", m.name);
            if m.seed != Seed::No {
                assert_eq!(
                    m.kind,
                    Kind::Counter,
                    "{}: only counters are seeded at 0",
                    m.name
                );
            }
        }
    }

    /// Every series a recording function creates is in [`METRICS`], with that kind, and
    /// a seeded label only takes seeded values.
    #[test]
    fn recording_follows_the_table() {
        let seen = Arc::new(Seen::default());
        metrics::with_local_recorder(&*seen, || {
            describe_and_seed();
            build_info();
            let d = Duration::from_millis(3);
            request_done("norm", 200, "ok", d);
            bytes("norm", 1, 2);
            compression("gzip", 10, 5);
            for reason in Rejection::NAMES {
                rejection(Rejection::parse(reason).expect("a rejection"));
            }
            schema_known("s");
            schema_failure("s");
            schema_reload(true);
            schema_reload(false);
            memory_released();
            for listener in Listener::PROBED {
                probe_failure(listener);
            }
            flag_reload(true);
            flag_reload(false);
            flag_state("norm", true, 100, 0);
            queue_depth(1);
            queue_wait(d);
            inflight_bytes(1);
            inflight_requests(1.0);
            for listener in Listener::NAMES {
                open_connections(listener, 1.0);
                connection_evicted(listener);
                connection_refused(listener);
            }
            cancelled_before_start(true);
            cancelled_before_start(false);
            health_state(true, false, false);
            check_state("memory", true);
            memory(1, Some(2), Some(3), Some(4));
            deadline_budget(d);
        });
        let seen = seen.0.lock().unwrap();
        for (kind, key) in seen.iter() {
            let m = METRICS.iter().find(|m| m.name == key.name());
            let m = m.unwrap_or_else(|| panic!("{} is not in METRICS", key.name()));
            assert!(same_kind(m.kind, *kind), "{} recorded as {kind:?}", m.name);
            let labels: Vec<&str> = key.labels().map(|l| l.key()).collect();
            assert_eq!(labels, m.labels, "labels of {}", m.name);
            if let Seed::Each(values) = m.seed {
                for l in key.labels() {
                    assert!(values.contains(&l.value()), "{} {}", m.name, l.value());
                }
            }
        }
        let recorded: HashSet<&str> = seen.iter().map(|(_, k)| k.name()).collect();
        for m in METRICS {
            assert!(recorded.contains(m.name), "no function records {}", m.name);
        }
    }

    #[test]
    fn label_values_round_trip() {
        fn check<T: Copy>(
            names: &[&'static str],
            parse: fn(&str) -> Option<T>,
            as_str: fn(T) -> &'static str,
        ) {
            for &name in names {
                assert_eq!(parse(name).map(as_str), Some(name));
            }
        }
        check(Rejection::NAMES, Rejection::parse, Rejection::as_str);
        check(Listener::NAMES, Listener::parse, Listener::as_str);
        check(Cancel::NAMES, Cancel::parse, Cancel::as_str);
        check(Outcome::NAMES, Outcome::parse, Outcome::as_str);
        assert_eq!(Rejection::known("not_ready"), "not_ready");
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "is not one of")]
    fn an_unknown_label_value_fails_in_debug_builds() {
        Rejection::known("bored");
    }

    #[test]
    fn the_cpu_counter_is_exact_not_whole_seconds() {
        // Burn a little CPU (bounded) so the value has a fraction to show.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while process_cpu_seconds().is_some_and(|s| s < 0.05)
            && start.elapsed() < Duration::from_secs(10)
        {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let text =
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0\nother 1\n";
        let out = exact_cpu_seconds(text.to_owned());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# TYPE process_cpu_seconds_total counter");
        assert_eq!(lines[2], "other 1");
        let value: f64 = lines[1]
            .strip_prefix("process_cpu_seconds_total ")
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!(value >= 0.05, "{value}");
        assert!(out.ends_with('\n'));
    }
}
