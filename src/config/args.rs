//! The command line: subcommands and their arguments, each with its `NORMD_*` env twin.

use std::path::PathBuf;

use clap::builder::{
    BoolishValueParser, NonEmptyStringValueParser, OsStringValueParser, TypedValueParser,
};
use clap::{Args, Parser, Subcommand};

use super::defaults;

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
/// Each is optional here: the config file and then `defaults.rs` fill what is left.
#[derive(Debug, Clone, Default, Args)]
#[command(mut_args = defaults::show_in_help)]
pub struct ServeArgs {
    /// Unix socket path; '' turns the Unix listener off.
    #[arg(long, env = "NORMD_SOCKET")]
    pub socket: Option<String>,
    /// TCP address; '' turns TCP off. Non-loopback needs --allow-non-loopback.
    #[arg(long, env = "NORMD_LISTEN")]
    pub listen: Option<String>,
    /// Extra listener serving only /metrics, /livez and /readyz (no work routes), so
    /// Prometheus can scrape from outside the pod; may be a non-loopback address.
    #[arg(long, env = "NORMD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Schemas directory (*.json, compiled at start, reloaded on SIGHUP).
    #[arg(long, env = "NORMD_SCHEMAS")]
    pub schemas: Option<PathBuf>,
    /// Config file (.toml, .yaml or .yml): any setting below in snake_case, plus
    /// [profiles.NAME]. Flags and env override it.
    #[arg(long, env = "NORMD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Feature flags file (JSON or YAML), polled for changes; '' for none.
    #[arg(long, env = "NORMD_FLAGS", value_parser = OsStringValueParser::new().map(PathBuf::from))]
    pub flags: Option<PathBuf>,
    /// Octal mode applied to the socket right after bind; must include owner read+write
    /// (0600), at most 0777.
    #[arg(long, env = "NORMD_SOCKET_MODE")]
    pub socket_mode: Option<String>,
    /// Group (name or numeric gid) given to the socket right after bind.
    #[arg(long, env = "NORMD_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Allow --listen on a non-loopback address (normd has no authentication). Takes an
    /// optional =true/false (1/0, yes/no, on/off), as does the env twin; an explicit
    /// false overrides the config file.
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
    /// Largest request body as received, in bytes (K/M/G, Ki/Mi/Gi suffixes).
    #[arg(long, env = "NORMD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Largest body after Content-Encoding decoding.
    #[arg(long, env = "NORMD_MAX_DECODED_BYTES")]
    pub max_decoded_bytes: Option<String>,
    /// Budget of a call without X-Deadline-Ms or a profile deadline, in ms.
    #[arg(long, env = "NORMD_DEFAULT_DEADLINE_MS")]
    pub default_deadline_ms: Option<u64>,
    /// Cap on any call's budget, in ms.
    #[arg(long, env = "NORMD_MAX_DEADLINE_MS")]
    pub max_deadline_ms: Option<u64>,
    /// CPU worker threads.
    #[arg(long, env = "NORMD_WORKERS")]
    pub workers: Option<usize>,
    /// Admission queue length in front of the workers.
    #[arg(long, env = "NORMD_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Memory limit the watermarks are relative to, in bytes (K/M/G, Ki/Mi/Gi).
    #[arg(long, env = "NORMD_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Fraction of the memory limit at which /readyz turns 503.
    #[arg(long, env = "NORMD_READY_WATERMARK")]
    pub ready_watermark: Option<f64>,
    /// Fraction of the memory limit at which new work gets 503 memory_pressure.
    #[arg(long, env = "NORMD_SHED_WATERMARK")]
    pub shed_watermark: Option<f64>,
    /// Open connections across both listeners.
    #[arg(long, env = "NORMD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes held by calls in flight: request bodies, decoded bodies and, while a call
    /// runs, its working memory (K/M/G suffixes).
    #[arg(long, env = "NORMD_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<String>,
    /// After SIGTERM, keep serving this long (readiness already 503).
    #[arg(long, env = "NORMD_DRAIN_DELAY_MS")]
    pub drain_delay_ms: Option<u64>,
    /// Hard bound on the whole shutdown, counted from the signal.
    #[arg(long, env = "NORMD_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Time for a complete request head once a connection is idle; bounds keep-alive
    /// idleness and slow headers.
    #[arg(long, env = "NORMD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection that moves no byte for this long, with no request being handled (a
    /// call runs under its deadline instead), is closed.
    #[arg(long, env = "NORMD_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// An answer whose client takes no byte of it for this long is dropped and its
    /// connection closed, so a reader that stalls frees the memory it holds.
    #[arg(long, env = "NORMD_SEND_TIMEOUT_MS")]
    pub send_timeout_ms: Option<u64>,
    /// Deepest array/object nesting accepted (1..=1024).
    #[arg(long, env = "NORMD_MAX_DEPTH")]
    pub max_depth: Option<usize>,
    /// Schema violations listed in a 422.
    #[arg(long, env = "NORMD_MAX_ERRORS")]
    pub max_errors: Option<usize>,
    /// Self-probe period, in ms.
    #[arg(long, env = "NORMD_PROBE_INTERVAL_MS")]
    pub probe_interval_ms: Option<u64>,
    /// Consecutive self-probe failures that turn /readyz 503.
    #[arg(long, env = "NORMD_PROBE_FAILURES")]
    pub probe_failures: Option<u32>,
    /// Flags file poll period, in ms.
    #[arg(long, env = "NORMD_FLAGS_POLL_MS")]
    pub flags_poll_ms: Option<u64>,
    /// Log level: error, warn, info, debug, trace, off.
    #[arg(long, env = "NORMD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Fraction of successful requests given an access-log line, 0..=1 (error lines are
    /// always written).
    #[arg(long, env = "NORMD_LOG_SAMPLE")]
    pub log_sample: Option<f64>,
    /// Test hook: a call with an `X-Normd-Debug-Panic` header panics on its worker.
    #[arg(long, hide = true, env = "NORMD_DEBUG_PANIC", value_parser = clap::builder::FalseyValueParser::new())]
    pub debug_panic: bool,
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
        default_value = defaults::FLAGS_FILE,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::config::LOG_LEVELS;

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

    /// The defaults table names every `serve` and `check` setting, once, and its values
    /// are the constants resolution uses.
    #[test]
    fn serve_help_takes_every_default_from_the_table() {
        let cmd = Cli::command();
        for name in ["serve", "check"] {
            let sub = cmd.find_subcommand(name).expect(name);
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert_eq!(
                    help.matches("[default:").count(),
                    1,
                    "{name} --{}: {help:?}",
                    arg.get_id()
                );
            }
        }
        let help = |id: &str| {
            let serve = cmd.find_subcommand("serve").unwrap();
            let arg = serve.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help().unwrap().to_string()
        };
        assert!(help("probe_interval_ms")
            .ends_with(&format!("[default: {}]", defaults::PROBE_INTERVAL_MS)));
        assert!(help("max_body_bytes").ends_with("[default: 1Mi]"));
        assert!(help("socket_mode").ends_with("[default: 0660]"));
        assert!(help("log_sample").ends_with("[default: 1.0]"));
        assert!(help("max_queue").ends_with("[default: 16 per worker]"));
    }
}
