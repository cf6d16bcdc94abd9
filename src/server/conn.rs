//! Connections: the accept loops, the `--max-connections` permits with eviction of idle
//! connections, serving one connection, and the one answer a connection past the limit
//! gets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::activity::{Activity, ActivityIo, Handling, Outgoing};
use super::listen::{accept, Acceptor, Stream};
use crate::api::{self, AnswerPermit, ConnectionLimited};
use crate::config::Config;
use crate::telemetry;
use crate::wire::{self, headers};

/// Connections `--metrics-listen` serves at once: Prometheus and a few humans.
pub(super) const METRICS_LISTENER_CONNECTIONS: usize = 16;

/// Connections past the limit being answered at once (each holds a slot until it has
/// sent its request, at most 1 s); past these, a connection is closed unanswered, so a
/// flood of connects costs a bounded number of tasks. Enough that an app holding more
/// idle connections than the limit does not starve the kubelet's probe.
const REFUSING_CONNECTIONS: usize = 128;

/// How long a refused connection gets to send its request head and body.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A listener group's connection permits, the few slots for connections past them, and
/// the open connections, so that an idle one can give its permit to a newcomer.
#[derive(Clone)]
pub(super) struct Limit {
    pub(super) permits: Arc<Semaphore>,
    pub(super) refusing: Arc<Semaphore>,
    pub(super) open: Arc<Mutex<HashMap<u64, Arc<Activity>>>>,
    pub(super) next_id: Arc<AtomicU64>,
    /// One clock for every connection of the listener, so that their idle times compare.
    pub(super) epoch: Instant,
    pub(super) max: usize,
    pub(super) flag: &'static str,
}

impl Limit {
    pub(super) fn new(max: usize, flag: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(REFUSING_CONNECTIONS)),
            open: Arc::default(),
            next_id: Arc::default(),
            epoch: Instant::now(),
            max,
            flag,
        }
    }

    /// Records an open connection until the returned guard drops.
    pub(super) fn register(&self, activity: &Arc<Activity>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(activity));
        Registered {
            id,
            open: Arc::clone(&self.open),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the longest-idle connection (no request in hand, no answer going out) to
    /// close between requests, as nginx does with its reusable connections; `false` if
    /// every connection is busy. The newcomer takes the permit it frees.
    pub(super) fn evict_idlest(&self) -> bool {
        let open = self.lock();
        // Ties (the clock is in ms) go to the older connection.
        let idlest = open
            .iter()
            .filter(|(_, a)| a.is_idle() && !a.evicting.load(Ordering::Relaxed))
            .min_by_key(|(id, a)| (a.last_moved(), **id));
        match idlest {
            Some((_, a)) => {
                a.evicting.store(true, Ordering::Relaxed);
                a.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from its [`Limit`]'s open set when it ends.
pub(super) struct Registered {
    pub(super) id: u64,
    pub(super) open: Arc<Mutex<HashMap<u64, Arc<Activity>>>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Every connection being served, so that the drain can wait for the last one.
#[derive(Clone)]
pub(crate) struct Connections(Arc<watch::Sender<usize>>);

impl Connections {
    pub(super) fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    pub(super) fn enter(&self) -> ConnectionGuard {
        self.0.send_modify(|n| *n += 1);
        ConnectionGuard(self.clone())
    }

    /// Resolves once no connection is open.
    pub(crate) async fn all_closed(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }
}

pub(super) struct ConnectionGuard(Connections);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What every connection of one listener is served with.
#[derive(Clone)]
pub(super) struct Serving {
    pub(super) listener_name: &'static str,
    pub(super) router: axum::Router,
    pub(super) cfg: Arc<Config>,
    pub(super) limit: Limit,
    pub(super) connections: Connections,
    pub(super) stop: watch::Receiver<bool>,
}

/// How long a newcomer waits for the permit of the idle connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn accept_loop(acceptor: Acceptor, serving: Serving) {
    let mut stop = serving.stop.clone();
    let name = serving.listener_name;
    loop {
        let accepted = tokio::select! {
            a = accept(&acceptor) => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limit = &serving.limit;
        if let Ok(permit) = Arc::clone(&limit.permits).try_acquire_owned() {
            tokio::spawn(serve_connection(stream, permit, serving.clone()));
            continue;
        }
        // At the limit: an idle keep-alive connection gives way to the newcomer; only
        // when every connection has a request in hand is the newcomer refused.
        let Ok(slot) = Arc::clone(&limit.refusing).try_acquire_owned() else {
            telemetry::connection_refused(name);
            continue; // dropping the stream closes it
        };
        if limit.evict_idlest() {
            telemetry::connection_evicted(name);
            let serving = serving.clone();
            tokio::spawn(async move {
                let permits = Arc::clone(&serving.limit.permits);
                match tokio::time::timeout(EVICTION_WAIT, permits.acquire_owned()).await {
                    Ok(Ok(permit)) => {
                        drop(slot);
                        serve_connection(stream, permit, serving).await;
                    }
                    _ => answer_refused(stream, &serving, slot).await,
                }
            });
        } else {
            let serving = serving.clone();
            tokio::spawn(async move { answer_refused(stream, &serving, slot).await });
        }
    }
}

/// Serves one connection until it closes, holding its permit: keep-alive, the header
/// read, idle and send timeouts, eviction at the limit, and the graceful close at
/// shutdown (an idle connection closes at once, one with a request in hand after its
/// answer).
async fn serve_connection(stream: Stream, permit: OwnedSemaphorePermit, serving: Serving) {
    let name = serving.listener_name;
    // Locals drop in reverse order: the gauge says a connection is gone only once its
    // permit and registry entry are, so "0 open" means the limit is all free.
    let _gauge = OpenGauge::enter(name);
    let _permit = permit;
    let _counted = serving.connections.enter();
    let activity = Arc::new(Activity::new(serving.limit.epoch));
    let _registered = serving.limit.register(&activity);
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        let router = serving.router.clone();
        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let handling = Handling::start(&activity);
            let call = tower::ServiceExt::oneshot(router.clone(), req);
            let activity = Arc::clone(&activity);
            async move {
                let Ok(mut response) = call.await;
                if let Some(permit) = response
                    .extensions_mut()
                    .remove::<AnswerPermit>()
                    .and_then(|p| p.take())
                {
                    response = response
                        .map(|body| axum::body::Body::new(Outgoing::new(body, permit, &activity)));
                }
                drop(handling);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let cfg = &serving.cfg;
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stop = serving.stop.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
                break;
            }
            () = activity.idle_for(cfg.idle_timeout, cfg.send_timeout) => {
                tracing::debug!(listener = name, "closing a connection idle or stalled past its timeout");
                break;
            }
            // Between requests hyper closes at once; with one in hand, after its answer.
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.evict.notified(), if !closing => {
                tracing::debug!(listener = name, "closing an idle connection to make room for a new one");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Counts one connection in `normd_open_connections` while it lives.
struct OpenGauge(&'static str);

impl OpenGauge {
    pub(super) fn enter(listener: &'static str) -> Self {
        telemetry::open_connections(listener, 1.0);
        Self(listener)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        telemetry::open_connections(self.0, -1.0);
    }
}

/// Answers one request on a connection past the limit, then closes it. The request
/// (head and body, bounded in size and time) is read first: closing a socket with unread
/// bytes makes the kernel send a reset, which can destroy the answer before the client
/// reads it. A work call (a POST to a work route) gets 429 `overloaded` from its handler,
/// with `X-Normd-Refused: connections`, which tells the self-probe that the listener
/// itself is alive. Every other route (health, metrics, `/flags`, `/schemas`, 404s) does
/// no pool work, so it is served as usual: an app holding every connection must not
/// make the kubelet's `normd probe` fail: health is never blocked by work.
async fn answer_refused(stream: Stream, serving: &Serving, slot: OwnedSemaphorePermit) {
    let _slot = slot;
    let (limit, listener_name) = (&serving.limit, serving.listener_name);
    let detail = format!(
        "too many open connections ({} {}); use the in-app path",
        limit.flag, limit.max
    );
    let router = serving.router.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let detail = detail.clone();
        let router = router.clone();
        async move {
            // Read and drop the body, frame by frame (up to 128 answers at once
            // must not buffer up to 128 bodies), whatever the route: the routes
            // served below need none, and a 405 to a POST must not be reset.
            let (parts, body) = req.into_parts();
            api::discard(body, REFUSED_BODY_LIMIT, REFUSAL_READ_TIMEOUT).await;
            let work = parts.method == http::Method::POST && wire::is_work_path(parts.uri.path());
            let mut req = http::Request::from_parts(parts, axum::body::Body::empty());
            if work {
                // Refused by the handler itself, so the refusal gets its log
                // line, request metrics and X-Request-Id like any other.
                telemetry::connection_refused(listener_name);
                req.extensions_mut().insert(ConnectionLimited(detail));
            }
            let Ok(mut response) = tower::ServiceExt::oneshot(router, req).await;
            let h = response.headers_mut();
            h.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            if work {
                h.insert(
                    headers::REFUSED,
                    http::HeaderValue::from_static("connections"),
                );
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        activity: Arc::new(Activity::new(Instant::now())),
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(io, service);
    let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT * 2, conn).await;
}

/// Body bytes read (and discarded) from a refused connection before answering it.
const REFUSED_BODY_LIMIT: usize = 1 << 20;
