//! Building the app: the shared state the handlers read, from a resolved [`Config`], and
//! the background tasks that keep it current (memory sampler, self-probe, flags poller,
//! schema reload on SIGHUP).
//!
//! [`AppState::assemble`] only puts parts together (no threads, files, cgroups or
//! environment), so a router can be built in-process for tests; [`build`] is what
//! `normd serve` runs: it loads schemas and flags, reads the memory limit and starts the
//! worker pool.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::admission::Admission;
use crate::client::Target;
use crate::config::{self, Config, SchemaSource};
use crate::flags::Flags;
use crate::health::{self, Health};
use crate::pipeline::SchemaSet;
use crate::{allocator, paging, telemetry};

/// Everything the handlers share. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) flags: Arc<Flags>,
    pub(crate) health: Arc<Health>,
    schema_set: Arc<RwLock<Arc<SchemaSet>>>,
    /// Secret marking the self-probe's own calls (the `x-normd-probe` header).
    pub(crate) probe_token: Arc<str>,
}

/// Builds the state `normd serve` runs with: loads schemas and flags, reads the memory
/// limit (cgroup or `--memory-limit`), starts the worker pool. Every problem with the
/// inputs is returned, named.
pub fn build(config: Config) -> Result<AppState, Vec<String>> {
    let schemas = load_schemas(&config.schemas)?;
    check_profiles(&config, &schemas)?;
    let flags = Flags::load(config.flags.clone()).map_err(|e| vec![e])?;
    let memory = health::Memory::new(
        config.memory_limit,
        config.ready_watermark,
        config.shed_watermark,
    );
    memory.sample();
    let health = Health::new(memory, config.probe_failures);
    if schemas.is_empty() {
        tracing::warn!(
            "no schemas loaded: /readyz reports `schemas` failing and calls that name a \
             schema get 503 not_ready until a reload (SIGHUP) finds some"
        );
    }
    telemetry::deadline_budget(config.default_deadline);
    let inflight_budget = config::inflight_budget(config.max_inflight_bytes, health.memory.limit());
    let admission = Admission::start(config.workers, config.max_queue, inflight_budget);
    Ok(AppState::assemble(
        config, schemas, flags, health, admission,
    ))
}

impl AppState {
    /// Puts the parts together; starts nothing.
    pub(crate) fn assemble(
        config: Config,
        schemas: SchemaSet,
        flags: Flags,
        health: Health,
        admission: Arc<Admission>,
    ) -> Self {
        health.set_schemas(schemas.len());
        schemas
            .iter()
            .for_each(|s| telemetry::schema_known(&s.name));
        Self {
            admission,
            flags: Arc::new(flags),
            health: Arc::new(health),
            schema_set: Arc::new(RwLock::new(Arc::new(schemas))),
            probe_token: format!("{:032x}", fastrand::u128(..)).into(),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Memory limit in force (cgroup or `--memory-limit`), if any.
    pub fn memory_limit(&self) -> Option<u64> {
        self.health.memory.limit()
    }

    /// The in-flight byte budget the pool admits.
    pub fn max_inflight_bytes(&self) -> usize {
        self.admission.max_inflight_bytes()
    }

    /// The schema set in force now.
    pub fn schemas(&self) -> Arc<SchemaSet> {
        Arc::clone(&self.schema_set.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads the schemas dir; a failing reload keeps the old set (logged and counted).
    pub(crate) fn reload_schemas(&self) -> bool {
        let result = load_schemas(&self.config.schemas).and_then(|set| {
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

/// Loads the schemas from `source`; every error, one per bad file.
pub fn load_schemas(source: &SchemaSource) -> Result<SchemaSet, Vec<String>> {
    let loaded = match source {
        SchemaSource::Dir(dir) => SchemaSet::load_dir(dir),
        SchemaSource::Embedded => SchemaSet::embedded(),
    };
    loaded.map_err(|errs| errs.iter().map(|e| format!("schema {e}")).collect())
}

/// Every profile's schema must exist.
fn check_profiles(config: &Config, schemas: &SchemaSet) -> Result<(), Vec<String>> {
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

/// How often memory is sampled (and, over a watermark, freed memory returned).
const MEMORY_SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// Start-up is done: gives back what only start-up used, its freed heap (config and
/// schema loading allocate and free a few MiB on this thread) and the pages of its code
/// and read-only data ([`paging`]). Call once, before serving; takes a few ms.
pub fn release_start_up_memory() {
    allocator::release_freed_memory();
    paging::release_start_up_pages();
}

/// Background tasks: memory sampler, self-probe of `targets`, flags poller, schema reload
/// on each `hup`. They end when the returned handles are aborted; the self-probe also
/// stops once the listeners stop accepting (its failures then say nothing about health).
pub fn spawn_background(
    state: &AppState,
    targets: Vec<(&'static str, Target)>,
    hup: Option<tokio::signal::unix::Signal>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();

    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(MEMORY_SAMPLE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u64;
        loop {
            tick.tick().await;
            st.health.memory.sample();
            if st.health.memory.shedding() || st.health.memory.over_ready() {
                // Over a watermark, memory freed by finished calls must leave the process
                // now, not when the allocator next gets around to it (see `allocator`).
                if tokio::task::spawn_blocking(allocator::release_freed_memory)
                    .await
                    .is_ok()
                {
                    telemetry::memory_released();
                    st.health.memory.sample();
                }
            }
            st.health.publish();
            n += 1;
            if n % 50 == 0 {
                telemetry::upkeep();
            }
        }
    }));

    let st = state.clone();
    let interval = state.config.probe_interval;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if st.health.stopping() {
                return;
            }
            let result = health::probe_round(&targets, &st.probe_token).await;
            if st.health.stopping() {
                return;
            }
            st.health.probe_result(result.err());
        }
    }));

    if state.flags.path().is_some() {
        let st = state.clone();
        let period = state.config.flags_poll;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let flags = Arc::clone(&st.flags);
                let _ = tokio::task::spawn_blocking(move || flags.poll()).await;
            }
        }));
    }

    if let Some(mut hup) = hup {
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let st2 = st.clone();
                let _ = tokio::task::spawn_blocking(move || st2.reload_schemas()).await;
            }
        }));
    }
    tasks
}
