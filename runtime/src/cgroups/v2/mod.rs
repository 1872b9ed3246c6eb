//! The cgroup v2 (unified hierarchy) manager.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::fs;
use super::{CgroupError, CgroupManager};

/// A container's cgroup on a pure cgroup v2 host.
#[derive(Debug, Clone)]
pub struct V2Manager {
    root: PathBuf,
    dir: PathBuf,
}

impl V2Manager {
    /// The manager for `dir`, a cgroup below the v2 mount at `root`.
    pub fn new(root: PathBuf, dir: PathBuf) -> Self {
        V2Manager { root, dir }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enable every available controller in `dir`'s subtree_control, as runc
    /// does for each ancestor of a new cgroup. Failures are not errors here (a
    /// group with processes cannot delegate); `set` reports a limit whose
    /// controller did not make it down.
    fn enable_controllers(dir: &Path) {
        let Ok(available) = fs::read(dir, "cgroup.controllers") else {
            return;
        };
        let enabled = fs::read(dir, "cgroup.subtree_control").unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let wanted: Vec<String> = available
            .split_whitespace()
            .filter(|c| !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return;
        }
        if fs::write(dir, "cgroup.subtree_control", &wanted.join(" ")).is_err() {
            for c in &wanted {
                if let Err(e) = fs::write(dir, "cgroup.subtree_control", c) {
                    tracing::debug!("enable controller {c}: {e}");
                }
            }
        }
    }

    fn ancestors_below_root(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.root))
            .map(Path::to_path_buf)
            .collect();
        out.reverse();
        out
    }
}

impl CgroupManager for V2Manager {
    fn validate(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if resources == &LinuxResources::default() {
            return Ok(());
        }
        Err(CgroupError::unsupported(
            "linux.resources",
            "resource limits are not implemented yet",
        ))
    }

    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        for a in self.ancestors_below_root() {
            fs::create_dirs(&a, |_| Ok(()))?;
            Self::enable_controllers(&a);
        }
        fs::create_dirs(&self.dir, |_| Ok(()))?;
        fs::write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.validate(resources)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        fs::pids_recursive(&self.dir)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        fs::write(&self.dir, "cgroup.freeze", "1")?;
        fs::wait_until(&self.dir, "freeze", 10, || self.is_frozen())
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        fs::write(&self.dir, "cgroup.freeze", "0")?;
        fs::wait_until(&self.dir, "thaw", 10, || Ok(!self.is_frozen()?))
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(fs::keyed_value(&self.dir, "cgroup.events", "frozen")? == Some(1))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        if !self.dir.exists() {
            return Ok(());
        }
        if self.dir.join("cgroup.kill").exists() {
            fs::write(&self.dir, "cgroup.kill", "1")?;
        } else {
            // Before 5.14: freeze so nothing forks between reading and killing.
            let _ = self.freeze();
            fs::kill_all(&self.pids()?);
            let _ = fs::write(&self.dir, "cgroup.freeze", "0");
        }
        fs::wait_until(&self.dir, "kill", 10, || {
            if !self.dir.exists() {
                return Ok(true);
            }
            let pids = self.pids()?;
            fs::kill_all(&pids);
            Ok(pids.is_empty())
        })?;
        fs::remove_tree(&self.dir)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn is_unified(&self) -> bool {
        true
    }
}
