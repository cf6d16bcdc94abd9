//! The shared workload's payloads, for the examples (each includes this file).

use std::path::{Path, PathBuf};

/// The 4 KB set of the shared workload, beside the repository.
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/payloads/4k")
}

/// Every `*.json` file of `dir`, in name order; an error names the file or the dir.
pub fn load(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let docs = files
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    if docs.is_empty() {
        return Err(format!("no *.json payloads in {}", dir.display()));
    }
    Ok(docs)
}
