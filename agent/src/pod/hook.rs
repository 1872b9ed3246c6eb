//! Lifecycle hooks (`postStart`, `preStop`) as kubelet's handler runner:
//! exec through [`RuntimeService::exec_sync`] with no timeout of its own
//! (the caller bounds preStop by the grace period), httpGet where only a
//! transport error fails (any response is success), and sleep.
//! `tcpSocket` is accepted by the API but fails at run time, as in kubelet.
//!
//! [`RuntimeService::exec_sync`]: crate::cri::RuntimeService::exec_sync

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::probe::{Target, exec, http};

/// Why a hook failed (kubelet's `FailedPostStartHook`/`FailedPreStopHook` message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The exec hook could not run or exited non-zero.
    #[error(
        "Exec lifecycle hook ({command:?}) for Container {container:?} failed - error: {error}, message: {message:?}"
    )]
    Exec {
        /// The command.
        command: Vec<String>,
        /// Container name.
        container: String,
        /// What went wrong.
        error: String,
        /// The command's output.
        message: String,
    },
    /// The HTTP request could not be made.
    #[error("HTTP lifecycle hook ({path}) for Container {container:?} failed - error: {error}")]
    Http {
        /// Path requested.
        path: String,
        /// Container name.
        container: String,
        /// What went wrong.
        error: String,
    },
    /// No runnable handler (none, or tcpSocket).
    #[error("Cannot run handler: invalid handler: {0}")]
    Invalid(String),
}

/// Run `handler` for the target container; `Ok` carries the exec output.
pub async fn run(handler: &LifecycleHandler, target: &Target<'_>) -> Result<String, HookError> {
    if let Some(e) = handler.exec.as_ref() {
        let command = exec::static_command(e.command.as_deref().unwrap_or(&[]), target.container);
        let err = |error: String, message: String| HookError::Exec {
            command: command.clone(),
            container: target.container.name.clone(),
            error,
            message,
        };
        let resp = exec::exec_sync(target, command.clone(), Duration::ZERO)
            .await
            .map_err(|e| err(http::error_chain(&e), String::new()))?;
        let mut out = resp.stdout;
        out.extend_from_slice(&resp.stderr);
        let out = String::from_utf8_lossy(&out).into_owned();
        if resp.exit_code != 0 {
            return Err(err(
                format!(
                    "command '{}' exited with {}",
                    command.join(" "),
                    resp.exit_code
                ),
                out,
            ));
        }
        return Ok(out);
    }
    if let Some(h) = handler.http_get.as_ref() {
        let path = h.path.clone().unwrap_or_default();
        let err = |error: String| HookError::Http {
            path: path.clone(),
            container: target.container.name.clone(),
            error,
        };
        let (url, headers) = http::request(h, target).map_err(err)?;
        // No timeout of our own: the caller's deadline (grace period) bounds it.
        let client = http::client(Duration::from_secs(24 * 3600), true).map_err(err)?;
        let mut resp = client
            .get(&url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| err(http::error_chain(&e)))?;
        // Drain a little of the body so the server sees a complete exchange.
        let _ = tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await;
        return Ok(String::new());
    }
    if let Some(s) = handler.sleep.as_ref() {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(String::new());
    }
    if handler.tcp_socket.is_some() {
        return Err(HookError::Invalid(
            "tcpSocket is not supported as a lifecycle handler".into(),
        ));
    }
    Err(HookError::Invalid("no handler set".into()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ExecAction, HTTPGetAction, SleepAction, TCPSocketAction,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::pod::probe::tests::{HostExec, http_server};

    #[tokio::test]
    async fn handlers() {
        let (port, seen) = http_server().await;
        let c = Container {
            name: "app".into(),
            ..Default::default()
        };
        let rt = HostExec;
        let target = Target {
            pod_ip: "127.0.0.1",
            container_id: "x",
            container: &c,
            runtime: &rt,
        };
        let exec = |cmd: &[&str]| LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(cmd.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        };
        assert_eq!(run(&exec(&["echo", "hi"]), &target).await.unwrap(), "hi\n");
        let err = run(&exec(&["sh", "-c", "echo bad; exit 2"]), &target)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Exec lifecycle hook ([\"sh\", \"-c\", \"echo bad; exit 2\"]) for Container \"app\" failed - error: command 'sh -c echo bad; exit 2' exited with 2, message: \"bad\\n\""
        );
        let get = |path: &str, port: u16| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some(path.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Any response is success for a hook, even a 500.
        run(&get("/fail", port), &target).await.unwrap();
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .any(|h| h.starts_with("GET /fail "))
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = run(&get("/x", closed_port), &target).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("HTTP lifecycle hook (/x) for Container \"app\" failed - error:"),
            "{err}"
        );
        let start = std::time::Instant::now();
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        run(&sleep, &target).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(1));
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(1),
                host: None,
            }),
            ..Default::default()
        };
        assert!(matches!(
            run(&tcp, &target).await,
            Err(HookError::Invalid(_))
        ));
    }
}
