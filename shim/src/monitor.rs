//! The shim's one poll(2) loop: the container's output to the log and to
//! attach clients, attach input to its stdin, control requests, and SIGCHLD
//! (a signalfd) until the container's process is reaped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::args::Args;
use crate::cri_log::{CriLog, Out};
use crate::exit::{self, OomCounter};
use husk_shim::layout;
use husk_shim::proto::{CtlRequest, CtlResponse, Frame, Status, Stream};

/// Bytes read from the container per read(2): a stack buffer, 4 pages.
const CHUNK: usize = 16 * 1024;
/// A control client's unanswered bytes beyond which it is dropped.
const MAX_CTL_LINE: usize = 64 * 1024;

/// A connected control or attach client.
struct Client {
    s: UnixStream,
    buf: Vec<u8>,
    /// The peer closed its side; kept until its buffered frames are used.
    eof: bool,
    dead: bool,
    /// The `--stream` client: output waits for it instead of dropping it.
    hold: bool,
    /// Output bytes it could not take yet (held clients only; one chunk at most).
    out: Vec<u8>,
}

impl Client {
    fn new(s: UnixStream) -> Option<Client> {
        s.set_nonblocking(true).ok()?;
        Some(Client {
            s,
            buf: Vec::new(),
            eof: false,
            dead: false,
            hold: false,
            out: Vec::new(),
        })
    }

    /// Write what `out` holds without blocking; false on a broken connection.
    fn flush_out(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.s.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Read what is there; false at EOF or on an error.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => {
                e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
            }
        }
    }
}

/// One of the container's output streams (a pipe, or the pty master).
struct Source {
    f: File,
    out: Out,
    closed: bool,
}

/// Everything the running shim holds.
pub struct Shim {
    args: Args,
    pid: i32,
    terminal: bool,
    started: bool,
    log: Option<CriLog>,
    sfd: SignalFd,
    ctl: UnixListener,
    attach: UnixListener,
    /// The container's stdin: the pipe's write end or (a dup of) the pty master.
    stdin: Option<File>,
    /// The pty master, for resizes.
    master: Option<File>,
    oom: Option<OomCounter>,
    sources: Vec<Source>,
    ctl_clients: Vec<Client>,
    attach_clients: Vec<Client>,
    stdin_pending: Vec<u8>,
    close_stdin_after: bool,
    exit: Option<WaitStatus>,
}

#[derive(Clone, Copy)]
enum Ev {
    Signal,
    CtlListen,
    AttachListen,
    Ctl(usize),
    Attach(usize),
    AttachOut(usize),
    Source(usize),
    Stdin,
}

/// What [`Shim::new`] needs besides the args.
pub struct Parts {
    pub pid: i32,
    pub terminal: bool,
    pub log: Option<CriLog>,
    pub sfd: SignalFd,
    pub ctl: UnixListener,
    pub attach: UnixListener,
    pub stdin: Option<File>,
    pub master: Option<File>,
    /// stdout and stderr pipes, or the master alone.
    pub outputs: Vec<(File, Out)>,
    pub oom: Option<OomCounter>,
    /// The `--stream` client, connected before the process started.
    pub stream: Option<UnixStream>,
}

impl Shim {
    pub fn new(args: Args, p: Parts) -> Shim {
        Shim {
            started: args.exec.is_some(),
            args,
            pid: p.pid,
            terminal: p.terminal,
            log: p.log,
            sfd: p.sfd,
            ctl: p.ctl,
            attach: p.attach,
            stdin: p.stdin,
            master: p.master,
            oom: p.oom,
            sources: p
                .outputs
                .into_iter()
                .map(|(f, out)| Source {
                    f,
                    out,
                    closed: false,
                })
                .collect(),
            ctl_clients: Vec::new(),
            attach_clients: p
                .stream
                .and_then(Client::new)
                .map(|c| Client { hold: true, ..c })
                .into_iter()
                .collect(),
            stdin_pending: Vec::new(),
            close_stdin_after: false,
            exit: None,
        }
    }

    /// The container's (or exec process's) pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Serve until the process is reaped, then record the exit. Returns the
    /// shim's exit code.
    pub fn run(mut self) -> i32 {
        // A SIGCHLD that came while the runtime ran is pending on the signalfd,
        // but reap once anyway: the process may already be a zombie of ours.
        self.reap();
        while self.exit.is_none() {
            for ev in self.poll() {
                self.handle(ev);
            }
            self.pump_attach();
            self.sweep();
        }
        self.finish()
    }

    fn poll(&self) -> Vec<Ev> {
        let mut tags = Vec::with_capacity(8);
        let mut fds = Vec::with_capacity(8);
        let inp = PollFlags::POLLIN;
        tags.push(Ev::Signal);
        fds.push(PollFd::new(self.sfd.as_fd(), inp));
        tags.push(Ev::CtlListen);
        fds.push(PollFd::new(self.ctl.as_fd(), inp));
        tags.push(Ev::AttachListen);
        fds.push(PollFd::new(self.attach.as_fd(), inp));
        for (i, c) in self.ctl_clients.iter().enumerate() {
            tags.push(Ev::Ctl(i));
            fds.push(PollFd::new(c.s.as_fd(), inp));
        }
        // While the container does not take its stdin, stop reading stdin
        // frames: back-pressure to the attach client instead of buffering.
        if self.stdin_pending.is_empty() {
            for (i, c) in self
                .attach_clients
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.eof)
            {
                tags.push(Ev::Attach(i));
                fds.push(PollFd::new(c.s.as_fd(), inp));
            }
        }
        // A held client that has not taken the last chunk stops the reading
        // of output: the process blocks on its full pipe (end-to-end flow
        // control) instead of the shim buffering.
        let mut held_busy = false;
        for (i, c) in self.attach_clients.iter().enumerate() {
            if c.hold && !c.dead && !c.out.is_empty() {
                held_busy = true;
                tags.push(Ev::AttachOut(i));
                fds.push(PollFd::new(c.s.as_fd(), PollFlags::POLLOUT));
            }
        }
        if !held_busy {
            for (i, s) in self.sources.iter().enumerate() {
                tags.push(Ev::Source(i));
                fds.push(PollFd::new(s.f.as_fd(), inp));
            }
        }
        if let (false, Some(f)) = (self.stdin_pending.is_empty(), &self.stdin) {
            tags.push(Ev::Stdin);
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Vec::new(),
            Err(e) => {
                // Nothing sensible to do but retry; never spin silently.
                eprintln!("husk-shim: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                return Vec::new();
            }
        }
        tags.into_iter()
            .zip(fds.iter())
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(t, _)| t)
            .collect()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Signal => {
                while let Ok(Some(_)) = self.sfd.read_signal() {}
                self.reap();
            }
            Ev::CtlListen => {
                while let Ok((s, _)) = self.ctl.accept() {
                    self.ctl_clients.extend(Client::new(s));
                }
            }
            Ev::AttachListen => {
                while let Ok((s, _)) = self.attach.accept() {
                    self.attach_clients.extend(Client::new(s));
                }
            }
            Ev::Ctl(i) => self.on_ctl(i),
            Ev::Attach(i) => {
                let c = &mut self.attach_clients[i];
                if !c.fill() {
                    c.eof = true;
                }
            }
            Ev::AttachOut(i) => {
                let c = &mut self.attach_clients[i];
                if !c.flush_out() {
                    c.dead = true;
                }
            }
            Ev::Source(i) => {
                self.read_source(i);
            }
            Ev::Stdin => self.flush_stdin(),
        }
    }

    /// Reap every child that exited; note the container's process.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(st @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) => {
                    if p.as_raw() == self.pid {
                        self.exit = Some(st);
                    }
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("husk-shim: waitpid: {e}");
                    return;
                }
            }
        }
    }

    /// One read from an output stream: to the log and to attach clients.
    /// Returns false once there is nothing more (EOF, EAGAIN, error).
    fn read_source(&mut self, i: usize) -> bool {
        let mut buf = [0u8; CHUNK];
        let s = &mut self.sources[i];
        let out = s.out;
        match s.f.read(&mut buf) {
            Ok(n) if n > 0 => {
                if let Some(Err(e)) = self.log.as_mut().map(|l| l.write(out, &buf[..n])) {
                    eprintln!("husk-shim: {}", crate::error::chain(&e));
                }
                let stream = match out {
                    Out::Stdout => Stream::Stdout,
                    Out::Stderr => Stream::Stderr,
                };
                self.broadcast(stream, &buf[..n]);
                true
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                false
            }
            // 0 is EOF; a pty master reads EIO once the last slave fd closed.
            _ => {
                s.closed = true;
                if let Some(Err(e)) = self.log.as_mut().map(|l| l.finish(out)) {
                    eprintln!("husk-shim: {}", crate::error::chain(&e));
                }
                false
            }
        }
    }

    /// Send output to every attach client without blocking; a client that
    /// cannot take the whole frame now is disconnected (see the lib doc).
    fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.attach_clients.is_empty() {
            return;
        }
        let frame = Frame::encode(stream, data);
        for c in self.attach_clients.iter_mut().filter(|c| !c.dead) {
            if c.hold {
                c.out.extend_from_slice(&frame);
                if !c.flush_out() {
                    c.dead = true;
                }
                continue;
            }
            match c.s.write(&frame) {
                Ok(n) if n == frame.len() => {}
                _ => c.dead = true,
            }
        }
    }

    /// Use the attach clients' buffered frames while stdin can take them.
    fn pump_attach(&mut self) {
        for i in 0..self.attach_clients.len() {
            while self.stdin_pending.is_empty() && !self.attach_clients[i].dead {
                match Frame::decode(&mut self.attach_clients[i].buf) {
                    Ok(Some(f)) => {
                        if !self.on_frame(f) {
                            self.attach_clients[i].dead = true;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => self.attach_clients[i].dead = true,
                }
            }
        }
    }

    /// Act on a client's frame; false when the client broke the protocol.
    fn on_frame(&mut self, f: Frame) -> bool {
        match f.stream {
            Stream::Stdin => {
                // Without --stdin (or after stdin closed) input is dropped.
                if self.stdin.is_some() {
                    self.stdin_pending.extend_from_slice(&f.data);
                    self.flush_stdin();
                }
            }
            Stream::CloseStdin => {
                self.close_stdin_after = true;
                self.flush_stdin();
            }
            Stream::Resize => {
                if let Some((rows, cols)) = f.winsize() {
                    let _ = self.resize(rows, cols);
                }
            }
            Stream::Stdout | Stream::Stderr => return false,
        }
        true
    }

    /// Write pending stdin without blocking.
    fn flush_stdin(&mut self) {
        while let (false, Some(f)) = (self.stdin_pending.is_empty(), self.stdin.as_mut()) {
            match f.write(&self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE: the container closed its stdin; input is dropped.
                Err(_) => {
                    self.stdin = None;
                    self.stdin_pending.clear();
                }
            }
        }
        self.stdin_pending.clear();
        if self.close_stdin_after {
            self.close_stdin_after = false;
            // With a tty the master is the output too; EOF is ^D in the data.
            if !self.terminal {
                self.stdin = None;
            }
        }
    }

    fn on_ctl(&mut self, i: usize) {
        let c = &mut self.ctl_clients[i];
        if !c.fill() {
            c.dead = true;
            return;
        }
        while let Some(nl) = self.ctl_clients[i].buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.ctl_clients[i].buf.drain(..=nl).collect();
            let resp = match serde_json::from_slice::<CtlRequest>(&line) {
                Ok(req) => self.request(req),
                Err(e) => CtlResponse {
                    error: Some(format!("bad request: {e}")),
                    status: None,
                },
            };
            let mut text = serde_json::to_vec(&resp).unwrap_or_default();
            text.push(b'\n');
            let c = &mut self.ctl_clients[i];
            if !matches!(c.s.write(&text), Ok(n) if n == text.len()) {
                c.dead = true;
                return;
            }
        }
        if self.ctl_clients[i].buf.len() > MAX_CTL_LINE {
            self.ctl_clients[i].dead = true;
        }
    }

    fn request(&mut self, req: CtlRequest) -> CtlResponse {
        let mut resp = CtlResponse::default();
        let r = match req {
            CtlRequest::Start => self.start(),
            CtlRequest::ReopenLog => match self.log.as_mut() {
                Some(l) => l.reopen().map_err(|e| crate::error::chain(&e)),
                None => Err("a streamed exec session has no log".into()),
            },
            CtlRequest::Resize { rows, cols } => self.resize(rows, cols),
            CtlRequest::Status => {
                resp.status = Some(Status {
                    pid: self.pid,
                    state: if self.started { "running" } else { "created" }.into(),
                    exec: self.args.exec.is_some(),
                    terminal: self.terminal,
                    shim_pid: std::process::id() as i32,
                });
                Ok(())
            }
        };
        resp.error = r.err();
        resp
    }

    fn start(&mut self) -> Result<(), String> {
        if self.args.exec.is_some() {
            return Err("an exec session runs from launch; there is nothing to start".into());
        }
        if self.started {
            return Err(format!("container {} is already started", self.args.id));
        }
        crate::runtime::start(&self.args).map_err(|e| crate::error::chain(&e))?;
        self.started = true;
        Ok(())
    }

    fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        let m = self
            .master
            .as_ref()
            .ok_or_else(|| format!("container {} has no tty to resize", self.args.id))?;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
        let rc = unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc != 0 {
            return Err(format!("resize the tty: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    fn sweep(&mut self) {
        // The stream the session was started for is gone (the client hung
        // up, or husklet died): the session ends with it, as kubelet's do.
        if self
            .attach_clients
            .iter()
            .any(|c| c.hold && (c.dead || c.eof))
            && self.exit.is_none()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            for c in self.attach_clients.iter_mut().filter(|c| c.hold) {
                c.hold = false;
                c.dead = true;
            }
        }
        let stdin_waits = !self.stdin_pending.is_empty();
        self.ctl_clients.retain(|c| !c.dead);
        // A held client stays while it can still take output.
        self.attach_clients
            .retain(|c| !c.dead && (c.hold || stdin_waits || !c.eof));
        self.sources.retain(|s| !s.closed);
    }

    /// The process is gone: drain its output, record the exit, close up.
    fn finish(mut self) -> i32 {
        // Held clients get the rest of the output, waiting for them (bounded
        // by a send timeout: a client that stopped reading is given up).
        for c in self.attach_clients.iter_mut().filter(|c| c.hold && !c.dead) {
            let blocking = c.s.set_nonblocking(false).is_ok()
                && c.s
                    .set_write_timeout(Some(std::time::Duration::from_secs(30)))
                    .is_ok();
            c.dead = !blocking || !c.flush_out() || !c.out.is_empty();
        }
        for i in 0..self.sources.len() {
            // Bounded, in case an orphan outside the container's pid
            // namespace still holds the pipe and keeps writing.
            for _ in 0..256 {
                if self.sources[i].closed || !self.read_source(i) {
                    break;
                }
                for c in self.attach_clients.iter_mut().filter(|c| c.hold && !c.dead) {
                    c.dead = !c.flush_out() || !c.out.is_empty();
                }
            }
        }
        for out in [Out::Stdout, Out::Stderr] {
            if let Some(Err(e)) = self.log.as_mut().map(|l| l.finish(out)) {
                eprintln!("husk-shim: {}", crate::error::chain(&e));
            }
        }
        let Some(status) = self.exit else { return 1 };
        let mut rec = exit::record(self.pid, status, self.oom.as_ref());
        if let Some(rootfs) = &self.args.release {
            rec.released = crate::runtime::release(&self.args, rootfs);
        }
        let mut code = 0;
        if let Err(e) = exit::write(&self.args.dir, &rec, self.args.exec.is_none()) {
            eprintln!("husk-shim: {}", crate::error::chain(&e));
            code = 1;
        }
        // exit.json first: a client that finds no socket finds the record.
        let _ = std::fs::remove_file(self.args.dir.join(layout::CTL_SOCK));
        let _ = std::fs::remove_file(self.args.dir.join(layout::ATTACH_SOCK));
        code
    }
}
