//! `husk-shim`: the per-container monitor. See the library's module doc for
//! the launch protocol, the shim directory, the sockets and the log format.

mod args;
mod cri_log;
mod error;
mod exit;
mod monitor;
mod runtime;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::ForkResult;

use args::Args;
use cri_log::{CriLog, Out};
use error::{ShimError, io_err, sys_err};
use husk_shim::{SyncResult, layout};
use monitor::{Parts, Shim};

fn main() {
    let args = match Args::parse(std::env::args().skip(1)).and_then(absolute) {
        Ok(a) => a,
        Err(e) => {
            let msg = error::chain(&e);
            eprintln!("husk-shim: {msg}\n{}", args::USAGE);
            report(&SyncResult::Failed { error: msg });
            std::process::exit(2);
        }
    };
    // The stream's socket arrives as fd 0: move it off stdin before anything else.
    let stream = match args.stream.then(take_stream).transpose() {
        Ok(s) => s,
        Err(e) => {
            report(&SyncResult::Failed {
                error: error::chain(&e),
            });
            std::process::exit(2);
        }
    };
    if let Err(e) = daemonize() {
        report(&SyncResult::Failed {
            error: error::chain(&e),
        });
        std::process::exit(1);
    }
    let mut made = Made::default();
    match setup(args, stream, &mut made) {
        Ok(shim) => {
            report(&SyncResult::Created { pid: shim.pid() });
            std::process::exit(shim.run());
        }
        Err(e) => {
            made.remove();
            report(&SyncResult::Failed {
                error: error::chain(&e),
            });
            std::process::exit(1);
        }
    }
}

/// Every path made absolute: the shim leaves the launcher's cwd.
fn absolute(mut a: Args) -> Result<Args, ShimError> {
    for p in [&mut a.runtime, &mut a.root, &mut a.bundle, &mut a.dir]
        .into_iter()
        .chain(a.log_path.as_mut())
    {
        *p = std::path::absolute(&*p).map_err(io_err(format!("resolve {}", p.display())))?;
    }
    if let Some(p) = a.exec.as_mut() {
        *p = std::path::absolute(&*p).map_err(io_err(format!("resolve {}", p.display())))?;
    }
    Ok(a)
}

/// `--stream`: fd 0 is the stream client's socket. Take it (close-on-exec,
/// so neither the runtime nor the process inherits it) and put /dev/null
/// in its place.
fn take_stream() -> Result<UnixStream, ShimError> {
    use nix::fcntl::{FcntlArg, fcntl};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    let stdin = io::stdin();
    let st = nix::sys::stat::fstat(stdin.as_fd()).map_err(sys_err("--stream: fstat fd 0"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(ShimError::Usage(
            "--stream: fd 0 is not the stream's socket".into(),
        ));
    }
    let fd = fcntl(stdin.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(sys_err("--stream: dup fd 0"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let null = File::open("/dev/null").map_err(io_err("open /dev/null"))?;
    nix::unistd::dup2_stdin(null).map_err(sys_err("--stream: replace fd 0"))?;
    Ok(sock)
}

/// The launcher's one line on stdout; stdout is then /dev/null, so the
/// launcher reads EOF right after it.
fn report(r: &SyncResult) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let _ = io::stdout().write_all(&line);
    let _ = io::stdout().flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
}

/// Fork, setsid, fork: the shim is neither the launcher's child nor a
/// session leader, and killing the launcher's process group misses it.
fn daemonize() -> Result<(), ShimError> {
    for step in 0..2 {
        // SAFETY: the shim is single-threaded; the child only continues this program.
        match unsafe { nix::unistd::fork() }.map_err(sys_err("fork"))? {
            ForkResult::Parent { .. } => std::process::exit(0),
            ForkResult::Child => {}
        }
        if step == 0 {
            nix::unistd::setsid().map_err(sys_err("setsid"))?;
        }
    }
    std::env::set_current_dir("/").map_err(io_err("chdir /"))
}

/// What setup made, removed again if it fails.
#[derive(Default)]
struct Made {
    dir: Option<PathBuf>,
    files: Vec<PathBuf>,
}

impl Made {
    fn remove(&self) {
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn bind(path: &Path, made: &mut Made) -> Result<UnixListener, ShimError> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(io_err(format!("listen on {}", path.display())))?;
    made.files.push(path.to_path_buf());
    l.set_nonblocking(true)
        .map_err(io_err(format!("listen on {}", path.display())))?;
    Ok(l)
}

fn pipe() -> Result<(File, File), ShimError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

fn nonblocking(f: &File) -> Result<(), ShimError> {
    use std::os::fd::AsFd;
    let fd = f.as_fd();
    let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(sys_err("fcntl"))?;
    let fl = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl)).map_err(sys_err("fcntl"))?;
    Ok(())
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    std::fs::read_to_string(path)
        .map_err(io_err(format!("read {}", path.display())))?
        .trim()
        .parse::<i32>()
        .map_err(|e| ShimError::Io {
            what: format!("parse {}", path.display()),
            source: io::Error::other(e),
        })
}

/// Everything before the loop: the dir, sockets, log, subreaper, signalfd,
/// stdio, and the runtime's `create` (or `exec`).
fn setup(args: Args, stream: Option<UnixStream>, made: &mut Made) -> Result<Shim, ShimError> {
    let spec = runtime::read_spec(&args)?;
    match std::fs::create_dir(&args.dir) {
        Ok(()) => made.dir = Some(args.dir.clone()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(format!("create {}", args.dir.display()))(e)),
    }
    let shim_pid = args.dir.join(layout::SHIM_PID);
    if shim_pid.exists() {
        return Err(ShimError::Usage(format!(
            "{} is in use: it has a {}",
            args.dir.display(),
            layout::SHIM_PID
        )));
    }
    made.files.push(shim_pid.clone());
    exit::write_small(&shim_pid, &format!("{}\n", std::process::id()))?;
    let ctl = bind(&args.dir.join(layout::CTL_SOCK), made)?;
    let attach = bind(&args.dir.join(layout::ATTACH_SOCK), made)?;
    let log = match &args.log_path {
        Some(p) => {
            if !p.exists() {
                made.files.push(p.clone());
            }
            Some(CriLog::open(p, args.log_limit)?)
        }
        None => None,
    };
    made.files.push(args.dir.join(layout::RUNTIME_LOG));
    made.files.push(args.dir.join(layout::PID));

    nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("become a subreaper"))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(sys_err("block SIGCHLD"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys_err("signalfd"))?;

    let mut outputs = Vec::new();
    let (stdin, master) = if spec.terminal {
        let console = bind(&args.dir.join(layout::CONSOLE_SOCK), made)?;
        let stdio = runtime::ChildStdio {
            stdin: std::process::Stdio::null(),
            stdout: std::process::Stdio::null(),
            stderr: std::process::Stdio::null(),
        };
        let m = runtime::create(&args, stdio, Some(&console))?;
        drop(console);
        let _ = std::fs::remove_file(args.dir.join(layout::CONSOLE_SOCK));
        let m = File::from(m.ok_or_else(|| ShimError::Runtime("no pty master".into()))?);
        nonblocking(&m)?;
        let dup = |what: &str| {
            m.try_clone()
                .map_err(io_err(format!("dup the pty master for {what}")))
        };
        outputs.push((dup("output")?, Out::Stdout));
        (Some(dup("stdin")?), Some(m))
    } else {
        let (in_r, in_w) = if args.stdin {
            let (r, w) = pipe()?;
            nonblocking(&w)?;
            (std::process::Stdio::from(r), Some(w))
        } else {
            (std::process::Stdio::null(), None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        nonblocking(&out_r)?;
        nonblocking(&err_r)?;
        let stdio = runtime::ChildStdio {
            stdin: in_r,
            stdout: out_w.into(),
            stderr: err_w.into(),
        };
        runtime::create(&args, stdio, None)?;
        outputs.push((out_r, Out::Stdout));
        outputs.push((err_r, Out::Stderr));
        (in_w, None)
    };
    let pid_path = args.dir.join(layout::PID);
    let pid = match read_pid(&pid_path) {
        Ok(p) => p,
        Err(e) => {
            // Without its pid the container cannot be watched: undo it, so
            // the launcher's "nothing was created" holds.
            runtime::delete_force(&args);
            return Err(e);
        }
    };
    // From here the container exists: husklet owns its removal (`husk delete`).
    made.files.clear();
    made.dir = None;
    let oom = exit::OomCounter::new(spec.cgroups_path.as_deref(), pid);
    let parts = Parts {
        pid,
        terminal: spec.terminal,
        log,
        sfd,
        ctl,
        attach,
        stdin,
        master,
        outputs,
        oom,
        stream,
    };
    Ok(Shim::new(args, parts))
}
