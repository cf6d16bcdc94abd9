//! The HTTP contract (README: API, Errors) against the real binary, over the real Unix socket
//! and real TCP: routes, /norm's output and headers, encodings, profiles, every error
//! code reachable through the API, the output schemas, `normd check`, and the socket
//! file's life cycle.
//!
//! Instances: `shared()` (defaults + a profiles config + the debug-panic hook) and
//! `limits()` (tiny body limit, 2 schema errors) are shared by the tests that run at the
//! same time; tests whose config differs start their own.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const JSON: (&str, &str) = ("content-type", "application/json");
const TEXT: (&str, &str) = ("content-type", "text/plain");

const PROFILES: &str = r#"
[profiles.orders]
schema = "order.v1"
encoding = "br"
level = 5
trim = true
lowercase = ["/order/customer/email"]

[profiles.plain]
encoding = "identity"

[profiles.jcs]
encoding = "identity"
numbers = "jcs"

[profiles.strict]
encoding = "identity"
numbers = "strict"

[profiles.nfc]
encoding = "identity"
nfc = true
"#;

/// Defaults, plus a config file with profiles and the debug-panic hook (both inert
/// unless a request asks for them).
fn shared() -> Arc<Normd> {
    static SLOT: Mutex<Weak<Normd>> = Mutex::new(Weak::new());
    shared_instance(&SLOT, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("normd.toml");
        std::fs::write(&config, PROFILES).expect("write config");
        Normd::builder()
            .dir(dir)
            .args(&RELAXED_DEADLINES)
            // Tests share this instance at once; one test's 8 MiB bodies must not get
            // another's calls refused by the in-flight budget (tested on its own).
            .args(&["--max-inflight-bytes", "1Gi"])
            .args(&["--config", config.to_str().expect("utf-8 path")])
            .env("NORMD_DEBUG_PANIC", "1")
            // As in a shell that exports it: a panic must still answer 500 at once.
            .env("RUST_BACKTRACE", "full")
            .start()
    })
}

/// `--max-body-bytes 1024 --max-errors 2`.
fn limits() -> Arc<Normd> {
    static SLOT: Mutex<Weak<Normd>> = Mutex::new(Weak::new());
    shared_instance(&SLOT, || {
        Normd::builder()
            .args(&RELAXED_DEADLINES)
            .args(&["--max-body-bytes", "1024", "--max-errors", "2"])
            .start()
    })
}

// ---------------------------------------------------------------------------------
// Helpers

/// A document exercising RFC 8785: UTF-16 key order (U+1F600 sorts before U+E000 in
/// UTF-16, after it in UTF-8), number forms, escapes, whitespace.
const KNOWN: &str = "{\"b\": [1.50, true, null, \"x\\u00e9\\n\"],\n \"a\": {\"z\": 1E30, \"y\": -0.0, \"\\ue000\": 1, \"\\ud83d\\ude00\": 2}, \"c\": 100.0e-2}";
const KNOWN_CANONICAL: &str =
    "{\"a\":{\"y\":0,\"z\":1e+30,\"\u{1F600}\":2,\"\u{E000}\":1},\"b\":[1.5,true,null,\"x\u{e9}\\n\"],\"c\":1}";

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &b[..], &mut out).expect("valid brotli");
    out
}

fn decode(encoding: &str, b: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => gunzip(b),
        "br" => unbrotli(b),
        "zstd" => zstd::decode_all(b).expect("valid zstd"),
        "identity" => b.to_vec(),
        other => panic!("encoding {other}"),
    }
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

fn brotli(b: &[u8]) -> Vec<u8> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    w.write_all(b).expect("brotli");
    w.flush().expect("brotli");
    w.into_inner()
}

/// A valid gzip member of `len` zeros, written by hand (one fixed-Huffman deflate block:
/// a literal 0, then length-258/distance-1 copies): ~130 KB for 20 MiB, built in
/// milliseconds even in a debug build, where compressing 20 MiB takes seconds.
fn gzip_zeros(len: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, code: u32, bits: u32) {
            self.put(code.reverse_bits() >> (32 - bits), bits);
        }
    }
    assert!(len >= 1 && (len - 1) % 258 == 0, "1 + 258k zeros");
    let mut b = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    b.code(0x30, 8); // literal 0
    for _ in 0..(len - 1) / 258 {
        b.code(0xc5, 8); // symbol 285: length 258
        b.code(0, 5); // distance code 0: distance 1
    }
    b.code(0, 7); // end of block
    b.put(0, 7); // pad to a byte boundary
    let mut out = b.out;
    // CRC-32 of `len` zero bytes.
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut crc = !0u32;
    for _ in 0..len {
        crc = table[(crc & 0xff) as usize] ^ (crc >> 8);
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

fn digest_of(canonical: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(canonical))
    )
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// An independent RFC 8785 serializer for documents whose numbers are integers or
/// plain decimals (the fixtures): keys sorted by UTF-16 code units, serde_json's
/// string escaping (identical to JCS's), integral floats without a fraction.
fn jcs(v: &Value) -> String {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => v.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e21 => {
                format!("{}", f as i64)
            }
            _ => n.to_string(),
        },
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(jcs).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), jcs(&map[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

fn canonical_of(doc: &[u8]) -> Vec<u8> {
    jcs(&json(doc)).into_bytes()
}

/// Starts a `normd serve` that must fail.
fn start_failure(args: &[&str]) -> StartFailure {
    match Normd::builder().args(args).try_start() {
        Ok(n) => panic!("normd {:?} started but should not have", n.args),
        Err(f) => f,
    }
}

fn header_usize(h: &http::HeaderMap, name: &str) -> usize {
    header(h, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Checks the /norm success headers against the expected canonical bytes; returns the
/// decoded body.
fn check_norm_reply(reply: &Reply, sent: usize, encoding: &str, canonical: &[u8]) -> Vec<u8> {
    let (status, h, body) = reply;
    assert_eq!(status.as_u16(), 200, "{}", String::from_utf8_lossy(body));
    assert!(
        h.get("content-encoding").is_none(),
        "/norm must not set Content-Encoding: {h:?}"
    );
    assert_eq!(header(h, "x-normd-encoding"), encoding);
    let ct = if encoding == "identity" {
        "application/json"
    } else {
        "application/octet-stream"
    };
    assert_eq!(header(h, "content-type"), ct);
    assert_eq!(header_usize(h, "x-normd-input-bytes"), sent);
    assert_eq!(header_usize(h, "x-normd-canonical-bytes"), canonical.len());
    assert_eq!(header_usize(h, "x-normd-output-bytes"), body.len());
    assert_eq!(header(h, "x-normd-digest"), digest_of(canonical));
    assert!(!header(h, "x-request-id").is_empty());
    let decoded = decode(encoding, body);
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        String::from_utf8_lossy(canonical)
    );
    decoded
}

/// Walks every string value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// Routes on both transports

#[test]
fn every_route_answers_on_both_transports_with_the_same_body() {
    let n = shared();
    let fixture = fixture("order_1k.json");
    let work: [(&str, &str); 5] = [
        ("/norm", "?encoding=identity"),
        ("/norm", ""),
        ("/normalize", ""),
        ("/validate", "?schema=order.v1"),
        ("/compress", "?encoding=zstd"),
    ];
    for (route, query) in work {
        let path = format!("{route}{query}");
        let u = n.unix("POST", &path, &[JSON], fixture.clone());
        let t = n.tcp("POST", &path, &[JSON], fixture.clone());
        assert_eq!(u.0, 200, "unix {path}: {:?}", u.2);
        assert_eq!(t.0, 200, "tcp {path}: {:?}", t.2);
        assert_eq!(u.2, t.2, "{path}: bodies differ between transports");
        assert_eq!(header(&u.1, "content-type"), header(&t.1, "content-type"));
    }
    for via in Via::BOTH {
        let (s, h, b) = n.call(via, "GET", "/livez", &[], "");
        assert_eq!(s, 200, "{via:?}");
        assert_eq!(header(&h, "content-type"), "application/json");
        assert_schema("livez", &json(&b));

        let (s, _, b) = n.call(via, "GET", "/readyz", &[], "");
        assert_eq!(s, 200, "{via:?}: {b:?}");
        assert_schema("readyz", &json(&b));

        let (s, h, b) = n.call(via, "GET", "/metrics", &[], "");
        assert_eq!(s, 200, "{via:?}");
        assert!(header(&h, "content-type").starts_with("text/plain"));
        assert!(
            String::from_utf8_lossy(&b).contains("normd_requests_total"),
            "{via:?}: metrics lack the request counter"
        );
    }
    for path in ["/flags", "/schemas"] {
        let u = n.unix("GET", path, &[], "");
        let t = n.tcp("GET", path, &[], "");
        assert_eq!((u.0.as_u16(), t.0.as_u16()), (200, 200), "{path}");
        assert_eq!(u.2, t.2, "{path}: bodies differ between transports");
    }
    for via in Via::BOTH {
        assert_problem(&n.call(via, "GET", "/nope", &[], ""), 404, "not_found");
        assert_problem(
            &n.call(via, "GET", "/norm", &[], ""),
            405,
            "method_not_allowed",
        );
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let n = shared();
    // The pooled hyperlocal client, as an app's keep-alive agent would use it.
    let client = unix_client();
    let socket = n.socket_path().to_owned();
    rt().block_on(async {
        for i in 0..5 {
            let uri: hyper::Uri = hyperlocal::Uri::new(&socket, "/norm?encoding=identity").into();
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!("{{\"i\": {i}}}"))))
                .expect("request");
            let res = client.request(req).await.expect("keep-alive request");
            assert_eq!(res.status(), 200);
            let body = res.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(body, format!("{{\"i\":{i}}}"));
        }
    });
    // And provably on one connection: hyper's connection API over one stream.
    rt().block_on(async {
        for via in Via::BOTH {
            let mut sender = match via {
                Via::Unix => {
                    let s = tokio::net::UnixStream::connect(&socket)
                        .await
                        .expect("connect");
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    sender
                }
                Via::Tcp => {
                    let s = tokio::net::TcpStream::connect(n.tcp_addr())
                        .await
                        .expect("connect");
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    sender
                }
            };
            for i in 0..5 {
                sender.ready().await.expect("connection still open");
                let req = http::Request::post("/normalize")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(format!("{{\"k\": [{i}, 1.0]}}"))))
                    .expect("request");
                let res = sender
                    .send_request(req)
                    .await
                    .expect("request on the same connection");
                assert_eq!(res.status(), 200, "{via:?} request {i}");
                let body = res.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(body, format!("{{\"k\":[{i},1]}}"), "{via:?}");
            }
        }
    });
}

// ---------------------------------------------------------------------------------
// /norm

#[test]
fn norm_default_is_gzip_level_1_of_the_rfc8785_form_with_its_headers() {
    let n = shared();
    for via in Via::BOTH {
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON, ("x-request-id", "req-42")],
            KNOWN,
        );
        check_norm_reply(&reply, KNOWN.len(), "gzip", KNOWN_CANONICAL.as_bytes());
        let body = &reply.2;
        // gzip member header: magic, deflate, and XFL = 4 ("fastest"), as zlib writes
        // for level 1.
        assert_eq!(&body[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(body[8], 4, "XFL of level 1");
        assert_eq!(header(&reply.1, "x-request-id"), "req-42");
        assert!(reply.1.get("x-normd-schema").is_none());
    }
    // Without a Content-Type the body is JSON too, and a generated request id is echoed.
    let (s, h, b) = n.unix("POST", "/norm", &[], KNOWN);
    assert_eq!(s, 200);
    assert_eq!(gunzip(&b), KNOWN_CANONICAL.as_bytes());
    let id = header(&h, "x-request-id");
    assert!(
        id.len() >= 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    // An empty Content-Type names no media type: read as missing, so JSON too.
    let (s, _, b) = n.unix("POST", "/norm", &[("content-type", "")], KNOWN);
    assert_eq!(s, 200);
    assert_eq!(gunzip(&b), KNOWN_CANONICAL.as_bytes());
    // +json media types are JSON mode.
    let (s, _, b) = n.tcp(
        "POST",
        "/norm?encoding=identity",
        &[("content-type", "application/vnd.order+json; charset=utf-8")],
        KNOWN,
    );
    assert_eq!(s, 200);
    assert_eq!(b, KNOWN_CANONICAL.as_bytes());
}

#[test]
fn norm_round_trips_every_encoding_and_level() {
    let n = shared();
    let doc = fixture("order_4k.json");
    let canonical = canonical_of(&doc);
    let cases: [(&str, &[i32]); 4] = [
        ("gzip", &[0, 1, 5, 9]),
        ("br", &[0, 5, 11]),
        ("zstd", &[-7, 1, 19]),
        ("identity", &[0]),
    ];
    for (encoding, levels) in cases {
        let (s, h, b) = n.tcp(
            "POST",
            &format!("/norm?encoding={encoding}"),
            &[JSON],
            doc.clone(),
        );
        assert_eq!(s, 200);
        check_norm_reply(&(s, h, b), doc.len(), encoding, &canonical);
        let mut outputs = Vec::new();
        for level in levels {
            let path = format!("/norm?encoding={encoding}&level={level}");
            let reply = n.unix("POST", &path, &[JSON], doc.clone());
            check_norm_reply(&reply, doc.len(), encoding, &canonical);
            if encoding == "gzip" {
                let xfl = match level {
                    9 => 2,
                    1 | 0 => 4,
                    _ => 0,
                };
                assert_eq!(reply.2[8], xfl, "gzip level {level}: XFL");
            }
            outputs.push(reply.2);
        }
        if encoding == "br" || encoding == "zstd" {
            assert_ne!(
                outputs.first(),
                outputs.last(),
                "{encoding}: the level must change the output"
            );
        }
    }
}

#[test]
fn norm_validates_against_a_schema_and_names_it() {
    let n = shared();
    for name in ["order_1k.json", "order_4k.json"] {
        let doc = fixture(name);
        for via in Via::BOTH {
            let reply = n.call(via, "POST", "/norm?schema=order.v1", &[JSON], doc.clone());
            check_norm_reply(&reply, doc.len(), "gzip", &canonical_of(&doc));
            assert_eq!(header(&reply.1, "x-normd-schema"), "order.v1");
        }
    }
}

#[test]
fn norm_envelope_on_accept_json() {
    let n = shared();
    let doc = fixture("order_1k.json");
    let canonical = canonical_of(&doc);
    for (query, encoding, schema) in [
        ("", "gzip", None),
        ("?schema=order.v1&encoding=br", "br", Some("order.v1")),
        ("?encoding=identity", "identity", None),
    ] {
        for via in Via::BOTH {
            let (s, h, b) = n.call(
                via,
                "POST",
                &format!("/norm{query}"),
                &[JSON, ("accept", "application/json")],
                doc.clone(),
            );
            assert_eq!(s, 200, "{query}: {b:?}");
            assert_eq!(header(&h, "content-type"), "application/json");
            let env = json(&b);
            assert_schema("envelope", &env);
            assert_eq!(env["ok"], true);
            assert_eq!(env["encoding"], encoding);
            assert_eq!(env["input_bytes"], doc.len());
            assert_eq!(env["canonical_bytes"], canonical.len());
            assert_eq!(env["digest"], digest_of(&canonical));
            assert_eq!(env["digest"], header(&h, "x-normd-digest"));
            assert_eq!(env.get("schema").and_then(Value::as_str), schema);
            let data = base64::engine::general_purpose::STANDARD
                .decode(env["data"].as_str().expect("data"))
                .expect("base64");
            assert_eq!(env["output_bytes"], data.len());
            assert_eq!(decode(encoding, &data), canonical, "{query}");
        }
    }
}

#[test]
fn norm_decodes_the_request_content_encoding() {
    let n = shared();
    let doc = fixture("order_4k.json");
    let canonical = canonical_of(&doc);
    let bodies = [
        ("gzip", gzip(&doc)),
        ("br", brotli(&doc)),
        ("zstd", zstd::encode_all(&doc[..], 3).expect("zstd")),
        ("identity", doc.clone()),
    ];
    for (ce, body) in bodies {
        for via in Via::BOTH {
            let reply = n.call(
                via,
                "POST",
                "/norm?schema=order.v1",
                &[JSON, ("content-encoding", ce)],
                body.clone(),
            );
            // Input bytes are the bytes on the wire.
            check_norm_reply(&reply, body.len(), "gzip", &canonical);
        }
    }
}

#[test]
fn text_mode_trims_and_lowercases() {
    let n = shared();
    let text = "  Hello WORLD, ÄÖÜ \n";
    for via in Via::BOTH {
        let (s, h, b) = n.call(via, "POST", "/norm?encoding=identity", &[TEXT], text);
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
        assert_eq!(b, "hello world, äöü");
        assert_eq!(
            header(&h, "x-normd-digest"),
            digest_of("hello world, äöü".as_bytes())
        );

        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[("content-type", "text/plain; charset=utf-8")],
            text,
        );
        check_norm_reply(&reply, text.len(), "gzip", "hello world, äöü".as_bytes());

        let (s, h, b) = n.call(via, "POST", "/normalize", &[TEXT], text);
        assert_eq!(s, 200);
        assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
        assert_eq!(b, "hello world, äöü");
    }
}

#[test]
fn text_mode_applies_the_profiles_nfc() {
    let n = shared();
    // "Cafe" + U+0301 COMBINING ACUTE ACCENT: NFC composes it to "café" (U+00E9).
    let text = "  Cafe\u{301} AU LAIT\n";
    for via in Via::BOTH {
        let (s, _, b) = n.call(via, "POST", "/normalize?profile=nfc", &[TEXT], text);
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(b, "caf\u{e9} au lait");
        let (s, h, b) = n.call(via, "POST", "/norm?profile=nfc", &[TEXT], text);
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(b, "caf\u{e9} au lait");
        assert_eq!(
            header(&h, "x-normd-digest"),
            digest_of("caf\u{e9} au lait".as_bytes())
        );
        // Without `nfc` the text keeps its decomposed form.
        let (s, _, b) = n.call(via, "POST", "/normalize", &[TEXT], text);
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(b, "cafe\u{301} au lait");
    }
}

#[test]
fn profiles_are_selected_and_query_parameters_override_them() {
    let n = shared();
    let doc = fixture("order_1k.json");
    for via in Via::BOTH {
        let (s, h, b) = n.call(via, "POST", "/norm?profile=orders", &[JSON], doc.clone());
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(header(&h, "x-normd-encoding"), "br");
        assert_eq!(header(&h, "x-normd-schema"), "order.v1");
        assert_eq!(header(&h, "content-type"), "application/octet-stream");
        let canonical = unbrotli(&b);
        assert_eq!(header_usize(&h, "x-normd-canonical-bytes"), canonical.len());
        assert_eq!(header(&h, "x-normd-digest"), digest_of(&canonical));
        let out = json(&canonical);
        assert_eq!(
            out["order"]["customer"]["email"], "peter.ivanova@mail.example.org",
            "trim + lowercase at /order/customer/email"
        );
        // Trim applies to every string value; lowercase only at the pointer.
        let mut all = Vec::new();
        strings(&out, &mut all);
        assert!(
            all.iter().all(|s| s.trim() == s),
            "untrimmed strings remain"
        );
        assert_eq!(out["order"]["customer"]["name"], "PeTEr IvanoVa");
        // The output is the canonical form of the rules applied to the input.
        assert_eq!(canonical, jcs(&out).into_bytes());

        // ?encoding= overrides the profile's encoding; schema and rules stay.
        let (s, h, b) = n.call(
            via,
            "POST",
            "/norm?profile=orders&encoding=identity",
            &[JSON],
            doc.clone(),
        );
        assert_eq!(s, 200);
        assert_eq!(header(&h, "x-normd-encoding"), "identity");
        assert_eq!(header(&h, "x-normd-schema"), "order.v1");
        assert_eq!(header(&h, "content-type"), "application/json");
        assert_eq!(b, canonical);

        // ?schema= overrides the profile's schema (this document is no address).
        let reply = n.call(
            via,
            "POST",
            "/norm?profile=orders&schema=address.v1",
            &[JSON],
            doc.clone(),
        );
        let p = assert_problem(&reply, 422, "schema_violation");
        assert_eq!(p["schema"], "address.v1");

        // The profile's schema is enforced.
        let reply = n.call(
            via,
            "POST",
            "/norm?profile=orders",
            &[JSON],
            fixture("order_invalid.json"),
        );
        assert_problem(&reply, 422, "schema_violation");

        // The profile applies to /normalize and /validate as well.
        let (s, _, b) = n.call(
            via,
            "POST",
            "/normalize?profile=orders",
            &[JSON],
            doc.clone(),
        );
        assert_eq!(s, 200);
        assert_eq!(b, canonical);
        let (s, _, b) = n.call(
            via,
            "POST",
            "/validate?profile=orders",
            &[JSON],
            doc.clone(),
        );
        assert_eq!(s, 200);
        assert_eq!(json(&b), json!({"valid": true, "schema": "order.v1"}));
    }
    // A second profile: identity, no schema, no rules.
    let (s, h, b) = n.unix("POST", "/norm?profile=plain", &[JSON], KNOWN);
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-normd-encoding"), "identity");
    assert!(h.get("x-normd-schema").is_none());
    assert_eq!(b, KNOWN_CANONICAL.as_bytes());
}

// ---------------------------------------------------------------------------------
// Other work routes

#[test]
fn validate_answers_200_valid_or_invalid() {
    let n = shared();
    for via in Via::BOTH {
        let (s, h, b) = n.call(
            via,
            "POST",
            "/validate?schema=order.v1",
            &[JSON],
            fixture("order_4k.json"),
        );
        assert_eq!(s, 200);
        assert_eq!(header(&h, "content-type"), "application/json");
        let v = json(&b);
        assert_schema("validate", &v);
        assert_eq!(v, json!({"valid": true, "schema": "order.v1"}));

        let (s, _, b) = n.call(
            via,
            "POST",
            "/validate?schema=order.v1",
            &[JSON],
            fixture("order_invalid.json"),
        );
        assert_eq!(s, 200);
        let v = json(&b);
        assert_schema("validate", &v);
        assert_eq!(v["valid"], false);
        let errors = v["errors"].as_array().expect("errors");
        assert!(
            errors.iter().any(|e| e["instance_path"] == "/order/status"
                && e["schema_path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/enum"))),
            "{v:#}"
        );

        // No schema: well-formed JSON is valid.
        let (s, _, b) = n.call(via, "POST", "/validate", &[JSON], KNOWN);
        assert_eq!(s, 200);
        assert_eq!(json(&b), json!({"valid": true}));

        // Parse errors are errors, not violations.
        let reply = n.call(via, "POST", "/validate?schema=order.v1", &[JSON], "{\"a\":");
        assert_problem(&reply, 400, "invalid_json");
    }
}

#[test]
fn normalize_answers_the_canonical_json() {
    let n = shared();
    let doc = fixture("order_4k.json");
    for via in Via::BOTH {
        let (s, h, b) = n.call(via, "POST", "/normalize", &[JSON], KNOWN);
        assert_eq!(s, 200);
        assert_eq!(header(&h, "content-type"), "application/json");
        assert_eq!(b, KNOWN_CANONICAL.as_bytes());
        let (s, _, b) = n.call(via, "POST", "/normalize", &[JSON], doc.clone());
        assert_eq!(s, 200);
        assert_eq!(b, canonical_of(&doc));
    }
}

#[test]
fn compress_round_trips_raw_bytes_of_any_type() {
    let n = shared();
    // Not JSON, not UTF-8: /compress takes the bytes as they are.
    let mut x: u32 = 0x1234_5678;
    let raw: Vec<u8> = (0..5000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 3 == 0 {
                b'a'
            } else {
                x as u8
            }
        })
        .collect();
    for via in Via::BOTH {
        for (ct, query, encoding) in [
            ("image/png", "", "gzip"),
            ("application/xml", "?encoding=br&level=9", "br"),
            ("text/plain", "?encoding=zstd", "zstd"),
            ("application/octet-stream", "?encoding=identity", "identity"),
        ] {
            let (s, h, b) = n.call(
                via,
                "POST",
                &format!("/compress{query}"),
                &[("content-type", ct)],
                raw.clone(),
            );
            assert_eq!(s, 200, "{ct}: {b:?}");
            assert_eq!(header(&h, "content-type"), "application/octet-stream");
            assert_eq!(header(&h, "x-normd-encoding"), encoding);
            assert_eq!(header_usize(&h, "x-normd-input-bytes"), raw.len());
            assert_eq!(header_usize(&h, "x-normd-output-bytes"), b.len());
            assert!(h.get("content-encoding").is_none());
            assert_eq!(decode(encoding, &b), raw, "{encoding}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Info routes

#[test]
fn schemas_lists_the_files_with_their_sha256() {
    let n = shared();
    let (s, _, b) = n.tcp("GET", "/schemas", &[], "");
    assert_eq!(s, 200);
    let doc = json(&b);
    assert_schema("schemas", &doc);
    let list = doc["schemas"].as_array().expect("schemas");
    for name in ["order.v1", "address.v1"] {
        let entry = list
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {doc:#}"));
        let bytes =
            std::fs::read(repo_path("schemas").join(format!("{name}.json"))).expect("schema file");
        assert_eq!(entry["sha256"], hex_sha256(&bytes), "{name}");
        let file: Value = serde_json::from_slice(&bytes).expect("schema JSON");
        assert_eq!(entry["id"], file["$id"], "{name}");
    }
    // schemas/output/ is a subdirectory and not loaded as payload schemas.
    assert_eq!(list.len(), 2, "{doc:#}");
}

#[test]
fn livez_and_readyz_match_their_schemas() {
    let n = shared();
    for via in Via::BOTH {
        let (s, _, b) = n.call(via, "GET", "/livez", &[], "");
        assert_eq!(s, 200);
        assert_eq!(json(&b), json!({"status": "alive"}));
        let (s, h, b) = n.call(via, "GET", "/readyz", &[], "");
        assert_eq!(s, 200);
        assert_eq!(header(&h, "content-type"), "application/json");
        let r = json(&b);
        assert_schema("readyz", &r);
        assert_eq!(r["status"], "ready");
        assert_eq!(r["failing"], json!([]));
        assert_eq!(r["checks"]["schemas"]["count"], 2);
        for check in ["draining", "memory", "schemas", "probe"] {
            assert_eq!(r["checks"][check]["ok"], true, "{check}");
        }
        // exclude= is validated.
        let reply = n.call(via, "GET", "/readyz?exclude=bogus", &[], "");
        assert_problem(&reply, 400, "bad_parameter");
        let (s, _, b) = n.call(via, "GET", "/readyz?exclude=probe,memory", &[], "");
        assert_eq!(s, 200);
        let r = json(&b);
        assert_schema("readyz", &r);
        assert_eq!(r["checks"]["probe"]["excluded"], true);
    }
}

#[test]
fn flags_without_and_with_a_flags_file() {
    let n = shared();
    let (s, _, b) = n.unix("GET", "/flags", &[], "");
    assert_eq!(s, 200);
    let f = json(&b);
    assert_schema("flags", &f);
    assert_eq!(f["version"], "default");
    assert_eq!(f["source"], Value::Null);
    for e in ["norm", "normalize", "validate", "compress"] {
        assert_eq!(
            f["flags"][e],
            json!({"enabled": true, "rollout_percent": 100, "shadow_percent": 0})
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    let text = r#"{"norm": {"enabled": true, "rollout_percent": 25, "shadow_percent": 60}, "compress": {"enabled": true, "rollout_percent": 0}}"#;
    std::fs::write(&path, text).expect("write flags");
    let path_arg = path.to_str().expect("utf-8").to_owned();
    let m = Normd::builder()
        .dir(dir)
        .args(&["--flags", &path_arg])
        .start();
    for via in Via::BOTH {
        let (s, _, b) = m.call(via, "GET", "/flags", &[], "");
        assert_eq!(s, 200);
        let f = json(&b);
        assert_schema("flags", &f);
        assert_eq!(
            f["version"],
            format!("sha256:{}", &hex_sha256(text.as_bytes())[..16])
        );
        assert_eq!(f["source"], path_arg);
        assert!(f["mtime"].is_string(), "{f:#}");
        assert_eq!(f["last_error"], Value::Null);
        assert_eq!(f["flags"]["norm"]["rollout_percent"], 25);
        assert_eq!(f["flags"]["norm"]["shadow_percent"], 60);
        assert_eq!(f["flags"]["compress"]["rollout_percent"], 0);
        assert_eq!(
            f["flags"]["validate"],
            json!({"enabled": true, "rollout_percent": 100, "shadow_percent": 0})
        );
    }
}

// ---------------------------------------------------------------------------------
// Errors, one code at a time

#[test]
fn invalid_json_names_line_and_column() {
    let n = shared();
    for via in Via::BOTH {
        let reply = n.call(via, "POST", "/norm", &[JSON], "{\"a\": 1,\n \"b\": }");
        let p = assert_problem(&reply, 400, "invalid_json");
        assert_eq!(p["line"], 2);
        assert_eq!(p["column"], 7);
        for bad in ["", "{", "[1,]", "{\"a\":1} x", "nul", "{'a':1}"] {
            let reply = n.call(via, "POST", "/normalize", &[JSON], bad);
            let p = assert_problem(&reply, 400, "invalid_json");
            assert!(p["line"].is_u64() && p["column"].is_u64(), "{bad:?}: {p:#}");
        }
    }
}

#[test]
fn invalid_utf8_raw_bytes_and_lone_surrogates() {
    let n = shared();
    for via in Via::BOTH {
        let reply = n.call(via, "POST", "/norm", &[JSON], &b"{\"a\":\"\xff\"}"[..]);
        let p = assert_problem(&reply, 400, "invalid_utf8");
        assert_eq!(p["offset"], 6);
        for lone in [r#"{"a":"\ud800"}"#, r#"{"a":"\udc00x"}"#, r#"{"\ud83d":1}"#] {
            let reply = n.call(via, "POST", "/norm", &[JSON], lone);
            let p = assert_problem(&reply, 400, "invalid_utf8");
            assert_eq!(p["line"], 1, "{lone}");
        }
        // Text mode requires UTF-8 too.
        let reply = n.call(via, "POST", "/normalize", &[TEXT], &b"ok \xc3\x28"[..]);
        let p = assert_problem(&reply, 400, "invalid_utf8");
        assert_eq!(p["offset"], 3);
    }
}

#[test]
fn duplicate_key_names_the_object() {
    let n = shared();
    for via in Via::BOTH {
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON],
            r#"{"a":{"b":1,"c":2,"b":3}}"#,
        );
        let p = assert_problem(&reply, 400, "duplicate_key");
        assert_eq!(p["pointer"], "/a");
        assert_eq!(p["key"], "b");
        // Equal after unescaping is a duplicate too.
        let reply = n.call(via, "POST", "/validate", &[JSON], r#"{"k":1,"\u006b":2}"#);
        assert_problem(&reply, 400, "duplicate_key");
    }
}

#[test]
fn duplicate_key_echoes_long_names_and_pointers_capped() {
    let n = shared();
    let long = "k".repeat(300_000);
    let capped_key = format!("{}…", "k".repeat(64));
    let capped_pointer = format!("/{}…", "k".repeat(255));
    for via in Via::BOTH {
        // A 300 KB name twice: the problem used to echo it in `key` and in `detail`.
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON],
            format!(r#"{{"{long}":1,"{long}":2}}"#),
        );
        assert!(reply.2.len() < 2048, "problem of {} bytes", reply.2.len());
        let p = assert_problem(&reply, 400, "duplicate_key");
        assert_eq!(p["key"], capped_key.as_str());
        assert_eq!(p["pointer"], "");
        // The same name on the path: the pointer is capped the same way.
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON],
            format!(r#"{{"{long}":{{"a":1,"a":2}}}}"#),
        );
        assert!(reply.2.len() < 2048, "problem of {} bytes", reply.2.len());
        let p = assert_problem(&reply, 400, "duplicate_key");
        assert_eq!(p["key"], "a");
        assert_eq!(p["pointer"], capped_pointer.as_str());
        assert_detail_mentions(&p, &capped_pointer);
        // And for a number that loses precision under such a name.
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON],
            format!(r#"{{"{long}":1e400}}"#),
        );
        assert!(reply.2.len() < 2048, "problem of {} bytes", reply.2.len());
        let p = assert_problem(&reply, 422, "number_precision");
        assert_eq!(p["pointer"], capped_pointer.as_str());
    }
}

#[test]
fn too_deep_is_refused_without_overflowing() {
    let n = shared();
    let nest = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    for via in Via::BOTH {
        let p = assert_problem(
            &n.call(via, "POST", "/norm", &[JSON], nest(200)),
            400,
            "too_deep",
        );
        assert_eq!(p["limit"], 128);
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(300), "}".repeat(300));
        assert_problem(
            &n.call(via, "POST", "/normalize", &[JSON], deep_objects),
            400,
            "too_deep",
        );
        // Far deeper than any stack would take, and unterminated.
        assert_problem(
            &n.call(via, "POST", "/validate", &[JSON], "[".repeat(200_000)),
            400,
            "too_deep",
        );
        // At the limit is fine.
        let (s, _, b) = n.call(via, "POST", "/normalize", &[JSON], nest(128));
        assert_eq!(s, 200);
        assert_eq!(b, nest(128));
    }
    assert_eq!(n.unix("GET", "/livez", &[], "").0, 200);
}

#[test]
fn unknown_profile_schema_and_encoding_list_the_known_names() {
    let n = shared();
    for via in Via::BOTH {
        let p = assert_problem(
            &n.call(via, "POST", "/norm?profile=nope", &[JSON], KNOWN),
            400,
            "unknown_profile",
        );
        assert_eq!(
            p["known"],
            json!(["jcs", "nfc", "orders", "plain", "strict"])
        );
        let p = assert_problem(
            &n.call(via, "POST", "/validate?schema=order.v9", &[JSON], KNOWN),
            400,
            "unknown_schema",
        );
        assert_eq!(p["known"], json!(["address.v1", "order.v1"]));
        let p = assert_problem(
            &n.call(via, "POST", "/norm?encoding=lz4", &[JSON], KNOWN),
            400,
            "unknown_encoding",
        );
        assert_eq!(p["known"], json!(["gzip", "br", "zstd", "identity"]));
        let p = assert_problem(
            &n.call(via, "POST", "/compress?encoding=deflate", &[], "x"),
            400,
            "unknown_encoding",
        );
        assert_detail_mentions(&p, "deflate");
    }
}

#[test]
fn bad_parameters_are_400() {
    let n = shared();
    for via in Via::BOTH {
        for path in [
            "/norm?level=fast",
            "/norm?level=10",
            "/norm?encoding=br&level=12",
            "/norm?encoding=zstd&level=20",
            "/norm?encoding=identity&level=1",
            "/norm?color=blue",
            "/validate?schema=order.v1&strict=1",
            // /compress does not validate.
            "/compress?schema=order.v1",
            // Given twice: neither value silently wins.
            "/norm?encoding=gzip&encoding=br",
            "/validate?schema=order.v1&schema=address.v1",
        ] {
            assert_problem(
                &n.call(via, "POST", path, &[JSON], KNOWN),
                400,
                "bad_parameter",
            );
        }
        let p = assert_problem(
            &n.call(via, "POST", "/norm?level=10", &[JSON], KNOWN),
            400,
            "bad_parameter",
        );
        assert_eq!((p["min"].as_i64(), p["max"].as_i64()), (Some(0), Some(9)));
        // (0 is a spent budget, a 504: tests/edges.rs.)
        for deadline in ["abc", "-5", "1.5", ""] {
            let reply = n.call(
                via,
                "POST",
                "/norm",
                &[JSON, ("x-deadline-ms", deadline)],
                KNOWN,
            );
            let p = assert_problem(&reply, 400, "bad_parameter");
            assert_detail_mentions(&p, "X-Deadline-Ms");
        }
        // Twice, even with the same value.
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON, ("x-deadline-ms", "3000"), ("x-deadline-ms", "3000")],
            KNOWN,
        );
        assert_problem(&reply, 400, "bad_parameter");
        // A good one is fine, and one too large even for 64 bits is capped, not refused.
        for deadline in ["3000", "99999999999999999999999"] {
            let (s, _, _) = n.call(
                via,
                "POST",
                "/norm",
                &[JSON, ("x-deadline-ms", deadline)],
                KNOWN,
            );
            assert_eq!(s, 200, "{deadline}");
        }
    }
}

#[test]
fn corrupt_compressed_bodies_are_bad_content_encoding() {
    let n = shared();
    let gz = gzip(KNOWN.as_bytes());
    let truncated = gz[..gz.len() / 2].to_vec();
    for via in Via::BOTH {
        for (ce, body) in [
            ("gzip", b"this is not gzip at all".to_vec()),
            ("gzip", truncated.clone()),
            ("br", vec![0xff; 64]),
            ("zstd", b"\x28\xb5\x2f\xfd garbage".to_vec()),
            // A complete brotli stream, then bytes brotli's reader would have ignored.
            ("br", [brotli(KNOWN.as_bytes()), b"more".to_vec()].concat()),
            ("br", [brotli(KNOWN.as_bytes()), brotli(b"{}")].concat()),
        ] {
            let reply = n.call(
                via,
                "POST",
                "/norm",
                &[JSON, ("content-encoding", ce)],
                body,
            );
            assert_problem(&reply, 400, "bad_content_encoding");
        }
    }
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let n = shared();
    for via in Via::BOTH {
        for (method, path) in [
            ("GET", "/"),
            ("POST", "/nope"),
            ("GET", "/norm/extra"),
            ("GET", "/NORM"),
        ] {
            let p = assert_problem(&n.call(via, method, path, &[], ""), 404, "not_found");
            assert_detail_mentions(&p, path);
        }
        for (method, path) in [
            ("GET", "/norm"),
            ("PUT", "/normalize"),
            ("GET", "/validate"),
            ("DELETE", "/compress"),
            ("POST", "/livez"),
            ("POST", "/readyz"),
            ("POST", "/metrics"),
            ("PUT", "/flags"),
            ("DELETE", "/schemas"),
        ] {
            assert_problem(
                &n.call(via, method, path, &[], ""),
                405,
                "method_not_allowed",
            );
        }
    }
}

#[test]
fn payload_too_large_with_and_without_content_length() {
    let n = limits();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2048));
    let fits = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    for via in Via::BOTH {
        let p = assert_problem(
            &n.call(via, "POST", "/norm", &[JSON], big.clone()),
            413,
            "payload_too_large",
        );
        assert_eq!(p["limit"], 1024);
        assert_problem(
            &n.call(via, "POST", "/compress", &[], big.clone()),
            413,
            "payload_too_large",
        );
        // Just under the limit passes.
        let (s, _, b) = n.call(
            via,
            "POST",
            "/norm?encoding=identity",
            &[JSON],
            fits.clone(),
        );
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(b, fits);

        // Chunked, no Content-Length: the cap holds while reading.
        let mut req =
            b"POST /norm HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        for chunk in big.as_bytes().chunks(700) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let reply = parse_raw_response(&n.raw(via, &req));
        let p = assert_problem(&reply, 413, "payload_too_large");
        assert_eq!(p["limit"], 1024);

        // A small chunked body is fine.
        let mut req =
            b"POST /normalize HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
Connection: close\r\n\r\n"
                .to_vec();
        for chunk in KNOWN.as_bytes().chunks(10) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let (s, _, b) = parse_raw_response(&n.raw(via, &req));
        assert_eq!(s, 200);
        assert_eq!(b, KNOWN_CANONICAL.as_bytes());
    }
}

#[test]
fn decompression_bombs_are_decoded_too_large_and_memory_stays_flat() {
    // Its own instance: the RSS reading is this test's alone, and seconds of debug-build
    // inflating do not hold a worker other tests (or their self-probe) wait for.
    let n = Normd::start(&RELAXED_DEADLINES);
    // 20 MiB of zeros (+1) in ~130 KB of gzip and ~700 bytes of zstd.
    let len = 1 + 258 * 81_290;
    assert!(len > 20 << 20);
    let gz = gzip_zeros(len);
    let zst = zstd::encode_all(&vec![0u8; len][..], 1).expect("zstd");
    assert!(
        gz.len() < 1 << 20 && zst.len() < 1 << 20,
        "bombs fit the body limit"
    );
    // Inflating 8 MiB takes seconds in a debug build: one gzip bomb (with a budget that
    // cannot run out first), and the zstd one on the other transport.
    for (via, ce, body) in [(Via::Unix, "gzip", &gz), (Via::Tcp, "zstd", &zst)] {
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON, ("content-encoding", ce), ("x-deadline-ms", "10000")],
            body.clone(),
        );
        let p = assert_problem(&reply, 413, "decoded_too_large");
        assert_eq!(p["limit"], 8 << 20, "{ce}");
    }
    let rss = n.rss_bytes().expect("VmRSS");
    assert!(rss < 200 << 20, "normd RSS {rss} bytes after the bombs");
    assert_eq!(n.tcp("GET", "/livez", &[], "").0, 200);
}

#[test]
fn a_body_decoding_to_exactly_the_cap_comes_back_byte_exact() {
    // Decoding keeps 1 MiB, then only counts; a body that ends within the cap is decoded
    // again into an exact-size buffer. This one takes that second pass in every codec.
    let n = shared();
    let limit = 8 << 20;
    let order = fixture("order_4k.json");
    let mut data = Vec::with_capacity(limit + order.len());
    for i in 0.. {
        if data.len() >= limit {
            break;
        }
        data.extend_from_slice(format!("{i} ").as_bytes());
        data.extend_from_slice(&order);
    }
    data.truncate(limit);
    let bodies = [
        ("gzip", gzip(&data)),
        ("br", brotli(&data)),
        ("zstd", zstd::encode_all(&data[..], 1).expect("zstd")),
    ];
    for (ce, body) in bodies {
        assert!(body.len() < 1 << 20, "{ce} fits the body limit");
        let (s, _, b) = n.tcp(
            "POST",
            "/compress?encoding=identity",
            &[("content-encoding", ce), ("x-deadline-ms", "10000")],
            body,
        );
        assert_eq!(
            s,
            200,
            "{ce}: {:?}",
            String::from_utf8_lossy(&b[..b.len().min(300)])
        );
        assert!(
            b == data,
            "{ce}: the decoded body differs from what was sent"
        );
    }
    data.push(b'x');
    let reply = n.tcp(
        "POST",
        "/compress?encoding=identity",
        &[("content-encoding", "gzip"), ("x-deadline-ms", "10000")],
        gzip(&data),
    );
    let p = assert_problem(&reply, 413, "decoded_too_large");
    assert_eq!(p["limit"], limit);
}

#[test]
fn the_handmade_gzip_bomb_is_valid_gzip() {
    let len = 1 + 258 * 40;
    assert_eq!(gunzip(&gzip_zeros(len)), vec![0u8; len]);
}

#[test]
fn unsupported_media_type_and_content_encoding_are_415() {
    let n = shared();
    for via in Via::BOTH {
        for ct in [
            "application/xml",
            "text/html",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            let reply = n.call(via, "POST", "/norm", &[("content-type", ct)], KNOWN);
            assert_problem(&reply, 415, "unsupported_media_type");
        }
        // Text cannot be validated against a schema, and /validate takes JSON only.
        assert_problem(
            &n.call(via, "POST", "/norm?schema=order.v1", &[TEXT], "hi"),
            415,
            "unsupported_media_type",
        );
        assert_problem(
            &n.call(via, "POST", "/validate", &[TEXT], "hi"),
            415,
            "unsupported_media_type",
        );
        for ce in ["compress", "deflate", "gzip, br", "lz4"] {
            let reply = n.call(
                via,
                "POST",
                "/norm",
                &[JSON, ("content-encoding", ce)],
                KNOWN,
            );
            let p = assert_problem(&reply, 415, "unsupported_content_encoding");
            assert_detail_mentions(&p, ce);
        }
        // Two header lines are one list (RFC 9110): refused like "gzip, deflate", not
        // decoded by the first line alone.
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[
                JSON,
                ("content-encoding", "gzip"),
                ("content-encoding", "deflate"),
            ],
            gzip(KNOWN.as_bytes()),
        );
        let p = assert_problem(&reply, 415, "unsupported_content_encoding");
        assert_detail_mentions(&p, "gzip, deflate");
    }
}

#[test]
fn schema_violation_lists_capped_errors() {
    let n = shared();
    let many = r#"{"a":1,"b":2,"c":3}"#;
    for via in Via::BOTH {
        let reply = n.call(
            via,
            "POST",
            "/norm?schema=order.v1",
            &[JSON],
            fixture("order_invalid.json"),
        );
        let p = assert_problem(&reply, 422, "schema_violation");
        assert_eq!(p["schema"], "order.v1");
        let errors = p["errors"].as_array().expect("errors");
        assert!(
            errors.iter().any(|e| e["instance_path"] == "/order/status"),
            "{p:#}"
        );
        for e in errors {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        let p = assert_problem(
            &n.call(via, "POST", "/norm?schema=order.v1", &[JSON], many),
            422,
            "schema_violation",
        );
        let count = p["errors"].as_array().expect("errors").len();
        assert!(
            count > 2 && count <= 20,
            "default cap 20, this document has 7: {p:#}"
        );
    }
    // --max-errors 2
    let m = limits();
    for via in Via::BOTH {
        let p = assert_problem(
            &m.call(via, "POST", "/norm?schema=order.v1", &[JSON], many),
            422,
            "schema_violation",
        );
        assert_eq!(p["errors"].as_array().expect("errors").len(), 2, "{p:#}");
        let (s, _, b) = m.call(via, "POST", "/validate?schema=order.v1", &[JSON], many);
        assert_eq!(s, 200);
        let v = json(&b);
        assert_schema("validate", &v);
        assert_eq!(v["errors"].as_array().expect("errors").len(), 2);
    }
}

#[test]
fn number_precision_names_the_pointer() {
    let n = shared();
    for via in Via::BOTH {
        let p = assert_problem(
            &n.call(via, "POST", "/norm", &[JSON], r#"{"id":9007199254740993}"#),
            422,
            "number_precision",
        );
        assert_eq!(p["pointer"], "/id");
        assert_eq!(p["input"], "9007199254740993");
        assert_eq!(p["canonical"], "9007199254740992");
        let p = assert_problem(
            &n.call(
                via,
                "POST",
                "/validate",
                &[JSON],
                r#"{"a":[1,{"b~/":-12345678901234567890}]}"#,
            ),
            422,
            "number_precision",
        );
        assert_eq!(p["pointer"], "/a/1/b~0~1");
        let p = assert_problem(
            &n.call(via, "POST", "/normalize", &[JSON], "[1e400]"),
            422,
            "number_precision",
        );
        assert_eq!(p["pointer"], "/0");
        // No canonical form exists: the member is left out, not sent empty.
        assert!(p.get("canonical").is_none(), "{p:#}");
        // Same value, other spelling: passes.
        for (input, canonical) in [
            (r#"{"x":1E30}"#, r#"{"x":1e+30}"#),
            (r#"{"id":9007199254740992}"#, r#"{"id":9007199254740992}"#),
            (r#"{"x":0.30000000000000000001}"#, r#"{"x":0.3}"#),
            (r#"[10000000000000000000000]"#, r#"[1e+22]"#),
        ] {
            let (s, _, b) = n.call(via, "POST", "/norm?encoding=identity", &[JSON], input);
            assert_eq!(s, 200, "{input}: {b:?}");
            assert_eq!(b, canonical, "{input}");
        }
    }
}

#[test]
fn underflow_to_zero_is_out_of_range_except_under_jcs() {
    let n = shared();
    for via in Via::BOTH {
        for profile in ["", "?profile=strict"] {
            let p = assert_problem(
                &n.call(
                    via,
                    "POST",
                    &format!("/normalize{profile}"),
                    &[JSON],
                    r#"{"x":[1e-400]}"#,
                ),
                422,
                "number_precision",
            );
            assert_eq!(p["pointer"], "/x/0", "{profile}");
            assert_eq!(p["input"], "1e-400", "{profile}");
            assert_eq!(p["canonical"], "0", "{profile}");
        }
        // Pure RFC 8785 rounds it to 0.
        let (s, _, b) = n.call(
            via,
            "POST",
            "/norm?profile=jcs",
            &[JSON],
            "[1e-400,-2e-324]",
        );
        assert_eq!((s.as_u16(), &b[..]), (200, &b"[0,0]"[..]));
        // Beyond the largest double: refused under every policy, with no canonical.
        for profile in ["", "?profile=strict", "?profile=jcs"] {
            let p = assert_problem(
                &n.call(
                    via,
                    "POST",
                    &format!("/normalize{profile}"),
                    &[JSON],
                    "[-1e400]",
                ),
                422,
                "number_precision",
            );
            assert!(p.get("canonical").is_none(), "{profile}: {p:#}");
        }
        // Literals that are zero stay 0 everywhere.
        for profile in ["?encoding=identity", "?profile=strict", "?profile=jcs"] {
            let (s, _, b) = n.call(
                via,
                "POST",
                &format!("/norm{profile}"),
                &[JSON],
                "[0,-0,0e-400,0.000,-0.0E+400]",
            );
            assert_eq!(s, 200, "{profile}: {b:?}");
            assert_eq!(b, "[0,0,0,0,0]", "{profile}");
        }
    }
}

#[test]
fn a_panic_answers_500_internal_and_the_next_request_succeeds() {
    let n = shared();
    for via in Via::BOTH {
        let reply = n.call(
            via,
            "POST",
            "/norm",
            &[JSON, ("x-normd-debug-panic", "1")],
            KNOWN,
        );
        let p = assert_problem(&reply, 500, "internal");
        // The body says nothing internal.
        assert!(
            !p["detail"].as_str().unwrap_or("").contains("panic"),
            "{p:#}"
        );
        let reply = n.call(via, "POST", "/norm", &[JSON], KNOWN);
        check_norm_reply(&reply, KNOWN.len(), "gzip", KNOWN_CANONICAL.as_bytes());
    }
    // The panic is logged as one JSON line, and no plain-text panic message or
    // backtrace lands in the JSON log stream.
    let logged = n.wait_for_log(Duration::from_secs(5), |v| {
        v["msg"] == "panic" && v["level"] == "error"
    });
    let logged = logged.expect("a JSON `panic` log line");
    assert_eq!(logged["panic"], "panic requested by x-normd-debug-panic");
    assert!(logged["location"]
        .as_str()
        .unwrap_or("")
        .contains("src/api/job.rs"));
    for line in n.logs() {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line}"
        );
    }
    // Without NORMD_DEBUG_PANIC=1 the header does nothing.
    let m = limits();
    let (s, _, _) = m.unix(
        "POST",
        "/norm",
        &[JSON, ("x-normd-debug-panic", "1")],
        KNOWN,
    );
    assert_eq!(s, 200);
}

// ---------------------------------------------------------------------------------
// Schemas are never fetched; `normd check`

/// A schemas dir with the repo's schemas plus `remote.v1.json` whose `$ref` points at
/// `url`.
fn schemas_dir_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["order.v1.json", "address.v1.json"] {
        std::fs::copy(repo_path("schemas").join(name), dir.path().join(name)).expect("copy schema");
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).expect("write schema");
    }
    dir
}

#[test]
fn a_remote_ref_is_never_retrieved() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let remote = format!(r#"{{"$ref": "http://127.0.0.1:{port}/remote.json"}}"#);
    let nested = format!(
        r#"{{"type": "object", "properties": {{"a": {{"$ref": "http://127.0.0.1:{port}/defs.json#/x"}}}}}}"#
    );
    for (name, text) in [("remote.v1.json", &remote), ("nested.v1.json", &nested)] {
        let dir = schemas_dir_with(&[(name, text)]);
        let schemas = dir.path().to_str().expect("utf-8").to_owned();
        let (status, _, stderr) =
            run_normd(&["check", "--schemas", &schemas], Duration::from_secs(20));
        assert!(!status.success(), "check must fail: {stderr}");
        assert!(stderr.contains(name), "stderr must name {name}: {stderr}");
        assert!(
            stderr.contains("never retrieves"),
            "stderr must say it is not retrieved: {stderr}"
        );
        assert!(
            !stderr.contains("order.v1.json"),
            "only the culprit is named: {stderr}"
        );

        let failure = start_failure(&["--schemas", &schemas]);
        let status = failure.status.expect("exit status");
        assert!(!status.success());
        assert!(failure.stderr.contains(name), "{}", failure.stderr);
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("normd connected to the remote $ref host (from {peer})"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn check_accepts_the_repo_config() {
    let schemas = repo_path("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    let (status, stdout, stderr) =
        run_normd(&["check", "--schemas", schemas], Duration::from_secs(20));
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("schemas: 2 loaded"), "{stdout}");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("normd.toml");
    std::fs::write(&config, PROFILES).expect("config");
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, r#"{"norm":{"enabled":false}}"#).expect("flags");
    let (status, stdout, stderr) = run_normd(
        &[
            "check",
            "--schemas",
            schemas,
            "--config",
            config.to_str().expect("utf-8"),
            "--flags",
            flags.to_str().expect("utf-8"),
        ],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    let profiles = format!("profiles: {}", PROFILES.matches("[profiles.").count());
    assert!(stdout.contains(&profiles), "{stdout}");
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn check_names_what_is_broken() {
    let schemas = repo_path("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let run = |args: &[&str]| {
        let (status, stdout, stderr) = run_normd(args, Duration::from_secs(20));
        assert!(!status.success(), "{args:?} must fail:\n{stdout}\n{stderr}");
        stderr
    };

    // A broken schema file.
    let broken = schemas_dir_with(&[("broken.v1.json", "{\"type\": ")]);
    let err = run(&["check", "--schemas", broken.path().to_str().expect("utf-8")]);
    assert!(
        err.contains("broken.v1.json") && err.contains("not valid JSON"),
        "{err}"
    );
    // A schema that is JSON but not a schema.
    let bad = schemas_dir_with(&[("bad.v1.json", r#"{"type": "no-such-type"}"#)]);
    let err = run(&["check", "--schemas", bad.path().to_str().expect("utf-8")]);
    assert!(err.contains("bad.v1.json"), "{err}");
    // No schemas at all: serve would start not ready.
    let empty = tempfile::tempdir().expect("tempdir");
    let err = run(&["check", "--schemas", empty.path().to_str().expect("utf-8")]);
    assert!(
        err.contains("no *.json") && err.contains("not be ready"),
        "{err}"
    );

    // An invalid flags file.
    std::fs::write(p("flags.json"), r#"{"norm": {"enabled": "yes"}}"#).expect("flags");
    let err = run(&["check", "--schemas", schemas, "--flags", &p("flags.json")]);
    assert!(err.contains(&p("flags.json")), "{err}");
    std::fs::write(p("typo.json"), r#"{"nrom": {"enabled": false}}"#).expect("flags");
    let err = run(&["check", "--schemas", schemas, "--flags", &p("typo.json")]);
    assert!(
        err.contains("nrom") && err.contains(&p("typo.json")),
        "{err}"
    );

    // An empty flags file (JSON or YAML) is not "no flags".
    for name in ["empty.json", "empty.yaml"] {
        std::fs::write(p(name), "\n").expect("flags");
        let err = run(&["check", "--schemas", schemas, "--flags", &p(name)]);
        assert!(
            err.contains(&p(name)) && err.contains("empty; write {} for the defaults"),
            "{err}"
        );
    }

    // A bad config value.
    let err = run(&["check", "--schemas", schemas, "--socket-mode", "999"]);
    assert!(
        err.contains("--socket-mode") && err.contains("999"),
        "{err}"
    );
    let err = run(&["check", "--schemas", schemas, "--max-body-bytes", "lots"]);
    assert!(err.contains("--max-body-bytes"), "{err}");

    // A profile naming an unknown schema.
    std::fs::write(p("c.toml"), "[profiles.bad]\nschema = \"nope.v9\"\n").expect("config");
    let err = run(&["check", "--schemas", schemas, "--config", &p("c.toml")]);
    assert!(err.contains("\"bad\"") && err.contains("nope.v9"), "{err}");
    // Every problem in one run: a bad setting does not hide a bad flags file, a broken
    // schema or a profile's unknown schema, nor does a profile's other error.
    std::fs::write(
        p("all.toml"),
        "[profiles.worse]\nschema = \"nope.v9\"\nencoding = \"lz4\"\n",
    )
    .expect("config");
    let err = run(&[
        "check",
        "--schemas",
        broken.path().to_str().expect("utf-8"),
        "--flags",
        &p("typo.json"),
        "--config",
        &p("all.toml"),
        "--max-depth",
        "0",
    ]);
    for needle in ["--max-depth 0", "lz4", "broken.v1.json", "nrom"] {
        assert!(err.contains(needle), "{needle:?} in:\n{err}");
    }
    let err = run(&["check", "--schemas", schemas, "--config", &p("all.toml")]);
    assert!(err.contains("lz4") && err.contains("nope.v9"), "{err}");
    // An unknown key in the config file.
    std::fs::write(p("k.toml"), "max_bodybytes = 1\n").expect("config");
    let err = run(&["check", "--schemas", schemas, "--config", &p("k.toml")]);
    assert!(
        err.contains(&p("k.toml")) && err.contains("max_bodybytes"),
        "{err}"
    );
}

/// A socket group that serve would refuse fails `normd check` with the same message.
#[test]
fn check_and_serve_refuse_an_unknown_socket_group_alike() {
    let schemas = repo_path("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    let expected = "--socket-group nosuchgroupxyz: no such group in /etc/group";
    let (status, stdout, stderr) = run_normd(
        &[
            "check",
            "--schemas",
            schemas,
            "--socket-group",
            "nosuchgroupxyz",
        ],
        Duration::from_secs(20),
    );
    assert!(!status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    let failure = start_failure(&["--socket-group", "nosuchgroupxyz"]);
    assert!(!failure.status.expect("status").success());
    assert!(failure.stderr.contains(expected), "{}", failure.stderr);

    // A gid, and a name /etc/group has, pass.
    for group in ["0", "root"] {
        let (status, stdout, stderr) = run_normd(
            &["check", "--schemas", schemas, "--socket-group", group],
            Duration::from_secs(20),
        );
        assert!(status.success(), "{group}: {stdout}\n{stderr}");
        assert!(stdout.contains("(gid 0)"), "{stdout}");
    }
}

// ---------------------------------------------------------------------------------
// Listeners and the socket file

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("socket metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn socket_mode_is_0660_by_default_and_configurable() {
    use std::os::unix::fs::FileTypeExt;
    let n = shared();
    let meta = std::fs::metadata(n.socket_path()).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(mode_of(n.socket_path()), 0o660);

    let m = Normd::start(&["--socket-mode", "0600"]);
    assert_eq!(mode_of(m.socket_path()), 0o600);
    assert_eq!(m.unix("GET", "/livez", &[], "").0, 200);

    // A mode without owner read+write (a socket only root could use), or with bits beyond
    // 0777, is refused by check and serve alike, before anything is bound.
    let schemas = repo_path("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    for (mode, says) in [
        ("0", "owner needs read and write"),
        ("0066", "owner needs read and write"),
        ("1777", "at most 0777"),
    ] {
        let (status, stdout, stderr) = run_normd(
            &["check", "--schemas", schemas, "--socket-mode", mode],
            Duration::from_secs(20),
        );
        assert!(!status.success(), "check --socket-mode {mode}: {stdout}");
        assert!(stderr.contains(says), "{stderr}");
        let failure = start_failure(&["--socket-mode", mode]);
        assert_eq!(
            failure.status.and_then(|s| s.code()),
            Some(64),
            "{}",
            failure.stderr
        );
        assert!(failure.stderr.contains(says), "{}", failure.stderr);
    }
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("normd.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists(), "the stale file remains");
    let n = Normd::builder().dir(dir).start();
    assert_eq!(n.socket_path(), path);
    assert_eq!(n.unix("GET", "/livez", &[], "").0, 200);
    assert!(
        n.log_json()
            .iter()
            .any(|l| l["msg"].as_str().is_some_and(|m| m.contains("stale"))),
        "the replacement is logged: {:#?}",
        n.logs()
    );
}

#[test]
fn a_live_socket_is_never_stolen() {
    let n = shared();
    let socket = n.socket_path().to_str().expect("utf-8").to_owned();
    let failure = start_failure(&["--socket", &socket]);
    let status = failure.status.expect("exit status");
    assert!(!status.success());
    assert!(
        failure.stderr.contains("already running"),
        "{}",
        failure.stderr
    );
    // The first one keeps serving on its socket.
    assert!(n.socket_path().exists());
    let reply = n.unix("POST", "/norm", &[JSON], KNOWN);
    check_norm_reply(&reply, KNOWN.len(), "gzip", KNOWN_CANONICAL.as_bytes());
}

/// A start that fails after the socket is bound (the TCP port is taken) removes the
/// socket file it created: no file without an owner for the next start to puzzle over.
#[test]
fn a_failed_start_after_binding_the_socket_removes_it() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("normd.sock");
    let socket_arg = socket.to_str().expect("utf-8");
    for taken in [
        ["--listen", port.as_str()],
        ["--metrics-listen", port.as_str()],
    ] {
        let failure = start_failure(&[&["--socket", socket_arg][..], &taken].concat());
        assert!(!failure.status.expect("status").success());
        assert!(
            failure.stderr.contains("already in use") && failure.stderr.contains(taken[0]),
            "{}",
            failure.stderr
        );
        assert!(
            !socket.exists(),
            "{taken:?}: the socket file was left behind"
        );
    }
    // The path is free for the next start.
    let n = Normd::start(&["--socket", socket_arg]);
    assert_eq!(n.unix("GET", "/livez", &[], "").0, 200);
}

#[test]
fn non_loopback_tcp_needs_allow_non_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("normd.sock");
    let socket = socket.to_str().expect("utf-8");
    let schemas = repo_path("schemas");
    let schemas = schemas.to_str().expect("utf-8");
    let (status, _, stderr) = run_normd(
        &[
            "serve",
            "--socket",
            socket,
            "--schemas",
            schemas,
            "--listen",
            "0.0.0.0:0",
        ],
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("loopback") && stderr.contains("--allow-non-loopback"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(socket).exists(), "nothing was bound");

    // The env twin takes the usual spellings of a boolean; a typo is an error, not "on".
    let check = |value: &str| {
        run_normd_with(
            &["check", "--schemas", schemas, "--listen", "0.0.0.0:8081"],
            None,
            &[("NORMD_ALLOW_NON_LOOPBACK", value)],
            Duration::from_secs(20),
        )
    };
    for yes in ["1", "true", "yes", "on", "TRUE", "Yes"] {
        let (status, stdout, stderr) = check(yes);
        assert!(status.success(), "{yes}: {stdout}\n{stderr}");
    }
    for no in ["0", "false", "no", "off"] {
        let (status, _, stderr) = check(no);
        assert_eq!(status.code(), Some(1), "{no}: {stderr}");
        assert!(stderr.contains("--allow-non-loopback"), "{no}: {stderr}");
    }
    let (status, _, stderr) = check("maybe");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("maybe"), "{stderr}");
    let config = tempfile::NamedTempFile::with_suffix(".toml").expect("tempfile");
    std::fs::write(config.path(), "allow_non_loopback = true\n").expect("config");
    let config_path = config.path().to_str().expect("utf-8");
    let args = [
        "check",
        "--schemas",
        schemas,
        "--listen",
        "0.0.0.0:8081",
        "--config",
        config_path,
    ];
    let (status, stdout, stderr) = run_normd(&args, Duration::from_secs(20));
    assert!(status.success(), "config file: {stdout}\n{stderr}");
    // Flags win over env, env over the file: an explicit "no" beats the file's "yes".
    for no in ["0", "false", "off"] {
        let (status, _, stderr) = run_normd_with(
            &args,
            None,
            &[("NORMD_ALLOW_NON_LOOPBACK", no)],
            Duration::from_secs(20),
        );
        assert_eq!(status.code(), Some(1), "env {no} over the file: {stderr}");
    }
    let (status, _, stderr) = run_normd(
        &[&args[..], &["--allow-non-loopback=false"]].concat(),
        Duration::from_secs(20),
    );
    assert_eq!(
        status.code(),
        Some(1),
        "flag =false over the file: {stderr}"
    );
    let (status, stdout, stderr) = run_normd_with(
        &[&args[..], &["--allow-non-loopback"]].concat(),
        None,
        &[("NORMD_ALLOW_NON_LOOPBACK", "0")],
        Duration::from_secs(20),
    );
    assert!(status.success(), "flag over env: {stdout}\n{stderr}");

    let n = Normd::builder()
        .args(&["--listen", "0.0.0.0:0"])
        .env("NORMD_ALLOW_NON_LOOPBACK", "1")
        .start();
    assert!(!n.tcp_addr().ip().is_loopback());
    drop(n);
    let n = Normd::start(&["--listen", "0.0.0.0:0", "--allow-non-loopback"]);
    let port = n.tcp_addr().port();
    let (s, _, _) = rt()
        .block_on(tcp_async(
            ([127, 0, 0, 1], port).into(),
            "GET",
            "/livez",
            &[],
            "",
        ))
        .expect("tcp");
    assert_eq!(s, 200);
}

#[test]
fn either_listener_can_be_turned_off() {
    let n = Normd::builder()
        .args(&RELAXED_DEADLINES)
        .args(&["--socket", ""])
        .start();
    assert!(n.socket.is_none());
    assert!(!n.dir.path().join("normd.sock").exists());
    assert_eq!(n.tcp("GET", "/livez", &[], "").0, 200);
    let reply = n.tcp("POST", "/norm", &[JSON], KNOWN);
    check_norm_reply(&reply, KNOWN.len(), "gzip", KNOWN_CANONICAL.as_bytes());
    let (s, _, b) = n.tcp("GET", "/readyz", &[], "");
    assert_eq!(s, 200, "{b:?}");

    let m = Normd::builder()
        .args(&RELAXED_DEADLINES)
        .args(&["--listen", ""])
        .start();
    assert!(m.tcp.is_none());
    assert!(m.socket_path().exists());
    let reply = m.unix("POST", "/norm", &[JSON], KNOWN);
    check_norm_reply(&reply, KNOWN.len(), "gzip", KNOWN_CANONICAL.as_bytes());
    let (s, _, b) = m.unix("GET", "/readyz", &[], "");
    assert_eq!(s, 200, "{b:?}");

    // Both off is a configuration error.
    let failure = start_failure(&["--socket", "", "--listen", ""]);
    assert!(!failure.status.expect("status").success());
    assert!(
        failure.stderr.contains("nothing to serve"),
        "{}",
        failure.stderr
    );
}
