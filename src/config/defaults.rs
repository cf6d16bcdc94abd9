//! Every default of `serve`, written once. Resolution (`Config::resolve`) reads these
//! constants; `--help` shows them through [`show_in_help`], so the two cannot disagree.

use clap::Arg;

use super::sizes::show_bytes;

/// File name of the Unix socket, in `$XDG_RUNTIME_DIR` or else the temp dir.
pub(super) const SOCKET_FILE: &str = "normd.sock";
pub(super) const LISTEN: &str = "127.0.0.1:8081";
/// Used when it is a directory; else the schemas embedded in the binary.
pub(super) const SCHEMAS_DIR: &str = "schemas";
/// The flags file of `normd flags`, and of `serve` when it exists and nothing names one
/// (as `./schemas` is for schemas): a local edit then a restart just works on a laptop.
pub(super) const FLAGS_FILE: &str = "./flags.json";
pub(super) const SOCKET_MODE: u32 = 0o660;
pub(super) const ALLOW_NON_LOOPBACK: bool = false;
pub(super) const MAX_BODY_BYTES: u64 = 1 << 20;
pub(super) const MAX_DECODED_BYTES: u64 = 8 << 20;
pub(super) const DEFAULT_DEADLINE_MS: u64 = 20;
pub(super) const MAX_DEADLINE_MS: u64 = 1000;
/// `--max-queue` is this many calls per worker.
pub(super) const QUEUE_PER_WORKER: usize = 16;
pub(super) const READY_WATERMARK: f64 = 0.8;
pub(super) const SHED_WATERMARK: f64 = 0.9;
pub(super) const MAX_CONNECTIONS: usize = 256;
/// `--max-inflight-bytes` is the memory limit divided by this, at least
/// [`INFLIGHT_MIN_BYTES`]; [`INFLIGHT_NO_LIMIT_BYTES`] when no limit is known.
pub(super) const INFLIGHT_LIMIT_DIVISOR: u64 = 4;
pub(super) const INFLIGHT_MIN_BYTES: u64 = 32 << 20;
pub(super) const INFLIGHT_NO_LIMIT_BYTES: u64 = 256 << 20;
pub(super) const DRAIN_DELAY_MS: u64 = 5000;
pub(super) const SHUTDOWN_TIMEOUT_MS: u64 = 15000;
pub(super) const HEADER_READ_TIMEOUT_MS: u64 = 10000;
pub(super) const IDLE_TIMEOUT_MS: u64 = 30000;
pub(super) const SEND_TIMEOUT_MS: u64 = 5000;
pub(super) const MAX_DEPTH: usize = 128;
pub(super) const MAX_ERRORS: usize = 20;
pub(super) const PROBE_INTERVAL_MS: u64 = 1000;
pub(super) const PROBE_FAILURES: u32 = 3;
pub(super) const FLAGS_POLL_MS: u64 = 1000;
pub(super) const LOG_LEVEL: &str = "info";
pub(super) const LOG_SAMPLE: f64 = 1.0;

/// The `[default: …]` shown for a `serve` argument, by clap id (the field name).
fn shown(id: &str) -> Option<String> {
    let text = match id {
        "socket" => format!("$XDG_RUNTIME_DIR/{SOCKET_FILE}, else <tmp>/{SOCKET_FILE}"),
        "listen" => LISTEN.into(),
        "metrics_listen" => "off".into(),
        "schemas" => {
            format!("./{SCHEMAS_DIR} if it exists, else the schemas embedded in the binary")
        }
        "config" => "none: flags, env and the defaults below".into(),
        "flags" => {
            format!("{FLAGS_FILE} if it exists at startup, else none = all enabled, no polling")
        }
        "socket_mode" => format!("{SOCKET_MODE:04o}"),
        "socket_group" => "unchanged".into(),
        "allow_non_loopback" => ALLOW_NON_LOOPBACK.to_string(),
        "max_body_bytes" => show_bytes(MAX_BODY_BYTES),
        "max_decoded_bytes" => show_bytes(MAX_DECODED_BYTES),
        "default_deadline_ms" => DEFAULT_DEADLINE_MS.to_string(),
        "max_deadline_ms" => MAX_DEADLINE_MS.to_string(),
        "workers" => "the cgroup CPU quota, else the CPU count".into(),
        "max_queue" => format!("{QUEUE_PER_WORKER} per worker"),
        "memory_limit" => "cgroup memory.max, else none".into(),
        "ready_watermark" => format!("{READY_WATERMARK:?}"),
        "shed_watermark" => format!("{SHED_WATERMARK:?}"),
        "max_connections" => MAX_CONNECTIONS.to_string(),
        "max_inflight_bytes" => format!(
            "1/{INFLIGHT_LIMIT_DIVISOR} of the memory limit, at least {}; {} when no limit is known",
            show_bytes(INFLIGHT_MIN_BYTES),
            show_bytes(INFLIGHT_NO_LIMIT_BYTES)
        ),
        "drain_delay_ms" => DRAIN_DELAY_MS.to_string(),
        "shutdown_timeout_ms" => SHUTDOWN_TIMEOUT_MS.to_string(),
        "header_read_timeout_ms" => HEADER_READ_TIMEOUT_MS.to_string(),
        "idle_timeout_ms" => IDLE_TIMEOUT_MS.to_string(),
        "send_timeout_ms" => SEND_TIMEOUT_MS.to_string(),
        "max_depth" => MAX_DEPTH.to_string(),
        "max_errors" => MAX_ERRORS.to_string(),
        "probe_interval_ms" => PROBE_INTERVAL_MS.to_string(),
        "probe_failures" => PROBE_FAILURES.to_string(),
        "flags_poll_ms" => FLAGS_POLL_MS.to_string(),
        "log_level" => LOG_LEVEL.into(),
        "log_sample" => format!("{LOG_SAMPLE:?}"),
        _ => return None,
    };
    Some(text)
}

/// Appends `[default: …]` to a `serve` argument's help. Clap's own `default_value` cannot
/// be used: it would fill the value in before the config file is read, hiding the file.
pub(super) fn show_in_help(arg: Arg) -> Arg {
    let Some(default) = shown(arg.get_id().as_str()) else {
        return arg;
    };
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}
