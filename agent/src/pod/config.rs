//! The CRI configs the kubelet derives from a pod: the sandbox's, and each
//! container's (minus env, mounts and resources, which the caller resolves).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::keys;

/// Node-wide facts the configs depend on.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The node's name (`spec.nodeName` of its pods).
    pub node_name: String,
    /// Where pods' logs go: `<dir>/<ns>_<name>_<uid>/<container>/<n>.log`.
    pub pod_log_dir: String,
    /// The resolv.conf `dnsPolicy: Default` copies (and `ClusterFirst` falls
    /// back to, as kubelet does when it has no cluster DNS).
    pub resolv_conf: String,
    /// Cluster DNS servers and domain (`--cluster-dns`, `--cluster-domain`).
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
}

/// Identity of a pod, as the sandbox labels carry it.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    HashMap::from([
        (keys::POD_NAME.into(), m.name.clone().unwrap_or_default()),
        (
            keys::POD_NAMESPACE.into(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (keys::POD_UID.into(), m.uid.clone().unwrap_or_default()),
    ])
}

/// `<pod_log_dir>/<namespace>_<name>_<uid>`, kubelet's layout.
pub fn log_directory(ctx: &NodeContext, pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}/{}_{}_{}",
        ctx.pod_log_dir,
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// The pod's hostname: `spec.hostname`, else its name, cut to 63 bytes.
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// `RunPodSandbox`'s config for `pod` (attempt: how many sandboxes it had).
pub fn sandbox_config(
    ctx: &NodeContext,
    pod: &Pod,
    attempt: u32,
    cgroup_parent: String,
) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> =
        m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.extend(pod_labels(pod));
    labels.insert(keys::MANAGED_BY.into(), keys::MANAGED_BY_PODS.into());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let host_network = spec.host_network.unwrap_or(false);
    let psc = spec.security_context.clone().unwrap_or_default();
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: log_directory(ctx, pod),
        dns_config: dns_config(ctx, pod),
        port_mappings,
        labels,
        annotations: m
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent,
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(&spec, host_network)),
                run_as_user: psc.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: psc.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental_groups(&psc),
                seccomp: seccomp(psc.seccomp_profile.as_ref()),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

fn protocol(p: Option<&str>) -> cri::Protocol {
    match p {
        Some("UDP") => cri::Protocol::Udp,
        Some("SCTP") => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

fn namespaces(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    host_network: bool,
) -> cri::NamespaceOption {
    let mode = |host: bool, pod: bool| {
        if host {
            cri::NamespaceMode::Node
        } else if pod {
            cri::NamespaceMode::Pod
        } else {
            cri::NamespaceMode::Container
        }
    };
    cri::NamespaceOption {
        network: mode(host_network, true) as i32,
        pid: mode(
            spec.host_pid.unwrap_or(false),
            spec.share_process_namespace.unwrap_or(false),
        ) as i32,
        ipc: mode(spec.host_ipc.unwrap_or(false), true) as i32,
        ..Default::default()
    }
}

fn supplemental_groups(psc: &PodSecurityContext) -> Vec<i64> {
    let mut g: Vec<i64> = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = psc.fs_group {
        if !g.contains(&fs) {
            g.push(fs);
        }
    }
    g
}

fn seccomp(p: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> Option<cri::SecurityProfile> {
    let p = p?;
    let (profile_type, localhost_ref) = match p.type_.as_str() {
        "RuntimeDefault" => (
            cri::security_profile::ProfileType::RuntimeDefault,
            String::new(),
        ),
        "Localhost" => (
            cri::security_profile::ProfileType::Localhost,
            p.localhost_profile.clone().unwrap_or_default(),
        ),
        _ => (
            cri::security_profile::ProfileType::Unconfined,
            String::new(),
        ),
    };
    Some(cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    })
}

/// The DNS config per `dnsPolicy`, as kubelet resolves it. Without cluster
/// DNS, `ClusterFirst` falls back to the node's resolv.conf (kubelet logs
/// the same fallback).
fn dns_config(ctx: &NodeContext, pod: &Pod) -> Option<cri::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let node = parse_resolv_conf(&ctx.resolv_conf);
    let cluster = |ns: &str| cri::DnsConfig {
        servers: ctx.cluster_dns.clone(),
        searches: [
            format!("{ns}.svc.{}", ctx.cluster_domain),
            format!("svc.{}", ctx.cluster_domain),
            ctx.cluster_domain.clone(),
        ]
        .into_iter()
        .chain(node.searches.iter().cloned())
        .collect(),
        options: vec!["ndots:5".into()],
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut cfg = match policy {
        "None" => cri::DnsConfig::default(),
        "ClusterFirstWithHostNet" if !ctx.cluster_dns.is_empty() => cluster(ns),
        "ClusterFirst" if !host_network && !ctx.cluster_dns.is_empty() => cluster(ns),
        _ => node,
    };
    if let Some(extra) = &spec.dns_config {
        cfg.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        cfg.searches
            .extend(extra.searches.iter().flatten().cloned());
        for o in extra.options.iter().flatten() {
            let Some(name) = &o.name else { continue };
            cfg.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            });
        }
    }
    Some(cfg)
}

/// The servers, searches and options of a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut cfg = cri::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => cfg.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                cfg.searches = words.map(str::to_string).collect();
            }
            Some("options") => cfg.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    cfg
}

/// What kind of container a spec entry is: order and restart rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An init container: runs to completion, in order, before the app.
    Init,
    /// An init container with `restartPolicy: Always`: starts in the init
    /// order and keeps running beside the app containers.
    Sidecar,
    /// An app container.
    App,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Init => "init",
            Kind::Sidecar => "sidecar",
            Kind::App => "app",
        }
    }
}

/// Everything `CreateContainer` needs besides what [`container_config`] derives.
#[derive(Default)]
pub struct Resolved {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub envs: Vec<cri::KeyValue>,
    pub mounts: Vec<cri::Mount>,
    pub resources: Option<cri::LinuxContainerResources>,
}

/// `CreateContainer`'s config for container `c` of `pod`.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    kind: Kind,
    restart_count: u32,
    hash: &str,
    resolved: Resolved,
) -> cri::ContainerConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels = pod_labels(pod);
    labels.insert(keys::CONTAINER_NAME.into(), c.name.clone());
    let annotations = HashMap::from([
        (keys::RESTART_COUNT.into(), restart_count.to_string()),
        (keys::CONTAINER_HASH.into(), hash.to_string()),
        (keys::CONTAINER_KIND.into(), kind.as_str().to_string()),
        (
            keys::TERMINATION_MESSAGE_PATH.into(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            keys::TERMINATION_MESSAGE_POLICY.into(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            keys::TERMINATION_GRACE.into(),
            spec.termination_grace_period_seconds
                .unwrap_or(30)
                .to_string(),
        ),
    ]);
    let psc = spec.security_context.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: restart_count,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: resolved.command,
        args: resolved.args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: resolved.envs,
        mounts: resolved.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: resolved.resources,
            security_context: Some(security_context(
                &psc,
                c.security_context.as_ref(),
                namespaces(&spec, host_network),
            )),
        }),
        ..Default::default()
    }
}

/// The container's security context over the pod's, as kubelet merges them.
fn security_context(
    psc: &PodSecurityContext,
    sc: Option<&SecurityContext>,
    ns: cri::NamespaceOption,
) -> cri::LinuxContainerSecurityContext {
    let default = SecurityContext::default();
    let sc = sc.unwrap_or(&default);
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.as_ref().map(|c| cri::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    cri::LinuxContainerSecurityContext {
        capabilities: caps,
        privileged,
        namespace_options: Some(ns),
        run_as_user: sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(psc),
        // allowPrivilegeEscalation defaults to true, except that kubelet
        // never sets no_new_privs on a privileged container.
        no_new_privs: !privileged && sc.allow_privilege_escalation == Some(false),
        seccomp: seccomp(sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).expect("test pod")
    }

    fn ctx() -> NodeContext {
        NodeContext {
            node_name: "n1".into(),
            pod_log_dir: "/var/log/pods".into(),
            resolv_conf: "nameserver 10.0.0.2\nsearch corp.example\noptions ndots:2\n".into(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn sandbox_config_carries_identity_ports_and_namespaces() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"shareProcessNamespace": true, "containers": [
                {"name": "a", "image": "busybox", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 81, "protocol": "UDP"}
                ]}
            ]}
        }));
        let c = sandbox_config(&ctx(), &p, 0, "/kubepods/podu1".into());
        assert_eq!(c.labels[keys::POD_UID], "u1");
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.log_directory, "/var/log/pods/default_web_u1");
        assert_eq!(c.hostname, "web");
        assert_eq!(c.port_mappings.len(), 1, "only ports with a hostPort map");
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        let dns = c.dns_config.unwrap();
        assert_eq!(
            dns.servers,
            ["10.0.0.2"],
            "ClusterFirst without cluster DNS uses the node's"
        );
        assert_eq!(dns.searches, ["corp.example"]);
    }

    #[test]
    fn dns_none_takes_only_the_pod_dns_config() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns1", "uid": "u"},
            "spec": {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "1"}]},
                     "containers": [{"name": "a", "image": "x"}]}
        }));
        let dns = dns_config(&ctx(), &p).unwrap();
        assert_eq!(dns.servers, ["1.1.1.1"]);
        assert!(dns.searches.is_empty());
        assert_eq!(dns.options, ["ndots:1"]);
        let mut with_cluster = ctx();
        with_cluster.cluster_dns = vec!["10.96.0.10".into()];
        let p2 = pod(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns1", "uid": "u"},
            "spec": {"containers": [{"name": "a", "image": "x"}]}
        }));
        let dns = dns_config(&with_cluster, &p2).unwrap();
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.searches[0], "ns1.svc.cluster.local");
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn container_security_context_overrides_the_pods() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "s", "namespace": "default", "uid": "u"},
            "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "a", "image": "x", "securityContext": {
                        "runAsUser": 1001, "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, Kind::App, 2, "h", Resolved::default());
        assert_eq!(cfg.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(cfg.log_path, "a/2.log");
        assert_eq!(cfg.annotations[keys::RESTART_COUNT], "2");
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1001);
        assert_eq!(sc.run_as_group.unwrap().value, 1000);
        assert_eq!(sc.supplemental_groups, [2000]);
        assert!(sc.no_new_privs && sc.readonly_rootfs);
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, ["ALL"]);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::RuntimeDefault as i32
        );
    }
}
