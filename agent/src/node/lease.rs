//! The node's heartbeat: a `coordination.k8s.io/v1` Lease named after the
//! node in `kube-node-lease`, owned by the Node, renewed every 10 s with a
//! 40 s duration (kubelet's defaults: renew at a quarter of the duration).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

use super::error::status_code;
use super::register::{NodeRef, jiff_now};

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds`.
pub const DURATION_SECONDS: i32 = 40;
/// How often the lease is renewed.
pub const RENEW: Duration = Duration::from_secs(10);
/// How soon a failed renewal is retried (kubelet retries quickly, backing
/// off up to the renew interval).
const RETRY: Duration = Duration::from_millis(200);

fn fresh(name: &str, node: &NodeRef) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            owner_references: Some(vec![owner(node)]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(DURATION_SECONDS),
            renew_time: Some(MicroTime(jiff_now())),
            ..Default::default()
        }),
    }
}

/// The owner reference to the Node (so the lease goes with it).
pub fn owner(node: &NodeRef) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name.clone(),
        uid: node.uid.clone(),
        ..Default::default()
    }
}

/// Renew (or create) the lease once.
pub async fn renew(api: &Api<Lease>, name: &str, node: &NodeRef) -> Result<(), kube::Error> {
    match api.get_opt(name).await? {
        None => {
            api.create(&PostParams::default(), &fresh(name, node))
                .await?;
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(name.into());
            spec.lease_duration_seconds = Some(DURATION_SECONDS);
            spec.renew_time = Some(MicroTime(jiff_now()));
            // An owner reference to a Node of another UID (a re-created
            // Node) would let the garbage collector take the lease.
            lease.metadata.owner_references = Some(vec![owner(node)]);
            api.replace(name, &PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Renew the lease every [`RENEW`] for as long as husklet runs.
pub async fn run(client: kube::Client, name: String, node: NodeRef) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut backoff = RETRY;
    loop {
        match renew(&api, &name, &node).await {
            Ok(()) => {
                backoff = RETRY;
                tokio::time::sleep(RENEW).await;
            }
            Err(e) => {
                // A conflict is another writer's update: retry at once with
                // a fresh copy.
                if status_code(&e) != Some(409) {
                    tracing::warn!(lease = %name, "renew the node lease: {}", crate::cri::error::chain(&e));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RENEW);
            }
        }
    }
}
