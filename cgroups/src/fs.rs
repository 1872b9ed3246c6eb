//! Small helpers for cgroup files: every error names the file and the operation.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Write `value` to `dir/file` (one write(2), as the kernel expects).
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    write_existing(&path, value).map_err(|e| CgroupError::io(path, "write", e))
}

/// Write into a file that must already exist: cgroup files always do, and a
/// missing one means `dir` is not a cgroup (creating a plain file there would
/// only leave litter behind).
pub fn write_existing(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// The whole of a /proc file, read with large reads.
///
/// procfs reports a size of 0, so `fs::read_to_string` probes with 32-byte
/// reads and grows from there; each short read makes the kernel render the
/// seq_file again from the top. One 16 KiB buffer reads a typical mountinfo
/// in one call (and so as one consistent snapshot).
pub fn read_proc(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// The contents of `dir/file`.
pub fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| CgroupError::io(path, "read", e))
}

/// The contents of `dir/file` as one unsigned number (`max` reads as `u64::MAX`).
pub fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file)?;
    parse_u64(s.trim()).ok_or_else(|| {
        CgroupError::io(
            dir.join(file),
            "parse",
            std::io::Error::new(ErrorKind::InvalidData, format!("not a number: {s:?}")),
        )
    })
}

/// The names of the files in `dir`.
pub fn read_dir_names(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let entries = fs::read_dir(dir).map_err(|e| CgroupError::io(dir, "readdir", e))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// A number as cgroup files print it (`max` is unlimited).
pub fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events) as pairs.
pub fn read_keyed(dir: &Path, file: &str) -> Result<Vec<(String, u64)>, CgroupError> {
    Ok(read(dir, file)?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), parse_u64(v.trim())?))
        })
        .collect())
}

/// The value of `key` in a keyed file, if present.
pub fn keyed_value(dir: &Path, file: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    Ok(read_keyed(dir, file)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// Create `dir` and any missing parents, returning the directories created,
/// top-down. `init` runs on each new directory before its children are made
/// (v1 cpuset needs its cpus/mems copied from the parent).
///
/// mkdir is tried first and the walk up happens only on ENOENT: the common
/// case (parent present) costs one syscall per hierarchy.
pub fn create_dirs(
    dir: &Path,
    mut init: impl FnMut(&Path) -> Result<(), CgroupError>,
) -> Result<Vec<PathBuf>, CgroupError> {
    // Walk up until a mkdir succeeds or finds the directory already there.
    let mut pending = Vec::new();
    let mut cur = dir;
    let mut created = Vec::new();
    loop {
        match fs::create_dir(cur) {
            Ok(()) => {
                init(cur)?;
                created.push(cur.to_path_buf());
                break;
            }
            // Another container sharing the parent made it first.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => break,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                pending.push(cur);
                cur = cur
                    .parent()
                    .ok_or_else(|| CgroupError::io(cur, "mkdir", e))?;
            }
            Err(e) => return Err(CgroupError::io(cur, "mkdir", e)),
        }
    }
    // Then back down, parents first.
    for d in pending.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io(d, "mkdir", e)),
        }
        init(d)?;
        created.push(d.to_path_buf());
    }
    Ok(created)
}

/// Every process in `dir` and its descendants. A missing directory has none.
pub fn pids_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut out = Vec::new();
    collect_pids(dir, &mut out)?;
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io(procs, "read", e)),
    }
    for child in child_dirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

/// The sub-cgroups directly below `dir`.
pub fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io(dir, "readdir", e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|err| CgroupError::io(dir, "readdir", err))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Remove `dir` and every sub-cgroup below it (bottom-up). Already gone is fine;
/// a group whose last process is still exiting (EBUSY) is retried briefly.
///
/// rmdir is tried first: a leaf cgroup (the usual container) goes in one
/// syscall, and sub-cgroups are looked for only when the kernel says EBUSY.
pub fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut children_removed = false;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !children_removed => {
                for child in child_dirs(dir)? {
                    remove_tree(&child)?;
                }
                children_removed = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(CgroupError::io(dir, "rmdir", e)),
        }
    }
}

/// SIGKILL every pid (ESRCH — already gone — is fine).
pub fn kill_all(pids: &[i32]) {
    for &pid in pids {
        if pid > 0 {
            // SAFETY: kill(2) takes plain integers and touches no memory; the
            // pids come from the container's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Poll `done` every few milliseconds until it returns true or `secs` pass.
pub fn wait_until(
    path: &Path,
    what: &'static str,
    secs: u64,
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut delay = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Timeout {
                path: path.to_path_buf(),
                what,
                secs,
            });
        }
        std::thread::sleep(delay);
        // A short cap: the processes are usually gone within milliseconds,
        // and a long sleep past that is pure latency for `delete`.
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    /// A writable cgroup hierarchy of this host (needs root).
    fn hierarchy() -> PathBuf {
        match Layout::detect().expect("the test host has cgroups") {
            Layout::Unified(h) => h.mountpoint,
            Layout::Legacy(hs) => {
                hs.into_iter()
                    .find(|h| h.controllers.iter().any(|c| c == "pids"))
                    .expect("a pids hierarchy")
                    .mountpoint
            }
        }
    }

    #[test]
    fn nested_cgroups_are_made_top_down_and_removed_bottom_up() {
        let top = hierarchy().join(format!("husk-test-fs-{}", std::process::id()));
        let leaf = top.join("a/b/c");
        let mut order = Vec::new();
        let made = create_dirs(&leaf, |d| {
            order.push(d.to_path_buf());
            Ok(())
        });
        let result = (|| {
            let made = made?;
            let expected = vec![top.clone(), top.join("a"), top.join("a/b"), leaf.clone()];
            assert_eq!(made, expected);
            assert_eq!(order, expected, "init runs on each new dir, parents first");
            // A second call finds everything there and creates nothing.
            assert!(create_dirs(&leaf, |_| Ok(()))?.is_empty());
            // A sibling below an existing parent: one new directory.
            assert_eq!(
                create_dirs(&top.join("a/b2"), |_| Ok(()))?,
                vec![top.join("a/b2")]
            );
            remove_tree(&top)?;
            assert!(!top.exists(), "{} left behind", top.display());
            // Already gone is fine.
            remove_tree(&top)
        })();
        if top.exists() {
            for d in ["a/b/c", "a/b2", "a/b", "a", ""] {
                let _ = fs::remove_dir(top.join(d));
            }
        }
        result.expect("create and remove nested cgroups");
    }
}
