//! A container's security context as OCI spec parts: capabilities
//! (containerd's default set, added and dropped; privileged: all of
//! husklet's own), masked and read-only paths, and devices (the CRI's
//! `devices`; privileged: every device of the host's /dev).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::error::CriError;

/// containerd's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability by number (linux/capability.h).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default masked and read-only paths.
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const SC: &str = "config.linux.security_context";

/// The capabilities husklet itself holds (what a privileged container
/// gets, as containerd's "all current capabilities").
fn own_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bits = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// `CAP_X` for `x`, `X` or `CAP_X`; an unknown name is an error naming `field`.
fn cap_name(c: &str, field: String) -> Result<String, CriError> {
    let up = c.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(CriError::invalid(
            field,
            format!("unknown capability {c:?}"),
        ))
    }
}

/// The container's capability set (bounding = effective = permitted).
pub fn capabilities(
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Result<Vec<String>, CriError> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let mut caps: Vec<String> = if privileged {
        own_caps()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    let Some(c) = sc.and_then(|s| s.capabilities.as_ref()) else {
        return Ok(caps);
    };
    if !c.add_ambient_capabilities.is_empty() {
        return Err(CriError::invalid(
            format!("{SC}.capabilities.add_ambient_capabilities"),
            "ambient capabilities are not supported",
        ));
    }
    let all = |c: &String| c.eq_ignore_ascii_case("ALL") || c.eq_ignore_ascii_case("CAP_ALL");
    if privileged {
        // containerd ignores add and drop for privileged containers.
        return Ok(caps);
    }
    if c.add_capabilities.iter().any(all) {
        caps = own_caps();
    }
    if c.drop_capabilities.iter().any(all) {
        caps.clear();
    }
    for (i, d) in c.drop_capabilities.iter().enumerate() {
        if !all(d) {
            let d = cap_name(d, format!("{SC}.capabilities.drop_capabilities[{i}]"))?;
            caps.retain(|x| *x != d);
        }
    }
    for (i, a) in c.add_capabilities.iter().enumerate() {
        if !all(a) {
            let a = cap_name(a, format!("{SC}.capabilities.add_capabilities[{i}]"))?;
            if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    Ok(caps)
}

/// Masked and read-only paths: none when privileged, the CRI's lists when
/// given, else containerd's defaults.
pub fn masked_and_readonly(
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> (Vec<String>, Vec<String>) {
    let Some(sc) = sc else {
        return (own(MASKED), own(READONLY));
    };
    if sc.privileged {
        return (vec![], vec![]);
    }
    let pick = |given: &[String], default: &[&str]| {
        if given.is_empty() {
            own(default)
        } else {
            given.to_vec()
        }
    };
    (
        pick(&sc.masked_paths, MASKED),
        pick(&sc.readonly_paths, READONLY),
    )
}

fn own(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A device node as OCI `linux.devices` and a device cgroup rule.
fn device(host: &Path, container: &str, access: &str) -> Option<(Value, Value)> {
    let md = std::fs::metadata(host).ok()?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return None;
    };
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Some((
        json!({"path": container, "type": kind, "major": major, "minor": minor,
               "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid()}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access}),
    ))
}

/// Device nodes under `dir` (recursively), skipping what a container's /dev
/// gets on its own (pts, shm, mqueue) and the console, as containerd.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>, top: bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = top
                && matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                );
            if !skip {
                walk(&p, out, false);
            }
        } else if (ft.is_char_device() || ft.is_block_device())
            && !(top && name.to_str() == Some("console"))
        {
            out.push(p);
        }
    }
}

/// `linux.devices` and the device cgroup rules to add after the defaults.
pub fn devices(config: &cri::ContainerConfig) -> Result<(Vec<Value>, Vec<Value>), CriError> {
    let privileged = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    let (mut devs, mut rules) = (vec![], vec![]);
    if privileged {
        let mut found = vec![];
        walk(Path::new("/dev"), &mut found, true);
        found.sort();
        for p in found {
            if let Some((d, _)) = device(&p, &p.to_string_lossy(), "rwm") {
                devs.push(d);
            }
        }
        // Every char and every block device: the same as one allow-all rule,
        // but a typeless allow-all makes the rules after it unreachable in
        // husk's cgroup v2 device filter, which the BPF verifier refuses.
        for kind in ["c", "b"] {
            rules.push(json!({"allow": true, "type": kind, "access": "rwm"}));
        }
    }
    for (i, d) in config.devices.iter().enumerate() {
        let field = format!("config.devices[{i}]");
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(CriError::invalid(
                format!("{field}.permissions"),
                format!("{access:?} is not made of r, w and m"),
            ));
        }
        if !d.container_path.starts_with('/') {
            return Err(CriError::invalid(
                format!("{field}.container_path"),
                format!("{:?} is not an absolute path", d.container_path),
            ));
        }
        let host = Path::new(&d.host_path);
        let md = std::fs::metadata(host).map_err(|e| {
            CriError::invalid(
                format!("{field}.host_path"),
                format!("{:?}: {e}", d.host_path),
            )
        })?;
        let mut pairs = vec![];
        if md.is_dir() {
            let mut found = vec![];
            walk(host, &mut found, false);
            found.sort();
            for p in found {
                let rel = p.strip_prefix(host).unwrap_or(&p);
                let dst = Path::new(&d.container_path).join(rel);
                pairs.extend(device(&p, &dst.to_string_lossy(), access));
            }
        } else {
            pairs.push(device(host, &d.container_path, access).ok_or_else(|| {
                CriError::invalid(
                    format!("{field}.host_path"),
                    format!("{:?} is not a device", d.host_path),
                )
            })?);
        }
        for (dev, rule) in pairs {
            devs.retain(|x| x["path"] != dev["path"]);
            devs.push(dev);
            rules.push(rule);
        }
    }
    Ok((devs, rules))
}

/// Refuse what husklet cannot honour, naming the field.
pub fn check(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    sandbox: &cri::PodSandboxConfig,
) -> Result<(), CriError> {
    let Some(sc) = sc else { return Ok(()) };
    let sandbox_privileged = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if sc.privileged && !sandbox_privileged {
        return Err(CriError::invalid(
            format!("{SC}.privileged"),
            "a privileged container needs a privileged sandbox \
             (config.linux.security_context.privileged of RunPodSandbox)",
        ));
    }
    if let Some(a) = &sc.apparmor {
        if a.profile_type == cri::security_profile::ProfileType::Localhost as i32 {
            return Err(CriError::invalid(
                format!("{SC}.apparmor"),
                "AppArmor profiles are not supported on this node",
            ));
        }
    }
    if sc
        .namespace_options
        .as_ref()
        .and_then(|n| n.userns_options.as_ref())
        .is_some_and(|u| u.mode != cri::NamespaceMode::Node as i32)
    {
        return Err(CriError::invalid(
            format!("{SC}.namespace_options.userns_options"),
            "user namespaces are not supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc_caps(add: &[&str], drop: &[&str]) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_are_added_and_dropped_on_the_default_set() {
        let c = capabilities(Some(&sc_caps(&["sys_admin"], &["NET_RAW"]))).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".into()) && !c.contains(&"CAP_NET_RAW".into()));
        assert_eq!(c.len(), DEFAULT_CAPS.len());
        let c = capabilities(Some(&sc_caps(&["CAP_KILL"], &["ALL"]))).unwrap();
        assert_eq!(c, ["CAP_KILL"]);
        let e = capabilities(Some(&sc_caps(&["CAP_BOGUS"], &[])))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config.linux.security_context.capabilities.add_capabilities[0]"),
            "{e}"
        );
    }

    #[test]
    fn privileged_gets_no_masks_and_needs_a_privileged_sandbox() {
        let sc = cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(masked_and_readonly(Some(&sc)), (vec![], vec![]));
        let (m, r) = masked_and_readonly(None);
        assert!(m.contains(&"/proc/kcore".into()) && r.contains(&"/proc/sys".into()));
        let e = check(Some(&sc), &cri::PodSandboxConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config.linux.security_context.privileged"),
            "{e}"
        );
    }

    #[test]
    fn devices_name_the_field() {
        let cfg = |host: &str, perm: &str| cri::ContainerConfig {
            devices: vec![cri::Device {
                container_path: "/dev/x".into(),
                host_path: host.into(),
                permissions: perm.into(),
            }],
            ..Default::default()
        };
        let (d, r) = devices(&cfg("/dev/null", "rw")).unwrap();
        assert_eq!(d[0]["path"], "/dev/x");
        assert_eq!(
            (d[0]["major"].as_u64(), d[0]["minor"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(r[0]["access"], "rw");
        let e = devices(&cfg("/dev/null", "rwx")).unwrap_err().to_string();
        assert!(e.starts_with("config.devices[0].permissions"), "{e}");
        let e = devices(&cfg("/etc/hostname", "")).unwrap_err().to_string();
        assert!(e.starts_with("config.devices[0].host_path"), "{e}");
        let e = devices(&cfg("/nonexistent", "")).unwrap_err().to_string();
        assert!(e.starts_with("config.devices[0].host_path"), "{e}");
    }
}
