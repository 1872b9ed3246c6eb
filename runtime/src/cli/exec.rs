//! `husk exec`.

use std::path::PathBuf;

use anyhow::Context;

use super::args::{Flag, Matches, UsageError, number, switch, value};
use crate::container::{self, ExecOptions};
use crate::state::Store;

/// `husk exec`'s flags.
pub const FLAGS: &[Flag] = &[
    value(
        "process",
        b'p',
        "A process.json describing the process (instead of a command)",
    ),
    switch("detach", b'd', "Return once the process is started"),
    value("pid-file", 0, "Write the process's pid to this file"),
    value(
        "console-socket",
        0,
        "A unix socket that receives the pty master",
    ),
    switch("tty", b't', "Allocate a pseudo-terminal"),
    value("cwd", 0, "Working directory in the container"),
    value(
        "env",
        b'e',
        "Set an environment variable (KEY=VALUE; repeatable)",
    ),
    value("user", b'u', "uid[:gid]"),
    value(
        "additional-gids",
        b'g',
        "Add a supplementary gid (repeatable)",
    ),
    switch("no-new-privs", 0, "Set no_new_privs"),
    value("cap", b'c', "Add a capability (repeatable)"),
    value(
        "preserve-fds",
        0,
        "Pass this many extra fds to the process (default 0)",
    ),
    // Accepted and ignored (no SELinux/AppArmor support).
    value("process-label", 0, ""),
    value("apparmor", 0, ""),
];

#[derive(Debug)]
pub struct Args {
    /// A process.json describing the process (instead of a command).
    pub process: Option<PathBuf>,
    /// Return once the process is started.
    pub detach: bool,
    /// Write the process's pid to this file.
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Working directory in the container.
    pub cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE).
    pub env: Vec<String>,
    /// uid[:gid].
    pub user: Option<String>,
    /// Additional gids.
    pub additional_gids: Vec<u32>,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Capabilities to add.
    pub cap: Vec<String>,
    /// Pass this many extra fds to the process.
    pub preserve_fds: u32,
    /// Those of them the caller really passed (recorded at start).
    pub passed_fds: Vec<std::os::fd::RawFd>,
    /// The container id.
    pub id: String,
    /// The command and its arguments.
    pub command: Vec<String>,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Result<Self, UsageError> {
        let all = |long| m.all(long).map(String::from).collect();
        Ok(Self {
            process: m.path("process"),
            detach: m.on("detach"),
            pid_file: m.path("pid-file"),
            console_socket: m.path("console-socket"),
            tty: m.on("tty"),
            cwd: m.path("cwd"),
            env: all("env"),
            user: m.get("user").map(String::from),
            additional_gids: m
                .all("additional-gids")
                .map(|g| number("additional-gids", g))
                .collect::<Result<_, _>>()?,
            no_new_privs: m.on("no-new-privs"),
            cap: all("cap"),
            preserve_fds: m.num("preserve-fds")?.unwrap_or(0),
            passed_fds: Vec::new(),
            id: m.arg(0),
            command: m.pos.get(1..).unwrap_or_default().to_vec(),
        })
    }
}

fn parse_user(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be a number"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: gid must be a number"))
        })
        .transpose()?;
    Ok((uid, gid))
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let o = ExecOptions {
        id: a.id.clone(),
        process_file: a.process,
        args: a.command,
        env: a.env,
        cwd: a.cwd,
        user: a.user.as_deref().map(parse_user).transpose()?,
        additional_gids: a.additional_gids,
        tty: a.tty,
        no_new_privs: a.no_new_privs,
        caps: a.cap,
        detach: a.detach,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        preserve_fds: a.passed_fds,
    };
    container::exec(store, &o).with_context(|| format!("container {}", a.id))
}
