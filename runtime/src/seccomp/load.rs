//! A compiled seccomp program and its allocation-free loader.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use libseccomp::ScmpFilterContext;
use nix::errno::Errno;
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::SeccompError;

pub(crate) const FILTER_FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
pub(crate) const FILTER_FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
pub(crate) const FILTER_FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// A BPF program compiled from a profile, plus the `SECCOMP_FILTER_FLAG_*` bits to load it with.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    insns: Vec<libc::sock_filter>,
    flags: u32,
}

impl SeccompProgram {
    /// Export the program libseccomp generated for `ctx`.
    pub(crate) fn export(ctx: &ScmpFilterContext, flags: u32) -> Result<Self, SeccompError> {
        let fd = memfd_create("husk-seccomp", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Export(e.into()))?;
        let mut file = File::from(fd);
        ctx.export_bpf(&file)
            .map_err(|cause| SeccompError::Libseccomp {
                field: "linux.seccomp".into(),
                cause,
            })?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(SeccompError::Export)?;
        let insns = decode(&bytes)?;
        if insns.is_empty() || insns.len() > MAX_INSNS {
            return Err(SeccompError::invalid(
                "linux.seccomp",
                format!(
                    "the filter compiles to {} BPF instructions; the kernel accepts 1..={MAX_INSNS}",
                    insns.len()
                ),
            ));
        }
        Ok(SeccompProgram { insns, flags })
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program is empty (never true for a compiled program).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits the program is loaded with.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Install the filter on the calling thread (all threads with TSYNC).
    ///
    /// One `seccomp(2)` call, no allocation: safe in a freshly forked child.
    /// Needs `no_new_privs` set or CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            // export() bounds the length by MAX_INSNS, which fits in u16.
            len: self.insns.len() as u16,
            filter: self.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the
        // instructions it points to, both alive for the duration of the call;
        // the kernel copies them and keeps no pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Load {
                flags: self.flags,
                errno: Errno::last(),
            });
        }
        Ok(())
    }
}

/// struct sock_filter is { u16 code; u8 jt; u8 jf; u32 k } in native byte order.
fn decode(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    if bytes.len() % 8 != 0 {
        return Err(SeccompError::Export(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "BPF program of {} bytes is not a whole number of instructions",
                bytes.len()
            ),
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}
