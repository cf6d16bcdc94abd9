//! JSON-lines logs on stderr, the per-request access-log line and the panic hook.

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// One access-log line: `{ts, level, trace_id, route, status, code, in_bytes, out_bytes, millis}`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn access_log(
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
/// message): the default hook writes multi-line text into the log stream, and resolves
/// a backtrace on the worker when `RUST_BACKTRACE` is set (README: Choices made).
/// The panic is still caught where it was (the pool answers 500 and goes on).
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
/// The writer thread flushes whenever its queue is empty, so under load every line
/// could wake it (a futex wake and a context switch on a serving CPU); resting after a
/// flush lets lines gather, so a burst costs one wake-up and one write(2).
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
/// the order the event names them (`message` is written as `msg`); tracing-subscriber's
/// JSON formatter nests fields and names the time `timestamp`. Lines are built in a
/// reused per-thread buffer: the access log runs once per request on the I/O thread.
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
