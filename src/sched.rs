//! A scheduling hint for the I/O threads: ask Linux for a short time slice.
//!
//! Owns: one of normd's two `unsafe` blocks, a raw `sched_setattr(2)` (glibc has no
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

/// The slice the I/O threads ask for; the kernel clamps it to 0.1–100 ms.
const IO_SLICE_NS: u64 = 100_000;

/// The I/O threads' start hook: asks for the short slice, and if the kernel refuses, says
/// so once (at info: normd works as before, only its answers may wait longer on a CPU
/// shared with a worker).
pub fn io_thread_started() {
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
