//! husk-cgroups: the cgroup manager shared by the `husk` runtime (container
//! cgroups) and husklet (the pod hierarchy), one `CgroupManager` per
//! hierarchy layout (v2 unified, v1/hybrid).
//!
//! Kept light, since it is linked into the small static `husk`: libc,
//! oci-spec, serde, thiserror and tracing, all of which it links anyway.
//!
//! [`open`] detects the host's layout once, resolves `linux.cgroupsPath` the way
//! runc's cgroupfs driver does, and returns the manager for that layout. It
//! creates nothing: [`CgroupManager::apply`] makes the directories and moves
//! the container's first process in, [`CgroupManager::set`] writes the limits.
//! Call [`CgroupManager::validate`] before creating anything, so that bad
//! resources are refused while the host is still untouched.
//!
//! The managers apply exactly the device rules they are given; a container's
//! cgroup should get [`devices::container_resources`], which starts from
//! deny-all as runc does.

mod apply_writes;
mod convert;
pub mod devices;
mod error;
mod fs;
pub mod layout;
pub mod path;
pub mod stats;
pub mod v1;
pub mod v2;

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

pub use error::CgroupError;
pub use layout::{Hierarchy, Layout};
pub use path::CgroupPath;
pub use stats::{Event, Stats};

/// One container's cgroup, in whichever hierarchies the host has.
pub trait CgroupManager {
    /// Check `resources` against this host before anything is created: every
    /// value parses and is in range, and the controllers it needs exist.
    fn validate(&self, resources: &LinuxResources) -> Result<(), CgroupError>;

    /// Create the cgroup's directories (in every mounted hierarchy on v1,
    /// including the unified one on a hybrid host) and move `pid` in.
    fn apply(&self, pid: i32) -> Result<(), CgroupError>;

    /// The one directory a process can be created in directly (clone3's
    /// CLONE_INTO_CGROUP) instead of moved into: pure v2 only (on v1 and
    /// hybrid hosts there are several hierarchies to join).
    fn clone_target(&self) -> Option<PathBuf> {
        None
    }

    /// Create the [`CgroupManager::clone_target`] directory (and its
    /// ancestors, with their controllers enabled) for a first process to be
    /// created in; nothing to do without one.
    fn create_clone_target(&self) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Write the limits in `resources` (validating them first).
    fn set(&self, resources: &LinuxResources) -> Result<(), CgroupError>;

    /// Every process in the cgroup and its sub-cgroups.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    /// Freeze every process in the cgroup; returns once the kernel reports frozen.
    fn freeze(&self) -> Result<(), CgroupError>;

    /// Thaw a frozen cgroup.
    fn thaw(&self) -> Result<(), CgroupError>;

    /// True if the cgroup is frozen now.
    fn is_frozen(&self) -> Result<bool, CgroupError>;

    /// The cgroup's statistics, in runc's `events --stats` shape.
    fn stats(&self) -> Result<Stats, CgroupError>;

    /// Kill whatever is left in the cgroup and remove its directories.
    /// A cgroup that is already gone is not an error.
    fn destroy(&self) -> Result<(), CgroupError>;

    /// The cgroup's directories, one per hierarchy (only one on pure v2).
    fn dirs(&self) -> Vec<PathBuf>;

    /// True on a pure cgroup v2 host.
    fn is_unified(&self) -> bool;
}

/// The manager for the container's cgroup: the layout is detected once, the
/// path resolved (see [`path`]), nothing created.
pub fn open(
    cgroups_path: Option<&str>,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let path = CgroupPath::parse(cgroups_path, container_id)?;
    let layout = Layout::detect()?;
    Ok(open_in(&layout, &path))
}

/// The manager for `path` in an already detected layout.
pub fn open_in(layout: &Layout, path: &CgroupPath) -> Box<dyn CgroupManager> {
    match layout {
        Layout::Unified(h) => Box::new(v2::V2Manager::new(h.mountpoint.clone(), path.resolve(h))),
        Layout::Legacy(hs) => Box::new(v1::V1Manager::new(hs, path)),
    }
}
