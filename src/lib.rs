//! normd: a localhost sidecar that takes normalize → validate → compress of JSON payloads
//! off a garbage-collected app's heap.
//!
//! Module map. Data flows one way, listener → admission → pipeline → response, and each
//! module imports only modules listed below it (`tests/architecture.rs` checks this):
//!
//! - [`server`]    the Unix socket and 127.0.0.1 listeners, connection limits and
//!   timeouts, and the drain a shutdown signal starts
//! - [`api`]       the routers and handlers: request → plan → guards → admission →
//!   pipeline → response, and the info routes
//! - [`app`]       the shared state the handlers read, how `serve` builds it, and its
//!   background tasks (memory sampler, self-probe, flags poller, schema reload)
//! - [`shutdown`]  the signals: SIGTERM/SIGINT to stop, SIGHUP to reload schemas
//! - [`health`]    livez/readyz, memory watermarks, the self-probe
//! - [`flags`]     per-endpoint feature flags from a polled file
//! - [`config`]    every knob: CLI flag, `NORMD_*` env, config file, defaults → `Config`
//! - [`error`]     the one problem type and the one table of error codes
//! - [`admission`] CPU pool, bounded queue, deadlines, shedding, in-flight byte budget
//! - [`telemetry`] the metrics table, Prometheus rendering, JSON logs, trace ids
//! - [`client`]    a one-shot HTTP client over either transport (self-probe, `normd probe`)
//! - [`pipeline`]  the pure core: `canonical` (RFC 8785), `normalize`, `validate`, `codec`
//! - [`wire`]      routes, header names and content types: the facts on the wire
//! - [`sched`]     a scheduling hint for the I/O threads (one of the crate's three `unsafe` calls)
//! - [`allocator`] freed memory back to the OS under a memory watermark (the second)
//! - [`paging`]    the pages only start-up used, given back once serving (the third)
#![deny(unsafe_code)]

pub(crate) mod admission;
pub(crate) mod allocator;
pub(crate) mod api;
pub mod app;
pub mod client;
pub mod config;
pub(crate) mod error;
pub mod flags;
pub(crate) mod health;
pub(crate) mod paging;
pub mod pipeline;
pub mod sched;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub(crate) mod wire;
