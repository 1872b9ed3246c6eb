//! QoS class, `oom_score_adj`, the pod's cgroup parent and the CRI
//! `LinuxContainerResources` of a container, computed as kubelet does
//! (`qos.GetPodQOS`, `qos.GetContainerOOMScoreAdjust`, `cm.CgroupName`,
//! `kuberuntime.calculateLinuxResources`).
//!
//! The `oom_score_adj` here is kubelet's value; where the host forbids
//! lowering it (TESTING.md), the CRI layer clamps it to its own value.

use std::collections::BTreeMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::quantity::Quantity;

/// A pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal cpu and memory requests and limits.
    Guaranteed,
    /// Something is requested, but not Guaranteed.
    Burstable,
    /// Nothing requested or limited.
    BestEffort,
}

impl QosClass {
    /// The name in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// `oom_score_adj` of Guaranteed pods (and node-critical ones).
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// `oom_score_adj` of BestEffort pods.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

fn quantity(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Quantity {
    map.and_then(|m| m.get(name))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The request of `resource` (`cpu`, `memory`) of a container, zero if unset.
pub fn request(c: &Container, resource: &str) -> Quantity {
    quantity(
        c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        resource,
    )
}

/// The limit of `resource` of a container, zero if unset.
pub fn limit(c: &Container, resource: &str) -> Quantity {
    quantity(
        c.resources.as_ref().and_then(|r| r.limits.as_ref()),
        resource,
    )
}

/// `GetPodQOS`: over init and app containers, cpu and memory only.
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let mut found = 0;
        for res in ["cpu", "memory"] {
            let r = request(c, res);
            if r > Quantity::ZERO {
                let e = requests.entry(res).or_default();
                *e = Quantity::from_milli(e.milli_value() + r.milli_value());
            }
            let l = limit(c, res);
            if l > Quantity::ZERO {
                found += 1;
                let e = limits.entry(res).or_default();
                *e = Quantity::from_milli(e.milli_value() + l.milli_value());
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

fn is_sidecar(pod: &Pod, c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|i| i.name == c.name))
}

/// `GetContainerOOMScoreAdjust`: -997 for Guaranteed (and
/// `system-node-critical` static pods), 1000 for BestEffort, else
/// `1000 - 1000*memoryRequest/capacity` kept within [3, 999] (kubelet's
/// floor is `1000 + guaranteedOOMScoreAdj`; the docs' table says 2). A
/// sidecar gets no more than the smallest app container's score.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i64 {
    let critical = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        == Some("system-node-critical");
    if critical {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let capacity = i128::from(memory_capacity.max(1));
    let score = |mem: i64| 1000 - (1000 * i128::from(mem)) / capacity;
    let mut adj = score(request(c, "memory").value());
    if is_sidecar(pod, c) {
        let min_regular = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|app| request(app, "memory").value())
            .min()
            .unwrap_or(0);
        adj = adj.min(score(min_regular));
    }
    let floor = 1000 + i128::from(GUARANTEED_OOM_SCORE_ADJ);
    if adj < floor {
        return floor as i64;
    }
    if adj == i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return 999;
    }
    adj as i64
}

/// The cgroup driver names come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Paths: `/kubepods/burstable/pod<uid>`.
    Cgroupfs,
    /// Slices: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`.
    Systemd,
}

/// The pod's cgroup, as kubelet passes it as the sandbox's `cgroup_parent`:
/// `kubepods[/burstable|/besteffort]/pod<uid>` in the driver's spelling.
pub fn pod_cgroup_parent(pod: &Pod, driver: CgroupDriver) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let mut parts = vec!["kubepods".to_string()];
    match qos_class(pod) {
        QosClass::Guaranteed => {}
        QosClass::Burstable => parts.push("burstable".into()),
        QosClass::BestEffort => parts.push("besteffort".into()),
    }
    parts.push(format!("pod{uid}"));
    match driver {
        CgroupDriver::Cgroupfs => format!("/{}", parts.join("/")),
        CgroupDriver::Systemd => {
            // Each slice is named after all its ancestors, '-' joined; a '-'
            // inside a name is escaped to '_' (escapeSystemdCgroupName).
            let escaped: Vec<String> = parts.iter().map(|p| p.replace('-', "_")).collect();
            let mut path = String::new();
            for i in 1..=escaped.len() {
                path.push('/');
                path.push_str(&escaped[..i].join("-"));
                path.push_str(".slice");
            }
            path
        }
    }
}

/// CFS period kubelet uses (100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;

/// `MilliCPUToShares`: at least 2, at most 262144.
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return 2;
    }
    (milli * 1024 / 1000).clamp(2, 262_144)
}

/// `milliCPUToQuota`: 0 (no quota) without a limit, at least 1 ms.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(1000)
}

/// Huge page size as CRI wants it ("2MB", "1GB") from a byte count.
fn hugepage_size(bytes: i64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    let mut i = 0;
    while size >= 1024 && size % 1024 == 0 && i + 1 < units.len() {
        size /= 1024;
        i += 1;
    }
    format!("{size}{}", units[i])
}

/// The CRI resources of a container (`generateLinuxContainerResources`):
/// cpu shares from the request (or the limit when no request), quota from
/// the limit over a 100 ms period, memory limit, huge page limits, no swap,
/// and `oom_score_adj`.
pub fn linux_resources(
    pod: &Pod,
    c: &Container,
    memory_capacity: i64,
    cgroup_v2: bool,
) -> cri::LinuxContainerResources {
    let cpu_request = request(c, "cpu");
    let cpu_limit = limit(c, "cpu");
    let shares = if cpu_request.is_zero() && !cpu_limit.is_zero() {
        milli_cpu_to_shares(cpu_limit.milli_value())
    } else {
        milli_cpu_to_shares(cpu_request.milli_value())
    };
    let memory_limit = limit(c, "memory").value();
    let mut r = cri::LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: CPU_PERIOD_US,
        cpu_quota: milli_cpu_to_quota(cpu_limit.milli_value(), CPU_PERIOD_US),
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: oom_score_adj(pod, c, memory_capacity),
        ..Default::default()
    };
    for (name, q) in c.resources.iter().flat_map(|r| r.limits.iter().flatten()) {
        if let Some(size) = name.strip_prefix("hugepages-")
            && let (Ok(size), Ok(limit)) = (Quantity::parse(size), Quantity::parse(&q.0))
        {
            r.hugepage_limits.push(cri::HugepageLimit {
                page_size: hugepage_size(size.value()),
                limit: limit.value().max(0) as u64,
            });
        }
    }
    // NoSwap, kubelet's default swap behaviour.
    if memory_limit != 0 {
        if cgroup_v2 {
            r.unified.insert("memory.swap.max".into(), "0".into());
        } else {
            r.memory_swap_limit_in_bytes = memory_limit;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::manifest::{Format, Object, parse};

    fn pod(containers: &str, init: &str) -> Pod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, uid: 1234-abcd}}\nspec:\n  containers: {containers}\n  initContainers: {init}\n"
        );
        let Object::Pod(mut p) = parse(&yaml, Format::Yaml).unwrap().remove(0) else {
            panic!()
        };
        crate::pod::defaults::apply(&mut p);
        *p
    }

    const GIB: i64 = 1 << 30;

    #[test]
    fn qos_classes() {
        let cases = [
            ("[{name: a, image: i}]", "[]", QosClass::BestEffort),
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]",
                "[]",
                QosClass::Guaranteed,
            ),
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1000m, memory: 1024Mi}}}]",
                "[]",
                QosClass::Guaranteed,
            ),
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 500m}}}]",
                "[]",
                QosClass::Burstable,
            ),
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1}}}]",
                "[]",
                QosClass::Burstable,
            ),
            (
                "[{name: a, image: i, resources: {requests: {memory: 1Mi}}}]",
                "[]",
                QosClass::Burstable,
            ),
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}, {name: b, image: i}]",
                "[]",
                QosClass::Burstable,
            ),
            // An init container without resources breaks Guaranteed.
            (
                "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]",
                "[{name: b, image: i}]",
                QosClass::Burstable,
            ),
            (
                "[{name: a, image: i}]",
                "[{name: b, image: i, resources: {requests: {cpu: 1}}}]",
                QosClass::Burstable,
            ),
            // Only cpu and memory count.
            (
                "[{name: a, image: i, resources: {limits: {ephemeral-storage: 1Gi}}}]",
                "[]",
                QosClass::BestEffort,
            ),
        ];
        for (c, i, want) in cases {
            assert_eq!(qos_class(&pod(c, i)), want, "{c} {i}");
        }
    }

    #[test]
    fn oom_scores() {
        let g = pod(
            "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]",
            "[]",
        );
        assert_eq!(
            oom_score_adj(&g, &g.spec.as_ref().unwrap().containers[0], 4 * GIB),
            -997
        );
        let be = pod("[{name: a, image: i}]", "[]");
        assert_eq!(
            oom_score_adj(&be, &be.spec.as_ref().unwrap().containers[0], 4 * GIB),
            1000
        );
        let b = pod(
            "[{name: a, image: i, resources: {requests: {memory: 1Gi}}}, {name: b, image: i, resources: {requests: {cpu: 1}}}, {name: c, image: i, resources: {requests: {memory: 4Gi}}}]",
            "[{name: s, image: i, restartPolicy: Always, resources: {requests: {memory: 1Mi}}}]",
        );
        let cs = &b.spec.as_ref().unwrap().containers;
        assert_eq!(oom_score_adj(&b, &cs[0], 4 * GIB), 750);
        assert_eq!(
            oom_score_adj(&b, &cs[1], 4 * GIB),
            999,
            "no memory request: 1000 becomes 999"
        );
        assert_eq!(
            oom_score_adj(&b, &cs[2], 4 * GIB),
            3,
            "floor is 1000 + guaranteedOOMScoreAdj"
        );
        let sidecar = &b.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        // 1Mi alone would give 1000; the smallest app request (0, container b) gives 1000 too → 999.
        assert_eq!(oom_score_adj(&b, sidecar, 4 * GIB), 999);
        let b2 = pod(
            "[{name: a, image: i, resources: {requests: {memory: 2Gi}}}]",
            "[{name: s, image: i, restartPolicy: Always, resources: {requests: {memory: 1Mi}}}]",
        );
        let sidecar = &b2.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        assert_eq!(
            oom_score_adj(&b2, sidecar, 4 * GIB),
            500,
            "a sidecar is capped at the app containers' score"
        );
    }

    #[test]
    fn cgroup_parents() {
        let g = pod(
            "[{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]",
            "[]",
        );
        let b = pod(
            "[{name: a, image: i, resources: {requests: {cpu: 1}}}]",
            "[]",
        );
        let be = pod("[{name: a, image: i}]", "[]");
        assert_eq!(
            pod_cgroup_parent(&g, CgroupDriver::Cgroupfs),
            "/kubepods/pod1234-abcd"
        );
        assert_eq!(
            pod_cgroup_parent(&b, CgroupDriver::Cgroupfs),
            "/kubepods/burstable/pod1234-abcd"
        );
        assert_eq!(
            pod_cgroup_parent(&be, CgroupDriver::Cgroupfs),
            "/kubepods/besteffort/pod1234-abcd"
        );
        assert_eq!(
            pod_cgroup_parent(&b, CgroupDriver::Systemd),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd.slice"
        );
        assert_eq!(
            pod_cgroup_parent(&g, CgroupDriver::Systemd),
            "/kubepods.slice/kubepods-pod1234_abcd.slice"
        );
    }

    #[test]
    fn cri_resources() {
        let p = pod(
            "[{name: a, image: i, resources: {limits: {cpu: 500m, memory: 128Mi, hugepages-2Mi: 4Mi}, requests: {cpu: 250m}}}, {name: b, image: i, resources: {limits: {cpu: 1m}}}, {name: c, image: i}]",
            "[]",
        );
        let cs = &p.spec.as_ref().unwrap().containers;
        let r = linux_resources(&p, &cs[0], 4 * GIB, false);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (256, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.memory_swap_limit_in_bytes, 128 << 20);
        assert_eq!(
            r.hugepage_limits,
            vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20
            }]
        );
        let r2 = linux_resources(&p, &cs[0], 4 * GIB, true);
        assert_eq!(
            r2.unified.get("memory.swap.max").map(String::as_str),
            Some("0")
        );
        assert_eq!(r2.memory_swap_limit_in_bytes, 0);
        let tiny = linux_resources(&p, &cs[1], 4 * GIB, false);
        assert_eq!(
            (tiny.cpu_shares, tiny.cpu_quota),
            (2, 1000),
            "minimum shares and quota"
        );
        let none = linux_resources(&p, &cs[2], 4 * GIB, false);
        assert_eq!(
            (none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(none.oom_score_adj, 999);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
    }
}
