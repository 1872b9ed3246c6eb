//! Container rules: names, image, ports, probes, lifecycle hooks, env,
//! resources and volume mounts.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{check_each, invalid, names, unsupported};
use crate::pod::field::FieldErrors;
use crate::pod::quantity::Quantity;

/// State shared by all containers of one pod.
pub(crate) struct Ctx<'a> {
    pub volumes: &'a HashSet<String>,
    pub names: &'a mut HashSet<String>,
    pub host_ports: &'a mut HashSet<(i32, String, String)>,
    pub host_network: bool,
    pub errs: &'a mut FieldErrors,
}

pub(crate) fn container(c: &Container, p: &str, init: bool, ctx: &mut Ctx<'_>) {
    let errs = &mut *ctx.errs;
    if c.name.is_empty() {
        errs.add(format!("{p}.name"), "Required value");
    } else {
        check_each(
            errs,
            &format!("{p}.name"),
            &c.name,
            names::dns1123_label(&c.name),
        );
        if !ctx.names.insert(c.name.clone()) {
            errs.add(
                format!("{p}.name"),
                format!("Duplicate value: {:?}", c.name),
            );
        }
    }
    match c.image.as_deref() {
        None | Some("") => errs.add(format!("{p}.image"), "Required value"),
        Some(i) if i.trim() != i => errs.add(
            format!("{p}.image"),
            invalid(i, "must not have leading or trailing whitespace"),
        ),
        _ => {}
    }
    let pull = c.image_pull_policy.as_deref().unwrap_or("");
    if !["Always", "IfNotPresent", "Never"].contains(&pull) {
        errs.add(
            format!("{p}.imagePullPolicy"),
            unsupported(pull, &["Always", "IfNotPresent", "Never"]),
        );
    }
    let tmp = c.termination_message_policy.as_deref().unwrap_or("");
    if !["File", "FallbackToLogsOnError"].contains(&tmp) {
        errs.add(
            format!("{p}.terminationMessagePolicy"),
            unsupported(tmp, &["File", "FallbackToLogsOnError"]),
        );
    }
    let sidecar = match (init, c.restart_policy.as_deref()) {
        (_, None) => false,
        (true, Some("Always")) => true,
        (true, Some(other)) => {
            errs.add(
                format!("{p}.restartPolicy"),
                unsupported(other, &["Always"]),
            );
            false
        }
        (false, Some(_)) => {
            errs.add(
                format!("{p}.restartPolicy"),
                "Forbidden: may not be set for non-init containers",
            );
            false
        }
    };
    let port_names = ports(c, p, ctx);
    let errs = &mut *ctx.errs;
    let probes = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (field, probe_opt) in probes {
        let Some(pr) = probe_opt else { continue };
        let path = format!("{p}.{field}");
        if init && !sidecar {
            errs.add(
                path,
                "Forbidden: may not be set for init containers without restartPolicy=Always",
            );
            continue;
        }
        probe(pr, &path, field, &port_names, errs);
    }
    if let Some(l) = c.lifecycle.as_ref() {
        if init && !sidecar {
            errs.add(
                format!("{p}.lifecycle"),
                "Forbidden: may not be set for init containers without restartPolicy=Always",
            );
        } else {
            for (field, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
                if let Some(h) = h {
                    handler(h, &format!("{p}.lifecycle.{field}"), &port_names, errs);
                }
            }
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        super::env::env(e, &format!("{p}.env[{i}]"), errs);
    }
    for (i, e) in c.env_from.iter().flatten().enumerate() {
        let path = format!("{p}.envFrom[{i}]");
        if let Some(prefix) = e.prefix.as_deref().filter(|s| !s.is_empty()) {
            check_each(
                errs,
                &format!("{path}.prefix"),
                prefix,
                names::env_var_name(prefix),
            );
        }
        let name = match (&e.config_map_ref, &e.secret_ref) {
            (Some(cm), None) => Some((
                "configMapRef",
                cm.name.as_str(),
                names::dns1123_subdomain(&cm.name),
            )),
            (None, Some(s)) => Some((
                "secretRef",
                s.name.as_str(),
                names::dns1123_subdomain(&s.name),
            )),
            (None, None) => {
                errs.add(
                    path.clone(),
                    "Invalid value: must specify one of: `configMapRef` or `secretRef`",
                );
                None
            }
            (Some(_), Some(_)) => {
                errs.add(
                    path.clone(),
                    "Invalid value: may not have more than one field specified at a time",
                );
                None
            }
        };
        if let Some((field, n, msgs)) = name {
            if n.is_empty() {
                errs.add(format!("{path}.{field}.name"), "Required value");
            } else {
                check_each(errs, &format!("{path}.{field}.name"), n, msgs);
            }
        }
    }
    if let Some(r) = c.resources.as_ref() {
        resources(r, &format!("{p}.resources"), errs);
    }
    mounts(c, p, ctx.volumes, errs);
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        errs.add(
            format!("{p}.volumeDevices"),
            "Forbidden: raw block volumes are not supported by husklet",
        );
    }
}

/// Ports: number range, protocol, unique IANA names; host ports unique per pod.
fn ports(c: &Container, p: &str, ctx: &mut Ctx<'_>) -> HashSet<String> {
    let mut port_names = HashSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        let errs = &mut *ctx.errs;
        if !(1..=65535).contains(&port.container_port) {
            errs.add(
                format!("{pp}.containerPort"),
                invalid(
                    port.container_port,
                    "must be between 1 and 65535, inclusive",
                ),
            );
        }
        let host = port.host_port.unwrap_or(0);
        if host != 0 && !(1..=65535).contains(&host) {
            errs.add(
                format!("{pp}.hostPort"),
                invalid(host, "must be between 1 and 65535, inclusive"),
            );
        }
        if ctx.host_network && host != 0 && host != port.container_port {
            errs.add(
                format!("{pp}.hostPort"),
                invalid(
                    host,
                    "must match `containerPort` when `hostNetwork` is true",
                ),
            );
        }
        let proto = port.protocol.as_deref().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.add(
                format!("{pp}.protocol"),
                unsupported(proto, &["SCTP", "TCP", "UDP"]),
            );
        }
        if host != 0 {
            let key = (
                host,
                proto.to_string(),
                port.host_ip.clone().unwrap_or_default(),
            );
            if !ctx.host_ports.insert(key) {
                errs.add(
                    format!("{pp}.hostPort"),
                    format!("Duplicate value: \"{host}/{proto}\""),
                );
            }
        }
        if let Some(n) = port.name.as_deref() {
            check_each(errs, &format!("{pp}.name"), n, names::port_name(n));
            if !port_names.insert(n.to_string()) {
                errs.add(format!("{pp}.name"), format!("Duplicate value: {n:?}"));
            }
        }
    }
    port_names
}

fn port_ref(port: &IntOrString, path: &str, declared: &HashSet<String>, errs: &mut FieldErrors) {
    match port {
        IntOrString::Int(n) => {
            if !(1..=65535).contains(n) {
                errs.add(path, invalid(n, "must be between 1 and 65535, inclusive"));
            }
        }
        IntOrString::String(s) => {
            let msgs = names::port_name(s);
            if !msgs.is_empty() {
                check_each(errs, path, s, msgs);
            } else if !declared.contains(s) {
                errs.add(path, format!("port {s:?} is not declared by the container"));
            }
        }
    }
}

fn http_get(h: &HTTPGetAction, path: &str, declared: &HashSet<String>, errs: &mut FieldErrors) {
    port_ref(&h.port, &format!("{path}.port"), declared, errs);
    let scheme = h.scheme.as_deref().unwrap_or("HTTP");
    if !["HTTP", "HTTPS"].contains(&scheme) {
        errs.add(
            format!("{path}.scheme"),
            unsupported(scheme, &["HTTP", "HTTPS"]),
        );
    }
    for (i, hdr) in h.http_headers.iter().flatten().enumerate() {
        let valid = !hdr.name.is_empty()
            && hdr
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            errs.add(format!("{path}.httpHeaders[{i}].name"), invalid(&hdr.name, "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')"));
        }
    }
}

/// Exactly one handler; the action's own fields.
fn actions(
    exec: Option<&k8s_openapi::api::core::v1::ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&k8s_openapi::api::core::v1::TCPSocketAction>,
    extra: &[(&str, bool)],
    path: &str,
    declared: &HashSet<String>,
    errs: &mut FieldErrors,
) {
    let count = [exec.is_some(), http.is_some(), tcp.is_some()]
        .iter()
        .filter(|b| **b)
        .count()
        + extra.iter().filter(|(_, set)| *set).count();
    if count == 0 {
        errs.add(path, "Required value: must specify a handler type");
    } else if count > 1 {
        errs.add(path, "Forbidden: may not specify more than 1 handler type");
    }
    if let Some(e) = exec
        && e.command.as_ref().is_none_or(|c| c.is_empty())
    {
        errs.add(format!("{path}.exec.command"), "Required value");
    }
    if let Some(h) = http {
        http_get(h, &format!("{path}.httpGet"), declared, errs);
    }
    if let Some(t) = tcp {
        port_ref(&t.port, &format!("{path}.tcpSocket.port"), declared, errs);
    }
}

fn probe(pr: &Probe, path: &str, kind: &str, declared: &HashSet<String>, errs: &mut FieldErrors) {
    actions(
        pr.exec.as_ref(),
        pr.http_get.as_ref(),
        pr.tcp_socket.as_ref(),
        &[("grpc", pr.grpc.is_some())],
        path,
        declared,
        errs,
    );
    if let Some(g) = pr.grpc.as_ref()
        && !(1..=65535).contains(&g.port)
    {
        errs.add(
            format!("{path}.grpc.port"),
            invalid(g.port, "must be between 1 and 65535, inclusive"),
        );
    }
    let fields = [
        ("initialDelaySeconds", pr.initial_delay_seconds, 0),
        ("timeoutSeconds", pr.timeout_seconds, 1),
        ("periodSeconds", pr.period_seconds, 1),
        ("successThreshold", pr.success_threshold, 1),
        ("failureThreshold", pr.failure_threshold, 1),
    ];
    for (field, value, min) in fields {
        if let Some(v) = value
            && v < min
        {
            errs.add(
                format!("{path}.{field}"),
                invalid(v, &format!("must be greater than or equal to {min}")),
            );
        }
    }
    if kind != "readinessProbe" && pr.success_threshold.is_some_and(|s| s != 1) {
        errs.add(
            format!("{path}.successThreshold"),
            invalid(pr.success_threshold.unwrap_or(0), "must be 1"),
        );
    }
    match (kind, pr.termination_grace_period_seconds) {
        ("readinessProbe", Some(_)) => errs.add(
            format!("{path}.terminationGracePeriodSeconds"),
            "Invalid value: must not be set for readinessProbes",
        ),
        (_, Some(g)) if g <= 0 => errs.add(
            format!("{path}.terminationGracePeriodSeconds"),
            invalid(g, "must be greater than 0"),
        ),
        _ => {}
    }
}

fn handler(h: &LifecycleHandler, path: &str, declared: &HashSet<String>, errs: &mut FieldErrors) {
    actions(
        h.exec.as_ref(),
        h.http_get.as_ref(),
        h.tcp_socket.as_ref(),
        &[("sleep", h.sleep.is_some())],
        path,
        declared,
        errs,
    );
    if let Some(s) = h.sleep.as_ref()
        && s.seconds <= 0
    {
        errs.add(
            format!("{path}.sleep.seconds"),
            invalid(s.seconds, "must be greater than 0"),
        );
    }
}

fn standard_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/') && names::qualified_name(name).is_empty())
}

fn resources(r: &ResourceRequirements, path: &str, errs: &mut FieldErrors) {
    let mut parsed = [Vec::new(), Vec::new()];
    for (slot, (field, map)) in [("limits", &r.limits), ("requests", &r.requests)]
        .into_iter()
        .enumerate()
    {
        for (name, q) in map.iter().flatten() {
            let p = format!("{path}.{field}[{name}]");
            if !standard_resource(name) {
                errs.add(
                    &p,
                    invalid(name, "must be a standard resource type or fully qualified"),
                );
                continue;
            }
            match Quantity::parse(&q.0) {
                Ok(v) if v.is_negative() => {
                    errs.add(&p, invalid(&q.0, "must be greater than or equal to 0"))
                }
                Ok(v) => parsed[slot].push((name.clone(), v, q.0.clone())),
                Err(e) => errs.add(&p, invalid(&q.0, &e.to_string())),
            }
        }
    }
    let [limits, requests] = parsed;
    for (name, req, req_s) in &requests {
        if let Some((_, lim, lim_s)) = limits.iter().find(|(n, ..)| n == name)
            && req > lim
        {
            errs.add(
                format!("{path}.requests[{name}]"),
                invalid(
                    req_s,
                    &format!("must be less than or equal to {name} limit of {lim_s}"),
                ),
            );
        }
    }
}

fn mounts(c: &Container, p: &str, volumes: &HashSet<String>, errs: &mut FieldErrors) {
    let mut paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.add(format!("{mp}.name"), "Required value");
        } else if !volumes.contains(&m.name) {
            errs.add(format!("{mp}.name"), format!("Not found: {:?}", m.name));
        }
        if m.mount_path.is_empty() {
            errs.add(format!("{mp}.mountPath"), "Required value");
        } else if !m.mount_path.starts_with('/') {
            errs.add(
                format!("{mp}.mountPath"),
                invalid(&m.mount_path, "must be an absolute path"),
            );
        } else if !paths.insert(m.mount_path.trim_end_matches('/').to_string()) {
            errs.add(
                format!("{mp}.mountPath"),
                invalid(&m.mount_path, "must be unique"),
            );
        }
        if let Some(sp) = m.sub_path.as_deref() {
            check_each(
                errs,
                &format!("{mp}.subPath"),
                sp,
                names::local_descending_path(sp),
            );
        }
        if m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
            if m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                errs.add(
                    format!("{mp}.subPathExpr"),
                    "Invalid value: subPathExpr and subPath are mutually exclusive",
                );
            }
            if let Some(sp) = m.sub_path_expr.as_deref() {
                check_each(
                    errs,
                    &format!("{mp}.subPathExpr"),
                    sp,
                    names::local_descending_path(sp),
                );
            }
        }
        if let Some(prop) = m.mount_propagation.as_deref() {
            let ok = ["None", "HostToContainer", "Bidirectional"];
            if !ok.contains(&prop) {
                errs.add(format!("{mp}.mountPropagation"), unsupported(prop, &ok));
            } else if prop == "Bidirectional" && !privileged(c) {
                errs.add(format!("{mp}.mountPropagation"), "Forbidden: Bidirectional mount propagation is available only to privileged containers");
            }
        }
        if m.recursive_read_only
            .as_deref()
            .is_some_and(|r| r != "Disabled")
        {
            errs.add(
                format!("{mp}.recursiveReadOnly"),
                "Forbidden: only \"Disabled\" is supported by husklet",
            );
        }
    }
}

fn privileged(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
}
