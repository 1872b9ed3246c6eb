//! Thin wrappers over the few syscalls that nix does not cover (clone3,
//! close_range, execveat) and small /proc readers.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Fork-like clone: the child continues on a copy of the caller's stack.
///
/// `flags` may hold `CLONE_PARENT` and namespace flags. Uses clone3 and falls
/// back to clone(2) on kernels without it. Returns 0 in the child.
pub fn clone_fork(flags: u64) -> io::Result<i32> {
    match clone3(flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        other => return other,
    }
    // SAFETY: clone(2) with a null stack is fork-like, as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// [`clone_fork`] with the child created in the cgroup v2 directory
/// `cgroup` (clone3's CLONE_INTO_CGROUP). Moving a process into a cgroup
/// waits for an RCU grace period when no move happened lately (the kernel's
/// cgroup_threadgroup_rwsem, 10-20 ms); being born in one does not. No
/// fallback: an error (ENOSYS, EBUSY, ...) leaves the caller to clone and
/// move the child.
pub fn clone_into_cgroup(flags: u64, cgroup: BorrowedFd<'_>) -> io::Result<i32> {
    clone3(flags, Some(cgroup.as_raw_fd()))
}

/// [`clone_into_cgroup`] when `cgroup` is given and the kernel takes it,
/// else [`clone_fork`]; the flag says which (true: born in the cgroup).
pub fn clone_fork_in(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<(i32, bool)> {
    if let Some(Ok(pid)) = cgroup.map(|fd| clone_into_cgroup(flags, fd)) {
        return Ok((pid, true));
    }
    clone_fork(flags).map(|pid| (pid, false))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A directory opened for reading (as CLONE_INTO_CGROUP wants it: an
/// O_PATH fd is refused), close-on-exec.
pub fn open_dir(dir: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(std::os::fd::OwnedFd::from)
}

fn clone3(flags: u64, cgroup: Option<RawFd>) -> io::Result<i32> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        // With CLONE_PARENT the child inherits our exit signal; clone3 insists on 0.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
    };
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork:
    // the child gets a copy-on-write copy of this single-threaded process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc >= 0 {
        Ok(rc as i32)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mark every fd from `first` upwards close-on-exec (close_range with
/// CLOSE_RANGE_CLOEXEC), falling back to a walk over /proc/self/fd.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags in this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd: RawFd = match entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(fd) => fd,
            None => continue,
        };
        if fd >= first {
            set_cloexec(fd, true)?;
        }
    }
    Ok(())
}

/// Close every fd from 3 upwards except those in `keep`.
///
/// A cloned child inherits every fd of the runtime (its copy of the state
/// dir's lock among them); it calls this first thing, so that nothing of the
/// runtime's outlives it or reaches the container.
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&f| f >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from: RawFd = 3;
    let close = |lo: RawFd, hi: libc::c_uint| -> io::Result<()> {
        // SAFETY: close_range only closes fds of this process; the caller
        // keeps the ones it still uses.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, lo as libc::c_uint, hi, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let mut result = Ok(());
    for &k in &keep {
        if k > from {
            result = result.and(close(from, (k - 1) as libc::c_uint));
        }
        from = k + 1;
    }
    result = result.and(close(from, libc::c_uint::MAX));
    if result.is_ok() {
        return Ok(());
    }
    // Kernels before 5.9: walk /proc/self/fd (collect first, the walk holds an fd).
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd >= 3 && keep.binary_search(&fd).is_err() {
            // SAFETY: closing an fd number of this process nobody else uses here.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Which of `fds` are open now. Called before the runtime opens anything, it
/// tells the fds the caller really passed from the holes the runtime's own
/// files would fill later.
pub fn open_fds(fds: std::ops::Range<RawFd>) -> Vec<RawFd> {
    // SAFETY: F_GETFD only reads an fd's flags.
    fds.filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

/// Every signal back to its default disposition, as the container's process
/// must start: nothing the runtime's caller ignored (a shell's SIGHUP, Rust's
/// SIGPIPE, glibc posix_spawn's internal signals 32 and 33, which glibc's own
/// sigaction() refuses to touch, hence the raw system call) reaches it.
pub fn reset_signal_dispositions() {
    // The kernel's struct sigaction with SIG_DFL, no flags and an empty mask.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        // SAFETY: rt_sigaction reads the zeroed kernel sigaction, which lives
        // across the call, and writes nothing (no old-action pointer);
        // SIGKILL and SIGSTOP refuse with EINVAL, which is fine.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// Die with the parent: SIGKILL on its death, and exit now if it already
/// died between the clone and this call (the parent pid then changed). A
/// process whose parent is outside its pid namespace sees a parent pid of 0
/// and cannot tell: it learns of the death from its channel (EOF).
pub fn die_with_parent(parent: i32) {
    // SAFETY: prctl and getppid take and return integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let ppid = libc::getppid();
        if ppid != 0 && ppid != parent {
            libc::_exit(1);
        }
    }
}

/// Set or clear FD_CLOEXEC on one fd.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd number only reads/changes its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH). Returns only on failure.
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[&CStr], envp: &[&CStr]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: argv/envp are NUL-terminated arrays of pointers to C strings that
    // outlive the call; the empty path with AT_EMPTY_PATH executes `fd` itself.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

/// The whole of a /proc file, read with large reads.
///
/// procfs reports a size of 0, so `fs::read_to_string` probes with 32-byte
/// reads and grows from there; each short read makes the kernel render the
/// seq_file again from the top (mountinfo is rendered ~8 times). One 16 KiB
/// buffer reads a typical file in one call.
pub fn read_proc(path: impl AsRef<std::path::Path>) -> io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The start time (field 22 of /proc/<pid>/stat, in clock ticks) of a live,
/// non-zombie process, or None when it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = read_proc(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3 (state); field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// A pidfd for `pid` (close-on-exec), or None on kernels without pidfd_open
/// (before 5.3) or when the process is gone.
pub fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process `pid` is the one that started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start_time)
}

/// Now as an RFC 3339 UTC timestamp with nanoseconds, as Go's time.RFC3339Nano
/// prints it (trailing zeros of the fraction dropped).
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Format a Unix time as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
    }

    #[test]
    fn own_start_time_is_readable() {
        let pid = std::process::id() as i32;
        let st = process_start_time(pid).expect("own stat");
        assert!(process_alive(pid, st));
        assert!(!process_alive(pid, st + 1));
    }
}
