//! Keep husklet's resident code to the pages it runs.
//!
//! husklet is a ~40 MB binary of which a long-running daemon touches a
//! small, scattered part. On a page fault in a file mapping the kernel maps
//! the whole 64 KiB window around the page ("fault-around"), so scattered
//! code turns into many times its size in RSS (measured: 19 MiB of file
//! pages resident after a pull, most never executed). `MADV_RANDOM` on the
//! binary's own mappings turns fault-around off for them; the extra minor
//! faults are page-cache hits.

/// Advise the kernel that husklet's own file mappings are accessed
/// randomly. Best effort: a failure only costs memory.
pub fn no_fault_around() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut f = line.split_whitespace();
        let (Some(range), Some(path)) = (f.next(), f.nth(4)) else {
            continue;
        };
        if path != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is one of this process's mappings, page-aligned
        // as /proc/self/maps gives it; MADV_RANDOM changes read-ahead only,
        // never the contents or validity of the memory.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), range, "madvise MADV_RANDOM");
        }
    }
}
