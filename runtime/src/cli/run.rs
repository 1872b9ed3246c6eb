//! `husk run`: create and start; in the foreground, forward signals, wait,
//! delete, and exit with the container's status (128+N when killed by signal N).

use std::path::PathBuf;

use anyhow::Context;

use crate::container;
use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container is started.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the init's pid to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (SCM_RIGHTS).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for compatibility.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    pub keep: bool,
    /// Pass this many extra fds (3, 4, ...) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let ctx = || format!("container {}", a.id);
    let opts = container::CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        foreground_tty: !a.detach,
    };
    // Block the forwarded signals before the init can exit, so its SIGCHLD is
    // not lost; the init resets its own mask.
    let sigset = (!a.detach).then(container::signals::block_forwarded);
    let created = container::create(store, &opts).with_context(ctx)?;
    let wait_exec =
        !container::seams::hooks_of(&created.spec, container::seams::HookPoint::Poststart)
            .is_empty();
    if let Err(e) = container::release_init(&created.locked, &created.state, wait_exec) {
        let _ = container::destroy(created.locked, created.state, false);
        return Err(e).with_context(ctx);
    }
    container::poststart(&created.spec, &created.state);
    let Some(set) = sigset else {
        return Ok(0);
    };
    // Other commands (kill, state, exec) must work while we wait: let go of the lock.
    let container::Created {
        locked,
        state,
        tty_master,
        ..
    } = created;
    drop(locked);
    let code = match tty_master {
        Some(master) => crate::console::proxy_and_wait(master, state.pid, &set),
        None => container::signals::forward_and_wait(state.pid, &set),
    };
    if !a.keep {
        // A concurrent `delete --force` may have removed it already.
        if let Ok(locked) = store.open(&a.id) {
            container::destroy(locked, state, true).with_context(ctx)?;
        }
    }
    Ok(code)
}
