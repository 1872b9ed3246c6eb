//! Env rules: names, `value`/`valueFrom` exclusivity, the downward API's
//! field paths and resources, ConfigMap/Secret key references.

use k8s_openapi::api::core::v1::{EnvVar, ResourceFieldSelector};

use super::{check_each, names, unsupported};
use crate::pod::field::FieldErrors;

/// Field paths `valueFrom.fieldRef` and the downward API may name.
pub const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Resources `resourceFieldRef` may name.
pub const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// `metadata.labels['key']` / `metadata.annotations['key']` → (field, key).
pub fn subscripted(path: &str) -> Option<(&str, &str)> {
    let (field, rest) = path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    matches!(field, "metadata.labels" | "metadata.annotations").then_some((field, key))
}

pub(crate) fn field_path(fp: &str, allowed: &[&str], path: &str, errs: &mut FieldErrors) {
    if let Some((_, key)) = subscripted(fp) {
        check_each(errs, path, key, names::qualified_name(key));
    } else if !allowed.contains(&fp) {
        errs.add(path, unsupported(fp, allowed));
    }
}

pub(crate) fn resource_field(r: &ResourceFieldSelector, path: &str, errs: &mut FieldErrors) {
    if !RESOURCE_FIELDS.contains(&r.resource.as_str()) {
        errs.add(
            format!("{path}.resource"),
            unsupported(&r.resource, RESOURCE_FIELDS),
        );
        return;
    }
    if let Some(d) = r.divisor.as_ref() {
        let ok: &[&str] = if r.resource.ends_with(".cpu") {
            &["1m", "1"]
        } else {
            &[
                "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
            ]
        };
        if !ok.contains(&d.0.as_str()) {
            errs.add(format!("{path}.divisor"), unsupported(&d.0, ok));
        }
    }
}

pub(crate) fn env(e: &EnvVar, path: &str, errs: &mut FieldErrors) {
    if e.name.is_empty() {
        errs.add(format!("{path}.name"), "Required value");
    } else {
        check_each(
            errs,
            &format!("{path}.name"),
            &e.name,
            names::env_var_name(&e.name),
        );
    }
    let Some(from) = e.value_from.as_ref() else {
        return;
    };
    let vf = format!("{path}.valueFrom");
    if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
        errs.add(
            &vf,
            "Invalid value: may not be specified when `value` is not empty",
        );
    }
    let count = [
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if count == 0 {
        errs.add(&vf, "Invalid value: must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
    } else if count > 1 {
        errs.add(
            &vf,
            "Invalid value: may not have more than one field specified at a time",
        );
    }
    if let Some(f) = from.field_ref.as_ref() {
        if f.api_version.as_deref().unwrap_or("v1") != "v1" {
            errs.add(
                format!("{vf}.fieldRef.apiVersion"),
                unsupported(f.api_version.as_deref().unwrap_or(""), &["v1"]),
            );
        }
        field_path(
            &f.field_path,
            ENV_FIELD_PATHS,
            &format!("{vf}.fieldRef.fieldPath"),
            errs,
        );
    }
    if let Some(r) = from.resource_field_ref.as_ref() {
        resource_field(r, &format!("{vf}.resourceFieldRef"), errs);
    }
    for (field, name, key) in [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
        (
            "secretKeyRef",
            from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
        ),
    ]
    .into_iter()
    .filter_map(|(f, nk)| nk.map(|(n, k)| (f, n, k)))
    {
        if name.is_empty() {
            errs.add(format!("{vf}.{field}.name"), "Required value");
        }
        if key.is_empty() {
            errs.add(format!("{vf}.{field}.key"), "Required value");
        } else {
            check_each(
                errs,
                &format!("{vf}.{field}.key"),
                key,
                names::config_map_key(key),
            );
        }
    }
}
