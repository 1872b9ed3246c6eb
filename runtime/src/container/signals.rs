//! Signal names and numbers, and the foreground wait that forwards signals
//! to the container's process.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Parse a signal as runc accepts it: `KILL`, `SIGKILL`, `9`.
pub fn parse(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}"))
}

/// Block the signals the foreground runtime forwards (call before the child
/// can exit, so no SIGCHLD is lost). Returns the set to wait on.
pub fn block_forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGSTOP,
        Signal::SIGKILL,
        Signal::SIGTRAP,
        Signal::SIGABRT,
    ] {
        set.remove(s);
    }
    let _ = set.thread_block();
    set
}

/// Wait for `pid` (our child) to exit, forwarding every other signal to it.
/// Returns the exit code in shell convention: the status, or 128+N when
/// killed by signal N. Other children that exit meanwhile are reaped.
pub fn forward_and_wait(pid: i32, set: &SigSet) -> i32 {
    let target = Pid::from_raw(pid);
    loop {
        // Reap first: the child may have exited before we started waiting.
        if let Some(code) = reap(pid) {
            return code;
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => continue,
            Ok(sig) => {
                let _ = nix::sys::signal::kill(target, sig);
            }
            Err(_) => continue,
        }
    }
}

/// Reap every exited child without blocking; the exit code of `pid` (shell
/// convention) once it has exited.
pub fn reap(pid: i32) -> Option<i32> {
    let target = Pid::from_raw(pid);
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == target => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == target => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse("NOPE").is_err());
        assert!(parse("99").is_err());
    }
}
