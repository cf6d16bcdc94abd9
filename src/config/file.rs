//! The optional config file, TOML or YAML: the `serve` settings in snake_case, plus
//! profiles. Read as written; `Config::resolve` validates it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::sizes::ByteSize;
use crate::pipeline::NumberPolicy;

/// The config file as written. Unknown keys are errors, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(super) socket: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) metrics_listen: Option<String>,
    pub(super) schemas: Option<PathBuf>,
    pub(super) flags: Option<PathBuf>,
    pub(super) socket_mode: Option<String>,
    pub(super) socket_group: Option<String>,
    pub(super) allow_non_loopback: Option<bool>,
    pub(super) max_body_bytes: Option<ByteSize>,
    pub(super) max_decoded_bytes: Option<ByteSize>,
    pub(super) default_deadline_ms: Option<u64>,
    pub(super) max_deadline_ms: Option<u64>,
    pub(super) workers: Option<usize>,
    pub(super) max_queue: Option<usize>,
    pub(super) memory_limit: Option<ByteSize>,
    pub(super) ready_watermark: Option<f64>,
    pub(super) shed_watermark: Option<f64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_inflight_bytes: Option<ByteSize>,
    pub(super) drain_delay_ms: Option<u64>,
    pub(super) shutdown_timeout_ms: Option<u64>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) send_timeout_ms: Option<u64>,
    pub(super) max_depth: Option<usize>,
    pub(super) max_errors: Option<usize>,
    pub(super) probe_interval_ms: Option<u64>,
    pub(super) probe_failures: Option<u32>,
    pub(super) flags_poll_ms: Option<u64>,
    pub(super) log_level: Option<String>,
    pub(super) log_sample: Option<f64>,
    #[serde(default)]
    pub(super) profiles: BTreeMap<String, ProfileFile>,
}

/// A profile as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProfileFile {
    pub(super) schema: Option<String>,
    pub(super) encoding: Option<String>,
    pub(super) level: Option<i32>,
    pub(super) numbers: Option<NumberPolicy>,
    #[serde(default)]
    pub(super) trim: bool,
    #[serde(default)]
    pub(super) nfc: bool,
    #[serde(default)]
    pub(super) lowercase: Vec<String>,
    #[serde(default)]
    pub(super) drop_nulls: bool,
    pub(super) deadline_ms: Option<u64>,
    pub(super) text_trim: Option<bool>,
    pub(super) text_lowercase: Option<bool>,
}

/// Reads a TOML (default) or YAML (`.yaml`/`.yml`) config file.
pub fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config {}: cannot read: {e}", path.display()))?;
    parse_file_config(path, &text)
}

/// Parses `text` as YAML when `path` ends in `.yaml` or `.yml`, else as TOML.
pub(super) fn parse_file_config(path: &Path, text: &str) -> Result<FileConfig, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ServeArgs};

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
