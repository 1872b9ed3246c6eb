//! The cgroup v1 manager (also hybrid hosts: v1 controllers plus an empty
//! unified hierarchy, which gets the process too, as runc does).

pub mod resources;
mod stats;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::apply_writes::write_one;
use super::convert::Write;
use super::stats::Stats;
use super::{CgroupError, CgroupManager, CgroupPath, Hierarchy, fs};

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone)]
pub struct V1Dir {
    /// The hierarchy's controllers (empty for the unified hierarchy of a hybrid host).
    pub controllers: Vec<String>,
    /// The container's cgroup directory in it.
    pub dir: PathBuf,
    /// Where the hierarchy is mounted.
    pub mountpoint: PathBuf,
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
                    mountpoint: h.mountpoint.clone(),
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
        for file in ["cpuset.cpus", "cpuset.mems"] {
            Self::inherit_cpuset(dir, file)?;
        }
        Ok(())
    }

    /// `file` of `dir`, copied down from the nearest ancestor that has it
    /// when `dir`'s is empty. An ancestor can be empty too: another
    /// container sharing it (two pods of one QoS class under
    /// kubepods/besteffort) may have made it and not yet filled it in, and
    /// copying its empty value would leave this group unable to take any
    /// process (ENOSPC). The root cpuset is never empty; the writes of
    /// racing callers are the same value.
    fn inherit_cpuset(dir: &Path, file: &str) -> Result<String, CgroupError> {
        let own = fs::read(dir, file)?.trim().to_string();
        if !own.is_empty() {
            return Ok(own);
        }
        let Some(parent) = dir.parent() else {
            return Ok(own);
        };
        let value = Self::inherit_cpuset(parent, file)?;
        fs::write(dir, file, &value)?;
        Ok(value)
    }

    fn bfq(&self) -> bool {
        self.dirs
            .iter()
            .find(|d| d.has("blkio"))
            .is_some_and(|d| d.mountpoint.join("blkio.bfq.weight").exists())
    }

    /// The directory a write goes to, after checking the host has the
    /// controller and the file (looked up in the nearest existing ancestor).
    fn target(&self, w: &Write) -> Result<&V1Dir, CgroupError> {
        let ctrl = resources::controller_of(&w.file);
        let d = self.dirs.iter().find(|d| d.has(ctrl)).ok_or_else(|| {
            CgroupError::unsupported(
                &w.field,
                format!("the {ctrl} controller is not mounted on this host"),
            )
        })?;
        let probe = d
            .dir
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(&d.mountpoint);
        // The root group has no pids.max; every other file is there too.
        let root_exempt = probe == d.mountpoint && w.file == "pids.max";
        if !root_exempt && !probe.join(&w.file).exists() {
            return Err(CgroupError::unsupported(
                &w.field,
                format!("this kernel has no {} in {}", w.file, probe.display()),
            ));
        }
        Ok(d)
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
        for w in resources::plan(resources, self.bfq())? {
            self.target(&w)?;
        }
        Ok(())
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
        let writes = resources::plan(resources, self.bfq())?;
        for w in &writes {
            self.target(w)?;
        }
        let mut pending_memsw: Option<&Write> = None;
        for w in &writes {
            let d = self.target(w)?;
            match w.file.as_str() {
                // memory.limit_in_bytes may not exceed memsw and memsw may not go
                // below it: when raising both, memsw has to go first.
                "memory.limit_in_bytes" => {
                    if write_one(&d.dir, w).is_err() {
                        if let Some(sw) = writes
                            .iter()
                            .find(|x| x.file == "memory.memsw.limit_in_bytes")
                        {
                            write_one(&d.dir, sw)?;
                        }
                        write_one(&d.dir, w)?;
                    }
                    pending_memsw = None;
                }
                "memory.memsw.limit_in_bytes" => pending_memsw = Some(w),
                _ => write_one(&d.dir, w)?,
            }
            if let Some(sw) = pending_memsw.take() {
                write_one(&d.dir, sw)?;
            }
        }
        if let Some(limit) = resources
            .memory()
            .as_ref()
            .filter(|m| m.check_before_update() == Some(true))
            .and_then(|m| m.limit())
            .filter(|&l| l > 0)
            && let Some(mem) = self.dir_of("memory")
        {
            let usage = fs::read_u64(mem, "memory.usage_in_bytes")?;
            if (limit as u64) < usage {
                return Err(CgroupError::invalid(
                    "linux.resources.memory.limit",
                    format!("{limit} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::read(self)
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
