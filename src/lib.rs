//! normd: a localhost sidecar that takes normalize → validate → compress of JSON payloads
//! off a garbage-collected app's heap.
//!
//! Module map (data flows one way: listener → admission → pipeline → response):
//!
//! - [`config`]    every knob: CLI flag, `NORMD_*` env, config file, defaults → [`config::Config`]
//! - [`server`]    the Unix socket and 127.0.0.1 listeners, connection limits and timeouts
//! - [`shutdown`]  signals, drain delay, bounded drain
//! - [`api`]       the routes: request parsing, selection, response headers and envelope
//! - [`admission`] CPU pool, bounded queue, deadlines, shedding, in-flight byte budget
//! - [`pipeline`]  the pure core: `canonical` (RFC 8785), `normalize`, `validate`, `codec`
//! - [`health`]    livez/readyz, memory watermarks, the self-probe
//! - [`flags`]     per-endpoint feature flags from a polled file
//! - [`telemetry`] metric names, Prometheus rendering, JSON logs, trace ids
//! - [`error`]     the one problem type and the one failure → status/code map
//! - [`client`]    a one-shot HTTP client over either transport (self-probe, `normd probe`)
//! - [`sched`]     a scheduling hint for the I/O threads (one of the crate's two `unsafe` calls)
//! - [`allocator`] freed memory back to the OS under a memory watermark (the other one)
#![deny(unsafe_code)]

pub mod admission;
pub mod allocator;
pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod flags;
pub mod health;
pub mod pipeline;
pub mod sched;
pub mod server;
pub mod shutdown;
pub mod telemetry;

use std::sync::{Arc, RwLock};

use axum::routing::{get, post};
use axum::Router;

use crate::admission::Admission;
use crate::config::{Config, SchemaSource};
use crate::flags::Flags;
use crate::health::Health;
use crate::pipeline::SchemaSet;

/// Everything the handlers share. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub admission: Arc<Admission>,
    pub flags: Arc<Flags>,
    pub health: Arc<Health>,
    schema_set: Arc<RwLock<Arc<SchemaSet>>>,
    /// Secret marking the self-probe's own calls (see `health::PROBE_HEADER`).
    pub probe_token: Arc<str>,
    /// Hidden test hook: honour `X-Normd-Debug-Panic` (env `NORMD_DEBUG_PANIC=1`).
    pub config_debug_panic: bool,
}

impl AppState {
    /// Builds the state: loads schemas and flags, starts the worker pool. Every problem
    /// with the inputs is returned, named.
    pub fn new(config: Config) -> Result<Self, Vec<String>> {
        let schemas = load_schemas(&config)?;
        check_profiles(&config, &schemas)?;
        let flags = Flags::load(config.flags.clone()).map_err(|e| vec![e])?;
        let memory = health::Memory::new(
            config.memory_limit,
            config.ready_watermark,
            config.shed_watermark,
        );
        let health = Health::new(memory, config.probe_failures);
        health.set_schemas(schemas.len());
        if schemas.is_empty() {
            tracing::warn!(
                "no schemas loaded: /readyz reports `schemas` failing and calls that name a \
                 schema get 503 not_ready until a reload (SIGHUP) finds some"
            );
        }
        schemas
            .iter()
            .for_each(|s| telemetry::schema_known(&s.name));
        health.memory.sample();
        telemetry::deadline_budget(config.default_deadline);
        let inflight_budget =
            config::inflight_budget(config.max_inflight_bytes, health.memory.limit());
        let admission = Admission::start(config.workers, config.max_queue, inflight_budget);
        Ok(Self {
            admission,
            flags: Arc::new(flags),
            health: Arc::new(health),
            schema_set: Arc::new(RwLock::new(Arc::new(schemas))),
            probe_token: format!("{:032x}", fastrand::u128(..)).into(),
            config_debug_panic: std::env::var_os("NORMD_DEBUG_PANIC").is_some_and(|v| v == "1"),
            config: Arc::new(config),
        })
    }

    /// The schema set in force now.
    pub fn schemas(&self) -> Arc<SchemaSet> {
        Arc::clone(&self.schema_set.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads the schemas dir; a failing reload keeps the old set (logged and counted).
    pub fn reload_schemas(&self) -> bool {
        let result = load_schemas(&self.config).and_then(|set| {
            check_profiles(&self.config, &set)?;
            // A dir that went empty (an unmounted volume, a bad deploy) must not wipe a
            // working set.
            if set.is_empty() && !self.schemas().is_empty() {
                return Err(vec!["the schemas dir holds no schemas now".to_owned()]);
            }
            Ok(set)
        });
        match result {
            Ok(set) => {
                let count = set.len();
                set.iter().for_each(|s| telemetry::schema_known(&s.name));
                *self.schema_set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.health.set_schemas(count);
                telemetry::schema_reload(true);
                tracing::info!(schemas = count, "schemas reloaded");
                true
            }
            Err(errors) => {
                telemetry::schema_reload(false);
                for e in &errors {
                    tracing::error!(problem = %e, "schema reload failed; keeping the previous set");
                }
                false
            }
        }
    }
}

/// Loads the configured schema source.
pub fn load_schemas(config: &Config) -> Result<SchemaSet, Vec<String>> {
    load_schemas_from(&config.schemas)
}

/// Loads the schemas from `source`; every error, one per bad file.
pub fn load_schemas_from(source: &SchemaSource) -> Result<SchemaSet, Vec<String>> {
    let loaded = match source {
        SchemaSource::Dir(dir) => SchemaSet::load_dir(dir),
        SchemaSource::Embedded => SchemaSet::embedded(),
    };
    loaded.map_err(|errs| errs.iter().map(|e| format!("schema {e}")).collect())
}

/// Every profile's schema must exist.
pub fn check_profiles(config: &Config, schemas: &SchemaSet) -> Result<(), Vec<String>> {
    check_profile_schemas(
        config
            .profiles
            .iter()
            .filter_map(|(name, p)| Some((name.as_str(), p.schema.as_deref()?))),
        schemas,
    )
}

/// Every (profile, schema) pair's schema must exist.
pub fn check_profile_schemas<'a>(
    named: impl IntoIterator<Item = (&'a str, &'a str)>,
    schemas: &SchemaSet,
) -> Result<(), Vec<String>> {
    let errors: Vec<String> = named
        .into_iter()
        .filter(|(_, s)| schemas.get(s).is_none())
        .map(|(name, s)| {
            format!(
                "profile {name:?}: schema {s:?} is not in the schemas dir (known: {})",
                schemas.names().join(", ")
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The `--metrics-listen` routes: observation only, never work, so it may face the
/// pod network for Prometheus while the work routes stay on loopback and the socket.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics))
        .route("/livez", get(api::livez))
        .route("/readyz", get(api::readyz))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        // Scrapes and health checks here are requests like any other: access log,
        // request metrics, X-Request-Id.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::observe,
        ))
        .with_state(state)
}

/// The routes, identical on both listeners.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/norm", post(api::norm))
        .route("/normalize", post(api::normalize))
        .route("/validate", post(api::validate))
        .route("/compress", post(api::compress))
        .route("/livez", get(api::livez))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/flags", get(api::flags))
        .route("/schemas", get(api::schemas))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::observe,
        ))
        .with_state(state)
}
