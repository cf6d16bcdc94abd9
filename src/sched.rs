//! How the I/O threads are scheduled: a short time slice from Linux, and the turns that
//! let an I/O thread run a small job inline.
//!
//! Owns: the first of normd's three `unsafe` blocks, a raw `sched_setattr(2)` (glibc has no
//! wrapper).
//! Why: in a pod with one CPU, a worker running a pipeline and the I/O thread that must
//! write a finished answer, or refuse a new call, share that CPU. Linux's EEVDF scheduler
//! lets the running task use up its slice (about 1–3 ms) before a woken task of the same
//! weight gets the CPU, unless the woken task asked for a shorter slice (Linux ≥ 6.12).
//! The I/O threads run in bursts of microseconds; with a 0.1 ms slice their wake-ups
//! preempt a pipeline run at once, so answers leave as soon as they are ready. Weights
//! stay equal, so the CPU share, and the throughput under a flood of refusals, is not
//! given away as renicing the workers would.
//! Kernels without custom slices ignore the value or refuse the call; either way normd
//! runs as before, and a refusal is logged once at startup.
#![allow(unsafe_code)]

use std::cell::Cell;

/// The slice the I/O threads ask for; the kernel clamps it to 0.1–100 ms.
const IO_SLICE_NS: u64 = 100_000;

/// Stack of every thread that runs jobs: the workers, and the I/O threads for inline
/// jobs. Parsing is depth-limited (≤ 1024 levels) but the jsonschema validator and
/// serde_json's recursive drop use the stack too; 8 MiB leaves a wide margin at 1024
/// levels, and untouched stack pages cost no RSS.
pub const JOB_STACK: usize = 8 << 20;

thread_local! {
    /// Set by the I/O threads' start hook: only they take inline turns.
    static IO_THREAD: Cell<bool> = const { Cell::new(false) };
    /// This thread's inline turn: open when it starts, closed by an inline job, opened
    /// again when the thread next finds nothing to run (the runtime's park hook).
    static INLINE_TURN: Cell<bool> = const { Cell::new(true) };
}

/// Whether this thread may run a small job inline now: it is one of normd's I/O threads
/// and has found nothing else to run since its last inline job. So whatever became ready
/// on it meanwhile (a health check, another connection's request) waits behind one small
/// job at most, never behind a run of them.
pub fn inline_turn_open() -> bool {
    IO_THREAD.with(Cell::get) && INLINE_TURN.with(Cell::get)
}

/// Closes this thread's turn: it is about to run a job inline.
pub fn take_inline_turn() {
    INLINE_TURN.with(|t| t.set(false));
}

/// The I/O threads' park hook: the thread found nothing to run, so everything that was
/// ready on it has run; its inline turn opens again.
pub fn io_thread_parked() {
    INLINE_TURN.with(|t| t.set(true));
}

/// The I/O threads' start hook: marks the thread as one that takes inline turns, asks for
/// the short slice, and if the kernel refuses, says so once (at info: normd works as
/// before, only its answers may wait longer on a CPU shared with a worker).
pub fn io_thread_started() {
    IO_THREAD.with(|t| t.set(true));
    static REFUSAL_LOGGED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = request_short_slice() {
        if !REFUSAL_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(
                error = %e,
                "I/O threads run without a short scheduler slice (Linux 6.12+ grants one): \
                 on a CPU shared with a worker, an answer may wait for the worker's slice"
            );
        }
    }
}

/// Asks for a short slice for the calling thread, keeping its policy (normal) and nice.
#[cfg(target_os = "linux")]
pub fn request_short_slice() -> std::io::Result<()> {
    let nice = std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| parse_nice(&stat))
        .unwrap_or(0);
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: IO_SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(pid 0 = this thread, attr, flags 0) only reads `attr.size`
    // bytes from the pointer, which is a fully initialized `sched_attr` on our stack that
    // outlives the call; it writes nothing back to our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn request_short_slice() -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Field 19 of `/proc/<pid>/stat` (after the parenthesised command name, which may hold
/// spaces) is the nice value.
fn parse_nice(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_is_read_after_the_command_name() {
        let stat = "1234 (normd io) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 5 3 0 \
                    100 2000000 300";
        assert_eq!(parse_nice(stat), Some(5));
        assert_eq!(parse_nice("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_request_keeps_this_threads_nice_value() {
        let read = || {
            std::fs::read_to_string("/proc/thread-self/stat")
                .ok()
                .and_then(|s| parse_nice(&s))
        };
        let before = read();
        // Older kernels may refuse a custom slice; what must hold either way is that the
        // thread's nice value is unchanged.
        let _ = std::thread::spawn(request_short_slice).join();
        let _ = request_short_slice();
        assert_eq!(read(), before);
    }
}
