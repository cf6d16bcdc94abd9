//! The shutdown signal: SIGTERM or SIGINT asks normd to stop; the server drains on it
//! (see `server`). SIGHUP asks for a schema reload (see `app`).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signal streams, installed before normd says it is serving: a SIGTERM that
/// arrives right after startup must drain, not kill the process with the default action.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
}

impl Signals {
    /// Must run inside the tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: Some(signal(SignalKind::hangup())?),
        })
    }

    /// The SIGHUP stream, for the schema-reload task.
    pub fn take_hangups(&mut self) -> Option<Signal> {
        self.hup.take()
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn requested(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
    }
}
