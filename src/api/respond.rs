//! Writing a work call's answer: the body by route, the `X-Normd-*` headers, the digest,
//! the JSON envelope, and the in-flight charge a large answer keeps until it is sent.

use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{header, HeaderValue};
use serde_json::json;

use super::job::Done;
use super::observe::InBytes;
use crate::admission::BytesPermit;
use crate::pipeline::{self, Encoding, Mode};
use crate::telemetry;
use crate::wire::{content_types, headers};

/// Answers larger than this are charged to the in-flight byte budget until sent; a small
/// one costs less than the bookkeeping.
const ANSWER_CHARGE_MIN: usize = 16 << 10;

/// What the answer is shaped by besides the result.
pub(super) struct Shape<'a> {
    pub(super) encoding: Encoding,
    pub(super) mode: Mode,
    pub(super) schema: Option<&'a str>,
    pub(super) in_bytes: usize,
    pub(super) envelope: bool,
}

/// The answer to a call whose work is done. A large answer keeps `permit` (shrunk to
/// its size) until the server has sent it.
pub(super) fn answer(done: Done, mut permit: BytesPermit, shape: &Shape<'_>) -> Response {
    let mut response = match done {
        Done::Norm(out) => norm(out, shape),
        Done::Normalize(n) => {
            let ct = media_type(n.mode);
            ([(header::CONTENT_TYPE, ct)], n.bytes).into_response()
        }
        Done::Validate(violations) => {
            if !violations.is_empty() {
                if let Some(s) = shape.schema {
                    telemetry::schema_failure(s);
                }
            }
            let mut body = json!({"valid": violations.is_empty()});
            if let Some(s) = shape.schema {
                body["schema"] = json!(s);
            }
            if !violations.is_empty() {
                body["errors"] = json!(violations);
            }
            axum::Json(body).into_response()
        }
        Done::Compress(bytes) => {
            let out_len = bytes.len();
            let mut r = ([(header::CONTENT_TYPE, content_types::OCTETS)], bytes).into_response();
            let h = r.headers_mut();
            h.insert(
                headers::ENCODING,
                HeaderValue::from_static(shape.encoding.name()),
            );
            h.insert(headers::INPUT_BYTES, HeaderValue::from(shape.in_bytes));
            h.insert(headers::OUTPUT_BYTES, HeaderValue::from(out_len));
            r
        }
    };
    response.extensions_mut().insert(InBytes(shape.in_bytes));
    let answer_len = http_body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0) as usize;
    if answer_len > ANSWER_CHARGE_MIN {
        permit.shrink_to(answer_len);
        response
            .extensions_mut()
            .insert(AnswerPermit(Arc::new(Mutex::new(Some(permit)))));
    }
    response
}

fn media_type(mode: Mode) -> &'static str {
    match mode {
        Mode::Json => content_types::JSON,
        Mode::Text => content_types::TEXT,
    }
}

fn norm(out: pipeline::NormOutput, shape: &Shape<'_>) -> Response {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let digest = format!("sha-256=:{}:", b64.encode(out.digest));
    let encoding = shape.encoding.name();
    let output_bytes = out.body.len();
    if shape.encoding != Encoding::Identity {
        telemetry::compression(encoding, out.canonical_bytes, output_bytes);
    }
    let mut response = if shape.envelope {
        let mut doc = json!({
            "ok": true,
            "encoding": encoding,
            "input_bytes": shape.in_bytes,
            "canonical_bytes": out.canonical_bytes,
            "output_bytes": output_bytes,
            "digest": digest,
            "data": b64.encode(&out.body),
        });
        if let Some(s) = shape.schema {
            doc["schema"] = json!(s);
        }
        axum::Json(doc).into_response()
    } else {
        let ct = match shape.encoding {
            Encoding::Identity => media_type(shape.mode),
            _ => content_types::OCTETS,
        };
        ([(header::CONTENT_TYPE, ct)], out.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(headers::ENCODING, HeaderValue::from_static(encoding));
    h.insert(headers::INPUT_BYTES, HeaderValue::from(shape.in_bytes));
    h.insert(
        headers::CANONICAL_BYTES,
        HeaderValue::from(out.canonical_bytes),
    );
    h.insert(headers::OUTPUT_BYTES, HeaderValue::from(output_bytes));
    if let Some(s) = shape.schema.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(headers::SCHEMA, s);
    }
    if let Ok(d) = HeaderValue::from_str(&digest) {
        h.insert(headers::DIGEST, d);
    }
    response
}

/// The in-flight bytes of an answer on its way out; the server holds it until the
/// client has taken the answer (or the connection is gone). Shared only because response
/// extensions must be `Clone`: the server takes it out once.
#[derive(Clone)]
pub(crate) struct AnswerPermit(Arc<Mutex<Option<BytesPermit>>>);

impl AnswerPermit {
    pub(crate) fn take(&self) -> Option<BytesPermit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
