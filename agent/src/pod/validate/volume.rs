//! Volume rules: unique DNS-label names, exactly one source, and each
//! source's own fields. Sources husklet cannot serve are refused by name.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume};

use super::env::{field_path, resource_field};
use super::{check_each, invalid, names, unsupported};
use crate::pod::field::FieldErrors;
use crate::pod::quantity::Quantity;

/// hostPath `type` values.
pub const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

/// Downward API volume field paths (besides `metadata.labels['k']` forms).
pub const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

/// The JSON name of a set source that husklet does not support, if any.
pub fn other_source(v: &Volume) -> Option<&'static str> {
    let others = [
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("cinder", v.cinder.is_some()),
        ("csi", v.csi.is_some()),
        ("ephemeral", v.ephemeral.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("gitRepo", v.git_repo.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("image", v.image.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("nfs", v.nfs.is_some()),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("rbd", v.rbd.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("storageos", v.storageos.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ];
    others.into_iter().find(|(_, set)| *set).map(|(n, _)| n)
}

/// Validate the pod's volumes; returns the declared names.
pub(crate) fn volumes(vols: &[Volume], errs: &mut FieldErrors) -> HashSet<String> {
    let mut declared = HashSet::new();
    for (i, v) in vols.iter().enumerate() {
        let p = format!("spec.volumes[{i}]");
        if v.name.is_empty() {
            errs.add(format!("{p}.name"), "Required value");
        } else {
            check_each(
                errs,
                &format!("{p}.name"),
                &v.name,
                names::dns1123_label(&v.name),
            );
            if !declared.insert(v.name.clone()) {
                errs.add(
                    format!("{p}.name"),
                    format!("Duplicate value: {:?}", v.name),
                );
            }
        }
        source(v, &p, errs);
    }
    declared
}

fn source(v: &Volume, p: &str, errs: &mut FieldErrors) {
    let known = [
        v.empty_dir.is_some(),
        v.host_path.is_some(),
        v.config_map.is_some(),
        v.secret.is_some(),
        v.downward_api.is_some(),
        v.projected.is_some(),
    ];
    let other = other_source(v);
    let count = known.iter().filter(|b| **b).count() + usize::from(other.is_some());
    if count == 0 {
        errs.add(p, "Required value: must specify a volume type");
    } else if count > 1 {
        errs.add(p, "Forbidden: may not specify more than 1 volume type");
    }
    if let Some(o) = other {
        errs.add(
            format!("{p}.{o}"),
            "Forbidden: volume type is not supported by husklet",
        );
    }
    if let Some(e) = v.empty_dir.as_ref() {
        let medium = e.medium.as_deref().unwrap_or("");
        if !["", "Memory"].contains(&medium) {
            errs.add(
                format!("{p}.emptyDir.medium"),
                unsupported(medium, &["", "Memory"]),
            );
        }
        if let Some(q) = e.size_limit.as_ref() {
            match Quantity::parse(&q.0) {
                Ok(s) if s.is_negative() => errs.add(
                    format!("{p}.emptyDir.sizeLimit"),
                    invalid(&q.0, "must be greater than or equal to 0"),
                ),
                Ok(_) => {}
                Err(e) => errs.add(
                    format!("{p}.emptyDir.sizeLimit"),
                    invalid(&q.0, &e.to_string()),
                ),
            }
        }
    }
    if let Some(h) = v.host_path.as_ref() {
        if h.path.is_empty() {
            errs.add(format!("{p}.hostPath.path"), "Required value");
        } else if h.path.split('/').any(|s| s == "..") {
            errs.add(
                format!("{p}.hostPath.path"),
                invalid(&h.path, "must not contain '..'"),
            );
        }
        let t = h.type_.as_deref().unwrap_or("");
        if !HOST_PATH_TYPES.contains(&t) {
            errs.add(
                format!("{p}.hostPath.type"),
                unsupported(t, HOST_PATH_TYPES),
            );
        }
    }
    if let Some(c) = v.config_map.as_ref() {
        let cp = format!("{p}.configMap");
        required_name(&c.name, &format!("{cp}.name"), errs);
        mode(c.default_mode, &format!("{cp}.defaultMode"), errs);
        items(c.items.as_deref(), &cp, errs);
    }
    if let Some(s) = v.secret.as_ref() {
        let sp = format!("{p}.secret");
        required_name(
            s.secret_name.as_deref().unwrap_or(""),
            &format!("{sp}.secretName"),
            errs,
        );
        mode(s.default_mode, &format!("{sp}.defaultMode"), errs);
        items(s.items.as_deref(), &sp, errs);
    }
    if let Some(d) = v.downward_api.as_ref() {
        let dp = format!("{p}.downwardAPI");
        mode(d.default_mode, &format!("{dp}.defaultMode"), errs);
        downward_items(d.items.as_deref().unwrap_or(&[]), &dp, errs);
    }
    if let Some(pr) = v.projected.as_ref() {
        let pp = format!("{p}.projected");
        mode(pr.default_mode, &format!("{pp}.defaultMode"), errs);
        let mut paths = HashSet::new();
        for (i, src) in pr.sources.iter().flatten().enumerate() {
            let sp = format!("{pp}.sources[{i}]");
            let set = [
                src.config_map.is_some(),
                src.secret.is_some(),
                src.downward_api.is_some(),
                src.service_account_token.is_some(),
                src.cluster_trust_bundle.is_some(),
            ];
            if set.iter().filter(|b| **b).count() != 1 {
                errs.add(
                    &sp,
                    "Forbidden: may not specify more than 1 volume type per source",
                );
            }
            if let Some(c) = src.config_map.as_ref() {
                required_name(&c.name, &format!("{sp}.configMap.name"), errs);
                items(c.items.as_deref(), &format!("{sp}.configMap"), errs);
                note_paths(
                    c.items.iter().flatten().map(|k| &k.path),
                    &sp,
                    &mut paths,
                    errs,
                );
            }
            if let Some(s) = src.secret.as_ref() {
                required_name(&s.name, &format!("{sp}.secret.name"), errs);
                items(s.items.as_deref(), &format!("{sp}.secret"), errs);
                note_paths(
                    s.items.iter().flatten().map(|k| &k.path),
                    &sp,
                    &mut paths,
                    errs,
                );
            }
            if let Some(d) = src.downward_api.as_ref() {
                let items = d.items.as_deref().unwrap_or(&[]);
                downward_items(items, &format!("{sp}.downwardAPI"), errs);
                note_paths(items.iter().map(|k| &k.path), &sp, &mut paths, errs);
            }
            if let Some(t) = src.service_account_token.as_ref() {
                check_each(
                    errs,
                    &format!("{sp}.serviceAccountToken.path"),
                    &t.path,
                    file_path(&t.path),
                );
                if t.expiration_seconds.is_some_and(|e| e < 600) {
                    errs.add(
                        format!("{sp}.serviceAccountToken.expirationSeconds"),
                        "Invalid value: may not specify a duration less than 10 minutes",
                    );
                }
                note_paths([&t.path].into_iter(), &sp, &mut paths, errs);
            }
            if src.cluster_trust_bundle.is_some() {
                errs.add(
                    format!("{sp}.clusterTrustBundle"),
                    "Forbidden: not supported by husklet",
                );
            }
        }
    }
}

fn note_paths<'a>(
    ps: impl Iterator<Item = &'a String>,
    sp: &str,
    seen: &mut HashSet<String>,
    errs: &mut FieldErrors,
) {
    for path in ps {
        if !seen.insert(path.clone()) {
            errs.add(
                sp,
                format!("Invalid value: {path:?}: conflicting duplicate paths"),
            );
        }
    }
}

fn required_name(name: &str, path: &str, errs: &mut FieldErrors) {
    if name.is_empty() {
        errs.add(path, "Required value");
    } else {
        check_each(errs, path, name, names::dns1123_subdomain(name));
    }
}

fn mode(m: Option<i32>, path: &str, errs: &mut FieldErrors) {
    if let Some(m) = m
        && !(0..=0o777).contains(&m)
    {
        errs.add(
            path,
            invalid(
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            ),
        );
    }
}

/// A file path inside a volume: relative, no `..` element, not starting with `..`.
fn file_path(p: &str) -> Vec<String> {
    let mut errs = names::local_descending_path(p);
    if p.is_empty() {
        errs.push("must not be empty".to_string());
    }
    if p.starts_with("..") && errs.is_empty() {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

fn items(items: Option<&[KeyToPath]>, p: &str, errs: &mut FieldErrors) {
    for (i, it) in items.into_iter().flatten().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if it.key.is_empty() {
            errs.add(format!("{ip}.key"), "Required value");
        }
        check_each(errs, &format!("{ip}.path"), &it.path, file_path(&it.path));
        mode(it.mode, &format!("{ip}.mode"), errs);
    }
}

fn downward_items(items: &[DownwardAPIVolumeFile], p: &str, errs: &mut FieldErrors) {
    for (i, it) in items.iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        check_each(errs, &format!("{ip}.path"), &it.path, file_path(&it.path));
        mode(it.mode, &format!("{ip}.mode"), errs);
        match (&it.field_ref, &it.resource_field_ref) {
            (Some(f), None) => field_path(
                &f.field_path,
                VOLUME_FIELD_PATHS,
                &format!("{ip}.fieldRef.fieldPath"),
                errs,
            ),
            (None, Some(r)) => {
                if r.container_name.as_deref().unwrap_or("").is_empty() {
                    errs.add(
                        format!("{ip}.resourceFieldRef.containerName"),
                        "Required value",
                    );
                }
                resource_field(r, &format!("{ip}.resourceFieldRef"), errs);
            }
            (Some(_), Some(_)) => errs.add(
                &ip,
                "Invalid value: fieldRef and resourceFieldRef can not be specified simultaneously",
            ),
            (None, None) => errs.add(
                &ip,
                "Required value: one of fieldRef and resourceFieldRef is required",
            ),
        }
    }
}
