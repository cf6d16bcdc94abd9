//! Per-endpoint feature flags: `{enabled, rollout_percent, shadow_percent}` for norm, normalize,
//! validate and compress, read from a JSON or YAML file and re-read when it changes.
//!
//! Owns: the flags file format, the last good flag set, and the atomic edit behind
//! `normd flags set`. Polls rather than watches: Kubernetes updates a mounted ConfigMap
//! by swapping a `..data` symlink, which inotify on the file itself never reports, while
//! a content hash every poll period always sees it, and costs one small read.
//! Never: drops the last good flags for a file that does not parse.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::telemetry;
use crate::wire::Work;

/// The endpoints that have a flag: the work routes, by name.
pub(crate) const ENDPOINTS: [&str; 4] = {
    let mut names = [""; 4];
    let mut i = 0;
    while i < Work::ALL.len() {
        names[i] = Work::ALL[i].name();
        i += 1;
    }
    names
};

/// The fields of a flag, as `normd flags set` names them in its errors.
const FIELDS: &str = "enabled, rollout_percent, shadow_percent";

/// One endpoint's flag. Missing file or missing endpoint: enabled, rollout 100, shadow 0.
/// Both percentages are for the app-side client: `rollout_percent` is the sticky share of
/// calls it sends to normd, `shadow_percent` the share it runs both ways and compares
/// (answering with its in-app result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Flag {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "hundred")]
    pub rollout_percent: u8,
    #[serde(default)]
    pub shadow_percent: u8,
}

fn yes() -> bool {
    true
}
fn hundred() -> u8 {
    100
}

/// A flag as written in the file: `rollout_percent` read as any integer, so that a value
/// out of range is refused naming its endpoint and the bound (read as `u8` directly, 500
/// would only say "expected u8").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFlag {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "hundred_wide")]
    rollout_percent: WidePercent,
    #[serde(default = "zero_wide")]
    shadow_percent: WidePercent,
}

fn hundred_wide() -> WidePercent {
    WidePercent(100)
}

fn zero_wide() -> WidePercent {
    WidePercent(0)
}

/// Any integer (saturated to `i64`); fractions and strings are still type errors.
#[derive(Debug)]
struct WidePercent(i64);

impl<'de> Deserialize<'de> for WidePercent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = WidePercent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer percentage 0..=100")
            }
            fn visit_i64<E>(self, v: i64) -> Result<WidePercent, E> {
                Ok(WidePercent(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<WidePercent, E> {
                Ok(WidePercent(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            // JSON reads an integer literal past 64 bits as a float: out of range, not a
            // fraction. Any other float is the type error it looks like.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<WidePercent, E> {
                if v.fract() == 0.0 && v.abs() >= 9.2e18 {
                    Ok(WidePercent(if v > 0.0 { i64::MAX } else { i64::MIN }))
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_i64(Visit)
    }
}

impl Default for Flag {
    fn default() -> Self {
        Self {
            enabled: true,
            rollout_percent: 100,
            shadow_percent: 0,
        }
    }
}

/// A parsed flags file, with where it came from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// `sha256:` + 16 hex digits of the file's bytes, or `default` without a file.
    pub version: String,
    /// The file's modification time (RFC 3339), through symlinks.
    pub mtime: Option<String>,
    pub source: Option<String>,
    pub flags: BTreeMap<String, Flag>,
    /// Why the newest file content was refused, while the last good flags stay in force.
    pub last_error: Option<String>,
}

impl Snapshot {
    fn defaults(source: Option<&Path>) -> Self {
        Self {
            version: "default".into(),
            mtime: None,
            source: source.map(|p| p.display().to_string()),
            flags: ENDPOINTS
                .iter()
                .map(|e| ((*e).to_owned(), Flag::default()))
                .collect(),
            last_error: None,
        }
    }

    pub(crate) fn get(&self, endpoint: &str) -> Flag {
        self.flags.get(endpoint).copied().unwrap_or_default()
    }
}

/// The live flags, shared by the handlers and the poller.
#[derive(Debug)]
pub(crate) struct Flags {
    path: Option<PathBuf>,
    current: RwLock<Arc<Snapshot>>,
    /// Hash of the last content looked at, good or bad, so a bad file is logged once.
    seen: RwLock<Option<String>>,
    /// Why the file cannot be read right now (missing, permission denied), so that is
    /// logged and counted once, not on every poll.
    trouble: Mutex<Option<String>>,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reload {
    /// Nothing new: same content, or the same problem as last time.
    Unchanged,
    /// New flags took effect.
    Applied,
    /// New content that does not parse, or a file gone missing or unreadable: the last
    /// good flags stay, `last_error` says why, and it was logged and counted.
    Refused,
}

impl Flags {
    /// Without a file: all enabled at 100 %.
    pub(crate) fn defaults() -> Self {
        Self {
            path: None,
            current: RwLock::new(Arc::new(Snapshot::defaults(None))),
            seen: RwLock::new(None),
            trouble: Mutex::new(None),
        }
    }

    /// Loads `path` at startup. A file that exists but does not parse is an error (the
    /// operator meant something); a file that does not exist yet means defaults until
    /// it appears (a ConfigMap may be created after the pod).
    pub(crate) fn load(path: Option<PathBuf>) -> Result<Self, String> {
        let Some(path) = path else {
            let flags = Self::defaults();
            // The flag gauges exist with or without a file (dashboards and alerts read
            // them either way).
            flags.publish(Snapshot::defaults(None));
            return Ok(flags);
        };
        let flags = Self {
            current: RwLock::new(Arc::new(Snapshot::defaults(Some(&path)))),
            path: Some(path.clone()),
            seen: RwLock::new(None),
            trouble: Mutex::new(None),
        };
        if path.exists() {
            let snap = read_snapshot(&path)?;
            *flags.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(snap.version.clone());
            flags.publish(snap);
        } else {
            tracing::warn!(path = %path.display(), "flags file not found; all endpoints enabled until it appears");
            flags.publish(Snapshot::defaults(Some(&path)));
            // Already said; and the defaults are what no file means, so no last_error.
            *flags.trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(missing_message(&path));
        }
        Ok(flags)
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn get(&self, endpoint: &str) -> Flag {
        self.snapshot().get(endpoint)
    }

    fn publish(&self, snap: Snapshot) {
        for e in ENDPOINTS {
            let f = snap.get(e);
            telemetry::flag_state(e, f.enabled, f.rollout_percent, f.shadow_percent);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    /// Re-reads the file if its content changed, or if it came back after going missing
    /// or unreadable.
    pub(crate) fn poll(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return self.cannot_read(path, &e),
        };
        let version = version_of(&bytes);
        let was = self
            .trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(was) = was {
            tracing::info!(path = %path.display(), was = %was, "flags file readable again");
            let current = self.snapshot();
            if current.version == version {
                // The content in force came back: nothing to reload, nothing wrong.
                let mut snap = (*current).clone();
                snap.last_error = None;
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
                *self.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(version);
                return Reload::Unchanged;
            }
            // Whatever came back is judged afresh, even content seen before it went away.
            *self.seen.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if seen.as_deref() == Some(version.as_str()) {
                return Reload::Unchanged;
            }
        }
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = Some(version.clone());
        match parse(path, &bytes) {
            Ok(flags) => {
                let snap = Snapshot {
                    version,
                    mtime: mtime_of(path),
                    source: Some(path.display().to_string()),
                    flags,
                    last_error: None,
                };
                tracing::info!(path = %path.display(), version = %snap.version, "flags reloaded");
                telemetry::flag_reload(true);
                self.publish(snap);
                Reload::Applied
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "invalid flags file; keeping last good flags");
                self.refuse(e)
            }
        }
    }

    /// A file that went missing or unreadable: logged, counted and shown once per cause.
    fn cannot_read(&self, path: &Path, e: &std::io::Error) -> Reload {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            missing_message(path)
        } else {
            format!(
                "flags {}: cannot read: {e}; keeping the last flags",
                path.display()
            )
        };
        {
            let mut trouble = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
            if trouble.as_deref() == Some(problem.as_str()) {
                return Reload::Unchanged;
            }
            *trouble = Some(problem.clone());
        }
        if e.kind() == std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "flags file missing; keeping the last flags");
        } else {
            tracing::warn!(path = %path.display(), error = %e, "flags file unreadable; keeping the last flags");
        }
        self.refuse(problem)
    }

    /// Keeps the flags in force, names `problem` on GET /flags, counts it.
    fn refuse(&self, problem: String) -> Reload {
        telemetry::flag_reload(false);
        let mut snap = (*self.snapshot()).clone();
        snap.last_error = Some(problem);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        Reload::Refused
    }
}

fn missing_message(path: &Path) -> String {
    format!(
        "flags {}: the file is missing; keeping the last flags",
        path.display()
    )
}

fn version_of(bytes: &[u8]) -> String {
    let hex = format!("{:x}", Sha256::digest(bytes));
    format!("sha256:{}", &hex[..16])
}

fn mtime_of(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    time::OffsetDateTime::from(modified)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn read_snapshot(path: &Path) -> Result<Snapshot, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("flags {}: {e}", path.display()))?;
    let flags = parse(path, &bytes)?;
    Ok(Snapshot {
        version: version_of(&bytes),
        mtime: mtime_of(path),
        source: Some(path.display().to_string()),
        flags,
        last_error: None,
    })
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

/// Every endpoint enabled at 100 %: what no file means, and what `set --reset` starts from.
fn default_flags() -> BTreeMap<String, Flag> {
    ENDPOINTS
        .iter()
        .map(|e| ((*e).to_owned(), Flag::default()))
        .collect()
}

/// Parses a flags document. Unknown endpoints and fields are errors: a typo must not
/// silently leave an endpoint at 100 %. An empty (or whitespace-only) file is an error
/// too: that is what a poll sees in the middle of a non-atomic write (`echo > flags.json`,
/// an editor truncating first), and reading it as "all enabled" would undo a kill switch.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Flag>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "flags {}: the file is empty; write {{}} for the defaults",
            path.display()
        ));
    }
    let raw: BTreeMap<String, FileFlag> = if is_yaml(path) {
        let yaml_error = |e: serde_norway::Error| format!("flags {}: {e}", path.display());
        // Comments alone (or a bare `---`) are no document, which serde reads as `{}`.
        let doc: serde_norway::Value = serde_norway::from_slice(bytes).map_err(yaml_error)?;
        if doc.is_null() {
            return Err(format!(
                "flags {}: the file holds no YAML document; write {{}} for the defaults",
                path.display()
            ));
        }
        serde_norway::from_slice(bytes).map_err(yaml_error)?
    } else {
        serde_json::from_slice(bytes).map_err(|e| format!("flags {}: {e}", path.display()))?
    };
    let mut flags = default_flags();
    for (name, flag) in raw {
        if !ENDPOINTS.contains(&name.as_str()) {
            return Err(format!(
                "flags {}: unknown endpoint {name:?} (known: {})",
                path.display(),
                ENDPOINTS.join(", ")
            ));
        }
        let percent = |field: &str, value: &WidePercent| {
            u8::try_from(value.0)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    format!(
                        "flags {}: {name}.{field} {} is outside 0..=100",
                        path.display(),
                        value.0
                    )
                })
        };
        let rollout_percent = percent("rollout_percent", &flag.rollout_percent)?;
        let shadow_percent = percent("shadow_percent", &flag.shadow_percent)?;
        flags.insert(
            name,
            Flag {
                enabled: flag.enabled,
                rollout_percent,
                shadow_percent,
            },
        );
    }
    Ok(flags)
}

/// Validates a flags file for `normd check`.
pub fn check_file(path: &Path) -> Result<(), String> {
    read_snapshot(path).map(|_| ())
}

/// `normd flags get`: the effective flags as JSON.
pub fn get_command(path: &Path) -> Result<String, String> {
    let snap = if path.exists() {
        read_snapshot(path)?
    } else {
        Snapshot::defaults(Some(path))
    };
    serde_json::to_string_pretty(&snap).map_err(|e| e.to_string())
}

/// `normd flags set a.b=v ...`: edits the file atomically (temp file in the same dir,
/// fsync, rename), so the poller never reads a half-written file.
pub fn set_command(path: &Path, assignments: &[String], reset: bool) -> Result<String, String> {
    let mut flags = if path.exists() && !reset {
        let bytes = std::fs::read(path).map_err(|e| format!("flags {}: {e}", path.display()))?;
        parse(path, &bytes).map_err(|e| format!("{e} (--reset starts from the defaults)"))?
    } else {
        default_flags()
    };
    for a in assignments {
        let (key, value) = a.split_once('=').ok_or_else(|| {
            format!("{a:?}: expected ENDPOINT.FIELD=VALUE, e.g. norm.rollout_percent=25")
        })?;
        let (endpoint, field) = key
            .trim()
            .split_once('.')
            .ok_or_else(|| format!("{key:?}: expected ENDPOINT.FIELD (fields: {FIELDS})"))?;
        let flag = flags.get_mut(endpoint).ok_or_else(|| {
            format!(
                "unknown endpoint {endpoint:?} (known: {})",
                ENDPOINTS.join(", ")
            )
        })?;
        let value = value.trim();
        match field {
            "enabled" => {
                flag.enabled = value
                    .parse()
                    .map_err(|_| format!("{key}={value}: expected true or false"))?
            }
            "rollout_percent" | "shadow_percent" => {
                let percent = value
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("{key}={value}: expected an integer 0..=100"))?;
                if field == "rollout_percent" {
                    flag.rollout_percent = percent;
                } else {
                    flag.shadow_percent = percent;
                }
            }
            other => return Err(format!("unknown field {other:?} (fields: {FIELDS})")),
        }
    }
    let mut text = if is_yaml(path) {
        serde_norway::to_string(&flags).map_err(|e| e.to_string())?
    } else {
        serde_json::to_string_pretty(&flags).map_err(|e| e.to_string())?
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_atomically(path, text.as_bytes())
        .map_err(|e| format!("flags {}: cannot write: {e}", path.display()))?;
    Ok(text)
}

/// Replaces the file `path` leads to. Through symlinks: the temp file goes next to the
/// final target and is renamed over it, so a link (a ConfigMap-style layout, a file kept
/// in a config repo) stays a link. An existing file keeps its permission bits (a 0640
/// file must not become world-readable); a new one gets the usual mode from the umask.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = resolve_links(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags".into());
    let mode = match std::fs::metadata(&target) {
        Ok(m) => Some(m.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Follows `path` through symlinks (relative ones from the link's directory) to the file
/// a write must replace, which may not exist yet: `std::fs::canonicalize` fails on a
/// link whose target is still to be created, hence this walk.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut at = path.to_path_buf();
    // The kernel's own limit on a chain of links (ELOOP).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                };
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_endpoints_default_to_enabled_100() {
        let f = parse(
            Path::new("f.json"),
            br#"{"norm":{"enabled":true,"rollout_percent":5}}"#,
        )
        .unwrap();
        assert_eq!(f["norm"].rollout_percent, 5);
        assert_eq!(f["compress"], Flag::default());
    }

    #[test]
    fn typos_are_errors() {
        assert!(parse(Path::new("f.json"), br#"{"nrom":{}}"#).is_err());
        assert!(parse(Path::new("f.json"), br#"{"norm":{"enable":false}}"#).is_err());
        // Out of range, in or beyond a byte: refused naming the endpoint and the bound.
        for v in ["101", "500", "-5", "99999999999999999999"] {
            let mut docs = vec![("f.json", format!(r#"{{"norm":{{"rollout_percent":{v}}}}}"#))];
            if v.len() < 19 {
                // (YAML past 64 bits is refused by the YAML reader itself.)
                docs.push(("f.yaml", format!("norm:\n  rollout_percent: {v}\n")));
            }
            for (name, doc) in docs {
                let e = parse(Path::new(name), doc.as_bytes()).unwrap_err();
                assert!(
                    e.contains("norm.rollout_percent") && e.contains("outside 0..=100"),
                    "{name} {v}: {e}"
                );
            }
        }
        let e = parse(Path::new("f.json"), br#"{"norm":{"rollout_percent":50.5}}"#).unwrap_err();
        assert!(e.contains("an integer percentage 0..=100"), "{e}");
        assert!(parse(Path::new("f.yaml"), b"norm:\n  enabled: nope\n").is_err());
    }

    #[test]
    fn an_empty_file_is_invalid_in_json_and_yaml() {
        for (name, bytes) in [
            ("f.json", &b""[..]),
            ("f.json", b" \n\t\n"),
            ("f.yaml", b""),
            ("f.yml", b"\n  \n"),
        ] {
            let e = parse(Path::new(name), bytes).unwrap_err();
            assert!(e.contains("empty") && e.contains("{}"), "{name}: {e}");
        }
        for bytes in [&b"# all flags commented out\n"[..], b"---\n", b"~\n"] {
            let e = parse(Path::new("f.yaml"), bytes).unwrap_err();
            assert!(e.contains("{}"), "{e}");
        }
        // `{}` is the way to say "defaults".
        assert_eq!(
            parse(Path::new("f.json"), b"{}\n").unwrap(),
            default_flags()
        );
        assert_eq!(
            parse(Path::new("f.yaml"), b"{}\n").unwrap(),
            default_flags()
        );
    }

    #[test]
    fn an_emptied_file_keeps_the_last_good_flags_and_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        std::fs::write(&path, br#"{"norm":{"enabled":false}}"#).unwrap();
        let flags = Flags::load(Some(path.clone())).unwrap();
        // What `echo > flags.json` leaves for a poll that lands mid-write.
        std::fs::write(&path, b"\n").unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        assert!(!flags.get("norm").enabled, "the kill switch stays on");
        assert!(flags
            .snapshot()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("empty"));
        let e = Flags::load(Some(path.clone())).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(check_file(&path).unwrap_err().contains("empty"));
        let e = set_command(&path, &["norm.rollout_percent=5".into()], false).unwrap_err();
        assert!(e.contains("--reset"), "{e}");
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn set_keeps_the_permission_bits_of_an_existing_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        for mode in [0o640, 0o600, 0o664] {
            std::fs::write(&path, b"{}").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            set_command(&path, &["norm.rollout_percent=7".into()], false).unwrap();
            assert_eq!(mode_of(&path), mode, "mode {mode:o}");
            assert_eq!(
                Flags::load(Some(path.clone()))
                    .unwrap()
                    .get("norm")
                    .rollout_percent,
                7
            );
        }
    }

    #[test]
    fn set_writes_through_a_symlink_and_keeps_it() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("flags.json"), br#"{"norm":{"enabled":false}}"#).unwrap();
        std::fs::set_permissions(
            real.join("flags.json"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        // A relative link to a relative link.
        symlink("real/flags.json", dir.path().join("mid.json")).unwrap();
        symlink("mid.json", dir.path().join("flags.json")).unwrap();
        let link = dir.path().join("flags.json");
        set_command(&link, &["norm.rollout_percent=5".into()], false).unwrap();
        for l in ["flags.json", "mid.json"] {
            let m = std::fs::symlink_metadata(dir.path().join(l)).unwrap();
            assert!(m.file_type().is_symlink(), "{l} is still a link");
        }
        let f = parse(
            Path::new("f.json"),
            &std::fs::read(real.join("flags.json")).unwrap(),
        )
        .unwrap();
        assert!(
            !f["norm"].enabled,
            "the edit started from the target's content"
        );
        assert_eq!(f["norm"].rollout_percent, 5);
        assert_eq!(mode_of(&real.join("flags.json")), 0o640);
        assert_eq!(
            names_in(&real),
            vec!["flags.json"],
            "the temp file was renamed away"
        );
        assert_eq!(names_in(dir.path()), vec!["flags.json", "mid.json", "real"]);

        // A dangling link: the target is created, the link kept.
        symlink("real/new.json", dir.path().join("new.json")).unwrap();
        set_command(
            &dir.path().join("new.json"),
            &["compress.enabled=false".into()],
            false,
        )
        .unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("new.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(real.join("new.json").is_file());

        // A loop is an error, not a hang.
        symlink("loop.json", dir.path().join("loop.json")).unwrap();
        let e = set_command(
            &dir.path().join("loop.json"),
            &["norm.enabled=true".into()],
            true,
        )
        .unwrap_err();
        assert!(e.contains("symbolic links"), "{e}");
    }

    #[test]
    fn a_missing_or_unreadable_file_is_reported_once_and_cleared_when_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let good = br#"{"norm":{"enabled":false}}"#;
        std::fs::write(&path, good).unwrap();
        let flags = Flags::load(Some(path.clone())).unwrap();
        let version = flags.snapshot().version.clone();
        let last_error = || flags.snapshot().last_error.clone().unwrap_or_default();

        std::fs::remove_file(&path).unwrap();
        assert_eq!(flags.poll(), Reload::Refused, "logged and counted");
        assert!(last_error().contains("missing"), "{}", last_error());
        assert_eq!(
            flags.poll(),
            Reload::Unchanged,
            "not again on the next poll"
        );
        assert!(!flags.get("norm").enabled, "the last flags are kept");
        assert_eq!(flags.snapshot().version, version);
        std::fs::write(&path, good).unwrap();
        assert_eq!(flags.poll(), Reload::Unchanged, "the same flags are back");
        assert_eq!(flags.snapshot().last_error, None);

        // Unreadable: a directory in its place (permission bits do not stop root).
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        assert!(last_error().contains("cannot read"), "{}", last_error());
        assert_eq!(flags.poll(), Reload::Unchanged);
        std::fs::remove_dir(&path).unwrap();
        assert_eq!(flags.poll(), Reload::Refused, "now missing: a new cause");
        assert_eq!(flags.poll(), Reload::Unchanged);

        // Back with new content: applied.
        std::fs::write(&path, br#"{"norm":{"enabled":true}}"#).unwrap();
        assert_eq!(flags.poll(), Reload::Applied);
        assert!(flags.get("norm").enabled);
        assert_eq!(flags.snapshot().last_error, None);

        // Bad content, gone, back the same: refused again (judged afresh).
        std::fs::write(&path, b"{oops").unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        std::fs::write(&path, b"{oops").unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        assert!(!last_error().contains("missing"), "{}", last_error());
        assert!(flags.get("norm").enabled);
    }

    #[test]
    fn a_file_missing_at_startup_is_not_an_error_until_it_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        let flags = Flags::load(Some(path.clone())).unwrap();
        assert_eq!(flags.poll(), Reload::Unchanged, "warned at load already");
        assert_eq!(flags.snapshot().last_error, None);
        std::fs::write(&path, br#"{"norm":{"rollout_percent":3}}"#).unwrap();
        assert_eq!(flags.poll(), Reload::Applied);
        assert_eq!(flags.get("norm").rollout_percent, 3);
    }

    #[test]
    fn shadow_percent_is_read_ranged_and_set_like_rollout_percent() {
        let f = parse(
            Path::new("f.json"),
            br#"{"norm":{"rollout_percent":5,"shadow_percent":40}}"#,
        )
        .unwrap();
        assert_eq!(
            (f["norm"].rollout_percent, f["norm"].shadow_percent),
            (5, 40)
        );
        assert_eq!(f["validate"].shadow_percent, 0, "default: no shadow");
        for v in ["101", "-1"] {
            let doc = format!(r#"{{"norm":{{"shadow_percent":{v}}}}}"#);
            let e = parse(Path::new("f.json"), doc.as_bytes()).unwrap_err();
            assert!(
                e.contains("norm.shadow_percent") && e.contains("0..=100"),
                "{v}: {e}"
            );
        }
        for v in ["1.5", "\"10\""] {
            let doc = format!(r#"{{"norm":{{"shadow_percent":{v}}}}}"#);
            let e = parse(Path::new("f.json"), doc.as_bytes()).unwrap_err();
            assert!(e.contains("an integer percentage"), "{v}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.yaml");
        set_command(&path, &["norm.shadow_percent=30".into()], false).unwrap();
        let flags = Flags::load(Some(path.clone())).unwrap();
        assert_eq!(flags.get("norm").shadow_percent, 30);
        assert_eq!(flags.get("norm").rollout_percent, 100);
        let e = set_command(&path, &["norm.shadow_percent=101".into()], false).unwrap_err();
        assert!(e.contains("0..=100"), "{e}");
        let e = set_command(&path, &["norm.shadow=1".into()], false).unwrap_err();
        assert!(e.contains("shadow_percent"), "the field list names it: {e}");
    }

    #[test]
    fn yaml_is_accepted() {
        let f = parse(Path::new("f.yaml"), b"validate:\n  enabled: false\n").unwrap();
        assert!(!f["validate"].enabled);
    }

    #[test]
    fn set_edits_atomically_and_poll_sees_it_while_bad_files_keep_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        set_command(&path, &["norm.rollout_percent=25".into()], false).unwrap();
        let flags = Flags::load(Some(path.clone())).unwrap();
        assert_eq!(flags.get("norm").rollout_percent, 25);
        set_command(&path, &["norm.enabled=false".into()], false).unwrap();
        assert_eq!(flags.poll(), Reload::Applied);
        assert!(!flags.get("norm").enabled);
        assert_eq!(flags.get("norm").rollout_percent, 25);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(flags.poll(), Reload::Refused);
        assert!(!flags.get("norm").enabled, "last good flags kept");
        assert!(flags.snapshot().last_error.is_some());
        assert!(set_command(&path, &["norm.rollout_percent=200".into()], false).is_err());
        // The kill switch works on a broken file with --reset.
        assert!(set_command(&path, &["norm.rollout_percent=0".into()], false).is_err());
        set_command(&path, &["norm.rollout_percent=0".into()], true).unwrap();
        assert_eq!(flags.poll(), Reload::Applied);
        assert_eq!(flags.get("norm").rollout_percent, 0);
        // No temp files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
