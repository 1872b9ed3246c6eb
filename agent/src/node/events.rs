//! A pod's lifecycle events (Pulled, Created, Started, Killing, Unhealthy,
//! BackOff, FailedMount, …, as the pod layer records them) posted as
//! core/v1 Events from `source.component=kubelet` on this host; a repeat
//! updates the event's count and last timestamp, as kubelet's recorder does.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::pod::events::{EventLog, EventType};

type Key = (String, String, String);

/// What has been posted for one pod.
pub struct EventSink {
    api: Api<Event>,
    node: String,
    object: ObjectReference,
    pod_name: String,
    /// Event name and count posted, by (reason, field path, message).
    posted: HashMap<Key, (String, u32)>,
}

fn time(t: std::time::SystemTime) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::try_from(t)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl EventSink {
    /// A sink for `pod`'s events.
    pub fn new(client: kube::Client, node: &str, pod: &Pod) -> Self {
        let ns = pod.namespace().unwrap_or_else(|| "default".into());
        EventSink {
            api: Api::namespaced(client, &ns),
            node: node.to_string(),
            object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: Some(ns),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            pod_name: pod.name_any(),
            posted: HashMap::new(),
        }
    }

    /// Post what `log` has that was not posted yet (failures are logged
    /// and retried on the next call).
    pub async fn sync(&mut self, log: &EventLog) {
        for e in log.all() {
            let key = (e.reason.clone(), e.field_path.clone(), e.message.clone());
            match self.posted.get(&key) {
                Some((_, count)) if *count >= e.count => continue,
                Some((name, _)) => {
                    let patch = serde_json::json!({
                        "count": e.count,
                        "lastTimestamp": time(e.last),
                    });
                    let name = name.clone();
                    match self
                        .api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            self.posted.insert(key, (name, e.count));
                        }
                        Err(err) => {
                            tracing::warn!(event = %name, "update event: {}", crate::cri::error::chain(&err))
                        }
                    }
                }
                None => {
                    let mut object = self.object.clone();
                    object.field_path = (!e.field_path.is_empty()).then(|| e.field_path.clone());
                    let nanos = e
                        .first
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    let name = format!("{}.{nanos:x}", self.pod_name);
                    let event = Event {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..Default::default()
                        },
                        involved_object: object,
                        reason: Some(e.reason.clone()),
                        message: Some(e.message.clone()),
                        type_: Some(match e.type_ {
                            EventType::Normal => "Normal".into(),
                            EventType::Warning => "Warning".into(),
                        }),
                        count: Some(e.count as i32),
                        first_timestamp: Some(time(e.first)),
                        last_timestamp: Some(time(e.last)),
                        source: Some(EventSource {
                            component: Some("kubelet".into()),
                            host: Some(self.node.clone()),
                        }),
                        reporting_component: Some("kubelet".into()),
                        reporting_instance: Some(self.node.clone()),
                        ..Default::default()
                    };
                    match self.api.create(&PostParams::default(), &event).await {
                        Ok(_) => {
                            self.posted.insert(key, (name, e.count));
                        }
                        Err(err) => {
                            tracing::warn!(event = %name, "post event: {}", crate::cri::error::chain(&err))
                        }
                    }
                }
            }
        }
    }
}
