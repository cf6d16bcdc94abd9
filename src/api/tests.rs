//! In-process router tests: the router is built with injected state (a one-worker pool,
//! an explicit memory limit, embedded schemas, no flags file) and called with
//! `tower::ServiceExt::oneshot`, no sockets. The model for HTTP tests; behaviour that is
//! about processes, sockets and connections is tested against the real binary in tests/.

use axum::body::Body;
use axum::Router;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::admission::Admission;
use crate::app::AppState;
use crate::config::{Config, ServeArgs};
use crate::flags::Flags;
use crate::health::{Health, Memory};
use crate::pipeline::SchemaSet;
use crate::wire::{self, headers, Endpoint};

fn state() -> AppState {
    let config = Config::resolve(
        ServeArgs {
            workers: Some(1),
            memory_limit: Some("256M".into()),
            ..Default::default()
        },
        Default::default(),
    )
    .expect("config");
    let schemas = SchemaSet::embedded().expect("embedded schemas");
    let flags = Flags::load(None).expect("flags");
    let health = Health::new(Memory::new(Some(256 << 20), 0.8, 0.9), 3);
    let admission = Admission::start(1, 8, 64 << 20);
    AppState::assemble(config, schemas, flags, health, admission)
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A problem answer with `code`, in the problem media type.
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(
            self.header(header::CONTENT_TYPE.as_str()),
            wire::content_types::PROBLEM
        );
        assert_eq!(self.json()["code"], code);
    }
}

async fn call(router: &Router, req: Request<Body>) -> Answer {
    let response = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

fn post(path: &str) -> http::request::Builder {
    Request::post(path).header(header::CONTENT_TYPE, "application/json")
}

#[tokio::test]
async fn every_route_in_the_table_is_served_with_its_method() {
    let router = super::router(state());
    for r in wire::ROUTES {
        let req = match r.endpoint {
            Endpoint::Work(_) => post(r.path).body(Body::from("{}")),
            _ => Request::get(r.path).body(Body::empty()),
        };
        let a = call(&router, req.expect("request")).await;
        assert_ne!(a.status, StatusCode::NOT_FOUND, "{}", r.path);
        assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.path);
        assert!(!a.header(headers::REQUEST_ID).is_empty(), "{}", r.path);
    }
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_problems() {
    let router = super::router(state());
    let a = call(&router, Request::get("/nope").body(Body::empty()).unwrap()).await;
    a.assert_problem(404, "not_found");
    let a = call(&router, Request::get("/norm").body(Body::empty()).unwrap()).await;
    a.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn the_metrics_router_serves_observation_only() {
    let router = super::metrics_router(state());
    for r in wire::ROUTES {
        let req = match r.endpoint {
            Endpoint::Work(_) => post(r.path).body(Body::from("{}")),
            _ => Request::get(r.path).body(Body::empty()),
        };
        let a = call(&router, req.unwrap()).await;
        assert_eq!(
            a.status == StatusCode::NOT_FOUND,
            !r.observation,
            "{}",
            r.path
        );
    }
}

#[tokio::test]
async fn norm_answers_the_canonical_form_with_its_digest() {
    let router = super::router(state());
    let req = post("/norm?encoding=identity")
        .body(Body::from(r#"{"b":1,"a":2}"#))
        .unwrap();
    let a = call(&router, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], br#"{"a":2,"b":1}"#);
    assert_eq!(a.header(headers::ENCODING), "identity");
    assert_eq!(a.header(headers::CANONICAL_BYTES), "13");
    assert!(a.header(headers::DIGEST).starts_with("sha-256=:"));
}

#[tokio::test]
async fn the_envelope_is_given_to_accept_json() {
    let router = super::router(state());
    let req = post("/norm?encoding=gzip")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(r#"{"a":1}"#))
        .unwrap();
    let a = call(&router, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(
        (doc["ok"].as_bool(), doc["encoding"].as_str()),
        (Some(true), Some("gzip"))
    );
    assert_eq!(doc["canonical_bytes"], 7);
}

#[tokio::test]
async fn a_spent_budget_is_504_and_bad_input_is_400() {
    let router = super::router(state());
    let req = post("/norm")
        .header(headers::DEADLINE_MS, "0")
        .body(Body::from("{}"))
        .unwrap();
    call(&router, req)
        .await
        .assert_problem(504, "deadline_exceeded");

    let req = post("/norm?bogus=1").body(Body::from("{}")).unwrap();
    call(&router, req)
        .await
        .assert_problem(400, "bad_parameter");

    let req = post("/norm").body(Body::from("{\"a\":")).unwrap();
    call(&router, req).await.assert_problem(400, "invalid_json");

    let req = post("/norm?encoding=lz4").body(Body::from("{}")).unwrap();
    let a = call(&router, req).await;
    a.assert_problem(400, "unknown_encoding");
    assert!(a.json()["known"].as_array().is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_closes_the_connection() {
    let router = super::router(state());
    let req = post("/norm")
        .header(header::TRANSFER_ENCODING, "gzip, chunked")
        .body(Body::from("{}"))
        .unwrap();
    let a = call(&router, req).await;
    a.assert_problem(400, "bad_parameter");
    assert_eq!(a.header(header::CONNECTION.as_str()), "close");

    // A refusal before the body is read, with the body discarded: the connection stays.
    let req = post("/norm?bogus=1").body(Body::from("{}")).unwrap();
    let a = call(&router, req).await;
    assert_eq!(a.header(header::CONNECTION.as_str()), "");
}

#[tokio::test]
async fn readyz_names_an_unknown_check() {
    let router = super::router(state());
    let req = Request::get("/readyz?exclude=bogus")
        .body(Body::empty())
        .unwrap();
    let a = call(&router, req).await;
    a.assert_problem(400, "bad_parameter");
    assert!(a.json()["detail"].as_str().unwrap_or("").contains("bogus"));
}
