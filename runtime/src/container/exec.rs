//! `exec`: run another process in a running container, joining every
//! namespace of its init and its cgroup.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::init::{child_preamble, exec_process, fail, setup_process};
use super::{ContainerError, seams, sys};
use crate::channel::{self, ChannelError, ToChild, ToParent};
use crate::namespaces::Plan;
use crate::state::{Status, Store};

/// Options of `exec`.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub id: String,
    /// A process.json (`--process`); otherwise the container's process with the overrides below.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub no_new_privs: bool,
    pub caps: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// The fds from 3 on that the caller passed (`--preserve-fds`), as in
    /// [`super::CreateOptions::preserve_fds`].
    pub preserve_fds: Vec<RawFd>,
}

/// Build the exec'd process's spec.
fn build_process(base: Option<&Process>, o: &ExecOptions) -> Result<Process, ContainerError> {
    if let Some(f) = &o.process_file {
        let raw = std::fs::read(f).map_err(sys(format!("read {}", f.display())))?;
        return serde_json::from_slice::<Process>(&raw).map_err(|e| {
            let at = crate::json_path::locate(&raw, &e);
            ContainerError::Invalid(format!("{}: {}: {}", f.display(), at.path, at.message))
        });
    }
    let mut p = base.cloned().unwrap_or_default();
    if o.args.is_empty() {
        return Err(ContainerError::Invalid(
            "exec: either --process or a command is required".into(),
        ));
    }
    p.set_args(Some(o.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &o.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(c) = &o.cwd {
        p.set_cwd(c.clone());
    }
    if let Some((uid, gid)) = o.user {
        let u = p.user_mut();
        u.set_uid(uid);
        if let Some(g) = gid {
            u.set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(o.additional_gids.clone()));
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        let mut c = p.capabilities().clone().unwrap_or_default();
        for name in &o.caps {
            let n = name.trim_start_matches("CAP_");
            let cap: oci_spec::runtime::Capability = n.parse().map_err(|_| {
                ContainerError::Invalid(format!("--cap: unknown capability {name}"))
            })?;
            for set in [
                c.bounding().clone(),
                c.effective().clone(),
                c.permitted().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => c.set_bounding(Some(s)),
                    1 => c.set_effective(Some(s)),
                    _ => c.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(c));
    }
    Ok(p)
}

/// Run the exec. Returns the exit code (0 with `detach`).
pub fn exec(store: &Store, o: &ExecOptions) -> Result<i32, ContainerError> {
    let locked = store.open(&o.id)?;
    let state = locked.load()?;
    match locked.status(&state) {
        Status::Running | Status::Created => {}
        s => {
            return Err(ContainerError::Invalid(format!(
                "cannot exec in a {s} container {}",
                o.id
            )));
        }
    }
    let spec = super::load_spec(&locked)?;
    let proc = build_process(spec.process().as_ref(), o)?;
    if proc.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ContainerError::Invalid(
            "process.args: must not be empty".into(),
        ));
    }
    let terminal = proc.terminal() == Some(true);
    if terminal && o.console_socket.is_none() && o.detach {
        return Err(ContainerError::Invalid(
            "--tty with --detach needs a --console-socket to receive the terminal".into(),
        ));
    }
    let plan = Plan::join_process(state.pid)?;
    let cgroup = seams::open_cgroup(state.cgroups_path.as_deref(), &o.id)?;
    // In the foreground without a console socket, the master comes back over
    // a private socketpair and is copied to our stdio.
    let (console, tty_socket): (Option<OwnedFd>, Option<OwnedFd>) = match &o.console_socket {
        Some(p) => (Some(crate::terminal::connect(p)?), None),
        None if terminal => {
            let (ours, theirs) = crate::console::socket_pair()?;
            (Some(theirs), Some(ours))
        }
        None => (None, None),
    };
    let trampoline = crate::trampoline::create().map_err(sys("create exec trampoline"))?;
    let seccomp = seams::compile_seccomp(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    let in_userns = plan.joins(LinuxNamespaceType::User);
    let (parent, child) = channel::pair()?;
    let sigset = if o.detach {
        None
    } else {
        Some(super::signals::block_forwarded())
    };

    let runtime_pid = nix::unistd::getpid().as_raw();
    let mut keep = vec![child.raw_fd(), trampoline.as_raw_fd()];
    keep.extend(super::raw(console.as_ref()));
    keep.extend(plan.join.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend_from_slice(&o.preserve_fds);
    // On v2 the process is created in the container's cgroup by the first
    // stage (still in our cgroup namespace); elsewhere it is moved in below.
    let target = cgroup
        .as_ref()
        .and_then(|c| c.clone_target())
        .and_then(|dir| crate::sys::open_dir(&dir).ok());
    keep.extend(target.as_ref().map(|fd| fd.as_raw_fd()));
    let stage1 = crate::sys::clone_fork(0).map_err(sys("clone"))?;
    if stage1 == 0 {
        drop(parent);
        // The process about to join the container holds nothing of the
        // runtime's but the channel, the trampoline and the console socket:
        // not the state dir's locked fd, nor the state dir itself.
        crate::sys::die_with_parent(runtime_pid);
        if let Err(e) = crate::sys::close_fds_except(&keep) {
            fail(&child, format_args!("close the runtime's fds: {e}"));
        }
        child_preamble(runtime_pid);
        if let Err(e) = plan.enter_joined(true) {
            fail(&child, e);
        }
        let parent_flag = libc::CLONE_PARENT as u64;
        // Created in the cgroup when it can be: not when pids.max is
        // reached (a move is not limited, as with runc) or the cgroup
        // refuses it otherwise.
        match crate::sys::clone_fork_in(parent_flag, target.as_ref().map(|fd| fd.as_fd())) {
            Ok((0, _)) => {
                if let Some(fd) = &target {
                    // SAFETY: closes our copy; the OwnedFd is never dropped
                    // in this process, which execs or exits.
                    unsafe { libc::close(fd.as_raw_fd()) };
                }
                child_preamble(runtime_pid);
                match child.recv::<ToChild>() {
                    Ok(ToChild::Go { .. }) => {}
                    Ok(other) => fail(&child, format!("unexpected message {other:?}")),
                    Err(e) => fail(&child, e),
                }
                if let Err(e) = plan.enter_cgroup() {
                    fail(&child, e);
                }
                for j in &plan.join {
                    // Joined: the namespace fds are not the process's to keep.
                    // SAFETY: closes our copy; the OwnedFd is never dropped
                    // in this process, which execs or exits.
                    unsafe { libc::close(j.fd.as_raw_fd()) };
                }
                if proc.terminal() == Some(true) {
                    let r = crate::terminal::open_pty().and_then(|(m, s)| {
                        crate::terminal::attach_slave(&s)?;
                        if let Some(sock) = super::raw(console.as_ref()) {
                            crate::terminal::send_master(
                                sock,
                                std::os::fd::AsRawFd::as_raw_fd(&m),
                            )?;
                        }
                        Ok(())
                    });
                    if let Err(e) = r {
                        fail(&child, e);
                    }
                }
                if let Some(sock) = &console {
                    // Done with the console socket: the caller's, not the container's.
                    // SAFETY: closes our copy; the OwnedFd is never dropped
                    // in this process, which execs or exits.
                    unsafe { libc::close(sock.as_raw_fd()) };
                }
                let launch = match setup_process(&proc, seccomp.as_ref(), in_userns) {
                    Ok(l) => l,
                    Err(e) => fail(&child, e),
                };
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
                if let Err(e) = child.send(&ToParent::Ready) {
                    fail(&child, e);
                }
                drop(child);
                exec_process(&launch, &trampoline, &o.preserve_fds)
            }
            Ok((pid, in_cgroup)) => {
                let _ = child.send(&ToParent::Pid { pid, in_cgroup });
                // SAFETY: _exit ends the first stage.
                unsafe { libc::_exit(0) }
            }
            Err(e) => fail(&child, format!("clone: {e}")),
        }
    }
    drop(child);
    drop(locked);
    let mut pid = 0;
    let result: Result<(), ContainerError> = (|| loop {
        match parent.recv::<ToParent>() {
            // Once only: a second one would come from whoever got hold of
            // the channel, not from the first stage.
            Ok(ToParent::Pid { pid: p, in_cgroup }) if pid == 0 => {
                pid = p;
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(stage1), None);
                // Only the move: the container's device policy is in
                // place since create (apply_pid would reset it to the
                // defaults, dropping what the spec allows).
                if let Some(cg) = cgroup.as_ref().filter(|_| !in_cgroup) {
                    cg.apply(p)?;
                }
                parent.send(&ToChild::Go { state: None })?;
            }
            Ok(ToParent::Ready) if pid != 0 => return Ok(()),
            Ok(ToParent::Error { message }) => return Err(ContainerError::Init(message)),
            Ok(other) => {
                return Err(ContainerError::Init(format!(
                    "unexpected message {other:?}"
                )));
            }
            Err(ChannelError::Closed) => {
                return Err(ContainerError::Init(
                    "the exec'd process exited before it was ready".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    })();
    drop(console);
    // The process sent the master before it reported ready.
    let result = result.and_then(|()| {
        Ok(tty_socket
            .as_ref()
            .map(crate::console::receive_master)
            .transpose()?)
    });
    let tty_master = match result {
        Ok(m) => m,
        Err(e) => {
            for p in [pid, stage1] {
                if p > 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
                }
            }
            return Err(e);
        }
    };
    if let Some(p) = &o.pid_file {
        super::write_pid_file(p, pid)?;
    }
    match (sigset, tty_master) {
        (None, _) => Ok(0),
        (Some(set), Some(master)) => Ok(crate::console::proxy_and_wait(master, pid, &set)),
        (Some(set), None) => Ok(super::signals::forward_and_wait(pid, &set)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(json: &str) -> Result<Process, ContainerError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("process.json");
        std::fs::write(&file, json).unwrap();
        let opts = ExecOptions {
            process_file: Some(file),
            ..Default::default()
        };
        build_process(None, &opts)
    }

    #[test]
    fn process_json_errors_name_the_field() {
        let err = from_file(r#"{"cwd":"/","user":{"uid":0,"gid":0},"args":["sh", 5]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("process.json: args[1]: invalid type: integer `5`, expected a string"),
            "{err}"
        );
        let err = from_file(r#"{"cwd":"/"}"#).unwrap_err().to_string();
        assert!(
            err.ends_with("process.json: .: missing field `user`"),
            "{err}"
        );
    }

    #[test]
    fn process_json_is_used() {
        let p = from_file(r#"{"cwd":"/w","user":{"uid":1,"gid":2},"args":["a"]}"#).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(p.cwd(), std::path::Path::new("/w"));
    }
}
