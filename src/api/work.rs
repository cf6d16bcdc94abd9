//! The work handler: request → plan → guards → admission → pipeline → response.

use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue};

use super::body::{BodyError, Unread};
use super::job::Job;
use super::observe::{is_probe, InBytes};
use super::request::{self, Selection};
use super::respond::{self, Shape};
use super::{guards, plan};
use crate::admission::Refusal;
use crate::app::AppState;
use crate::error::{Code, Problem};
use crate::telemetry;
use crate::wire::{headers, Work};

/// Marks a work call that arrived on a connection past `--max-connections`: the handler
/// refuses it at once with this detail, so it is logged, counted and traced like any
/// other refusal (the server adds `Connection: close` and `X-Normd-Refused`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimited(pub String);

/// How a work call ended without its result.
pub(super) enum Failure {
    /// Refused; the connection carries on (its body was read whole, or is discarded in
    /// the background).
    Refused { problem: Problem, in_bytes: usize },
    /// Refused with the body left unread or half-read: the connection cannot carry
    /// another request, and the answer says `Connection: close`.
    Closing(Problem),
}

pub(super) async fn work(state: AppState, work: Work, req: Request) -> Response {
    if let Some(limited) = req.extensions().get::<ConnectionLimited>() {
        let problem = Problem::new(Code::Overloaded, limited.0.clone());
        // Its body is discarded unread by the server.
        return Failure::Refused {
            problem,
            in_bytes: 0,
        }
        .into_response(work);
    }
    let _inflight = InflightGauge::enter();
    match serve(&state, work, req).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(work),
    }
}

async fn serve(state: &AppState, work: Work, req: Request) -> Result<Response, Failure> {
    let received = Instant::now();
    let cfg = &state.config;
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let mut body = Unread::new(body, cfg.max_body_bytes);
    let declared = request::declared_length(h);
    let too_large = declared.filter(|len| *len > cfg.max_body_bytes);
    if too_large.is_some() {
        // Whatever the answer (413 below, or an earlier refusal), this body will not be
        // read, so the connection cannot carry another request.
        body.linger_then_close();
    }
    // A body framed other than the client meant: no further request on this connection.
    request::transfer_coding(h).map_err(Failure::Closing)?;
    let probe = is_probe(state, h);

    // Cheap refusals first: nothing is read, nothing is queued.
    if !probe {
        guards::check(state, work).map_err(|p| body.refuse(p))?;
    }
    let selection =
        Selection::from_query(parts.uri.query().unwrap_or(""), work).map_err(|p| body.refuse(p))?;
    let resolved = plan::resolve(state, work, &selection, h).map_err(|p| body.refuse(p))?;
    let content_encoding = request::content_encoding(h).map_err(|p| body.refuse(p))?;
    if let Some(len) = too_large {
        let max = cfg.max_body_bytes;
        let detail = format!("body of {len} bytes exceeds the limit of {max} bytes");
        return Err(body.refuse(Problem::new(Code::PayloadTooLarge, detail).with("limit", max)));
    }
    let deadline = request::deadline(h, resolved.deadline, cfg.max_deadline, received)
        .map_err(|p| body.refuse(p))?;
    if deadline <= Instant::now() {
        // A budget spent on arrival: no queue slot, no body read, no work.
        return Err(body.refuse(Refusal::DeadlineExceeded.into()));
    }

    let admission = &state.admission;
    let slot = admission
        .reserve(deadline, probe)
        .map_err(|r| body.refuse(r.into()))?;
    let permit = admission
        .reserve_bytes(declared.unwrap_or(cfg.max_body_bytes))
        .map_err(|r| body.refuse(r.into()))?;

    // Read the body under both the size cap and the deadline (and answer, rather than be
    // cut, if the shutdown timeout comes first). One cutoff serves the read and the work.
    let cutoff = state.health.wait_cutoff();
    tokio::pin!(cutoff);
    let raw = tokio::select! {
        read = tokio::time::timeout_at(deadline.into(), body.read_capped()) => read,
        () = &mut cutoff => return Err(Failure::Closing(cut_off())),
    };
    let raw = match raw {
        Ok(Ok(bytes)) => bytes,
        Err(_) => return Err(Failure::Closing(Refusal::DeadlineExceeded.into())),
        Ok(Err(BodyError::TooLarge)) => {
            // Past the cap while streaming (a chunked body): what the client still sends
            // is discarded, as for a declared length, so it reads its 413.
            body.linger_then_close();
            let max = cfg.max_body_bytes;
            let detail = format!("body exceeds the limit of {max} bytes");
            return Err(Failure::Closing(
                Problem::new(Code::PayloadTooLarge, detail).with("limit", max),
            ));
        }
        Ok(Err(BodyError::Read(e))) => {
            let detail = format!("could not read the request body: {e}");
            return Err(Failure::Closing(Problem::new(Code::BadParameter, detail)));
        }
    };
    let in_bytes = raw.len();
    let failed = |problem| Failure::Refused { problem, in_bytes };

    let shape_of = (resolved.plan.encoding, resolved.plan.mode);
    let small = resolved.plan.is_small(in_bytes, content_encoding);
    let job = Job {
        work,
        raw,
        content_encoding,
        plan: resolved.plan,
        max_decoded: cfg.max_decoded_bytes,
        panic: cfg.debug_panic && h.contains_key(headers::DEBUG_PANIC),
    };
    let run = admission.run(slot, deadline, small, move |budget| job.run(budget, permit));
    // Dropping `run` at the cutoff takes a queued job back, or tells a running one to
    // stop at its next checkpoint.
    let outcome = tokio::select! {
        o = run => o,
        () = &mut cutoff => return Err(failed(cut_off())),
    };
    let (done, permit) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(problem)) => return Err(failed(problem)),
        Err(refusal) => return Err(failed(refusal.into())),
    };
    let shape = Shape {
        encoding: shape_of.0,
        mode: shape_of.1,
        schema: resolved.schema.as_deref(),
        in_bytes,
        envelope: request::wants_envelope(h),
    };
    Ok(respond::answer(done, permit, &shape))
}

/// The answer to a call still open when the shutdown timeout is about to cut it.
fn cut_off() -> Problem {
    Problem::new(
        Code::Draining,
        "normd is shutting down and its shutdown timeout is up; use the in-app path",
    )
}

impl Failure {
    fn into_response(self, work: Work) -> Response {
        let (problem, in_bytes, closing) = match self {
            Failure::Refused { problem, in_bytes } => (problem, in_bytes, false),
            Failure::Closing(problem) => (problem, 0, true),
        };
        if let Some(reason) = problem.code.rejection() {
            telemetry::rejection(reason);
        }
        if problem.code == Code::SchemaViolation {
            if let Some(s) = problem.extensions.get("schema").and_then(|v| v.as_str()) {
                telemetry::schema_failure(s);
            }
        }
        if problem.code == Code::Internal {
            tracing::error!(route = work.name(), detail = %problem.detail, "internal error");
        }
        let mut r = problem.into_response();
        r.extensions_mut().insert(InBytes(in_bytes));
        if closing {
            // hyper cannot reuse a connection whose request body was left half-read;
            // saying so lets the client open a new one instead of finding the old one
            // closed under its next request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// Counts the call in `normd_inflight_requests` however the handler ends (client gone
/// included).
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
