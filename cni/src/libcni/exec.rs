//! Finding and running one plugin binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::types::CniError;

/// Failure to run a plugin or to understand its answer.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No binary named `plugin` in any plugin dir.
    #[error("plugin {plugin:?} not found in {dirs:?}")]
    NotFound {
        /// The plugin type.
        plugin: String,
        /// The dirs searched.
        dirs: Vec<PathBuf>,
    },
    /// The binary could not be started or talked to.
    #[error("plugin {plugin}: {cause}")]
    Spawn {
        /// The plugin type.
        plugin: String,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The plugin reported an error document.
    #[error("plugin {plugin} {command}: {error}")]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: String,
        /// The plugin's error.
        error: Box<CniError>,
    },
    /// The plugin failed without a parsable error document.
    #[error("plugin {plugin} {command} failed ({status}): {stderr}")]
    Failed {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr (or stdout when stderr was empty).
        stderr: String,
    },
    /// The plugin succeeded but printed something that is not JSON.
    #[error("plugin {plugin} {command}: bad output: {cause}")]
    BadOutput {
        /// The plugin type.
        plugin: String,
        /// The CNI command.
        command: String,
        /// The decoding error.
        cause: serde_json::Error,
    },
}

impl ExecError {
    /// The plugin's CNI error when it reported one.
    pub fn cni_error(&self) -> Option<&CniError> {
        match self {
            ExecError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Runs plugins found in a list of directories (the CNI_PATH).
#[derive(Debug, Clone)]
pub struct PluginExec {
    dirs: Vec<PathBuf>,
}

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct InvokeArgs<'a> {
    /// CNI_COMMAND.
    pub command: &'a str,
    /// CNI_CONTAINERID.
    pub container_id: &'a str,
    /// CNI_NETNS.
    pub netns: &'a str,
    /// CNI_IFNAME.
    pub ifname: &'a str,
    /// CNI_ARGS (`K=V;K2=V2`).
    pub args: String,
}

impl PluginExec {
    /// Look plugins up in `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        PluginExec { dirs }
    }

    /// The CNI_PATH value.
    pub fn cni_path(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The path of the plugin binary named `plugin`.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, ExecError> {
        let not_found = || ExecError::NotFound {
            plugin: plugin.to_string(),
            dirs: self.dirs.clone(),
        };
        if plugin.is_empty() || plugin.contains('/') {
            return Err(not_found());
        }
        self.dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| is_executable(p))
            .ok_or_else(not_found)
    }

    /// Run `plugin` with `stdin` and the CNI environment; returns its stdout
    /// (possibly empty) on success.
    pub fn run(
        &self,
        plugin: &str,
        args: &InvokeArgs<'_>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, ExecError> {
        let path = self.find(plugin)?;
        let spawn_err = |cause| ExecError::Spawn {
            plugin: plugin.to_string(),
            cause,
        };
        let mut cmd = Command::new(&path);
        cmd.env("CNI_COMMAND", args.command)
            .env("CNI_CONTAINERID", args.container_id)
            .env("CNI_NETNS", args.netns)
            .env("CNI_IFNAME", args.ifname)
            .env("CNI_ARGS", &args.args)
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(mut input) = child.stdin.take() {
            // A plugin may exit without reading stdin (VERSION): ignore EPIPE.
            if let Err(e) = input.write_all(stdin) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(spawn_err(e));
                }
            }
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        if let Ok(error) = serde_json::from_slice::<CniError>(&out.stdout) {
            return Err(ExecError::Plugin {
                plugin: plugin.to_string(),
                command: args.command.to_string(),
                error: Box::new(error),
            });
        }
        let text = if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        Err(ExecError::Failed {
            plugin: plugin.to_string(),
            command: args.command.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(text).trim().to_string(),
        })
    }

    /// Run and decode a JSON answer.
    pub fn run_json<T: serde::de::DeserializeOwned>(
        &self,
        plugin: &str,
        args: &InvokeArgs<'_>,
        stdin: &[u8],
    ) -> Result<T, ExecError> {
        let out = self.run(plugin, args, stdin)?;
        serde_json::from_slice(&out).map_err(|cause| ExecError::BadOutput {
            plugin: plugin.to_string(),
            command: args.command.to_string(),
            cause,
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
