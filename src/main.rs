//! `normd` entry point: parse the command line, run the subcommand. Nothing else.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use normd::client::{self, Target};
use normd::config::{self, Cli, Command, Config, FlagsAction, GetArgs, ProbeArgs, ServeArgs};

/// mimalloc instead of glibc malloc: the pipeline allocates and frees many small strings
/// and map nodes per document, and buffers cross threads, which glibc's per-thread caches
/// handle poorly (the README's "Choices made" has the figures). `no_thp` keeps its arenas
/// from growing RSS in 2 MiB steps on nodes where transparent huge pages are `always`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits' EX_USAGE / EX_CONFIG: the operator must fix something before a retry helps.
const EXIT_CONFIG: u8 = 78;
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Check(args) => check(*args),
        Command::Flags(args) => {
            let path = args.flags;
            let result = match &args.action {
                FlagsAction::Get => normd::flags::get_command(&path),
                FlagsAction::Set { assignments, reset } => {
                    normd::flags::set_command(&path, assignments, *reset)
                }
            };
            match result {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("normd flags: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Probe(args) => probe(args),
        Command::Get(args) => get(args),
    }
}

fn runtime(io_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("normd-io")
        .on_thread_start(normd::sched::io_thread_started)
        .on_thread_park(normd::sched::io_thread_parked)
        // A small job may run inline on an I/O thread: it gets a worker's stack.
        .thread_stack_size(normd::sched::JOB_STACK)
        .enable_all()
        .build()
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(errors) => return report("config", &errors, EXIT_USAGE),
    };
    let _log = normd::telemetry::init_logging(&config.log_level);
    normd::telemetry::install_panic_hook();
    normd::telemetry::install_metrics();
    // HTTP parsing is light next to the pipeline; one I/O thread per two workers keeps
    // the sidecar's footprint small while the pool does the CPU work.
    let io_threads = config.workers.div_ceil(2).clamp(1, 4);
    let rt = match runtime(io_threads) {
        Ok(rt) => rt,
        Err(e) => return report("runtime", &[e.to_string()], 1),
    };
    rt.block_on(async move {
        let started = std::time::Instant::now();
        let state = match normd::app::build(config) {
            Ok(s) => s,
            Err(errors) => return report("startup", &errors, EXIT_CONFIG),
        };
        let config = state.config();
        let mut signals = match normd::shutdown::Signals::install() {
            Ok(s) => s,
            Err(e) => return report("signals", &[e.to_string()], 1),
        };
        let listeners = match normd::server::bind(config) {
            Ok(l) => l,
            Err(e) => return report("listen", &[e], 1),
        };
        let shown = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".into(), |a| a.to_string());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            socket = %config.socket.as_ref().map_or_else(|| "off".into(), |p| p.display().to_string()),
            listen = %shown(listeners.tcp.as_ref().and_then(|l| l.local_addr().ok())),
            metrics_listen = %shown(listeners.metrics.as_ref().and_then(|l| l.local_addr().ok())),
            schemas = state.schemas().len(),
            workers = config.workers,
            max_queue = config.max_queue,
            memory_limit = state.memory_limit().unwrap_or(0),
            max_inflight_bytes = state.max_inflight_bytes(),
            startup_ms = started.elapsed().as_secs_f64() * 1000.0,
            "normd serving"
        );
        normd::app::release_start_up_memory();
        let background =
            normd::app::spawn_background(&state, listeners.targets(), signals.take_hangups());
        normd::server::run(state, listeners, signals.requested()).await;
        background.iter().for_each(|task| task.abort());
        ExitCode::SUCCESS
    })
}

/// A one-thread runtime for the short-lived client subcommands (`probe`, `get`).
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn report(stage: &str, errors: &[String], code: u8) -> ExitCode {
    for e in errors {
        eprintln!("normd {stage}: {e}");
    }
    ExitCode::from(code)
}

/// Validates exactly what `serve` would load, without binding anything, and names every
/// problem in one run: the schemas, profiles' schema names and the flags file are
/// checked even when some setting is invalid.
fn check(args: ServeArgs) -> ExitCode {
    let file = match &args.config {
        // Without the file, where the schemas and flags are is unknown: that error alone.
        Some(path) => match config::read_file_config(path) {
            Ok(f) => f,
            Err(e) => return report("check", &[e], 1),
        },
        None => config::FileConfig::default(),
    };
    let sources = config::Sources::resolve(&args, &file);
    let mut errors = Vec::new();
    let config = match Config::resolve(args, file) {
        Ok(c) => Some(c),
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    };
    match normd::app::load_schemas(&sources.schemas) {
        Ok(set) => {
            let named = sources
                .profile_schemas
                .iter()
                .map(|(p, s)| (p.as_str(), s.as_str()));
            if let Err(mut e) = normd::app::check_profile_schemas(named, &set) {
                errors.append(&mut e);
            } else if set.is_empty() {
                // serve would start not ready (the `schemas` check) and answer 503
                // `not_ready` to every call naming a schema.
                if let config::SchemaSource::Dir(d) = &sources.schemas {
                    errors.push(format!(
                        "schemas: no *.json in {}: serve would not be ready",
                        d.display()
                    ));
                }
            } else {
                println!(
                    "schemas: {} loaded from {}",
                    set.len(),
                    match &sources.schemas {
                        config::SchemaSource::Dir(d) => d.display().to_string(),
                        config::SchemaSource::Embedded => "the binary (embedded)".into(),
                    }
                );
            }
        }
        Err(mut e) => errors.append(&mut e),
    }
    // The group is applied to the socket only; with the socket off, serve ignores it.
    if let Some((Some(_), Some(group))) = config.as_ref().map(|c| (&c.socket, &c.socket_group)) {
        match normd::server::resolve_group(group) {
            Ok(gid) => println!("socket group: {group} (gid {gid})"),
            Err(e) => errors.push(e),
        }
    }
    match &sources.flags {
        None => println!("flags: no file (all endpoints enabled)"),
        Some(path) if path.exists() => match normd::flags::check_file(path) {
            Ok(()) => println!("flags: {} ok", path.display()),
            Err(e) => errors.push(e),
        },
        Some(path) => println!(
            "flags: {} does not exist yet (all endpoints enabled until it does)",
            path.display()
        ),
    }
    if let Some(config) = &config {
        println!("profiles: {}", config.profiles.len());
    }
    if errors.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        report("check", &errors, 1)
    }
}

/// One readiness (or liveness) check; exit 0 only if every given transport says yes.
fn probe(args: ProbeArgs) -> ExitCode {
    let mut targets = Vec::new();
    match (&args.socket, &args.tcp) {
        (Some(s), _) if !s.is_empty() => targets.push(Target::Unix(s.into())),
        (None, None) => targets.push(Target::Unix(config::default_socket_path())),
        _ => {}
    }
    if let Some(addr) = &args.tcp {
        match Target::tcp(addr) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("normd probe: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if targets.is_empty() {
        eprintln!("normd probe: nothing to probe (give --socket PATH and/or --tcp ADDR)");
        return ExitCode::from(EXIT_USAGE);
    }
    let path = if args.live {
        "/livez".to_owned()
    } else if args.exclude.is_empty() {
        "/readyz".to_owned()
    } else {
        format!("/readyz?exclude={}", args.exclude.join(","))
    };
    let rt = match client_runtime() {
        Ok(rt) => rt,
        Err(e) => return report("probe", &[e.to_string()], 1),
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let ok = rt.block_on(async {
        let mut all_ok = true;
        for target in &targets {
            match client::send(
                target,
                http::Method::GET,
                &path,
                &[],
                bytes::Bytes::new(),
                timeout,
            )
            .await
            {
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body);
                    println!("{target} {path}: {} {}", r.status.as_u16(), body.trim());
                    all_ok &= r.status.is_success();
                }
                Err(e) => {
                    println!("{target} {path}: unreachable: {e}");
                    all_ok = false;
                }
            }
        }
        all_ok
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints one GET's body; exit 0 on a 2xx, 1 otherwise (the body is printed either way).
fn get(args: GetArgs) -> ExitCode {
    let target = match (&args.tcp, &args.socket) {
        (Some(addr), _) => match Target::tcp(addr) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("normd get: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, Some(s)) if !s.is_empty() => Target::Unix(s.into()),
        _ => Target::Unix(config::default_socket_path()),
    };
    if !args.path.starts_with('/') {
        eprintln!("normd get: the path must start with '/', e.g. /metrics");
        return ExitCode::from(EXIT_USAGE);
    }
    let rt = match client_runtime() {
        Ok(rt) => rt,
        Err(e) => return report("get", &[e.to_string()], 1),
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let result = rt.block_on(client::send(
        &target,
        http::Method::GET,
        &args.path,
        &[],
        bytes::Bytes::new(),
        timeout,
    ));
    match result {
        Ok(r) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&r.body);
            if r.status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "normd get: {target} {}: status {}",
                    args.path,
                    r.status.as_u16()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => report("get", &[e], 1),
    }
}
