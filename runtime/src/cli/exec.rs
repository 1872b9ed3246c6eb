//! `husk exec`.

use std::path::PathBuf;

use anyhow::Context;

use crate::container::{self, ExecOptions};
use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A process.json describing the process (instead of a command).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process is started.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability.
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,
    /// Pass this many extra fds to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility (no SELinux/AppArmor support).
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// The container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
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
        preserve_fds: a.preserve_fds,
    };
    container::exec(store, &o).with_context(|| format!("container {}", a.id))
}
