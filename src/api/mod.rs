//! The HTTP layer: the routers (built from the route table in [`crate::wire`]), the
//! middleware every request passes, the work handler and the info routes.
//!
//! Data flows one way through it: [`request`] reads what the call asks for, [`plan`]
//! resolves it against profiles and schemas, [`guards`] refuse cheaply, admission
//! reserves, [`job`] runs on the pool (or inline, when admission finds it small and the
//! pool idle), [`respond`] writes the answer. Never reads a body it is about to refuse.

mod body;
mod guards;
mod info;
mod job;
mod observe;
mod plan;
mod request;
mod respond;
mod work;

use axum::extract::{Request, State};
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::app::AppState;
use crate::wire::{self, Endpoint};

pub(crate) use body::discard;
pub(crate) use respond::AnswerPermit;
pub(crate) use work::ConnectionLimited;

/// The routes, identical on the socket and TCP listeners.
pub fn router(state: AppState) -> Router {
    routes(state, wire::ROUTES.iter())
}

/// The `--metrics-listen` routes: observation only, never work, so it may face the pod
/// network for Prometheus while the work routes stay on loopback and the socket.
pub fn metrics_router(state: AppState) -> Router {
    routes(state, wire::ROUTES.iter().filter(|r| r.observation))
}

fn routes<'a>(state: AppState, table: impl Iterator<Item = &'a wire::Route>) -> Router {
    table
        .fold(Router::new(), |router, r| {
            router.route(r.path, endpoint(r.endpoint))
        })
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        // Health checks and scrapes are requests like any other: access log, request
        // metrics, X-Request-Id.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

fn endpoint(e: Endpoint) -> MethodRouter<AppState> {
    match e {
        Endpoint::Work(w) => {
            post(move |State(s): State<AppState>, req: Request| work::work(s, w, req))
        }
        Endpoint::Livez => get(info::livez),
        Endpoint::Readyz => get(info::readyz),
        Endpoint::Metrics => get(info::metrics),
        Endpoint::Flags => get(info::flags),
        Endpoint::Schemas => get(info::schemas),
    }
}

#[cfg(test)]
mod tests;
