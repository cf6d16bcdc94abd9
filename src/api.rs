//! The HTTP routes: request → admission → pipeline → response, and the info routes.
//!
//! Owns: reading the request (selection, media types, deadline, body caps) and writing
//! the response (headers, digest, envelope). Thin by design: every decision about work
//! lives in `admission`, every computation in `pipeline`, every error mapping in `error`.
//! Never: runs pipeline work here (it goes to the pool), and never reads a body it is
//! about to refuse.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use crate::admission::{BytesPermit, Refusal};
use crate::error::{Code, Problem};
use crate::health::PROBE_HEADER;
use crate::pipeline::{self, ContentEncoding, Encoding, Mode, Plan};
use crate::telemetry;
use crate::AppState;

/// The four work routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Norm,
    Normalize,
    Validate,
    Compress,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Norm => "norm",
            Route::Normalize => "normalize",
            Route::Validate => "validate",
            Route::Compress => "compress",
        }
    }
}

/// Label for metrics and logs, from the path alone (bounded cardinality).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/norm" => "norm",
        "/normalize" => "normalize",
        "/validate" => "validate",
        "/compress" => "compress",
        "/livez" => "livez",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/flags" => "flags",
        "/schemas" => "schemas",
        _ => "other",
    }
}

/// The paths whose POSTs run on the worker pool; the connection limit refuses only those.
pub fn is_work_path(path: &str) -> bool {
    matches!(
        route_label(path),
        "norm" | "normalize" | "validate" | "compress"
    )
}

/// Wire bytes of the request body, reported by work handlers (on every answer) for logs
/// and the bytes metrics; only work handlers' answers carry it.
#[derive(Debug, Clone, Copy)]
pub struct InBytes(pub usize);

/// Middleware around every route: trace id, `X-Request-Id`, access log, request metrics.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let received = Instant::now();
    let headers = request.headers();
    let trace_id = telemetry::trace_id(
        headers.get("traceparent").and_then(|v| v.to_str().ok()),
        headers.get("x-request-id").and_then(|v| v.to_str().ok()),
    );
    let is_probe = headers
        .get(PROBE_HEADER)
        .is_some_and(|v| v.as_bytes() == state.probe_token.as_bytes());
    // The self-probe's canaries are counted apart, so they neither inflate the request
    // rate of an idle pod nor dilute its error ratios and latency quantiles.
    let route = if is_probe {
        "probe"
    } else {
        route_label(request.uri().path())
    };
    let mut response = next.run(request).await;
    let took = received.elapsed();
    let status = response.status().as_u16();
    let code = response.extensions().get::<Code>().map(|c| c.as_str());
    let work_bytes = response.extensions().get::<InBytes>().map(|b| b.0);
    let in_bytes = work_bytes.unwrap_or(0);
    let out_bytes = http_body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0) as usize;
    // A work handler's answer, whatever its status: a 422's problem or a 504's body read
    // in full are bytes in and out as much as a 200's (canaries apart, as above).
    if work_bytes.is_some() {
        telemetry::bytes(route, in_bytes, out_bytes);
    }
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if state.health.draining() {
        // Draining: keep-alive clients move to new connections (the app's fallback, or a
        // new normd) before the listeners close, rather than race the close with their
        // next request on this one.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    telemetry::request_done(route, status, code.unwrap_or("ok"), took);
    // Every request gets its line, health checks and scrapes included; only the
    // self-probe's own canaries (two a second, from inside) are left out.
    if route != "probe" {
        telemetry::access_log(
            state.config.log_sample,
            &trace_id,
            route,
            status,
            code,
            in_bytes,
            out_bytes,
            took,
        );
    }
    response
}

pub async fn norm(State(s): State<AppState>, req: Request) -> Response {
    work(s, Route::Norm, req).await
}
pub async fn normalize(State(s): State<AppState>, req: Request) -> Response {
    work(s, Route::Normalize, req).await
}
pub async fn validate(State(s): State<AppState>, req: Request) -> Response {
    work(s, Route::Validate, req).await
}
pub async fn compress(State(s): State<AppState>, req: Request) -> Response {
    work(s, Route::Compress, req).await
}

/// Decrements the in-flight gauge however the handler ends (including client gone).
struct InflightGauge;
impl InflightGauge {
    fn enter() -> Self {
        telemetry::inflight_requests(1.0);
        InflightGauge
    }
}
impl Drop for InflightGauge {
    fn drop(&mut self) {
        telemetry::inflight_requests(-1.0);
    }
}

/// Marks a work call that arrived on a connection past `--max-connections`: the handler
/// refuses it at once with this detail, so it is logged, counted and traced like any
/// other refusal (the server adds `Connection: close` and `X-Normd-Refused`).
#[derive(Debug, Clone)]
pub struct ConnectionLimited(pub String);

async fn work(state: AppState, route: Route, req: Request) -> Response {
    if let Some(limited) = req.extensions().get::<ConnectionLimited>() {
        telemetry::rejection("overloaded");
        let mut r = Problem::new(Code::Overloaded, limited.0.clone()).into_response();
        r.extensions_mut().insert(InBytes(0)); // its body is discarded unread
        return r;
    }
    let received = Instant::now();
    let _inflight = InflightGauge::enter();
    let mut body_abandoned = false;
    match work_inner(&state, route, req, received, &mut body_abandoned).await {
        Ok(response) => response,
        Err((problem, in_bytes)) => {
            if let Some(reason) = rejection_reason(problem.code) {
                telemetry::rejection(reason);
            }
            if problem.code == Code::SchemaViolation {
                if let Some(s) = problem.extensions.get("schema").and_then(|v| v.as_str()) {
                    telemetry::schema_failure(s);
                }
            }
            if problem.code == Code::Internal {
                tracing::error!(route = route.name(), detail = %problem.detail, "internal error");
            }
            let mut r = problem.into_response();
            r.extensions_mut().insert(InBytes(in_bytes));
            if body_abandoned {
                // hyper cannot reuse a connection whose request body was left half-read;
                // saying so lets the client open a new one instead of finding the old
                // one closed under its next request.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    }
}

fn rejection_reason(code: Code) -> Option<&'static str> {
    match code {
        Code::Overloaded => Some("overloaded"),
        Code::DeadlineExceeded => Some("deadline"),
        Code::MemoryPressure => Some("memory_pressure"),
        Code::Disabled => Some("disabled"),
        Code::Draining => Some("draining"),
        Code::NotReady => Some("not_ready"),
        _ => None,
    }
}

type Failed = (Problem, usize);

fn fail(p: Problem) -> Failed {
    (p, 0)
}

async fn work_inner(
    state: &AppState,
    route: Route,
    req: Request,
    received: Instant,
    body_abandoned: &mut bool,
) -> Result<Response, Failed> {
    let (parts, body) = req.into_parts();
    let mut unread = Unread::new(body, state.config.max_body_bytes);
    let headers = &parts.headers;
    let max_body = state.config.max_body_bytes;
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|len| len > max_body) {
        // Whatever the answer (413 below, or an earlier refusal), this body will not be
        // read, so the connection cannot carry another request: say so. What the client
        // is still sending is discarded for a while after the answer (a lingering
        // close), or its write would fail first and it could miss the answer.
        unread.linger_then_close();
        *body_abandoned = true;
    }
    if let Err(p) = transfer_coding(headers) {
        // The body's framing is not what the client meant: no further request on it.
        *body_abandoned = true;
        return Err(fail(p));
    }
    let is_probe = headers
        .get(PROBE_HEADER)
        .is_some_and(|v| v.as_bytes() == state.probe_token.as_bytes());

    // Cheap refusals first: nothing is read, nothing is queued.
    if !is_probe {
        if !state.flags.get(route.name()).enabled {
            return Err(fail(Problem::new(
                Code::Disabled,
                format!(
                    "/{} is disabled by its feature flag; use the in-app path",
                    route.name()
                ),
            )));
        }
        if state.health.stopping() {
            return Err(fail(Problem::new(
                Code::Draining,
                "normd is shutting down; use the in-app path",
            )));
        }
        if state.health.memory.shedding() {
            return Err(fail(Problem::new(
                Code::MemoryPressure,
                format!(
                    "memory usage {} bytes is above the shed watermark; use the in-app path",
                    state.health.memory.usage()
                ),
            )));
        }
    }

    let selection = Selection::from_query(parts.uri.query().unwrap_or(""), route).map_err(fail)?;
    let (plan, deadline_default, schema_name) =
        resolve_plan(state, route, &selection, headers).map_err(fail)?;
    let content_encoding = content_encoding(headers).map_err(fail)?;
    if let Some(len) = declared_len {
        if len > max_body {
            return Err(fail(
                Problem::new(
                    Code::PayloadTooLarge,
                    format!("body of {len} bytes exceeds the limit of {max_body} bytes"),
                )
                .with("limit", max_body),
            ));
        }
    }
    let deadline = deadline_for(state, headers, deadline_default, received).map_err(fail)?;
    if deadline <= Instant::now() {
        // A budget spent on arrival: no queue slot, no body read, no work.
        return Err(fail(refusal_problem(Refusal::DeadlineExceeded)));
    }

    let slot = state
        .admission
        .reserve(deadline, is_probe)
        .map_err(|r| fail(refusal_problem(r)))?;
    let mut permit = state
        .admission
        .reserve_bytes(declared_len.unwrap_or(max_body))
        .map_err(|r| fail(refusal_problem(r)))?;

    // Read the body under both the size cap and the deadline (and answer, rather than
    // be cut, if the shutdown timeout comes first). One cutoff watch serves the body
    // read and the work below.
    let cutoff = state.health.wait_cutoff();
    tokio::pin!(cutoff);
    let collected = tokio::select! {
        c = tokio::time::timeout_at(deadline.into(), unread.read_capped()) => c,
        () = &mut cutoff => {
            *body_abandoned = true;
            return Err(fail(cut_off_problem()));
        }
    };
    // Any failure below leaves the body partly read: the connection cannot be reused.
    *body_abandoned = !matches!(collected, Ok(Ok(_)));
    let raw: Bytes = match collected {
        Err(_) => return Err(fail(refusal_problem(Refusal::DeadlineExceeded))),
        Ok(Err(BodyError::TooLarge)) => {
            // Past the cap while streaming (a chunked body): what the client still
            // sends is discarded, as for a declared length, so it reads its 413.
            unread.linger_then_close();
            return Err(fail(
                Problem::new(
                    Code::PayloadTooLarge,
                    format!("body exceeds the limit of {max_body} bytes"),
                )
                .with("limit", max_body),
            ));
        }
        Ok(Err(BodyError::Read(e))) => {
            return Err(fail(Problem::new(
                Code::BadParameter,
                format!("could not read the request body: {e}"),
            )))
        }
        Ok(Ok(bytes)) => bytes,
    };
    let in_bytes = raw.len();
    let max_decoded = state.config.max_decoded_bytes;
    let debug_panic = state.config_debug_panic && headers.contains_key("x-normd-debug-panic");

    let (encoding, mode) = (plan.encoding, plan.mode);
    let work = state.admission.run(
        slot,
        deadline,
        move |budget| -> Result<(Done, BytesPermit), Problem> {
            if debug_panic {
                panic!("panic requested by x-normd-debug-panic");
            }
            let decoded: std::borrow::Cow<[u8]> = if content_encoding == ContentEncoding::Identity {
                std::borrow::Cow::Borrowed(raw.as_ref())
            } else {
                // The decoder's window is charged before the decoder allocates it.
                let window = pipeline::decode_memory(&raw, content_encoding, max_decoded)?;
                permit.grow(window).map_err(refusal_problem)?;
                let d = pipeline::decode(&raw, content_encoding, max_decoded, budget)?;
                permit.grow(d.len()).map_err(refusal_problem)?;
                std::borrow::Cow::Owned(d)
            };
            // What the work itself will allocate (a parse tree, a codec's tables) is
            // charged too, so that memory stays within the budget however the calls
            // in flight are shaped; alone, a call still runs.
            let working = match route {
                Route::Norm => pipeline::norm_memory(&decoded, &plan),
                Route::Normalize => pipeline::normalize_memory(&decoded, &plan),
                Route::Validate => pipeline::check_memory(&decoded, &plan),
                Route::Compress => pipeline::compress_memory(&decoded, &plan),
            };
            permit.grow(working).map_err(refusal_problem)?;
            let done = match route {
                Route::Norm => Done::Norm(pipeline::norm(&decoded, &plan, budget)?),
                Route::Normalize => Done::Normalize(pipeline::normalize(&decoded, &plan, budget)?),
                Route::Validate => Done::Validate(pipeline::check(&decoded, &plan, budget)?),
                Route::Compress => Done::Compress(pipeline::compress(&decoded, &plan, budget)?),
            };
            Ok((done, permit))
        },
    );
    // Dropping `work` at the cutoff takes a queued job back, or tells a running one to
    // stop at its next checkpoint.
    let outcome = tokio::select! {
        o = work => o,
        () = &mut cutoff => return Err((cut_off_problem(), in_bytes)),
    };
    let (done, mut permit) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(problem)) => return Err((problem, in_bytes)),
        Err(refusal) => return Err((refusal_problem(refusal), in_bytes)),
    };

    let mut response = match done {
        Done::Norm(out) => norm_response(
            encoding,
            mode,
            schema_name.as_deref(),
            in_bytes,
            out,
            wants_envelope(headers),
        ),
        Done::Normalize(n) => {
            let ct = match n.mode {
                Mode::Json => "application/json",
                Mode::Text => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, ct)], n.bytes).into_response()
        }
        Done::Validate(violations) => {
            if !violations.is_empty() {
                if let Some(s) = &schema_name {
                    telemetry::schema_failure(s);
                }
            }
            let mut body = json!({"valid": violations.is_empty()});
            if let Some(s) = &schema_name {
                body["schema"] = json!(s);
            }
            if !violations.is_empty() {
                body["errors"] = json!(violations);
            }
            axum::Json(body).into_response()
        }
        Done::Compress(bytes) => {
            let out_len = bytes.len();
            let mut r =
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
            let h = r.headers_mut();
            h.insert(
                "x-normd-encoding",
                HeaderValue::from_static(encoding.name()),
            );
            h.insert("x-normd-input-bytes", HeaderValue::from(in_bytes));
            h.insert("x-normd-output-bytes", HeaderValue::from(out_len));
            r
        }
    };
    response.extensions_mut().insert(InBytes(in_bytes));
    // A large answer stays charged to the in-flight budget until the client has taken it
    // (the server releases it); a small one costs less than the bookkeeping.
    let answer_len = http_body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0) as usize;
    if answer_len > ANSWER_CHARGE_MIN {
        permit.shrink_to(answer_len);
        response
            .extensions_mut()
            .insert(AnswerPermit(Arc::new(Mutex::new(Some(permit)))));
    }
    Ok(response)
}

/// Answers larger than this are charged to the in-flight byte budget until sent.
const ANSWER_CHARGE_MIN: usize = 16 << 10;

/// The in-flight bytes of an answer on its way out; the server holds it until the
/// client has taken the answer (or the connection is gone). Shared only because response
/// extensions must be `Clone`: the server takes it out once.
#[derive(Clone)]
pub struct AnswerPermit(Arc<Mutex<Option<BytesPermit>>>);

impl AnswerPermit {
    pub fn take(&self) -> Option<BytesPermit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The request body until a handler reads it. A call refused before reading its body
/// still has the body discarded (streamed to nowhere, bounded in bytes and time) by a
/// background task, so the client sees the 429/503 instead of a connection reset
/// mid-upload, and the keep-alive connection survives. Nothing is buffered.
struct Unread {
    body: Option<axum::body::Body>,
    limit: usize,
}

impl Unread {
    fn new(body: axum::body::Body, limit: usize) -> Self {
        Self {
            body: Some(body),
            limit,
        }
    }

    /// Reads the whole body, up to the cap. Past the cap, or cut by the deadline, the
    /// rest stays here, so dropping `self` discards it (see [`Drop`]).
    async fn read_capped(&mut self) -> Result<Bytes, BodyError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(Bytes::new());
        };
        let (mut first, mut rest): (Option<Bytes>, Vec<u8>) = (None, Vec::new());
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
                continue; // trailers
            };
            total += data.len();
            if total > self.limit {
                return Err(BodyError::TooLarge);
            }
            // One frame (the usual case with Content-Length) is kept without a copy.
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                held => {
                    if let Some(held) = held {
                        rest.extend_from_slice(&held);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        self.body = None;
        Ok(first.unwrap_or_else(|| Bytes::from(rest)))
    }

    /// Over the size cap: the connection closes after the answer, but first what the
    /// client sends on is discarded, up to [`LINGER_BYTES`] (and the time bound): a
    /// client still writing a refused body would otherwise get a reset (EPIPE) before
    /// it reads the 413, and take a dead connection for the answer (RFC 9112 §9.6).
    fn linger_then_close(&mut self) {
        self.limit = LINGER_BYTES;
    }
}

/// Why a request body could not be read whole.
enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Bytes of an over-the-cap body discarded after its 413, before the connection closes:
/// enough for the bodies an app sends by mistake (a document a few times the cap), small
/// next to what an upload costs the client, and never buffered.
const LINGER_BYTES: usize = 64 << 20;

impl Drop for Unread {
    fn drop(&mut self) {
        let (Some(mut body), limit) = (self.body.take(), self.limit) else {
            return;
        };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        tokio::spawn(async move {
            let mut seen = 0usize;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(frame)) = body.frame().await {
                    seen += frame.data_ref().map_or(0, |d| d.len());
                    if seen > limit {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

enum Done {
    Norm(pipeline::NormOutput),
    Normalize(pipeline::Normalized),
    Validate(Vec<pipeline::Violation>),
    Compress(Vec<u8>),
}

fn wants_envelope(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let mut parts = m.split(';');
            let range = parts.next().unwrap_or("").trim();
            // `q=0` means "not acceptable" (RFC 9110 §12.4.2).
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
                })
            });
            range.eq_ignore_ascii_case("application/json") && !refused
        })
}

fn norm_response(
    enc: Encoding,
    mode: Mode,
    schema: Option<&str>,
    in_bytes: usize,
    out: pipeline::NormOutput,
    envelope: bool,
) -> Response {
    let digest = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(out.digest)
    );
    let encoding = enc.name();
    let output_bytes = out.body.len();
    if enc != Encoding::Identity {
        telemetry::compression(encoding, out.canonical_bytes, output_bytes);
    }
    let mut response = if envelope {
        let mut doc = json!({
            "ok": true,
            "encoding": encoding,
            "input_bytes": in_bytes,
            "canonical_bytes": out.canonical_bytes,
            "output_bytes": output_bytes,
            "digest": digest,
            "data": base64::engine::general_purpose::STANDARD.encode(&out.body),
        });
        if let Some(s) = schema {
            doc["schema"] = json!(s);
        }
        axum::Json(doc).into_response()
    } else {
        let ct = match (enc, mode) {
            (Encoding::Identity, Mode::Json) => "application/json",
            (Encoding::Identity, Mode::Text) => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        };
        ([(header::CONTENT_TYPE, ct)], out.body).into_response()
    };
    let h = response.headers_mut();
    h.insert("x-normd-encoding", HeaderValue::from_static(encoding));
    h.insert("x-normd-input-bytes", HeaderValue::from(in_bytes));
    h.insert(
        "x-normd-canonical-bytes",
        HeaderValue::from(out.canonical_bytes),
    );
    h.insert("x-normd-output-bytes", HeaderValue::from(output_bytes));
    if let Some(s) = schema.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert("x-normd-schema", s);
    }
    if let Ok(d) = HeaderValue::from_str(&digest) {
        h.insert("x-normd-digest", d);
    }
    response
}

/// The answer to a call still open when the shutdown timeout is about to cut it.
fn cut_off_problem() -> Problem {
    Problem::new(
        Code::Draining,
        "normd is shutting down and its shutdown timeout is up; use the in-app path",
    )
}

/// Maps an admission refusal to its problem (the one place that does).
fn refusal_problem(r: Refusal) -> Problem {
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

/// `?profile=&schema=&encoding=&level=` as given.
#[derive(Debug, Default)]
struct Selection {
    profile: Option<String>,
    schema: Option<String>,
    encoding: Option<String>,
    level: Option<String>,
}

impl Selection {
    fn from_query(query: &str, route: Route) -> Result<Self, Problem> {
        let mut s = Selection::default();
        for (k, v) in form_urlencoded_pairs(query) {
            let slot = match k.as_str() {
                "profile" => &mut s.profile,
                "schema" => &mut s.schema,
                "encoding" => &mut s.encoding,
                "level" => &mut s.level,
                other => {
                    return Err(Problem::new(
                        Code::BadParameter,
                        format!(
                            "unknown query parameter {other:?} on /{} (known: profile, schema, encoding, level)",
                            route.name()
                        ),
                    ))
                }
            };
            // Two values for one name: neither silently wins.
            if slot.is_some() {
                return Err(Problem::new(
                    Code::BadParameter,
                    format!("query parameter {k:?} is given more than once"),
                ));
            }
            *slot = Some(v);
        }
        Ok(s)
    }
}

/// The query string's `name=value` pairs, percent- and `+`-decoded.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Builds the pipeline plan from the profile, the query overrides and the media type.
fn resolve_plan(
    state: &AppState,
    route: Route,
    sel: &Selection,
    headers: &HeaderMap,
) -> Result<(Plan, Duration, Option<String>), Problem> {
    let profile = match &sel.profile {
        None => None,
        Some(name) => Some(state.config.profiles.get(name).ok_or_else(|| {
            Problem::unknown_name(
                Code::UnknownProfile,
                "profile",
                name,
                state.config.profiles.keys().cloned().collect(),
            )
        })?),
    };
    if route == Route::Compress && sel.schema.is_some() {
        return Err(Problem::new(
            Code::BadParameter,
            "/compress does not validate: drop ?schema= (use /norm to validate and compress)",
        ));
    }
    let defaults = crate::config::Profile::default();
    let p = profile.unwrap_or(&defaults);

    let encoding = match &sel.encoding {
        None => p.encoding,
        Some(e) => Encoding::parse(e).ok_or_else(|| {
            Problem::unknown_name(
                Code::UnknownEncoding,
                "encoding",
                e,
                Encoding::ALL.iter().map(|e| e.name().to_owned()).collect(),
            )
        })?,
    };
    let level = match &sel.level {
        Some(l) => {
            let (lo, hi) = encoding.level_range();
            let n: i32 = l.trim().parse().map_err(|_| {
                Problem::new(Code::BadParameter, format!("level {l:?} is not an integer"))
            })?;
            if n < lo || n > hi {
                return Err(Problem::new(
                    Code::BadParameter,
                    format!(
                        "level {n} is out of range {lo}..={hi} for {}",
                        encoding.name()
                    ),
                )
                .with("min", lo)
                .with("max", hi));
            }
            n
        }
        // A profile's level belongs to the profile's encoding; a query that changes the
        // encoding gets that encoding's default level.
        None if sel.encoding.is_some() && encoding != p.encoding => encoding.default_level(),
        None => p.level,
    };

    let schema_name = sel.schema.clone().or_else(|| p.schema.clone());
    let schema = match &schema_name {
        None => None,
        Some(name) => {
            let set = state.schemas();
            if set.is_empty() {
                // Nothing is loaded (see /readyz `schemas`): not the caller's mistake, and
                // a reload may fix it, so the app should fall back and retry later.
                return Err(Problem::new(
                    Code::NotReady,
                    format!("schema {name:?} cannot be used: no schemas are loaded; use the in-app path"),
                ));
            }
            Some(set.get(name).ok_or_else(|| {
                Problem::unknown_name(Code::UnknownSchema, "schema", name, set.names())
            })?)
        }
    };

    let mode = if route == Route::Compress {
        Mode::Json // unused: /compress takes any bytes
    } else {
        media_mode(headers)?
    };
    if mode == Mode::Text && schema.is_some() {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            "schema validation needs a JSON body (Content-Type: application/json)",
        ));
    }
    if mode == Mode::Text && route == Route::Validate {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            "/validate takes JSON (Content-Type: application/json)",
        ));
    }

    let plan = Plan {
        mode,
        parse: pipeline::ParseOptions {
            max_depth: state.config.max_depth,
            numbers: p.numbers,
        },
        json_rules: p.json_rules.clone(),
        text_rules: p.text_rules,
        schema,
        encoding,
        level,
        max_errors: state.config.max_errors,
    };
    let deadline = p.deadline.unwrap_or(state.config.default_deadline);
    let validated = plan.schema.as_ref().map(|s| s.name.clone());
    Ok((plan, deadline, validated))
}

/// Refuses a `Transfer-Encoding` other than plain `chunked`. hyper frames a body by its
/// last coding and passes the others through unapplied, so `gzip, chunked` would be
/// served as if the gzip coding were not there; normd implements no transfer coding but
/// chunked, and answers 400 (RFC 9112 §6.1 allows 501; 400 keeps the answer in the
/// contract's codes, and either way the client must not retry unchanged).
fn transfer_coding(headers: &HeaderMap) -> Result<(), Problem> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Problem::new(
            Code::BadParameter,
            "Transfer-Encoding: only `chunked` is supported (use Content-Encoding to send a \
             compressed body)",
        )),
    }
}

/// JSON for `application/json`, `*/*+json` or no Content-Type; text for `text/plain`.
/// A `charset` other than UTF-8 (or its subset US-ASCII) is refused: the body would
/// otherwise be read as UTF-8 and its text changed. An empty `Content-Type:` line names
/// no media type, so it counts as missing (some clients send one for "unset").
fn media_mode(headers: &HeaderMap) -> Result<Mode, Problem> {
    let mut lines = headers.get_all(header::CONTENT_TYPE).iter();
    let first = lines.next();
    // Two different Content-Type lines: which one the client meant is a guess; refuse.
    if let Some(other) = lines.find(|v| {
        first.is_some_and(|f| {
            !f.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(v.as_bytes().trim_ascii())
        })
    }) {
        return Err(Problem::new(
            Code::BadParameter,
            format!(
                "Content-Type is given twice with different values ({:?} and {:?})",
                first
                    .map(|f| String::from_utf8_lossy(f.as_bytes()))
                    .unwrap_or_default(),
                String::from_utf8_lossy(other.as_bytes())
            ),
        ));
    }
    let Some(ct) = first.filter(|v| !v.as_bytes().trim_ascii().is_empty()) else {
        return Ok(Mode::Json);
    };
    let text = ct.to_str().unwrap_or("");
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    if let Some(cs) = charset.filter(|cs| !matches!(cs.as_str(), "utf-8" | "utf8" | "us-ascii")) {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            format!("charset {cs:?} is not supported (normd reads UTF-8 only)"),
        ));
    }
    if essence == "application/json" || (essence.contains('/') && essence.ends_with("+json")) {
        Ok(Mode::Json)
    } else if essence == "text/plain" {
        Ok(Mode::Text)
    } else {
        Err(Problem::new(
            Code::UnsupportedMediaType,
            format!(
                "Content-Type {text:?} is not supported (use application/json, */*+json or text/plain)"
            ),
        ))
    }
}

/// The request's `Content-Encoding`. Several header lines form one list (RFC 9110 §5.3),
/// so `gzip` and `deflate` on two lines are refused like `gzip, deflate` on one, rather
/// than the first line deciding alone.
fn content_encoding(headers: &HeaderMap) -> Result<ContentEncoding, Problem> {
    let mut lines = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Ok(ContentEncoding::Identity);
    };
    let mut value = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for more in lines {
        value.push_str(", ");
        value.push_str(&String::from_utf8_lossy(more.as_bytes()));
    }
    ContentEncoding::from_header(&value).ok_or_else(|| {
        Problem::new(
            Code::UnsupportedContentEncoding,
            format!(
                "Content-Encoding {value:?} is not supported (one of gzip, br, zstd, identity; \
                 stacked codings are not)"
            ),
        )
    })
}

/// `X-Deadline-Ms` (relative to receipt), else the profile/route default, capped.
fn deadline_for(
    state: &AppState,
    headers: &HeaderMap,
    default: Duration,
    received: Instant,
) -> Result<Instant, Problem> {
    let mut given = headers.get_all("x-deadline-ms").iter();
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        return Err(Problem::new(
            Code::BadParameter,
            "X-Deadline-Ms is given more than once",
        ));
    }
    let budget = match first {
        None => default,
        Some(v) => {
            let text = v.to_str().unwrap_or("").trim();
            match text.parse::<u64>() {
                // 0 is a well-formed budget that is already spent (the caller's own
                // deadline passed): a 504 below, not a malformed header.
                Ok(ms) => Duration::from_millis(ms),
                // Digits too many for u64 are still a budget above the cap, not a
                // malformed one: capped like any other large value.
                Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Duration::MAX,
                _ => {
                    return Err(Problem::new(
                        Code::BadParameter,
                        format!(
                        "X-Deadline-Ms {text:?} must be a whole number of milliseconds (0 or more)"
                    ),
                    ))
                }
            }
        }
    };
    Ok(received + budget.min(state.config.max_deadline))
}

// ---------------------------------------------------------------------------------
// Info routes: never queued, never shed.

pub async fn livez() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

pub async fn readyz(State(state): State<AppState>, req: Request) -> Response {
    let exclude: Vec<String> = form_urlencoded_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| k == "exclude")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = exclude
        .iter()
        .find(|e| !crate::health::CHECKS.contains(&e.as_str()))
    {
        return Problem::new(
            Code::BadParameter,
            format!(
                "unknown check {bad:?} in exclude (checks: {})",
                crate::health::CHECKS.join(", ")
            ),
        )
        .into_response();
    }
    let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
    let (ready, body) = state.health.readyz(&exclude);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut r = (status, axum::Json(body)).into_response();
    if !ready {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render(),
    )
        .into_response()
}

pub async fn flags(State(state): State<AppState>) -> Response {
    let snap = state.flags.snapshot();
    let mut doc = json!({
        "version": snap.version,
        "mtime": snap.mtime,
        "source": snap.source,
        "flags": snap.flags,
        "last_error": snap.last_error,
    });
    // Also in the flags file's own shape (`{"norm": {...}, ...}`), so a client may read
    // GET /flags exactly like the file.
    for (endpoint, flag) in &snap.flags {
        doc[endpoint.as_str()] = json!(flag);
    }
    axum::Json(doc).into_response()
}

pub async fn schemas(State(state): State<AppState>) -> Response {
    let set = state.schemas();
    let list: Vec<_> = set
        .iter()
        .map(|s| json!({"name": s.name, "id": s.id, "$id": s.id, "sha256": s.sha256, "path": s.path}))
        .collect();
    axum::Json(json!({
        "dir": set.dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "embedded".into()),
        "schemas": list,
    }))
    .into_response()
}

pub async fn not_found(req: Request) -> Response {
    Problem::new(
        Code::NotFound,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
    .into_response()
}

pub async fn method_not_allowed(req: Request) -> Response {
    Problem::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let pairs = form_urlencoded_pairs("profile=a%20b&level=5&x+y=1&bad=%zz");
        assert_eq!(pairs[0], ("profile".into(), "a b".into()));
        assert_eq!(pairs[1], ("level".into(), "5".into()));
        assert_eq!(pairs[2], ("x y".into(), "1".into()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert_eq!(media_mode(&h).unwrap(), Mode::Json);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.order+json; charset=utf-8"),
        );
        assert_eq!(media_mode(&h).unwrap(), Mode::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(media_mode(&h).unwrap(), Mode::Text);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        assert_eq!(media_mode(&h).unwrap_err().code, Code::UnsupportedMediaType);
        // UTF-8 only: another charset would be read as UTF-8 and its text changed.
        for ok in [
            "text/plain; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
            "text/plain; charset=us-ascii",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(media_mode(&h).is_ok(), "{ok}");
        }
        for refused in [
            "text/plain; charset=latin1",
            "application/json; charset=utf-16",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(refused));
            assert_eq!(
                media_mode(&h).unwrap_err().code,
                Code::UnsupportedMediaType,
                "{refused}"
            );
        }
    }

    #[test]
    fn a_query_parameter_given_twice_is_refused() {
        assert!(Selection::from_query("encoding=gzip&level=3", Route::Norm).is_ok());
        let p = Selection::from_query("encoding=gzip&encoding=br", Route::Norm).unwrap_err();
        assert_eq!(p.code, Code::BadParameter);
        assert!(p.detail.contains("encoding"), "{}", p.detail);
    }

    #[test]
    fn accept_json_asks_for_the_envelope() {
        let mut h = HeaderMap::new();
        assert!(!wants_envelope(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/json;q=0.9"),
        );
        assert!(wants_envelope(&h));
        // q=0: "not acceptable".
        for refused in ["application/json;q=0", "application/json; q=0.0, */*"] {
            h.insert(header::ACCEPT, HeaderValue::from_static(refused));
            assert!(!wants_envelope(&h), "{refused}");
        }
    }
}
