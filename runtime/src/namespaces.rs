//! Linux namespaces of a container: which to create, which to join by path,
//! and the order that makes user namespaces work.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

/// Errors while entering or creating namespaces.
///
/// Raised in cloned children too, whose errors cross the channel as text: the
/// cause is part of the message (`cause`, not a `#[source]`), printed once.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open {kind} namespace {path}: {cause}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("setns {kind} namespace {path}: {cause}")]
    Setns {
        kind: &'static str,
        path: PathBuf,
        cause: nix::Error,
    },
    #[error("unshare {flags:?}: {cause}")]
    Unshare {
        flags: CloneFlags,
        cause: nix::Error,
    },
    #[error("write {path}: {cause}")]
    Maps {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of a namespace type as /proc/<pid>/ns/ spells it.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// An open handle on a namespace to join.
#[derive(Debug)]
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace plan of a container: new ones as clone flags, joined ones as
/// open fds (opened by the runtime before it clones, so bad paths fail early).
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to create (without user and cgroup, handled separately).
    pub new: CloneFlags,
    pub new_user: bool,
    pub new_cgroup: bool,
    /// Namespaces to join, user first.
    pub join: Vec<Join>,
}

impl Plan {
    fn empty() -> Plan {
        Plan {
            new: CloneFlags::empty(),
            new_user: false,
            new_cgroup: false,
            join: Vec::new(),
        }
    }

    /// Build the plan from `linux.namespaces`.
    pub fn from_spec(linux: Option<&Linux>) -> Result<Plan, NamespaceError> {
        let mut plan = Plan::empty();
        let nss = linux.and_then(|l| l.namespaces().as_ref());
        for ns in nss.into_iter().flatten() {
            match ns.path() {
                Some(path) => plan.join.push(open_ns(ns.typ(), path)?),
                None => match ns.typ() {
                    LinuxNamespaceType::User => plan.new_user = true,
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    t => plan.new |= flag(t),
                },
            }
        }
        // Join the user namespace first: it grants the rights to join the rest.
        plan.join.sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        Ok(plan)
    }

    /// The plan for `exec`: join every namespace of `pid` that differs from ours.
    pub fn join_process(pid: i32) -> Result<Plan, NamespaceError> {
        use LinuxNamespaceType::*;
        let mut plan = Plan::empty();
        for t in [User, Ipc, Uts, Network, Pid, Cgroup, Mount] {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(t)));
            let ours = PathBuf::from(format!("/proc/self/ns/{}", proc_name(t)));
            let (a, b) = match (std::fs::read_link(&theirs), std::fs::read_link(&ours)) {
                (Ok(a), Ok(b)) => (a, b),
                // A kernel without that namespace type.
                _ => continue,
            };
            if a != b {
                plan.join.push(open_ns(t, &theirs)?);
            }
        }
        Ok(plan)
    }

    /// Whether the pid namespace is joined by path.
    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|j| j.typ == t)
    }

    /// Join every namespace except cgroup (joined after cgroup placement).
    pub fn enter_joined(&self, skip_cgroup: bool) -> Result<(), NamespaceError> {
        for j in &self.join {
            if skip_cgroup && j.typ == LinuxNamespaceType::Cgroup {
                continue;
            }
            setns(j)?;
        }
        Ok(())
    }

    /// Join the cgroup namespace if one is given by path.
    pub fn enter_cgroup(&self) -> Result<(), NamespaceError> {
        for j in self
            .join
            .iter()
            .filter(|j| j.typ == LinuxNamespaceType::Cgroup)
        {
            setns(j)?;
        }
        Ok(())
    }
}

fn setns(j: &Join) -> Result<(), NamespaceError> {
    nix::sched::setns(j.fd.as_fd(), flag(j.typ)).map_err(|cause| NamespaceError::Setns {
        kind: proc_name(j.typ),
        path: j.path.clone(),
        cause,
    })
}

fn open_ns(typ: LinuxNamespaceType, path: &Path) -> Result<Join, NamespaceError> {
    let f = File::open(path).map_err(|cause| NamespaceError::Open {
        kind: proc_name(typ),
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(Join {
        typ,
        path: path.to_path_buf(),
        fd: f.into(),
    })
}

/// unshare(2) with context.
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|cause| NamespaceError::Unshare { flags, cause })
}

/// Write uid_map and gid_map of `pid` (done by the runtime, in the parent user namespace).
pub fn write_id_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let fmt = |m: &[LinuxIdMapping]| {
        m.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (name, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, fmt(maps)).map_err(|cause| NamespaceError::Maps { path, cause })?;
    }
    Ok(())
}

/// Map a container id to the host id through `maps` (identity without maps).
pub fn host_id(maps: Option<&Vec<LinuxIdMapping>>, id: u32) -> u32 {
    match maps {
        None => id,
        Some(maps) => maps
            .iter()
            .find(|m| id >= m.container_id() && id - m.container_id() < m.size())
            .map(|m| m.host_id() + (id - m.container_id()))
            .unwrap_or(id),
    }
}
