//! Profile rules applied to a parsed document before validation: trim, Unicode NFC,
//! lowercase at JSON pointers, drop null members; and text mode's trim, NFC, lowercase.
//!
//! Owns: the meaning of each rule. Never: touches member *names* (renaming keys could
//! create duplicates after the I-JSON check), never reorders anything (the serializer
//! does that), never recurses deeper than the parser allowed.

use serde_json::Value;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// A JSON pointer whose segments may be `*`, matching every array element or member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerPattern {
    text: String,
    segments: Vec<String>,
}

impl PointerPattern {
    /// Parses an RFC 6901 pointer (`/customer/email`, `/items/*/sku`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("JSON pointer {text:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let mut seg = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => seg.push('~'),
                        Some('1') => seg.push('/'),
                        _ => return Err(format!("JSON pointer {text:?} has a bad '~' escape")),
                    }
                } else {
                    seg.push(c);
                }
            }
            segments.push(seg);
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The JSON-mode rules of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonRules {
    pub trim: bool,
    pub nfc: bool,
    pub lowercase: Vec<PointerPattern>,
    pub drop_nulls: bool,
}

impl JsonRules {
    pub fn is_noop(&self) -> bool {
        !self.trim && !self.nfc && self.lowercase.is_empty() && !self.drop_nulls
    }
}

/// Applies `rules` to `value` in place.
///
/// Lowercase runs before NFC: lowercasing works per character and can leave text that
/// is not NFC (`"\u{130}\u{329}"` lowercases to `i` U+0307 U+0329, whose marks NFC
/// reorders), so NFC must come last for the output to be a fixed point. Normalizing
/// twice then gives the same bytes, and so the same digest, as normalizing once.
pub fn apply(value: &mut Value, rules: &JsonRules) {
    if rules.is_noop() {
        return;
    }
    for pattern in &rules.lowercase {
        lowercase_at(value, &pattern.segments);
    }
    if rules.drop_nulls || rules.trim || rules.nfc {
        walk(value, rules);
    }
}

fn walk(value: &mut Value, rules: &JsonRules) {
    match value {
        Value::String(s) => fix_string(s, rules.trim, rules.nfc),
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, rules)),
        Value::Object(map) => {
            if rules.drop_nulls {
                map.retain(|_, v| !v.is_null());
            }
            map.values_mut().for_each(|v| walk(v, rules));
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn fix_string(s: &mut String, trim: bool, nfc: bool) {
    if trim {
        let trimmed = s.trim();
        if trimmed.len() != s.len() {
            *s = trimmed.to_owned();
        }
    }
    // The quick check answers Yes for nearly all real text, so NFC costs a scan, not
    // an allocation.
    if nfc && is_nfc_quick(s.chars()) != IsNormalized::Yes {
        *s = s.nfc().collect();
    }
}

fn changes_when_lowercased(c: char) -> bool {
    !c.to_lowercase().eq(std::iter::once(c))
}

fn lowercase_at(value: &mut Value, segments: &[String]) {
    let Some((head, rest)) = segments.split_first() else {
        if let Value::String(s) = value {
            // Most values are lowercase already: only those that change are rebuilt. The
            // test is the mapping itself, not `is_uppercase`: titlecase letters (`ǅ`,
            // `ᾈ`) are not Uppercase yet have a lowercase form.
            if s.chars().any(changes_when_lowercased) {
                *s = s.to_lowercase();
            }
        }
        return;
    };
    match value {
        Value::Object(map) if head == "*" => {
            map.values_mut().for_each(|v| lowercase_at(v, rest));
        }
        Value::Object(map) => {
            if let Some(v) = map.get_mut(head.as_str()) {
                lowercase_at(v, rest);
            }
        }
        Value::Array(items) if head == "*" => {
            items.iter_mut().for_each(|v| lowercase_at(v, rest));
        }
        Value::Array(items) => {
            // RFC 6901 array indexes: digits without leading zeros.
            let valid = !head.is_empty() && (head == "0" || !head.starts_with('0'));
            if let (true, Ok(i)) = (valid, head.parse::<usize>()) {
                if let Some(v) = items.get_mut(i) {
                    lowercase_at(v, rest);
                }
            }
        }
        _ => {}
    }
}

/// Text-mode rules: the seed's original job, plus the profile's `nfc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRules {
    pub trim: bool,
    pub nfc: bool,
    pub lowercase: bool,
}

impl Default for TextRules {
    fn default() -> Self {
        Self {
            trim: true,
            nfc: false,
            lowercase: true,
        }
    }
}

/// Normalizes a text body. `Err(offset)` when it is not UTF-8.
///
/// In the order a JSON string value gets them: lowercase, trim, then NFC last (see
/// [`apply`]: lowercasing can undo NFC, so the output is NFC only if NFC comes last).
pub fn text(input: &[u8], rules: TextRules) -> Result<Vec<u8>, usize> {
    let s = std::str::from_utf8(input).map_err(|e| e.valid_up_to())?;
    let lowered: String;
    let s = if rules.lowercase {
        lowered = s.to_lowercase();
        lowered.as_str()
    } else {
        s
    };
    let s = if rules.trim { s.trim() } else { s };
    Ok(
        if rules.nfc && is_nfc_quick(s.chars()) != IsNormalized::Yes {
            s.nfc().collect::<String>().into_bytes()
        } else {
            s.as_bytes().to_vec()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(trim: bool, nfc: bool, lower: &[&str], drop_nulls: bool) -> JsonRules {
        JsonRules {
            trim,
            nfc,
            lowercase: lower
                .iter()
                .map(|p| PointerPattern::parse(p).unwrap())
                .collect(),
            drop_nulls,
        }
    }

    #[test]
    fn trims_string_values_but_not_names() {
        let mut v = json!({" k ": "  v  ", "a": [" x", 1, null]});
        apply(&mut v, &rules(true, false, &[], false));
        assert_eq!(v, json!({" k ": "v", "a": ["x", 1, null]}));
    }

    #[test]
    fn nfc_composes_decomposed_text() {
        let mut v = json!({"name": "Cafe\u{301}"});
        apply(&mut v, &rules(false, true, &[], false));
        assert_eq!(v, json!({"name": "Caf\u{e9}"}));
    }

    #[test]
    fn lowercases_only_at_pointers_with_wildcards_and_escapes() {
        let mut v = json!({
            "customer": {"email": "A@B.COM", "name": "Ann"},
            "items": [{"sku": "AB-1"}, {"sku": "CD-2"}],
            "a/b": {"~c": "UP"}
        });
        apply(
            &mut v,
            &rules(
                false,
                false,
                &["/customer/email", "/items/*/sku", "/a~1b/~0c"],
                false,
            ),
        );
        assert_eq!(v["customer"]["email"], "a@b.com");
        assert_eq!(v["customer"]["name"], "Ann");
        assert_eq!(v["items"], json!([{"sku": "ab-1"}, {"sku": "cd-2"}]));
        assert_eq!(v["a/b"]["~c"], "up");
    }

    #[test]
    fn titlecase_letters_are_lowercased_alone_too() {
        // ǅ (U+01C5) and ᾈ (U+1F88) are titlecase (Lt), not Uppercase; a string of them
        // alone, or beside lowercase letters, changes as it does beside an uppercase one.
        for (input, want) in [
            ("\u{1c5}", "\u{1c6}"),
            ("a\u{1c5}", "a\u{1c6}"),
            ("A\u{1c5}", "a\u{1c6}"),
            ("\u{1f88}", "\u{1f80}"),
            ("already lower", "already lower"),
        ] {
            let mut v = json!({"k": input});
            apply(&mut v, &rules(false, false, &["/k"], false));
            assert_eq!(v["k"], want, "{input:?}");
        }
    }

    #[test]
    fn array_index_pointers_follow_rfc6901() {
        let mut v = json!({"l": ["A", "B"]});
        apply(&mut v, &rules(false, false, &["/l/1", "/l/01"], false));
        assert_eq!(v, json!({"l": ["A", "b"]}));
    }

    #[test]
    fn drops_null_members_recursively_but_keeps_array_nulls() {
        let mut v = json!({"a": null, "b": {"c": null, "d": 1}, "e": [null]});
        apply(&mut v, &rules(false, false, &[], true));
        assert_eq!(v, json!({"b": {"d": 1}, "e": [null]}));
    }

    #[test]
    fn bad_pointers_are_rejected() {
        assert!(PointerPattern::parse("customer").is_err());
        assert!(PointerPattern::parse("/a~2").is_err());
    }

    #[test]
    fn text_mode_defaults_trim_and_lowercase() {
        assert_eq!(
            text(b"  Hello WORLD \n", TextRules::default()).unwrap(),
            b"hello world"
        );
        let keep = TextRules {
            trim: false,
            nfc: false,
            lowercase: false,
        };
        assert_eq!(text(b" Hi ", keep).unwrap(), b" Hi ");
        assert_eq!(text(b"ok\xff", TextRules::default()), Err(2));
    }

    #[test]
    fn text_mode_applies_nfc_when_asked_like_json_strings() {
        let input = " Cafe\u{301} \u{212B}NGSTR\u{00D6}M ".as_bytes();
        // Off by default: the decomposed e + U+0301 stays.
        assert_eq!(
            text(input, TextRules::default()).unwrap(),
            "cafe\u{301} \u{212B}ngstr\u{f6}m".to_lowercase().as_bytes()
        );
        let nfc = TextRules {
            nfc: true,
            ..TextRules::default()
        };
        // U+212B ANGSTROM SIGN is NFC-normalized to U+00C5, then lowercased to U+00E5.
        let out = text(input, nfc).unwrap();
        assert_eq!(out, "caf\u{e9} \u{e5}ngstr\u{f6}m".as_bytes());
        // The same string as a JSON value under trim + nfc + lowercase gets the same.
        let mut v = Value::String(" Cafe\u{301} \u{212B}NGSTR\u{00D6}M ".to_owned());
        apply(&mut v, &rules(true, true, &[""], false));
        assert_eq!(v.as_str().map(str::as_bytes), Some(&out[..]));
        let only_nfc = TextRules {
            trim: false,
            nfc: true,
            lowercase: false,
        };
        assert_eq!(
            text("Cafe\u{301}".as_bytes(), only_nfc).unwrap(),
            "Caf\u{e9}".as_bytes()
        );
    }

    #[test]
    fn nfc_with_lowercase_is_a_fixed_point() {
        // Known answers: lowercasing after NFC left these non-NFC, so a second pass
        // changed them (U+0307 U+0329 reordered; w U+030A composed to U+1E98).
        let all = rules(false, true, &[""], false);
        for (input, once) in [
            ("\u{130}\u{329}", "i\u{329}\u{307}"),
            ("W\u{30a}", "\u{1e98}"),
        ] {
            let mut v = Value::String(input.to_owned());
            apply(&mut v, &all);
            assert_eq!(v, Value::String(once.to_owned()), "{input:?}");
            let mut again = v.clone();
            apply(&mut again, &all);
            assert_eq!(again, v, "{input:?}: a second pass changes nothing");
            let text_rules = TextRules {
                trim: false,
                nfc: true,
                lowercase: true,
            };
            assert_eq!(text(input.as_bytes(), text_rules).unwrap(), once.as_bytes());
        }
    }
}
