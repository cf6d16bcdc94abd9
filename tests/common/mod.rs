//! Shared helpers for normd's integration tests: a real `normd` process on a temp Unix
//! socket and an ephemeral 127.0.0.1 port, real clients over both transports, log
//! capture, signals, bounded polling, fixtures and the output schemas.
//!
//! Used by several test files (each compiles its own copy), so not every helper is used
//! by every file. Keep it general and stable: add, don't change signatures.
//!
//! Blocking API on purpose: tests are plain `#[test]` functions; the HTTP helpers run on
//! one shared tokio runtime ([`rt`]). For concurrency, use the `*_async` variants inside
//! `rt().block_on(...)` (or `rt().spawn(...)`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tempfile::TempDir;

/// A response: status, headers, whole body.
pub type Reply = (StatusCode, HeaderMap, Bytes);

/// How long any single HTTP exchange in a test may take before the test fails.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous call budgets (`--default-deadline-ms 5000 --max-deadline-ms 10000`) for tests
/// that are not about deadlines: normd's default budget is 20 ms, which a debug build
/// on a loaded 2-core CI runner can miss (504) for reasons unrelated to the test.
pub const RELAXED_DEADLINES: [&str; 4] = [
    "--default-deadline-ms",
    "5000",
    "--max-deadline-ms",
    "10000",
];

/// How long a normd may take to log "normd serving".
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of the normd binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_normd")
}

/// A path inside the repository (the crate root).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Bytes of `tests/fixtures/<name>`. Fixtures: `order_1k.json`, `order_4k.json` (valid
/// against `order.v1`), `order_invalid.json` (order.v1 with an invalid `order.status`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_path("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// One multi-threaded tokio runtime shared by every helper of a test binary.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it became true.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Which listener to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Unix,
    Tcp,
}

impl Via {
    pub const BOTH: [Via; 2] = [Via::Unix, Via::Tcp];
}

fn build_request(
    uri: hyper::Uri,
    method: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(body)).expect("request")
}

async fn collect(
    fut: impl std::future::Future<
        Output = Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
    >,
) -> Result<Reply, String> {
    let exchange = async {
        let res = fut.await.map_err(|e| format!("request: {e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))?
}

/// A hyperlocal (Unix socket) client. Pools connections: reuse it for keep-alive.
pub fn unix_client() -> Client<hyperlocal::UnixConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector)
}

/// A TCP client. Pools connections: reuse it for keep-alive.
pub fn tcp_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request over the Unix socket at `socket` on a fresh client (fresh connection).
pub async fn unix_async(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
    let req = build_request(uri, method, headers, body.into());
    collect(unix_client().request(req)).await
}

/// One request over TCP to `addr` on a fresh client (fresh connection).
pub async fn tcp_async(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().expect("uri");
    let req = build_request(uri, method, headers, body.into());
    collect(tcp_client().request(req)).await
}

/// Sends raw bytes over a fresh blocking connection and reads until the peer closes
/// (send `Connection: close`), bounded by [`HTTP_TIMEOUT`]. For requests a normal client
/// would not produce (chunked bodies, slow or malformed heads).
pub fn raw_exchange(target: RawTarget<'_>, request: &[u8]) -> Vec<u8> {
    fn run<S: Read + Write>(mut s: S, request: &[u8]) -> Vec<u8> {
        // The server may answer and close before reading a refused body: a write error
        // then is expected, the answer is what counts.
        let _ = s.write_all(request);
        let _ = s.flush();
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        out
    }
    match target {
        RawTarget::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p).expect("connect unix");
            s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
            run(s, request)
        }
        RawTarget::Tcp(a) => {
            let s = std::net::TcpStream::connect(a).expect("connect tcp");
            s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
            run(s, request)
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum RawTarget<'a> {
    Unix(&'a Path),
    Tcp(SocketAddr),
}

/// Runs `normd <args>` to completion (bounded by `timeout`; killed and panics past it).
/// Returns (exit status, stdout, stderr).
pub fn run_normd(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    run_normd_with(args, None, &[], timeout)
}

/// [`run_normd`] in the working directory `cwd` (if given; for the `./…` defaults), with
/// `env` set for the child only.
pub fn run_normd_with(
    args: &[&str],
    cwd: Option<&Path>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(bin());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn normd");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("normd {args:?} did not exit within {timeout:?}");
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    (status, out, err)
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Flags whose default [`NormdBuilder`] supplies unless the test gives them.
const DEFAULTED: [&str; 4] = ["--socket", "--listen", "--schemas", "--drain-delay-ms"];

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// Builds a `normd serve` invocation. Defaults (each only if the args don't already
/// name the flag): `--socket <dir>/normd.sock --listen 127.0.0.1:0
/// --schemas <repo>/schemas --drain-delay-ms 0`.
pub struct NormdBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<TempDir>,
    defaults: bool,
}

impl NormdBuilder {
    /// Adds one argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Adds arguments.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child only (never the test process's env).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Uses this temp dir (e.g. one the test already wrote a config or flags file into).
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Supplies none of the defaults: the args are passed to `serve` exactly as given.
    pub fn no_defaults(mut self) -> Self {
        self.defaults = false;
        self
    }

    /// Starts normd and waits for "normd serving"; panics (with its stderr) otherwise.
    pub fn start(self) -> Normd {
        match self.try_start() {
            Ok(n) => n,
            Err(f) => panic!(
                "normd failed to start (status {:?}):\n{}",
                f.status, f.stderr
            ),
        }
    }

    /// Starts normd; `Err` if it exits (or does not serve within [`START_TIMEOUT`]).
    pub fn try_start(self) -> Result<Normd, StartFailure> {
        let dir = match self.dir {
            Some(d) => d,
            None => tempfile::tempdir().expect("tempdir"),
        };
        let mut args = vec!["serve".to_owned()];
        args.extend(self.args.iter().cloned());
        if self.defaults {
            let sock = dir.path().join("normd.sock").display().to_string();
            let schemas = repo_path("schemas").display().to_string();
            let values = [sock, "127.0.0.1:0".into(), schemas, "0".into()];
            for (flag, value) in DEFAULTED.iter().zip(values) {
                if !has_flag(&self.args, flag) {
                    args.push((*flag).to_owned());
                    args.push(value);
                }
            }
        }
        let mut cmd = Command::new(bin());
        cmd.args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn normd");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });

        let mut serving: Option<Value> = None;
        let mut exited = None;
        poll_until(START_TIMEOUT, || {
            serving = snapshot(&logs)
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["msg"] == "normd serving");
            if serving.is_some() {
                return true;
            }
            exited = child.try_wait().ok().flatten();
            exited.is_some()
        });
        let Some(line) = serving else {
            let status = match exited {
                Some(s) => Some(s),
                None => {
                    let _ = child.kill();
                    child.wait().ok()
                }
            };
            // The reader thread ends at EOF, once the process is gone (bounded).
            poll_until(Duration::from_secs(5), || reader.is_finished());
            let stderr = snapshot(&logs).join("\n");
            return Err(StartFailure {
                status,
                stderr,
                args,
            });
        };
        let field = |k: &str| line[k].as_str().filter(|s| *s != "off").map(str::to_owned);
        let tcp = field("listen").map(|s| s.parse().expect("listen addr in log"));
        let socket = field("socket").map(PathBuf::from);
        Ok(Normd {
            child,
            socket,
            tcp,
            dir,
            logs,
            args,
            reader,
        })
    }
}

fn snapshot(logs: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Why a normd did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status (`None` only if it could not be collected).
    pub status: Option<ExitStatus>,
    /// Everything it wrote on stderr.
    pub stderr: String,
    /// The full command line after the binary.
    pub args: Vec<String>,
}

/// A running `normd serve`, killed (SIGKILL) on drop if still running.
pub struct Normd {
    pub child: Child,
    /// The Unix socket, `None` when the Unix listener is off.
    pub socket: Option<PathBuf>,
    /// The bound TCP address, `None` when TCP is off.
    pub tcp: Option<SocketAddr>,
    /// The temp dir (holds the socket by default; the process's cwd).
    pub dir: TempDir,
    /// Every stderr line so far (JSON log lines), appended by a drain thread.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The full command line after the binary.
    pub args: Vec<String>,
    /// The stderr drain thread; finished once the process (and its stderr) is gone.
    reader: std::thread::JoinHandle<()>,
}

impl Normd {
    /// A builder with the default args plus nothing.
    pub fn builder() -> NormdBuilder {
        NormdBuilder {
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            defaults: true,
        }
    }

    /// `normd serve` with the defaults plus `extra_args` (which may override them).
    pub fn start(extra_args: &[&str]) -> Normd {
        Normd::builder().args(extra_args).start()
    }

    /// `normd serve` with the defaults plus `args`, and `env` for the child only.
    pub fn start_with(args: Vec<String>, env: &[(&str, &str)]) -> Normd {
        let mut b = Normd::builder().args(&args);
        for (k, v) in env {
            b = b.env(k, v);
        }
        b.start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The socket path; panics if the Unix listener is off.
    pub fn socket_path(&self) -> &Path {
        self.socket.as_deref().expect("the Unix listener is off")
    }

    /// The TCP address; panics if TCP is off.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.expect("the TCP listener is off")
    }

    /// One request over the Unix socket (fresh connection); panics on transport errors.
    pub fn unix(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_unix(method, path, headers, body)
            .unwrap_or_else(|e| panic!("unix {method} {path}: {e}"))
    }

    /// One request over TCP (fresh connection); panics on transport errors.
    pub fn tcp(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_tcp(method, path, headers, body)
            .unwrap_or_else(|e| panic!("tcp {method} {path}: {e}"))
    }

    /// Over the given transport; panics on transport errors.
    pub fn call(
        &self,
        via: Via,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        match via {
            Via::Unix => self.unix(method, path, headers, body),
            Via::Tcp => self.tcp(method, path, headers, body),
        }
    }

    pub fn try_unix(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        rt().block_on(unix_async(self.socket_path(), method, path, headers, body))
    }

    pub fn try_tcp(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        rt().block_on(tcp_async(self.tcp_addr(), method, path, headers, body))
    }

    pub fn try_call(
        &self,
        via: Via,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        match via {
            Via::Unix => self.try_unix(method, path, headers, body),
            Via::Tcp => self.try_tcp(method, path, headers, body),
        }
    }

    /// Raw bytes over a fresh connection of the given transport (see [`raw_exchange`]).
    pub fn raw(&self, via: Via, request: &[u8]) -> Vec<u8> {
        match via {
            Via::Unix => raw_exchange(RawTarget::Unix(self.socket_path()), request),
            Via::Tcp => raw_exchange(RawTarget::Tcp(self.tcp_addr()), request),
        }
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        snapshot(&self.logs)
    }

    /// Every stderr line so far that is a JSON object.
    pub fn log_json(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits (bounded) for a JSON log line matching `pred`; returns it.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let mut found = None;
        poll_until(timeout, || {
            found = self.log_json().into_iter().find(|v| pred(v));
            found.is_some()
        });
        found
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `KILL`, ...) with `kill(1)`.
    pub fn send_signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_bounded(&mut self.child, timeout)
    }

    /// After the process exited: waits (bounded) until every stderr line is in
    /// [`Normd::logs`]. Returns whether the stream reached its end.
    pub fn wait_logs_closed(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.reader.is_finished())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size of the process in bytes, from `/proc/<pid>/status` VmRSS.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }
}

impl Drop for Normd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// VmRSS of `pid` in bytes (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A header as a `&str` (panics if absent or not visible ASCII).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing in {headers:?}"))
        .to_str()
        .expect("header value")
}

/// The body parsed as JSON (panics with the body if it is not).
pub fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Compiled output schema `schemas/output/<name>.json` (cached per name).
pub fn output_schema(name: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = cache.get(name) {
        return Arc::clone(v);
    }
    let path = repo_path("schemas/output").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("output schema {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("output schema is JSON");
    let v = Arc::new(
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("output schema {name} does not compile: {e}")),
    );
    cache.insert(name.to_owned(), Arc::clone(&v));
    v
}

/// Asserts `doc` is valid against `schemas/output/<name>.json`.
pub fn assert_schema(name: &str, doc: &Value) {
    let v = output_schema(name);
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "document does not match schemas/output/{name}.json: {errors:#?}\n{doc:#}"
    );
}

/// Asserts `reply` is the RFC 9457 problem `code` with `status`, served as
/// `application/problem+json` and valid against `problem.json`; returns the body.
pub fn assert_problem(reply: &Reply, status: u16, code: &str) -> Value {
    let (s, headers, body) = reply;
    assert_eq!(
        s.as_u16(),
        status,
        "expected {status} {code}, got {s}: {}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(header(headers, "content-type"), "application/problem+json");
    let doc = json(body);
    assert_eq!(doc["code"], code, "{doc:#}");
    assert_eq!(doc["type"], format!("urn:normd:problem:{code}"), "{doc:#}");
    assert_eq!(doc["status"], status, "{doc:#}");
    assert_schema("problem", &doc);
    doc
}

/// The problem's `detail` names `needle` (the value, parameter or limit at fault).
pub fn assert_detail_mentions(problem: &Value, needle: &str) {
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains(needle)),
        "the detail should mention {needle:?}: {problem:#}"
    );
}

/// One instance shared by the tests that run at the same time: the first caller starts
/// it (others wait), it lives while any test holds the `Arc`, and the last holder's drop
/// kills it, so no process outlives the test binary. A later test may start a new one.
///
/// ```ignore
/// static SLOT: Mutex<Weak<Normd>> = Mutex::new(Weak::new());
/// let n = shared_instance(&SLOT, || Normd::start(&[]));
/// ```
pub fn shared_instance(
    slot: &'static Mutex<std::sync::Weak<Normd>>,
    start: impl FnOnce() -> Normd,
) -> Arc<Normd> {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = guard.upgrade() {
        return n;
    }
    let n = Arc::new(start());
    *guard = Arc::downgrade(&n);
    n
}

/// Parses a raw HTTP/1.1 response (as read by [`raw_exchange`]): status, headers, body
/// (Content-Length or chunked). Panics on anything else.
pub fn parse_raw_response(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        headers.append(
            http::header::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v.trim()).expect("header value"),
        );
    }
    let rest = &raw[split + 4..];
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let eol = at
                + rest[at..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("chunk size line");
            let size_text = std::str::from_utf8(&rest[at..eol]).expect("chunk size");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("hex chunk size");
            at = eol + 2;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        Bytes::from(out)
    } else {
        let len = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(rest.len());
        Bytes::copy_from_slice(&rest[..len.min(rest.len())])
    };
    (StatusCode::from_u16(status).expect("status"), headers, body)
}
