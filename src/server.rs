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

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

use crate::allocator;
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
    let graceful = Arc::new(GracefulShutdown::new());
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
                name,
                routes,
                Arc::clone(&cfg),
                limit,
                Arc::clone(&graceful),
                stop_rx.clone(),
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
        graceful,
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

/// A listener group's connection permits, and the few slots for answering past them.
#[derive(Clone)]
struct Limit {
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    max: usize,
    flag: &'static str,
}

impl Limit {
    fn new(max: usize, flag: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(REFUSING_CONNECTIONS)),
            max,
            flag,
        }
    }
}

async fn accept_loop(
    acceptor: Acceptor,
    listener_name: &'static str,
    router: axum::Router,
    cfg: Arc<Config>,
    limit: Limit,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = accept(&acceptor) => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(listener = listener_name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit.permits).try_acquire_owned() else {
            refuse_connection(stream, listener_name, &limit, &router);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(ActivityIo {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let activity = Arc::clone(&activity);
            let router = router.clone();
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let handling = Handling::start(&activity);
                let call = tower::ServiceExt::oneshot(router.clone(), req);
                async move {
                    let response = call.await;
                    drop(handling);
                    response
                }
            })
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let idle = cfg.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            telemetry::open_connections(listener_name, 1.0);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(listener = listener_name, error = %e, "connection ended with an error");
                    }
                }
                () = activity.idle_for(idle) => {
                    tracing::debug!(listener = listener_name, "closing a connection idle past --idle-timeout-ms");
                }
            }
            telemetry::open_connections(listener_name, -1.0);
        });
    }
}

/// Answers one request on a connection past the limit, then closes it. The request
/// (head and body, bounded in size and time) is read first: closing a socket with unread
/// bytes makes the kernel send a reset, which can destroy the answer before the client
/// reads it. A work call (a POST to a work route) gets 429 `overloaded` from its handler,
/// with `X-Normd-Refused: connections`, which tells the self-probe that the listener
/// itself is alive. Every other route (health, metrics, `/flags`, `/schemas`, 404s) does
/// no pool work, so it is served as usual: an app holding every connection must not
/// make the kubelet's `normd probe` fail (SPEC §5: health is never blocked by work).
fn refuse_connection(
    stream: Stream,
    listener_name: &'static str,
    limit: &Limit,
    router: &axum::Router,
) {
    let Ok(slot) = Arc::clone(&limit.refusing).try_acquire_owned() else {
        telemetry::connection_refused(listener_name);
        return; // dropping the stream closes it
    };
    let detail = format!(
        "too many open connections ({} {}); use the in-app path",
        limit.flag, limit.max
    );
    let router = router.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let detail = detail.clone();
                let router = router.clone();
                async move {
                    // Read and drop the body, frame by frame (up to 128 answers at once
                    // must not buffer up to 128 bodies), whatever the route: the routes
                    // served below need none, and a 405 to a POST must not be reset.
                    let (parts, mut body) = req.into_parts();
                    let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT, async {
                        let mut seen = 0usize;
                        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await
                        {
                            seen += frame.data_ref().map_or(0, |d| d.len());
                            if seen > REFUSED_BODY_LIMIT {
                                break;
                            }
                        }
                    })
                    .await;
                    let work = parts.method == http::Method::POST
                        && crate::api::is_work_path(parts.uri.path());
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
            activity: Arc::new(Activity::new()),
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_READ_TIMEOUT)
            .keep_alive(false)
            .serve_connection(io, service);
        let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT * 2, conn).await;
    });
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
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle for `idle`: no request handled and no
    /// byte moved. (hyper's own timer covers the wait for a request head.)
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = self.epoch + last + idle;
            if self.handling.load(Ordering::Relaxed) > 0 {
                // Its end touches `last_ms`, so the idle time counts from the answer.
                tokio::time::sleep(idle).await;
            } else if Instant::now() >= due {
                return;
            } else {
                tokio::time::sleep_until(due.into()).await;
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
