//! `husk create`.

use std::path::PathBuf;

use anyhow::Context;

use super::args::{Flag, Matches, UsageError, switch, value};
use crate::container::{self, CreateOptions};
use crate::state::Store;

/// `husk create`'s flags.
pub const FLAGS: &[Flag] = &[
    value(
        "bundle",
        b'b',
        "The bundle directory, holding config.json (default .)",
    ),
    value("pid-file", 0, "Write the init's pid to this file"),
    value(
        "console-socket",
        0,
        "A unix socket that receives the pty master",
    ),
    switch("no-pivot", 0, "Use chroot instead of pivot_root"),
    // Accepted and ignored: husk never creates session keyrings.
    switch("no-new-keyring", 0, ""),
    value(
        "preserve-fds",
        0,
        "Pass this many extra fds (3, 4, ...) (default 0)",
    ),
];

#[derive(Debug)]
pub struct Args {
    /// The bundle directory (holding config.json).
    pub bundle: PathBuf,
    /// Write the init's pid to this file.
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (SCM_RIGHTS).
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Pass this many extra fds (3, 4, ...) to the container.
    pub preserve_fds: u32,
    /// Those of them the caller really passed (recorded at start).
    pub passed_fds: Vec<std::os::fd::RawFd>,
    /// The container id.
    pub id: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Result<Self, UsageError> {
        Ok(Self {
            bundle: m.path("bundle").unwrap_or_else(|| ".".into()),
            pid_file: m.path("pid-file"),
            console_socket: m.path("console-socket"),
            no_pivot: m.on("no-pivot"),
            preserve_fds: m.num("preserve-fds")?.unwrap_or(0),
            passed_fds: Vec::new(),
            id: m.arg(0),
        })
    }

    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.passed_fds.clone(),
            foreground_tty: false,
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    container::create(store, &a.options()).with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
