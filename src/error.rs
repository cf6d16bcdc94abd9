//! The one problem type (RFC 9457) and the one map from failure to status and `code`.
//!
//! Owns: every error answer normd gives, so a code's status, title and metric label are
//! defined exactly once. Never: leaks internal causes into the public body; those go to
//! the log, the body says what the caller can act on.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::admission::Refusal;
use crate::pipeline::{CanonError, DecodeError, PipelineError};
use crate::telemetry::Rejection;
use crate::wire::content_types;

/// Stable machine-readable codes of the contract (the README's Errors table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidJson,
    InvalidUtf8,
    DuplicateKey,
    TooDeep,
    UnknownProfile,
    UnknownSchema,
    UnknownEncoding,
    BadParameter,
    BadContentEncoding,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    DecodedTooLarge,
    UnsupportedMediaType,
    UnsupportedContentEncoding,
    SchemaViolation,
    NumberPrecision,
    Overloaded,
    NotReady,
    Draining,
    MemoryPressure,
    Disabled,
    DeadlineExceeded,
    Internal,
}

/// Everything the contract says about one code: the code, its name, status and title,
/// its `Retry-After` seconds (for the codes that tell the app to come back later), and
/// its `reason` in `normd_rejections_total` (normd declined the work; the input was fine).
struct Entry(
    Code,
    &'static str,
    StatusCode,
    &'static str,
    Option<u32>,
    Option<Rejection>,
);

/// The one code table, in `Code` order; every property of a code is read from here.
#[rustfmt::skip]
const TABLE: [Entry; 24] = {
    use Code::*;
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    const GONE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
    [
        Entry(InvalidJson, "invalid_json", BAD, "Body is not valid JSON", None, None),
        Entry(InvalidUtf8, "invalid_utf8", BAD, "Body is not valid UTF-8", None, None),
        Entry(DuplicateKey, "duplicate_key", BAD, "Duplicate member name", None, None),
        Entry(TooDeep, "too_deep", BAD, "Document nested too deeply", None, None),
        Entry(UnknownProfile, "unknown_profile", BAD, "Unknown profile", None, None),
        Entry(UnknownSchema, "unknown_schema", BAD, "Unknown schema", None, None),
        Entry(UnknownEncoding, "unknown_encoding", BAD, "Unknown encoding", None, None),
        Entry(BadParameter, "bad_parameter", BAD, "Bad parameter", None, None),
        Entry(BadContentEncoding, "bad_content_encoding", BAD, "Body does not decode with its Content-Encoding", None, None),
        Entry(NotFound, "not_found", StatusCode::NOT_FOUND, "Not found", None, None),
        Entry(MethodNotAllowed, "method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None, None),
        Entry(PayloadTooLarge, "payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", None, None),
        Entry(DecodedTooLarge, "decoded_too_large", StatusCode::PAYLOAD_TOO_LARGE, "Decoded payload too large", None, None),
        Entry(UnsupportedMediaType, "unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type", None, None),
        Entry(UnsupportedContentEncoding, "unsupported_content_encoding", StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported content encoding", None, None),
        Entry(SchemaViolation, "schema_violation", StatusCode::UNPROCESSABLE_ENTITY, "Document violates its schema", None, None),
        Entry(NumberPrecision, "number_precision", StatusCode::UNPROCESSABLE_ENTITY, "Number would lose precision", None, None),
        Entry(Overloaded, "overloaded", StatusCode::TOO_MANY_REQUESTS, "Overloaded, use the in-app path", Some(1), Some(Rejection::Overloaded)),
        Entry(NotReady, "not_ready", GONE, "Not ready", Some(1), Some(Rejection::NotReady)),
        Entry(Draining, "draining", GONE, "Shutting down, use the in-app path", Some(5), Some(Rejection::Draining)),
        Entry(MemoryPressure, "memory_pressure", GONE, "Under memory pressure, use the in-app path", Some(1), Some(Rejection::MemoryPressure)),
        Entry(Disabled, "disabled", GONE, "Endpoint disabled by feature flag", Some(5), Some(Rejection::Disabled)),
        Entry(DeadlineExceeded, "deadline_exceeded", StatusCode::GATEWAY_TIMEOUT, "Deadline exceeded", None, Some(Rejection::Deadline)),
        Entry(Internal, "internal", StatusCode::INTERNAL_SERVER_ERROR, "Internal error", None, None),
    ]
};

impl Code {
    #[cfg(test)]
    pub const ALL: [Code; 24] = {
        let mut all = [Code::Internal; 24];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn entry(self) -> &'static Entry {
        // `TABLE` is in declaration order (checked by a test).
        let entry = &TABLE[self as usize];
        debug_assert!(entry.0 == self, "the code table is out of order");
        entry
    }

    pub fn as_str(self) -> &'static str {
        self.entry().1
    }

    pub fn status(self) -> StatusCode {
        self.entry().2
    }

    pub fn title(self) -> &'static str {
        self.entry().3
    }

    fn retry_after(self) -> Option<u32> {
        self.entry().4
    }

    /// The `reason` of `normd_rejections_total` this code counts as, if it is a refusal.
    pub fn rejection(self) -> Option<Rejection> {
        self.entry().5
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem: `{type, title, status, detail, code, ...extensions}`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub detail: String,
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extensions: Map::new(),
        }
    }

    /// Adds a member next to the standard ones (e.g. `errors`, `known`, `pointer`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// The response body. Written member by member (no intermediate `Value` map): a
    /// refusal under overload is built thousands of times a second on the I/O thread.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + self.detail.len());
        out.extend_from_slice(b"{\"type\":\"urn:normd:problem:");
        out.extend_from_slice(self.code.as_str().as_bytes());
        out.extend_from_slice(b"\",\"title\":\"");
        out.extend_from_slice(self.code.title().as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(self.code.status().as_u16())
                .as_bytes(),
        );
        out.extend_from_slice(b",\"detail\":");
        // Writing a str or a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.detail);
        out.extend_from_slice(b",\"code\":\"");
        out.extend_from_slice(self.code.as_str().as_bytes());
        out.push(b'"');
        for (k, v) in &self.extensions {
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, v);
        }
        out.push(b'}');
        out
    }

    pub fn unknown_name(code: Code, what: &str, name: &str, known: Vec<String>) -> Self {
        Problem::new(
            code,
            format!("unknown {what} {name:?}; known: {}", known.join(", ")),
        )
        .with("known", known)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body_bytes();
        let mut response = (self.code.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_types::PROBLEM),
        );
        if let Some(secs) = self.code.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.code);
        response
    }
}

impl From<PipelineError> for Problem {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Decode(DecodeError::TooLarge { limit }) => Problem::new(
                Code::DecodedTooLarge,
                format!("the decoded body exceeds the limit of {limit} bytes"),
            )
            .with("limit", limit),
            PipelineError::Decode(e @ DecodeError::Corrupt { .. }) => {
                Problem::new(Code::BadContentEncoding, e.to_string())
            }
            PipelineError::Canon(c) => canon_problem(c),
            PipelineError::TextNotUtf8(offset) => Problem::new(
                Code::InvalidUtf8,
                format!("text body is not UTF-8 at byte {offset}"),
            )
            .with("offset", offset),
            PipelineError::SchemaViolation { schema, violations } => Problem::new(
                Code::SchemaViolation,
                format!(
                    "document violates schema {schema:?} ({} error{} shown)",
                    violations.len(),
                    if violations.len() == 1 { "" } else { "s" }
                ),
            )
            .with("schema", schema)
            .with(
                "errors",
                serde_json::to_value(violations).unwrap_or(Value::Null),
            ),
            PipelineError::Stopped => Problem::new(
                Code::DeadlineExceeded,
                "the deadline passed before the work finished",
            ),
        }
    }
}

/// An admission refusal's problem (the one place that maps them).
impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Overloaded(why) => {
                Problem::new(Code::Overloaded, format!("{why}; use the in-app path"))
            }
            Refusal::DeadlineExceeded => Problem::new(
                Code::DeadlineExceeded,
                "the call's budget (X-Deadline-Ms, else the default) ran out before its answer was ready",
            ),
            Refusal::Panicked => {
                Problem::new(Code::Internal, "the work for this call failed unexpectedly")
            }
        }
    }
}

/// Caps caller-controlled text echoed in a problem (a number may be 600 KB of digits, a
/// member name as long as the body); a cut is marked with a trailing `…`.
fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        s.chars().take(max_chars).collect::<String>() + "…"
    }
}

/// Echoed numbers and member names: enough to recognize them.
const ECHO_CHARS: usize = 64;
/// Echoed JSON pointers: a pointer is as long as the names on its path, so one long
/// name would make it as big as the body. 256 characters keep a path 128 levels deep
/// of short names whole, and the root end of any other.
const POINTER_CHARS: usize = 256;

fn canon_problem(e: CanonError) -> Problem {
    match e {
        CanonError::InvalidUtf8 { offset } => {
            Problem::new(Code::InvalidUtf8, e.to_string()).with("offset", offset)
        }
        CanonError::LoneSurrogate { line, column } => {
            Problem::new(Code::InvalidUtf8, e.to_string())
                .with("line", line)
                .with("column", column)
        }
        CanonError::InvalidJson { line, column, .. } => {
            Problem::new(Code::InvalidJson, e.to_string())
                .with("line", line)
                .with("column", column)
        }
        CanonError::DuplicateKey { pointer, key } => {
            // The detail is written from the capped values, so it is bounded too.
            let pointer = truncate(&pointer, POINTER_CHARS);
            let key = truncate(&key, ECHO_CHARS);
            let detail = CanonError::DuplicateKey {
                pointer: pointer.clone(),
                key: key.clone(),
            }
            .to_string();
            Problem::new(Code::DuplicateKey, detail)
                .with("pointer", pointer)
                .with("key", key)
        }
        CanonError::TooDeep { limit } => {
            Problem::new(Code::TooDeep, e.to_string()).with("limit", limit)
        }
        CanonError::NumberPrecision {
            pointer,
            input,
            canonical,
        } => {
            let pointer = truncate(&pointer, POINTER_CHARS);
            let input = truncate(&input, ECHO_CHARS);
            let detail = CanonError::NumberPrecision {
                pointer: pointer.clone(),
                input: input.clone(),
                canonical: canonical.clone(),
            }
            .to_string();
            let problem = Problem::new(Code::NumberPrecision, detail)
                .with("pointer", pointer)
                .with("input", input);
            // Beyond the largest double there is no canonical form to show.
            match canonical {
                Some(c) => problem.with("canonical", c),
                None => problem,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_table_is_in_declaration_order() {
        for (i, s) in TABLE.iter().enumerate() {
            assert_eq!(s.0 as usize, i, "{}", s.1);
        }
    }

    #[test]
    fn every_code_has_a_distinct_name_and_a_4xx_or_5xx_status() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        for c in Code::ALL {
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
    }

    #[test]
    fn problem_body_has_the_rfc9457_members() {
        let p = Problem::new(Code::Overloaded, "queue full").with("queue", 3);
        let b: Value = serde_json::from_slice(&p.body_bytes()).unwrap();
        assert_eq!(b["title"], Code::Overloaded.title());
        assert_eq!(b["detail"], "queue full");
        assert_eq!(b["type"], "urn:normd:problem:overloaded");
        assert_eq!(b["status"], 429);
        assert_eq!(b["code"], "overloaded");
        assert_eq!(b["queue"], 3);
        let tricky = Problem::new(Code::InvalidJson, "a \"quote\", a\nnewline, a \u{1}")
            .with("pointer", "/a~1b")
            .with("errors", serde_json::json!([{"x": [1, null]}]));
        let t: Value = serde_json::from_slice(&tricky.body_bytes()).unwrap();
        assert_eq!(t["detail"], "a \"quote\", a\nnewline, a \u{1}");
        assert_eq!(t["pointer"], "/a~1b");
        assert_eq!(t["errors"][0]["x"][1], Value::Null);
        assert_eq!(t.as_object().unwrap().len(), 7);
        let r = p.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    fn body_of(e: CanonError) -> Value {
        serde_json::from_slice(&Problem::from(PipelineError::Canon(e)).body_bytes()).unwrap()
    }

    #[test]
    fn number_precision_omits_canonical_when_there_is_none() {
        let b = body_of(CanonError::NumberPrecision {
            pointer: "/0".to_owned(),
            input: "1e400".to_owned(),
            canonical: None,
        });
        assert_eq!(b["input"], "1e400");
        assert!(b.get("canonical").is_none(), "{b}");
        let b = body_of(CanonError::NumberPrecision {
            pointer: "/0".to_owned(),
            input: "1e-400".to_owned(),
            canonical: Some("0".to_owned()),
        });
        assert_eq!(b["canonical"], "0");
    }

    #[test]
    fn echoed_keys_inputs_and_pointers_are_capped_and_marked() {
        let long = "k".repeat(500_000);
        let deep = format!("/{long}/a");
        let b = body_of(CanonError::DuplicateKey {
            pointer: deep.clone(),
            key: long.clone(),
        });
        let key = format!("{}…", "k".repeat(ECHO_CHARS));
        let pointer = format!("/{}…", "k".repeat(POINTER_CHARS - 1));
        assert_eq!(b["key"], key.as_str());
        assert_eq!(b["pointer"], pointer.as_str());
        let detail = b["detail"].as_str().unwrap();
        assert!(
            detail.contains(&key) && detail.contains(&pointer),
            "{detail}"
        );
        assert!(
            detail.chars().count() < 500,
            "{} chars",
            detail.chars().count()
        );
        let b = body_of(CanonError::NumberPrecision {
            pointer: deep,
            input: "9".repeat(600_000),
            canonical: Some("1e+600000".to_owned()),
        });
        assert_eq!(b["pointer"], pointer.as_str());
        assert_eq!(b["input"], format!("{}…", "9".repeat(ECHO_CHARS)).as_str());
        assert!(b["detail"].as_str().unwrap().chars().count() < 500);
        // Short ones are echoed whole, unmarked.
        let b = body_of(CanonError::DuplicateKey {
            pointer: "/a".to_owned(),
            key: "b".to_owned(),
        });
        assert_eq!(
            (b["pointer"].as_str(), b["key"].as_str()),
            (Some("/a"), Some("b"))
        );
    }
}
