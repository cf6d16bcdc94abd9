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

/// Input bytes up to which a call can be small enough to run inline (see [`Plan::is_small`]).
pub const SMALL_INPUT_BYTES: usize = 8 << 10;

impl Plan {
    /// Whether a call of `input_len` bytes (as received, before any decoding) is small
    /// and bounded under this plan: at most [`SMALL_INPUT_BYTES`], not compressed on the
    /// wire (a small compressed body may decode to the decoded cap), and compressed at
    /// most at its encoding's default level (the higher ones cost up to 100× more per
    /// byte). The README's "Choices made" gives the measured cost at the bound.
    pub fn is_small(&self, input_len: usize, wire: ContentEncoding) -> bool {
        input_len <= SMALL_INPUT_BYTES
            && wire == ContentEncoding::Identity
            && self.level <= self.encoding.default_level()
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

/// What decoding `body` will allocate for the decoder's own state (its window), known
/// from the stream's header before anything is allocated; a declared window past the
/// accepted cap is refused as a corrupt body (see [`codec::decode_memory`]).
pub fn decode_memory(
    body: &[u8],
    encoding: ContentEncoding,
    max_decoded: usize,
) -> Result<usize, PipelineError> {
    codec::decode_memory(encoding, body, max_decoded).map_err(PipelineError::Decode)
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

    mod idempotence {
        use super::super::*;
        use proptest::prelude::*;

        /// Characters where the order of the string rules matters: combining marks
        /// whose order NFC fixes, letters that lowercase to a base + mark, titlecase and
        /// special-cased letters, Hangul jamo, whitespace; plus any character.
        fn tricky_char() -> impl Strategy<Value = char> {
            prop_oneof![
                3 => prop::sample::select(vec![
                    'W', 'w', 'I', 'i', 'A', 'K', 'S', ' ', '\t', '\u{130}', '\u{307}',
                    '\u{329}', '\u{30a}', '\u{301}', '\u{300}', '\u{323}', '\u{1e98}',
                    '\u{212b}', '\u{212a}', '\u{1c5}', '\u{1f88}', '\u{3a3}', '\u{1100}',
                    '\u{1161}', '\u{11a8}', '\u{ac00}', '\u{df}', '\u{1e9e}', '\u{345}',
                    '\u{399}', '\u{3c2}', '\u{2000}', '\u{3000}',
                ]),
                1 => any::<char>(),
            ]
        }

        fn tricky_string() -> impl Strategy<Value = String> {
            prop::collection::vec(tricky_char(), 0..8).prop_map(|c| c.into_iter().collect())
        }

        fn document() -> impl Strategy<Value = serde_json::Value> {
            use serde_json::Value;
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                (-1e30f64..1e30).prop_map(Value::from),
                tricky_string().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(vec!["a", "b", "n"]), inner), 0..4)
                        .prop_map(|m| Value::Object(
                            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                        )),
                ]
            })
        }

        fn plan(mask: u8, numbers: canonical::NumberPolicy) -> Plan {
            let lowercase = ["/a", "/*/b", "/n/*"]
                .iter()
                .take(if mask & 4 != 0 { 3 } else { 0 })
                .map(|p| PointerPattern::parse(p).expect("pointer"))
                .collect();
            Plan {
                parse: ParseOptions {
                    numbers,
                    ..ParseOptions::default()
                },
                json_rules: JsonRules {
                    trim: mask & 1 != 0,
                    nfc: mask & 2 != 0,
                    lowercase,
                    drop_nulls: mask & 8 != 0,
                },
                text_rules: TextRules {
                    trim: mask & 1 != 0,
                    nfc: mask & 2 != 0,
                    lowercase: mask & 4 != 0,
                },
                ..Plan::default()
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// normalize(normalize(x)) == normalize(x), for every combination of the
            /// string rules and every number mode, in JSON and text mode: the digest
            /// of a document must not depend on how often it was normalized.
            #[test]
            fn normalizing_twice_equals_normalizing_once(
                doc in document(),
                text in tricky_string(),
                mask in 0u8..16,
                numbers in prop::sample::select(vec![
                    canonical::NumberPolicy::Safe,
                    canonical::NumberPolicy::Jcs,
                    canonical::NumberPolicy::Strict,
                ]),
            ) {
                let plan = plan(mask, numbers);
                let body = serde_json::to_vec(&doc).expect("serialize");
                if let Ok(once) = normalize(&body, &plan, &NeverStop) {
                    let twice = normalize(&once.bytes, &plan, &NeverStop).expect("normalizes again");
                    prop_assert_eq!(&twice.bytes, &once.bytes);
                }
                let text_plan = Plan { mode: Mode::Text, ..plan };
                let once = normalize(text.as_bytes(), &text_plan, &NeverStop).expect("text");
                let twice = normalize(&once.bytes, &text_plan, &NeverStop).expect("text again");
                prop_assert_eq!(twice.bytes, once.bytes);
            }
        }
    }
}
