//! The working-memory bounds normd charges to `--max-inflight-bytes` hold: each call's
//! peak allocation, measured with a counting allocator, stays under its estimate for
//! the shapes and codecs that cost most (brotli's tables, JSON trees of tiny objects).
//! A dependency update that makes a codec hungrier fails here, not in a pod's OOM kill.
//!
//! Its own test binary, so the counting allocator sees only these calls; one test, so
//! no other test's thread allocates meanwhile. zstd allocates in C (invisible here); its
//! bound is checked by its context size in the unit tests instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use normd::pipeline::{self, Encoding, Mode, NeverStop, Plan};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated above the starting point at the busiest moment of `f`.
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(out);
    peak
}

fn repeat_to(item: &str, size: usize) -> Vec<u8> {
    let mut doc = String::from("[");
    while doc.len() + item.len() + 2 < size {
        doc.push_str(item);
        doc.push(',');
    }
    doc.push_str(item);
    doc.push(']');
    doc.into_bytes()
}

fn order_array(size: usize) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let order =
        std::fs::read_to_string(dir.join("order_4k.json")).expect("tests/fixtures/order_4k.json");
    repeat_to(order.trim(), size)
}

fn plan(encoding: Encoding, level: i32) -> Plan {
    Plan {
        encoding,
        level,
        ..Plan::default()
    }
}

#[test]
fn every_call_stays_under_its_charged_working_memory() {
    const K: usize = 1 << 10;
    let mut bodies = vec![("orders 4 KB", order_array(4 * K))];
    for (name, item) in [
        ("[{\"\":0},…]", "{\"\":0}"),
        ("[[0],…]", "[0]"),
        ("[0,…]", "0"),
        ("[\"0.1\",…]", "0.1"),
    ] {
        bodies.push((name, repeat_to(item, 256 * K)));
    }
    bodies.push(("orders 256 KB", order_array(256 * K)));

    let mut checked = 0;
    for (name, body) in &bodies {
        for (encoding, level) in [
            (Encoding::Identity, 0),
            (Encoding::Gzip, 1),
            (Encoding::Gzip, 9),
            (Encoding::Br, 1),
            (Encoding::Br, 5),
            (Encoding::Br, 8),
            (Encoding::Br, 9),
            (Encoding::Br, 11),
        ] {
            let plan = plan(encoding, level);
            // Warm the thread's gzip context first: it is the worker's, not the call's.
            pipeline::norm(body, &plan, &NeverStop).expect("norm");
            let norm = peak_of(|| pipeline::norm(body, &plan, &NeverStop).expect("norm"));
            let bound = pipeline::norm_memory(body, &plan);
            assert!(
                norm <= bound,
                "/norm {name} {encoding:?} {level}: {norm} > {bound}"
            );
            let compress =
                peak_of(|| pipeline::compress(body, &plan, &NeverStop).expect("compress"));
            let bound = pipeline::compress_memory(body, &plan);
            assert!(
                compress <= bound,
                "/compress {name} {encoding:?} {level}: {compress} > {bound}"
            );
            checked += 2;
        }
        let json = plan(Encoding::Identity, 0);
        let check = peak_of(|| pipeline::check(body, &json, &NeverStop).expect("validate"));
        assert!(
            check <= pipeline::check_memory(body, &json),
            "/validate {name}"
        );
        let normalize =
            peak_of(|| pipeline::normalize(body, &json, &NeverStop).expect("normalize"));
        assert!(
            normalize <= pipeline::normalize_memory(body, &json),
            "/normalize {name}"
        );
        let text = Plan {
            mode: Mode::Text,
            ..json
        };
        let normalize = peak_of(|| pipeline::normalize(body, &text, &NeverStop).expect("text"));
        assert!(
            normalize <= pipeline::normalize_memory(body, &text),
            "/normalize text {name}"
        );
        checked += 3;
    }
    // The counter works: a 1 MiB buffer shows up as at least 1 MiB.
    assert!(peak_of(|| vec![1u8; 1 << 20]) >= 1 << 20);
    assert_eq!(checked, bodies.len() * 19);
}
