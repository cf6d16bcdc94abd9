//! Anchor for issue #16: normd's job done in-process by a naive Rust loop, no HTTP
//! (serde_json `Value` + jsonschema + flate2/zlib-rs gzip + SHA-256), timed in CPU per call.
//!
//! What one call does, the way an app that never heard of normd would write it:
//!
//! 1. `serde_json::from_slice::<Value>` of the body;
//! 2. normalize: recursively replace every string value by its trimmed copy (one new
//!    `String` per string, as the one-liner does); keys come out sorted because
//!    serde_json's default `Map` is a `BTreeMap` (this crate graph does not turn on
//!    `preserve_order`);
//! 3. validate against `order.v1` with a validator compiled **once**, before the loop,
//!    with `address.v1` (its `$ref`) registered under its `$id`, as
//!    `src/pipeline/validate.rs` registers the schemas dir;
//! 4. `serde_json::to_vec` (compact);
//! 5. gzip at level 1 (normd's default gzip level, `src/pipeline/codec.rs`) with a **new**
//!    `flate2::write::GzEncoder` per call (normd keeps one deflate context per worker);
//! 6. SHA-256 (sha2) of the serialized bytes: normd's answer carries that digest
//!    (`X-Normd-Digest`, of the canonical bytes), so the anchor pays for it too.
//!
//! Every file of `--payloads` in turn (sorted by name); one pass over the set first as a
//! warm-up (`--warmup N` to change), then `--count N` timed calls. The system allocator (a
//! naive app's), not normd's mimalloc. Prints one JSON object: calls, CPU seconds (user +
//! system from `/proc/self/stat`, on-CPU from `/proc/self/task/*/schedstat`), µs per call.
//!
//! ```sh
//! cargo build --release --example naive_loop
//! taskset -c 0 target/release/examples/naive_loop --payloads ../shared/bench/payloads/4k \
//!   --schemas schemas --count 20000
//! ```
//! `loadtest/anchors.py` runs it beside normd and the Node loop (loadtest/README.md).

#![deny(unsafe_code)]

#[path = "support/payloads.rs"]
mod payloads;

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use jsonschema::{Registry, Validator};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// normd's default gzip level (`Encoding::Gzip.default_level()` in src/pipeline/codec.rs).
const GZIP_LEVEL: u32 = 1;

/// The naive normalization: trimmed strings, recursively. Object keys are left alone
/// (normd trims values, not names); the `BTreeMap` already keeps them sorted.
fn normalize(v: &mut Value) {
    match v {
        Value::String(s) => *s = s.trim().to_string(),
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(map) => map.values_mut().for_each(normalize),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// One call: parse, normalize, validate, serialize, gzip (fresh encoder), SHA-256.
fn job(body: &[u8], validator: &Validator) -> Result<(Vec<u8>, [u8; 32]), String> {
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    normalize(&mut doc);
    if let Err(e) = validator.validate(&doc) {
        return Err(format!("schema violation at {}: {e}", e.instance_path()));
    }
    let json = serde_json::to_vec(&doc).map_err(|e| format!("serialize: {e}"))?;
    let mut gz = GzEncoder::new(
        Vec::with_capacity(json.len() / 2 + 64),
        Compression::new(GZIP_LEVEL),
    );
    gz.write_all(&json).map_err(|e| format!("gzip: {e}"))?;
    let body = gz.finish().map_err(|e| format!("gzip: {e}"))?;
    let digest: [u8; 32] = Sha256::digest(&json).into();
    Ok((body, digest))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// Compiles `<schemas>/<name>.json` with every other `*.json` of the dir registered under
/// its `$id` (order.v1's `"$ref": "address.v1.json"` resolves against order.v1's `$id`).
/// No retrieval: jsonschema is built without its HTTP and file resolvers.
fn compile(schemas: &Path, name: &str) -> Result<Validator, String> {
    let main_path = schemas.join(format!("{name}.json"));
    let main = read_json(&main_path)?;
    let rd = std::fs::read_dir(schemas).map_err(|e| format!("{}: {e}", schemas.display()))?;
    let mut others = Vec::new();
    for entry in rd {
        let path = entry
            .map_err(|e| format!("{}: {e}", schemas.display()))?
            .path();
        if path == main_path || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let doc = read_json(&path)?;
        if let Some(id) = doc.get("$id").and_then(Value::as_str) {
            others.push((id.to_owned(), doc.clone()));
        }
    }
    let registry = Registry::new()
        .extend(others)
        .and_then(|b| b.prepare())
        .map_err(|e| format!("{}: cannot resolve references: {e}", schemas.display()))?;
    jsonschema::options()
        .with_registry(&registry)
        .build(&main)
        .map_err(|e| format!("{}: invalid schema: {e}", main_path.display()))
}

/// CPU time of this process so far: (user + system seconds from /proc/self/stat,
/// on-CPU seconds summed over /proc/self/task/*/schedstat).
fn cpu_now(tick: f64) -> Result<(f64, f64, f64), String> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // Fields after the ")" that closes comm: state is field 3; utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("/proc/self/stat: no comm")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        f.get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .map(|v| v as f64 * tick)
            .ok_or_else(|| format!("/proc/self/stat: field {}", i + 3))
    };
    let (user, system) = (ticks(11)?, ticks(12)?);
    let mut oncpu_ns: u64 = 0;
    let tasks =
        std::fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
    for t in tasks.flatten() {
        // A thread may end between the listing and the read; this program has one.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            oncpu_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok((user, system, oncpu_ns as f64 / 1e9))
}

/// Seconds per clock tick, from the ELF auxiliary vector's AT_CLKTCK (what
/// `sysconf(_SC_CLK_TCK)` returns) without libc; 1/100 if it cannot be read.
fn clock_tick() -> f64 {
    const AT_CLKTCK: u64 = 17;
    if let Ok(aux) = std::fs::read("/proc/self/auxv") {
        for pair in aux.chunks_exact(16) {
            let mut k = [0u8; 8];
            let mut v = [0u8; 8];
            k.copy_from_slice(&pair[..8]);
            v.copy_from_slice(&pair[8..]);
            let (k, v) = (u64::from_ne_bytes(k), u64::from_ne_bytes(v));
            if k == AT_CLKTCK && v > 0 {
                return 1.0 / v as f64;
            }
            if k == 0 {
                break;
            }
        }
    }
    0.01
}

/// The naive in-process job, N calls over a payload directory.
#[derive(clap::Parser)]
struct Args {
    /// Calls to measure (over the payloads in turn).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Calls before the measured ones [default: one pass over the payloads].
    #[arg(long)]
    warmup: Option<usize>,
    /// Directory of `*.json` payloads [default: ../shared/bench/payloads/4k].
    #[arg(long)]
    payloads: Option<PathBuf>,
    /// Directory of JSON Schemas (the repository's schemas/).
    #[arg(long)]
    schemas: PathBuf,
    /// Schema every payload is validated against.
    #[arg(long, default_value = "order.v1")]
    schema: String,
}

fn main() -> ExitCode {
    let Args {
        count,
        warmup,
        payloads: dir,
        schemas,
        schema: schema_name,
    } = clap::Parser::parse();
    let dir = dir.unwrap_or_else(payloads::default_dir);
    match run(&dir, &schemas, &schema_name, count, warmup) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naive_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    dir: &Path,
    schemas: &Path,
    schema_name: &str,
    count: usize,
    warmup: Option<usize>,
) -> Result<(), String> {
    let docs = payloads::load(dir)?;
    let validator = compile(schemas, schema_name)?;
    let tick = clock_tick();

    // One call on payload i mod n: the output's length and the digest's first 8 bytes.
    let call = |i: usize| -> Result<(u64, u64), String> {
        let k = i % docs.len();
        let (body, digest) = job(black_box(&docs[k]), &validator)
            .map_err(|e| format!("payload {k} (in name order) of {}: {e}", dir.display()))?;
        let body = black_box(body);
        let mut d = [0u8; 8];
        d.copy_from_slice(&digest[..8]);
        Ok((body.len() as u64, u64::from_le_bytes(d)))
    };
    let warmup = warmup.unwrap_or(docs.len());
    for i in 0..warmup {
        call(i)?;
    }
    let mut checksum: u64 = 0;
    let mut out_bytes: u64 = 0;
    let (u0, s0, c0) = cpu_now(tick)?;
    let t0 = Instant::now();
    for i in 0..count {
        let (len, d) = call(warmup + i)?;
        out_bytes += len;
        checksum = checksum.rotate_left(7) ^ d ^ len;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (u1, s1, c1) = cpu_now(tick)?;
    let (user, system, oncpu) = (u1 - u0, s1 - s0, c1 - c0);
    let per = |s: f64| {
        if count > 0 {
            s * 1e6 / count as f64
        } else {
            0.0
        }
    };
    let out = serde_json::json!({
        "anchor": "naive_loop",
        "job": "serde_json Value parse, trim strings (sorted keys: BTreeMap), jsonschema order.v1, \
                serde_json::to_vec, gzip level 1 (new GzEncoder per call, flate2 + zlib-rs), SHA-256 of the JSON",
        "payloads": docs.len(),
        "payload_dir": dir.display().to_string(),
        "mean_bytes": docs.iter().map(Vec::len).sum::<usize>() / docs.len(),
        "warmup_calls": warmup,
        "calls": count,
        "wall_s": wall,
        "cpu_s": user + system,
        "user_s": user,
        "system_s": system,
        "oncpu_s": oncpu,
        "cpu_us_per_call": per(user + system),
        "oncpu_us_per_call": per(oncpu),
        "clock_tick_s": tick,
        "out_bytes_per_call": if count > 0 { out_bytes as f64 / count as f64 } else { 0.0 },
        "checksum": format!("{checksum:016x}"),
    });
    println!("{out}");
    Ok(())
}
