//! Running the OCI runtime: `create`, `exec --detach` and `start`, with the
//! container's stdio, and the runtime's error text when it fails.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};

use crate::args::Args;
use crate::error::{ShimError, io_err};
use husk_shim::layout;

/// The container-side ends of its stdio (pipes, or /dev/null).
pub struct ChildStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// `<runtime> --root R --log <dir>/runtime.log --log-format json`.
fn base(args: &Args) -> Command {
    let mut c = Command::new(&args.runtime);
    // The runtime (and so the container) starts with every signal at its
    // default: nothing the launcher ignored, including glibc's internal
    // signals 32 and 33, which glibc's posix_spawn leaves ignored in the
    // children of any glibc program (husklet's shim included) and which
    // glibc's sigaction() refuses to touch: hence the raw rt_sigaction.
    // std resets the signal mask itself (SIGCHLD is blocked here).
    // SAFETY: the closure runs between fork and exec and makes only
    // rt_sigaction system calls with a zeroed (SIG_DFL, no flags, empty
    // mask) kernel sigaction that lives across each call.
    unsafe {
        c.pre_exec(|| {
            let dfl = [0u64; 4];
            for sig in 1..=64 {
                // SIGKILL and SIGSTOP refuse: that is fine.
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0usize, 8usize);
            }
            Ok(())
        });
    }
    c.arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(args.dir.join(layout::RUNTIME_LOG))
        .arg("--log-format")
        .arg("json");
    c
}

/// Run `husk create` (or `husk exec --detach` with `--exec`), the process's
/// stdio being `stdio`, or a pty whose master the runtime sends to
/// `console`. Returns the master when there is a tty.
pub fn create(
    args: &Args,
    stdio: ChildStdio,
    console: Option<&UnixListener>,
) -> Result<Option<OwnedFd>, ShimError> {
    let mut cmd = base(args);
    let verb = match &args.exec {
        Some(process) => {
            cmd.arg("exec")
                .arg("--process")
                .arg(process)
                .arg("--detach");
            "exec"
        }
        None => {
            cmd.arg("create").arg("--bundle").arg(&args.bundle);
            "create"
        }
    };
    cmd.arg("--pid-file").arg(args.dir.join(layout::PID));
    if console.is_some() {
        cmd.arg("--console-socket")
            .arg(args.dir.join(layout::CONSOLE_SOCK));
    }
    cmd.arg(&args.id);
    cmd.stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    let child = cmd
        .spawn()
        .map_err(io_err(format!("run {}", args.runtime.display())))?;
    // The Command holds the container's ends of the pipes: close them here,
    // so that only the container has them and EOF means it closed them.
    drop(cmd);
    let (status, master) = match console {
        Some(l) => wait_with_console(child, l)?,
        None => (wait(child)?, None),
    };
    if !status.success() {
        return Err(ShimError::Runtime(failure(args, verb, status, "")));
    }
    if console.is_some() && master.is_none() {
        return Err(ShimError::Runtime(format!(
            "{} {verb} sent no pty master to the console socket",
            args.runtime.display()
        )));
    }
    Ok(master)
}

/// `husk delete --force ID` (exec sessions: nothing), best effort: undoing
/// a create the shim cannot follow up on.
pub fn delete_force(args: &Args) {
    if args.exec.is_some() {
        return;
    }
    let _ = base(args)
        .args(["delete", "--force"])
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Release an exited container (`--release ROOTFS`): `husk delete ID`, then
/// unmount its rootfs. Whether both worked; a failure is printed and left
/// to husklet's RemoveContainer, which forces both.
pub fn release(args: &Args, rootfs: &Path) -> bool {
    let deleted = match base(args)
        .arg("delete")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!(
                "husk-shim: {}",
                failure(args, "delete", out.status, &stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("husk-shim: run {}: {e}", args.runtime.display());
            false
        }
    };
    let unmounted = match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (any more).
        Ok(()) | Err(nix::errno::Errno::EINVAL) => true,
        Err(e) => {
            eprintln!("husk-shim: unmount {}: {e}", rootfs.display());
            false
        }
    };
    deleted && unmounted
}

/// `husk start ID`.
pub fn start(args: &Args) -> Result<(), ShimError> {
    let out = base(args)
        .arg("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err(format!("run {}", args.runtime.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(ShimError::Runtime(failure(
        args, "start", out.status, &stderr,
    )))
}

fn wait(mut child: Child) -> Result<ExitStatus, ShimError> {
    child.wait().map_err(io_err("wait for the runtime"))
}

/// Wait for the runtime while taking the pty master it sends.
fn wait_with_console(
    mut child: Child,
    l: &UnixListener,
) -> Result<(ExitStatus, Option<OwnedFd>), ShimError> {
    let mut master = None;
    loop {
        if master.is_none() {
            let mut p = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut p, PollTimeout::from(20u8));
            if let Ok((s, _)) = l.accept() {
                master = recv_fd(&s);
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(st) = child.try_wait().map_err(io_err("wait for the runtime"))? {
            if master.is_none() {
                if let Ok((s, _)) = l.accept() {
                    master = recv_fd(&s);
                }
            }
            return Ok((st, master));
        }
    }
}

/// The fd in one SCM_RIGHTS message on `s` (runc's console protocol).
fn recv_fd(s: &std::os::unix::net::UnixStream) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut out = None;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed this fd in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                out.get_or_insert(owned);
            }
        }
    }
    out
}

/// The runtime's error text: its last `error` line in runtime.log (the
/// message it printed), else its stderr, else its exit status.
fn failure(args: &Args, verb: &str, status: ExitStatus, stderr: &str) -> String {
    if let Some(msg) = last_error(&args.dir.join(layout::RUNTIME_LOG)) {
        return msg;
    }
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        return stderr.to_string();
    }
    format!("{} {verb} failed: {status}", args.runtime.display())
}

fn last_error(log: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(log)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error").then(|| v["msg"].as_str().map(str::to_string))?
    })
}

/// `process.terminal` of a config.json, or `terminal` of a process JSON,
/// and `linux.cgroupsPath` of the bundle's config.
pub struct Spec {
    pub terminal: bool,
    pub cgroups_path: Option<String>,
}

/// Read what the shim needs from the bundle (and the exec process JSON).
pub fn read_spec(args: &Args) -> Result<Spec, ShimError> {
    let config = read_json(&args.bundle.join("config.json"))?;
    let terminal = match &args.exec {
        Some(p) => read_json(p)?["terminal"].as_bool().unwrap_or(false),
        None => config["process"]["terminal"].as_bool().unwrap_or(false),
    };
    let cgroups_path = config["linux"]["cgroupsPath"].as_str().map(str::to_string);
    Ok(Spec {
        terminal,
        cgroups_path,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, ShimError> {
    let text = std::fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| ShimError::Io {
        what: format!("parse {}", path.display()),
        source: std::io::Error::other(e),
    })
}
