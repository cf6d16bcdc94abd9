//! The drain after a shutdown signal. SIGTERM/SIGINT → readiness 503 at once (the
//! endpoints controller needs time to notice) → keep serving for `--drain-delay-ms` (the
//! app is still sending) → stop accepting, remove the socket file → finish in-flight
//! calls → exit 0, all within `--shutdown-timeout-ms` counted from the signal. Shortly
//! before that timeout, calls still open (a stalled upload, work past its turn) are
//! answered 503 `draining`; what the timeout then cuts is logged, never silently dropped.
//! Never: refuses a request that was already accepted without answering it.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::conn::Connections;
use super::listen::SocketFile;
use crate::app::AppState;

/// How long before the shutdown timeout the calls still open are answered, so their
/// answers are written before the connections are cut (at most a quarter of the timeout).
const CUTOFF_MARGIN: Duration = Duration::from_millis(250);

/// What the drain stops: the accept loops (through their stop watch), the socket file,
/// and the connections it waits for.
pub(super) struct Serving {
    pub(super) stop_accepting: watch::Sender<bool>,
    pub(super) accept_tasks: Vec<JoinHandle<()>>,
    pub(super) connections: Connections,
    pub(super) socket: Option<SocketFile>,
}

/// Runs the drain sequence after the signal at `signalled`.
pub(super) async fn drain(state: &AppState, signalled: Instant, serving: Serving) {
    let cfg = &state.config;
    state.health.set_draining();
    tracing::info!(
        drain_delay_ms = cfg.drain_delay.as_millis() as u64,
        "draining: readiness is 503, still serving"
    );
    tokio::time::sleep_until((signalled + cfg.drain_delay).into()).await;

    state.health.set_stopping();
    let _ = serving.stop_accepting.send(true);
    for task in serving.accept_tasks {
        let _ = task.await;
    }
    // Only our own socket file: another instance may have bound the path since.
    if let Some(file) = serving.socket {
        file.remove();
    }
    tracing::info!(
        in_flight = state.admission.queued() + state.admission.running(),
        "stopped accepting; finishing in-flight calls"
    );

    let deadline = signalled + cfg.shutdown_timeout;
    let cutoff = deadline - CUTOFF_MARGIN.min(cfg.shutdown_timeout / 4);
    let finished = serving.connections.all_closed();
    tokio::pin!(finished);
    let on_time = tokio::select! {
        () = &mut finished => true,
        () = tokio::time::sleep_until(cutoff.into()) => false,
    };
    if !on_time {
        // Calls still waiting for a body or for their work get 503 `draining` now, so
        // the cut below finds their answers written rather than dropping them.
        tracing::warn!(
            queued = state.admission.queued(),
            running = state.admission.running(),
            timeout_ms = cfg.shutdown_timeout.as_millis() as u64,
            "shutdown timeout near: answering the calls still open with 503 draining"
        );
        state.health.cut_off();
    }
    // `finished` may only be polled again if it has not completed.
    let outcome = if on_time {
        Ok(())
    } else {
        tokio::time::timeout_at(deadline.into(), finished).await
    };
    match outcome {
        Ok(()) => tracing::info!(
            took_ms = signalled.elapsed().as_millis() as u64,
            "shutdown complete"
        ),
        Err(_) => tracing::warn!(
            queued = state.admission.queued(),
            running = state.admission.running(),
            timeout_ms = cfg.shutdown_timeout.as_millis() as u64,
            "shutdown timeout reached; cutting the connections still open"
        ),
    }
}
