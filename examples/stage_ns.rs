//! Native nanoseconds per call of each `/norm` stage on the shared payloads, without
//! valgrind: SHA-256 runs on the CPU's own extensions here (sha2 detects them at run
//! time), which callgrind's virtual CPU hides.
//!
//! ```sh
//! cargo build --release --locked --example stage_ns --target-dir /tmp/normd-perf
//! taskset -c 0 /tmp/normd-perf/release/examples/stage_ns --payloads ../shared/bench/payloads/4k
//! ```
//!
//! Each stage runs over the whole payload set `--rounds` times (7); the figure is the
//! fastest round's mean per document, the least disturbed by other work on the machine.

#[path = "support/payloads.rs"]
mod payloads;

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use normd::pipeline::{self, canonical, codec, Encoding, NeverStop, Plan, SchemaSet};
use sha2::{Digest, Sha256};

// The allocator the normd binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Native ns per document of each `/norm` stage.
#[derive(clap::Parser)]
struct Args {
    /// Directory of `*.json` payloads [default: ../shared/bench/payloads/4k].
    #[arg(long)]
    payloads: Option<PathBuf>,
    /// Rounds per stage; the fastest is reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Passes over the payload set per round.
    #[arg(long, default_value_t = 20)]
    passes: usize,
}

/// Fastest round's ns per document of `f` over `docs`, each round `passes` times the set.
fn time<T, R>(docs: &[T], rounds: usize, passes: usize, mut f: impl FnMut(&T) -> R) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..passes {
            for d in docs {
                black_box(f(black_box(d)));
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (passes * docs.len()) as f64;
        best = best.min(ns);
    }
    best
}

fn main() -> ExitCode {
    let Args {
        payloads,
        rounds,
        passes,
    } = clap::Parser::parse();
    let dir = payloads.unwrap_or_else(payloads::default_dir);
    let docs = match payloads::load(&dir) {
        Ok(docs) => docs,
        Err(e) => {
            eprintln!("stage_ns: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(schemas) = SchemaSet::embedded() else {
        eprintln!("stage_ns: embedded schemas do not compile");
        return ExitCode::FAILURE;
    };
    let Some(order) = schemas.get("order.v1") else {
        eprintln!("stage_ns: no order.v1");
        return ExitCode::FAILURE;
    };
    let opts = canonical::ParseOptions::default();
    let mut values = Vec::with_capacity(docs.len());
    for d in &docs {
        match canonical::parse(d, &opts) {
            Ok(v) => values.push(v),
            Err(e) => {
                eprintln!("stage_ns: payload does not parse: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let canonicals: Vec<Vec<u8>> = values.iter().map(canonical::to_canonical_vec).collect();
    let plan = Plan {
        schema: Some(order.clone()),
        ..Plan::default()
    };
    let mean = docs.iter().map(Vec::len).sum::<usize>() / docs.len();
    let canon_mean = canonicals.iter().map(Vec::len).sum::<usize>() / canonicals.len();
    println!(
        "{} documents from {} (mean {mean} B, canonical {canon_mean} B); fastest of {rounds} rounds × {passes} passes",
        docs.len(),
        dir.display()
    );
    let rows: Vec<(&str, f64)> = vec![
        (
            "norm (default plan + order.v1)",
            time(&docs, rounds, passes, |d| {
                pipeline::norm(d, &plan, &NeverStop).map(|o| o.body.len())
            }),
        ),
        (
            "parse + drop",
            time(&docs, rounds, passes, |d| {
                canonical::parse(d, &opts).is_ok()
            }),
        ),
        (
            "clone + drop (tree build/free without parsing)",
            time(&values, rounds, passes, |v| v.clone().is_object()),
        ),
        (
            "validate order.v1",
            time(&values, rounds, passes, |v| order.violations(v, 20).len()),
        ),
        (
            "canonical write",
            time(&values, rounds, passes, |v| {
                canonical::to_canonical_vec(v).len()
            }),
        ),
        (
            "sha-256 of the canonical bytes",
            time(&canonicals, rounds, passes, |c| {
                <[u8; 32]>::from(Sha256::digest(c))
            }),
        ),
        (
            "gzip level 1 (per-thread context)",
            time(&canonicals, rounds, passes, |c| {
                codec::compress(Encoding::Gzip, 1, c, &NeverStop).map(|o| o.len())
            }),
        ),
        (
            "gzip: context reset alone",
            time(&canonicals, rounds, passes, |_| {
                codec::compress(Encoding::Gzip, 1, b"", &NeverStop).map(|o| o.len())
            }),
        ),
    ];
    for (name, ns) in rows {
        println!("{ns:>10.0} ns  {name}");
    }
    ExitCode::SUCCESS
}
