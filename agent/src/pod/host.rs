//! The seam between a pod worker and the node it runs on: what the worker
//! needs besides CRI (volumes, env, resources, the pod's cgroup).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::config::Resolved;

/// A failure preparing a pod or a container, with the kubelet reason it is
/// reported under (`FailedMount`, `CreateContainerConfigError`, …).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub reason: &'static str,
    pub message: String,
}

impl HostError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        HostError {
            reason,
            message: message.into(),
        }
    }
}

/// Node-side work for pods, done in husklet's process (never in a container).
#[tonic::async_trait]
pub trait PodHost: Send + Sync + 'static {
    /// Make the pod's volumes and files (idempotent; called again on each
    /// sync so configMap and secret changes reach the volumes).
    async fn setup_pod(&self, pod: &Pod) -> Result<(), HostError>;
    /// Command, args, env, mounts and resources of container `c`, with the
    /// pod's IP for the downward API.
    async fn resolve(
        &self,
        pod: &Pod,
        c: &Container,
        restart_count: u32,
        pod_ip: &str,
    ) -> Result<Resolved, HostError>;
    /// Remove what [`PodHost::setup_pod`] made, once the pod is gone.
    async fn teardown_pod(&self, pod: &Pod) -> Result<(), HostError>;
    /// The pod's cgroup parent (`kubepods/<qos>/pod<uid>`), created if needed.
    async fn cgroup_parent(&self, pod: &Pod) -> Result<String, HostError>;
}
