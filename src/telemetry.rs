//! Metric names (defined once, here), the Prometheus recorder, the JSON log writer, the
//! per-request access-log line and trace context.
//!
//! Owns: every series name and label set normd exports, and the log format.
//! Never: blocks the request path. Metrics are atomic updates; log lines go through a
//! bounded, lossy, non-blocking writer (a full buffer drops lines, never requests).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

pub const REQUESTS_TOTAL: &str = "normd_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "normd_request_duration_seconds";
pub const QUEUE_WAIT_SECONDS: &str = "normd_queue_wait_seconds";
pub const INFLIGHT_REQUESTS: &str = "normd_inflight_requests";
pub const QUEUE_DEPTH: &str = "normd_queue_depth";
pub const INFLIGHT_BYTES: &str = "normd_inflight_bytes";
pub const OPEN_CONNECTIONS: &str = "normd_open_connections";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "normd_connections_refused_total";
pub const CONNECTIONS_EVICTED_TOTAL: &str = "normd_connections_evicted_total";
pub const REJECTIONS_TOTAL: &str = "normd_rejections_total";
pub const BYTES_IN_TOTAL: &str = "normd_bytes_in_total";
pub const BYTES_OUT_TOTAL: &str = "normd_bytes_out_total";
pub const COMPRESSION_RATIO: &str = "normd_compression_ratio";
pub const SCHEMA_FAILURES_TOTAL: &str = "normd_schema_failures_total";
pub const SCHEMA_RELOADS_TOTAL: &str = "normd_schema_reloads_total";
pub const PROBE_FAILURES_TOTAL: &str = "normd_probe_failures_total";
pub const FLAG_RELOADS_TOTAL: &str = "normd_flag_reloads_total";
pub const FLAG_ENABLED: &str = "normd_flag_enabled";
pub const FLAG_ROLLOUT_PERCENT: &str = "normd_flag_rollout_percent";
pub const FLAG_SHADOW_PERCENT: &str = "normd_flag_shadow_percent";
pub const READY: &str = "normd_ready";
pub const CHECK_OK: &str = "normd_check_ok";
pub const DRAINING: &str = "normd_draining";
pub const MEMORY_SHEDDING: &str = "normd_memory_shedding";
pub const MEMORY_USAGE_BYTES: &str = "normd_memory_usage_bytes";
pub const MEMORY_LIMIT_BYTES: &str = "normd_memory_limit_bytes";
pub const MEMORY_READY_WATERMARK_BYTES: &str = "normd_memory_ready_watermark_bytes";
pub const MEMORY_SHED_WATERMARK_BYTES: &str = "normd_memory_shed_watermark_bytes";
pub const DEADLINE_BUDGET_SECONDS: &str = "normd_deadline_budget_seconds";
pub const CANCELLED_TOTAL: &str = "normd_cancelled_before_start_total";
pub const BUILD_INFO: &str = "normd_build_info";
pub const MEMORY_RELEASES_TOTAL: &str = "normd_memory_releases_total";

/// Latency buckets: 50 µs to 1 s, dense around the 20 ms default budget.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const RATIO_BUCKETS: &[f64] = &[1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0];

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Installs the process-wide recorder (idempotent: tests build many apps in one process).
pub fn install_metrics() {
    EXPORTER.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(COMPRESSION_RATIO.into()), RATIO_BUCKETS)
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
        describe();
        // Series that alert on increase() must exist at 0 before their first event.
        for result in ["ok", "error"] {
            counter!(FLAG_RELOADS_TOTAL, "result" => result).increment(0);
            counter!(SCHEMA_RELOADS_TOTAL, "result" => result).increment(0);
        }
        for reason in ["overloaded", "deadline", "memory_pressure", "disabled", "draining"] {
            counter!(REJECTIONS_TOTAL, "reason" => reason).increment(0);
        }
        for cause in ["client_left", "deadline"] {
            counter!(CANCELLED_TOTAL, "cause" => cause).increment(0);
        }
        counter!(MEMORY_RELEASES_TOTAL).increment(0);
        for listener in ["unix", "tcp"] {
            counter!(PROBE_FAILURES_TOTAL, "listener" => listener).increment(0);
            counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => listener).increment(0);
            counter!(CONNECTIONS_EVICTED_TOTAL, "listener" => listener).increment(0);
        }
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => option_env!("NORMD_COMMIT").unwrap_or("unknown")).set(1.0);
        Some(Exporter { handle, process })
    });
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by route, status and code"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receipt to response, by route"
    );
    describe_histogram!(
        QUEUE_WAIT_SECONDS,
        Unit::Seconds,
        "Time admitted work waited for a CPU worker"
    );
    describe_gauge!(INFLIGHT_REQUESTS, "Work requests being answered now");
    describe_gauge!(QUEUE_DEPTH, "Calls admitted and not yet started");
    describe_gauge!(
        INFLIGHT_BYTES,
        Unit::Bytes,
        "Request bytes held by calls in flight"
    );
    describe_gauge!(OPEN_CONNECTIONS, "Open client connections, by listener");
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections answered 429 (or closed) past the connection limit, by listener"
    );
    describe_counter!(
        CONNECTIONS_EVICTED_TOTAL,
        "Idle keep-alive connections closed at the connection limit to serve a new one, by listener"
    );
    describe_counter!(
        REJECTIONS_TOTAL,
        "Calls answered 429/503/504 instead of a result, by reason"
    );
    describe_counter!(
        BYTES_IN_TOTAL,
        Unit::Bytes,
        "Request body bytes as received, by route"
    );
    describe_counter!(
        BYTES_OUT_TOTAL,
        Unit::Bytes,
        "Response body bytes, by route"
    );
    describe_histogram!(
        COMPRESSION_RATIO,
        "Canonical bytes / output bytes of /norm, by encoding"
    );
    describe_counter!(
        SCHEMA_FAILURES_TOTAL,
        "Documents that failed validation, by schema"
    );
    describe_counter!(SCHEMA_RELOADS_TOTAL, "Schema set reloads, by result");
    describe_counter!(PROBE_FAILURES_TOTAL, "Failed self-probes, by listener");
    describe_counter!(FLAG_RELOADS_TOTAL, "Flags file reloads, by result");
    describe_gauge!(FLAG_ENABLED, "1 when the endpoint's flag is enabled");
    describe_gauge!(FLAG_ROLLOUT_PERCENT, "The endpoint's rollout_percent");
    describe_gauge!(FLAG_SHADOW_PERCENT, "The endpoint's shadow_percent");
    describe_gauge!(READY, "1 when /readyz answers 200 (all checks)");
    describe_gauge!(
        CHECK_OK,
        "1 when the named readiness check passes (the kubelet's probe excludes memory)"
    );
    describe_gauge!(DRAINING, "1 once a shutdown signal arrived");
    describe_gauge!(
        MEMORY_SHEDDING,
        "1 while new work is refused for memory pressure"
    );
    describe_gauge!(
        MEMORY_USAGE_BYTES,
        Unit::Bytes,
        "Memory compared against the watermarks"
    );
    describe_gauge!(
        MEMORY_LIMIT_BYTES,
        Unit::Bytes,
        "Memory limit (0 = none known)"
    );
    describe_gauge!(
        MEMORY_READY_WATERMARK_BYTES,
        Unit::Bytes,
        "Usage at which readiness fails"
    );
    describe_gauge!(
        MEMORY_SHED_WATERMARK_BYTES,
        Unit::Bytes,
        "Usage at which new work is shed"
    );
    describe_gauge!(
        DEADLINE_BUDGET_SECONDS,
        Unit::Seconds,
        "Default per-call budget"
    );
    describe_counter!(
        CANCELLED_TOTAL,
        "Queued calls skipped because their caller left or their budget ran out"
    );
    describe_gauge!(BUILD_INFO, "Build information");
    describe_counter!(
        MEMORY_RELEASES_TOTAL,
        "Times normd asked its allocator to return freed memory to the OS (over a memory watermark)"
    );
}

/// The Prometheus text exposition, process metrics refreshed first.
pub fn render() -> String {
    match EXPORTER.get() {
        Some(Some(e)) => {
            e.process.collect();
            exact_cpu_seconds(e.handle.render())
        }
        _ => String::new(),
    }
}

/// metrics-process feeds `process_cpu_seconds_total` through the `metrics` crate's
/// integer counters, so it moved in whole seconds and `rate()` over it was a staircase
/// for a sidecar that uses a fraction of a core. Its sample line is rewritten with the
/// exact value (the kernel counts in ticks of 10 ms); the series stays a counter.
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
pub fn upkeep() {
    if let Some(Some(e)) = EXPORTER.get() {
        e.handle.run_upkeep();
    }
}

/// Handles of the series touched on every request, kept per thread. Looking a series up
/// through the `counter!`/`gauge!` macros builds its key, hashes name and labels and
/// reads the registry's map on every call; a handle is one atomic update. The cache is
/// only filled once the recorder is installed (a handle taken before would be a no-op
/// forever); until then the calls go through the macros.
struct SeriesCache {
    requests: HashMap<(&'static str, u16, &'static str), Counter>,
    durations: HashMap<&'static str, Histogram>,
    bytes: HashMap<&'static str, (Counter, Counter)>,
    rejections: HashMap<&'static str, Counter>,
    queue_depth: Gauge,
    queue_wait: Histogram,
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

pub fn rejection(reason: &'static str) {
    with_series(|c| {
        c.rejections
            .entry(reason)
            .or_insert_with(|| counter!(REJECTIONS_TOTAL, "reason" => reason))
            .increment(1);
    });
}

/// Creates the failure series of every loaded schema at 0, so the first 422 shows up
/// in `increase()`.
pub fn schema_known(schema: &str) {
    counter!(SCHEMA_FAILURES_TOTAL, "schema" => schema.to_owned()).increment(0);
}

pub fn schema_failure(schema: &str) {
    counter!(SCHEMA_FAILURES_TOTAL, "schema" => schema.to_owned()).increment(1);
}

pub fn schema_reload(ok: bool) {
    counter!(SCHEMA_RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
}

pub fn memory_released() {
    counter!(MEMORY_RELEASES_TOTAL).increment(1);
}

pub fn probe_failure(listener: &'static str) {
    counter!(PROBE_FAILURES_TOTAL, "listener" => listener).increment(1);
}

pub fn flag_reload(ok: bool) {
    counter!(FLAG_RELOADS_TOTAL, "result" => if ok { "ok" } else { "error" }).increment(1);
}

pub fn flag_state(endpoint: &'static str, flag: crate::flags::Flag) {
    gauge!(FLAG_ENABLED, "endpoint" => endpoint).set(if flag.enabled { 1.0 } else { 0.0 });
    gauge!(FLAG_ROLLOUT_PERCENT, "endpoint" => endpoint).set(f64::from(flag.rollout_percent));
    gauge!(FLAG_SHADOW_PERCENT, "endpoint" => endpoint).set(f64::from(flag.shadow_percent));
}

pub fn queue_depth(n: usize) {
    with_series(|c| c.queue_depth.set(n as f64));
}

pub fn queue_wait(d: Duration) {
    with_series(|c| c.queue_wait.record(d.as_secs_f64()));
}

pub fn inflight_bytes(n: usize) {
    with_series(|c| c.inflight_bytes.set(n as f64));
}

pub fn inflight_requests(delta: f64) {
    with_series(|c| c.inflight_requests.increment(delta));
}

pub fn open_connections(listener: &'static str, delta: f64) {
    gauge!(OPEN_CONNECTIONS, "listener" => listener).increment(delta);
}

pub fn connection_evicted(listener: &'static str) {
    counter!(CONNECTIONS_EVICTED_TOTAL, "listener" => listener).increment(1);
}

pub fn connection_refused(listener: &'static str) {
    counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => listener).increment(1);
}

pub fn cancelled_before_start(client_left: bool) {
    counter!(CANCELLED_TOTAL, "cause" => if client_left { "client_left" } else { "deadline" })
        .increment(1);
}

pub fn health_state(ready: bool, draining: bool, shedding: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    gauge!(DRAINING).set(if draining { 1.0 } else { 0.0 });
    gauge!(MEMORY_SHEDDING).set(if shedding { 1.0 } else { 0.0 });
}

pub fn check_state(check: &'static str, ok: bool) {
    gauge!(CHECK_OK, "check" => check).set(if ok { 1.0 } else { 0.0 });
}

pub fn memory(usage: u64, limit: Option<u64>, ready_wm: Option<u64>, shed_wm: Option<u64>) {
    gauge!(MEMORY_USAGE_BYTES).set(usage as f64);
    gauge!(MEMORY_LIMIT_BYTES).set(limit.unwrap_or(0) as f64);
    gauge!(MEMORY_READY_WATERMARK_BYTES).set(ready_wm.unwrap_or(0) as f64);
    gauge!(MEMORY_SHED_WATERMARK_BYTES).set(shed_wm.unwrap_or(0) as f64);
}

pub fn deadline_budget(d: Duration) {
    gauge!(DEADLINE_BUDGET_SECONDS).set(d.as_secs_f64());
}

// ---------------------------------------------------------------------------------
// Trace context

/// The trace id of a request: W3C `traceparent`, else `X-Request-Id`, else generated.
pub fn trace_id(traceparent: Option<&str>, request_id: Option<&str>) -> String {
    if let Some(id) = traceparent.and_then(parse_traceparent) {
        return id.to_owned();
    }
    if let Some(rid) = request_id {
        let rid = rid.trim();
        if !rid.is_empty() && rid.len() <= 128 && rid.bytes().all(|b| b.is_ascii_graphic()) {
            return rid.to_owned();
        }
    }
    format!("{:032x}", fastrand::u128(1..))
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; an all-zero id is invalid.
fn parse_traceparent(tp: &str) -> Option<&str> {
    let mut parts = tp.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2)
    {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    // Version 00 has exactly these four fields; a later version may append more
    // (W3C Trace Context §3.2.4: parse what this version knows, ignore the rest).
    if version == "00" && parts.next().is_some() {
        return None;
    }
    Some(trace)
}

// ---------------------------------------------------------------------------------
// Logs

/// One access-log line: `{ts, level, trace_id, route, status, code, in_bytes, out_bytes, millis}`.
#[allow(clippy::too_many_arguments)]
pub fn access_log(
    sample: f64,
    trace_id: &str,
    route: &'static str,
    status: u16,
    code: Option<&'static str>,
    in_bytes: usize,
    out_bytes: usize,
    took: Duration,
) {
    // Microsecond resolution: more digits are noise, and they make every line longer.
    let millis = took.as_micros() as f64 / 1000.0;
    match code {
        Some(code) if status >= 500 => tracing::warn!(
            target: "normd::access", trace_id, route, status, code, in_bytes, out_bytes, millis,
            "request"
        ),
        Some(code) => tracing::info!(
            target: "normd::access", trace_id, route, status, code, in_bytes, out_bytes, millis,
            "request"
        ),
        None => {
            if sample < 1.0 && fastrand::f64() >= sample {
                return;
            }
            tracing::info!(
                target: "normd::access", trace_id, route, status, in_bytes, out_bytes, millis,
                "request"
            )
        }
    }
}

/// Keeps the log writer's worker alive; dropping it flushes what is buffered.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Installs JSON logging to stderr at `level`. Lines past the 2048-line buffer are
/// dropped (and the writer counts them) rather than blocking a request.
pub fn init_logging(level: &str) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        // 2048 lines: the queue is allocated up front (32 B a slot), and the buffered
        // writer drains a burst in one write, so a deeper queue only costs idle RSS.
        .buffered_lines_limit(2048)
        .finish(BatchedStderr {
            out: std::io::BufWriter::with_capacity(64 << 10, std::io::stderr()),
        });
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(JsonLines {
            writer: std::sync::Mutex::new(Box::new(writer)),
        })
        .try_init();
    LogGuard(installed.ok().map(|()| guard))
}

/// Replaces the default panic message with one JSON `error` line (thread, location,
/// message). Two reasons: the default hook writes multi-line text into the JSON log
/// stream, and with `RUST_BACKTRACE` set in the environment it resolves a backtrace on
/// the panicking worker, which in a stripped binary held the worker for ~100 ms, so the
/// call that panicked (and the next one queued behind it) answered 504 instead of 500.
/// The panic is still caught where it was before (the pool answers 500 and goes on).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location,
            panic = message,
            "panic"
        );
    }));
}

/// How long the log writer thread rests after writing out what it had queued.
const LOG_BATCH_PAUSE: Duration = Duration::from_millis(5);

/// stderr as the log writer thread sees it: buffered, and pausing after each flush.
/// tracing-appender's thread flushes its writer whenever it has drained its queue, then
/// blocks on the queue again, so under load every new line could wake it: a futex wake
/// and a context switch on the CPU that serves requests. Resting a few milliseconds
/// after each flush lets the next lines gather in the queue (2048 lines hold 5 ms of
/// 400 k lines/s), so a burst costs one wake-up and one write(2).
struct BatchedStderr {
    out: std::io::BufWriter<std::io::Stderr>,
}

impl Write for BatchedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.out.flush();
        std::thread::sleep(LOG_BATCH_PAUSE);
        flushed
    }
}

/// A minimal JSON-lines layer: `ts` and `level` first, then the event's fields flat, in
/// the order the event names them (`message` is written as `msg`).
/// tracing-subscriber's JSON formatter nests fields and names the time `timestamp`; the
/// contract asks for flat `{ts, level, ...}`. Lines are written straight into a reused
/// per-thread buffer (no intermediate map): the access log runs once per request on the
/// I/O thread, and under a flood of refusals it is a large share of their cost.
struct JsonLines {
    writer: std::sync::Mutex<Box<dyn Write + Send>>,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes each field as `,"name":value` after the opening members.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
    /// Writing JSON into a `Vec` cannot fail (non-finite floats become `null`).
    fn value<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        let _ = serde_json::to_writer(&mut *self.0, value);
    }
}

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        self.value(&format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.value(value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.value(&value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.value(&value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        self.value(&value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.value(&value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        self.value(&value.to_string());
    }
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.extend_from_slice(b"{\"ts\":\"");
            let _ = time::OffsetDateTime::now_utc()
                .format_into(line, &time::format_description::well_known::Rfc3339);
            let level = match *event.metadata().level() {
                Level::ERROR => "error",
                Level::WARN => "warn",
                Level::INFO => "info",
                Level::DEBUG => "debug",
                Level::TRACE => "trace",
            };
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(level.as_bytes());
            line.push(b'"');
            event.record(&mut JsonFields(line));
            line.extend_from_slice(b"}\n");
            if let Ok(mut w) = self.writer.lock() {
                let _ = w.write_all(line);
            }
            // A rare huge line (a long error) must not pin its buffer for the thread's life.
            if line.capacity() > 64 << 10 {
                *line = Vec::new();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_prefers_traceparent_then_request_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(Some(tp), Some("rid")),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(Some("garbage"), Some("rid-1")), "rid-1");
        assert_eq!(
            trace_id(
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
                None
            )
            .len(),
            32
        );
        let generated = trace_id(None, Some("has space"));
        assert_eq!(generated.len(), 32);
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
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

    /// W3C Trace Context: version 00 has exactly four fields; later versions may add
    /// fields after the flags, which a version-00 parser ignores.
    #[test]
    fn traceparent_fields_follow_the_version() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let tp = |s: &str| parse_traceparent(s).map(str::to_owned);
        assert_eq!(
            tp(&format!("00-{trace}-00f067aa0ba902b7-01")),
            Some(trace.into())
        );
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7-01-extra")), None);
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7-01-")), None);
        assert_eq!(
            tp(&format!("01-{trace}-00f067aa0ba902b7-01-extra")),
            Some(trace.into())
        );
        assert_eq!(tp(&format!("ff-{trace}-00f067aa0ba902b7-01")), None);
        assert_eq!(
            tp(&format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase())),
            None
        );
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7")), None);
    }
}
