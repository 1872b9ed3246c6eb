//! The checks kubelet makes before it runs a pod bound to it (its
//! "general predicates"): the pod's requests fit what the node has left,
//! its host ports are free, the node matches its node selector and required
//! node affinity, and it tolerates the node's NoExecute taints. A pod that
//! fails is not run: its phase becomes Failed with the predicate's reason.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use crate::pod::qos;
use crate::pod::quantity::Quantity;

/// Why a pod is refused: kubelet's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// What the node offers pods.
#[derive(Clone, Debug)]
pub struct NodeFit {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub labels: BTreeMap<String, String>,
    pub name: String,
    pub taints: Vec<Taint>,
}

/// A pod's effective request of `resource`: the larger of its app
/// containers' sum and its largest init container, plus overhead (as the
/// scheduler and kubelet count it).
pub fn pod_request(pod: &Pod, resource: &str, milli: bool) -> i64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let v = |c: &Container| {
        let q = qos::request(c, resource);
        if milli { q.milli_value() } else { q.value() }
    };
    let apps: i64 = spec.containers.iter().map(v).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(v)
        .max()
        .unwrap_or(0);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map_or(0, |q| if milli { q.milli_value() } else { q.value() });
    apps.max(init) + overhead
}

fn host_ports(pod: &Pod) -> BTreeSet<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

fn ports_conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &NodeFit) -> bool {
    let exprs = t.match_expressions.iter().flatten();
    let fields = t.match_fields.iter().flatten();
    // An empty term matches nothing.
    if t.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        && t.match_fields.as_ref().is_none_or(|f| f.is_empty())
    {
        return false;
    }
    exprs
        .into_iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key)))
        && fields.into_iter().all(|r| {
            let name = (r.key == "metadata.name").then(|| node.name.clone());
            requirement_matches(r, name.as_ref())
        })
}

/// The pod's nodeSelector and required node affinity match the node.
pub fn affinity_matches(pod: &Pod, node: &NodeFit) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    selector_ok && affinity_ok
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_ref()
        .is_some_and(|e| !e.is_empty() && *e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => {
            t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
                && !key.is_empty()
        }
    }
}

/// Admit `pod` next to the pods already `running` on `node`, or say why not.
pub fn admit(pod: &Pod, running: &[&Pod], node: &NodeFit) -> Result<(), Rejection> {
    if running.len() as i64 + 1 > node.pods {
        return Err(insufficient("pods", 1, running.len() as i64, node.pods));
    }
    for (resource, milli, capacity) in [
        ("cpu", true, node.milli_cpu),
        ("memory", false, node.memory),
        ("ephemeral-storage", false, node.ephemeral_storage),
    ] {
        let want = pod_request(pod, resource, milli);
        if want == 0 {
            continue;
        }
        let used: i64 = running
            .iter()
            .map(|p| pod_request(p, resource, milli))
            .sum();
        if want + used > capacity {
            return Err(insufficient(resource, want, used, capacity));
        }
    }
    if !affinity_matches(pod, node) {
        return Err(Rejection {
            reason: "NodeAffinity".into(),
            message: "Predicate NodeAffinity failed".into(),
        });
    }
    let wanted = host_ports(pod);
    let taken: Vec<_> = running.iter().flat_map(|p| host_ports(p)).collect();
    if wanted
        .iter()
        .any(|w| taken.iter().any(|t| ports_conflict(w, t)))
    {
        return Err(Rejection {
            reason: "NodePorts".into(),
            message: "Predicate NodePorts failed".into(),
        });
    }
    let tolerations = pod.spec.iter().flat_map(|s| s.tolerations.iter().flatten());
    let tolerations: Vec<_> = tolerations.collect();
    // kubelet only checks NoExecute taints: NoSchedule is the scheduler's.
    if let Some(t) = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    {
        // kubelet's PredicateFailureError message names no taint.
        tracing::debug!(taint = %t.key, effect = %t.effect, "pod does not tolerate a taint");
        return Err(Rejection {
            reason: "TaintToleration".into(),
            message: "Predicate TaintToleration failed".into(),
        });
    }
    Ok(())
}

fn insufficient(resource: &str, requested: i64, used: i64, capacity: i64) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).expect("pod")
    }

    fn node() -> NodeFit {
        NodeFit {
            milli_cpu: 2000,
            memory: 1 << 30,
            ephemeral_storage: 1 << 40,
            pods: 2,
            labels: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            name: "n1".into(),
            taints: vec![Taint {
                key: "dedicated".into(),
                value: Some("x".into()),
                effect: "NoExecute".into(),
                time_added: None,
            }],
        }
    }

    const TOLERATE: &str = r#""tolerations":[{"key":"dedicated","operator":"Equal","value":"x","effect":"NoExecute"}]"#;

    #[test]
    fn resources_ports_affinity_taints() {
        let n = node();
        let cpu = |m: &str| {
            pod(&format!(
                r#"{{"spec":{{{TOLERATE},"containers":[{{"name":"c","resources":{{"requests":{{"cpu":"{m}"}}}}}}]}}}}"#
            ))
        };
        let big = cpu("3");
        let r = admit(&big, &[], &n).unwrap_err();
        assert_eq!(r.reason, "OutOfcpu");
        assert_eq!(
            r.message,
            "Node didn't have enough resource: cpu, requested: 3000, used: 0, capacity: 2000"
        );
        let half = cpu("1500m");
        assert!(admit(&half, &[], &n).is_ok());
        assert_eq!(admit(&half, &[&half], &n).unwrap_err().reason, "OutOfcpu");
        let small = cpu("100m");
        assert_eq!(
            admit(&small, &[&small, &small], &n).unwrap_err().reason,
            "OutOfpods"
        );

        let port = pod(&format!(
            r#"{{"spec":{{{TOLERATE},"containers":[{{"name":"c","ports":[{{"containerPort":80,"hostPort":8080}}]}}]}}}}"#
        ));
        assert!(admit(&port, &[], &n).is_ok());
        assert_eq!(admit(&port, &[&port], &n).unwrap_err().reason, "NodePorts");

        let sel = |v: &str| {
            pod(&format!(
                r#"{{"spec":{{{TOLERATE},"nodeSelector":{{"disk":"{v}"}},"containers":[{{"name":"c"}}]}}}}"#
            ))
        };
        assert!(admit(&sel("ssd"), &[], &n).is_ok());
        assert_eq!(
            admit(&sel("hdd"), &[], &n).unwrap_err().reason,
            "NodeAffinity"
        );
        let aff = |op: &str| {
            pod(&format!(
                r#"{{"spec":{{{TOLERATE},"affinity":{{"nodeAffinity":{{"requiredDuringSchedulingIgnoredDuringExecution":
                   {{"nodeSelectorTerms":[{{"matchFields":[{{"key":"metadata.name","operator":"{op}","values":["n1"]}}]}}]}}}}}},
                   "containers":[{{"name":"c"}}]}}}}"#
            ))
        };
        assert!(admit(&aff("In"), &[], &n).is_ok());
        assert_eq!(
            admit(&aff("NotIn"), &[], &n).unwrap_err().reason,
            "NodeAffinity"
        );

        let untolerated = pod(r#"{"spec":{"containers":[{"name":"c"}]}}"#);
        assert_eq!(
            admit(&untolerated, &[], &n).unwrap_err().reason,
            "TaintToleration"
        );
        let exists =
            pod(r#"{"spec":{"tolerations":[{"operator":"Exists"}],"containers":[{"name":"c"}]}}"#);
        assert!(admit(&exists, &[], &n).is_ok());
    }
}
