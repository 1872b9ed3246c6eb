//! The cgroup module's error type.

use std::path::PathBuf;

/// Everything that can go wrong placing a container in a cgroup or limiting it.
///
/// Input errors name the spec field (`linux.cgroupsPath`,
/// `linux.resources.memory.limit`); host errors name the cgroup file. Causes
/// are part of the message (`cause`, never a `#[source]`), printed once, like
/// the runtime's own leaf errors.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `slice:prefix:name` paths need the systemd driver, which husk does not have.
    #[error("linux.cgroupsPath: systemd cgroup paths are not supported: {0:?}")]
    SystemdPath(String),

    /// A cgroupsPath that cannot be used (`..`, empty components, ...).
    #[error("linux.cgroupsPath: {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    /// The cgroup mounts of this host could not be understood.
    #[error("cgroup layout: {0}")]
    Layout(String),

    /// A resource value in the spec (or an update) is malformed or out of range.
    #[error("{field}: {reason}")]
    InvalidResource { field: String, reason: String },

    /// A resource the spec asks for that this host's cgroups cannot enforce.
    #[error("{field}: cannot be enforced on this host: {reason}")]
    Unsupported { field: String, reason: String },

    /// Reading or writing a cgroup file or directory failed.
    #[error("cgroup {}: {op}: {cause}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        cause: std::io::Error,
    },

    /// Writing a limit into its cgroup file failed.
    #[error("{field}: write {value:?} to {}: {cause}", path.display())]
    Write {
        field: String,
        value: String,
        path: PathBuf,
        cause: std::io::Error,
    },

    /// Building, loading or attaching the cgroup v2 device eBPF program failed.
    #[error("cgroup {}: device filter: {op}: {cause}", path.display())]
    Bpf {
        path: PathBuf,
        op: &'static str,
        cause: std::io::Error,
    },

    /// An operation that waits for the kernel (freeze, kill) did not finish in time.
    #[error("cgroup {}: {what} did not finish within {secs}s", path.display())]
    Timeout {
        path: PathBuf,
        what: &'static str,
        secs: u64,
    },
}

impl CgroupError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, cause: std::io::Error) -> Self {
        CgroupError::Io {
            path: path.into(),
            op,
            cause,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::InvalidResource {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
