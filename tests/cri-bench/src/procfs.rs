//! Memory and parentage of processes, read from /proc.

use std::fs;

use serde::{Deserialize, Serialize};

/// What /proc says about one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcMem {
    pub pid: i32,
    pub comm: String,
    /// Resident set size (VmRSS), KiB.
    pub rss_kib: u64,
    /// Proportional set size (shared pages split among sharers), KiB.
    pub pss_kib: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("read /proc/{pid}/{file}: {cause}")]
    Read {
        pid: i32,
        file: &'static str,
        cause: std::io::Error,
    },
    #[error("/proc/{pid}/{file}: no {field} field")]
    Missing {
        pid: i32,
        file: &'static str,
        field: &'static str,
    },
}

fn read(pid: i32, file: &'static str) -> Result<String, ProcError> {
    fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|cause| ProcError::Read {
        pid,
        file,
        cause,
    })
}

/// The value in KiB of a `Name:   123 kB` line.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The parent pid (the fourth field of /proc/PID/stat, after the comm in parentheses).
pub fn ppid(pid: i32) -> Result<i32, ProcError> {
    let stat = read(pid, "stat")?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .ok_or(ProcError::Missing {
            pid,
            file: "stat",
            field: "ppid",
        })
}

/// The basename of argv[0] (comm is cut at 15 bytes: `containerd-shim`).
fn program_name(pid: i32) -> Result<String, ProcError> {
    let cmdline = read(pid, "cmdline").unwrap_or_default();
    let argv0 = cmdline.split('\0').next().unwrap_or("");
    match argv0.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Ok(read(pid, "comm")?.trim_end().to_string()),
    }
}

/// RSS, PSS and name of a process.
pub fn mem(pid: i32) -> Result<ProcMem, ProcError> {
    let status = read(pid, "status")?;
    let rss_kib = kib_field(&status, "VmRSS").ok_or(ProcError::Missing {
        pid,
        file: "status",
        field: "VmRSS",
    })?;
    let comm = program_name(pid)?;
    let pss_kib = read(pid, "smaps_rollup")
        .ok()
        .and_then(|s| kib_field(&s, "Pss"));
    Ok(ProcMem {
        pid,
        comm,
        rss_kib,
        pss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let m = mem(me).unwrap();
        assert!(m.rss_kib > 0);
        assert_eq!(ppid(me).unwrap(), nix::unistd::getppid().as_raw());
    }

    #[test]
    fn kib_field_parses_status_lines() {
        let s = "Name:\tx\nVmRSS:\t   1234 kB\nVmSwap:\t0 kB\n";
        assert_eq!(kib_field(s, "VmRSS"), Some(1234));
        assert_eq!(kib_field(s, "VmHWM"), None);
    }

    #[test]
    fn missing_process_names_pid_and_file() {
        let e = mem(i32::MAX).unwrap_err().to_string();
        assert!(e.contains(&format!("/proc/{}/status", i32::MAX)), "{e}");
    }
}
