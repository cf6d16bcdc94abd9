//! Pipeline benchmarks on the shared ~4 KB order workload, per stage.
//!
//! Payloads come from `../shared/bench/payloads/4k` next to the repository (override
//! with NORMD_BENCH_PAYLOADS=DIR); without it the test fixtures are used. Each
//! iteration takes the next payload in turn, so figures are means over the set.
//!
//! Run: `cargo bench --bench pipeline` (add `-- --quick` for a short pass).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use normd::pipeline::{self, canonical, codec, Encoding, JsonRules, NeverStop, Plan, SchemaSet};

// The allocator the normd binary uses (src/main.rs), so in-process figures compare like
// with like against the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn payloads() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("NORMD_BENCH_PAYLOADS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/payloads/4k"));
    let dir = if dir.is_dir() {
        dir
    } else {
        root.join("tests/fixtures")
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("payload dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let docs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!docs.is_empty(), "no payloads in {}", dir.display());
    eprintln!(
        "bench payloads: {} files from {}, mean {} bytes",
        docs.len(),
        dir.display(),
        docs.iter().map(Vec::len).sum::<usize>() / docs.len()
    );
    docs
}

/// Cycles through the payload set.
struct Cycle<'a, T> {
    items: &'a [T],
    i: usize,
}

impl<'a, T> Cycle<'a, T> {
    fn new(items: &'a [T]) -> Self {
        Self { items, i: 0 }
    }
    fn next(&mut self) -> &'a T {
        let item = &self.items[self.i % self.items.len()];
        self.i += 1;
        item
    }
}

fn stages(c: &mut Criterion) {
    let docs = payloads();
    let mean = docs.iter().map(Vec::len).sum::<usize>() / docs.len();
    let schemas = SchemaSet::embedded().expect("embedded schemas");
    let order = schemas.get("order.v1").expect("order.v1");
    let opts = canonical::ParseOptions::default();
    let values: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| canonical::parse(d, &opts).expect("payload parses"))
        .collect();
    let canonicals: Vec<Vec<u8>> = values.iter().map(canonical::to_canonical_vec).collect();

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(mean as u64));

    let mut it = Cycle::new(&docs);
    g.bench_function("parse (normd strict I-JSON)", |b| {
        b.iter(|| canonical::parse(it.next(), &opts).expect("parse"))
    });
    let mut it = Cycle::new(&docs);
    g.bench_function("parse (serde_json baseline)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(it.next()).expect("parse"))
    });
    let rules = JsonRules {
        trim: true,
        ..JsonRules::default()
    };
    let mut it = Cycle::new(&values);
    g.bench_function("normalize trim", |b| {
        b.iter_batched(
            || it.next().clone(),
            |mut v| pipeline::normalize::apply(&mut v, &rules),
            BatchSize::SmallInput,
        )
    });
    let mut it = Cycle::new(&values);
    g.bench_function("canonicalize (RFC 8785)", |b| {
        b.iter(|| canonical::to_canonical_vec(it.next()))
    });
    let mut it = Cycle::new(&values);
    g.bench_function("validate order.v1", |b| {
        b.iter(|| order.violations(it.next(), 20))
    });
    for enc in [
        Encoding::Gzip,
        Encoding::Br,
        Encoding::Zstd,
        Encoding::Identity,
    ] {
        let mut it = Cycle::new(&canonicals);
        g.bench_function(
            format!("compress {} level {}", enc.name(), enc.default_level()),
            |b| {
                b.iter(|| {
                    codec::compress(enc, enc.default_level(), it.next(), &NeverStop)
                        .expect("compress")
                })
            },
        );
    }
    // The reason compressor state is reused per thread: a fresh encoder per payload.
    let mut it = Cycle::new(&canonicals);
    g.bench_function("compress gzip level 1, fresh encoder each time", |b| {
        b.iter(|| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
            e.write_all(it.next()).expect("write");
            e.finish().expect("finish")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(mean as u64));
    let plan = Plan {
        schema: Some(order.clone()),
        json_rules: rules.clone(),
        ..Plan::default()
    };
    let mut it = Cycle::new(&docs);
    g.bench_function("norm: parse+trim+validate+canonical+gzip1", |b| {
        b.iter(|| pipeline::norm(it.next(), &plan, &NeverStop).expect("norm"))
    });
    g.finish();
}

/// What the per-request metric updates cost, with the Prometheus recorder installed,
/// next to the pipeline they accompany (issue: metrics must stay cheap on the hot path).
fn telemetry_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("telemetry");
    g.bench_function("per-request metrics, no recorder", |b| {
        b.iter(record_one_request)
    });
    normd::telemetry::install_metrics();
    g.bench_function("per-request metrics, prometheus recorder", |b| {
        b.iter(record_one_request)
    });
    g.finish();
}

fn record_one_request() {
    use normd::telemetry as t;
    t::inflight_requests(1.0);
    t::queue_depth(1);
    t::queue_wait(Duration::from_micros(12));
    t::bytes("norm", 4300, 1500);
    t::compression("gzip", 3900, 1500);
    t::request_done("norm", 200, "ok", Duration::from_micros(140));
    t::inflight_requests(-1.0);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stages, telemetry_cost
}
criterion_main!(benches);
