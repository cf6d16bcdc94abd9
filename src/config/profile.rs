//! Profiles: named sets of pipeline options (schema, encoding, level, string rules,
//! deadline) a call selects instead of passing each option.

use std::time::Duration;

use super::file::ProfileFile;
use crate::pipeline::{Encoding, JsonRules, NumberPolicy, PointerPattern, TextRules};

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub(crate) schema: Option<String>,
    pub(crate) encoding: Encoding,
    pub(crate) level: i32,
    pub(crate) numbers: NumberPolicy,
    pub(crate) json_rules: JsonRules,
    pub(crate) text_rules: TextRules,
    pub(crate) deadline: Option<Duration>,
}

impl Default for Profile {
    /// No profile: numbers safe, no string rules, no schema, gzip at its fastest level.
    fn default() -> Self {
        Self {
            schema: None,
            encoding: Encoding::Gzip,
            level: Encoding::Gzip.default_level(),
            numbers: NumberPolicy::Safe,
            json_rules: JsonRules::default(),
            text_rules: TextRules::default(),
            deadline: None,
        }
    }
}

/// Validates one profile of the config file, collecting every error in it.
pub(super) fn resolve_profile(
    name: &str,
    p: ProfileFile,
    max_deadline: Duration,
) -> Result<Profile, Vec<String>> {
    let mut errors = Vec::new();
    let encoding = match p.encoding.as_deref() {
        None => Encoding::Gzip,
        Some(e) => Encoding::parse(e).unwrap_or_else(|| {
            errors.push(format!(
                "profile {name:?}: unknown encoding {e:?} (known: gzip, br, zstd, identity)"
            ));
            Encoding::Gzip
        }),
    };
    let level = p.level.unwrap_or_else(|| encoding.default_level());
    let (lo, hi) = encoding.level_range();
    if level < lo || level > hi {
        errors.push(format!(
            "profile {name:?}: level {level} out of range {lo}..={hi} for {}",
            encoding.name()
        ));
    }
    let mut lowercase = Vec::new();
    for ptr in &p.lowercase {
        match PointerPattern::parse(ptr) {
            Ok(pp) => lowercase.push(pp),
            Err(e) => errors.push(format!("profile {name:?}: lowercase: {e}")),
        }
    }
    let deadline = p.deadline_ms.map(Duration::from_millis);
    if let Some(d) = deadline {
        if d.is_zero() || d > max_deadline {
            errors.push(format!(
                "profile {name:?}: deadline_ms {} must be within 1..={}",
                d.as_millis(),
                max_deadline.as_millis()
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Profile {
        schema: p.schema,
        encoding,
        level,
        numbers: p.numbers.unwrap_or_default(),
        json_rules: JsonRules {
            trim: p.trim,
            nfc: p.nfc,
            lowercase,
            drop_nulls: p.drop_nulls,
        },
        text_rules: TextRules {
            trim: p.text_trim.unwrap_or(true),
            nfc: p.nfc,
            lowercase: p.text_lowercase.unwrap_or(true),
        },
        deadline,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::file::parse_file_config;
    use crate::config::{Config, ServeArgs};

    #[test]
    fn profiles_parse_from_toml_and_yaml() {
        let toml = r#"
[profiles.orders]
schema = "order.v1"
encoding = "br"
level = 5
numbers = "strict"
trim = true
nfc = true
lowercase = ["/customer/email"]
drop_nulls = true
deadline_ms = 25
"#;
        let file = parse_file_config(Path::new("c.toml"), toml).unwrap();
        let c = Config::resolve(ServeArgs::default(), file).unwrap();
        let p = &c.profiles["orders"];
        assert_eq!(p.encoding, Encoding::Br);
        assert_eq!(p.level, 5);
        assert_eq!(p.numbers, NumberPolicy::Strict);
        assert!(p.json_rules.trim && p.json_rules.nfc && p.json_rules.drop_nulls);
        assert_eq!(p.deadline, Some(Duration::from_millis(25)));

        let yaml = "profiles:\n  fast:\n    encoding: zstd\n    level: -3\n";
        let file = parse_file_config(Path::new("c.yaml"), yaml).unwrap();
        let c = Config::resolve(ServeArgs::default(), file).unwrap();
        assert_eq!(c.profiles["fast"].encoding, Encoding::Zstd);
    }

    #[test]
    fn unknown_keys_and_bad_profiles_are_errors() {
        assert!(parse_file_config(Path::new("c.toml"), "max_bodybytes = 1\n").is_err());
        let file = parse_file_config(
            Path::new("c.toml"),
            "[profiles.x]\nencoding = \"lz4\"\nlowercase = [\"nope\"]\n",
        )
        .unwrap();
        let errors = Config::resolve(ServeArgs::default(), file).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
    }
}
