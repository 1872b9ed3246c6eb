//! `husk create`.

use std::path::PathBuf;

use anyhow::Context;

use crate::container::{self, CreateOptions};
use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (SCM_RIGHTS).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for compatibility (husk never creates session keyrings).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

impl Args {
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            foreground_tty: false,
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    container::create(store, &a.options()).with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
