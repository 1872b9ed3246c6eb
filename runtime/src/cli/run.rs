//! `husk run`: create and start; in the foreground, forward signals, wait,
//! delete, and exit with the container's status (128+N when killed by signal N).

use anyhow::Context;

use super::args::{Flag, Matches, UsageError, switch, value};
use crate::container;
use crate::state::Store;

/// `husk run`'s flags.
pub const FLAGS: &[Flag] = &[
    value(
        "bundle",
        b'b',
        "The bundle directory, holding config.json (default .)",
    ),
    switch("detach", b'd', "Return once the container is started"),
    value("pid-file", 0, "Write the init's pid to this file"),
    value(
        "console-socket",
        0,
        "A unix socket that receives the pty master",
    ),
    switch("no-pivot", 0, "Use chroot instead of pivot_root"),
    // Accepted and ignored: husk never creates session keyrings.
    switch("no-new-keyring", 0, ""),
    switch(
        "keep",
        0,
        "Keep the container's state after it exits (foreground only)",
    ),
    value(
        "preserve-fds",
        0,
        "Pass this many extra fds (3, 4, ...) (default 0)",
    ),
];

#[derive(Debug)]
pub struct Args {
    /// What `create` takes: bundle, pid file, console socket, ... and the id.
    pub create: super::create::Args,
    /// Return once the container is started.
    pub detach: bool,
    /// Keep the container's state after it exits (foreground only).
    pub keep: bool,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Result<Self, UsageError> {
        Ok(Self {
            create: super::create::Args::parse(m)?,
            detach: m.on("detach"),
            keep: m.on("keep"),
        })
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let id = &a.create.id;
    let ctx = || format!("container {id}");
    let opts = container::CreateOptions {
        foreground_tty: !a.detach,
        ..a.create.options()
    };
    // Block the forwarded signals before the init can exit, so its SIGCHLD is
    // not lost; the init resets its own mask.
    let sigset = (!a.detach).then(container::signals::block_forwarded);
    let created = container::create(store, &opts).with_context(ctx)?;
    let wait_exec =
        !container::seams::hooks_of(&created.spec, container::seams::HookPoint::Poststart)
            .is_empty();
    if let Err(e) = container::release_init(&created.locked, &created.state, wait_exec) {
        let _ =
            container::destroy_with_spec(created.locked, created.state, false, Some(&created.spec));
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
        spec,
        ..
    } = created;
    drop(locked);
    let code = match tty_master {
        Some(master) => crate::console::proxy_and_wait(master, state.pid, &set),
        None => container::signals::forward_and_wait(state.pid, &set),
    };
    if code == 128 + libc::SIGSYS && spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some()) {
        crate::logging::error(&format!(
            "container {id}: init killed by seccomp (SIGSYS): a system call it made is one that linux.seccomp kills"
        ));
    }
    if !a.keep {
        // A concurrent `delete --force` may have removed it already.
        if let Ok(locked) = store.open(id) {
            container::destroy_with_spec(locked, state, true, Some(&spec)).with_context(ctx)?;
        }
    }
    Ok(code)
}
