//! Every knob: CLI flag, `NORMD_*` env twin, optional TOML/YAML config file, default —
//! validated into one typed [`Config`].
//!
//! Precedence is flag > env > file > default. Clap resolves flag-or-env; the file only
//! fills what both left empty. Everything is checked before anything starts, and every
//! bad value is reported at once (exit 64), so an operator fixes a manifest in one pass.

mod args;
mod defaults;
mod file;
mod profile;
mod sizes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use args::{Cli, Command, FlagsAction, FlagsArgs, GetArgs, ProbeArgs, ServeArgs};
pub use file::{read_file_config, FileConfig};
pub use profile::Profile;

use profile::resolve_profile;
use sizes::{parse_bytes, ByteSize};

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
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) schemas: SchemaSource,
    pub(crate) flags: Option<PathBuf>,
    pub(crate) socket_mode: u32,
    pub socket_group: Option<String>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_decoded_bytes: usize,
    pub(crate) default_deadline: Duration,
    pub(crate) max_deadline: Duration,
    pub workers: usize,
    pub max_queue: usize,
    /// Explicit limit; `None` means "ask the cgroup at runtime".
    pub(crate) memory_limit: Option<u64>,
    pub(crate) ready_watermark: f64,
    pub(crate) shed_watermark: f64,
    pub(crate) max_connections: usize,
    /// `None`: derived from the memory limit, see [`inflight_budget`].
    pub(crate) max_inflight_bytes: Option<usize>,
    pub(crate) drain_delay: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_depth: usize,
    pub(crate) max_errors: usize,
    pub(crate) probe_interval: Duration,
    pub(crate) probe_failures: u32,
    pub(crate) flags_poll: Duration,
    pub log_level: String,
    pub(crate) log_sample: f64,
    /// Test hook: honour `X-Normd-Debug-Panic` (hidden `--debug-panic`,
    /// `NORMD_DEBUG_PANIC=1`).
    pub(crate) debug_panic: bool,
    pub profiles: BTreeMap<String, Profile>,
}

/// `--max-inflight-bytes` when not given: a share of the memory limit (explicit or the
/// cgroup's), with a floor; a fixed budget when no limit is known. Only a share: RSS also
/// holds what the budget does not see (allocator caches, connection buffers, the process).
pub(crate) fn inflight_budget(explicit: Option<usize>, memory_limit: Option<u64>) -> usize {
    let bytes = match memory_limit {
        Some(limit) => (limit / defaults::INFLIGHT_LIMIT_DIVISOR).max(defaults::INFLIGHT_MIN_BYTES),
        None => defaults::INFLIGHT_NO_LIMIT_BYTES,
    };
    explicit.unwrap_or(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// Where to put the socket when nothing says: `$XDG_RUNTIME_DIR`, else the temp dir.
pub fn default_socket_path() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty() && Path::new(d).is_dir())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(defaults::SOCKET_FILE)
}

/// What `--log-level` accepts.
pub(crate) const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

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
            .unwrap_or(defaults::ALLOW_NON_LOOPBACK);
        let listen = match args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| defaults::LISTEN.into())
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
            .unwrap_or_else(|| format!("{:04o}", defaults::SOCKET_MODE));
        let socket_mode = match u32::from_str_radix(socket_mode_text.trim_start_matches("0o"), 8) {
            Ok(m) if m > 0o777 => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: only permission bits (at most 0777) apply to a socket"
                ));
                defaults::SOCKET_MODE
            }
            // Without them only root could connect: not the app, not normd's self-probe.
            Ok(m) if m & 0o600 != 0o600 => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: the owner needs read and write (0600) to connect; e.g. 0660"
                ));
                defaults::SOCKET_MODE
            }
            Ok(m) => m,
            Err(_) => {
                err(format!(
                    "--socket-mode {socket_mode_text:?}: expected an octal mode such as 0660"
                ));
                defaults::SOCKET_MODE
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
            defaults::MAX_BODY_BYTES,
        ) as usize;
        let max_decoded_bytes = bytes(
            "max-decoded-bytes",
            args.max_decoded_bytes,
            file.max_decoded_bytes,
            defaults::MAX_DECODED_BYTES,
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
            defaults::DEFAULT_DEADLINE_MS,
            1,
        );
        let max_deadline = ms(
            "max-deadline-ms",
            args.max_deadline_ms.or(file.max_deadline_ms),
            defaults::MAX_DEADLINE_MS,
            1,
        );
        let drain_delay = ms(
            "drain-delay-ms",
            args.drain_delay_ms.or(file.drain_delay_ms),
            defaults::DRAIN_DELAY_MS,
            0,
        );
        let shutdown_timeout = ms(
            "shutdown-timeout-ms",
            args.shutdown_timeout_ms.or(file.shutdown_timeout_ms),
            defaults::SHUTDOWN_TIMEOUT_MS,
            1,
        );
        let header_read_timeout = ms(
            "header-read-timeout-ms",
            args.header_read_timeout_ms.or(file.header_read_timeout_ms),
            defaults::HEADER_READ_TIMEOUT_MS,
            1,
        );
        let idle_timeout = ms(
            "idle-timeout-ms",
            args.idle_timeout_ms.or(file.idle_timeout_ms),
            defaults::IDLE_TIMEOUT_MS,
            1,
        );
        let send_timeout = ms(
            "send-timeout-ms",
            args.send_timeout_ms.or(file.send_timeout_ms),
            defaults::SEND_TIMEOUT_MS,
            1,
        );
        let probe_interval = ms(
            "probe-interval-ms",
            args.probe_interval_ms.or(file.probe_interval_ms),
            defaults::PROBE_INTERVAL_MS,
            10,
        );
        let flags_poll = ms(
            "flags-poll-ms",
            args.flags_poll_ms.or(file.flags_poll_ms),
            defaults::FLAGS_POLL_MS,
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
            None => workers * defaults::QUEUE_PER_WORKER,
        };
        let max_connections = match args.max_connections.or(file.max_connections) {
            Some(0) => {
                err("--max-connections 0: need at least one connection".into());
                1
            }
            Some(n) => n,
            None => defaults::MAX_CONNECTIONS,
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
            defaults::READY_WATERMARK,
        );
        let shed_watermark = fraction(
            "shed-watermark",
            args.shed_watermark.or(file.shed_watermark),
            defaults::SHED_WATERMARK,
        );
        // 0 is a sampling rate too: only error lines.
        let log_sample = match args.log_sample.or(file.log_sample) {
            Some(v) if !(0.0..=1.0).contains(&v) => {
                err(format!("--log-sample {v}: must be a fraction in [0, 1]"));
                defaults::LOG_SAMPLE
            }
            v => v.unwrap_or(defaults::LOG_SAMPLE),
        };
        if shed_watermark < ready_watermark {
            err(format!(
                "--shed-watermark {shed_watermark} is below --ready-watermark {ready_watermark}: \
                 shedding must start at or above the readiness watermark"
            ));
        }
        let max_depth = args
            .max_depth
            .or(file.max_depth)
            .unwrap_or(defaults::MAX_DEPTH);
        if !(1..=1024).contains(&max_depth) {
            err(format!("--max-depth {max_depth}: must be within 1..=1024"));
        }
        let max_errors = args
            .max_errors
            .or(file.max_errors)
            .unwrap_or(defaults::MAX_ERRORS)
            .max(1);
        let probe_failures = args
            .probe_failures
            .or(file.probe_failures)
            .unwrap_or(defaults::PROBE_FAILURES)
            .max(1);
        let log_level = args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| defaults::LOG_LEVEL.into());
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            err(format!(
                "--log-level {log_level:?}: expected one of {}",
                LOG_LEVELS.join(", ")
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
            debug_panic: args.debug_panic,
            profiles,
        })
    }
}

/// `--schemas` if given, else `./schemas` if it is a directory, else the embedded set.
fn schema_source(named: Option<PathBuf>) -> SchemaSource {
    match named {
        Some(dir) => SchemaSource::Dir(dir),
        None if Path::new(defaults::SCHEMAS_DIR).is_dir() => {
            SchemaSource::Dir(PathBuf::from(defaults::SCHEMAS_DIR))
        }
        None => SchemaSource::Embedded,
    }
}

/// `--flags` if given ('' = none), else `./flags.json` if it is a file.
fn flags_path(named: Option<PathBuf>) -> Option<PathBuf> {
    match named {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path),
        None => Some(PathBuf::from(defaults::FLAGS_FILE)).filter(|p| p.is_file()),
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

#[cfg(test)]
mod tests {
    use super::file::parse_file_config;
    use super::*;

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
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.socket_group, None);
        assert_eq!(c.max_deadline, Duration::from_millis(1000));
        assert_eq!(c.max_queue, c.workers * 16);
        assert_eq!(c.memory_limit, None);
        assert_eq!(c.max_connections, 256);
        assert_eq!(c.drain_delay, Duration::from_millis(5000));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(15000));
        assert_eq!(c.header_read_timeout, Duration::from_millis(10000));
        assert_eq!(c.idle_timeout, Duration::from_millis(30000));
        assert_eq!(c.send_timeout, Duration::from_millis(5000));
        assert_eq!(c.max_depth, 128);
        assert_eq!(c.max_errors, 20);
        assert_eq!(c.probe_interval, Duration::from_millis(1000));
        assert_eq!(c.probe_failures, 3);
        assert_eq!(c.flags_poll, Duration::from_millis(1000));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_sample, 1.0);
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
}
