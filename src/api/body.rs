//! The request body of a work call: read whole under the size cap, or discarded.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::work::Failure;
use crate::error::Problem;

/// The request body until the handler reads it. A call refused before reading its body
/// still has the body discarded (streamed to nowhere, bounded in bytes and time) by a
/// background task, so the client sees the 429/503 instead of a connection reset
/// mid-upload, and the keep-alive connection survives. Nothing is buffered.
pub(super) struct Unread {
    body: Option<axum::body::Body>,
    limit: usize,
    /// Set once this body will not be read whole: the connection ends with the answer.
    closing: bool,
}

/// Why a request body could not be read whole.
pub(super) enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Bytes of an over-the-cap body discarded after its 413, before the connection closes:
/// enough for the bodies an app sends by mistake (a document a few times the cap), small
/// next to what an upload costs the client, and never buffered.
const LINGER_BYTES: usize = 64 << 20;

/// How long a refused body is discarded for, at most.
const DISCARD_TIME: Duration = Duration::from_secs(2);

impl Unread {
    pub(super) fn new(body: axum::body::Body, limit: usize) -> Self {
        Self {
            body: Some(body),
            limit,
            closing: false,
        }
    }

    /// The failure for refusing the call now: the connection carries on unless the body
    /// will not be read whole.
    pub(super) fn refuse(&self, problem: Problem) -> Failure {
        if self.closing {
            Failure::Closing(problem)
        } else {
            Failure::Refused {
                problem,
                in_bytes: 0,
            }
        }
    }

    /// Reads the whole body, up to the cap. Past the cap, or cut by the deadline, the
    /// rest stays here, so dropping `self` discards it (see [`Drop`]); the connection is
    /// then marked to close.
    pub(super) async fn read_capped(&mut self) -> Result<Bytes, BodyError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(Bytes::new());
        };
        self.closing = true; // until the body is read whole
        let (mut first, mut rest): (Option<Bytes>, Vec<u8>) = (None, Vec::new());
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
                continue; // trailers
            };
            total += data.len();
            if total > self.limit {
                return Err(BodyError::TooLarge);
            }
            // One frame (the usual case with Content-Length) is kept without a copy.
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                held => {
                    if let Some(held) = held {
                        rest.extend_from_slice(&held);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        self.body = None;
        self.closing = false;
        Ok(first.unwrap_or_else(|| Bytes::from(rest)))
    }

    /// Over the size cap: the connection closes after the answer, but first what the
    /// client sends on is discarded, up to [`LINGER_BYTES`] (and the time bound): a
    /// client still writing a refused body would otherwise get a reset (EPIPE) before
    /// it reads the 413, and take a dead connection for the answer (RFC 9112 §9.6).
    pub(super) fn linger_then_close(&mut self) {
        self.limit = LINGER_BYTES;
        self.closing = true;
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        let (Some(body), limit) = (self.body.take(), self.limit) else {
            return;
        };
        if http_body::Body::is_end_stream(&body) {
            return;
        }
        tokio::spawn(discard(body, limit, DISCARD_TIME));
    }
}

/// Reads and drops up to `limit` bytes of `body` (frame by frame, never buffered), for at
/// most `time`: a body left unread would otherwise make the kernel reset the connection.
pub(crate) async fn discard<B>(mut body: B, limit: usize, time: Duration)
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut seen = 0usize;
    let _ = tokio::time::timeout(time, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > limit {
                break;
            }
        }
    })
    .await;
}
