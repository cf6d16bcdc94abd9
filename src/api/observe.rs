//! The middleware around every route: trace id, `X-Request-Id`, access log, request
//! metrics, and `Connection: close` while draining.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderValue};

use crate::app::AppState;
use crate::error::Code;
use crate::telemetry;
use crate::wire::{self, headers};

/// Wire bytes of the request body, set by the work handler on every answer it gives (for
/// logs and the bytes metrics); only work answers carry it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InBytes(pub usize);

/// Label of the self-probe's canaries, counted apart from the routes they call.
const PROBE_LABEL: &str = "probe";

pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let received = Instant::now();
    let h = request.headers();
    let trace_id = telemetry::trace_id(
        h.get(headers::TRACEPARENT).and_then(|v| v.to_str().ok()),
        h.get(headers::REQUEST_ID).and_then(|v| v.to_str().ok()),
    );
    // The self-probe's canaries are counted apart, so they neither inflate the request
    // rate of an idle pod nor dilute its error ratios and latency quantiles.
    let route = if is_probe(&state, h) {
        PROBE_LABEL
    } else {
        wire::route_label(request.uri().path())
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
    // A work answer, whatever its status: a 422's problem or a 504's body read in full
    // are bytes in and out as much as a 200's (canaries apart, as above).
    if work_bytes.is_some() {
        telemetry::bytes(route, in_bytes, out_bytes);
    }
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(headers::REQUEST_ID, v);
    }
    if state.health.draining() {
        // Keep-alive clients move to new connections (the app's fallback, or a new normd)
        // before the listeners close, rather than race the close with their next request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    telemetry::request_done(route, status, code.unwrap_or("ok"), took);
    // Every request gets its line, health checks and scrapes included; only the
    // self-probe's canaries (from inside) are left out.
    if route != PROBE_LABEL {
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

/// Whether the call is one of the self-probe's own (it carries the process's secret).
pub(super) fn is_probe(state: &AppState, h: &http::HeaderMap) -> bool {
    h.get(headers::PROBE)
        .is_some_and(|v| v.as_bytes() == state.probe_token.as_bytes())
}
