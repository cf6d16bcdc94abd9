//! The info routes: health, metrics, flags, schemas, and the 404/405 answers. Never
//! queued, never shed.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use super::request;
use crate::app::AppState;
use crate::error::{Code, Problem};
use crate::health;
use crate::telemetry;
use crate::wire::content_types;

pub(super) async fn livez() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

pub(super) async fn readyz(State(state): State<AppState>, req: Request) -> Response {
    let exclude: Vec<String> = request::form_urlencoded_pairs(req.uri().query().unwrap_or(""))
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
        .find(|e| !health::CHECKS.contains(&e.as_str()))
    {
        return Problem::new(
            Code::BadParameter,
            format!(
                "unknown check {bad:?} in exclude (checks: {})",
                health::CHECKS.join(", ")
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

pub(super) async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, content_types::PROMETHEUS)],
        telemetry::render(),
    )
        .into_response()
}

pub(super) async fn flags(State(state): State<AppState>) -> Response {
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

pub(super) async fn schemas(State(state): State<AppState>) -> Response {
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

pub(super) async fn not_found(req: Request) -> Response {
    Problem::new(
        Code::NotFound,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
    .into_response()
}

pub(super) async fn method_not_allowed(req: Request) -> Response {
    Problem::new(
        Code::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}
