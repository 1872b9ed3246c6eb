//! OCI hooks: prestart, createRuntime, createContainer, startContainer,
//! poststart, poststop.
//!
//! Each hook runs as the spec says: `path` executed with `args` as its argv
//! (`args[0]` is argv0), `env` as its whole environment (the caller's
//! environment when `env` is absent, as runc does), the container state JSON
//! on stdin, killed with SIGKILL when `timeout` seconds pass. Hooks run one
//! after another; the first failure stops the list, except for poststart and
//! poststop, whose failures are warnings: the rest of the list still runs.
//!
//! [`run`] works both in the runtime process and in the container's init
//! (single-threaded, maybe pid 1 of a new pid namespace): it uses no threads,
//! waits for the hook with a pidfd and poll(2) (a waitpid loop on kernels
//! without pidfds), reaps only the hook it started, and, when it is pid 1,
//! also reaps whatever the hooks left orphaned.

mod process;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use oci_spec::runtime::Hook;

/// Which of the OCI hook lists is run. `Display` gives the config.json name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        })
    }
}

/// Why a hook could not run or failed. Every variant names the hook as
/// `hooks.<kind>[<index>]` and its path. Some hooks run in the container's
/// init, whose errors cross the channel as text: causes are part of the
/// message (`cause`, `errno`; never a `#[source]`), printed once.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook's definition is invalid (checked before anything runs).
    #[error("hooks.{kind}[{index}].{field}: {reason}")]
    Invalid {
        kind: HookKind,
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// The hook could not be started.
    #[error("hooks.{kind}[{index}] ({path}): start: {cause}")]
    Spawn {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Waiting for or talking to the hook failed.
    #[error("hooks.{kind}[{index}] ({path}): {what}: {errno}")]
    Wait {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        what: &'static str,
        errno: nix::errno::Errno,
    },
    /// The hook exited with a non-zero status or was killed by a signal.
    #[error("hooks.{kind}[{index}] ({path}) failed: {status}{}", output_suffix(.stdout, .stderr))]
    Failed {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        status: String,
        stdout: String,
        stderr: String,
    },
    /// The hook ran longer than its `timeout` and was killed.
    #[error("hooks.{kind}[{index}] ({path}) timed out after {timeout:?} and was killed{}", output_suffix(.stdout, .stderr))]
    TimedOut {
        kind: HookKind,
        index: usize,
        path: PathBuf,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },
}

fn output_suffix(stdout: &str, stderr: &str) -> String {
    let mut s = String::new();
    if !stderr.trim().is_empty() {
        s.push_str(&format!("; stderr: {}", stderr.trim_end()));
    }
    if !stdout.trim().is_empty() {
        s.push_str(&format!("; stdout: {}", stdout.trim_end()));
    }
    s
}

/// Check a hook list without running anything: absolute paths, positive
/// timeouts, `KEY=VALUE` environment entries.
pub fn validate(kind: HookKind, hooks: &[Hook]) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        process::HookCommand::new(kind, index, hook)?;
    }
    Ok(())
}

impl HookKind {
    /// Whether a failure of a hook of this kind fails the operation and
    /// stops the list. For poststart and poststop the spec says the runtime
    /// logs a warning and goes on with the remaining hooks and the lifecycle.
    pub fn failure_is_fatal(self) -> bool {
        !matches!(self, HookKind::Poststart | HookKind::Poststop)
    }
}

/// Run `hooks` of `kind` in order, each with `state_json` on stdin.
///
/// Stops at the first hook that cannot start, exits non-zero, is killed, or
/// outlives its timeout (see [`run_all`] for the kinds that go on).
pub fn run(kind: HookKind, hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    validate(kind, hooks)?;
    for (index, hook) in hooks.iter().enumerate() {
        run_one(kind, index, hook, state_json)?;
    }
    Ok(())
}

/// Run every hook of `kind`, whatever the earlier ones did; returns the
/// failures in order (poststart and poststop: each is a warning).
pub fn run_all(kind: HookKind, hooks: &[Hook], state_json: &[u8]) -> Vec<HookError> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| run_one(kind, index, hook, state_json).err())
        .collect()
}

fn run_one(kind: HookKind, index: usize, hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    tracing::debug!(hook = %kind, index, path = %hook.path().display(), "running hook");
    let result = process::HookCommand::new(kind, index, hook)?.run(state_json);
    process::reap_orphans_if_init();
    result
}

#[cfg(test)]
mod tests;
