//! A minimal HTTP/1.1 client over the Unix socket or TCP, for the self-probe and
//! `normd probe`.
//!
//! Owns: one request on one fresh connection, bounded by a timeout. A fresh connection
//! each time is the point: the probe must prove that a new client can still connect
//! (socket file present, permissions right, accept loop alive).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Where to send a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Target {
    /// A `--tcp IP:PORT` argument of the client subcommands.
    pub fn tcp(addr: &str) -> Result<Self, String> {
        addr.parse()
            .map(Target::Tcp)
            .map_err(|_| format!("--tcp {addr:?}: expected IP:PORT"))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A received response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends one request and reads the whole response, all within `timeout`.
pub async fn send(
    target: &Target,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Reply, String> {
    tokio::time::timeout(
        timeout,
        send_inner(target, method, path_and_query, headers, body),
    )
    .await
    .map_err(|_| format!("{target}: no answer within {} ms", timeout.as_millis()))?
}

async fn send_inner(
    target: &Target,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Reply, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(http::header::HOST, "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let response = match target {
        Target::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("{target}: connect: {e}"))?;
            exchange(TokioIo::new(stream), req, target).await?
        }
        Target::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("{target}: connect: {e}"))?;
            exchange(TokioIo::new(stream), req, target).await?
        }
    };
    Ok(response)
}

async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>, target: &Target) -> Result<Reply, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("{target}: handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{target}: reading body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        headers,
        body,
    })
}
