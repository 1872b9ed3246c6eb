//! husk-shim: one small monitor process per container, and the protocol
//! husklet uses to talk to it.
//!
//! The binary (`husk-shim`) is started by husklet for each container (or
//! exec session). It double-forks away from its launcher (`setsid`, so it
//! survives the launcher and its process group), becomes the container's
//! subreaper, runs `husk create` (or `husk exec --detach`), reports the
//! outcome once on its stdout, then holds the container's stdio, writes the
//! CRI log, serves a control and an attach socket, and records the exit
//! before it exits. It never deletes the container: husklet runs
//! `husk delete` once it has read the exit.
//!
//! # Launch
//!
//! ```text
//! husk-shim --runtime /usr/bin/husk --root /run/husk/runtime --id ID
//!           --bundle DIR --dir SHIM_DIR --log-path FILE [--stdin]
//!           [--exec PROCESS_JSON] [--log-limit BYTES]
//! husk-shim ... --exec PROCESS_JSON --stream [--stdin]   (no --log-path)
//! ```
//!
//! The launcher gets one JSON line on the shim's stdout (a pipe it reads to
//! EOF), a [`proto::SyncResult`]: `{"pid":1234}` once the container exists
//! (created, blocked until `start`; an exec session is already running), or
//! `{"error":"…"}` with the runtime's error text, in which case nothing is
//! left behind (no container, no shim, no socket; the shim dir and log file
//! are removed if the shim created them). [`client::launch`] does all of
//! this. With `--exec`, `process.terminal` of the process JSON decides the
//! tty; otherwise `process.terminal` of the bundle's `config.json`.
//!
//! # Streamed exec sessions (`--stream`)
//!
//! For CRI `Exec` the launcher passes a connected unix socket as the shim's
//! stdin ([`client::launch_streaming`]). The shim moves it off fd 0 before
//! it daemonizes and serves it as an attach client from before the process
//! starts, so no output is missed, with two differences: output waits for
//! it (while it has not taken the last chunk the shim stops reading the
//! process's pipes, so a slow reader slows the process, and at most one
//! chunk is buffered), and there is no CRI log. When that client closes
//! before the process exits, the shim kills the process (SIGKILL): the
//! session cannot outlive its stream, even if husklet dies.
//!
//! # The shim directory (what husklet recovers from after a restart)
//!
//! | path | what |
//! |---|---|
//! | `<dir>/shim.pid` | the shim's pid, written before anything else |
//! | `<dir>/pid` | the container's (or exec process's) host pid, from the runtime's `--pid-file` |
//! | `<dir>/ctl.sock` | control socket ([`proto::CtlRequest`]); exists while the shim runs |
//! | `<dir>/attach.sock` | attach socket ([`proto::Frame`]s); exists while the shim runs |
//! | `<dir>/exit.json` | [`proto::ExitRecord`], written atomically (temp, fsync, rename; no fsync for exec sessions) before the shim exits |
//! | `<dir>/runtime.log` | the runtime's own log (`--log-format json`), where create/start errors are read from |
//!
//! Recovery: `exit.json` present → the process is gone, its status is
//! there. Else connect to `ctl.sock` and ask for [`proto::CtlRequest::Status`];
//! a refused connection with no `exit.json` means the shim died without
//! recording an exit (killed), and husklet treats the container as unknown.
//!
//! # Control socket
//!
//! Newline-delimited JSON over a unix stream socket: one
//! [`proto::CtlRequest`] per line, one [`proto::CtlResponse`] line back, any
//! number per connection, any number of connections (husklet reconnects by
//! path after a restart). When the process is reaped the shim writes
//! `exit.json`, then removes both sockets and exits, which closes every
//! connection: a client holding one open learns of the exit by EOF and
//! reads the record.
//!
//! # Attach socket
//!
//! A byte stream of frames, see [`proto::Frame`]: a 1-byte stream id, a
//! 4-byte big-endian length, then the payload. The shim sends the
//! container's output as `Stdout`/`Stderr` frames from the moment the client
//! connects (earlier output is in the log only); the client sends `Stdin`,
//! `CloseStdin` and `Resize` frames. Without `--stdin` (and with no tty)
//! the container's stdin is /dev/null and `Stdin` frames are dropped; with a
//! tty, stdin is the pty and `CloseStdin` does nothing (send `^D` as data).
//! The shim closes every attach connection when the container exits, after
//! sending the last of its output.
//!
//! A slow reader never holds the container or the log back: output is sent
//! without blocking, and a client whose socket buffer cannot take a whole
//! frame is disconnected (the socket's send buffer, a few hundred KiB, is
//! its slack). Stdin is the opposite direction: while the container does not
//! read its stdin, the shim stops reading stdin frames (back-pressure to the
//! writer), never buffering more than one read.
//!
//! # CRI log
//!
//! Every stdout/stderr line goes to `--log-path` as
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <bytes>\n`: `F` for a full line
//! (its newline dropped), `P` for a piece of a line longer than
//! `--log-limit` (16 KiB, as conmon and containerd) or for the end of a
//! stream without a newline. With a tty the output is all `stdout`, bytes as
//! the pty gave them (`\r\n` line ends keep their `\r`). `ReopenLog` reopens
//! the path, so after a rotator renamed the file new lines go to a fresh one.

pub mod client;
pub mod proto;
pub mod time;

pub use client::{Attach, Ctl, LaunchConfig, LaunchError, launch};
pub use proto::{CtlRequest, CtlResponse, ExitRecord, Frame, Status, Stream, SyncResult};

/// File names inside the shim directory (see the module doc).
pub mod layout {
    /// The shim's own pid.
    pub const SHIM_PID: &str = "shim.pid";
    /// The container's (or exec process's) host pid.
    pub const PID: &str = "pid";
    /// The control socket.
    pub const CTL_SOCK: &str = "ctl.sock";
    /// The attach socket.
    pub const ATTACH_SOCK: &str = "attach.sock";
    /// The exit record, written once before the shim exits.
    pub const EXIT: &str = "exit.json";
    /// The runtime's log (`husk --log … --log-format json`).
    pub const RUNTIME_LOG: &str = "runtime.log";
    /// Where the runtime sends a tty's master while `create`/`exec` runs.
    pub const CONSOLE_SOCK: &str = "console.sock";
}

/// The default length at which a line is cut into `P` pieces (16 KiB).
pub const DEFAULT_LOG_LIMIT: usize = 16 * 1024;
