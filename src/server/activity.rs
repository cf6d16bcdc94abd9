//! What a connection's timeouts watch: when a byte last moved, whether a request is in
//! hand, and an answer on its way out that holds its in-flight bytes until taken.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::listen::Stream;
use crate::admission::BytesPermit;

/// What the idle timeout watches on a connection: when a byte last moved, and whether a
/// request is being handled.
///
/// A request being handled is never idle: its body read and its queue wait and work all
/// run under the call's deadline (and the shutdown cut-off), which answer it. Cutting it
/// at the idle timeout instead, when `--idle-timeout-ms` is below a budget, would drop
/// the answer unsent. What the idle timeout covers is the rest: a client that keeps a
/// connection open between requests, or stops reading an answer.
pub(super) struct Activity {
    pub(super) epoch: Instant,
    /// When a byte last moved, or a request was last taken up or answered (ms since
    /// `epoch`).
    pub(super) last_ms: AtomicU64,
    /// Requests between the head being read and the response being handed to hyper.
    pub(super) handling: AtomicUsize,
    /// Answers handed to hyper and not yet taken whole (see [`Outgoing`]).
    pub(super) sending: AtomicUsize,
    /// Set once a request was answered on this connection.
    pub(super) served: AtomicBool,
    /// Set once this connection was asked to make room for a new one.
    pub(super) evicting: AtomicBool,
    pub(super) evict: Notify,
}

impl Activity {
    pub(super) fn new(epoch: Instant) -> Self {
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

    pub(super) fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn last_moved(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// A keep-alive connection between requests: it has served one, and has no request
    /// in hand and no answer going out. The cheapest thing a server holds to give back.
    /// A connection that has not sent its first request yet is not one: its client
    /// connected to send it (the header-read timeout bounds one that never does).
    pub(super) fn is_idle(&self) -> bool {
        self.served.load(Ordering::Relaxed)
            && self.handling.load(Ordering::Relaxed) == 0
            && self.sending.load(Ordering::Relaxed) == 0
    }

    /// Resolves once the connection has been idle for `idle` (no request handled, no
    /// byte moved), or an answer has been waiting for its reader for `send` without a
    /// byte taken. (hyper's own timer covers the wait for a request head.)
    pub(super) async fn idle_for(&self, idle: Duration, send: Duration) {
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
pub(super) struct Outgoing {
    pub(super) inner: axum::body::Body,
    pub(super) pending: Bytes,
    pub(super) _permit: BytesPermit,
    pub(super) activity: Arc<Activity>,
}

/// Slice of an answer handed to hyper at a time.
const SEND_SLICE: usize = 64 << 10;

impl Outgoing {
    pub(super) fn new(
        inner: axum::body::Body,
        permit: BytesPermit,
        activity: &Arc<Activity>,
    ) -> Self {
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
pub(super) struct Handling(Arc<Activity>);

impl Handling {
    pub(super) fn start(activity: &Arc<Activity>) -> Self {
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
pub(super) struct ActivityIo {
    pub(super) inner: Stream,
    pub(super) activity: Arc<Activity>,
}

impl ActivityIo {
    pub(super) fn touch(&self) {
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
