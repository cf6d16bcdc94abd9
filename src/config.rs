//! Every knob: CLI flag, `NORMD_*` env twin, optional TOML/YAML config file, embedded
//! default — validated into one typed [`Config`].
//!
//! Precedence is flag > env > file > default. Clap resolves flag-or-env; the file only
//! fills what both left empty. Everything is checked before anything starts, and every
//! bad value is reported at once (exit 64), so an operator fixes a manifest in one pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{
    BoolishValueParser, NonEmptyStringValueParser, OsStringValueParser, TypedValueParser,
};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::pipeline::{Encoding, JsonRules, NumberPolicy, PointerPattern, TextRules};

/// `normd` — a localhost sidecar that normalizes (RFC 8785), validates (JSON Schema)
/// and compresses JSON payloads for the app in its pod.
#[derive(Debug, Parser)]
#[command(name = "normd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API on the Unix socket and 127.0.0.1 (defaults work on a laptop).
    Serve(Box<ServeArgs>),
    /// Validate config, flags file, every schema and the socket group; exit 0, or 1 with
    /// every problem named.
    Check(Box<ServeArgs>),
    /// Show or edit a flags file (atomic write: temp file + rename); ./flags.json unless
    /// --flags or NORMD_FLAGS names another.
    Flags(FlagsArgs),
    /// One readiness (or liveness) check over the Unix socket and/or TCP; exit 0 or 1.
    Probe(ProbeArgs),
    /// GET a path (e.g. /metrics, /flags) over the socket or TCP and print the body —
    /// for `kubectl exec` into an image that has no shell or curl.
    Get(GetArgs),
}

/// Settings of `serve` (and `check`, which validates exactly what `serve` would run).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Unix socket path; '' turns the Unix listener off.
    /// [default: $XDG_RUNTIME_DIR/normd.sock, else <tmp>/normd.sock]
    #[arg(long, env = "NORMD_SOCKET")]
    pub socket: Option<String>,
    /// TCP address; '' turns TCP off. Non-loopback needs --allow-non-loopback.
    /// [default: 127.0.0.1:8081]
    #[arg(long, env = "NORMD_LISTEN")]
    pub listen: Option<String>,
    /// Extra listener serving only /metrics, /livez and /readyz (no work routes), so
    /// Prometheus can scrape from outside the pod; may be a non-loopback address. [default: off]
    #[arg(long, env = "NORMD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Schemas directory (*.json, compiled at start, reloaded on SIGHUP).
    /// [default: ./schemas if it exists, else the schemas embedded in the binary]
    #[arg(long, env = "NORMD_SCHEMAS")]
    pub schemas: Option<PathBuf>,
    /// Config file (.toml, .yaml or .yml): any setting below in snake_case, plus [profiles.NAME].
    /// Flags and env override it. [default: none: flags, env and the defaults below]
    #[arg(long, env = "NORMD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Feature flags file (JSON or YAML), polled for changes; '' for none.
    /// [default: ./flags.json if it exists at startup, else none = all enabled, no polling]
    #[arg(long, env = "NORMD_FLAGS", value_parser = OsStringValueParser::new().map(PathBuf::from))]
    pub flags: Option<PathBuf>,
    /// Octal mode applied to the socket right after bind; must include owner read+write
    /// (0600), at most 0777. [default: 0660]
    #[arg(long, env = "NORMD_SOCKET_MODE")]
    pub socket_mode: Option<String>,
    /// Group (name or numeric gid) given to the socket right after bind. [default: unchanged]
    #[arg(long, env = "NORMD_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Allow --listen on a non-loopback address (normd has no authentication). Takes
    /// an optional =true/false (1/0, yes/no, on/off), as does the env twin; an explicit
    /// false overrides the config file. [default: false]
    #[arg(
        long,
        env = "NORMD_ALLOW_NON_LOOPBACK",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub allow_non_loopback: Option<bool>,
    /// Largest request body as received, in bytes (K/M/G, Ki/Mi/Gi suffixes). [default: 1Mi]
    #[arg(long, env = "NORMD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Largest body after Content-Encoding decoding. [default: 8Mi]
    #[arg(long, env = "NORMD_MAX_DECODED_BYTES")]
    pub max_decoded_bytes: Option<String>,
    /// Budget of a call without X-Deadline-Ms or a profile deadline, in ms. [default: 20]
    #[arg(long, env = "NORMD_DEFAULT_DEADLINE_MS")]
    pub default_deadline_ms: Option<u64>,
    /// Cap on any call's budget, in ms. [default: 1000]
    #[arg(long, env = "NORMD_MAX_DEADLINE_MS")]
    pub max_deadline_ms: Option<u64>,
    /// CPU worker threads. [default: the cgroup CPU quota, else the CPU count]
    #[arg(long, env = "NORMD_WORKERS")]
    pub workers: Option<usize>,
    /// Admission queue length in front of the workers. [default: 16 per worker]
    #[arg(long, env = "NORMD_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Memory limit the watermarks are relative to, in bytes (K/M/G, Ki/Mi/Gi).
    /// [default: cgroup memory.max, else none]
    #[arg(long, env = "NORMD_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Fraction of the memory limit at which /readyz turns 503. [default: 0.8]
    #[arg(long, env = "NORMD_READY_WATERMARK")]
    pub ready_watermark: Option<f64>,
    /// Fraction of the memory limit at which new work gets 503 memory_pressure. [default: 0.9]
    #[arg(long, env = "NORMD_SHED_WATERMARK")]
    pub shed_watermark: Option<f64>,
    /// Open connections across both listeners. [default: 256]
    #[arg(long, env = "NORMD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes held by calls in flight: request bodies, decoded bodies and, while a call
    /// runs, its working memory (K/M/G suffixes). [default: a quarter of the memory
    /// limit, at least 32Mi; 256Mi when no limit is known]
    #[arg(long, env = "NORMD_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<String>,
    /// After SIGTERM, keep serving this long (readiness already 503). [default: 5000]
    #[arg(long, env = "NORMD_DRAIN_DELAY_MS")]
    pub drain_delay_ms: Option<u64>,
    /// Hard bound on the whole shutdown, counted from the signal. [default: 15000]
    #[arg(long, env = "NORMD_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Time for a complete request head once a connection is idle; bounds keep-alive
    /// idleness and slow headers. [default: 10000]
    #[arg(long, env = "NORMD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection that moves no byte for this long, with no request being handled
    /// (a call runs under its deadline instead), is closed. [default: 30000]
    #[arg(long, env = "NORMD_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// An answer whose client takes no byte of it for this long is dropped and its
    /// connection closed, so a reader that stalls frees the memory it holds. [default: 5000]
    #[arg(long, env = "NORMD_SEND_TIMEOUT_MS")]
    pub send_timeout_ms: Option<u64>,
    /// Deepest array/object nesting accepted (1..=1024). [default: 128]
    #[arg(long, env = "NORMD_MAX_DEPTH")]
    pub max_depth: Option<usize>,
    /// Schema violations listed in a 422. [default: 20]
    #[arg(long, env = "NORMD_MAX_ERRORS")]
    pub max_errors: Option<usize>,
    /// Self-probe period, in ms. [default: 1000]
    #[arg(long, env = "NORMD_PROBE_INTERVAL_MS")]
    pub probe_interval_ms: Option<u64>,
    /// Consecutive self-probe failures that turn /readyz 503. [default: 3]
    #[arg(long, env = "NORMD_PROBE_FAILURES")]
    pub probe_failures: Option<u32>,
    /// Flags file poll period, in ms. [default: 1000]
    #[arg(long, env = "NORMD_FLAGS_POLL_MS")]
    pub flags_poll_ms: Option<u64>,
    /// Log level: error, warn, info, debug, trace, off. [default: info]
    #[arg(long, env = "NORMD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Fraction of successful requests given an access-log line, 0..=1 (error lines are always written). [default: 1.0]
    #[arg(long, env = "NORMD_LOG_SAMPLE")]
    pub log_sample: Option<f64>,
}

/// `normd flags get|show|set`.
#[derive(Debug, Clone, Args)]
pub struct FlagsArgs {
    #[command(subcommand)]
    pub action: FlagsAction,
    /// The flags file to read or edit (`set` creates it if missing).
    #[arg(
        long,
        env = "NORMD_FLAGS",
        global = true,
        default_value = DEFAULT_FLAGS,
        value_parser = NonEmptyStringValueParser::new().map(PathBuf::from)
    )]
    pub flags: PathBuf,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FlagsAction {
    /// Print the effective flags (file values, defaults filled in) as JSON.
    #[command(visible_alias = "show")]
    Get,
    /// Set one or more values, e.g. `norm.rollout_percent=25 compress.enabled=false`.
    Set {
        #[arg(required = true)]
        assignments: Vec<String>,
        /// Start from the defaults instead of the file's content (use when the file
        /// does not parse: the kill switch must work exactly then).
        #[arg(long)]
        reset: bool,
    },
}

/// `normd probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Unix socket to probe. [default: the serve default, unless --tcp is given]
    #[arg(long, env = "NORMD_SOCKET")]
    pub socket: Option<String>,
    /// TCP address to probe as well (or instead), e.g. 127.0.0.1:8081.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Check /livez instead of /readyz.
    #[arg(long)]
    pub live: bool,
    /// Readiness checks to ignore, comma-separated (draining, memory, schemas, probe).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Give up after this many ms per transport.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// `normd get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Path and query, e.g. /metrics or /readyz?exclude=memory.
    pub path: String,
    /// Unix socket. [default: the serve default, unless --tcp is given]
    #[arg(long, env = "NORMD_SOCKET")]
    pub socket: Option<String>,
    /// TCP address instead, e.g. 127.0.0.1:8081.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Give up after this many ms.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// The config file: the same settings in snake_case, plus profiles.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    socket: Option<String>,
    listen: Option<String>,
    metrics_listen: Option<String>,
    schemas: Option<PathBuf>,
    flags: Option<PathBuf>,
    socket_mode: Option<String>,
    socket_group: Option<String>,
    allow_non_loopback: Option<bool>,
    max_body_bytes: Option<ByteSize>,
    max_decoded_bytes: Option<ByteSize>,
    default_deadline_ms: Option<u64>,
    max_deadline_ms: Option<u64>,
    workers: Option<usize>,
    max_queue: Option<usize>,
    memory_limit: Option<ByteSize>,
    ready_watermark: Option<f64>,
    shed_watermark: Option<f64>,
    max_connections: Option<usize>,
    max_inflight_bytes: Option<ByteSize>,
    drain_delay_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    send_timeout_ms: Option<u64>,
    max_depth: Option<usize>,
    max_errors: Option<usize>,
    probe_interval_ms: Option<u64>,
    probe_failures: Option<u32>,
    flags_poll_ms: Option<u64>,
    log_level: Option<String>,
    log_sample: Option<f64>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileFile>,
}

/// Sizes in a config file may be numbers or strings with suffixes.
///
/// Deserialized by hand rather than as an untagged enum: an untagged enum's error is "data
/// did not match any variant", with no key or position from the YAML reader; this one
/// says what was expected, and the reader adds where.
#[derive(Debug, Clone)]
enum ByteSize {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size in bytes: a whole number, or a string such as \"64Mi\"")
            }
            fn visit_u64<E>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E>(self, v: &str) -> Result<ByteSize, E> {
                Ok(ByteSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl ByteSize {
    fn text(&self) -> String {
        match self {
            ByteSize::Number(n) => n.to_string(),
            ByteSize::Text(s) => s.clone(),
        }
    }
}

/// A profile as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    schema: Option<String>,
    encoding: Option<String>,
    level: Option<i32>,
    numbers: Option<NumberPolicy>,
    #[serde(default)]
    trim: bool,
    #[serde(default)]
    nfc: bool,
    #[serde(default)]
    lowercase: Vec<String>,
    #[serde(default)]
    drop_nulls: bool,
    deadline_ms: Option<u64>,
    text_trim: Option<bool>,
    text_lowercase: Option<bool>,
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub schema: Option<String>,
    pub encoding: Encoding,
    pub level: i32,
    pub numbers: NumberPolicy,
    pub json_rules: JsonRules,
    pub text_rules: TextRules,
    pub deadline: Option<Duration>,
}

impl Default for Profile {
    /// No profile: numbers safe, no string rules, no schema, gzip at its fastest level.
    fn default() -> Self {
        Self {
            schema: None,
            encoding: Encoding::Gzip,
            level: Encoding::Gzip.default_level(),
            numbers: NumberPolicy::Safe,
            json_rules: JsonRules::default(),
            text_rules: TextRules::default(),
            deadline: None,
        }
    }
}

/// Where the schemas come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    Dir(PathBuf),
    Embedded,
}

/// The whole validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub schemas: SchemaSource,
    pub flags: Option<PathBuf>,
    pub socket_mode: u32,
    pub socket_group: Option<String>,
    pub max_body_bytes: usize,
    pub max_decoded_bytes: usize,
    pub default_deadline: Duration,
    pub max_deadline: Duration,
    pub workers: usize,
    pub max_queue: usize,
    /// Explicit limit; `None` means "ask the cgroup at runtime".
    pub memory_limit: Option<u64>,
    pub ready_watermark: f64,
    pub shed_watermark: f64,
    pub max_connections: usize,
    /// `None`: derived from the memory limit, see [`inflight_budget`].
    pub max_inflight_bytes: Option<usize>,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_depth: usize,
    pub max_errors: usize,
    pub probe_interval: Duration,
    pub probe_failures: u32,
    pub flags_poll: Duration,
    pub log_level: String,
    pub log_sample: f64,
    pub profiles: BTreeMap<String, Profile>,
}

/// `--max-inflight-bytes` when not given: a quarter of the memory limit (explicit or the
/// cgroup's), at least 32 MiB; 256 MiB when no limit is known. The budget holds running
/// calls' working memory too (brotli 9 alone needs ~38 MiB), but RSS also holds what the
/// budget does not see: each worker's allocator cache, connection buffers, the process's
/// own ~20 MiB. Under 60 clients of 909 KB bodies at a 256 MiB limit, half the limit let
/// RSS reach 244-287 MB (past the 241 MB shed watermark); 32 MiB kept it at 112-200 MB.
pub fn inflight_budget(explicit: Option<usize>, memory_limit: Option<u64>) -> usize {
    explicit.unwrap_or(match memory_limit {
        Some(limit) => usize::try_from(limit / 4)
            .unwrap_or(usize::MAX)
            .max(32 << 20),
        None => 256 << 20,
    })
}

/// Where to put the socket when nothing says: `$XDG_RUNTIME_DIR`, else the temp dir.
pub fn default_socket_path() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty() && Path::new(d).is_dir())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("normd.sock")
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// What `--log-level` accepts.
pub const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The flags file of `normd flags`, and of `serve` when it exists and nothing names one
/// (as `./schemas` is for schemas): a local edit then a restart just works on a laptop.
pub const DEFAULT_FLAGS: &str = "./flags.json";

impl Config {
    /// Reads the config file named by `args` (if any) and resolves everything.
    pub fn load(args: ServeArgs) -> Result<Self, Vec<String>> {
        let file = match &args.config {
            Some(path) => read_file_config(path).map_err(|e| vec![e])?,
            None => FileConfig::default(),
        };
        Self::resolve(args, file)
    }

    /// Merges flag/env (`args`) over `file` over defaults, collecting every error.
    pub fn resolve(args: ServeArgs, file: FileConfig) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut err = |e: String| errors.push(e);

        let socket = match args.socket.or(file.socket) {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(PathBuf::from(s)),
            None => Some(default_socket_path()),
        };
        // Flag or env (clap merges those), else the file: an env `false` beats a file `true`.
        let allow_non_loopback = args
            .allow_non_loopback
            .or(file.allow_non_loopback)
            .unwrap_or(false);
        let listen = match args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into())
        {
            s if s.is_empty() => None,
            s => match s.parse::<SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() && !allow_non_loopback => {
                    err(format!(
                        "--listen {addr}: not a loopback address; normd has no authentication, \
                         pass --allow-non-loopback if you really mean it"
                    ));
                    None
                }
                Ok(addr) => Some(addr),
                Err(_) => {
                    err(format!(
                        "--listen {s:?}: expected IP:PORT such as 127.0.0.1:8081, or '' to turn TCP off"
                    ));
                    None
                }
            },
        };
        let metrics_listen = match args.metrics_listen.or(file.metrics_listen) {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    err(format!(
                        "--metrics-listen {s:?}: expected IP:PORT such as 0.0.0.0:9464, or '' to turn it off"
                    ));
                    None
                }
            },
        };
        if socket.is_none() && listen.is_none() {
            err("both listeners are off (--socket '' and --listen ''): nothing to serve".into());
        }
        let schemas = schema_source(args.schemas.or(file.schemas));
        let flags = flags_path(args.flags.or(file.flags));
        let socket_mode_text = args
            .socket_mode
            .or(file.socket_mode)
            .unwrap_or_else(|| "0660".into());
        let socket_mode = match u32::from_str_radix(socket_mode_text.trim_start_matches("0o"), 8) {
            Ok(m) if m > 0o777 => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: only permission bits (at most 0777) apply to a socket"
                ));
                0o660
            }
            // Without them only root could connect: not the app, not normd's self-probe.
            Ok(m) if m & 0o600 != 0o600 => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: the owner needs read and write (0600) to connect; e.g. 0660"
                ));
                0o660
            }
            Ok(m) => m,
            Err(_) => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: expected an octal mode such as 0660"
                ));
                0o660
            }
        };
        let mut bytes = |name: &str, flag: Option<String>, file: Option<ByteSize>, default: u64| {
            match flag.or(file.map(|b| b.text())) {
                None => default,
                Some(text) => match parse_bytes(&text) {
                    Some(n) if n > 0 => n,
                    _ => {
                        err(format!(
                            "--{name} {text:?}: expected a positive byte count such as 1048576, 64Mi or 1G"
                        ));
                        default
                    }
                },
            }
        };
        let max_body_bytes = bytes(
            "max-body-bytes",
            args.max_body_bytes,
            file.max_body_bytes,
            1 << 20,
        ) as usize;
        let max_decoded_bytes = bytes(
            "max-decoded-bytes",
            args.max_decoded_bytes,
            file.max_decoded_bytes,
            8 << 20,
        ) as usize;
        // 0: not given; derived from the memory limit at start (see `inflight_budget`).
        let max_inflight_bytes = bytes(
            "max-inflight-bytes",
            args.max_inflight_bytes,
            file.max_inflight_bytes,
            0,
        ) as usize;
        let max_inflight_bytes = (max_inflight_bytes > 0).then_some(max_inflight_bytes);
        let memory_limit = match args.memory_limit.or(file.memory_limit.map(|b| b.text())) {
            None => None,
            Some(text) if text.is_empty() || text == "0" => None,
            Some(text) => match parse_bytes(&text) {
                Some(n) => Some(n),
                None => {
                    err(format!(
                        "--memory-limit {text:?}: expected bytes such as 67108864, 64Mi or 1G"
                    ));
                    None
                }
            },
        };

        let mut ms = |name: &str, v: Option<u64>, default: u64, min: u64| -> Duration {
            let v = v.unwrap_or(default);
            if v < min {
                err(format!("--{name} {v}: must be at least {min}"));
            }
            Duration::from_millis(v)
        };
        let default_deadline = ms(
            "default-deadline-ms",
            args.default_deadline_ms.or(file.default_deadline_ms),
            20,
            1,
        );
        let max_deadline = ms(
            "max-deadline-ms",
            args.max_deadline_ms.or(file.max_deadline_ms),
            1000,
            1,
        );
        let drain_delay = ms(
            "drain-delay-ms",
            args.drain_delay_ms.or(file.drain_delay_ms),
            5000,
            0,
        );
        let shutdown_timeout = ms(
            "shutdown-timeout-ms",
            args.shutdown_timeout_ms.or(file.shutdown_timeout_ms),
            15000,
            1,
        );
        let header_read_timeout = ms(
            "header-read-timeout-ms",
            args.header_read_timeout_ms.or(file.header_read_timeout_ms),
            10000,
            1,
        );
        let idle_timeout = ms(
            "idle-timeout-ms",
            args.idle_timeout_ms.or(file.idle_timeout_ms),
            30000,
            1,
        );
        let send_timeout = ms(
            "send-timeout-ms",
            args.send_timeout_ms.or(file.send_timeout_ms),
            5000,
            1,
        );
        let probe_interval = ms(
            "probe-interval-ms",
            args.probe_interval_ms.or(file.probe_interval_ms),
            1000,
            10,
        );
        let flags_poll = ms(
            "flags-poll-ms",
            args.flags_poll_ms.or(file.flags_poll_ms),
            1000,
            10,
        );
        if default_deadline > max_deadline {
            err(format!(
                "--default-deadline-ms {} exceeds --max-deadline-ms {}",
                default_deadline.as_millis(),
                max_deadline.as_millis()
            ));
        }
        if drain_delay >= shutdown_timeout {
            err(format!(
                "--drain-delay-ms {} must be shorter than --shutdown-timeout-ms {} (the timeout counts from the signal)",
                drain_delay.as_millis(),
                shutdown_timeout.as_millis()
            ));
        }

        let workers = match args.workers.or(file.workers) {
            Some(0) => {
                err("--workers 0: need at least one worker".into());
                1
            }
            Some(n) => n,
            None => crate::admission::cpu_quota(),
        };
        let max_queue = match args.max_queue.or(file.max_queue) {
            Some(0) => {
                err("--max-queue 0: need room for at least one queued call".into());
                1
            }
            Some(n) => n,
            None => workers * 16,
        };
        let max_connections = match args.max_connections.or(file.max_connections) {
            Some(0) => {
                err("--max-connections 0: need at least one connection".into());
                1
            }
            Some(n) => n,
            None => 256,
        };
        let mut fraction = |name: &str, v: Option<f64>, default: f64| -> f64 {
            let v = v.unwrap_or(default);
            if !(v > 0.0 && v <= 1.0) {
                err(format!("--{name} {v}: must be a fraction in (0, 1]"));
                return default;
            }
            v
        };
        let ready_watermark = fraction(
            "ready-watermark",
            args.ready_watermark.or(file.ready_watermark),
            0.8,
        );
        let shed_watermark = fraction(
            "shed-watermark",
            args.shed_watermark.or(file.shed_watermark),
            0.9,
        );
        // 0 is a sampling rate too: only error lines.
        let log_sample = match args.log_sample.or(file.log_sample) {
            Some(v) if !(0.0..=1.0).contains(&v) => {
                err(format!("--log-sample {v}: must be a fraction in [0, 1]"));
                1.0
            }
            v => v.unwrap_or(1.0),
        };
        if shed_watermark < ready_watermark {
            err(format!(
                "--shed-watermark {shed_watermark} is below --ready-watermark {ready_watermark}: \
                 shedding must start at or above the readiness watermark"
            ));
        }
        let max_depth = args.max_depth.or(file.max_depth).unwrap_or(128);
        if !(1..=1024).contains(&max_depth) {
            err(format!("--max-depth {max_depth}: must be within 1..=1024"));
        }
        let max_errors = args.max_errors.or(file.max_errors).unwrap_or(20).max(1);
        let probe_failures = args
            .probe_failures
            .or(file.probe_failures)
            .unwrap_or(3)
            .max(1);
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            err(format!(
                "--log-level {log_level:?}: expected error, warn, info, debug, trace or off"
            ));
        }

        let mut profiles = BTreeMap::new();
        for (name, p) in file.profiles {
            match resolve_profile(&name, p, max_deadline) {
                Ok(profile) => {
                    profiles.insert(name, profile);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            socket,
            listen,
            metrics_listen,
            schemas,
            flags,
            socket_mode,
            socket_group: args.socket_group.or(file.socket_group),
            max_body_bytes,
            max_decoded_bytes,
            default_deadline,
            max_deadline,
            workers,
            max_queue,
            memory_limit,
            ready_watermark,
            shed_watermark,
            max_connections,
            max_inflight_bytes,
            drain_delay,
            shutdown_timeout,
            header_read_timeout,
            idle_timeout,
            send_timeout,
            max_depth,
            max_errors,
            probe_interval,
            probe_failures,
            flags_poll,
            log_level,
            log_sample,
            profiles,
        })
    }
}

/// `--schemas` if given, else `./schemas` if it is a directory, else the embedded set.
fn schema_source(named: Option<PathBuf>) -> SchemaSource {
    match named {
        Some(dir) => SchemaSource::Dir(dir),
        None if Path::new("schemas").is_dir() => SchemaSource::Dir(PathBuf::from("schemas")),
        None => SchemaSource::Embedded,
    }
}

/// `--flags` if given ('' = none), else `./flags.json` if it is a file.
fn flags_path(named: Option<PathBuf>) -> Option<PathBuf> {
    match named {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => Some(PathBuf::from(DEFAULT_FLAGS)).filter(|p| p.is_file()),
    }
}

/// What `serve` would read besides its settings: the schemas, the flags file and the
/// schema each profile names. `check` verifies these even when some setting is invalid,
/// so that one run names every problem.
#[derive(Debug, Clone)]
pub struct Sources {
    pub schemas: SchemaSource,
    pub flags: Option<PathBuf>,
    /// (profile, schema) for every profile in the file that names a schema, whether or
    /// not the rest of the profile is valid.
    pub profile_schemas: Vec<(String, String)>,
}

impl Sources {
    pub fn resolve(args: &ServeArgs, file: &FileConfig) -> Self {
        Sources {
            schemas: schema_source(args.schemas.clone().or_else(|| file.schemas.clone())),
            flags: flags_path(args.flags.clone().or_else(|| file.flags.clone())),
            profile_schemas: file
                .profiles
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), p.schema.clone()?)))
                .collect(),
        }
    }
}

fn resolve_profile(
    name: &str,
    p: ProfileFile,
    max_deadline: Duration,
) -> Result<Profile, Vec<String>> {
    let mut errors = Vec::new();
    let encoding = match p.encoding.as_deref() {
        None => Encoding::Gzip,
        Some(e) => Encoding::parse(e).unwrap_or_else(|| {
            errors.push(format!(
                "profile {name:?}: unknown encoding {e:?} (known: gzip, br, zstd, identity)"
            ));
            Encoding::Gzip
        }),
    };
    let level = p.level.unwrap_or_else(|| encoding.default_level());
    let (lo, hi) = encoding.level_range();
    if level < lo || level > hi {
        errors.push(format!(
            "profile {name:?}: level {level} out of range {lo}..={hi} for {}",
            encoding.name()
        ));
    }
    let mut lowercase = Vec::new();
    for ptr in &p.lowercase {
        match PointerPattern::parse(ptr) {
            Ok(pp) => lowercase.push(pp),
            Err(e) => errors.push(format!("profile {name:?}: lowercase: {e}")),
        }
    }
    let deadline = p.deadline_ms.map(Duration::from_millis);
    if let Some(d) = deadline {
        if d.is_zero() || d > max_deadline {
            errors.push(format!(
                "profile {name:?}: deadline_ms {} must be within 1..={}",
                d.as_millis(),
                max_deadline.as_millis()
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Profile {
        schema: p.schema,
        encoding,
        level,
        numbers: p.numbers.unwrap_or_default(),
        json_rules: JsonRules {
            trim: p.trim,
            nfc: p.nfc,
            lowercase,
            drop_nulls: p.drop_nulls,
        },
        text_rules: TextRules {
            trim: p.text_trim.unwrap_or(true),
            nfc: p.nfc,
            lowercase: p.text_lowercase.unwrap_or(true),
        },
        deadline,
    })
}

/// Reads a TOML (default) or YAML (`.yaml`/`.yml`) config file.
pub fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config {}: cannot read: {e}", path.display()))?;
    parse_file_config(path, &text)
}

pub fn parse_file_config(path: &Path, text: &str) -> Result<FileConfig, String> {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    );
    if yaml {
        serde_norway::from_str(text).map_err(|e| format!("config {}: {e}", path.display()))
    } else {
        toml::from_str(text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}

/// Parses `1048576`, `64Ki`, `64Mi`, `1Gi`, `500K`, `64M`, `1G` (k8s quantity style).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and argument, depth first.
    fn all_args(cmd: &clap::Command, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((cmd.get_name().to_owned(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, out);
        }
    }

    #[test]
    fn help_shows_each_default_once_and_every_log_level() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut args = Vec::new();
        all_args(&cmd, &mut args);
        for (sub, arg) in &args {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if !arg.get_default_values().is_empty() {
                assert!(
                    !help.contains("[default:"),
                    "{sub} --{}: clap prints the default already: {help:?}",
                    arg.get_id()
                );
            }
        }
        let (_, log_level) = args
            .iter()
            .find(|(sub, a)| sub == "serve" && a.get_id() == "log_level")
            .expect("serve --log-level");
        let help = log_level
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        for level in LOG_LEVELS {
            assert!(
                help.contains(level),
                "--log-level help lacks {level}: {help:?}"
            );
        }
    }

    #[test]
    fn byte_sizes_accept_kubernetes_quantities() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("12Q"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn defaults_resolve_to_the_documented_values() {
        let c = Config::resolve(ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_decoded_bytes, 8 << 20);
        assert_eq!(c.default_deadline, Duration::from_millis(20));
        assert_eq!(c.ready_watermark, 0.8);
        assert_eq!(c.shed_watermark, 0.9);
        assert!(c.socket.unwrap().ends_with("normd.sock"));
        // Tests run in the crate root: `normd serve` there must find no ./flags.json.
        assert_eq!(
            c.flags, None,
            "./flags.json in the crate root would be read by `normd serve`; do not commit one"
        );
    }

    #[test]
    fn an_empty_flags_path_means_no_flags_file() {
        let file = parse_file_config(Path::new("c.toml"), "flags = \"\"\n").unwrap();
        assert_eq!(
            Config::resolve(ServeArgs::default(), file).unwrap().flags,
            None
        );
        let args = ServeArgs {
            flags: Some(PathBuf::from("/etc/normd/flags.json")),
            ..Default::default()
        };
        let file = parse_file_config(Path::new("c.toml"), "flags = \"\"\n").unwrap();
        let c = Config::resolve(args, file).unwrap();
        assert_eq!(c.flags, Some(PathBuf::from("/etc/normd/flags.json")));
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = parse_file_config(
            Path::new("c.toml"),
            "listen = \"127.0.0.1:9000\"\nmax_body_bytes = \"2Mi\"\nworkers = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = Config::resolve(args, file).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.max_body_bytes, 2 << 20);
        assert_eq!(c.workers, 3);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let args = ServeArgs {
            listen: Some("0.0.0.0:80".into()),
            socket_mode: Some("999".into()),
            max_body_bytes: Some("lots".into()),
            ready_watermark: Some(1.5),
            ..Default::default()
        };
        let errors = Config::resolve(args, FileConfig::default()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("loopback"));
    }

    #[test]
    fn log_sample_takes_zero_to_one() {
        for (given, ok) in [
            (0.0, true),
            (0.25, true),
            (1.0, true),
            (-0.1, false),
            (1.5, false),
            (f64::NAN, false),
        ] {
            let args = ServeArgs {
                log_sample: Some(given),
                ..Default::default()
            };
            let resolved = Config::resolve(args, FileConfig::default());
            assert_eq!(resolved.is_ok(), ok, "{given}");
            if let Ok(c) = resolved {
                assert_eq!(c.log_sample, given);
            }
        }
    }

    #[test]
    fn socket_modes_need_owner_read_write_and_only_permission_bits() {
        let mode = |text: &str, file: &str| {
            let args = ServeArgs {
                socket_mode: (!text.is_empty()).then(|| text.to_owned()),
                ..Default::default()
            };
            let file = parse_file_config(Path::new("c.toml"), file).unwrap();
            Config::resolve(args, file).map(|c| c.socket_mode)
        };
        for (ok, expected) in [("0660", 0o660), ("600", 0o600), ("0o777", 0o777)] {
            assert_eq!(mode(ok, ""), Ok(expected));
        }
        for bad in ["0", "0000", "0460", "0260", "0060"] {
            let e = mode(bad, "").unwrap_err();
            assert!(e[0].contains("owner needs read and write"), "{bad}: {e:?}");
        }
        for bad in ["1777", "4660", "10660"] {
            let e = mode(bad, "").unwrap_err();
            assert!(e[0].contains("at most 0777"), "{bad}: {e:?}");
        }
        assert!(mode("", "socket_mode = \"0000\"\n").is_err());
        assert!(mode("0x660", "").unwrap_err()[0].contains("octal"));
    }

    #[test]
    fn the_inflight_budget_defaults_to_a_quarter_of_the_memory_limit() {
        const M: u64 = 1 << 20;
        assert_eq!(inflight_budget(None, Some(256 * M)), 64 << 20);
        assert_eq!(
            inflight_budget(None, Some(100 * M)),
            32 << 20,
            "at least 32 MiB"
        );
        assert_eq!(inflight_budget(None, None), 256 << 20);
        assert_eq!(
            inflight_budget(Some(5), Some(256 * M)),
            5,
            "a given value wins"
        );
        let c = Config::resolve(ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(c.max_inflight_bytes, None);
    }

    #[test]
    fn non_loopback_is_allowed_only_explicitly() {
        let args = ServeArgs {
            listen: Some("0.0.0.0:8081".into()),
            allow_non_loopback: Some(true),
            ..Default::default()
        };
        assert!(Config::resolve(args, FileConfig::default()).is_ok());
    }

    #[test]
    fn profiles_parse_from_toml_and_yaml() {
        let toml = r#"
[profiles.orders]
schema = "order.v1"
encoding = "br"
level = 5
numbers = "strict"
trim = true
nfc = true
lowercase = ["/customer/email"]
drop_nulls = true
deadline_ms = 25
"#;
        let file = parse_file_config(Path::new("c.toml"), toml).unwrap();
        let c = Config::resolve(ServeArgs::default(), file).unwrap();
        let p = &c.profiles["orders"];
        assert_eq!(p.encoding, Encoding::Br);
        assert_eq!(p.level, 5);
        assert_eq!(p.numbers, NumberPolicy::Strict);
        assert!(p.json_rules.trim && p.json_rules.nfc && p.json_rules.drop_nulls);
        assert_eq!(p.deadline, Some(Duration::from_millis(25)));

        let yaml = "profiles:\n  fast:\n    encoding: zstd\n    level: -3\n";
        let file = parse_file_config(Path::new("c.yaml"), yaml).unwrap();
        let c = Config::resolve(ServeArgs::default(), file).unwrap();
        assert_eq!(c.profiles["fast"].encoding, Encoding::Zstd);
    }

    #[test]
    fn unknown_keys_and_bad_profiles_are_errors() {
        assert!(parse_file_config(Path::new("c.toml"), "max_bodybytes = 1\n").is_err());
        let file = parse_file_config(
            Path::new("c.toml"),
            "[profiles.x]\nencoding = \"lz4\"\nlowercase = [\"nope\"]\n",
        )
        .unwrap();
        let errors = Config::resolve(ServeArgs::default(), file).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }

    #[test]
    fn sizes_are_numbers_or_suffixed_strings_and_a_bad_one_is_located() {
        for (name, text) in [
            ("c.yaml", "memory_limit: \"64Mi\"\nmax_body_bytes: 2048\n"),
            ("c.toml", "memory_limit = \"64Mi\"\nmax_body_bytes = 2048\n"),
        ] {
            let file = parse_file_config(Path::new(name), text).unwrap();
            let c = Config::resolve(ServeArgs::default(), file).unwrap();
            assert_eq!((c.memory_limit, c.max_body_bytes), (Some(64 << 20), 2048));
        }
        // A negative size: the key, the line and what a size is, in YAML as in TOML.
        let e = parse_file_config(Path::new("c.yaml"), "memory_limit: -1\n").unwrap_err();
        assert!(
            e.contains("memory_limit") && e.contains("line 1") && e.contains("size in bytes"),
            "{e}"
        );
    }
}
