//! Giving back the pages of code and data that only start-up used.
//!
//! Owns: normd's third `unsafe` call, `madvise(2)` on the process's read-only file
//! mappings (the binary's and the shared libraries' text and read-only data), once,
//! when start-up is done.
//! Why: a serving normd runs a small part of its binary, but start-up (the CLI, config
//! and schema loading, logging set-up) runs code spread across all of it, and Linux maps
//! file pages 64 KiB at a time around each fault, so most of the text was resident at
//! idle. Once start-up is done, `MADV_RANDOM` turns read-ahead off for those mappings
//! and `MADV_PAGEOUT` gives their pages back; what serving touches afterwards is mapped
//! again, page by page. Contents never change (the pages are clean copies of the file),
//! only where they live. The price: the first calls after start-up (the first self-probe
//! in practice) fault their code back in, once, a few ms in all (the README's "Choices
//! made" has the figures). Pages that another process maps too (glibc's, or another
//! normd's from the same file) stay where they are. Kernels before 5.4 refuse
//! `MADV_PAGEOUT` and nothing happens.
#![allow(unsafe_code)]

/// One mapping of `/proc/self/maps` that the hint applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// Gives back the resident pages of the process's read-only file mappings and has later
/// faults read one page at a time. Call once, after start-up, before serving. Returns
/// how many mappings took the advice; a hint only, so a refusal is counted out, not
/// raised.
pub fn release_start_up_pages() -> usize {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    read_only_file_mappings(&maps)
        .filter(|m| advise(*m, libc::MADV_RANDOM).is_ok() && advise(*m, libc::MADV_PAGEOUT).is_ok())
        .count()
}

/// Read-only file mappings: the binary's and the shared libraries' text and read-only
/// data. Not a writable one (a private writable mapping holds data normd changed; a
/// read-only one may too, after relocation, and `MADV_PAGEOUT` keeps such pages as they
/// are), not an anonymous one or `[vdso]`.
fn read_only_file_mappings(maps: &str) -> impl Iterator<Item = Mapping> + '_ {
    maps.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let _device = fields.next()?;
        let inode = fields.next()?;
        let path = fields.next()?;
        if !path.starts_with('/') || inode == "0" || perms.contains('w') {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (end > start).then_some(Mapping { start, end })
    })
}

#[cfg(target_os = "linux")]
fn advise(m: Mapping, advice: libc::c_int) -> std::io::Result<()> {
    // SAFETY: only MADV_RANDOM (read-ahead off) and MADV_PAGEOUT (reclaim now) are
    // passed. Neither changes, frees or unmaps the memory: a reclaimed clean file page is
    // read back from the file on its next access, a changed (anonymous) one is kept or
    // swapped, never dropped, so no reference into the range can see other contents.
    // The range is one of this process's mappings as /proc/self/maps listed it,
    // page-aligned; were it unmapped meanwhile, the kernel answers ENOMEM.
    let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, advice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: Mapping, _: i32) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_file_mappings_are_chosen() {
        let maps = "\
55d370800000-55d370a00000 r--p 00000000 fd:01 1234 /usr/bin/normd
55d370a00000-55d371300000 r-xp 00200000 fd:01 1234 /usr/bin/normd
55d371300000-55d371305000 rw-p 00b00000 fd:01 1234 /usr/bin/normd
55d371305000-55d371306000 rw-p 00000000 00:00 0
7f05c3f26000-7f05c3f33000 rw-p 00000000 00:00 0 [heap]
7f05c3f40000-7f05c3f60000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f05c3f60000-7f05c3f61000 rw-p 00020000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd1c5f0000-7ffd1c5f2000 r-xp 00000000 00:00 0 [vdso]
garbage line";
        let chosen: Vec<_> = read_only_file_mappings(maps).collect();
        let at = |start, end| Mapping { start, end };
        assert_eq!(
            chosen,
            vec![
                at(0x55d370800000, 0x55d370a00000),
                at(0x55d370a00000, 0x55d371300000),
                at(0x7f05c3f40000, 0x7f05c3f60000),
            ]
        );
    }

    /// The kernel records MADV_RANDOM as the `rr` flag of the mapping in smaps: the test
    /// binary's own text must carry it afterwards, and the code keeps running (this test
    /// runs on after its own text was given back).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_running_binarys_text_takes_the_advice() {
        assert!(release_start_up_pages() > 0);
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut in_text = false;
        let mut flags_of_text = None;
        for line in smaps.lines() {
            if line.contains('-') && line.split_whitespace().count() >= 5 {
                let perms = line.split_whitespace().nth(1).unwrap_or("");
                in_text = perms.contains('x') && line.ends_with(exe.to_str().expect("utf-8"));
            } else if in_text && line.starts_with("VmFlags:") {
                flags_of_text = Some(line.to_owned());
            }
        }
        let flags = flags_of_text.expect("the binary's text mapping is listed");
        assert!(
            flags.split_whitespace().any(|f| f == "rr"),
            "no `rr` flag: {flags}"
        );
    }
}
