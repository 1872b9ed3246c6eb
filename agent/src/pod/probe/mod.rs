//! Probe runners (httpGet, tcpSocket, exec, grpc) and the threshold state
//! machine kubelet's probe workers keep ([`tracker`]). A runner does one
//! check; the pod worker decides when, through [`tracker::Tracker`].
//!
//! Exec probes go through [`RuntimeService::exec_sync`]; the network ones
//! connect from the node to the pod IP (or `host`), as kubelet does.

pub mod exec;
pub mod grpc;
pub mod http;
pub mod tracker;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cri::RuntimeService;

/// The result of one probe (kubelet's `probe.Result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Success,
    /// Passed with a warning (an HTTP redirect to another host not followed).
    Warning(String),
    /// Failed; the message is what kubelet would put in the event.
    Failure(String),
    /// Could not be run (bad port name, runtime error): kubelet discards it.
    Unknown(String),
}

impl Outcome {
    /// Success or Warning.
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning(_))
    }
}

/// Where and in which container a probe or hook runs.
pub struct Target<'a> {
    /// The pod's primary IP: the default host of httpGet, tcpSocket, grpc.
    pub pod_ip: &'a str,
    /// The CRI container id (exec).
    pub container_id: &'a str,
    /// The container spec: named ports and the env for command expansion.
    pub container: &'a Container,
    /// The runtime exec probes and hooks go through.
    pub runtime: &'a dyn RuntimeService,
}

/// `ResolveContainerPort`: a number, or the `containerPort` of the named port.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("port {name:?} not found in container {:?}", c.name))?,
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// `host:port` with IPv6 addresses bracketed (`net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Run `probe` once with its `timeoutSeconds`.
pub async fn run(probe: &Probe, target: &Target<'_>) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(h) = probe.http_get.as_ref() {
        http::probe(h, target, timeout).await
    } else if let Some(t) = probe.tcp_socket.as_ref() {
        let port = match resolve_port(&t.port, target.container) {
            Ok(p) => p,
            Err(e) => return Outcome::Unknown(e),
        };
        let host = t
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(target.pod_ip);
        tcp(host, port, timeout).await
    } else if let Some(e) = probe.exec.as_ref() {
        exec::probe(e.command.as_deref().unwrap_or(&[]), target, timeout).await
    } else if let Some(g) = probe.grpc.as_ref() {
        let Ok(port) = u16::try_from(g.port) else {
            return Outcome::Unknown(format!("invalid port number: {}", g.port));
        };
        grpc::probe(
            target.pod_ip,
            port,
            g.service.as_deref().unwrap_or(""),
            timeout,
        )
        .await
    } else {
        Outcome::Unknown("probe has no handler".to_string())
    }
}

/// A TCP connect within `timeout` (kubelet's `tcp.DoTCPProbe`).
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

#[cfg(test)]
pub(crate) mod tests;
