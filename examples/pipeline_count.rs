//! The pure `/norm` pipeline run N times in-process, for counting instructions per call.
//!
//! `loadtest/callgrind.py` runs this under `valgrind --tool=callgrind` twice (say
//! `--count 200` and `--count 1200`) and takes the difference ÷ 1000: start-up, reading
//! the payloads and compiling the schemas are the same in both runs and cancel out, so
//! what is left is one call of the pipeline, the same one a default
//! `POST /norm?schema=order.v1` runs on its worker (numbers `safe`, no string rules,
//! `order.v1`, gzip level 1, at most 20 violations).
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
//!   cargo build --release --locked --example pipeline_count --target-dir /tmp/normd-sym
//! /tmp/normd-sym/release/examples/pipeline_count --count 1000 \
//!   --payloads ../shared/bench/payloads/4k
//! ```
//!
//! Uses only what `benches/pipeline.rs` uses of the library. Prints the calls, the
//! payload count and a checksum of every output (so nothing is optimized away).

#[path = "support/payloads.rs"]
mod payloads;

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;

use normd::pipeline::{self, NeverStop, Plan, SchemaSet};

// The allocator the normd binary uses (src/main.rs), as in benches/pipeline.rs: the
// count must compare like with like against the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the pure `/norm` pipeline N times over a payload directory.
#[derive(clap::Parser)]
struct Args {
    /// Pipeline calls to run (over the payloads in turn).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Directory of `*.json` payloads [default: ../shared/bench/payloads/4k].
    #[arg(long, env = "NORMD_BENCH_PAYLOADS")]
    payloads: Option<PathBuf>,
    /// Schema every payload is validated against.
    #[arg(long, default_value = "order.v1")]
    schema: String,
}

fn main() -> ExitCode {
    let Args {
        count,
        payloads: dir,
        schema: schema_name,
    } = clap::Parser::parse();
    let dir = dir.unwrap_or_else(payloads::default_dir);
    let docs = match payloads::load(&dir) {
        Ok(docs) => docs,
        Err(e) => {
            eprintln!("pipeline_count: {e}");
            return ExitCode::FAILURE;
        }
    };

    // The schemas compiled into the library (the repository's schemas/, the same files
    // `normd serve --schemas schemas` loads), as in benches/pipeline.rs.
    let schemas = match SchemaSet::embedded() {
        Ok(s) => s,
        Err(errs) => {
            for e in errs {
                eprintln!("pipeline_count: schema {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let Some(schema) = schemas.get(&schema_name) else {
        eprintln!(
            "pipeline_count: no schema {schema_name:?} (known: {})",
            schemas.names().join(", ")
        );
        return ExitCode::FAILURE;
    };
    // What `POST /norm?schema=order.v1` resolves with no profile: the default plan
    // (JSON mode, numbers safe, max depth 128, no string rules, gzip level 1, 20 errors)
    // plus the schema.
    let plan = Plan {
        schema: Some(schema.clone()),
        ..Plan::default()
    };

    let mut checksum: u64 = 0;
    let mut out_bytes: u64 = 0;
    for i in 0..count {
        let doc = &docs[i % docs.len()];
        let out = match pipeline::norm(black_box(doc), &plan, &NeverStop) {
            Ok(out) => out,
            Err(e) => {
                eprintln!(
                    "pipeline_count: payload {} (in name order) of {} failed: {e:?}",
                    i % docs.len(),
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
        };
        let out = black_box(out);
        out_bytes += out.body.len() as u64;
        let mut d = [0u8; 8];
        d.copy_from_slice(&out.digest[..8]);
        checksum = checksum.rotate_left(7)
            ^ u64::from_le_bytes(d)
            ^ (out.canonical_bytes as u64)
            ^ ((out.body.len() as u64) << 32);
    }
    println!(
        "calls={count} payloads={} out_bytes={out_bytes} checksum={checksum:016x}",
        docs.len()
    );
    ExitCode::SUCCESS
}
