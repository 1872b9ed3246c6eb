//! The cgroup v1 manager (also hybrid hosts: v1 controllers plus an empty
//! unified hierarchy, which gets the process too, as runc does).

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::fs;
use super::{CgroupError, CgroupManager, CgroupPath, Hierarchy};

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone)]
pub struct V1Dir {
    /// The hierarchy's controllers (empty for the unified hierarchy of a hybrid host).
    pub controllers: Vec<String>,
    /// The container's cgroup directory in it.
    pub dir: PathBuf,
}

impl V1Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// A container's cgroup on a v1 or hybrid host.
#[derive(Debug, Clone)]
pub struct V1Manager {
    dirs: Vec<V1Dir>,
}

impl V1Manager {
    /// The manager for `path` in each of the mounted `hierarchies`.
    pub fn new(hierarchies: &[Hierarchy], path: &CgroupPath) -> Self {
        V1Manager {
            dirs: hierarchies
                .iter()
                .map(|h| V1Dir {
                    controllers: h.controllers.clone(),
                    dir: path.resolve(h),
                })
                .collect(),
        }
    }

    /// The container's directory in the hierarchy holding `controller`.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.has(controller))
            .map(|d| d.dir.as_path())
    }

    /// The directory to list processes from: any hierarchy holds them all.
    fn procs_dir(&self) -> Option<&Path> {
        ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir_of(c))
            .or_else(|| self.dirs.first().map(|d| d.dir.as_path()))
    }

    /// A new cpuset group starts with empty cpus/mems and cannot take
    /// processes until they are copied from the parent.
    fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
        let Some(parent) = dir.parent() else {
            return Ok(());
        };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(dir, file)?.trim().is_empty() {
                let from_parent = fs::read(parent, file)?;
                fs::write(dir, file, from_parent.trim())?;
            }
        }
        Ok(())
    }

    fn freezer(&self) -> Result<&Path, CgroupError> {
        self.dir_of("freezer").ok_or_else(|| {
            CgroupError::unsupported("freezer", "the freezer controller is not mounted")
        })
    }

    fn freezer_state(&self) -> Result<String, CgroupError> {
        Ok(fs::read(self.freezer()?, "freezer.state")?
            .trim()
            .to_string())
    }

    fn set_freezer(&self, state: &'static str) -> Result<(), CgroupError> {
        let dir = self.freezer()?;
        fs::write(dir, "freezer.state", state)?;
        // FREEZING may linger while tasks are in uninterruptible sleep; writing
        // again nudges the kernel, as runc does.
        fs::wait_until(dir, "freezer.state", 10, || {
            let now = self.freezer_state()?;
            if now == state {
                return Ok(true);
            }
            fs::write(dir, "freezer.state", state)?;
            Ok(false)
        })
    }
}

impl CgroupManager for V1Manager {
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
        let pid = pid.to_string();
        for d in &self.dirs {
            if d.has("cpuset") {
                fs::create_dirs(&d.dir, Self::init_cpuset)?;
            } else {
                fs::create_dirs(&d.dir, |_| Ok(()))?;
            }
            fs::write(&d.dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.validate(resources)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match self.procs_dir() {
            Some(d) => fs::pids_recursive(d),
            None => Ok(Vec::new()),
        }
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer("FROZEN")
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer("THAWED")
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(self.freezer_state()? == "FROZEN")
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        if let Some(probe) = self.procs_dir() {
            let frozen_kill = self.dir_of("freezer").is_some_and(Path::exists);
            fs::wait_until(probe, "kill", 10, || {
                let pids = self.pids()?;
                if pids.is_empty() {
                    return Ok(true);
                }
                // Frozen, nothing can fork between listing and killing; the
                // kills take effect on thaw.
                if frozen_kill {
                    let _ = self.set_freezer("FROZEN");
                }
                fs::kill_all(&self.pids()?);
                if frozen_kill {
                    let _ = self.set_freezer("THAWED");
                }
                Ok(false)
            })?;
        }
        for d in &self.dirs {
            fs::remove_tree(&d.dir)?;
        }
        Ok(())
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.dir.clone()).collect()
    }

    fn is_unified(&self) -> bool {
        false
    }
}
