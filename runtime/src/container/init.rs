//! The runtime's cloned children: the first stage (namespaces) and the
//! container's init (rootfs, process setup, wait for `start`, exec).
//!
//! These run in a fork-like copy of the single-threaded runtime, so every call
//! is allowed; they never return, they exec or exit.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use super::seams::{self, HookPoint};
use super::{InitContext, raw};
use crate::channel::{Channel, ToChild, ToParent};
use crate::namespaces;
use crate::process::{self, CapSets};
use crate::seccomp::SeccompProgram;
use crate::state::Status;

/// Report an error to the runtime and exit.
pub(crate) fn fail(ch: &Channel, msg: impl std::fmt::Display) -> ! {
    let _ = ch.send(&ToParent::Error {
        message: msg.to_string(),
    });
    // SAFETY: _exit ends this cloned child without running the runtime's destructors.
    unsafe { libc::_exit(1) }
}

/// Reset the signal state a cloned child inherits (the mask, and every
/// disposition: Rust's SIGPIPE=ignore and whatever the runtime's caller
/// ignored); die with the runtime (pid `runtime_pid`), also if it died before
/// this ran.
pub(crate) fn child_preamble(runtime_pid: i32) {
    crate::sys::die_with_parent(runtime_pid);
    crate::sys::reset_signal_dispositions();
    // SAFETY: plain signal-state and prctl calls with integer arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Not dumpable: no process of the container can open /proc/<pid>/exe,
        // mem or fds of this runtime-image process.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// First stage: join and create namespaces, then clone the init (needed
/// when namespaces are joined by path or a user namespace is mapped).
pub(crate) fn stage1(ctx: &InitContext<'_>, ch: Channel) -> ! {
    child_preamble(ctx.runtime_pid);
    let plan = ctx.plan;
    if let Err(e) = plan.enter_joined(true) {
        fail(&ch, e);
    }
    if plan.new_user {
        if let Err(e) = namespaces::unshare(CloneFlags::CLONE_NEWUSER) {
            fail(&ch, e);
        }
        let pid = nix::unistd::getpid().as_raw();
        if let Err(e) = ch.send(&ToParent::WriteMaps { pid }) {
            fail(&ch, e);
        }
        match ch.recv::<ToChild>() {
            Ok(ToChild::MapsWritten) => {}
            Ok(other) => fail(&ch, format!("unexpected message {other:?}")),
            Err(e) => fail(&ch, e),
        }
        let root = nix::unistd::Uid::from_raw(0);
        let rootg = nix::unistd::Gid::from_raw(0);
        if let Err(e) = nix::unistd::setresgid(rootg, rootg, rootg) {
            fail(&ch, format!("setresgid 0 in the user namespace: {e}"));
        }
        if let Err(e) = nix::unistd::setresuid(root, root, root) {
            fail(&ch, format!("setresuid 0 in the user namespace: {e}"));
        }
    }
    if let Err(e) = namespaces::unshare(plan.new) {
        fail(&ch, e);
    }
    let need_fork = plan.new.contains(CloneFlags::CLONE_NEWPID)
        || plan.joins(oci_spec::runtime::LinuxNamespaceType::Pid);
    if !need_fork {
        let pid = nix::unistd::getpid().as_raw();
        if let Err(e) = ch.send(&ToParent::Pid {
            pid,
            in_cgroup: false,
        }) {
            fail(&ch, e);
        }
        init(ctx, ch);
    }
    match crate::sys::clone_fork(libc::CLONE_PARENT as u64) {
        Ok(0) => init(ctx, ch),
        Ok(pid) => {
            if let Err(e) = ch.send(&ToParent::Pid {
                pid,
                in_cgroup: false,
            }) {
                fail(&ch, e);
            }
            // SAFETY: _exit ends the first stage; the init lives on.
            unsafe { libc::_exit(0) }
        }
        Err(e) => fail(&ch, format!("clone init: {e}")),
    }
}

/// The container's init: waits for the runtime's go, builds the rootfs, sets
/// up the process, reports ready, waits on the exec fifo, execs.
pub(crate) fn init(ctx: &InitContext<'_>, ch: Channel) -> ! {
    child_preamble(ctx.runtime_pid);
    let mut hook_state = match ch.recv::<ToChild>() {
        Ok(ToChild::Go { state: Some(state) }) => state,
        Ok(other) => fail(&ch, format!("unexpected message {other:?}")),
        Err(e) => fail(&ch, e),
    };
    let spec = ctx.spec;
    let plan = ctx.plan;
    if let Err(e) = plan.enter_cgroup() {
        fail(&ch, e);
    }
    for j in &plan.join {
        // Joined: the namespace fds are not the init's to keep.
        // SAFETY: closes our copy; its OwnedFd is never dropped in this
        // process, which execs or exits.
        unsafe { libc::close(j.fd.as_raw_fd()) };
    }
    if plan.new_cgroup {
        if let Err(e) = namespaces::unshare(CloneFlags::CLONE_NEWCGROUP) {
            fail(&ch, e);
        }
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if let Err(e) = nix::unistd::sethostname(h) {
            fail(&ch, format!("sethostname {h:?}: {e}"));
        }
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: setdomainname reads `len` bytes of the string we pass.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            fail(&ch, format!("setdomainname {d:?}: {}", nix::Error::last()));
        }
    }
    let in_userns = plan.new_user || plan.joins(oci_spec::runtime::LinuxNamespaceType::User);
    // Without a mount namespace in linux.namespaces the runtime's is
    // inherited (the spec's rule for every namespace type not listed).
    let mount_ns = plan.new.contains(CloneFlags::CLONE_NEWNS)
        || plan.joins(oci_spec::runtime::LinuxNamespaceType::Mount);
    let root = match crate::rootfs::prepare(spec, ctx.rootfs, in_userns, plan.new_cgroup, mount_ns)
    {
        Ok(root) => root,
        Err(e) => fail(&ch, format!("rootfs {}: {e}", ctx.rootfs.display())),
    };
    // Hooks run in the container's namespaces see the pid as the container
    // does (1 in a pid namespace of its own).
    hook_state.pid = nix::unistd::getpid().as_raw();
    if let Err(e) = run_container_hooks(spec, HookPoint::CreateContainer, &hook_state) {
        fail(&ch, e);
    }
    if let Err(e) = crate::rootfs::switch_root(&root, ctx.no_pivot, mount_ns) {
        fail(&ch, e);
    }
    drop(root);
    let proc = spec.process().as_ref().expect("validated");
    if proc.terminal() == Some(true) {
        if let Err(e) = setup_terminal(proc, ctx.console) {
            fail(&ch, e);
        }
    }
    if let Some(sock) = raw(ctx.console) {
        // SAFETY: our copy of the caller's console socket, no longer needed;
        // its OwnedFd is never dropped in this process (it execs or exits).
        unsafe { libc::close(sock) };
    }
    if let Err(e) = crate::rootfs::finalize(spec, mount_ns) {
        fail(&ch, e);
    }
    let launch = match setup_process(proc, ctx.seccomp, in_userns) {
        Ok(l) => l,
        Err(e) => fail(&ch, e),
    };
    // From here the runtime may exit (create returns): do not die with it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    if let Err(e) = ch.send(&ToParent::Ready) {
        fail(&ch, e);
    }
    drop(ch);
    // Block until `start` opens the fifo for reading, run the startContainer
    // hooks, then tell `start` (the byte) and exec, which closes the fifo.
    let fifo = match ctx.fifo.map(open_exec_fifo).transpose() {
        Ok(f) => f,
        Err(e) => die(format_args!("wait for start: {e}")),
    };
    if let Err(e) = run_container_hooks(spec, HookPoint::StartContainer, &hook_state) {
        die(e);
    }
    if let Some(fd) = &fifo {
        if let Err(e) = nix::unistd::write(fd, b"0") {
            die(format_args!("write exec fifo: {e}"));
        }
    }
    exec_process(&launch, ctx.trampoline, ctx.preserve_fds)
}

/// Run the hooks executed in the container's namespaces with the status
/// `created`. The runtime spec's lifecycle runs the prestart, createRuntime
/// and createContainer hooks (steps 3-5) after the runtime environment was
/// created (step 2), and its state section defines `created` as "after step
/// 2" ("creating" is step 2 itself); crun passes `created` too. runc 1.1
/// passes `creating` to prestart, createRuntime and createContainer hooks.
fn run_container_hooks(
    spec: &oci_spec::runtime::Spec,
    point: HookPoint,
    state: &crate::state::State,
) -> Result<(), String> {
    let hooks = seams::hooks_of(spec, point);
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(&state.oci(Status::Created))
        .map_err(|e| format!("{point}: state: {e}"))?;
    seams::run_hooks(point, hooks, &json)
}

/// Write to stderr and exit (after the runtime stopped listening).
pub(crate) fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("husk init: {msg}");
    // SAFETY: _exit ends this process.
    unsafe { libc::_exit(127) }
}

/// Reopen the exec fifo (held as O_PATH) for writing, through the
/// container's /proc as runc does: blocks until `start` opens it for reading.
fn open_exec_fifo(fifo: &std::os::fd::OwnedFd) -> Result<std::os::fd::OwnedFd, nix::Error> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        format!("/proc/self/fd/{}", fifo.as_raw_fd()).as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

fn setup_terminal(
    proc: &Process,
    console: Option<&std::os::fd::OwnedFd>,
) -> Result<(), crate::terminal::TerminalError> {
    let (master, slave) = crate::terminal::open_pty()?;
    if let Some(size) = proc.console_size() {
        crate::terminal::set_size(
            master.as_raw_fd(),
            size.height() as u16,
            size.width() as u16,
        );
    }
    crate::terminal::attach_slave(&slave)?;
    if let Some(sock) = raw(console) {
        crate::terminal::send_master(sock, master.as_raw_fd())?;
    }
    Ok(())
}

/// What execve needs, prepared before the process drops its last
/// capabilities and loads its seccomp filter.
pub(crate) struct Launch<'a> {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The capability sets, applied again in [`exec_process`] when
    /// CAP_SYS_ADMIN was kept for the seccomp filter.
    caps: CapSets,
    /// The seccomp filter (compiled before the clone), loaded in [`exec_process`].
    seccomp: Option<&'a SeccompProgram>,
    nnp: bool,
}

/// rlimits, oom_score_adj, no_new_privs, the bounding set, user, cwd (and
/// its check), the program's path, capabilities: everything but the seccomp
/// filter (and, without no_new_privs, the drop of the CAP_SYS_ADMIN loading
/// it needs), which [`exec_process`] does right before execve so that a
/// profile only has to allow those calls, not the runtime's setup.
pub(crate) fn setup_process<'a>(
    proc: &Process,
    seccomp: Option<&'a SeccompProgram>,
    in_userns: bool,
) -> Result<Launch<'a>, String> {
    if let Some(adj) = proc.oom_score_adj() {
        process::set_oom_score_adj(adj).map_err(|e| e.to_string())?;
    }
    if let Some(r) = proc.rlimits() {
        process::set_rlimits(r).map_err(|e| e.to_string())?;
    }
    let caps = CapSets::from_spec(proc.capabilities().as_ref()).map_err(|e| e.to_string())?;
    let nnp = proc.no_new_privileges() == Some(true);
    if nnp {
        process::set_no_new_privs().map_err(|e| e.to_string())?;
    }
    caps.drop_bounding().map_err(|e| e.to_string())?;
    // Inside a user namespace whose setgroups is denied, setgroups fails: skip it then.
    let setgroups_denied = in_userns
        && std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "deny")
            .unwrap_or(false);
    process::set_user(proc, setgroups_denied).map_err(|e| e.to_string())?;
    // Loading a filter without no_new_privs needs CAP_SYS_ADMIN: it is kept
    // (permitted and effective) until exec_process has loaded the filter.
    let keep = (seccomp.is_some() && !nnp).then_some(caps::Capability::CAP_SYS_ADMIN);
    caps.apply_keeping(keep).map_err(|e| e.to_string())?;
    process::enter_cwd(proc.cwd()).map_err(|e| e.to_string())?;
    let args = proc.args().as_deref().unwrap_or(&[]);
    let env = proc.env().as_deref().unwrap_or(&[]);
    let path = process::find_executable(&args[0], env).map_err(|e| e.to_string())?;
    let path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "process.args[0]: contains a NUL byte".to_string())?;
    let argv = process::cstrings(args, "process.args").map_err(|e| e.to_string())?;
    let envp = process::cstrings(env, "process.env").map_err(|e| e.to_string())?;
    Ok(Launch {
        path,
        argv,
        envp,
        caps,
        seccomp,
        nnp,
    })
}

/// Close every fd not meant for the container, load the seccomp filter, drop
/// CAP_SYS_ADMIN if it was kept for the filter, and exec through the
/// trampoline: only that capset and the execs run under the filter.
pub(crate) fn exec_process(
    launch: &Launch<'_>,
    trampoline: &std::os::fd::OwnedFd,
    preserve_fds: &[std::os::fd::RawFd],
) -> ! {
    if let Err(e) = crate::sys::cloexec_from(3) {
        die(format_args!("close fds: {e}"));
    }
    // Only the fds the caller really passed (never one of the runtime's
    // that filled a gap among 3..3+N).
    for &fd in preserve_fds {
        if fd != trampoline.as_raw_fd() {
            let _ = crate::sys::set_cloexec(fd, false);
        }
    }
    let load = |p: &SeccompProgram| {
        if let Err(e) = p.load() {
            die(format_args!("seccomp: {e}"));
        }
    };
    if let Some(p) = launch.seccomp {
        load(p);
        if !launch.nnp {
            // The last capability drop: CAP_SYS_ADMIN kept for the filter.
            if let Err(e) = launch.caps.apply() {
                die(e);
            }
        }
    }
    let mut argv: Vec<&std::ffi::CStr> = Vec::with_capacity(launch.argv.len() + 2);
    argv.push(crate::trampoline::MARKER);
    argv.push(&launch.path);
    argv.extend(launch.argv.iter().map(|a| a.as_c_str()));
    let envp: Vec<&std::ffi::CStr> = launch.envp.iter().map(|e| e.as_c_str()).collect();
    let err = crate::sys::execveat_fd(trampoline.as_fd(), &argv, &envp);
    die(format_args!(
        "exec {}: {err}",
        String::from_utf8_lossy(launch.path.as_bytes())
    ))
}
