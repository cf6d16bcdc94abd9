//! The schema registry: every `*.json` file of the schemas dir compiled once, by name.
//!
//! Owns: loading, `$ref` resolution between local files, and turning jsonschema's errors
//! into our capped `{instance_path, schema_path, message}` list.
//! Never: fetches anything. The jsonschema crate is built without its HTTP and file
//! resolvers, and both the registry and every validator get [`Offline`], which refuses
//! every retrieval attempt, so a remote `$ref` fails the load instead of
//! reaching the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{Registry, Retrieve, Uri, Validator};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A retriever that never retrieves.
struct Offline;

impl Retrieve for Offline {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "normd never retrieves schemas: {uri} is not a file in the schemas dir \
             (add it there and reference it by its $id or file name)"
        )
        .into())
    }
}

/// [`Offline`], except for the schemas dir's own files (to find which file's `$ref`
/// cannot be resolved).
struct LocalOnly(Arc<BTreeMap<String, Value>>);

impl Retrieve for LocalOnly {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        match self.0.get(uri.as_str()) {
            Some(doc) => Ok(doc.clone()),
            None => Offline.retrieve(uri),
        }
    }
}

/// One compiled schema.
pub struct Schema {
    pub name: String,
    pub id: Option<String>,
    pub sha256: String,
    pub path: String,
    validator: Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

/// One failed assertion, as `/validate` and the 422 problem report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub instance_path: String,
    pub schema_path: String,
    pub message: String,
}

/// Longest message kept per violation: jsonschema quotes the offending instance, which
/// may be a whole 64 KB sub-document.
const MAX_MESSAGE_CHARS: usize = 300;

impl Schema {
    /// Returns at most `max_errors` violations; empty means valid.
    pub fn violations(&self, instance: &Value, max_errors: usize) -> Vec<Violation> {
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        self.validator
            .iter_errors(instance)
            .take(max_errors.max(1))
            .map(|e| {
                let mut message = e.to_string();
                if message.chars().count() > MAX_MESSAGE_CHARS {
                    message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
                }
                Violation {
                    instance_path: e.instance_path().to_string(),
                    schema_path: e.schema_path().to_string(),
                    message,
                }
            })
            .collect()
    }
}

/// The loaded set, swapped whole on reload.
#[derive(Debug, Default)]
pub struct SchemaSet {
    pub dir: Option<PathBuf>,
    by_name: BTreeMap<String, Arc<Schema>>,
}

/// A schema file that could not be loaded, named so `normd check` can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub problem: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

/// Schemas compiled into the binary so `normd serve` works from any directory.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "address.v1.json",
        include_str!("../../schemas/address.v1.json"),
    ),
    ("order.v1.json", include_str!("../../schemas/order.v1.json")),
];

impl SchemaSet {
    pub fn get(&self, name: &str) -> Option<Arc<Schema>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Schema>> {
        self.by_name.values()
    }

    /// Loads every `*.json` in `dir` (not recursive). All files are checked, and every
    /// problem is returned, so one run of `normd check` names them all.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![LoadError {
                file: dir.display().to_string(),
                problem: format!("cannot read schemas dir: {e}"),
            }]
        })?;
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => {
                    errors.push(LoadError {
                        file: dir.display().to_string(),
                        problem: e.to_string(),
                    });
                    continue;
                }
            };
            if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => files.push((path, bytes)),
                Err(e) => errors.push(LoadError {
                    file: path.display().to_string(),
                    problem: format!("cannot read: {e}"),
                }),
            }
        }
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let named: Vec<(String, PathBuf, Vec<u8>)> = files
            .into_iter()
            .map(|(path, bytes)| {
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (file, abs.join(path.file_name().unwrap_or_default()), bytes)
            })
            .collect();
        match Self::compile(&named) {
            Ok(mut set) if errors.is_empty() => {
                set.dir = Some(dir.to_path_buf());
                Ok(set)
            }
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }

    /// The schemas compiled into the binary.
    pub fn embedded() -> Result<Self, Vec<LoadError>> {
        let named: Vec<(String, PathBuf, Vec<u8>)> = EMBEDDED
            .iter()
            .map(|(file, text)| {
                (
                    (*file).to_owned(),
                    Path::new("/normd/embedded").join(file),
                    text.as_bytes().to_vec(),
                )
            })
            .collect();
        Self::compile(&named)
    }

    /// Compiles `(file name, absolute path, contents)` triples. Each file is registered
    /// under its `file://` URI and its `$id`, so `$ref`s may use either relative paths
    /// or ids.
    fn compile(files: &[(String, PathBuf, Vec<u8>)]) -> Result<Self, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut docs = Vec::new();
        for (file, path, bytes) in files {
            let Some(stem) = file.strip_suffix(".json") else {
                continue;
            };
            match serde_json::from_slice::<Value>(bytes) {
                Ok(doc) if doc.is_object() || doc.is_boolean() => {
                    let id = doc.get("$id").and_then(Value::as_str).map(str::to_owned);
                    let sha = format!("{:x}", Sha256::digest(bytes));
                    let uri = format!("file://{}", path.display());
                    docs.push((stem.to_owned(), path.clone(), uri, id, sha, doc));
                }
                Ok(_) => errors.push(LoadError {
                    file: path.display().to_string(),
                    problem: "a schema must be a JSON object or boolean".into(),
                }),
                Err(e) => errors.push(LoadError {
                    file: path.display().to_string(),
                    problem: format!("not valid JSON: {e}"),
                }),
            }
        }
        let mut resources: Vec<(String, Value)> = Vec::new();
        for (_, _, uri, id, _, doc) in &docs {
            resources.push((uri.clone(), doc.clone()));
            if let Some(id) = id {
                if id != uri {
                    resources.push((id.clone(), doc.clone()));
                }
            }
        }
        let registry = Registry::new()
            .retriever(Offline)
            .extend(resources)
            .and_then(|b| b.prepare());
        let registry = match registry {
            Ok(r) => r,
            Err(e) => {
                // Name the file(s) at fault: each one alone, with the other files
                // available and still nothing retrieved, must resolve.
                let mut local = BTreeMap::new();
                for (_, _, uri, id, _, doc) in &docs {
                    local.insert(uri.clone(), doc.clone());
                    if let Some(id) = id {
                        local.insert(id.clone(), doc.clone());
                    }
                }
                let local = Arc::new(local);
                for (_, path, uri, _, _, doc) in &docs {
                    let alone = Registry::new()
                        .retriever(LocalOnly(Arc::clone(&local)))
                        .extend([(uri.clone(), doc.clone())])
                        .and_then(|b| b.prepare());
                    if let Err(e) = alone {
                        errors.push(LoadError {
                            file: path.display().to_string(),
                            problem: format!("cannot resolve schema references: {e}"),
                        });
                    }
                }
                if errors.is_empty() {
                    errors.push(LoadError {
                        file: files
                            .first()
                            .map(|f| f.1.parent().unwrap_or(&f.1).display().to_string())
                            .unwrap_or_default(),
                        problem: format!("cannot resolve schema references: {e}"),
                    });
                }
                return Err(errors);
            }
        };
        let mut by_name = BTreeMap::new();
        for (stem, path, uri, id, sha, doc) in docs {
            let built = jsonschema::options()
                .with_retriever(Offline)
                .with_registry(&registry)
                .with_base_uri(uri.clone())
                .build(&doc);
            match built {
                Ok(validator) => {
                    by_name.insert(
                        stem.clone(),
                        Arc::new(Schema {
                            name: stem,
                            id,
                            sha256: sha,
                            path: path.display().to_string(),
                            validator,
                        }),
                    );
                }
                Err(e) => errors.push(LoadError {
                    file: path.display().to_string(),
                    problem: format!("invalid schema: {e}"),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Self { dir: None, by_name })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, doc: &Value) {
        std::fs::write(dir.join(name), serde_json::to_vec(doc).unwrap()).unwrap();
    }

    #[test]
    fn embedded_schemas_compile_and_resolve_the_address_ref() {
        let set = SchemaSet::embedded().expect("embedded schemas load");
        assert!(set.get("order.v1").is_some());
        assert!(set.get("address.v1").is_some());
    }

    #[test]
    fn relative_refs_between_files_resolve() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            &json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                     "type": "object", "properties": {"b": {"$ref": "b.json"}}}),
        );
        write(
            dir.path(),
            "b.json",
            &json!({"type": "integer", "minimum": 3}),
        );
        let set = SchemaSet::load_dir(dir.path()).expect("loads");
        let a = set.get("a").unwrap();
        assert!(a.violations(&json!({"b": 4}), 20).is_empty());
        let v = a.violations(&json!({"b": 1}), 20);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].instance_path, "/b");
        assert!(v[0].schema_path.contains("minimum"), "{v:?}");
    }

    #[test]
    fn refs_by_id_resolve() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "x.json",
            &json!({"$id": "https://schemas.normd.invalid/x", "$ref": "https://schemas.normd.invalid/y"}),
        );
        write(
            dir.path(),
            "y.json",
            &json!({"$id": "https://schemas.normd.invalid/y", "type": "string"}),
        );
        let set = SchemaSet::load_dir(dir.path()).expect("loads");
        assert!(set.get("x").unwrap().violations(&json!("s"), 5).is_empty());
        assert_eq!(set.get("x").unwrap().violations(&json!(1), 5).len(), 1);
    }

    #[test]
    fn error_list_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "many.json",
            &json!({"type": "array", "items": {"type": "string"}}),
        );
        let set = SchemaSet::load_dir(dir.path()).unwrap();
        let v = set
            .get("many")
            .unwrap()
            .violations(&json!([1, 2, 3, 4, 5, 6]), 4);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn every_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{nope").unwrap();
        write(dir.path(), "wrongtype.json", &json!({"type": 12}));
        write(dir.path(), "fine.json", &json!({"type": "string"}));
        let errors = SchemaSet::load_dir(dir.path()).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("broken.json") && t.contains("not valid JSON")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("wrongtype.json")),
            "{text:?}"
        );
    }
}
