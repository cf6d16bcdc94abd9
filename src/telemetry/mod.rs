//! What normd tells the outside about itself: metrics, logs and trace ids.
//!
//! - [`series`]: every metric, in one table, the Prometheus recorder and the recording
//!   functions;
//! - [`logs`]: the JSON-lines log writer, the access-log line and the panic hook;
//! - [`trace`]: the trace id of a request.
//!
//! Never blocks the request path: metrics are atomic updates; log lines go through a
//! bounded, lossy, non-blocking writer (a full buffer drops lines, never requests).

mod logs;
mod series;
mod trace;

pub use logs::*;
pub use series::*;
pub(crate) use trace::*;
