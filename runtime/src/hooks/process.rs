//! Running one hook process: spawn, feed, capture, wait with a deadline.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};
use oci_spec::runtime::Hook;

use super::{HookError, HookKind};

/// How much of a hook's stdout and stderr is kept for the error message.
const MAX_CAPTURE: usize = 16 * 1024;
/// Poll interval when the kernel has no pidfds (before Linux 5.3).
const FALLBACK_TICK: Duration = Duration::from_millis(10);

/// A validated hook, ready to run.
pub(super) struct HookCommand<'a> {
    kind: HookKind,
    index: usize,
    hook: &'a Hook,
    timeout: Option<Duration>,
    env: Option<Vec<(&'a OsStr, &'a OsStr)>>,
}

impl<'a> HookCommand<'a> {
    pub(super) fn new(kind: HookKind, index: usize, hook: &'a Hook) -> Result<Self, HookError> {
        let invalid = |field, reason: String| HookError::Invalid {
            kind,
            index,
            field,
            reason,
        };
        if !hook.path().is_absolute() {
            return Err(invalid(
                "path",
                format!("{:?} is not an absolute path", hook.path()),
            ));
        }
        let timeout = match hook.timeout() {
            None => None,
            Some(t) if t > 0 => Some(Duration::from_secs(t as u64)),
            Some(t) => return Err(invalid("timeout", format!("{t} is not greater than zero"))),
        };
        let env = match hook.env() {
            None => None,
            Some(env) => Some(
                env.iter()
                    .enumerate()
                    .map(|(j, e)| match e.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Ok((OsStr::new(k), OsStr::new(v))),
                        _ => Err(invalid(
                            "env",
                            format!("entry {j} ({e:?}) is not KEY=VALUE"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(HookCommand {
            kind,
            index,
            hook,
            timeout,
            env,
        })
    }

    fn command(&self, stdin: OwnedFd) -> Command {
        let mut cmd = Command::new(self.hook.path());
        if let Some((argv0, rest)) = self.hook.args().as_deref().and_then(|a| a.split_first()) {
            cmd.arg0(argv0).args(rest);
        }
        if let Some(env) = &self.env {
            cmd.env_clear().envs(env.iter().copied());
        }
        cmd.stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn wait_err(&self, what: &'static str, errno: Errno) -> HookError {
        HookError::Wait {
            kind: self.kind,
            index: self.index,
            path: self.hook.path().clone(),
            what,
            errno,
        }
    }

    /// Run the hook to completion, or kill it at its deadline.
    pub(super) fn run(&self, state_json: &[u8]) -> Result<(), HookError> {
        let stdin = state_file(state_json).map_err(|e| self.wait_err("write state to stdin", e))?;
        let mut child = self
            .command(stdin)
            .spawn()
            .map_err(|cause| HookError::Spawn {
                kind: self.kind,
                index: self.index,
                path: self.hook.path().clone(),
                cause,
            })?;
        let pid = Pid::from_raw(child.id() as i32);
        let mut out = Capture::new(child.stdout.take().map(OwnedFd::from));
        let mut err = Capture::new(child.stderr.take().map(OwnedFd::from));
        let outcome = self.wait(pid, &mut out, &mut err);
        // Whatever the hook wrote before it ended is still in the pipes.
        out.drain();
        err.drain();
        let (stdout, stderr) = (out.text(), err.text());
        match outcome {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(status) => Err(HookError::Failed {
                kind: self.kind,
                index: self.index,
                path: self.hook.path().clone(),
                status: describe(status),
                stdout,
                stderr,
            }),
            Err(Outcome::TimedOut(timeout)) => Err(HookError::TimedOut {
                kind: self.kind,
                index: self.index,
                path: self.hook.path().clone(),
                timeout,
                stdout,
                stderr,
            }),
            Err(Outcome::Error(what, errno)) => Err(self.wait_err(what, errno)),
        }
    }

    /// Wait for `pid` while draining its output, until it exits or the deadline passes.
    fn wait(&self, pid: Pid, out: &mut Capture, err: &mut Capture) -> Result<WaitStatus, Outcome> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let pidfd = pidfd_open(pid);
        loop {
            let now = Instant::now();
            if let Some(d) = deadline
                && now >= d
            {
                let _ = kill(pid, Signal::SIGKILL);
                wait_blocking(pid).map_err(|e| Outcome::Error("wait for killed hook", e))?;
                return Err(Outcome::TimedOut(self.timeout.unwrap_or_default()));
            }
            let mut wait_for = deadline.map(|d| d - now);
            if pidfd.is_none() {
                wait_for = Some(wait_for.map_or(FALLBACK_TICK, |w| w.min(FALLBACK_TICK)));
            }
            let timeout = wait_for.map_or(PollTimeout::NONE, |w| {
                // Round up so that a sub-millisecond remainder does not spin.
                PollTimeout::try_from(w + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            });

            let mut fds = Vec::with_capacity(3);
            if let Some(p) = &pidfd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            let out_at = out.fd().map(|f| {
                fds.push(PollFd::new(f, PollFlags::POLLIN));
                fds.len() - 1
            });
            let err_at = err.fd().map(|f| {
                fds.push(PollFd::new(f, PollFlags::POLLIN));
                fds.len() - 1
            });
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Outcome::Error("poll", e)),
            }
            let ready = |i: Option<usize>| {
                i.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let (out_ready, err_ready) = (ready(out_at), ready(err_at));
            let exited = pidfd.is_none() || ready(Some(0));
            drop(fds);
            if out_ready {
                out.drain();
            }
            if err_ready {
                err.drain();
            }
            if exited {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                    Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                        return Ok(status);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Outcome::Error("wait", e)),
                }
            }
        }
    }
}

enum Outcome {
    TimedOut(Duration),
    Error(&'static str, Errno),
}

/// One of the hook's output pipes, read without blocking.
struct Capture {
    fd: Option<File>,
    data: Vec<u8>,
}

impl Capture {
    fn new(fd: Option<OwnedFd>) -> Self {
        let fd = fd.and_then(|fd| {
            let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).ok()?);
            fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).ok()?;
            Some(File::from(fd))
        });
        Capture {
            fd,
            data: Vec::new(),
        }
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Read what is available; close the pipe at EOF. Output beyond
    /// MAX_CAPTURE is read and dropped so the hook never blocks on a full pipe.
    fn drain(&mut self) {
        let Some(f) = self.fd.as_mut() else { return };
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    self.fd = None;
                    return;
                }
                Ok(n) => {
                    let room = MAX_CAPTURE.saturating_sub(self.data.len());
                    self.data.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.fd = None;
                    return;
                }
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The state JSON in a memfd, positioned at its start: the hook reads it as
/// stdin whether or not it reads all of it, and the runtime never blocks
/// writing to a pipe nobody reads.
fn state_file(state_json: &[u8]) -> Result<OwnedFd, Errno> {
    let fd = memfd_create("husk-hook-state", MFdFlags::MFD_CLOEXEC)?;
    let mut f = File::from(fd);
    f.write_all(state_json)
        .and_then(|_| f.seek(SeekFrom::Start(0)))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
thread_local! {
    /// Tests force the waitpid-loop fallback for kernels without pidfds.
    pub(super) static NO_PIDFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    #[cfg(test)]
    if NO_PIDFD.with(|c| c.get()) {
        return None;
    }
    crate::sys::pidfd_open(pid.as_raw())
}

fn wait_blocking(pid: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by signal {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}

/// As pid 1 (the container's init in a new pid namespace) we inherit every
/// process a hook left behind: reap the ones that have exited. Elsewhere the
/// caller's other children (the container itself) are not ours to reap.
pub(super) fn reap_orphans_if_init() {
    if getpid().as_raw() != 1 {
        return;
    }
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
