//! The downward API: values of pod fields (`fieldRef`) and container
//! resources (`resourceFieldRef`), shared by env vars and downwardAPI
//! volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use super::qos;
use super::quantity::Quantity;
use super::validate::env::subscripted;

/// What the pod's manifest does not hold but its fields expose.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// The sandbox's IPs, primary first (`status.podIP(s)`).
    pub pod_ips: Vec<String>,
    /// The node's IPs, primary first (`status.hostIP(s)`).
    pub host_ips: Vec<String>,
    /// Node allocatable: what a resource without a limit reports.
    pub allocatable: Allocatable,
}

/// Node allocatable cpu, memory and ephemeral storage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocatable {
    /// CPU.
    pub cpu: Quantity,
    /// Memory, bytes.
    pub memory: Quantity,
    /// Ephemeral storage, bytes.
    pub ephemeral_storage: Quantity,
}

/// Why a downward API value cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// The field path is not one kubelet supports.
    #[error("field path {0:?}: unsupported")]
    Field(String),
    /// The resource is not one kubelet supports.
    #[error("resource {0:?}: unsupported")]
    Resource(String),
    /// `resourceFieldRef.containerName` names no container of the pod.
    #[error("resourceFieldRef: container {0:?} not found in the pod")]
    Container(String),
    /// The divisor does not parse or is zero.
    #[error("resourceFieldRef: divisor {0:?} invalid")]
    Divisor(String),
}

/// `key="value"` lines, sorted by key, as kubelet writes labels/annotations files.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of `field_path` for `pod` (`podFieldSelectorRuntimeValue` and
/// `ExtractFieldPathAsString`).
pub fn field_value(pod: &Pod, facts: &PodFacts, field_path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    if let Some((field, key)) = subscripted(field_path) {
        let map = if field == "metadata.labels" {
            &meta.labels
        } else {
            &meta.annotations
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let s = |o: Option<&String>| o.cloned().unwrap_or_default();
    Ok(match field_path {
        "metadata.name" => s(meta.name.as_ref()),
        "metadata.namespace" => s(meta.namespace.as_ref()),
        "metadata.uid" => s(meta.uid.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => s(spec.and_then(|s| s.node_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|s| s.service_account_name.as_ref())),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        "status.hostIP" => facts.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => facts.host_ips.join(","),
        other => return Err(DownwardError::Field(other.to_string())),
    })
}

/// The value of a `resourceFieldRef` for container `c`
/// (`ExtractContainerResourceValue` after `MergeContainerResourceLimits`:
/// an unset limit reports node allocatable), divided by the divisor and
/// rounded up.
pub fn resource_value(
    sel: &ResourceFieldSelector,
    c: &Container,
    facts: &PodFacts,
) -> Result<String, DownwardError> {
    let divisor = match sel.divisor.as_ref() {
        Some(d) => Quantity::parse(&d.0).map_err(|_| DownwardError::Divisor(d.0.clone()))?,
        None => Quantity::from_value(1),
    };
    if divisor.is_zero() {
        return Err(DownwardError::Divisor("0".into()));
    }
    let (kind, res) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| DownwardError::Resource(sel.resource.clone()))?;
    let alloc = match res {
        "cpu" => facts.allocatable.cpu,
        "memory" => facts.allocatable.memory,
        "ephemeral-storage" => facts.allocatable.ephemeral_storage,
        _ => return Err(DownwardError::Resource(sel.resource.clone())),
    };
    let value = match kind {
        "limits" => {
            let l = qos::limit(c, res);
            if l.is_zero() { alloc } else { l }
        }
        "requests" => qos::request(c, res),
        _ => return Err(DownwardError::Resource(sel.resource.clone())),
    };
    let n = if res == "cpu" {
        // convertResourceCPUToString: ceil(milli / divisor milli).
        let d = divisor.milli_value().max(1);
        let m = value.milli_value();
        m / d + i64::from(m % d != 0)
    } else {
        value.div_ceil(&divisor).unwrap_or(0)
    };
    Ok(n.to_string())
}

/// The container a volume's `resourceFieldRef.containerName` names.
pub fn named_container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, DownwardError> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| DownwardError::Container(name.to_string()))
}
