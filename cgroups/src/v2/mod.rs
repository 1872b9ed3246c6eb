//! The cgroup v2 (unified hierarchy) manager.

pub mod bpf;
pub mod resources;
mod stats;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::apply_writes::write_all;
use super::stats::Stats;
use super::{CgroupError, CgroupManager, devices, fs};

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

    /// The nearest existing directory at or above the cgroup.
    fn nearest_existing(&self) -> &Path {
        self.dir
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(&self.root)
    }

    /// A directory holding `controller`'s interface files, to check file names
    /// against before the cgroup exists: the cgroup itself, an ancestor below
    /// the root, or any child of the root with the controller enabled.
    fn probe_dir(&self, controller: Option<&str>) -> Option<PathBuf> {
        let Some(c) = controller else {
            return Some(self.root.clone());
        };
        let has = |d: &Path| resources::available_controllers(d).iter().any(|x| x == c);
        let near = self.nearest_existing();
        if near != self.root && has(near) {
            return Some(near.to_path_buf());
        }
        fs::child_dirs(&self.root)
            .ok()?
            .into_iter()
            .find(|d| has(d))
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
        let plan = resources::plan(resources, false)?;
        if let Some(d) = resources.devices() {
            devices::rules(d)?;
        }
        // Controllers the cgroup can get: its own list once it exists, else
        // what its nearest existing ancestor has to hand down.
        let near = self.nearest_existing();
        let available = resources::available_controllers(near);
        for w in &plan.writes {
            let ctrl = resources::controller_of(&w.file);
            if let Some(c) = ctrl
                && !available.iter().any(|a| a == c)
            {
                return Err(CgroupError::unsupported(
                    &w.field,
                    format!("the {c} controller is not available in {}", near.display()),
                ));
            }
            let exists = match self.probe_dir(ctrl) {
                Some(probe) => probe.join(&w.file).exists(),
                None => resources::known_file(&w.file),
            };
            if !exists {
                let what = if w.field.contains(".unified.") {
                    "unknown cgroup v2 file"
                } else {
                    "this kernel has no such file"
                };
                return Err(CgroupError::invalid(
                    &w.field,
                    format!("{what} {:?}", w.file),
                ));
            }
        }
        if let Some(hp) = resources.hugepage_limits() {
            for (i, h) in hp.iter().enumerate() {
                let field = format!("linux.resources.hugepageLimits[{i}].pageSize");
                let kb = super::convert::hugepage_kb(&field, h.page_size())?;
                let sys = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB");
                if !Path::new(&sys).exists() {
                    return Err(CgroupError::unsupported(
                        field,
                        format!(
                            "the kernel has no {} pages ({sys} is missing)",
                            h.page_size()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn apply(&self, pid: i32) -> Result<(), CgroupError> {
        self.create_clone_target()?;
        fs::write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn create_clone_target(&self) -> Result<(), CgroupError> {
        for a in self.ancestors_below_root() {
            fs::create_dirs(&a, |_| Ok(()))?;
            Self::enable_controllers(&a);
        }
        fs::create_dirs(&self.dir, |_| Ok(()))?;
        Ok(())
    }

    fn clone_target(&self) -> Option<PathBuf> {
        Some(self.dir.clone())
    }

    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.validate(resources)?;
        let bfq = self.dir.join("io.bfq.weight").exists();
        let plan = resources::plan(resources, bfq)?;
        if let Some(limit) = plan.check_limit_above_usage {
            let usage: u64 = fs::read(&self.dir, "memory.current")?
                .trim()
                .parse()
                .unwrap_or(0);
            if limit < usage {
                return Err(CgroupError::invalid(
                    "linux.resources.memory.limit",
                    format!("{limit} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
        write_all(&self.dir, &plan.writes)?;
        if let Some(d) = resources.devices() {
            bpf::install(&self.dir, &devices::rules(d)?)?;
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::read(&self.dir)
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
