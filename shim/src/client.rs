//! The launcher's side: start a shim and get its result, then talk to it
//! over its control and attach sockets. Blocking std I/O, so it suits a
//! plain thread or tokio's `spawn_blocking`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::layout;
use crate::proto::{
    CtlRequest, CtlResponse, ExitRecord, Frame, FrameError, Status, Stream, SyncResult,
};

/// What to start a shim for.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// The `husk-shim` binary.
    pub shim: PathBuf,
    /// The runtime binary (`husk`).
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The container id.
    pub id: String,
    /// The bundle (its `config.json` says whether there is a tty).
    pub bundle: PathBuf,
    /// The shim's directory (created when missing).
    pub dir: PathBuf,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// Give the container a stdin pipe that attach clients write to.
    pub stdin: bool,
    /// Run this process JSON in the existing container (`husk exec`)
    /// instead of creating it.
    pub exec: Option<PathBuf>,
    /// Containers only: once the container exits, have the shim `husk
    /// delete` it and unmount this path (its rootfs) before it records the
    /// exit (`ExitRecord::released`).
    pub release: Option<PathBuf>,
}

/// Why a launch did not give a running shim.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("run {}", .0.display())]
    Spawn(PathBuf, #[source] io::Error),
    #[error("read husk-shim's result")]
    Read(#[source] io::Error),
    #[error("husk-shim gave no result (launcher exit {0})")]
    NoResult(std::process::ExitStatus),
    #[error("husk-shim's result is not JSON: {0:?}")]
    BadResult(String),
    /// The runtime (or the shim) refused; nothing was left behind.
    #[error("{0}")]
    Failed(String),
}

/// Start a shim and wait for its result: the container's pid, or the error
/// text of `husk create` (or `husk exec`). The shim lives on on its own.
pub fn launch(cfg: &LaunchConfig) -> Result<i32, LaunchError> {
    run(cfg, None)
}

/// Start an exec session (`cfg.exec` must be set) whose output goes to
/// `stream` alone, as frames of the attach protocol, and waits for it: the
/// process blocks when the stream's reader is slow. `stream` is the
/// session's first attach client from its first byte of output; when it
/// closes before the process ends, the shim kills the process. There is no
/// log (`cfg.log_path` is not used). Returns the process's pid; its exit is
/// in `exit.json` by the time the shim closes `stream`.
pub fn launch_streaming(cfg: &LaunchConfig, stream: UnixStream) -> Result<i32, LaunchError> {
    run(cfg, Some(stream))
}

fn run(cfg: &LaunchConfig, stream: Option<UnixStream>) -> Result<i32, LaunchError> {
    let mut cmd = Command::new(&cfg.shim);
    cmd.arg("--runtime")
        .arg(&cfg.runtime)
        .arg("--root")
        .arg(&cfg.root)
        .arg("--id")
        .arg(&cfg.id)
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--dir")
        .arg(&cfg.dir);
    if stream.is_none() {
        cmd.arg("--log-path").arg(&cfg.log_path);
    }
    if cfg.stdin {
        cmd.arg("--stdin");
    }
    if let Some(p) = &cfg.exec {
        cmd.arg("--exec").arg(p);
    }
    if let Some(p) = &cfg.release {
        cmd.arg("--release").arg(p);
    }
    // The result comes on the shim's stdout: a pipe that only this child
    // gets (no fd leaks into other children a threaded launcher starts).
    // The stream's socket goes the same way, as the shim's stdin.
    let stdin = match stream {
        Some(s) => {
            cmd.arg("--stream");
            Stdio::from(std::os::fd::OwnedFd::from(s))
        }
        None => Stdio::null(),
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| LaunchError::Spawn(cfg.shim.clone(), e))?;
    let mut out = String::new();
    let read = match child.stdout.take() {
        Some(mut s) => s.read_to_string(&mut out).map(|_| ()),
        None => Ok(()),
    };
    // The launched process exits as soon as it has forked; reap it.
    let status = child.wait().map_err(LaunchError::Read)?;
    read.map_err(LaunchError::Read)?;
    let line = out.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(LaunchError::NoResult(status));
    }
    match serde_json::from_str(line) {
        Ok(SyncResult::Created { pid }) => Ok(pid),
        Ok(SyncResult::Failed { error }) => Err(LaunchError::Failed(error)),
        Err(_) => Err(LaunchError::BadResult(line.to_string())),
    }
}

/// `exit.json` of a shim dir, once the shim recorded the exit.
pub fn read_exit(dir: &Path) -> io::Result<Option<ExitRecord>> {
    match std::fs::read(dir.join(layout::EXIT)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A control connection.
pub struct Ctl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// A control request that failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("control socket I/O")]
    Io(#[from] io::Error),
    #[error("control socket closed")]
    Closed,
    #[error("bad control response")]
    Json(#[from] serde_json::Error),
    /// The shim answered with an error.
    #[error("{0}")]
    Shim(String),
}

impl Ctl {
    /// Connect to the control socket of the shim in `dir`.
    pub fn connect(dir: &Path) -> io::Result<Ctl> {
        let s = UnixStream::connect(dir.join(layout::CTL_SOCK))?;
        Ok(Ctl {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Send one request and read its answer.
    pub fn request(&mut self, req: &CtlRequest) -> Result<CtlResponse, CtlError> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut resp = String::new();
        if self.reader.read_line(&mut resp)? == 0 {
            return Err(CtlError::Closed);
        }
        let r: CtlResponse = serde_json::from_str(&resp)?;
        match r.error {
            Some(e) => Err(CtlError::Shim(e)),
            None => Ok(r),
        }
    }

    /// `husk start` the container.
    pub fn start(&mut self) -> Result<(), CtlError> {
        self.request(&CtlRequest::Start).map(drop)
    }

    /// Reopen the log file.
    pub fn reopen_log(&mut self) -> Result<(), CtlError> {
        self.request(&CtlRequest::ReopenLog).map(drop)
    }

    /// Resize the tty.
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), CtlError> {
        self.request(&CtlRequest::Resize { rows, cols }).map(drop)
    }

    /// The shim's status.
    pub fn status(&mut self) -> Result<Status, CtlError> {
        self.request(&CtlRequest::Status)?
            .status
            .ok_or(CtlError::Shim("status response without a status".into()))
    }
}

/// An attach connection.
pub struct Attach {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Attach {
    /// Connect to the attach socket of the shim in `dir`.
    pub fn connect(dir: &Path) -> io::Result<Attach> {
        Ok(Attach {
            sock: UnixStream::connect(dir.join(layout::ATTACH_SOCK))?,
            buf: Vec::new(),
        })
    }

    /// The socket, e.g. to set a read timeout.
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// Send bytes to the container's stdin.
    pub fn write_stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(crate::proto::MAX_FRAME) {
            self.sock.write_all(&Frame::encode(Stream::Stdin, chunk))?;
        }
        Ok(())
    }

    /// Close the container's stdin.
    pub fn close_stdin(&mut self) -> io::Result<()> {
        self.sock.write_all(&Frame::encode(Stream::CloseStdin, &[]))
    }

    /// Resize the tty.
    pub fn resize(&mut self, rows: u16, cols: u16) -> io::Result<()> {
        self.sock.write_all(&Frame::resize(rows, cols))
    }

    /// The next output frame; `None` once the shim closed the connection.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) =
                Frame::decode(&mut self.buf).map_err(|e: FrameError| io::Error::other(e))?
            {
                return Ok(Some(f));
            }
            let mut chunk = [0u8; 8192];
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
