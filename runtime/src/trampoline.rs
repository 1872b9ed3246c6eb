//! The exec trampoline: protection against CVE-2019-5736.
//!
//! The container's process is not exec'd straight from the runtime's image:
//! the init execs a tiny static program kept in a sealed memfd, which in turn
//! execs the user's program. At the moment the user program is exec'd,
//! `/proc/self/exe` is therefore the sealed memfd, never the `husk` binary on
//! the host: a `#!/proc/self/exe` entrypoint cannot reach (let alone rewrite)
//! the runtime. The trampoline only execs when called with its marker as
//! argv[0]; otherwise it exits 126. It costs one memfd and ~200 bytes, not a
//! copy of the runtime.
//!
//! Protocol: argv = ["HUSKEXEC", path, argv0, argv1, ...], envp as given.
//!
//! Before that exec, the runtime's own image runs in the container's reach
//! (the created init, the process `exec` clones into the container): a
//! process there with CAP_SYS_PTRACE can open `/proc/<pid>/exe`. So `create`,
//! `run` and `exec` first re-exec the runtime from a read-only view of its
//! binary ([`protect_runtime_exe`]): a detached, read-only bind mount of the
//! file (runc ≥ 1.2 does the same with an overlay), or a sealed memfd copy
//! where mounts are not allowed. `/proc/<pid>/exe` then never resolves to a
//! writable host file.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// argv[0] that makes the trampoline exec.
pub const MARKER: &CStr = c"HUSKEXEC";

#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62; // EM_X86_64

/// x86-64 code of the trampoline (assembled from, in Intel syntax):
/// ```text
///   mov rdi,[rsp]; cmp rdi,3; jl bad          ; argc >= 3
///   mov rsi,[rsp+8]; mov rax,[rsi]            ; argv[0] == "HUSKEXEC\0"
///   movabs rcx,"HUSKEXEC"; cmp rax,rcx; jne bad
///   cmp byte [rsi+8],0; jne bad
///   lea rdx,[rsp+rdi*8+16]                    ; envp
///   mov rdi,[rsp+16]; lea rsi,[rsp+24]        ; execve(argv[1], &argv[2], envp)
///   mov eax,59; syscall
///   mov edi,127; jmp out                      ; exec failed
/// bad: mov edi,126
/// out: mov eax,231; syscall                   ; exit_group
/// ```
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x3c, 0x24, 0x48, 0x83, 0xff, 0x03, 0x7c, 0x3a, 0x48, 0x8b, 0x74, 0x24, 0x08, 0x48,
    0x8b, 0x06, 0x48, 0xb9, 0x48, 0x55, 0x53, 0x4b, 0x45, 0x58, 0x45, 0x43, 0x48, 0x39, 0xc8, 0x75,
    0x23, 0x80, 0x7e, 0x08, 0x00, 0x75, 0x1d, 0x48, 0x8d, 0x54, 0xfc, 0x10, 0x48, 0x8b, 0x7c, 0x24,
    0x10, 0x48, 0x8d, 0x74, 0x24, 0x18, 0xb8, 0x3b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00,
    0x00, 0x00, 0xeb, 0x05, 0xbf, 0x7e, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

/// A minimal static ELF64 executable: header, one PT_LOAD segment, the code.
#[cfg(target_arch = "x86_64")]
fn elf() -> Vec<u8> {
    const BASE: u64 = 0x400000;
    const HDR: u64 = 64 + 56;
    let total = HDR + CODE.len() as u64;
    let mut e = Vec::with_capacity(total as usize);
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI.
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&MACHINE.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + HDR).to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    // Program header: PT_LOAD, R+X, the whole file at BASE.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    e.extend_from_slice(&total.to_le_bytes()); // p_filesz
    e.extend_from_slice(&total.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(CODE);
    e
}

/// Create the sealed trampoline memfd (close-on-exec).
#[cfg(target_arch = "x86_64")]
pub fn create() -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static C string name and flags.
    let fd = unsafe {
        libc::memfd_create(
            c"husk-exec".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd; we own it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(fd);
    f.write_all(&elf())?;
    let fd: OwnedFd = f.into();
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on our memfd.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::F_ADD_SEALS,
            seals,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let _ = fd.as_fd();
    Ok(fd)
}

/// Whether the running binary is already one nobody can write: on a
/// read-only mount, or a sealed memfd.
fn exe_is_protected() -> bool {
    if let Ok(st) = nix::sys::statvfs::statvfs("/proc/self/exe")
        && st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    {
        return true;
    }
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS only reads the seals of our own fd.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// The runtime binary as a detached, read-only bind mount (an O_PATH-like
/// fd, close-on-exec). Needs CAP_SYS_ADMIN and Linux 5.12.
fn readonly_view() -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 1;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // SAFETY: open_tree takes a C string path and flags and returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (of the size we pass) and changes
    // only the detached mount behind our fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The runtime binary copied into a sealed memfd (close-on-exec).
fn sealed_copy() -> std::io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static C string name and flags.
    let fd = unsafe {
        libc::memfd_create(
            c"husk".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this fd; we own it.
    let mut dst = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut src = std::fs::File::open("/proc/self/exe")?;
    std::io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on our memfd.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&dst),
            libc::F_ADD_SEALS,
            seals,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(dst.into())
}

/// Make sure the runtime runs from a binary nobody can write, re-exec'ing
/// it (same argv, environment and inherited fds) from a read-only view or a
/// sealed copy when it does not. Returns when it already does, or with the
/// error when neither view could be had or exec'd.
pub fn protect_runtime_exe() -> std::io::Result<()> {
    // Set for the re-exec'd runtime: never loop, whatever statvfs says.
    const REEXECED: &str = "_HUSK_REEXECED";
    if std::env::var_os(REEXECED).is_some() {
        // SAFETY: called first thing in main, while the process has one thread.
        unsafe { std::env::remove_var(REEXECED) };
        return Ok(());
    }
    if exe_is_protected() {
        return Ok(());
    }
    let fd = readonly_view().or_else(|_| sealed_copy())?;
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .filter_map(|a| std::ffi::CString::new(a.into_encoded_bytes()).ok())
        .collect();
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .chain(std::iter::once(c"_HUSK_REEXECED=1".to_owned()))
        .collect();
    let argv: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
    let envp: Vec<&CStr> = env.iter().map(|e| e.as_c_str()).collect();
    Err(crate::sys::execveat_fd(fd.as_fd(), &argv, &envp))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn create() -> std::io::Result<OwnedFd> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the exec trampoline is only built for x86_64",
    ))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(argv0: &str, rest: &[&str]) -> std::process::ExitStatus {
        let fd = create().unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        // Clear CLOEXEC in the child via a dup in pre_exec is overkill: open the
        // memfd path from the parent and exec it through /proc.
        let copy = std::env::temp_dir().join(format!(
            "husk-tramp-{}-{}",
            std::process::id(),
            argv0.replace('/', "_")
        ));
        std::fs::copy(&path, &copy).unwrap();
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        use std::os::unix::process::CommandExt;
        let st = Command::new(&copy).arg0(argv0).args(rest).status().unwrap();
        let _ = std::fs::remove_file(&copy);
        st
    }

    #[test]
    fn execs_only_with_marker() {
        assert_eq!(
            run("HUSKEXEC", &["/bin/sh", "sh", "-c", "exit 7"]).code(),
            Some(7)
        );
        assert_eq!(
            run("HUSKEXE", &["/bin/sh", "sh", "-c", "exit 7"]).code(),
            Some(126)
        );
        assert_eq!(run("/proc/self/exe", &["/bin/sh", "sh"]).code(), Some(126));
        assert_eq!(run("HUSKEXEC", &["/nonexistent", "x"]).code(), Some(127));
    }

    #[test]
    fn is_sealed() {
        let fd = create().unwrap();
        let f = std::fs::File::from(fd);
        assert!((&f).write_all(b"x").is_err());
    }
}
