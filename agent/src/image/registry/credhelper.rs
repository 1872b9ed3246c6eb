//! Docker credential helpers: the program `docker-credential-<name>`, run as
//! `docker-credential-<name> get` with the server URL on stdin, answering
//! `{"ServerURL":..,"Username":..,"Secret":..}` on stdout (the protocol of
//! docker/docker-credential-helpers).
//!
//! The helper runs without a shell, in a process group of its own, and is
//! killed (with anything it started) when it does not answer in time: a
//! hung keychain must not hang a pull.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::auth::Credentials;

/// How long a helper may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a helper prints (exit status non-zero) when it has nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The username that marks `Secret` as an identity (refresh) token.
const TOKEN_USERNAME: &str = "<token>";

/// More output than this is not a credential answer.
const MAX_OUTPUT: u64 = 1 << 20;

/// Where helpers are looked up and how long one may run.
#[derive(Debug, Clone)]
pub struct HelperEnv {
    /// Directories searched for `docker-credential-<name>`, as in `PATH`;
    /// `None` means this process's `PATH`.
    pub search_path: Option<OsString>,
    pub timeout: Duration,
}

impl Default for HelperEnv {
    fn default() -> Self {
        HelperEnv {
            search_path: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a helper gave no usable answer. Every variant names the helper
/// program and the server it was asked about.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("credential helper {program} (for {server}): not found in PATH")]
    NotInstalled { program: String, server: String },
    #[error("credential helper {program} (for {server}): cannot run {path}: {cause}")]
    Spawn {
        program: String,
        server: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("credential helper {program} (for {server}): no answer within {timeout:?}; killed")]
    Timeout {
        program: String,
        server: String,
        timeout: Duration,
    },
    #[error("credential helper {program} (for {server}): {status}: {output}")]
    Failed {
        program: String,
        server: String,
        status: ExitStatus,
        output: String,
    },
    #[error("credential helper {program} (for {server}): invalid answer: {message}")]
    BadAnswer {
        program: String,
        server: String,
        message: String,
    },
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The executable `program` in the first directory of `search_path` that has it.
/// Empty and relative entries are skipped: a daemon must not run helpers
/// from whatever its working directory is.
fn find(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Ask helper `name` for the credentials of `server` (`https://index.docker.io/v1/`
/// for Docker Hub, else the registry host). `Ok(None)` when it has none.
pub fn get(env: &HelperEnv, name: &str, server: &str) -> Result<Option<Credentials>, HelperError> {
    let program = format!("docker-credential-{name}");
    let search = env
        .search_path
        .clone()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let Some(path) = find(&program, &search) else {
        return Err(HelperError::NotInstalled {
            program,
            server: server.into(),
        });
    };
    let run = run(&path, server, env.timeout).map_err(|e| match e {
        RunError::Spawn(cause) => HelperError::Spawn {
            program: program.clone(),
            server: server.into(),
            path: path.clone(),
            cause,
        },
        RunError::Timeout => HelperError::Timeout {
            program: program.clone(),
            server: server.into(),
            timeout: env.timeout,
        },
    })?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        if stdout.trim() == NOT_FOUND {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&run.stderr);
        let output = [stderr.trim(), stdout.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HelperError::Failed {
            program,
            server: server.into(),
            status: run.status,
            output: if output.is_empty() {
                "no output".into()
            } else {
                output
            },
        });
    }
    let answer: Answer =
        serde_json::from_slice(&run.stdout).map_err(|e| HelperError::BadAnswer {
            program: program.clone(),
            server: server.into(),
            message: format!("not the JSON of a credential: {e}"),
        })?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == TOKEN_USERNAME {
        Credentials {
            identity_token: Some(answer.secret),
            ..Default::default()
        }
    } else {
        Credentials::basic(&answer.username, &answer.secret)
    }))
}

struct RunOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Spawn(std::io::Error),
    Timeout,
}

/// Run `<path> get` with `server` on stdin; kill its process group after `timeout`.
fn run(path: &Path, server: &str, timeout: Duration) -> Result<RunOutput, RunError> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(path)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(RunError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE; its status tells the rest.
        let _ = stdin.write_all(server.as_bytes());
    }
    // Read both pipes on threads of their own, so a helper that fills one
    // while we wait on the other cannot deadlock, and a helper that never
    // closes them cannot hold us past the deadline.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    for (is_out, pipe) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            let _ = tx.send((is_out, buf));
        });
    }
    drop(tx);
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((true, b)) => stdout = Some(b),
            Ok((false, b)) => stderr = Some(b),
            Err(_) => return Err(kill(child)),
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return Err(kill(child)),
        }
    };
    Ok(RunOutput {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

/// Kill the helper's process group and reap the helper.
fn kill(mut child: Child) -> RunError {
    // The helper is not reaped yet, so its pid (= the group id) is still ours.
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    RunError::Timeout
}

/// Helper scripts for tests (here and in `dockercfg`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A temp dir holding `docker-credential-<name>` shell scripts.
    pub struct Helpers {
        pub dir: tempfile::TempDir,
    }

    impl Helpers {
        pub fn new() -> Self {
            Helpers {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// Write helper `name` with `body` (a /bin/sh script).
        pub fn add(&self, name: &str, body: &str) -> &Self {
            let p = self.dir.path().join(format!("docker-credential-{name}"));
            let src = self.dir.path().join(format!(".{name}.src"));
            std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
            // Written by cp, not by us: a write fd of ours would leak into
            // helpers that parallel tests fork meanwhile, making exec fail
            // with ETXTBSY.
            let st = Command::new("cp").arg(&src).arg(&p).status().unwrap();
            assert!(st.success());
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            self
        }

        pub fn env(&self, timeout: Duration) -> HelperEnv {
            HelperEnv {
                search_path: Some(self.dir.path().as_os_str().to_owned()),
                timeout,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Helpers;
    use super::*;

    const ECHO_URL: &str = r#"read -r url
[ "$1" = get ] || exit 3
printf '{"ServerURL":"%s","Username":"alice","Secret":"pw-for-%s"}\n' "$url" "$url""#;

    #[test]
    fn found_credentials_come_from_the_helper() {
        let h = Helpers::new();
        h.add("echo", ECHO_URL);
        let c = get(&h.env(DEFAULT_TIMEOUT), "echo", "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.user_pass().unwrap(),
            Some(("alice".into(), "pw-for-reg.example:5000".into()))
        );
        assert!(c.identity_token.is_none());
    }

    #[test]
    fn identity_token_answer() {
        let h = Helpers::new();
        h.add(
            "tok",
            r#"printf '{"ServerURL":"x","Username":"<token>","Secret":"refresh-123"}'"#,
        );
        let c = get(&h.env(DEFAULT_TIMEOUT), "tok", "reg.example")
            .unwrap()
            .unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("refresh-123"));
        assert_eq!(c.user_pass().unwrap(), None);
    }

    #[test]
    fn not_found_is_no_credentials() {
        let h = Helpers::new();
        h.add(
            "none",
            "echo 'credentials not found in native keychain'\nexit 1",
        );
        assert!(
            get(&h.env(DEFAULT_TIMEOUT), "none", "reg.example")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn failing_helper_is_an_error_naming_it() {
        let h = Helpers::new();
        h.add("broken", "echo 'keychain locked' >&2\nexit 2");
        let err = get(&h.env(DEFAULT_TIMEOUT), "broken", "reg.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-broken")
                && err.contains("reg.example")
                && err.contains("keychain locked")
                && err.contains("exit status: 2"),
            "{err}"
        );
        h.add("garbage", "echo 'not json'");
        let err = get(&h.env(DEFAULT_TIMEOUT), "garbage", "reg.example").unwrap_err();
        assert!(matches!(err, HelperError::BadAnswer { .. }), "{err}");
        let err = get(&h.env(DEFAULT_TIMEOUT), "absent", "reg.example")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-absent") && err.contains("not found in PATH"),
            "{err}"
        );
    }

    #[test]
    fn hung_helper_is_killed_with_its_children() {
        let h = Helpers::new();
        let pidfile = h.dir.path().join("sleeper.pid");
        h.add(
            "hang",
            &format!("sleep 60 &\necho $! > {}\nwait", pidfile.display()),
        );
        let t0 = Instant::now();
        let err = get(&h.env(Duration::from_millis(500)), "hang", "reg.example").unwrap_err();
        assert!(matches!(err, HelperError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("docker-credential-hang"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        // The helper's own child went down with it (gone, or a zombie until init reaps it).
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let t0 = Instant::now();
        loop {
            let gone = match std::fs::read_to_string(&stat) {
                Err(_) => true,
                Ok(s) => s
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z')),
            };
            if gone {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "helper child {pid} still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn relative_path_entries_are_not_searched() {
        let h = Helpers::new();
        h.add("rel", ECHO_URL);
        let env = HelperEnv {
            search_path: Some(OsString::from("relative/dir:")),
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(matches!(
            get(&env, "rel", "x"),
            Err(HelperError::NotInstalled { .. })
        ));
    }
}
