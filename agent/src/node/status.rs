//! Writing a pod's status to the apiserver through the status subresource:
//! a merge patch of the status, made against the latest copy the node has
//! (from the watch) and guarded by that copy's UID and resourceVersion; on
//! `409 Conflict` (someone else wrote the pod since) the patch is made
//! again against a freshly fetched copy. The phase never goes back from a
//! terminal one, and conditions other components own are kept.
//!
//! A patch rather than an update of the whole object: NodeRestriction
//! refuses a node's status write that changes anything else (an update
//! from a stale copy would undo another writer's label change).

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};

use super::error::status_code;

/// How often a conflicting write is retried with a fresh copy before the
/// caller is told (it retries on its next status change or resync).
pub const CONFLICT_RETRIES: u32 = 5;

/// Why a status write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The pod is gone, or is another pod of the same name now.
    #[error("pod {0} is gone")]
    Gone(String),
    #[error("write the status of pod {pod}")]
    Api {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("write the status of pod {0}: still conflicting after {CONFLICT_RETRIES} fresh copies")]
    Conflicts(String),
}

fn terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// `status` as it may be written over `current`: a pod whose phase is
/// terminal stays in it (kubelet never moves a pod out of Succeeded or
/// Failed), and conditions of types the node does not set (readiness
/// gates, DisruptionTarget, …) are kept.
pub fn merge(current: &Pod, mut status: PodStatus) -> PodStatus {
    let old = current.status.as_ref();
    let ours: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.clone())
        .collect();
    let theirs: Vec<_> = old
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !ours.contains(&c.type_))
        .cloned()
        .collect();
    if !theirs.is_empty() {
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .extend(theirs);
    }
    let old_phase = old.and_then(|s| s.phase.as_deref());
    if terminal(old_phase) && !terminal(status.phase.as_deref()) {
        status.phase = old_phase.map(str::to_string);
        status.reason = old.and_then(|s| s.reason.clone());
        status.message = old.and_then(|s| s.message.clone());
    }
    status
}

/// Write `status` for pod `uid` starting from `cached` (the watch's latest
/// copy, possibly stale); returns the written pod and how many writes it
/// took.
pub async fn write(
    api: &Api<Pod>,
    cached: Pod,
    uid: &str,
    status: &PodStatus,
) -> Result<(Pod, u32), StatusError> {
    let name = cached.metadata.name.clone().unwrap_or_default();
    let ns = cached.metadata.namespace.clone().unwrap_or_default();
    let id = format!("{ns}/{name}");
    let mut pod = cached;
    for attempt in 1..=CONFLICT_RETRIES {
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Err(StatusError::Gone(id));
        }
        let patch = serde_json::json!({
            "metadata": {
                "uid": uid,
                "resourceVersion": pod.metadata.resource_version,
            },
            "status": merge(&pod, status.clone()),
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => return Ok((written, attempt)),
            Err(e) if status_code(&e) == Some(409) => {
                tracing::debug!(pod = %id, attempt, "status write conflicted: refetching");
                pod = match api.get_opt(&name).await {
                    Ok(Some(p)) => p,
                    Ok(None) => return Err(StatusError::Gone(id)),
                    Err(source) => return Err(StatusError::Api { pod: id, source }),
                };
            }
            Err(e) if status_code(&e) == Some(404) => return Err(StatusError::Gone(id)),
            Err(source) => return Err(StatusError::Api { pod: id, source }),
        }
    }
    Err(StatusError::Conflicts(id))
}
