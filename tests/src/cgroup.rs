//! A cgroup subtree of the test's own (`husk-test-<suffix>`), removed on drop.
//!
//! Containers started by tests get a `linux.cgroupsPath` inside it, never the
//! caller's own cgroup (which on these machines belongs to `process_api`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A test's cgroup subtree. `path("c1")` gives a cgroupsPath for a container.
pub struct TestCgroup {
    name: String,
}

impl TestCgroup {
    /// A new, uniquely named subtree. Nothing is created until a runtime uses it.
    pub fn new() -> Self {
        TestCgroup {
            name: format!("husk-test-{}", crate::unique_suffix()),
        }
    }

    /// The subtree's name, relative to the hierarchy roots.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An absolute cgroupsPath for a container inside the subtree: `/husk-test-x/<leaf>`.
    pub fn path(&self, leaf: &str) -> String {
        format!("/{}/{leaf}", self.name)
    }

    /// Every directory of the subtree that exists now, in each mounted hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        hierarchies()
            .into_iter()
            .map(|h| h.join(&self.name))
            .filter(|d| d.exists())
            .collect()
    }

    /// The directories of the container cgroup `leaf` that exist now, one
    /// per hierarchy: empty once a runtime cleaned up after it.
    pub fn leaf_dirs(&self, leaf: &str) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join(leaf))
            .filter(|d| d.exists())
            .collect()
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.dirs() {
            remove_tree(&dir);
        }
    }
}

/// Whether this host has the unified (v2) hierarchy alone, as the test VM
/// does; the development machines are v1/hybrid.
pub fn is_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// A cgroup file's contents, trimmed; panics naming the file.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines, as in
/// `pids.events` or `cpu.stat`); panics when there is none.
pub fn keyed(path: &Path, key: &str) -> u64 {
    read(path)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
}

/// The mounted hierarchies: `/sys/fs/cgroup` itself on a pure v2 host, or each
/// v1 controller dir plus `unified` on a v1/hybrid host.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if is_v2() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path();
            // Skip symlinks like cpu -> cpu,cpuacct so each hierarchy is seen once.
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && p.join("cgroup.procs").exists()
            {
                out.push(p);
            }
        }
    }
    out
}

/// Kill whatever is left in a cgroup tree, then remove it bottom-up.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with a pid read from our own test cgroup; no memory is touched.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
