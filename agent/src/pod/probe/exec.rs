//! Exec probes: `ExecSync` in the container through the CRI trait, the
//! command expanded with the container's static env as kubelet does
//! (`ExpandContainerCommandOnlyStatic`: `value`s only, no `valueFrom`).

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::{Outcome, Target};
use crate::cri::CriError;
use crate::pod::expand::expand;

/// `command` with `$(VAR)` expanded from the container's literal env values.
pub fn static_command(
    command: &[String],
    c: &k8s_openapi::api::core::v1::Container,
) -> Vec<String> {
    let lookup = |name: &str| {
        c.env
            .iter()
            .flatten()
            .rev()
            .find(|e| e.name == name)
            .map(|e| e.value.clone().unwrap_or_default())
    };
    command.iter().map(|s| expand(s, lookup)).collect()
}

/// Run `command` in the target container with a timeout (0: none).
pub async fn exec_sync(
    target: &Target<'_>,
    command: Vec<String>,
    timeout: Duration,
) -> Result<cri::ExecSyncResponse, CriError> {
    let req = cri::ExecSyncRequest {
        container_id: target.container_id.to_string(),
        cmd: command,
        timeout: timeout.as_secs() as i64,
    };
    // The runtime enforces the timeout; ours is a backstop a little later.
    let backstop = (!timeout.is_zero()).then(|| timeout + Duration::from_secs(2));
    match backstop {
        Some(t) => tokio::time::timeout(t, target.runtime.exec_sync(req))
            .await
            .unwrap_or_else(|_| {
                Err(CriError::DeadlineExceeded(format!(
                    "command timed out after {} s",
                    timeout.as_secs()
                )))
            }),
        None => target.runtime.exec_sync(req).await,
    }
}

/// One exec probe: exit 0 passes; a timeout fails (kubelet's
/// `ExecProbeTimeout`); other runtime errors are Unknown.
pub async fn probe(command: &[String], target: &Target<'_>, timeout: Duration) -> Outcome {
    let cmd = static_command(command, target.container);
    match exec_sync(target, cmd.clone(), timeout).await {
        Ok(r) if r.exit_code == 0 => Outcome::Success,
        Ok(r) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            let out = String::from_utf8_lossy(&out).trim_end().to_string();
            if out.is_empty() {
                Outcome::Failure(format!("command {cmd:?} exited with {}", r.exit_code))
            } else {
                Outcome::Failure(out)
            }
        }
        // husk's own service says DeadlineExceeded; a remote runtime
        // (containerd) says it with the gRPC code, as kubelet reads it.
        Err(
            CriError::DeadlineExceeded(_)
            | CriError::Remote {
                code: tonic::Code::DeadlineExceeded,
                ..
            },
        ) => Outcome::Failure(format!(
            "command {cmd:?} timed out after {}s",
            timeout.as_secs()
        )),
        Err(e) => Outcome::Unknown(super::http::error_chain(&e)),
    }
}
