//! The workspace's error convention, "each cause printed once": a Display
//! never repeats its `source()`. One error of each kind that carries an OS or
//! library cause is printed the way the CLI prints it (the whole chain), and
//! the cause must show up exactly once.

use std::error::Error;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::cgroups::CgroupError;
use crate::container::{ContainerError, error_chain};
use crate::hooks::{HookError, HookKind};
use crate::namespaces::NamespaceError;
use crate::rootfs::RootfsError;
use crate::seccomp::SeccompError;
use crate::terminal::TerminalError;

fn enoent() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOENT)
}

/// No link of `e`'s chain repeats the next one, and the full chain shows
/// `cause` exactly once.
fn assert_cause_once(e: &dyn Error, cause: &str) {
    husk_tests::error_links(e);
    let full = error_chain(e);
    assert_eq!(full.matches(cause).count(), 1, "{cause:?} in {full:?}");
}

#[test]
fn every_cause_is_printed_once() {
    let io = enoent().to_string();
    let errno = Errno::ENOENT.to_string();
    let path = PathBuf::from("/no/such");
    let seccomp = libseccomp::ScmpSyscall::from_name("no_such_syscall").unwrap_err();
    let seccomp_text = seccomp.to_string();
    let cases: Vec<(Box<dyn Error>, &str)> = vec![
        (
            Box::new(RootfsError::Mount {
                src: "proc".into(),
                dest: path.clone(),
                fstype: "proc".into(),
                flags: MsFlags::empty(),
                cause: Errno::ENOENT,
            }),
            &errno,
        ),
        (
            Box::new(RootfsError::Io {
                op: "open",
                path: path.clone(),
                cause: enoent(),
            }),
            &io,
        ),
        (
            Box::new(RootfsError::Pivot {
                path: path.clone(),
                cause: Errno::ENOENT,
            }),
            &errno,
        ),
        (
            Box::new(ContainerError::Hook(HookError::Spawn {
                kind: HookKind::Prestart,
                index: 0,
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::InvalidSeccomp(SeccompError::Libseccomp {
                field: "linux.seccomp.syscalls[0].names[0]".into(),
                cause: seccomp,
            })),
            &seccomp_text,
        ),
        (
            Box::new(ContainerError::InvalidSeccomp(SeccompError::Export(
                enoent(),
            ))),
            &io,
        ),
        (
            Box::new(ContainerError::Namespace(NamespaceError::Open {
                kind: "net",
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::Terminal(TerminalError::Connect {
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::Cgroup(CgroupError::Io {
                path: path.clone(),
                op: "create",
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::InvalidResources(CgroupError::Write {
                field: "linux.resources.memory.limit".into(),
                value: "1".into(),
                path: path.clone(),
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::Cgroup(CgroupError::Bpf {
                path: path.clone(),
                op: "attach",
                cause: enoent(),
            })),
            &io,
        ),
        (
            Box::new(ContainerError::Sys {
                op: "open state dir".into(),
                source: enoent(),
            }),
            &io,
        ),
    ];
    for (e, cause) in &cases {
        assert_cause_once(e.as_ref(), cause);
    }
}
