//! The two listeners and the serving loop: socket file hygiene and permissions, the
//! loopback rule, connection limits, header-read, idle and send timeouts, and the drain
//! that a shutdown signal starts.
//!
//! Owns: everything between `accept` and the router. The socket and TCP listeners share
//! `--max-connections` permits, taken right after `accept`. A connection past the limit
//! gets one answer, then `Connection: close` (a few at a time; past that it is closed
//! unanswered): a work call gets 429 `overloaded` at once, so a client learns "no"
//! instead of waiting in the kernel's backlog; health, metrics and the other cheap reads
//! are served as usual, so the kubelet's probe is never blocked by work connections.
//! `--metrics-listen` has its own few permits besides.
//! Never: steals a live socket (another normd answering on the path is an error),
//! never leaves the socket with default permissions (mode and group are applied right
//! after bind, and failure to do so fails startup), and never leaves behind a socket
//! file it bound, whether startup fails later or shutdown completes.

mod activity;
mod conn;
mod drain;
mod listen;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::api;
use crate::app::AppState;
use conn::{Connections, Limit, Serving};
use listen::Acceptor;
pub use listen::{bind, resolve_group, Listeners};

/// Serves `listeners` until `shutdown` resolves, then drains (see [`drain`]) and returns.
pub async fn run(state: AppState, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let cfg = Arc::clone(&state.config);
    let router = api::router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Connections::new();
    let work_limit = Limit::new(cfg.max_connections, "--max-connections");
    // The work routes on the socket and TCP; observation only on --metrics-listen.
    let mut acceptors = Vec::new();
    let mut socket_file = None;
    if let Some((listener, file)) = listeners.unix {
        acceptors.push((
            Acceptor::Unix(listener),
            "unix",
            router.clone(),
            work_limit.clone(),
        ));
        socket_file = Some(file);
    }
    if let Some(listener) = listeners.tcp {
        acceptors.push((
            Acceptor::Tcp(listener),
            "tcp",
            router.clone(),
            work_limit.clone(),
        ));
    }
    if let Some(listener) = listeners.metrics {
        acceptors.push((
            Acceptor::Tcp(listener),
            "metrics",
            api::metrics_router(state.clone()),
            Limit::new(
                conn::METRICS_LISTENER_CONNECTIONS,
                "the metrics listener's limit",
            ),
        ));
    }
    let accept_tasks: Vec<_> = acceptors
        .into_iter()
        .map(|(acceptor, name, routes, limit)| {
            tokio::spawn(conn::accept_loop(
                acceptor,
                Serving {
                    listener_name: name,
                    router: routes,
                    cfg: Arc::clone(&cfg),
                    limit,
                    connections: connections.clone(),
                    stop: stop_rx.clone(),
                },
            ))
        })
        .collect();

    shutdown.await;
    let signalled = Instant::now();
    drain::drain(
        &state,
        signalled,
        drain::Serving {
            stop_accepting: stop_tx,
            accept_tasks,
            connections,
            socket: socket_file,
        },
    )
    .await;
}
