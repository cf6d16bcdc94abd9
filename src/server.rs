//! The two listeners and the serving loop: socket file hygiene and permissions, the
//! loopback rule, connection limits, header-read and idle timeouts, and the background
//! tasks (memory sampler, self-probe, flags poller, schema reload).
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

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use bytes::Bytes;

use crate::admission::BytesPermit;
use crate::allocator;
use crate::api::AnswerPermit;
use crate::client::Target;
use crate::config::Config;
use crate::health;
use crate::shutdown;
use crate::telemetry;
use crate::AppState;

/// Bound listeners, before serving.
pub struct Listeners {
    pub unix: Option<(UnixListener, SocketFile)>,
    pub tcp: Option<TcpListener>,
    /// Observation-only listener (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Self-probe targets for the listeners that are on.
    pub fn targets(&self) -> Vec<(&'static str, Target)> {
        let mut t = Vec::new();
        if let Some((_, file)) = &self.unix {
            t.push(("unix", Target::Unix(file.path().to_path_buf())));
        }
        if let Some(addr) = self.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            t.push(("tcp", Target::Tcp(addr)));
        }
        t
    }
}

/// Binds both listeners as configured. Must run inside the tokio runtime. If a later
/// bind fails (a TCP port in use), the socket file already bound is removed on the way out.
pub fn bind(cfg: &Config) -> Result<Listeners, String> {
    let unix = match &cfg.socket {
        None => None,
        Some(path) => {
            let listener = bind_unix(path, cfg.socket_mode, cfg.socket_group.as_deref())?;
            let file = SocketFile::adopt(path)
                .ok_or_else(|| format!("--socket {}: vanished right after bind", path.display()))?;
            Some((listener, file))
        }
    };
    let tcp = cfg.listen.map(|a| bind_tcp("--listen", a)).transpose()?;
    let metrics = cfg
        .metrics_listen
        .map(|a| bind_tcp("--metrics-listen", a))
        .transpose()?;
    Ok(Listeners { unix, tcp, metrics })
}

/// Device and inode of the socket file we bound, to recognise it when removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SocketId(u64, u64);

impl SocketId {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(Self(m.dev(), m.ino()))
    }
}

/// The socket file this process bound, removed when this is dropped: at shutdown once
/// accepting stops, and on any way out of startup after the bind, so a failed start
/// leaves no file without an owner. Only while the path is still the inode we created:
/// another instance may have bound it since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: SocketId,
}

impl SocketFile {
    /// Takes charge of the socket just bound at `path`; `None` if it is already gone.
    pub fn adopt(path: &Path) -> Option<Self> {
        Some(Self {
            id: SocketId::of(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now (if still ours).
    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let path = self.path.display();
        if SocketId::of(&self.path) != Some(self.id) {
            tracing::warn!(path = %path, "socket file is gone or replaced; not removing it");
        } else if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %path, error = %e, "cannot remove socket file");
        }
    }
}

fn bind_tcp(flag: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            format!("{flag} {addr}: address already in use (another normd, or another program)")
        } else {
            format!("{flag} {addr}: {e}")
        }
    })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("{flag} {addr}: {e}"))?;
    TcpListener::from_std(std_listener).map_err(|e| format!("{flag} {addr}: {e}"))
}

fn bind_unix(path: &Path, mode: u32, group: Option<&str>) -> Result<UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Someone answering there means a live normd (or something else): never steal it.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "--socket {shown}: already running: a live process accepts connections on this socket"
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|e| {
                        format!("--socket {shown}: cannot remove stale socket file: {e}")
                    })?;
                    tracing::info!(path = %shown, "replaced a stale socket file left by a dead process");
                }
                Err(e) => {
                    return Err(format!(
                        "--socket {shown}: exists and cannot be probed ({e}); refusing to replace it"
                    ))
                }
            }
        }
        Ok(_) => {
            return Err(format!(
                "--socket {shown}: exists and is not a socket; refusing to replace it"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--socket {shown}: {e}")),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "--socket {shown}: cannot create directory {}: {e}",
                dir.display()
            )
        })?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("--socket {shown}: cannot bind: {e}"))?;
    let applied = (|| -> Result<(), String> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("--socket-mode {mode:o} on {shown}: {e}"))?;
        if let Some(group) = group {
            let gid = resolve_group(group)?;
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| format!("--socket-group {group} on {shown}: {e}"))?;
        }
        Ok(())
    })();
    if let Err(e) = applied {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// A numeric gid, or a name looked up in /etc/group (no NSS: the image has no libc
/// resolver configuration, and the pod's groups are numeric anyway). `normd check` calls
/// it too, so a group that `serve` would refuse fails the check with the same words.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("--socket-group {group}: cannot read /etc/group: {e}"))?;
    text.lines()
        .find_map(|line| {
            let mut f = line.split(':');
            (f.next() == Some(group)).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
        })
        .ok_or_else(|| format!("--socket-group {group}: no such group in /etc/group"))
}

/// Serves until `signal` resolves, then drains (see `shutdown`). Returns when done.
pub async fn run(
    cfg: Arc<Config>,
    state: AppState,
    listeners: Listeners,
    signals: shutdown::Signals,
) -> Result<(), String> {
    let mut signals = signals;
    let hup = signals.hup.take();
    let targets = listeners.targets();
    let router = crate::router(state.clone());
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
            crate::metrics_router(state.clone()),
            Limit::new(METRICS_LISTENER_CONNECTIONS, "the metrics listener's limit"),
        ));
    }
    let accept_tasks: Vec<_> = acceptors
        .into_iter()
        .map(|(acceptor, name, routes, limit)| {
            tokio::spawn(accept_loop(
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

    let background = spawn_background(&cfg, &state, targets, stop_rx.clone(), hup);

    signals.shutdown().await;
    let signalled = Instant::now();
    shutdown::drain(
        &cfg,
        &state,
        signalled,
        stop_tx,
        accept_tasks,
        connections,
        socket_file,
    )
    .await;
    for task in background {
        task.abort();
    }
    Ok(())
}

enum Acceptor {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Connections `--metrics-listen` serves at once: Prometheus and a few humans.
const METRICS_LISTENER_CONNECTIONS: usize = 16;

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
struct Limit {
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    open: Arc<Mutex<HashMap<u64, Arc<Activity>>>>,
    next_id: Arc<AtomicU64>,
    /// One clock for every connection of the listener, so that their idle times compare.
    epoch: Instant,
    max: usize,
    flag: &'static str,
}

impl Limit {
    fn new(max: usize, flag: &'static str) -> Self {
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
    fn register(&self, activity: &Arc<Activity>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(activity));
        Registered {
            id,
            open: Arc::clone(&self.open),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the longest-idle connection (no request in hand, no answer going out) to
    /// close between requests, as nginx does with its reusable connections; `false` if
    /// every connection is busy. The newcomer takes the permit it frees.
    fn evict_idlest(&self) -> bool {
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
struct Registered {
    id: u64,
    open: Arc<Mutex<HashMap<u64, Arc<Activity>>>>,
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
    fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    fn enter(&self) -> ConnectionGuard {
        self.0.send_modify(|n| *n += 1);
        ConnectionGuard(self.clone())
    }

    /// Resolves once no connection is open.
    pub(crate) async fn all_closed(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }
}

struct ConnectionGuard(Connections);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What every connection of one listener is served with.
#[derive(Clone)]
struct Serving {
    listener_name: &'static str,
    router: axum::Router,
    cfg: Arc<Config>,
    limit: Limit,
    connections: Connections,
    stop: watch::Receiver<bool>,
}

/// How long a newcomer waits for the permit of the idle connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

async fn accept_loop(acceptor: Acceptor, serving: Serving) {
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
    fn enter(listener: &'static str) -> Self {
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
            let (parts, mut body) = req.into_parts();
            let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT, async {
                let mut seen = 0usize;
                while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                    seen += frame.data_ref().map_or(0, |d| d.len());
                    if seen > REFUSED_BODY_LIMIT {
                        break;
                    }
                }
            })
            .await;
            let work =
                parts.method == http::Method::POST && crate::api::is_work_path(parts.uri.path());
            let mut req = http::Request::from_parts(parts, axum::body::Body::empty());
            if work {
                // Refused by the handler itself, so the refusal gets its log
                // line, request metrics and X-Request-Id like any other.
                telemetry::connection_refused(listener_name);
                req.extensions_mut()
                    .insert(crate::api::ConnectionLimited(detail));
            }
            let Ok(mut response) = tower::ServiceExt::oneshot(router, req).await;
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            if work {
                headers.insert(
                    REFUSED_HEADER,
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

/// Header on the 429 given to a connection past the limit.
pub const REFUSED_HEADER: &str = "x-normd-refused";

/// Body bytes read (and discarded) from a refused connection before answering it.
const REFUSED_BODY_LIMIT: usize = 1 << 20;

/// Either kind of accepted stream.
enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(acceptor: &Acceptor) -> io::Result<Stream> {
    match acceptor {
        Acceptor::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        Acceptor::Tcp(l) => l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            Stream::Tcp(s)
        }),
    }
}

/// What the idle timeout watches on a connection: when a byte last moved, and whether a
/// request is being handled.
///
/// A request being handled is never idle: its body read and its queue wait and work all
/// run under the call's deadline (and the shutdown cut-off), which answer it. Cutting it
/// at the idle timeout instead, when `--idle-timeout-ms` is below a budget, would drop
/// the answer unsent. What the idle timeout covers is the rest: a client that keeps a
/// connection open between requests, or stops reading an answer.
struct Activity {
    epoch: Instant,
    /// When a byte last moved, or a request was last taken up or answered (ms since
    /// `epoch`).
    last_ms: AtomicU64,
    /// Requests between the head being read and the response being handed to hyper.
    handling: AtomicUsize,
    /// Answers handed to hyper and not yet taken whole (see [`Outgoing`]).
    sending: AtomicUsize,
    /// Set once a request was answered on this connection.
    served: AtomicBool,
    /// Set once this connection was asked to make room for a new one.
    evicting: AtomicBool,
    evict: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            handling: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last_moved(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// A keep-alive connection between requests: it has served one, and has no request
    /// in hand and no answer going out. The cheapest thing a server holds to give back.
    /// A connection that has not sent its first request yet is not one: its client
    /// connected to send it (the header-read timeout bounds one that never does).
    fn is_idle(&self) -> bool {
        self.served.load(Ordering::Relaxed)
            && self.handling.load(Ordering::Relaxed) == 0
            && self.sending.load(Ordering::Relaxed) == 0
    }

    /// Resolves once the connection has been idle for `idle` (no request handled, no
    /// byte moved), or an answer has been waiting for its reader for `send` without a
    /// byte taken. (hyper's own timer covers the wait for a request head.)
    async fn idle_for(&self, idle: Duration, send: Duration) {
        // Looked at again at least every `send`: an answer may start going out while
        // this waits for the longer idle timeout.
        let recheck = idle.min(send);
        loop {
            let last = Duration::from_millis(self.last_moved());
            if self.handling.load(Ordering::Relaxed) > 0 {
                // Its end touches `last_ms`, so the idle time counts from the answer.
                tokio::time::sleep(recheck).await;
                continue;
            }
            let limit = if self.sending.load(Ordering::Relaxed) > 0 {
                send
            } else {
                idle
            };
            let due = self.epoch + last + limit;
            let now = Instant::now();
            if now >= due {
                return;
            }
            tokio::time::sleep_until(due.min(now + recheck).into()).await;
        }
    }
}

/// An answer on its way to the client, holding its in-flight bytes until the client has
/// taken it: a reader that stalls keeps them charged (so the budget, not RSS, says no to
/// more work) until the send timeout closes its connection and frees them. The answer is
/// handed to hyper in copied slices, so that once this is dropped hyper holds at most its
/// own write buffer, not the whole answer.
struct Outgoing {
    inner: axum::body::Body,
    pending: Bytes,
    _permit: BytesPermit,
    activity: Arc<Activity>,
}

/// Slice of an answer handed to hyper at a time.
const SEND_SLICE: usize = 64 << 10;

impl Outgoing {
    fn new(inner: axum::body::Body, permit: BytesPermit, activity: &Arc<Activity>) -> Self {
        activity.sending.fetch_add(1, Ordering::Relaxed);
        Self {
            inner,
            pending: Bytes::new(),
            _permit: permit,
            activity: Arc::clone(activity),
        }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.sending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(SEND_SLICE);
                let slice = self.pending.split_to(n);
                let data = Bytes::copy_from_slice(&slice);
                if self.pending.is_empty() {
                    self.pending = Bytes::new(); // frees the answer's buffer now
                }
                return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        match inner.exact() {
            Some(n) => http_body::SizeHint::with_exact(n + pending),
            None => {
                let mut hint = http_body::SizeHint::new();
                hint.set_lower(inner.lower() + pending);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + pending);
                }
                hint
            }
        }
    }
}

/// Marks one request as being handled, from its head until its response (or until the
/// connection drops it).
struct Handling(Arc<Activity>);

impl Handling {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(Arc::clone(activity))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records in its [`Activity`] when it last moved a byte.
struct ActivityIo {
    inner: Stream,
    activity: Arc<Activity>,
}

impl ActivityIo {
    fn touch(&self) {
        self.activity.touch();
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        };
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
        };
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Memory sampler, self-probe, flags poller, SIGHUP schema reload, metrics upkeep.
fn spawn_background(
    cfg: &Arc<Config>,
    state: &AppState,
    targets: Vec<(&'static str, Target)>,
    stop: watch::Receiver<bool>,
    hup: Option<tokio::signal::unix::Signal>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();

    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u64;
        loop {
            tick.tick().await;
            st.health.memory.sample();
            if st.health.memory.shedding() || st.health.memory.over_ready() {
                // Over a watermark, memory freed by finished calls must leave the process
                // now, not when the allocator next gets around to it (see `allocator`).
                if tokio::task::spawn_blocking(allocator::release_freed_memory)
                    .await
                    .is_ok()
                {
                    telemetry::memory_released();
                    st.health.memory.sample();
                }
            }
            st.health.publish();
            n += 1;
            if n % 50 == 0 {
                telemetry::upkeep();
            }
        }
    }));

    let st = state.clone();
    let interval = cfg.probe_interval;
    let mut stop_probe = stop.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_probe.wait_for(|s| *s) => return,
            }
            // Once listeners close on shutdown, failures say nothing about health.
            let result = health::probe_round(&targets, &st.probe_token).await;
            if *stop_probe.borrow() {
                return;
            }
            st.health.probe_result(result.err());
        }
    }));

    if state.flags.path().is_some() {
        let st = state.clone();
        let period = cfg.flags_poll;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let flags = Arc::clone(&st.flags);
                let _ = tokio::task::spawn_blocking(move || flags.poll()).await;
            }
        }));
    }

    let st = state.clone();
    tasks.push(tokio::spawn(async move {
        let Some(mut hup) = hup else {
            return;
        };
        while hup.recv().await.is_some() {
            let st2 = st.clone();
            let _ = tokio::task::spawn_blocking(move || st2.reload_schemas()).await;
        }
    }));
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_file_is_removed_only_while_it_is_the_one_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("normd.sock");
        let _ours = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = SocketFile::adopt(&path).unwrap();
        file.remove();
        assert!(!path.exists(), "ours is removed");

        let _first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = SocketFile::adopt(&path).unwrap();
        // Another instance replaced it in the meantime.
        std::fs::remove_file(&path).unwrap();
        let _theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists(), "theirs is left alone");
    }

    #[test]
    fn a_failed_tcp_bind_removes_the_socket_file_just_bound() {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = crate::config::Config::resolve(
            crate::config::ServeArgs {
                socket: Some(dir.path().join("normd.sock").display().to_string()),
                listen: Some(busy.local_addr().unwrap().to_string()),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(async { bind(&cfg).err().unwrap() });
        assert!(e.contains("already in use"), "{e}");
        assert!(!dir.path().join("normd.sock").exists());
        cfg.listen = None;
        cfg.metrics_listen = busy.local_addr().ok();
        let e = rt.block_on(async { bind(&cfg).err().unwrap() });
        assert!(e.contains("--metrics-listen"), "{e}");
        assert!(!dir.path().join("normd.sock").exists());
    }
}
