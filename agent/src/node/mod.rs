//! husklet as a Node of a Kubernetes control plane: registration and node
//! status ([`register`]), the node Lease ([`lease`]), the pods bound to the
//! node ([`pods`], admitted by [`admission`], their status written back by
//! [`status`]), the ConfigMaps and Secrets they use ([`objects`]), and
//! the mirror pods of the node's static pods ([`mirror`]).
//!
//! Everything speaks to the apiserver through [`kube`] with the node's own
//! credentials ([`client`], or from TLS bootstrap and kept fresh by
//! rotation: [`certs`]), so the Node authorizer and NodeRestriction
//! admission see a kubelet.

pub mod admission;
pub mod api;
pub mod certs;
pub mod client;
pub mod error;
pub mod events;
pub mod info;
pub mod lease;
pub mod mirror;
pub mod objects;
pub mod pods;
pub mod reflect;
pub mod register;
pub mod status;

pub use error::NodeError;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;

use crate::pod::manager::PodManager;

/// How this node joins the control plane (kubelet's flags).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name (`--hostname-override`, else the hostname).
    pub name: String,
    /// `--kubeconfig`.
    pub kubeconfig: PathBuf,
    /// The node's InternalIP (`--node-ip`, else detected).
    pub node_ip: IpAddr,
    /// `--node-labels`, on top of the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`: set when the Node is created.
    pub taints: Vec<Taint>,
    /// `--max-pods`.
    pub max_pods: u32,
    /// The CRI runtime's `<name>://<version>`.
    pub runtime_version: String,
    /// `--eviction-hard`: when the pressure conditions turn True (and what
    /// allocatable keeps back).
    pub eviction: info::Eviction,
    /// `--system-reserved`.
    pub system_reserved: info::Reserved,
    /// `--kube-reserved`.
    pub kube_reserved: info::Reserved,
    /// The filesystem pods' writable layers and volumes live on (for
    /// ephemeral-storage and disk pressure).
    pub root: PathBuf,
}

/// The running join: tasks keep the Node, its Lease and its pods in step.
pub struct Joined {
    pods: Arc<pods::PodSync>,
}

impl Joined {
    /// The pods the apiserver bound to this node, as they are run.
    pub fn pods(&self) -> &Arc<pods::PodSync> {
        &self.pods
    }
}

/// Register the node and start its Lease, status and pod loops, talking
/// to the apiserver with `client` (the node's credentials, see
/// [`certs::bootstrap::node_client`]). The pods run on `mgr`; their
/// ConfigMaps and Secrets are fetched into `objects` (which `mgr`'s host
/// reads).
pub async fn join(
    cfg: NodeConfig,
    client: kube::Client,
    mgr: Arc<PodManager>,
    objects: objects::ApiObjects,
) -> Result<Joined, NodeError> {
    let node = register::register(&client, &cfg).await?;
    let cfg = Arc::new(cfg);
    tokio::spawn(lease::run(client.clone(), cfg.name.clone(), node.clone()));
    tokio::spawn(register::status_loop(client.clone(), cfg.clone()));
    tokio::spawn(mirror::run(
        client.clone(),
        cfg.clone(),
        node.clone(),
        mgr.clone(),
    ));
    objects.connect(client.clone());
    let pods = pods::PodSync::new(client, cfg, node, mgr, objects);
    tokio::spawn(pods.clone().run());
    Ok(Joined { pods })
}
