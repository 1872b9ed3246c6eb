//! Validation with Kubernetes' rules (`ValidatePodCreate` and friends),
//! run on a defaulted pod ([`super::defaults::apply`]). Every error is
//! collected with its field path; nothing stops at the first.

pub mod container;
pub mod env;
pub mod names;
pub mod volume;

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::field::FieldErrors;

/// `Invalid value` message in the apiserver's words.
pub(crate) fn invalid(value: impl std::fmt::Debug, msg: &str) -> String {
    format!("Invalid value: {value:?}: {msg}")
}

/// `Unsupported value` with the supported list.
pub(crate) fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

pub(crate) fn check_each(errs: &mut FieldErrors, path: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.add(path, invalid(value, &m));
    }
}

/// Validate a defaulted pod. Returns every invalid field.
pub fn pod(pod: &Pod) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::default();
    metadata(&pod.metadata, &mut errs);
    let Some(spec) = pod.spec.as_ref() else {
        errs.add("spec", "Required value");
        return errs.into_result();
    };
    let volumes = volume::volumes(spec.volumes.as_deref().unwrap_or(&[]), &mut errs);

    if spec.containers.is_empty() {
        errs.add("spec.containers", "Required value");
    }
    let mut names = HashSet::new();
    let mut host_ports = HashSet::new();
    let host_network = spec.host_network.unwrap_or(false);
    let mut ctx = container::Ctx {
        volumes: &volumes,
        names: &mut names,
        host_ports: &mut host_ports,
        host_network,
        errs: &mut errs,
    };
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        container::container(c, &format!("spec.initContainers[{i}]"), true, &mut ctx);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        container::container(c, &format!("spec.containers[{i}]"), false, &mut ctx);
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.add(
            "spec.ephemeralContainers",
            "Forbidden: may not be set on create",
        );
    }

    let restart = spec.restart_policy.as_deref().unwrap_or("");
    if !["Always", "OnFailure", "Never"].contains(&restart) {
        errs.add(
            "spec.restartPolicy",
            unsupported(restart, &["Always", "OnFailure", "Never"]),
        );
    }
    let dns = spec.dns_policy.as_deref().unwrap_or("");
    let dns_ok = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if !dns_ok.contains(&dns) {
        errs.add("spec.dnsPolicy", unsupported(dns, &dns_ok));
    } else if dns == "None" && spec.dns_config.is_none() {
        errs.add(
            "spec.dnsConfig",
            "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        );
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        errs.add(
            "spec.terminationGracePeriodSeconds",
            invalid(g, "must be greater than or equal to 0"),
        );
    }
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        errs.add(
            "spec.activeDeadlineSeconds",
            invalid(d, "must be greater than or equal to 1"),
        );
    }
    if let Some(h) = spec.hostname.as_deref() {
        check_each(&mut errs, "spec.hostname", h, names::dns1123_label(h));
    }
    if let Some(s) = spec.subdomain.as_deref() {
        check_each(&mut errs, "spec.subdomain", s, names::dns1123_label(s));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        check_each(
            &mut errs,
            "spec.serviceAccountName",
            sa,
            names::dns1123_subdomain(sa),
        );
    }
    errs.into_result()
}

fn metadata(m: &ObjectMeta, errs: &mut FieldErrors) {
    match m.name.as_deref() {
        None | Some("") => {
            if m.generate_name.as_deref().unwrap_or("").is_empty() {
                errs.add(
                    "metadata.name",
                    "Required value: name or generateName is required",
                );
            }
        }
        Some(n) => check_each(errs, "metadata.name", n, names::dns1123_subdomain(n)),
    }
    if let Some(ns) = m.namespace.as_deref() {
        check_each(errs, "metadata.namespace", ns, names::dns1123_label(ns));
    }
    labels(m.labels.as_ref(), "metadata.labels", errs);
    for k in m.annotations.iter().flat_map(BTreeMap::keys) {
        check_each(errs, "metadata.annotations", k, names::qualified_name(k));
    }
}

fn labels(l: Option<&BTreeMap<String, String>>, path: &str, errs: &mut FieldErrors) {
    for (k, v) in l.into_iter().flatten() {
        check_each(errs, path, k, names::qualified_name(k));
        check_each(errs, &format!("{path}[{k}]"), v, names::label_value(v));
    }
}

/// Validate a ConfigMap: name and data keys (no key in both `data` and `binaryData`).
pub fn config_map(cm: &ConfigMap) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::default();
    metadata(&cm.metadata, &mut errs);
    for k in cm.data.iter().flat_map(BTreeMap::keys) {
        check_each(
            &mut errs,
            &format!("data[{k}]"),
            k,
            names::config_map_key(k),
        );
        if cm.binary_data.as_ref().is_some_and(|b| b.contains_key(k)) {
            errs.add(
                format!("data[{k}]"),
                "Invalid value: duplicate of key present in binaryData",
            );
        }
    }
    for k in cm.binary_data.iter().flat_map(BTreeMap::keys) {
        check_each(
            &mut errs,
            &format!("binaryData[{k}]"),
            k,
            names::config_map_key(k),
        );
    }
    errs.into_result()
}

/// Validate a Secret: name and data keys.
pub fn secret(s: &Secret) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::default();
    metadata(&s.metadata, &mut errs);
    for k in s.data.iter().flat_map(BTreeMap::keys) {
        check_each(
            &mut errs,
            &format!("data[{k}]"),
            k,
            names::config_map_key(k),
        );
    }
    errs.into_result()
}

#[cfg(test)]
mod tests;
