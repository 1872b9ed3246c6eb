//! The Node object: created at start (or its labels reconciled when it
//! exists), then its status kept current as kubelet's node status loop
//! does: computed every 10 s, written when it changed and at least every
//! 5 minutes (the Lease is the liveness signal in between).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::error::status_code;
use super::info::{self, Pressure};
use super::{NodeConfig, NodeError};

/// The port the kubelet API listens on, published in
/// `status.daemonEndpoints.kubeletEndpoint`.
pub const KUBELET_PORT: i32 = 10250;
/// How often the node status is computed (kubelet's nodeStatusUpdateFrequency).
pub const STATUS_UPDATE: Duration = Duration::from_secs(10);
/// Longest time between two status writes (nodeStatusReportFrequency).
pub const STATUS_REPORT: Duration = Duration::from_secs(300);

/// What identifies the registered Node (for owner references).
#[derive(Clone, Debug)]
pub struct NodeRef {
    pub name: String,
    pub uid: String,
}

/// The Node's labels: the well-known ones kubelet sets, then `--node-labels`.
pub fn labels(cfg: &NodeConfig) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), info::arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            info::arch().to_string(),
        ),
    ]);
    l.extend(cfg.labels.clone());
    l
}

fn condition(type_: &str, on: bool, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The node's status now (heartbeat and transition times set to now; the
/// caller keeps transition times of conditions that did not change).
pub fn node_status(cfg: &NodeConfig, p: Pressure) -> NodeStatus {
    let now = Time(jiff_now());
    let capacity = info::capacity(cfg.max_pods, &cfg.root);
    let mut conditions = vec![
        if p.memory {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                &now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &now,
            )
        },
        if p.disk {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                &now,
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                &now,
            )
        },
        if p.pid {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
                &now,
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                &now,
            )
        },
    ];
    conditions.push(condition(
        "Ready",
        true,
        "KubeletReady",
        "kubelet is posting ready status",
        &now,
    ));
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        allocatable: Some(info::allocatable(
            &capacity,
            &cfg.system_reserved,
            &cfg.kube_reserved,
            &cfg.eviction,
        )),
        capacity: Some(capacity),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(info::system_info(&cfg.runtime_version)),
        ..Default::default()
    }
}

/// The current time as the API's timestamp type.
pub fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Create the Node (labels, `--register-with-taints`, status), or when it
/// exists reconcile its labels; returns its name and UID.
pub async fn register(client: &kube::Client, cfg: &NodeConfig) -> Result<NodeRef, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(labels(cfg)),
            // As kubelet: the controller-manager's attach/detach controller
            // manages volumes of this node.
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => {
            tracing::info!(node = %cfg.name, "registered the node");
            n
        }
        Err(e) if status_code(&e) == Some(409) => {
            let patch = serde_json::json!({"metadata": {"labels": labels(cfg)}});
            let n = api
                .patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| NodeError::api(format!("update node {}", cfg.name), e))?;
            tracing::info!(node = %cfg.name, "the node was registered before: labels reconciled");
            n
        }
        Err(e) => return Err(NodeError::api(format!("create node {}", cfg.name), e)),
    };
    let uid = created.metadata.uid.clone().unwrap_or_default();
    write_status(
        &api,
        cfg,
        &node_status(cfg, info::pressure(&cfg.root, &cfg.eviction)),
    )
    .await?;
    Ok(NodeRef {
        name: cfg.name.clone(),
        uid,
    })
}

async fn write_status(
    api: &Api<Node>,
    cfg: &NodeConfig,
    status: &NodeStatus,
) -> Result<(), NodeError> {
    // A JSON merge patch replaces the lists whole: the node owns them all.
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| NodeError::api(format!("update node {} status", cfg.name), e))?;
    Ok(())
}

/// A status's content without its times, to tell a change from a heartbeat.
fn fingerprint(s: &NodeStatus) -> String {
    let mut s = s.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
        c.last_transition_time = None;
    }
    serde_json::to_string(&s).unwrap_or_default()
}

/// Keep the node status current: computed every [`STATUS_UPDATE`], written
/// when it changed or [`STATUS_REPORT`] passed since the last write. A
/// condition keeps its transition time while its status holds.
pub async fn status_loop(client: kube::Client, cfg: std::sync::Arc<NodeConfig>) {
    let api: Api<Node> = Api::all(client);
    let mut last: Option<(NodeStatus, Instant)> = None;
    loop {
        let mut status = node_status(&cfg, info::pressure(&cfg.root, &cfg.eviction));
        if let Some((prev, at)) = &last {
            for c in status.conditions.iter_mut().flatten() {
                if let Some(p) = prev
                    .conditions
                    .iter()
                    .flatten()
                    .find(|p| p.type_ == c.type_ && p.status == c.status)
                {
                    c.last_transition_time = p.last_transition_time.clone();
                }
            }
            if fingerprint(prev) == fingerprint(&status) && at.elapsed() < STATUS_REPORT {
                tokio::time::sleep(STATUS_UPDATE).await;
                continue;
            }
        }
        match write_status(&api, &cfg, &status).await {
            Ok(()) => last = Some((status, Instant::now())),
            Err(e) => tracing::warn!("{}", crate::cri::error::chain(&e)),
        }
        tokio::time::sleep(STATUS_UPDATE).await;
    }
}
