//! Mirror pods: the apiserver's read-only copy of each static pod this node
//! runs (`kubernetes.io/config.mirror` set to the static pod's hash, owned
//! by the Node, as NodeRestriction requires of pods a node creates), with
//! the static pod's status; a mirror whose static pod is gone or changed is
//! deleted (and re-created for the new one), as kubelet's pod manager does.
//! The static pods' events are posted here too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use super::error::status_code;
use super::events::EventSink;
use super::pods::MIRROR_ANNOTATION;
use super::register::NodeRef;
use super::{NodeConfig, lease, status};
use crate::pod::manager::PodManager;

/// The annotation holding a static pod's hash (its UID on this node).
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// How often mirrors are reconciled with the static pods.
const RESYNC: Duration = Duration::from_secs(2);

fn is_static(pod: &Pod) -> bool {
    pod.annotations()
        .get("kubernetes.io/config.source")
        .is_some_and(|s| s == "file")
}

/// The mirror of static pod `pod` (without a UID or status).
pub fn mirror_of(pod: &Pod, node: &NodeRef) -> Pod {
    let mut annotations: BTreeMap<String, String> = pod.annotations().clone();
    let hash = annotations
        .get(HASH_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.into(), hash);
    Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            annotations: Some(annotations),
            // NodeRestriction lets a node create only pods whose
            // controller is the node itself.
            owner_references: Some(vec![OwnerReference {
                controller: Some(true),
                ..lease::owner(node)
            }]),
            ..Default::default()
        },
        spec: pod.spec.clone(),
        status: None,
    }
}

/// Keep the mirrors in step with the static pods, for as long as husklet runs.
pub async fn run(client: kube::Client, cfg: Arc<NodeConfig>, node: NodeRef, mgr: Arc<PodManager>) {
    // The last status written per mirror UID.
    let mut written: HashMap<String, PodStatus> = HashMap::new();
    let all: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", cfg.name);
    // The static pods' event sinks, by static pod UID.
    let mut sinks: HashMap<String, EventSink> = HashMap::new();
    loop {
        tokio::time::sleep(RESYNC).await;
        post_events(&client, &cfg.name, &mgr, &mut sinks).await;
        let listed = match all.list(&ListParams::default().fields(&selector)).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!("list mirror pods: {}", crate::cri::error::chain(&e));
                continue;
            }
        };
        let mut mirrors: HashMap<(String, String), Pod> = listed
            .into_iter()
            .filter(|p| p.annotations().contains_key(MIRROR_ANNOTATION))
            .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
            .collect();
        for report in mgr.reports() {
            let pod = &report.pod;
            if !is_static(pod) || report.gone {
                continue;
            }
            let key = (pod.namespace().unwrap_or_default(), pod.name_any());
            let hash = pod.annotations().get(HASH_ANNOTATION).cloned();
            let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
            let current = match mirrors.remove(&key) {
                Some(m) if m.annotations().get(MIRROR_ANNOTATION) == hash.as_ref() => m,
                Some(stale) => {
                    // Another version of the static pod: its mirror goes first.
                    delete(&api, &stale).await;
                    continue;
                }
                None => match api
                    .create(&PostParams::default(), &mirror_of(pod, &node))
                    .await
                {
                    Ok(m) => {
                        tracing::info!(pod = %key.1, "created the mirror pod");
                        m
                    }
                    Err(e) => {
                        tracing::warn!(pod = %key.1, "create the mirror pod: {}", crate::cri::error::chain(&e));
                        continue;
                    }
                },
            };
            if current.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = current.metadata.uid.clone().unwrap_or_default();
            let mut st = report.status.clone();
            st.host_ip = Some(cfg.node_ip.to_string());
            if written.get(&uid) == Some(&st) {
                continue;
            }
            match status::write(&api, current, &uid, &st).await {
                Ok(_) => {
                    written.insert(uid, st);
                }
                Err(e) => tracing::warn!("{}", crate::cri::error::chain(&e)),
            }
        }
        // Mirrors left have no static pod any more.
        for m in mirrors.values() {
            let api: Api<Pod> = Api::namespaced(client.clone(), &m.namespace().unwrap_or_default());
            delete(&api, m).await;
            written.remove(&m.metadata.uid.clone().unwrap_or_default());
        }
    }
}

/// Post the static pods' events as kubelet records them: against the
/// static pod itself (the mirror's name and namespace, the config hash as
/// UID), which is where `kubectl describe` looks for a mirror pod's events.
async fn post_events(
    client: &kube::Client,
    node: &str,
    mgr: &PodManager,
    sinks: &mut HashMap<String, EventSink>,
) {
    let mut seen = HashSet::new();
    for report in mgr.reports() {
        let pod = &report.pod;
        if !is_static(pod) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sink = sinks
            .entry(uid.clone())
            .or_insert_with(|| EventSink::new(client.clone(), node, pod));
        sink.sync(&report.events).await;
        seen.insert(uid);
    }
    sinks.retain(|uid, _| seen.contains(uid));
}

async fn delete(api: &Api<Pod>, m: &Pod) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: m.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&m.name_any(), &dp).await {
        Ok(_) => tracing::info!(pod = %m.name_any(), "deleted the mirror pod"),
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
        Err(e) => {
            tracing::warn!(pod = %m.name_any(), "delete the mirror pod: {}", crate::cri::error::chain(&e))
        }
    }
}
