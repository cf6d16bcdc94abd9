//! The pure core: decode → parse → normalize → validate → serialize canonical → compress.
//!
//! Owns: what each route computes, as plain functions over bytes.
//! Never: sees HTTP types, touches the network or the clock. Deadlines reach it only as
//! a [`Stop`] it polls between stages, so benchmarks and property tests drive it directly.

pub mod canonical;
pub mod codec;
pub mod normalize;
pub mod validate;

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use canonical::{CanonError, NumberPolicy, ParseOptions};
pub use codec::{ContentEncoding, DecodeError, Encoding};
pub use normalize::{JsonRules, PointerPattern, TextRules};
pub use validate::{Schema, SchemaSet, Violation};

/// Asked between stages and inside long compressions: "has this work been abandoned?"
pub trait Stop {
    fn should_stop(&self) -> bool;
}

/// For callers with no deadline (benchmarks, `normd check`, tests).
pub struct NeverStop;

impl Stop for NeverStop {
    fn should_stop(&self) -> bool {
        false
    }
}

/// Body interpretation, chosen from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Json,
    Text,
}

/// Everything a pipeline call needs, resolved from profile + query by the HTTP layer.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub parse: ParseOptions,
    pub json_rules: JsonRules,
    pub text_rules: TextRules,
    pub schema: Option<Arc<Schema>>,
    pub encoding: Encoding,
    pub level: i32,
    pub max_errors: usize,
}

impl Default for Plan {
    /// The default profile: numbers `safe`, no string rules, no schema, gzip at level 1.
    fn default() -> Self {
        Self {
            mode: Mode::Json,
            parse: ParseOptions::default(),
            json_rules: JsonRules::default(),
            text_rules: TextRules::default(),
            schema: None,
            encoding: Encoding::Gzip,
            level: Encoding::Gzip.default_level(),
            max_errors: 20,
        }
    }
}

/// Why a pipeline call produced no output. Mapped to problems in one place (`error.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineError {
    Decode(DecodeError),
    Canon(CanonError),
    /// Text mode body is not UTF-8; the byte offset of the first bad byte.
    TextNotUtf8(usize),
    SchemaViolation {
        schema: String,
        violations: Vec<Violation>,
    },
    /// The [`Stop`] said stop (deadline passed or the client left).
    Stopped,
}

impl From<CanonError> for PipelineError {
    fn from(e: CanonError) -> Self {
        Self::Canon(e)
    }
}

/// Result of `/norm`.
#[derive(Debug, Clone)]
pub struct NormOutput {
    pub canonical_bytes: usize,
    pub digest: [u8; 32],
    pub body: Vec<u8>,
}

/// Result of `/normalize`.
#[derive(Debug, Clone)]
pub struct Normalized {
    pub bytes: Vec<u8>,
    pub mode: Mode,
}

fn checkpoint(stop: &dyn Stop) -> Result<(), PipelineError> {
    if stop.should_stop() {
        Err(PipelineError::Stopped)
    } else {
        Ok(())
    }
}

/// Stage 1: undo the request's `Content-Encoding`, capped at `max_decoded` bytes.
pub fn decode(
    body: &[u8],
    encoding: ContentEncoding,
    max_decoded: usize,
    stop: &dyn Stop,
) -> Result<Vec<u8>, PipelineError> {
    checkpoint(stop)?;
    let out = codec::decode(encoding, body, max_decoded, stop);
    checkpoint(stop)?;
    out.map_err(PipelineError::Decode)
}

/// Stages parse + normalize for JSON mode.
pub fn parse_and_normalize(
    body: &[u8],
    plan: &Plan,
    stop: &dyn Stop,
) -> Result<Value, PipelineError> {
    checkpoint(stop)?;
    let mut value = canonical::parse(body, &plan.parse)?;
    checkpoint(stop)?;
    normalize::apply(&mut value, &plan.json_rules);
    Ok(value)
}

/// Stage validate: `Ok(())` when no schema is selected or the document conforms.
pub fn validate(value: &Value, plan: &Plan) -> Result<(), PipelineError> {
    let Some(schema) = &plan.schema else {
        return Ok(());
    };
    let violations = schema.violations(value, plan.max_errors);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PipelineError::SchemaViolation {
            schema: schema.name.clone(),
            violations,
        })
    }
}

/// `/normalize`: canonical JSON, or normalized text.
pub fn normalize(body: &[u8], plan: &Plan, stop: &dyn Stop) -> Result<Normalized, PipelineError> {
    match plan.mode {
        Mode::Json => {
            let value = parse_and_normalize(body, plan, stop)?;
            checkpoint(stop)?;
            Ok(Normalized {
                bytes: canonical::to_canonical_vec_sized(&value, body.len()),
                mode: Mode::Json,
            })
        }
        Mode::Text => Ok(Normalized {
            bytes: normalize::text(body, plan.text_rules).map_err(PipelineError::TextNotUtf8)?,
            mode: Mode::Text,
        }),
    }
}

/// `/validate`: the violations (empty = valid). Parse errors are errors, not violations.
pub fn check(body: &[u8], plan: &Plan, stop: &dyn Stop) -> Result<Vec<Violation>, PipelineError> {
    let value = parse_and_normalize(body, plan, stop)?;
    checkpoint(stop)?;
    match validate(&value, plan) {
        Ok(()) => Ok(Vec::new()),
        Err(PipelineError::SchemaViolation { violations, .. }) => Ok(violations),
        Err(other) => Err(other),
    }
}

/// `/norm`: the full pipeline after decoding.
pub fn norm(body: &[u8], plan: &Plan, stop: &dyn Stop) -> Result<NormOutput, PipelineError> {
    let canonical = match plan.mode {
        Mode::Json => {
            let value = parse_and_normalize(body, plan, stop)?;
            checkpoint(stop)?;
            validate(&value, plan)?;
            checkpoint(stop)?;
            canonical::to_canonical_vec_sized(&value, body.len())
        }
        Mode::Text => normalize::text(body, plan.text_rules).map_err(PipelineError::TextNotUtf8)?,
    };
    checkpoint(stop)?;
    let digest: [u8; 32] = Sha256::digest(&canonical).into();
    let body = codec::compress(plan.encoding, plan.level, &canonical, stop)
        .map_err(|_| PipelineError::Stopped)?;
    Ok(NormOutput {
        canonical_bytes: canonical.len(),
        digest,
        body,
    })
}

/// An upper bound of the bytes `/norm` allocates for `body` while it runs: the parsed
/// document (or text), its canonical form, and the compressor's working memory.
pub fn norm_memory(body: &[u8], plan: &Plan) -> usize {
    document_memory(body, plan)
        + body.len()
        + codec::compress_memory(plan.encoding, plan.level, body.len())
}

/// The same for `/normalize`.
pub fn normalize_memory(body: &[u8], plan: &Plan) -> usize {
    document_memory(body, plan) + body.len()
}

/// The same for `/validate`.
pub fn check_memory(body: &[u8], plan: &Plan) -> usize {
    document_memory(body, plan)
}

/// The same for `/compress`.
pub fn compress_memory(body: &[u8], plan: &Plan) -> usize {
    codec::compress_memory(plan.encoding, plan.level, body.len())
}

/// An upper bound of the parsed form of `body`. A JSON tree costs far more than its
/// text, and how much more depends on its shape, not its size: ~7.5 × for the shared
/// order payloads, but 99 × for `[{"":0},…]` (every object is a B-tree node of ~640
/// bytes), 41 × for `[[0],…]`, 24 × for `[0,1,…]`. So it is bounded from the counts of
/// `{`, `[` and `,` (each costs at most the bytes below; counting those inside strings
/// only overestimates), which one pass over the body finds.
fn document_memory(body: &[u8], plan: &Plan) -> usize {
    if plan.mode == Mode::Text {
        // The normalized copy, and a lowercased one.
        return 3 * body.len();
    }
    let (objects, arrays, commas) = count_structure(body);
    8 * body.len() + 768 * objects + 160 * arrays + 48 * commas
}

/// Counts of `{`, `[` and `,`, in one pass. Byte counters over chunks of 255 (they
/// cannot overflow) let the compiler compare 16-32 bytes at a time: a plain
/// filter-count of each byte cost ~9 % of a 4 KB call, this costs well under 1 %.
fn count_structure(body: &[u8]) -> (usize, usize, usize) {
    let (mut objects, mut arrays, mut commas) = (0usize, 0usize, 0usize);
    for chunk in body.chunks(255) {
        let (mut o, mut a, mut c) = (0u8, 0u8, 0u8);
        for &b in chunk {
            o += u8::from(b == b'{');
            a += u8::from(b == b'[');
            c += u8::from(b == b',');
        }
        objects += usize::from(o);
        arrays += usize::from(a);
        commas += usize::from(c);
    }
    (objects, arrays, commas)
}

/// `/compress`: the raw bytes, compressed.
pub fn compress(body: &[u8], plan: &Plan, stop: &dyn Stop) -> Result<Vec<u8>, PipelineError> {
    checkpoint(stop)?;
    codec::compress(plan.encoding, plan.level, body, stop).map_err(|_| PipelineError::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_counts_are_exact_across_chunk_boundaries() {
        for len in [0, 1, 254, 255, 256, 510, 511, 1_000] {
            for fill in [b'{', b'[', b',', b'x'] {
                let body = vec![fill; len];
                let expect = |b: u8| if fill == b { len } else { 0 };
                assert_eq!(
                    count_structure(&body),
                    (expect(b'{'), expect(b'['), expect(b',')),
                    "{len} × {}",
                    fill as char
                );
            }
        }
        let mixed = br#"[{"a":[1,2]},{"b":"{[,"}]"#.repeat(40);
        let naive = |c: u8| mixed.iter().filter(|&&b| b == c).count();
        assert_eq!(
            count_structure(&mixed),
            (naive(b'{'), naive(b'['), naive(b','))
        );
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn norm_default_plan_gzips_the_canonical_form() {
        let out = norm(
            br#"{ "b": 1, "a": [true, null, 1.50] }"#,
            &Plan::default(),
            &NeverStop,
        )
        .unwrap();
        let canonical = gunzip(&out.body);
        assert_eq!(canonical, br#"{"a":[true,null,1.5],"b":1}"#);
        assert_eq!(out.canonical_bytes, canonical.len());
        let expect: [u8; 32] = Sha256::digest(&canonical).into();
        assert_eq!(out.digest, expect);
    }

    #[test]
    fn norm_validates_against_the_embedded_order_schema() {
        let set = SchemaSet::embedded().unwrap();
        let plan = Plan {
            schema: set.get("order.v1"),
            ..Plan::default()
        };
        match norm(br#"{"schema_version":"order.v1"}"#, &plan, &NeverStop) {
            Err(PipelineError::SchemaViolation { schema, violations }) => {
                assert_eq!(schema, "order.v1");
                assert!(!violations.is_empty());
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn text_mode_normalizes_and_compresses() {
        let plan = Plan {
            mode: Mode::Text,
            encoding: Encoding::Identity,
            ..Plan::default()
        };
        let out = norm(b"  Hello  ", &plan, &NeverStop).unwrap();
        assert_eq!(out.body, b"hello");
    }

    struct StopNow;
    impl Stop for StopNow {
        fn should_stop(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_stopped_call_does_no_work() {
        assert_eq!(
            norm(b"{}", &Plan::default(), &StopNow).unwrap_err(),
            PipelineError::Stopped
        );
    }
}
