//! Giving the allocator's freed memory back to the OS while memory is over a watermark.
//!
//! Owns: normd's second `unsafe` block, a call of mimalloc's `mi_collect` (the binary's
//! global allocator, chosen in `main.rs`).
//! Why: mimalloc returns freed memory to the OS lazily, from inside later allocator calls
//! and only after a delay (10 ms, ×10 for its arenas). A worker that served a large call
//! and went idle makes no such call, so its freed memory stays resident, and the shed
//! watermark, which reads RSS or the cgroup's usage as it must (that is what the OOM
//! killer reads), keeps refusing work with nothing in flight (the README's "Choices made"
//! has the figures).
//! A forced collect walks this thread's heap and purges every arena's freed ranges (a few
//! ms), so it runs on a blocking thread, never on an I/O thread, and only while a
//! watermark is crossed; below them mimalloc keeps its delays, which spare the hot path
//! from returning pages it is about to reuse.
#![allow(unsafe_code)]

/// Asks the allocator to return the memory it holds freed to the OS. Blocks for a few
/// milliseconds: call it from a blocking thread.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` takes a plain bool and touches only mimalloc's own state, under
    // its own locks; it is safe to call from any thread at any time, including when
    // mimalloc is not the global allocator (the library's tests), where it has nothing to
    // collect.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
