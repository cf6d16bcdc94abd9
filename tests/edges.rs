//! The edges of the contract, each found by attacking a real `normd`: a tiny body that
//! asks its decoder for 1 GiB, answers held by readers that never read, a budget spent
//! on arrival, idle keep-alive connections at the connection limit, a chunked upload
//! past the cap, ambiguous framing, the end of the drain.
//!
//! Every test starts its own normd and proves its point by observable state (status
//! codes, `/metrics`, `/proc`), never by elapsed time.

mod common;
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::{
    assert_problem, header, parse_raw_response, poll_until, raw_exchange, rt, Normd, RawTarget, Via,
};
use support::*;

fn start(extra: &[&str]) -> Normd {
    let mut args: Vec<&str> = vec![
        "--max-deadline-ms",
        "60000",
        "--default-deadline-ms",
        "30000",
    ];
    args.extend_from_slice(&QUIET_PROBE);
    args.extend_from_slice(extra);
    Normd::start(&args)
}

/// VmHWM (peak RSS) of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// `\x11\x1e` is a large-window brotli header asking for a 2^30-byte window; before the
/// fix, four such 102-byte bodies at once took normd's peak RSS past 1 GB.
#[test]
fn large_window_brotli_is_refused_before_its_decoder_allocates() {
    let n = start(&["--memory-limit", "256Mi"]);
    wait_first_probe_round(&n);
    let before = peak_rss(n.pid());
    let mut body = vec![0x11u8, 0x1e];
    body.extend_from_slice(&[0u8; 100]);
    let socket = n.socket_path().to_path_buf();
    let replies = rt().block_on(async {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (socket, body) = (socket.clone(), body.clone());
                tokio::spawn(async move {
                    let headers = [
                        ("content-type", "application/json"),
                        ("content-encoding", "br"),
                    ];
                    common::unix_async(&socket, "POST", "/normalize", &headers, body).await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for call in calls {
            replies.push(call.await.expect("task"));
        }
        replies
    });
    for reply in replies {
        let p = assert_problem(&reply.expect("an answer"), 400, "bad_content_encoding");
        common::assert_detail_mentions(&p, "large-window");
    }
    let grown = peak_rss(n.pid()).saturating_sub(before);
    assert!(
        grown < 8 << 20,
        "peak RSS grew by {grown} bytes for eight refused 102-byte bodies"
    );
}

/// A gzip body of a few KB that decodes to 8 MiB of spaces.
fn gzip_of_spaces(len: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; len]).expect("gzip");
    gz.finish().expect("gzip")
}

/// Answers written to a connection but not yet taken by the client are in flight: they
/// count in `normd_inflight_bytes` (and the budget) until they leave, and a reader that
/// stalls past `--send-timeout-ms` is closed, which frees them. Before the fix, the
/// gauge read 0 while RSS held every answer until the 30 s idle timeout.
#[test]
fn answers_held_by_readers_that_never_read_are_in_flight_until_the_send_timeout() {
    let n = start(&["--send-timeout-ms", "1500", "--max-inflight-bytes", "1Gi"]);
    wait_first_probe_round(&n);
    let body = gzip_of_spaces(8 << 20);
    let head = format!(
        "POST /compress?encoding=identity HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    // Four clients send their calls and never read the 8 MiB answers.
    let stalled: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut s = UnixStream::connect(n.socket_path()).expect("connect");
            s.write_all(head.as_bytes()).expect("head");
            s.write_all(&body).expect("body");
            s
        })
        .collect();
    let held = wait_metrics(&n, "the four answers to be held in flight", |m| {
        m.sum("normd_inflight_bytes", &[]) >= (4 * (8 << 20) - (4 << 20)) as f64
    });
    assert!(held.sum("normd_inflight_bytes", &[]) > 0.0);
    // The send timeout closes them and the bytes are released.
    wait_metrics(&n, "the held answers to be released", |m| {
        m.sum("normd_inflight_bytes", &[]) == 0.0
    });
    for mut s in stalled {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        // What had been written is there, then the close: never the whole answer.
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.len() < 8 << 20, "a stalled reader got its whole answer");
    }
    // normd serves on.
    let (status, _, out) = n.unix(
        "POST",
        "/norm?encoding=identity",
        &[("content-type", "application/json")],
        r#"{"b":1,"a":2}"#,
    );
    assert_eq!((status.as_u16(), &out[..]), (200, &br#"{"a":2,"b":1}"#[..]));
}

/// `X-Deadline-Ms: 0`: the caller's budget is already gone. A well-formed header, so a
/// 504 `deadline_exceeded` at once (counted as a `deadline` rejection), before the body
/// is read or anything is queued; a malformed one is still a 400 (see tests/api.rs).
#[test]
fn a_budget_spent_on_arrival_is_504_without_reading_the_body() {
    let n = start(&[]);
    wait_first_probe_round(&n);
    let before = metrics(&n);
    // The head alone: the declared body is never sent, so an answer proves it was not
    // waited for.
    let mut held = Held::open(n.socket_path(), "/norm", 0, &[], vec![b' '; 4096]);
    let reply = held.reply_without_body();
    assert_problem(&reply, 504, "deadline_exceeded");
    let after = metrics(&n);
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert_eq!(
        delta("normd_rejections_total", &[("reason", "deadline")]),
        1.0
    );
    assert_eq!(delta(JOBS_PICKED, &[]), 0.0, "no work was queued");
}

/// A keep-alive connection served once, then left idle.
enum Idle {
    Unix(UnixStream),
    Tcp(std::net::TcpStream),
}

impl Idle {
    fn open(n: &Normd, via: Via) -> Idle {
        let request = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut idle = match via {
            Via::Unix => Idle::Unix(UnixStream::connect(n.socket_path()).expect("connect")),
            Via::Tcp => Idle::Tcp(std::net::TcpStream::connect(n.tcp_addr()).expect("connect")),
        };
        idle.write_all(request);
        let reply = parse_raw_response(&idle.read_reply());
        assert_eq!(reply.0.as_u16(), 200);
        idle
    }

    fn write_all(&mut self, bytes: &[u8]) {
        match self {
            Idle::Unix(s) => s.write_all(bytes).expect("write"),
            Idle::Tcp(s) => s.write_all(bytes).expect("write"),
        }
    }

    fn read_reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return out;
                }
            }
            let n = match self {
                Idle::Unix(s) => {
                    s.set_read_timeout(Some(WAIT)).expect("timeout");
                    s.read(&mut buf)
                }
                Idle::Tcp(s) => {
                    s.set_read_timeout(Some(WAIT)).expect("timeout");
                    s.read(&mut buf)
                }
            };
            match n {
                Ok(0) | Err(_) => return out,
                Ok(k) => out.extend_from_slice(&buf[..k]),
            }
        }
    }

    /// Whether normd closed it: an orderly EOF with nothing else sent.
    fn closed_cleanly(&mut self) -> bool {
        let mut rest = Vec::new();
        let r = match self {
            Idle::Unix(s) => {
                s.set_read_timeout(Some(WAIT)).expect("timeout");
                s.read_to_end(&mut rest)
            }
            Idle::Tcp(s) => {
                s.set_read_timeout(Some(WAIT)).expect("timeout");
                s.read_to_end(&mut rest)
            }
        };
        matches!(r, Ok(0))
    }
}

/// Waits until normd has no connection open on either work listener (the start-up
/// probe's and readiness polls' connections are gone), looking through the metrics
/// listener, whose connections are its own.
fn wait_no_connections(metrics_addr: std::net::SocketAddr) {
    let settled = poll_until(WAIT, || {
        let raw = raw_exchange(
            RawTarget::Tcp(metrics_addr),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let m = Metrics::parse(&String::from_utf8_lossy(&parse_raw_response(&raw).2));
        m.sum("normd_open_connections", &[("listener", "unix")]) == 0.0
            && m.sum("normd_open_connections", &[("listener", "tcp")]) == 0.0
    });
    assert!(settled, "start-up connections still open");
}

fn norm_request() -> Vec<u8> {
    let body = r#"{"b":1,"a":2}"#;
    format!(
        "POST /norm?encoding=identity HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// At `--max-connections`, idle keep-alive connections never deny service: the
/// longest-idle one is closed between requests (its client sees an orderly EOF) and the
/// newcomer is served. A connection in the middle of an upload is never the one chosen;
/// only when every connection has a request in hand is a newcomer refused.
#[test]
fn at_the_connection_limit_the_longest_idle_connection_gives_way() {
    for via in Via::BOTH {
        // Idle connections must outlive a slow (loaded) test: long head and idle timeouts.
        let n = start(&[
            "--max-connections",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
            "--header-read-timeout-ms",
            "300000",
            "--idle-timeout-ms",
            "300000",
        ]);
        let maddr = metrics_addr(&n);
        // The self-probe's start-up round must be over: its connections count too.
        wait_first_probe_round(&n);
        wait_no_connections(maddr);
        let target = match via {
            Via::Unix => RawTarget::Unix(n.socket_path()),
            Via::Tcp => RawTarget::Tcp(n.tcp_addr()),
        };

        // The limit's worth of idle keep-alive connections; a fresh work call is served,
        // and exactly one of them gave way.
        let listener = match via {
            Via::Unix => "unix",
            Via::Tcp => "tcp",
        };
        let evicted =
            || metrics_at(maddr).sum("normd_connections_evicted_total", &[("listener", listener)]);
        let first = Idle::open(&n, via);
        let second = Idle::open(&n, via);
        wait_no_connections_but(maddr, 2);
        let before = evicted();
        let reply = parse_raw_response(&raw_exchange(target, &norm_request()));
        assert_eq!(
            (reply.0.as_u16(), &reply.2[..]),
            (200, &br#"{"a":2,"b":1}"#[..]),
            "{via:?}"
        );
        assert_eq!(
            evicted() - before,
            1.0,
            "{via:?}: one newcomer, one eviction"
        );
        drop((first, second));
        wait_no_connections(maddr);
        // The upload is the older connection: age alone would pick it.
        let mut upload = Held::open(
            n.socket_path(),
            "/norm?encoding=identity",
            60_000,
            &[],
            br#"{"up":1}"#.to_vec(),
        );
        let in_hand = poll_until(WAIT, || {
            metrics_at(maddr).sum("normd_inflight_requests", &[]) == 1.0
        });
        assert!(in_hand, "the upload is in hand");
        let mut second = Idle::open(&n, via);

        // An upload in progress is never evicted: the idle connection gives way, with an
        // orderly close.
        wait_no_connections_but(maddr, 2);
        let reply = parse_raw_response(&raw_exchange(target, &norm_request()));
        assert_eq!(reply.0.as_u16(), 200, "{via:?}");
        assert!(
            second.closed_cleanly(),
            "{via:?}: the idle one gave way, not the upload"
        );
        // With every connection holding a request, a newcomer gets today's refusal.
        let other = Held::open(
            n.socket_path(),
            "/norm?encoding=identity",
            60_000,
            &[],
            br#"{"up":2}"#.to_vec(),
        );
        let both = poll_until(WAIT, || {
            metrics_at(maddr).sum("normd_inflight_requests", &[]) == 2.0
        });
        assert!(both, "both uploads are in hand");
        let refused = parse_raw_response(&raw_exchange(target, &norm_request()));
        assert_problem(&refused, 429, "overloaded");
        assert_eq!(header(&refused.1, "x-normd-refused"), "connections");
        // The uploads were never cut: both complete.
        upload.send_body();
        let done = parse_raw_response(&read_reply_bytes(upload.stream_mut()));
        assert_eq!(done.0.as_u16(), 200, "{via:?}");
        let done = other.finish();
        assert_eq!(done.0.as_u16(), 200, "{via:?}");
    }
}

/// Waits until exactly `open` work connections are open.
fn wait_no_connections_but(metrics_addr: std::net::SocketAddr, open: usize) {
    let settled = poll_until(WAIT, || {
        let m = metrics_at(metrics_addr);
        m.sum("normd_open_connections", &[("listener", "unix")])
            + m.sum("normd_open_connections", &[("listener", "tcp")])
            == open as f64
    });
    assert!(settled, "expected {open} open connections");
}

/// A chunked body that passes `--max-body-bytes` while streaming is drained (bounded)
/// like a declared one, so a client that writes its whole body before reading (most do)
/// reads its 413 rather than a broken pipe.
#[test]
fn a_chunked_body_past_the_cap_is_drained_so_the_client_reads_its_413() {
    let n = start(&["--max-body-bytes", "65536"]);
    let mut s = UnixStream::connect(n.socket_path()).expect("connect");
    s.set_write_timeout(Some(WAIT)).expect("write timeout");
    s.write_all(
        b"POST /norm HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )
    .expect("head");
    // 4 MiB in 64 KiB chunks: far more than socket buffers hold, so the writes only
    // complete if normd reads them.
    let chunk = vec![b' '; 64 << 10];
    for _ in 0..64 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("chunk size");
        s.write_all(&chunk)
            .expect("the whole body is taken, though it is refused");
        s.write_all(b"\r\n").expect("chunk end");
    }
    s.write_all(b"0\r\n\r\n").expect("last chunk");
    let reply = parse_raw_response(&read_reply_bytes(&mut s));
    assert_problem(&reply, 413, "payload_too_large");
    assert_eq!(header(&reply.1, "connection"), "close");
}

/// Framing normd would have to guess at is refused: a transfer coding other than
/// chunked (hyper frames by the last coding and ignores the others), and two different
/// Content-Type lines.
#[test]
fn ambiguous_framing_is_refused_not_guessed() {
    let n = start(&[]);
    let body = r#"{"a":1}"#;
    let gzip_chunked = format!(
        "POST /norm HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: gzip, chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let reply = parse_raw_response(&raw_exchange(
        RawTarget::Unix(n.socket_path()),
        gzip_chunked.as_bytes(),
    ));
    let p = assert_problem(&reply, 400, "bad_parameter");
    common::assert_detail_mentions(&p, "Transfer-Encoding");
    assert_eq!(header(&reply.1, "connection"), "close");

    let two_types = |second: &str| {
        format!(
            "POST /norm?encoding=identity HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
             Content-Type: {second}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let reply = parse_raw_response(&raw_exchange(
        RawTarget::Unix(n.socket_path()),
        two_types("application/json").as_bytes(),
    ));
    let p = assert_problem(&reply, 400, "bad_parameter");
    common::assert_detail_mentions(&p, "Content-Type");
    // The same value twice is no conflict.
    let reply = parse_raw_response(&raw_exchange(
        RawTarget::Unix(n.socket_path()),
        two_types("Text/Plain").as_bytes(),
    ));
    assert_eq!(reply.0.as_u16(), 200);
    // Plain chunked is served as always.
    let chunked = format!(
        "POST /norm?encoding=identity HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let reply = parse_raw_response(&raw_exchange(
        RawTarget::Unix(n.socket_path()),
        chunked.as_bytes(),
    ));
    assert_eq!((reply.0.as_u16(), &reply.2[..]), (200, body.as_bytes()));
}

/// During the drain delay normd still serves, and every answer says `Connection: close`
/// so keep-alive clients move off before the listeners close.
#[test]
fn during_the_drain_every_answer_says_connection_close() {
    let n = start(&[
        "--drain-delay-ms",
        "60000",
        "--shutdown-timeout-ms",
        "120000",
    ]);
    wait_signal_handlers(&n, &[SIGTERM]);
    let (status, headers, _) = n.unix("GET", "/livez", &[], "");
    assert_eq!(status.as_u16(), 200);
    assert!(
        headers.get("connection").is_none(),
        "keep-alive before the drain"
    );
    n.send_signal("TERM");
    let draining = poll_until(WAIT, || readyz(&n, "").0 == 503);
    assert!(draining, "readiness turns 503 at SIGTERM");
    for via in Via::BOTH {
        let (status, headers, _) = n.call(
            via,
            "POST",
            "/norm?encoding=identity",
            &[("content-type", "application/json")],
            r#"{"a":1}"#,
        );
        assert_eq!(status.as_u16(), 200, "{via:?}: still serving");
        assert_eq!(header(&headers, "connection"), "close", "{via:?}");
        let (_, headers, _) = n.call(via, "GET", "/livez", &[], "");
        assert_eq!(header(&headers, "connection"), "close", "{via:?}");
    }
}

/// What hyper answers before normd sees a request: a status with an empty body, not a
/// problem (normd cannot shape these; the README lists them).
#[test]
fn requests_that_fail_http_parsing_get_the_frameworks_bare_status() {
    let n = start(&[]);
    let too_many_headers: String = (0..200).map(|i| format!("X-H{i}: 1\r\n")).collect();
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "a Content-Length that is not a number",
            b"POST /norm HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a Content-Length too large for 64 bits",
            b"POST /norm HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
            400,
        ),
        ("a bad request line", b"BLAH\r\n\r\n".to_vec(), 400),
        (
            "a 100 KB URI",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            414,
        ),
        (
            "too many header lines",
            format!("GET /livez HTTP/1.1\r\nHost: x\r\n{too_many_headers}\r\n").into_bytes(),
            431,
        ),
    ];
    for (what, request, status) in cases {
        let raw = raw_exchange(RawTarget::Unix(n.socket_path()), &request);
        let reply = parse_raw_response(&raw);
        assert_eq!(reply.0.as_u16(), status, "{what}");
        assert!(reply.2.is_empty(), "{what}: no body");
    }
}
