//! The container lifecycle as the OCI runtime spec defines it: create (the
//! init waits on the exec fifo), start, kill, delete; plus exec.
//!
//! Process layout: when namespaces are joined by path or a user namespace is
//! created, the runtime clones a short-lived child that joins and creates the
//! namespaces in the order user namespaces need, then clones the init with
//! CLONE_PARENT (so the init is the runtime's child, and pid 1 of a new pid
//! namespace). Otherwise the init is cloned directly with every CLONE_NEW*
//! flag. Runtime and children talk over a `channel`.

mod exec;
mod init;
pub mod seams;
pub mod signals;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::channel::{self, ChannelError, ToChild, ToParent};
use crate::config::{self, Bundle, ConfigError};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::state::{Locked, State, StateError, Status, Store};
use seams::{Cgroup, CgroupError, CgroupExt, HookPoint};

pub use exec::{ExecOptions, exec};

/// Errors of lifecycle operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("channel to container process")]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
    /// A request that cannot be done (wrong state, bad option); wraps nothing.
    #[error("{0}")]
    Invalid(String),
    /// config.json's hooks are invalid.
    #[error("config.json")]
    InvalidHooks(#[source] crate::hooks::HookError),
    /// config.json's seccomp profile is invalid.
    #[error("config.json")]
    InvalidSeccomp(#[source] crate::seccomp::SeccompError),
    /// config.json's resources cannot be applied on this host.
    #[error("config.json")]
    InvalidResources(#[source] CgroupError),
    /// What the container's init (or exec'd process) reported, as text: it
    /// crossed the channel from the cloned process.
    #[error("container init: {0}")]
    Init(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes on one line (`a: b: c`), for text that crosses
/// the channel or goes to a warning.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Sys { op, source }
}

/// Options of `create` and `run`.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// The fds from 3 on that the caller passed (`--preserve-fds`): only
    /// those that were open when husk started (see `sys::open_fds`).
    pub preserve_fds: Vec<RawFd>,
    /// With `process.terminal` and no console socket: keep the pty master
    /// (in [`Created::tty_master`]) for the caller to copy in the foreground.
    pub foreground_tty: bool,
}

/// A container whose init is blocked on the exec fifo.
pub struct Created {
    pub locked: Locked,
    pub state: State,
    pub spec: Spec,
    pub cgroup: Option<Cgroup>,
    /// The pty master, with [`CreateOptions::foreground_tty`].
    pub tty_master: Option<OwnedFd>,
}

/// Everything the cloned processes need; shared with them by the clone itself.
pub(crate) struct InitContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub no_pivot: bool,
    pub preserve_fds: &'a [RawFd],
    pub console: Option<&'a OwnedFd>,
    /// An O_PATH handle on the exec fifo (nothing else of the state dir).
    pub fifo: Option<&'a OwnedFd>,
    pub trampoline: &'a OwnedFd,
    /// The runtime's pid: the cloned processes die with it.
    pub runtime_pid: i32,
    /// The seccomp filter, compiled before the clone.
    pub seccomp: Option<&'a crate::seccomp::SeccompProgram>,
}

/// Create a container: validate, set up its state, spawn its init and wait
/// until the init blocks on the exec fifo.
pub fn create(store: &Store, opts: &CreateOptions) -> Result<Created, ContainerError> {
    Store::check_id(&opts.id)?;
    let bundle = config::load(&opts.bundle)?;
    let process = bundle.spec.process().as_ref().expect("validated");
    let terminal = process.terminal() == Some(true);
    if terminal && opts.console_socket.is_none() && !opts.foreground_tty {
        return Err(ContainerError::Invalid(
            "process.terminal is set: a --console-socket is needed to receive the terminal".into(),
        ));
    }
    let linux = bundle.spec.linux().as_ref();
    let plan = Plan::from_spec(linux)?;
    let cgroups_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = seams::open_cgroup(cgroups_path.as_deref(), &opts.id)?;
    let seccomp = seams::validate(&bundle.spec, cgroup.as_ref())?;
    // Without a console socket, a private socketpair: the init sends the
    // master to `tty_socket`, kept here.
    let (console, tty_socket) = match &opts.console_socket {
        Some(p) => (Some(crate::terminal::connect(p)?), None),
        None if terminal => {
            let (ours, theirs) = crate::console::socket_pair()?;
            (Some(theirs), Some(ours))
        }
        None => (None, None),
    };
    // Everything is validated: from here on, a failure must undo what was done.
    let locked = store.create(&opts.id)?;
    let mut guard = Cleanup {
        locked: Some(locked),
        pids: Vec::new(),
        cgroup: cgroup.as_ref(),
    };
    let result = spawn(
        &bundle,
        &plan,
        opts,
        console.as_ref(),
        cgroup.as_ref(),
        cgroups_path,
        seccomp.as_ref(),
        &mut guard,
    );
    drop(console);
    let result = result.and_then(|state| {
        // The init sent the master before it reported ready.
        let master = tty_socket
            .as_ref()
            .map(crate::console::receive_master)
            .transpose()?;
        Ok((state, master))
    });
    match result {
        Ok((state, tty_master)) => {
            let locked = guard.locked.take().expect("held until success");
            Ok(Created {
                locked,
                state,
                spec: bundle.spec,
                cgroup,
                tty_master,
            })
        }
        Err(e) => {
            guard.run();
            Err(e)
        }
    }
}

/// Undo a failed create: kill the processes, remove the cgroup and state dir.
struct Cleanup<'a> {
    locked: Option<Locked>,
    pids: Vec<i32>,
    cgroup: Option<&'a Cgroup>,
}

impl Cleanup<'_> {
    fn run(&mut self) {
        for &pid in &self.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &self.pids {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup {
            if let Err(e) = cg.remove() {
                crate::logging::warn(&format!("remove cgroup: {}", error_chain(&e)));
            }
        }
        if let Some(l) = self.locked.take() {
            let _ = l.remove();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    bundle: &Bundle,
    plan: &Plan,
    opts: &CreateOptions,
    console: Option<&OwnedFd>,
    cgroup: Option<&Cgroup>,
    cgroups_path: Option<String>,
    seccomp: Option<&crate::seccomp::SeccompProgram>,
    guard: &mut Cleanup<'_>,
) -> Result<State, ContainerError> {
    let locked = guard.locked.as_ref().expect("held");
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let annotations = spec
        .annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut state = State {
        oci_version: spec.version().clone(),
        id: opts.id.clone(),
        pid: 0,
        status: Status::Creating,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::sys::rfc3339_now(),
        owner: String::new(),
        annotations,
        init_start: 0,
        cgroups_path,
    };
    // Recorded before anything else exists (the cgroup path among it), so
    // that `delete --force` finds and removes all of a create killed at any
    // point.
    locked.save(&state)?;
    locked.write_atomic(crate::state::CONFIG_FILE, &bundle.raw)?;
    let root_uid = namespaces::host_id(linux.and_then(|l| l.uid_mappings().as_ref()), 0);
    let root_gid = namespaces::host_id(linux.and_then(|l| l.gid_mappings().as_ref()), 0);
    locked.make_fifo(root_uid, root_gid)?;
    let fifo = locked.fifo_handle()?;
    let trampoline = crate::trampoline::create().map_err(sys("create exec trampoline"))?;
    let (parent, child) = channel::pair()?;

    let ctx = InitContext {
        spec,
        rootfs: &bundle.rootfs,
        plan,
        no_pivot: opts.no_pivot,
        preserve_fds: &opts.preserve_fds,
        console,
        fifo: Some(&fifo),
        trampoline: &trampoline,
        runtime_pid: nix::unistd::getpid().as_raw(),
        seccomp,
    };
    let mut keep = vec![child.raw_fd(), trampoline.as_raw_fd(), fifo.as_raw_fd()];
    keep.extend(raw(console));
    keep.extend(plan.join.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend_from_slice(&opts.preserve_fds);
    // Without namespaces to join or a user namespace to map, the init is
    // cloned straight into its new namespaces: no first stage to clone, wait
    // for and reap.
    let direct = plan.join.is_empty() && !plan.new_user;
    let flags = if direct { plan.new.bits() as u64 } else { 0 };
    // On v2 the first stage (or the init itself) is born in the container's
    // cgroup, made beforehand: a move in waits for an RCU grace period (see
    // sys::clone_into_cgroup). Elsewhere, or if that fails, the init is
    // moved in below.
    let target = cgroup.and_then(|cg| {
        let dir = cg.clone_target()?;
        cg.create_clone_target().ok()?;
        crate::sys::open_dir(&dir).ok()
    });
    let (stage1, born_inside) =
        crate::sys::clone_fork_in(flags, target.as_ref().map(|fd| fd.as_fd()))
            .map_err(sys("clone"))?;
    drop(target);
    if stage1 == 0 {
        drop(parent);
        // Nothing of the runtime's but what the child needs: above all not
        // its copy of the state dir's locked fd, which would keep the lock
        // (and hang every later command on this id) if the runtime died.
        crate::sys::die_with_parent(ctx.runtime_pid);
        if let Err(e) = crate::sys::close_fds_except(&keep) {
            init::fail(&child, format_args!("close the runtime's fds: {e}"));
        }
        if direct {
            init::init(&ctx, child);
        }
        init::stage1(&ctx, child);
    }
    drop(child);
    guard.pids.push(stage1);

    let maps = (
        linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default(),
        linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default(),
    );
    // A directly cloned init is known without a message.
    let mut direct_pid = direct.then_some(stage1);
    let mut maps_written = false;
    loop {
        let msg = match direct_pid.take() {
            Some(pid) => Ok(ToParent::Pid {
                pid,
                in_cgroup: born_inside,
            }),
            None => parent.recv::<ToParent>(),
        };
        match msg {
            // Each request is honoured once, in order, and only the first
            // stage's own pid gets maps: a process of the container that got
            // hold of the channel cannot have a host pid mapped or placed.
            Ok(ToParent::WriteMaps { pid }) if pid == stage1 && !maps_written => {
                maps_written = true;
                namespaces::write_id_maps(pid, &maps.0, &maps.1)?;
                parent.send(&ToChild::MapsWritten)?;
            }
            // Whether the init was born in the cgroup is ours to know:
            // the first stage clones it where it is itself.
            Ok(ToParent::Pid { pid, .. }) if state.pid == 0 => {
                if pid != stage1 {
                    guard.pids.insert(0, pid);
                    // The first stage exits once it has cloned the init.
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(stage1), None);
                    guard.pids.retain(|p| *p != stage1);
                }
                state.pid = pid;
                state.init_start = crate::sys::process_start_time(pid).unwrap_or(0);
                // Known before it can outlive us (it dies with us until it is ready).
                locked.save(&state)?;
                if let Some(cg) = cgroup {
                    if born_inside {
                        cg.set_device_policy()?;
                    } else {
                        cg.apply_pid(pid)?;
                    }
                    if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
                        cg.set_resources(r)?;
                    }
                }
                for point in [HookPoint::Prestart, HookPoint::CreateRuntime] {
                    let hooks = seams::hooks_of(spec, point);
                    if !hooks.is_empty() {
                        // `created`: see init::run_container_hooks.
                        let json =
                            serde_json::to_vec(&state.oci(Status::Created)).unwrap_or_default();
                        seams::run_runtime_hooks(point, hooks, &json)?;
                    }
                }
                parent.send(&ToChild::Go {
                    state: Some(Box::new(state.clone())),
                })?;
            }
            Ok(ToParent::Ready) if state.pid != 0 => break,
            Ok(ToParent::Error { message }) => return Err(ContainerError::Init(message)),
            Ok(other) => {
                return Err(ContainerError::Init(format!(
                    "unexpected message {other:?}"
                )));
            }
            Err(ChannelError::Closed) => {
                return Err(ContainerError::Init(
                    "the container's init exited before it was ready".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    state.status = Status::Created;
    locked.save(&state)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, state.pid)?;
    }
    Ok(state)
}

/// Write a pid file atomically, as runc does.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("husk-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(sys(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(sys(format!("write {}", path.display())))
}

/// Release the init of a created container: open the exec fifo and read the
/// init's byte, written once its startContainer hooks ran. With `wait_exec`,
/// also wait until the init has exec'd the user's program (the fifo's write
/// end closes on exec), as poststart hooks must run after that. Fails if the
/// init dies meanwhile.
pub fn release_init(locked: &Locked, state: &State, wait_exec: bool) -> Result<(), ContainerError> {
    use nix::fcntl::OFlag;
    let fifo = locked.fifo_path();
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ContainerError::Sys {
        op: format!("open {}", fifo.display()),
        source: e.into(),
    })?;
    let mut got_byte = false;
    loop {
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)).unwrap_or(0);
        let hup = pfd[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP));
        if n > 0 {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fd, &mut b) {
                Ok(1) => got_byte = true,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => {
                    return Err(ContainerError::Sys {
                        op: "read exec fifo".into(),
                        source: e.into(),
                    });
                }
            }
        }
        if got_byte && (!wait_exec || hup) {
            break;
        }
        if !crate::sys::process_alive(state.pid, state.init_start) {
            if got_byte {
                // It exec'd and its program already exited.
                break;
            }
            return Err(ContainerError::Init(
                "the container's init exited before it could start".into(),
            ));
        }
        if n > 0 && hup && !got_byte {
            // POLLHUP without data: the writer went away; give it a moment.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::fs::remove_file(&fifo);
    drop(fd);
    Ok(())
}

/// `start`: release the init, then run the poststart hooks.
pub fn start(store: &Store, id: &str) -> Result<(), ContainerError> {
    let locked = store.open(id)?;
    let state = locked.load()?;
    match locked.status(&state) {
        Status::Created => {}
        Status::Stopped => {
            return Err(ContainerError::Invalid(format!(
                "cannot start a container that has stopped: {id}"
            )));
        }
        s => {
            return Err(ContainerError::Invalid(format!(
                "cannot start an already {s} container: {id}"
            )));
        }
    }
    let spec = load_spec(&locked)?;
    let wait_exec = !seams::hooks_of(&spec, HookPoint::Poststart).is_empty();
    release_init(&locked, &state, wait_exec)?;
    poststart(&spec, &state);
    Ok(())
}

/// Run the poststart hooks; failures are warnings.
pub fn poststart(spec: &Spec, state: &State) {
    let hooks = seams::hooks_of(spec, HookPoint::Poststart);
    if hooks.is_empty() {
        return;
    }
    let json = serde_json::to_string(&state.oci(Status::Running)).unwrap_or_default();
    if let Err(e) = seams::run_runtime_hooks(HookPoint::Poststart, hooks, json.as_bytes()) {
        crate::logging::warn(&error_chain(&e));
    }
}

/// The config.json saved with the container.
pub fn load_spec(locked: &Locked) -> Result<Spec, ContainerError> {
    let path = locked.dir.join(crate::state::CONFIG_FILE);
    let raw = std::fs::read(&path).map_err(sys(format!("read {}", path.display())))?;
    Ok(config::parse(&raw)?)
}

/// `state`: the OCI state of a container.
pub fn state(store: &Store, id: &str) -> Result<(State, Status), ContainerError> {
    let locked = store.open(id)?;
    let state = locked.load()?;
    let status = locked.status(&state);
    Ok((state, status))
}

/// `kill`: send a signal to the init, or with `all` to every process of the container.
pub fn kill(store: &Store, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    let locked = store.open(id)?;
    let state = locked.load()?;
    let status = locked.status(&state);
    if all {
        let cg = seams::open_cgroup(state.cgroups_path.as_deref(), id)?;
        let mut pids = match &cg {
            Some(cg) => cg.list_pids()?,
            None => Vec::new(),
        };
        if status != Status::Stopped && !pids.contains(&state.pid) {
            pids.push(state.pid);
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
        return Ok(());
    }
    if status == Status::Stopped {
        return Err(ContainerError::Invalid(format!(
            "container {id} is not running"
        )));
    }
    nix::sys::signal::kill(Pid::from_raw(state.pid), signal).map_err(|e| ContainerError::Sys {
        op: format!("kill container {id} init (pid {})", state.pid),
        source: e.into(),
    })
}

/// `delete`: remove a stopped container. Anything else is refused and left
/// as it is (OCI: deleting a container that is not stopped MUST fail), unless
/// `force`: then whatever is left of it goes, also what a create killed
/// half-way left (a state dir without a live init, a corrupt record).
pub fn delete(store: &Store, id: &str, force: bool) -> Result<(), ContainerError> {
    let locked = store.open(id)?;
    let state = match locked.load() {
        Ok(s) => s,
        Err(e @ (StateError::NotFound(_) | StateError::Malformed { .. })) if force => {
            return remove_unreadable(locked, e);
        }
        Err(e) => return Err(e.into()),
    };
    let status = locked.status(&state);
    if status != Status::Stopped && !force {
        return Err(ContainerError::Invalid(format!(
            "cannot delete container {id} that is not stopped: {status}"
        )));
    }
    destroy(locked, state, false)
}

/// `delete --force` of a container whose state.json is missing or corrupt.
/// Missing: the create died before it wrote it, so nothing else exists yet.
/// Corrupt: what can still be read of it (the init, the cgroup path) goes too.
fn remove_unreadable(locked: Locked, why: StateError) -> Result<(), ContainerError> {
    crate::logging::debug(&format!("delete {}: {}", locked.id, error_chain(&why)));
    let raw = std::fs::read(locked.dir.join(crate::state::STATE_FILE)).unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw)
        && v.is_object()
    {
        let pid = v["pid"].as_i64().unwrap_or(0) as i32;
        let start = v["huskInitStart"].as_u64().unwrap_or(0);
        if pid > 0 && crate::sys::process_alive(pid, start) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid, start, Duration::from_secs(10));
        }
        if let Some(cg) = seams::open_cgroup(v["huskCgroupsPath"].as_str(), &locked.id)? {
            let _ = cg.thaw_all();
            cg.remove()?;
        }
    }
    locked.remove()?;
    Ok(())
}

/// Tear a container down: kill what is left, remove its cgroup, run the
/// poststop hooks, remove its state. `reaped`: the init was already waited for.
pub fn destroy(locked: Locked, state: State, reaped: bool) -> Result<(), ContainerError> {
    destroy_with_spec(locked, state, reaped, None)
}

/// [`destroy`] for a caller that still holds the container's spec (`run`),
/// which spares reading and parsing config.json again for the poststop hooks.
pub fn destroy_with_spec(
    locked: Locked,
    state: State,
    reaped: bool,
    spec: Option<&Spec>,
) -> Result<(), ContainerError> {
    let cg = seams::open_cgroup(state.cgroups_path.as_deref(), &state.id)?;
    if !reaped && crate::sys::process_alive(state.pid, state.init_start) {
        if let Some(cg) = &cg {
            let _ = cg.thaw_all();
        }
        let _ = nix::sys::signal::kill(Pid::from_raw(state.pid), Signal::SIGKILL);
        wait_gone(state.pid, state.init_start, Duration::from_secs(10));
    }
    if let Some(cg) = &cg {
        cg.remove()?;
    }
    let loaded = match spec {
        Some(_) => None,
        None => load_spec(&locked).ok(),
    };
    locked.remove()?;
    if let Some(spec) = spec.or(loaded.as_ref()) {
        let hooks = seams::hooks_of(spec, HookPoint::Poststop);
        if !hooks.is_empty() {
            let json = serde_json::to_string(&state.oci(Status::Stopped)).unwrap_or_default();
            if let Err(e) = seams::run_runtime_hooks(HookPoint::Poststop, hooks, json.as_bytes()) {
                crate::logging::warn(&error_chain(&e));
            }
        }
    }
    Ok(())
}

/// Wait until a process is gone (or a zombie), reaping it if it is our child.
///
/// A pidfd turns readable the moment the process exits, so there is no
/// polling interval to overshoot (50 concurrent `delete --force` each wait
/// here); without pidfds (Linux < 5.3) /proc is polled every 2 ms.
fn wait_gone(pid: i32, start: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let reap = || {
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    };
    // Opened, then checked: if the start time still matches after the open,
    // the pidfd is the container's process and not a reused pid.
    if let Some(fd) = crate::sys::pidfd_open(pid)
        && crate::sys::process_alive(pid, start)
    {
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(u128::from(u16::MAX)) as u16;
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
    }
    while crate::sys::process_alive(pid, start) && Instant::now() < deadline {
        reap();
        std::thread::sleep(Duration::from_millis(2));
    }
    reap();
}

/// Pids of a container's processes (cgroup, else the init alone).
pub fn pids(store: &Store, id: &str) -> Result<Vec<i32>, ContainerError> {
    let locked = store.open(id)?;
    let state = locked.load()?;
    let cg = seams::open_cgroup(state.cgroups_path.as_deref(), id)?;
    let mut pids = match &cg {
        Some(cg) => cg.list_pids()?,
        None => Vec::new(),
    };
    if pids.is_empty() && locked.status(&state) != Status::Stopped {
        pids.push(state.pid);
    }
    Ok(pids)
}

/// `pause` / `resume` through the cgroup freezer.
pub fn set_paused(store: &Store, id: &str, pause: bool) -> Result<(), ContainerError> {
    let locked = store.open(id)?;
    let mut state = locked.load()?;
    let status = locked.status(&state);
    let want = if pause {
        Status::Running
    } else {
        Status::Paused
    };
    if status != want {
        return Err(ContainerError::Invalid(format!(
            "container {id} is {status}, not {want}"
        )));
    }
    let cg = seams::open_cgroup(state.cgroups_path.as_deref(), id)?
        .ok_or_else(|| ContainerError::Invalid(format!("container {id} has no cgroup")))?;
    if pause {
        cg.freeze_all()?;
        state.status = Status::Paused;
    } else {
        cg.thaw_all()?;
        state.status = Status::Running;
    }
    locked.save(&state)?;
    Ok(())
}

/// The raw fd of an optional owned fd.
pub(crate) fn raw(fd: Option<&OwnedFd>) -> Option<i32> {
    fd.map(|f| f.as_raw_fd())
}
