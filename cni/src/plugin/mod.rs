//! The plugin side of the CNI protocol: the CNI_* environment, command
//! dispatch, and printing a result or the error JSON.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::types::{
    CniError, CniResult, CniVersion, ErrorCode, NetConf, SUPPORTED_VERSIONS, validate,
};

/// The verbs of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify.
    Check,
    /// Collect garbage (1.1).
    Gc,
    /// Readiness (1.1).
    Status,
    /// Report versions.
    Version,
}

/// Everything a plugin gets from its environment and stdin.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS pairs.
    pub args: Vec<(String, String)>,
    /// CNI_PATH.
    pub path: Vec<PathBuf>,
    /// The raw config.
    pub stdin: Vec<u8>,
}

fn env_err(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidEnvironment, msg)
}

impl CmdArgs {
    /// Read the environment through `get` (so tests need not touch the process env).
    pub fn from_env_with(
        get: impl Fn(&str) -> Option<String>,
        stdin: Vec<u8>,
    ) -> Result<CmdArgs, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some(other) => return Err(env_err(format!("CNI_COMMAND: unknown command {other:?}"))),
            None => return Err(env_err("CNI_COMMAND: not set".into())),
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let need = |k: &str, required: bool| -> Result<String, CniError> {
            match get(k).filter(|v| !v.is_empty()) {
                Some(v) => Ok(v),
                None if required => Err(env_err(format!("{k}: must be set for this command"))),
                None => Ok(String::new()),
            }
        };
        let container_id = need("CNI_CONTAINERID", per_container)?;
        let ifname = need("CNI_IFNAME", per_container)?;
        let netns = need(
            "CNI_NETNS",
            matches!(command, Command::Add | Command::Check),
        )?;
        if per_container {
            // The id and name end up in file names, link names and rule
            // comments: held to libcni's rules before anything is touched.
            validate::container_id(&container_id)?;
            validate::ifname(&ifname).map_err(|e| CniError {
                msg: format!("CNI_IFNAME: {}", e.msg),
                ..e
            })?;
        }
        let mut args = Vec::new();
        for kv in get("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| env_err(format!("CNI_ARGS: {kv:?} is not KEY=VALUE")))?;
            args.push((k.to_string(), v.to_string()));
        }
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(CmdArgs {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
            stdin,
        })
    }
}

/// What a plugin implements; the runner handles VERSION, parsing and output.
pub trait Plugin {
    /// ADD: attach and return the result.
    fn add(&self, args: &CmdArgs, conf: &NetConf, v: CniVersion) -> Result<CniResult, CniError>;
    /// DEL: detach; must succeed when things are already gone.
    fn del(&self, args: &CmdArgs, conf: &NetConf, v: CniVersion) -> Result<(), CniError>;
    /// CHECK: verify the attachment against `prevResult`.
    fn check(&self, args: &CmdArgs, conf: &NetConf, v: CniVersion) -> Result<(), CniError>;
    /// GC: release what belongs to no valid attachment.
    fn gc(&self, args: &CmdArgs, conf: &NetConf, v: CniVersion) -> Result<(), CniError>;
    /// STATUS: whether ADD can succeed now.
    fn status(&self, args: &CmdArgs, conf: &NetConf, v: CniVersion) -> Result<(), CniError>;
}

/// Run one invocation and produce (stdout, exit code).
pub fn dispatch(plugin: &impl Plugin, args: &CmdArgs) -> (Vec<u8>, i32) {
    let version_hint = serde_json::from_slice::<serde_json::Value>(&args.stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|x| x.as_str())
                .map(str::to_string)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    if args.command == Command::Version {
        let v = serde_json::json!({"cniVersion": version_hint, "supportedVersions": SUPPORTED_VERSIONS});
        return (v.to_string().into_bytes(), 0);
    }
    let out = (|| -> Result<Option<serde_json::Value>, CniError> {
        let (conf, v) = NetConf::parse(&args.stdin)?;
        match args.command {
            Command::Add => Ok(Some(plugin.add(args, &conf, v)?.to_json_for(v))),
            Command::Del => plugin.del(args, &conf, v).map(|_| None),
            Command::Check => {
                if v < CniVersion::V0_4_0 {
                    return Err(CniError::new(
                        ErrorCode::IncompatibleVersion,
                        "CHECK needs cniVersion 0.4.0 or later",
                    ));
                }
                plugin.check(args, &conf, v).map(|_| None)
            }
            Command::Gc | Command::Status => {
                if !v.has_gc_status() {
                    return Err(CniError::new(
                        ErrorCode::IncompatibleVersion,
                        format!("cniVersion {v}: GC and STATUS need 1.1.0"),
                    ));
                }
                if args.command == Command::Gc {
                    plugin.gc(args, &conf, v).map(|_| None)
                } else {
                    plugin.status(args, &conf, v).map(|_| None)
                }
            }
            Command::Version => Ok(None),
        }
    })();
    match out {
        Ok(Some(v)) => (v.to_string().into_bytes(), 0),
        Ok(None) => (Vec::new(), 0),
        Err(e) => {
            let e = e.with_version(version_hint);
            (serde_json::to_vec(&e).unwrap_or_default(), 1)
        }
    }
}

/// A plugin binary's `main`: read env and stdin, dispatch, print, exit.
pub fn main(plugin: &impl Plugin) -> ! {
    // Room for a whole config up front: no 32-byte probe reads.
    let mut stdin = Vec::with_capacity(64 * 1024);
    let code = match std::io::stdin().read_to_end(&mut stdin) {
        Err(e) => {
            print_err(CniError::new(ErrorCode::IoFailure, format!("stdin: {e}")));
            1
        }
        Ok(_) => match CmdArgs::from_env_with(|k| std::env::var(k).ok(), stdin) {
            Err(e) => {
                print_err(e);
                1
            }
            Ok(args) => {
                let (out, code) = dispatch(plugin, &args);
                let mut so = std::io::stdout().lock();
                let _ = so.write_all(&out);
                let _ = so.flush();
                code
            }
        },
    };
    std::process::exit(code)
}

fn print_err(e: CniError) {
    let _ = std::io::stdout().write_all(&serde_json::to_vec(&e).unwrap_or_default());
}

/// Log to stderr (stdout carries the protocol) at the level in
/// `HUSK_CNI_LOG` (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUSK_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn add_needs_netns_del_does_not() {
        let e = CmdArgs::from_env_with(
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ]),
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_NETNS"));
        let a = CmdArgs::from_env_with(
            env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "K8S_POD_NAME=p;IgnoreUnknown=1"),
                ("CNI_PATH", "/a:/b"),
            ]),
            vec![],
        )
        .unwrap();
        assert_eq!(a.args[0], ("K8S_POD_NAME".into(), "p".into()));
        assert_eq!(a.path.len(), 2);
    }

    #[test]
    fn rejects_bad_ifname_and_command() {
        let e = CmdArgs::from_env_with(
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "a-very-long-interface"),
                ("CNI_NETNS", "/x"),
            ]),
            vec![],
        )
        .unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
        let e = CmdArgs::from_env_with(env(&[("CNI_COMMAND", "NOPE")]), vec![]).unwrap_err();
        assert_eq!(e.code, 4);
        let e = CmdArgs::from_env_with(
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0:1"),
                ("CNI_NETNS", "/x"),
            ]),
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_IFNAME"), "{}", e.msg);
    }

    #[test]
    fn rejects_a_traversal_container_id_for_every_per_container_verb() {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let e = CmdArgs::from_env_with(
                env(&[
                    ("CNI_COMMAND", cmd),
                    ("CNI_CONTAINERID", "../../x/y"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/x"),
                ]),
                vec![],
            )
            .unwrap_err();
            assert_eq!(e.code, 4, "{cmd}");
            assert_eq!(e.msg, "invalid characters in containerID");
            assert_eq!(e.details, "../../x/y");
        }
    }
}
