//! The service link variables kubelet puts in every container's
//! environment (`getServiceEnvVarMap` and `envvars.FromServices`): for the
//! `kubernetes` Service of the `default` namespace always, and, when the
//! pod's `enableServiceLinks` is true (the default), for each Service of
//! the pod's namespace. Services without a cluster IP (headless, or
//! ExternalName) are skipped.
//!
//! For a Service `my-svc` with cluster IP 10.0.0.11 and ports `http` 80/TCP
//! (first) and 53/UDP:
//!
//! ```text
//! MY_SVC_SERVICE_HOST=10.0.0.11
//! MY_SVC_SERVICE_PORT=80               (the first port)
//! MY_SVC_SERVICE_PORT_HTTP=80          (each named port)
//! MY_SVC_PORT=tcp://10.0.0.11:80       (the first port)
//! MY_SVC_PORT_80_TCP=tcp://10.0.0.11:80
//! MY_SVC_PORT_80_TCP_PROTO=tcp
//! MY_SVC_PORT_80_TCP_PORT=80
//! MY_SVC_PORT_80_TCP_ADDR=10.0.0.11
//! MY_SVC_PORT_53_UDP=udp://10.0.0.11:53 …
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};

/// The namespace of the master services.
const MASTER_NAMESPACE: &str = "default";
/// The services every pod gets variables for.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// `makeEnvVariableName`: upper case, `-` → `_`.
pub fn env_name(service: &str) -> String {
    service.replace('-', "_").to_uppercase()
}

fn cluster_ip(s: &Service) -> Option<&str> {
    // IsServiceIPSet: neither empty nor "None".
    let ip = s.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `net.JoinHostPort`: brackets around an IPv6 address.
fn host_port(ip: &str, port: i32) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

/// The variables of `services` (`envvars.FromServices`).
pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(ip) = cluster_ip(s) else { continue };
        let ports = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.as_deref())
            .unwrap_or(&[]);
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(s.metadata.name.as_deref().unwrap_or(""));
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        let port_var = format!("{prefix}_SERVICE_PORT");
        out.push((port_var.clone(), first.port.to_string()));
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{port_var}_{}", env_name(n)), p.port.to_string()));
            }
        }
        // Docker link compatible variables.
        for (i, p) in ports.iter().enumerate() {
            let proto = p
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let url = format!("{}://{}", proto.to_lowercase(), host_port(ip, p.port));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The service variables of `pod`, from every Service of the cluster
/// (`getServiceEnvVarMap`). A Service of the pod's own namespace wins over
/// a master service of the same name.
pub fn service_env(pod: &Pod, all: &[Service]) -> BTreeMap<String, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in all.iter().filter(|s| cluster_ip(s).is_some()) {
        let name = s.metadata.name.as_deref().unwrap_or("");
        let s_ns = s.metadata.namespace.as_deref().unwrap_or("");
        if links && s_ns == ns {
            chosen.insert(name, s);
        } else if s_ns == MASTER_NAMESPACE && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(s);
        }
    }
    from_services(chosen.into_values()).into_iter().collect()
}
