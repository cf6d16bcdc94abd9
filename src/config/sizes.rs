//! Byte counts: parsing Kubernetes-style quantities, the config file's number-or-string
//! form, and the short form `--help` shows.

use serde::Deserialize;

/// Parses `1048576`, `64Ki`, `64Mi`, `1Gi`, `500K`, `64M`, `1G` (k8s quantity style).
pub(super) fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `n` with the largest binary suffix that divides it exactly: `1Mi`, `1536Ki`, `100`.
pub(super) fn show_bytes(n: u64) -> String {
    for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n != 0 && n % unit == 0 {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// A size in a config file: a number, or a string with a suffix.
///
/// Deserialized by hand rather than as an untagged enum: an untagged enum's error is "data
/// did not match any variant", with no key or position from the YAML reader; this one
/// says what was expected, and the reader adds where.
#[derive(Debug, Clone)]
pub(super) enum ByteSize {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size in bytes: a whole number, or a string such as \"64Mi\"")
            }
            fn visit_u64<E>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E>(self, v: &str) -> Result<ByteSize, E> {
                Ok(ByteSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl ByteSize {
    /// The size as a flag would give it, for the one parser of sizes.
    pub(super) fn text(&self) -> String {
        match self {
            ByteSize::Number(n) => n.to_string(),
            ByteSize::Text(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_kubernetes_quantities() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("12Q"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn shown_sizes_parse_back_to_themselves() {
        for (n, text) in [
            (1 << 20, "1Mi"),
            (1536 << 10, "1536Ki"),
            (3 << 30, "3Gi"),
            (100, "100"),
            (0, "0"),
        ] {
            assert_eq!(show_bytes(n), text);
            assert_eq!(parse_bytes(text), Some(n));
        }
    }
}
