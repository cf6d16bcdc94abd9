//! Liveness, readiness and memory watermarks, and the self-probe that keeps readiness
//! honest.
//!
//! Owns: the readiness checks (one table, [`CHECK_TABLE`]), the memory sampler with its
//! two hysteresis latches (ready, shed), and the canary sent through the real listeners.
//! Readiness is a latch of its own, distinct from "accepting": normd keeps serving while
//! not ready (drain delay, memory pressure), so a readiness flip alone never cuts the app
//! off.
//! Never: blocks or queues `/livez`, `/readyz` or `/metrics` behind work.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::client::{self, Target};
use crate::telemetry;

/// Readiness/shedding clear this far below their watermark, as a fraction of the limit,
/// so a usage hovering at the line does not flap the state.
const HYSTERESIS: f64 = 0.05;

/// Where the memory figure compared against the watermarks comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemorySource {
    /// `--memory-limit` given: this process's RSS.
    ProcessRss,
    /// Limit read from the cgroup: its working set (usage minus inactive file cache),
    /// the figure the kubelet and the OOM killer act on.
    Cgroup(CgroupVersion),
    /// No limit known: nothing to compare; usage is reported as RSS.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

impl MemorySource {
    fn name(self) -> &'static str {
        match self {
            MemorySource::ProcessRss => "process_rss",
            MemorySource::Cgroup(_) => "cgroup_working_set",
            MemorySource::None => "none",
        }
    }
}

/// Memory state with hysteresis latches.
#[derive(Debug)]
pub struct Memory {
    source: MemorySource,
    limit: Option<u64>,
    ready_fraction: f64,
    shed_fraction: f64,
    usage: AtomicU64,
    over_ready: AtomicBool,
    shedding: AtomicBool,
}

impl Memory {
    /// `explicit` is `--memory-limit`; otherwise the cgroup's limit, if any.
    pub(crate) fn new(explicit: Option<u64>, ready_fraction: f64, shed_fraction: f64) -> Self {
        let (source, limit) = match explicit {
            Some(l) => (MemorySource::ProcessRss, Some(l)),
            None => match cgroup_limit() {
                Some((v, l)) => (MemorySource::Cgroup(v), Some(l)),
                None => (MemorySource::None, None),
            },
        };
        Self {
            source,
            limit,
            ready_fraction,
            shed_fraction,
            usage: AtomicU64::new(0),
            over_ready: AtomicBool::new(false),
            shedding: AtomicBool::new(false),
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub(crate) fn ready_watermark(&self) -> Option<u64> {
        self.limit.map(|l| (l as f64 * self.ready_fraction) as u64)
    }

    pub(crate) fn shed_watermark(&self) -> Option<u64> {
        self.limit.map(|l| (l as f64 * self.shed_fraction) as u64)
    }

    pub(crate) fn usage(&self) -> u64 {
        self.usage.load(Ordering::Relaxed)
    }

    pub(crate) fn shedding(&self) -> bool {
        self.shedding.load(Ordering::Relaxed)
    }

    pub(crate) fn over_ready(&self) -> bool {
        self.over_ready.load(Ordering::Relaxed)
    }

    /// Reads the current usage and moves the latches.
    pub(crate) fn sample(&self) {
        let usage = match self.source {
            MemorySource::Cgroup(v) => cgroup_working_set(v).or_else(process_rss),
            _ => process_rss(),
        }
        .unwrap_or(0);
        self.update(usage);
    }

    /// Moves the latches for a usage figure (separate from `sample` for tests).
    fn update(&self, usage: u64) {
        self.usage.store(usage, Ordering::Relaxed);
        let Some(limit) = self.limit else {
            telemetry::memory(usage, None, None, None);
            return;
        };
        let band = (limit as f64 * HYSTERESIS) as u64;
        let ready_wm = self.ready_watermark().unwrap_or(u64::MAX);
        let shed_wm = self.shed_watermark().unwrap_or(u64::MAX);
        latch(&self.over_ready, usage, ready_wm, band, "ready");
        latch(&self.shedding, usage, shed_wm, band, "shed");
        telemetry::memory(usage, Some(limit), Some(ready_wm), Some(shed_wm));
    }
}

fn latch(flag: &AtomicBool, usage: u64, mark: u64, band: u64, which: &'static str) {
    let on = flag.load(Ordering::Relaxed);
    if !on && usage >= mark {
        flag.store(true, Ordering::Relaxed);
        tracing::warn!(watermark = which, usage, mark, "memory watermark crossed");
    } else if on && usage < mark.saturating_sub(band) {
        flag.store(false, Ordering::Relaxed);
        tracing::info!(
            watermark = which,
            usage,
            mark,
            "memory back under watermark"
        );
    }
}

/// This process's resident set, from /proc/self/status (kB, so no page-size guess).
fn process_rss() -> Option<u64> {
    let mut text = String::new();
    std::fs::File::open("/proc/self/status")
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

const CGROUP_V2: &str = "/sys/fs/cgroup";
const CGROUP_V1_MEM: &str = "/sys/fs/cgroup/memory";

/// The cgroup's memory limit, when there is one (v2 `memory.max`, v1 `limit_in_bytes`;
/// v1 reports "no limit" as a number near 2^63).
fn cgroup_limit() -> Option<(CgroupVersion, u64)> {
    if let Ok(max) = std::fs::read_to_string(Path::new(CGROUP_V2).join("memory.max")) {
        return max
            .trim()
            .parse::<u64>()
            .ok()
            .map(|l| (CgroupVersion::V2, l));
    }
    let v1 =
        std::fs::read_to_string(Path::new(CGROUP_V1_MEM).join("memory.limit_in_bytes")).ok()?;
    let l: u64 = v1.trim().parse().ok()?;
    (l < (1 << 60)).then_some((CgroupVersion::V1, l))
}

fn cgroup_working_set(v: CgroupVersion) -> Option<u64> {
    let (dir, usage_file, inactive_key) = match v {
        CgroupVersion::V2 => (CGROUP_V2, "memory.current", "inactive_file"),
        CgroupVersion::V1 => (
            CGROUP_V1_MEM,
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
    };
    let dir = PathBuf::from(dir);
    let usage: u64 = std::fs::read_to_string(dir.join(usage_file))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let inactive = std::fs::read_to_string(dir.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == inactive_key).then(|| v.trim().parse::<u64>().ok())?
            })
        })
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive))
}

/// Readiness state shared by handlers, the sampler, the prober and shutdown.
#[derive(Debug)]
pub struct Health {
    pub memory: Memory,
    draining: AtomicBool,
    stopping: AtomicBool,
    schemas_loaded: AtomicBool,
    schema_count: AtomicU32,
    probe_failures: AtomicU32,
    probe_threshold: u32,
    probe_rounds: AtomicU64,
    probe_last_error: Mutex<Option<String>>,
    /// Flips once, shortly before the shutdown timeout: calls still waiting for their
    /// body or their work answer 503 `draining` then, before their connections are cut.
    cutoff: tokio::sync::watch::Sender<bool>,
}

/// A readiness check: its name, whether it passes, and what `/readyz` shows besides
/// `ok` and `excluded`.
struct Check {
    name: &'static str,
    ok: fn(&Health) -> bool,
    detail: fn(&Health) -> Value,
}

/// Every readiness check, in the order `/readyz`, its `failing` list and the
/// `normd_check_ok` gauge follow.
const CHECK_TABLE: [Check; 4] = [
    Check {
        name: "draining",
        ok: |h| !h.draining(),
        detail: |h| {
            let state = if h.stopping() {
                "stopping"
            } else if h.draining() {
                "draining"
            } else {
                "serving"
            };
            json!({ "state": state })
        },
    },
    Check {
        name: "memory",
        ok: |h| !h.memory.over_ready(),
        detail: |h| {
            let m = &h.memory;
            json!({
                "source": m.source.name(),
                "usage_bytes": m.usage(),
                "limit_bytes": m.limit(),
                "ready_watermark_bytes": m.ready_watermark(),
                "shed_watermark_bytes": m.shed_watermark(),
                "shedding": m.shedding(),
            })
        },
    },
    Check {
        name: "schemas",
        ok: |h| h.schemas_loaded.load(Ordering::Relaxed),
        detail: |h| json!({ "count": h.schema_count.load(Ordering::Relaxed) }),
    },
    Check {
        name: "probe",
        ok: |h| h.probe_failures.load(Ordering::Relaxed) < h.probe_threshold,
        detail: |h| {
            json!({
                "consecutive_failures": h.probe_failures.load(Ordering::Relaxed),
                "threshold": h.probe_threshold,
                "rounds": h.probe_rounds.load(Ordering::Relaxed),
                "last_error": h.probe_last_error.lock().ok().and_then(|e| e.clone()),
            })
        },
    },
];

/// The checks `/readyz` reports, by name (what `?exclude=` accepts).
pub(crate) const CHECKS: [&str; CHECK_TABLE.len()] = {
    let mut names = [""; CHECK_TABLE.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = CHECK_TABLE[i].name;
        i += 1;
    }
    names
};

impl Health {
    pub(crate) fn new(memory: Memory, probe_threshold: u32) -> Self {
        Self {
            memory,
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            schemas_loaded: AtomicBool::new(false),
            schema_count: AtomicU32::new(0),
            probe_failures: AtomicU32::new(0),
            probe_threshold,
            probe_rounds: AtomicU64::new(0),
            probe_last_error: Mutex::new(None),
            cutoff: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The shutdown timeout is about to cut what is still open: answer now.
    pub(crate) fn cut_off(&self) {
        self.cutoff.send_replace(true);
    }

    /// Resolves once [`Health::cut_off`] was called (never before).
    pub(crate) fn wait_cutoff(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cutoff.subscribe();
        async move {
            if rx.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A shutdown signal arrived: readiness fails from now on, work is still served.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.publish();
    }

    /// The drain delay is over: new work gets 503 `draining`.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// A set of zero schemas counts as not loaded: an empty schemas dir is a missing
    /// mount far more often than a choice.
    pub(crate) fn set_schemas(&self, count: usize) {
        self.schemas_loaded.store(count > 0, Ordering::Relaxed);
        self.schema_count.store(count as u32, Ordering::Relaxed);
    }

    pub(crate) fn probe_result(&self, error: Option<String>) {
        self.probe_rounds.fetch_add(1, Ordering::Relaxed);
        match error {
            None => {
                self.probe_failures.store(0, Ordering::Relaxed);
            }
            Some(e) => {
                let n = self.probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(consecutive = n, error = %e, "self-probe failed");
                if let Ok(mut last) = self.probe_last_error.lock() {
                    *last = Some(e);
                }
            }
        }
        self.publish();
    }

    /// Publishes the readiness gauges: ready, each check, draining, shedding.
    pub(crate) fn publish(&self) {
        let mut ready = true;
        for check in &CHECK_TABLE {
            let ok = (check.ok)(self);
            ready &= ok;
            telemetry::check_state(check.name, ok);
        }
        telemetry::health_state(ready, self.draining(), self.memory.shedding());
    }

    /// The `/readyz` document: every check with `ok`, `excluded` and its details.
    pub(crate) fn readyz(&self, exclude: &[&str]) -> (bool, Value) {
        let mut failing = Vec::new();
        let mut checks = Map::new();
        for check in &CHECK_TABLE {
            let ok = (check.ok)(self);
            let excluded = exclude.contains(&check.name);
            if !ok && !excluded {
                failing.push(check.name);
            }
            let mut entry = Map::new();
            entry.insert("ok".into(), ok.into());
            entry.insert("excluded".into(), excluded.into());
            if let Value::Object(detail) = (check.detail)(self) {
                entry.extend(detail);
            }
            checks.insert(check.name.into(), entry.into());
        }
        let ready = failing.is_empty();
        let body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "failing": failing,
            "checks": checks,
        });
        (ready, body)
    }
}

/// The canary document and the canonical form it must come back as.
const CANARY: &[u8] = br#"{"probe": true, "n": 1.50, "s": "normd"}"#;
const CANARY_CANONICAL: &[u8] = br#"{"n":1.5,"probe":true,"s":"normd"}"#;

/// Header that marks the self-probe's own calls; its value is a per-process secret so
/// no client can use it to skip admission.
pub(crate) const PROBE_HEADER: &str = "x-normd-probe";

/// One probe round: the canary through every listener that is on, via `/norm` (so the
/// pool and pipeline are exercised too), with identity encoding so the answer can be
/// compared byte for byte. `Err` names every listener that failed.
pub(crate) async fn probe_round(
    targets: &[(&'static str, Target)],
    token: &str,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for (listener, target) in targets {
        let result = client::send(
            target,
            http::Method::POST,
            "/norm?encoding=identity",
            &[
                ("content-type", "application/json"),
                (PROBE_HEADER, token),
                ("x-deadline-ms", "1000"),
            ],
            Bytes::from_static(CANARY),
            Duration::from_secs(2),
        )
        .await;
        let outcome = match result {
            Ok(r) if r.status == http::StatusCode::OK && r.body.as_ref() == CANARY_CANONICAL => {
                Ok(())
            }
            // Every connection is taken (by the app, presumably): the listener and the
            // process answer, which is what this probe checks. A full queue or a wedged
            // pool still fails it (those 429s and 504s carry no such header).
            Ok(r)
                if r.status == http::StatusCode::TOO_MANY_REQUESTS
                    && r.headers.get(crate::wire::headers::REFUSED).is_some() =>
            {
                Ok(())
            }
            Ok(r) => Err(format!(
                "{target}: status {} body {:?}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            telemetry::probe_failure(listener);
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(h: &Health, exclude: &[&str]) -> Value {
        h.readyz(exclude).1["failing"].clone()
    }

    fn mem(limit: u64) -> Memory {
        let mut m = Memory::new(Some(limit), 0.8, 0.9);
        m.source = MemorySource::ProcessRss;
        m
    }

    #[test]
    fn watermarks_latch_with_hysteresis() {
        let m = mem(1000);
        m.update(790);
        assert!(!m.over_ready() && !m.shedding());
        m.update(800);
        assert!(m.over_ready() && !m.shedding());
        m.update(900);
        assert!(m.shedding());
        // Inside the band: states hold.
        m.update(860);
        assert!(m.shedding() && m.over_ready());
        m.update(849);
        assert!(!m.shedding() && m.over_ready());
        m.update(760);
        assert!(m.over_ready());
        m.update(749);
        assert!(!m.over_ready());
    }

    #[test]
    fn readiness_names_every_failing_check_and_honours_exclude() {
        let h = Health::new(mem(1000), 2);
        let (ready, body) = h.readyz(&[]);
        assert!(!ready, "schemas not loaded yet");
        assert_eq!(body["failing"], json!(["schemas"]));
        h.set_schemas(2);
        h.memory.update(950);
        h.probe_result(Some("boom".into()));
        assert_eq!(failing(&h, &[]), json!(["memory"]));
        h.probe_result(Some("boom".into()));
        h.set_draining();
        assert_eq!(failing(&h, &[]), json!(["draining", "memory", "probe"]));
        assert_eq!(failing(&h, &["memory", "draining"]), json!(["probe"]));
        h.probe_result(None);
        let (_, body) = h.readyz(&["memory"]);
        assert_eq!(body["checks"]["memory"]["excluded"], true);
        assert_eq!(body["checks"]["probe"]["consecutive_failures"], 0);
        assert_eq!(body["checks"]["probe"]["last_error"], "boom");
    }

    #[test]
    fn rss_is_readable_here() {
        assert!(process_rss().unwrap_or(0) > 0);
    }
}
