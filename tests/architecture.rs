//! The dependency direction of `src/`: every module imports only modules listed below it
//! in the module map of `src/lib.rs`, so data and dependencies flow one way. Reads the
//! sources (unit tests inside a module are exempt: they may build anything they need).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The module names of the map in `src/lib.rs`, top to bottom.
fn module_map(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// The `.rs` files of module `name`: `src/name.rs` or everything under `src/name/`.
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("module dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The crate modules a file refers to outside its unit tests: `crate::name…` paths, and
/// the first segment of each item of a `use crate::{…}` group.
fn references(text: &str, modules: &[String]) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            // Top-level items only: skip what is inside nested braces.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        used.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|m| modules.contains(m));
    used
}

#[test]
fn every_module_imports_only_modules_below_it_in_the_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let map = module_map(&lib);
    assert!(map.len() >= 10, "module map not found in lib.rs: {map:?}");
    let mut violations = Vec::new();
    for (rank, module) in map.iter().enumerate() {
        for file in files_of(&src, module) {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source");
            for used in references(&text, &map) {
                let used_rank = map.iter().position(|m| *m == used).unwrap_or(0);
                if used != *module && used_rank <= rank {
                    violations.push(format!("{} imports `{used}`", file.display()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the module map's direction:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_is_on_the_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let map: BTreeSet<String> = module_map(&lib).into_iter().collect();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    assert_eq!(
        map, declared,
        "the map in lib.rs and its `mod` lines differ"
    );
}
