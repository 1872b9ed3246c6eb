//! The exit record: status, OOM kill (the cgroup's `oom_kill` counter) and
//! time, written atomically before the shim exits.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::wait::WaitStatus;

use crate::error::{ShimError, io_err};
use husk_shim::{ExitRecord, layout};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The file holding the container cgroup's `oom_kill` counter:
/// `memory.events` on cgroup v2, `memory.oom_control` on v1 (both have an
/// `oom_kill N` line).
pub struct OomCounter {
    file: PathBuf,
    before: u64,
}

impl OomCounter {
    /// The counter of the cgroup `linux.cgroupsPath` names when absolute,
    /// else of the one the kernel put `pid` in (a relative path resolves
    /// against the runtime's own cgroup, which /proc/<pid>/cgroup reflects).
    pub fn new(cgroups_path: Option<&str>, pid: i32) -> Option<OomCounter> {
        let v2 = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        let cg = match cgroups_path {
            Some(p) if p.starts_with('/') => p.to_string(),
            _ => proc_cgroup(pid, v2)?,
        };
        let rel = cg.trim_start_matches('/');
        let file = if v2 {
            Path::new(CGROUP_ROOT).join(rel).join("memory.events")
        } else {
            Path::new(CGROUP_ROOT)
                .join("memory")
                .join(rel)
                .join("memory.oom_control")
        };
        let before = read_oom_kill(&file)?;
        Some(OomCounter { file, before })
    }

    /// Whether the counter grew since [`OomCounter::new`]. Read right after
    /// the reap, before husklet's `husk delete` removes the cgroup.
    pub fn fired(&self) -> bool {
        read_oom_kill(&self.file).is_some_and(|n| n > self.before)
    }
}

/// The cgroup path of `pid` in the memory hierarchy (v1) or the unified one.
fn proc_cgroup(pid: i32, v2: bool) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if v2 {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == "memory")
        };
        hit.then(|| path.to_string())
    })
}

fn read_oom_kill(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// The record of a reaped process.
pub fn record(pid: i32, status: WaitStatus, oom: Option<&OomCounter>) -> ExitRecord {
    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        // Not a termination (stopped/continued are not asked for): unknown.
        _ => (255, None),
    };
    ExitRecord {
        pid,
        exit_code,
        signal,
        oom_killed: oom.is_some_and(OomCounter::fired),
        finished_at: husk_shim::time::now(),
        released: false,
    }
}

/// Write `exit.json` in `dir`: temp file, fsync, rename, fsync of the dir.
/// Without `durable` (exec sessions) there is no fsync: husklet reads the
/// record right away, and after a crash it removes every exec session
/// unread, so only a container's exit must survive one. Two fsyncs are
/// milliseconds on a disk, on the path of every `crictl exec`.
pub fn write(dir: &Path, rec: &ExitRecord, durable: bool) -> Result<(), ShimError> {
    let tmp = dir.join(format!("{}.tmp", layout::EXIT));
    let path = dir.join(layout::EXIT);
    let mut text = serde_json::to_vec(rec).map_err(|e| ShimError::Io {
        what: "encode the exit record".into(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    let mut f = File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    f.write_all(&text)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io_err(format!("rename to {}", path.display())))?;
    if !durable {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("sync {}", dir.display())))
}

/// Write a small file atomically (temp + rename), for `shim.pid`.
pub fn write_small(path: &Path, text: &str) -> Result<(), ShimError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(io_err(format!("write {}", path.display())))
}
