//! Helpers of `process.rs` and `ops.rs`, on top of `common`: a Prometheus text parser,
//! held requests (a head with a Content-Length and no body yet, which holds one
//! admission-queue slot), a CPU-heavy blocker that keeps the single worker busy until
//! its connection is dropped, readiness reads, and a causal wait for signal handlers.
//!
//! Everything here waits on an observable state of normd (a metric, a file, a kernel
//! flag), never on a sleep.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    json, parse_raw_response, poll_until, raw_exchange, Normd, RawTarget, Reply, HTTP_TIMEOUT,
};

/// Bound on every wait for a state change that normd makes on its own.
pub const WAIT: Duration = Duration::from_secs(30);

// -------------------------------------------------------------------------------------
// Prometheus text exposition

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text format (version 0.0.4): comments and blank lines are skipped, every
/// other line must be `name{label="value",...} value [timestamp]`.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_sample(line).map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?);
    }
    Ok(out)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return Err("no metric name".into());
    }
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let consumed = loop {
            while chars.next_if(|&(_, c)| c == ' ' || c == ',').is_some() {}
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                break start + 1;
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|&(_, c)| is_name_char(c, key.is_empty())) {
                key.push(c);
            }
            if key.is_empty() || key.contains(':') {
                return Err(format!("bad label name at byte {start}"));
            }
            if chars.next().map(|(_, c)| c) != Some('=') {
                return Err(format!("label {key}: expected '='"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: expected '\"'"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("label {key}: unterminated value")),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        other => return Err(format!("label {key}: bad escape {other:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            match chars.peek() {
                Some(&(_, ',')) | Some(&(_, '}')) => {}
                _ => return Err(format!("label {key}: expected ',' or '}}'")),
            }
        };
        rest = &after[consumed..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected a space before the value")?;
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// A sample value or an `le` bound: a float, `+Inf`, `-Inf` or `NaN`.
pub fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = parse_prometheus(text).unwrap_or_else(|e| panic!("/metrics: {e}\n{text}"));
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the matching samples; 0 when there are none (a counter not yet touched).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether a sample of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// `# TYPE name kind` for `name`, if declared.
    pub fn type_of(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let mut f = l.strip_prefix("# TYPE ")?.split_whitespace();
            (f.next()? == name).then(|| f.next().map(str::to_owned))?
        })
    }
}

/// The `--metrics-listen` address from the "normd serving" log line.
pub fn metrics_addr(n: &Normd) -> std::net::SocketAddr {
    n.log_json()
        .iter()
        .find(|v| v["msg"] == "normd serving")
        .and_then(|v| v["metrics_listen"].as_str().map(str::to_owned))
        .expect("metrics_listen in the serving line")
        .parse()
        .expect("metrics listen address")
}

/// GET /metrics on the metrics listener (its connections are its own), parsed.
pub fn metrics_at(addr: std::net::SocketAddr) -> Metrics {
    let raw = raw_exchange(
        RawTarget::Tcp(addr),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    Metrics::parse(&String::from_utf8_lossy(&parse_raw_response(&raw).2))
}

/// GET /metrics over the Unix socket, parsed (panics on a parse error).
pub fn metrics(n: &Normd) -> Metrics {
    let (status, headers, body) = n.unix("GET", "/metrics", &[], "");
    assert_eq!(status.as_u16(), 200, "/metrics answered {status}");
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/plain"), "/metrics content-type {ct:?}");
    Metrics::parse(&String::from_utf8_lossy(&body))
}

/// Polls /metrics until `pred` holds; the last scrape, or a panic naming `what`.
pub fn wait_metrics(n: &Normd, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
    let mut last = None;
    let ok = poll_until(WAIT, || {
        let m = metrics(n);
        let done = pred(&m);
        last = Some(m);
        done
    });
    let last = last.expect("at least one scrape");
    assert!(
        ok,
        "timed out after {WAIT:?} waiting for {what}; last /metrics:\n{}",
        last.text
    );
    last
}

pub const QUEUE_DEPTH: &str = "normd_queue_depth";
/// Counted once per job taken by a worker (run or skipped): "a worker picked it up".
pub const JOBS_PICKED: &str = "normd_queue_wait_seconds_count";
pub const CANCELLED: &str = "normd_cancelled_before_start_total";

// -------------------------------------------------------------------------------------
// Readiness and startup

/// GET /readyz (with `query`, e.g. "?exclude=memory") over TCP: status and JSON body.
pub fn readyz(n: &Normd, query: &str) -> (u16, Value, Reply) {
    let reply = n.tcp("GET", &format!("/readyz{query}"), &[], "");
    let doc = json(&reply.2);
    (reply.0.as_u16(), doc, reply)
}

/// Waits until at least one self-probe round has completed, so that the probe's own
/// startup calls (which go through `/norm` and the pool) are over before a test counts.
/// With `--probe-interval-ms 3600000` there is no other round for an hour.
pub fn wait_first_probe_round(n: &Normd) {
    let ok = poll_until(WAIT, || {
        readyz(n, "").1["checks"]["probe"]["rounds"]
            .as_u64()
            .is_some_and(|r| r >= 1)
    });
    assert!(ok, "no self-probe round completed within {WAIT:?}");
}

/// Args that make the self-probe run once at startup and then stay out of the way.
pub const QUIET_PROBE: [&str; 2] = ["--probe-interval-ms", "3600000"];

/// Signals whose handlers normd installs: SIGHUP (schema reload) and SIGTERM (drain).
pub const SIGHUP: u32 = 1;
pub const SIGTERM: u32 = 15;

/// Waits until the process catches each of `signals` (bit `n-1` of `SigCgt` in
/// /proc/PID/status). normd logs "normd serving" slightly before its signal handlers
/// are installed; a signal sent in between would get the default action (terminate).
pub fn wait_signal_handlers(n: &Normd, signals: &[u32]) {
    let caught = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", n.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0)
    };
    let mask: u64 = signals.iter().map(|s| 1u64 << (s - 1)).sum();
    let ok = poll_until(WAIT, || caught() & mask == mask);
    assert!(ok, "normd did not install handlers for signals {signals:?}");
}

// -------------------------------------------------------------------------------------
// Raw requests over the Unix socket

/// Reads one HTTP/1.1 response from `s`: the head, then Content-Length bytes of body
/// (or until EOF when there is no Content-Length). Empty when the peer closed without
/// answering.
pub fn read_reply_bytes(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("read timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(head_end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..head_end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if out.len() >= head_end + 4 + len {
                    return out;
                }
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request whose head has been sent, declaring `body.len()` bytes, but whose body
/// has not: normd has reserved its admission-queue slot (before reading the body) and
/// waits for the body. `finish` sends it; dropping the `Held` hangs up.
pub struct Held {
    stream: UnixStream,
    body: Vec<u8>,
}

impl Held {
    /// `POST path` with `Content-Type: application/json`, `X-Deadline-Ms: deadline_ms`,
    /// `Connection: close`, the extra `headers`, and Content-Length of `body`.
    pub fn open(
        socket: &Path,
        path: &str,
        deadline_ms: u64,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Held {
        let mut stream = UnixStream::connect(socket).expect("connect the Unix socket");
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: normd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-Deadline-Ms: {deadline_ms}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write the head");
        Held { stream, body }
    }

    /// Reads the answer without sending the body (for a refusal that needs no body).
    pub fn reply_without_body(&mut self) -> Reply {
        let raw = read_reply_bytes(&mut self.stream);
        parse_raw_response(&raw)
    }

    /// The connection, to read what follows.
    pub fn stream_mut(&mut self) -> &mut UnixStream {
        &mut self.stream
    }

    /// Sends the body without waiting for the answer.
    pub fn send_body(&mut self) {
        self.stream.write_all(&self.body).expect("write the body");
    }

    /// Sends the body and reads the answer.
    pub fn finish(mut self) -> Reply {
        self.send_body();
        let raw = read_reply_bytes(&mut self.stream);
        parse_raw_response(&raw)
    }

    /// Waits for whatever the server does without us sending the body: the raw bytes it
    /// wrote before closing (empty if it closed without answering).
    pub fn read_until_closed(mut self) -> Vec<u8> {
        read_reply_bytes(&mut self.stream)
    }
}

/// Opens `count` held `/norm` requests (valid JSON bodies, 60 s budget) and waits until
/// normd counts them all in its queue (`expect_depth` = depth once they are queued).
pub fn hold_queue(n: &Normd, count: usize, expect_depth: usize) -> Vec<Held> {
    let held: Vec<Held> = (0..count)
        .map(|i| {
            Held::open(
                n.socket_path(),
                "/norm?encoding=identity",
                60_000,
                &[],
                format!(r#"{{"held": {i}, "b": [1, 2.50]}}"#).into_bytes(),
            )
        })
        .collect();
    wait_metrics(n, &format!("queue depth {expect_depth}"), |m| {
        m.sum(QUEUE_DEPTH, &[]) == expect_depth as f64
    });
    held
}

/// The canonical answer to a held request's body (see `hold_queue`).
pub fn held_canonical(i: usize) -> String {
    format!(r#"{{"b":[1,2.5],"held":{i}}}"#)
}

// -------------------------------------------------------------------------------------
// CPU-heavy work

/// Distinct, moderately compressible text (JSON lines): no long repeats, so zstd at
/// level 19 does real work on every block. Deterministic for a seed.
pub fn text_payload(bytes: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Vec::with_capacity(bytes + 128);
    let mut i = 0u64;
    while out.len() < bytes {
        let word: String = (0..24)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
            .collect();
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"{word}\",\"v\":{}}}\n",
                next() % 1_000_000_000
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

/// Size of the blocker's body: zstd level 19 over it keeps one worker busy for many
/// seconds in a debug build (about 3 s per MB) and still for seconds in release, far
/// longer than the few requests a test makes meanwhile. The work checks for a
/// cancelled caller every 32 KiB, so dropping the blocker frees the worker soon.
pub const BLOCKER_BYTES: usize = if cfg!(debug_assertions) {
    4 << 20
} else {
    24 << 20
};

/// Args a normd needs to accept the blocker (body size, 120 s budget) and to admit other
/// calls beside it: zstd 19 on megabytes is charged ~120 MiB of working memory, past the
/// default in-flight budget, so without room for it every other call would get 429.
pub const BLOCKER_ARGS: [&str; 6] = [
    "--max-body-bytes",
    "64Mi",
    "--max-deadline-ms",
    "120000",
    "--max-inflight-bytes",
    "1Gi",
];

/// The heavy request, as raw bytes: `POST /compress?encoding=zstd&level=19`.
pub fn heavy_request(deadline_ms: u64, seed: u64) -> Vec<u8> {
    let body = text_payload(BLOCKER_BYTES, seed);
    let mut req = format!(
        "POST /compress?encoding=zstd&level=19 HTTP/1.1\r\nHost: normd\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         X-Deadline-Ms: {deadline_ms}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// A heavy call that occupies the only worker until it is dropped (client gone: the
/// work stops at its next checkpoint).
pub struct Blocker {
    stream: UnixStream,
}

impl Blocker {
    /// Sends the heavy call (120 s budget) and waits until a worker has picked it up.
    /// Needs `--workers 1`, [`BLOCKER_ARGS`], and no other work in flight.
    pub fn start(n: &Normd) -> Blocker {
        let picked = metrics(n).sum(JOBS_PICKED, &[]);
        // Built before connecting: a connection that waits while a debug build makes
        // 4 MiB of text can pass a test's short idle timeout before its first byte.
        let request = heavy_request(120_000, 42);
        let mut stream = UnixStream::connect(n.socket_path()).expect("connect");
        stream.write_all(&request).expect("send the heavy call");
        wait_metrics(n, "the heavy call to start on the worker", |m| {
            m.sum(JOBS_PICKED, &[]) == picked + 1.0 && m.sum(QUEUE_DEPTH, &[]) == 0.0
        });
        Blocker { stream }
    }

    /// True while normd keeps the call's connection open without answering it: a read
    /// that would block (an answer or a close would read at once).
    pub fn still_waiting(&self) -> bool {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let read = (&self.stream).read(&mut [0u8; 1]);
        self.stream.set_nonblocking(false).expect("blocking");
        matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Hangs up: normd drops the call and its work stops at the next checkpoint.
    pub fn release(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
