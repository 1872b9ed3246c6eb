//! ExecSync: a command run in a container through a husk-shim exec session,
//! its output read back from the session's CRI log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use k8s_cri::v1 as cri;

use super::container::Live;
use super::error::CriError;
use super::record;
use super::runtime::{Cri, State, blocking};

/// Output kept per stream, as the kubelet caps exec output (16 MiB).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

impl Cri {
    pub(crate) async fn exec_sync_in(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, CriError> {
        if req.cmd.is_empty() {
            return Err(CriError::invalid("cmd", "must not be empty"));
        }
        if req.timeout < 0 {
            return Err(CriError::invalid("timeout", "must not be negative"));
        }
        let rec = {
            let st = self.state();
            State::resolve(&st.containers, "container", &req.container_id)?.clone()
        };
        if !matches!(rec.live(), Live::Running) {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let dir = self.cfg.exec_dir().join(&record::new_id()[..32]);
        let (cfg, r, d, cmd) = (self.cfg.clone(), rec.clone(), dir.clone(), req.cmd.clone());
        let launched = blocking("start the exec session", move || {
            std::fs::create_dir_all(&d).map_err(CriError::io("create the exec dir", &d))?;
            let process = process_json(&r.bundle, &cmd)?;
            let pj = d.join("process.json");
            std::fs::write(&pj, process).map_err(CriError::io("write process.json", &pj))?;
            husk_shim::launch(&husk_shim::LaunchConfig {
                shim: cfg.shim.clone(),
                runtime: cfg.runtime.clone(),
                root: cfg.runtime_root(),
                id: r.id.clone(),
                bundle: r.bundle.clone(),
                dir: d.join("s"),
                log_path: d.join("log"),
                stdin: false,
                exec: Some(pj),
                release: None,
            })
            .map_err(|e| CriError::internal(format!("container {}: exec", r.id), e))
        })
        .await;
        let res = match launched {
            Ok(pid) => wait(&dir, pid, req.timeout, &rec.id).await,
            Err(e) => Err(e),
        };
        let d = dir.clone();
        let _ = blocking("remove the exec dir", move || {
            let _ = crate::image::fsutil::remove_tree(&d);
            Ok(())
        })
        .await;
        res
    }
}

/// The container's process with `cmd` as its args, without a tty.
pub(super) fn process_json(bundle: &Path, cmd: &[String]) -> Result<Vec<u8>, CriError> {
    let p = bundle.join("config.json");
    let data = std::fs::read(&p).map_err(CriError::io("read config.json", &p))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| CriError::internal("parse config.json", e))?;
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = false.into();
    serde_json::to_vec(&process).map_err(|e| CriError::internal("encode process.json", e))
}

/// Wait for the session's exit (killing it at the timeout) and read its output.
async fn wait(
    dir: &Path,
    pid: i32,
    timeout: i64,
    id: &str,
) -> Result<cri::ExecSyncResponse, CriError> {
    let shim_dir = dir.join("s");
    let ended = shim_gone(&shim_dir);
    if timeout > 0 {
        let limit = Duration::from_secs(timeout as u64);
        if tokio::time::timeout(limit, ended).await.is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(CriError::DeadlineExceeded(format!(
                "container {id}: command timed out after {timeout} s"
            )));
        }
    } else {
        ended.await;
    }
    let exit = exit_record(&shim_dir, id).await?;
    let log: PathBuf = dir.join("log");
    let data = tokio::fs::read(&log).await.unwrap_or_default();
    let (stdout, stderr) = split_log(&data);
    Ok(cri::ExecSyncResponse {
        stdout,
        stderr,
        exit_code: exit.exit_code,
    })
}

/// Resolves once the session's shim has exited: it closes every attach
/// connection only then, after writing `exit.json`, so reading one to EOF
/// waits for the exit without polling. A shim that is already gone
/// refuses the connection.
async fn shim_gone(shim_dir: &Path) {
    let sock = shim_dir.join(husk_shim::layout::ATTACH_SOCK);
    let Ok(mut conn) = tokio::net::UnixStream::connect(&sock).await else {
        return;
    };
    // Output frames come here too (they are in the log as well): drop them.
    let mut buf = vec![0u8; 16 * 1024];
    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// The session's `exit.json`, written before its shim exited; a short wait
/// covers the connect racing the shim's own exit.
async fn exit_record(shim_dir: &Path, id: &str) -> Result<husk_shim::ExitRecord, CriError> {
    for _ in 0..100 {
        match husk_shim::client::read_exit(shim_dir) {
            Ok(Some(e)) => return Ok(e),
            Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                return Err(CriError::internal(
                    format!("container {id}: exec: read exit.json"),
                    e,
                ));
            }
        }
    }
    Err(CriError::internal(
        format!("container {id}: exec"),
        std::io::Error::other("the session ended without recording an exit"),
    ))
}

/// Split a CRI log (`<time> <stream> <F|P> <bytes>\n` lines) into stdout and stderr.
pub fn split_log(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for line in data.split(|b| *b == b'\n') {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (Some(_), Some(stream), Some(tag), Some(text)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let buf = if stream == b"stderr" {
            &mut err
        } else {
            &mut out
        };
        if buf.len() + text.len() + 1 > MAX_OUTPUT {
            continue;
        }
        buf.extend_from_slice(text);
        if tag == b"F" {
            buf.push(b'\n');
        }
    }
    (out, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_split_into_streams() {
        let log = b"2026-01-01T00:00:00.1Z stdout F hello\n2026-01-01T00:00:00.2Z stderr P par\n2026-01-01T00:00:00.3Z stderr F tial\n2026-01-01T00:00:00.4Z stdout F  two spaces\n";
        let (o, e) = split_log(log);
        assert_eq!(o, b"hello\n two spaces\n");
        assert_eq!(e, b"partial\n");
    }
}
