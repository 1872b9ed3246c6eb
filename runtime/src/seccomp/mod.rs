//! Seccomp filters built from the OCI `linux.seccomp` profile.
//!
//! The filter is compiled with the `libseccomp` crate (bindings to Debian's
//! libseccomp, the library runc, crun and youki also use) rather than by
//! emitting BPF ourselves: libseccomp knows every architecture's syscall
//! table, the x32/x86 multiplexed calls (`socketcall`, `ipc`), 64-bit
//! argument comparisons on 32-bit ABIs and the jump-table layout, and it is
//! maintained alongside new kernels. A hand-written BPF emitter would have
//! to duplicate all of that to give the same answers as runc.
//!
//! The work is split in two so that the part which runs in the container's
//! init is a single syscall:
//! - [`compile`] validates the profile and asks libseccomp for the BPF
//!   program (exported through a memfd). It allocates, so the runtime can
//!   call it before cloning, where a bad profile is also best rejected.
//! - [`SeccompProgram::load`] installs the program with `seccomp(2)`. It
//!   does not allocate, so it is safe right after `fork`/`clone`.
//!
//! [`apply`] does both, for callers that are single-threaded anyway.
//!
//! The filter does not set `no_new_privs` (runc's behaviour): the caller
//! either sets it for `process.noNewPrivileges` first, or must still hold
//! CAP_SYS_ADMIN when loading.
//!
//! Like runc, unknown syscall names are skipped (they may be newer than this
//! libseccomp), and rules whose action equals the default action are
//! dropped. Unlike runc, SCMP_ACT_NOTIFY is refused with a clear error, as
//! husk has no seccomp agent (`listenerPath`) support.

mod json;
mod load;
mod profile;

pub use json::validate_json;
pub use load::SeccompProgram;
pub use profile::compile;

use oci_spec::runtime::LinuxSeccomp;

/// Why a seccomp profile was rejected or could not be loaded. Loaded in the
/// container's init, whose errors cross the channel as text: causes are part
/// of the message (`cause`, never a `#[source]`), printed once.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile itself is invalid; `field` is its JSON path
    /// (`linux.seccomp.syscalls[3].action`).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// libseccomp refused to build the filter.
    #[error("{field}: libseccomp: {cause}")]
    Libseccomp {
        field: String,
        cause: libseccomp::error::SeccompError,
    },
    /// Exporting the compiled program from libseccomp failed.
    #[error("export seccomp BPF program: {0}")]
    Export(std::io::Error),
    /// The kernel refused the program.
    #[error("load seccomp filter (flags {flags:#x}): {errno}")]
    Load {
        flags: u32,
        errno: nix::errno::Errno,
    },
}

impl SeccompError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SeccompError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Build the filter for `seccomp` and load it into the calling process.
///
/// Meant for the container's init: single-threaded, after its other setup.
pub fn apply(seccomp: &LinuxSeccomp) -> Result<(), SeccompError> {
    compile(seccomp)?.load()
}

/// Check a profile completely (everything [`apply`] would check, including
/// libseccomp building the filter) without loading anything.
pub fn validate(seccomp: &LinuxSeccomp) -> Result<(), SeccompError> {
    compile(seccomp).map(|_| ())
}

#[cfg(test)]
mod tests;
