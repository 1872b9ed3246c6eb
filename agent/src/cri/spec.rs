//! The OCI runtime spec (config.json) of a CRI container: the image config
//! merged with the CRI config, joining the sandbox's pinned namespaces.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::error::CriError;
use super::{resources, seccomp, security};
use crate::image::RunConfig;
use crate::sandbox::{SandboxRecord, files, ns};

/// What a container's spec is made of.
pub struct Inputs<'a> {
    pub id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub image: &'a RunConfig,
    pub sandbox: &'a SandboxRecord,
    /// Where the overlay rootfs is mounted (at start).
    pub rootfs: &'a Path,
    /// The image's `/etc/passwd` and `/etc/group`.
    pub accounts: &'a Accounts,
    /// The pid namespace of the container a TARGET pid mode names.
    pub target_pid_ns: Option<PathBuf>,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process args: CRI command/args over the image's Entrypoint/Cmd, as
/// Kubernetes defines it.
pub fn args(config: &cri::ContainerConfig, image: &RunConfig) -> Vec<String> {
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let cmd = image.cmd.clone().unwrap_or_default();
    match (config.command.is_empty(), config.args.is_empty()) {
        (false, _) => config.command.iter().chain(&config.args).cloned().collect(),
        (true, false) => entrypoint.into_iter().chain(config.args.clone()).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    }
}

/// The environment: the image's, then the CRI's (a CRI key replaces the image's).
pub fn env(config: &cri::ContainerConfig, image: &RunConfig) -> Vec<String> {
    let mut out: Vec<String> = image.env.clone().unwrap_or_default();
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.into());
    }
    for kv in &config.envs {
        let prefix = format!("{}=", kv.key);
        out.retain(|e| !e.starts_with(&prefix));
        out.push(format!("{}={}", kv.key, kv.value));
    }
    out
}

/// The image's user and group databases (empty when it has none).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub passwd: String,
    pub group: String,
}

impl Accounts {
    /// Read from the image's layers (no rootfs needed).
    pub fn of_image(store: &crate::image::ImageStore, image: &str) -> Result<Self, CriError> {
        let read = |p: &str| -> Result<String, CriError> {
            Ok(store
                .image_file(image, p)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default())
        };
        Ok(Accounts {
            passwd: read("/etc/passwd")?,
            group: read("/etc/group")?,
        })
    }
}

/// uid, gid and additional gids of the process.
fn user(
    accounts: &Accounts,
    image_user: Option<&str>,
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Result<(u32, u32, Vec<u32>), CriError> {
    let (passwd, group) = (&accounts.passwd, &accounts.group);
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        file.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                let id = f[2].parse().ok()?;
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some((id, gid))
            })?
        })
    };
    let by_uid = |uid: u32| -> u32 {
        passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
            })
            .unwrap_or(0)
    };
    let resolve = |spec: &str, field: &str| -> Result<(u32, u32), CriError> {
        let (u, g) = spec
            .split_once(':')
            .map_or((spec, None), |(u, g)| (u, Some(g)));
        let (uid, mut gid) = match u.parse::<u32>() {
            Ok(uid) => (uid, by_uid(uid)),
            Err(_) => lookup(passwd, u).ok_or_else(|| {
                CriError::invalid(
                    field,
                    format!("user {u:?} is not in the image's /etc/passwd"),
                )
            })?,
        };
        if let Some(g) = g {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => lookup(group, g).map(|(gid, _)| gid).ok_or_else(|| {
                    CriError::invalid(
                        field,
                        format!("group {g:?} is not in the image's /etc/group"),
                    )
                })?,
            };
        }
        Ok((uid, gid))
    };
    let (mut uid, mut gid) = match image_user.filter(|u| !u.is_empty()) {
        Some(u) => resolve(u, "image config User")?,
        None => (0, 0),
    };
    let mut extra = vec![];
    if let Some(sc) = sc {
        if !sc.run_as_username.is_empty() {
            (uid, gid) = resolve(
                &sc.run_as_username,
                "config.linux.security_context.run_as_username",
            )?;
        }
        if let Some(u) = &sc.run_as_user {
            let v = u32::try_from(u.value).map_err(|_| {
                CriError::invalid("config.linux.security_context.run_as_user", "out of range")
            })?;
            uid = v;
            gid = by_uid(v);
        }
        if let Some(g) = &sc.run_as_group {
            gid = u32::try_from(g.value).map_err(|_| {
                CriError::invalid("config.linux.security_context.run_as_group", "out of range")
            })?;
        }
        for (i, g) in sc.supplemental_groups.iter().enumerate() {
            extra.push(u32::try_from(*g).map_err(|_| {
                CriError::invalid(
                    format!("config.linux.security_context.supplemental_groups[{i}]"),
                    "out of range",
                )
            })?);
        }
    }
    Ok((uid, gid, extra))
}

fn mounts(inputs: &Inputs, privileged: bool) -> Vec<Value> {
    let c = inputs.config;
    let sys_mode = if privileged { "rw" } else { "ro" };
    let taken = |dst: &str| c.mounts.iter().any(|m| m.container_path == dst);
    let mut out = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode]}),
    ];
    if !taken("/dev/shm") {
        out.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}));
    }
    for (dst, name) in [
        ("/etc/hostname", files::HOSTNAME),
        ("/etc/hosts", files::HOSTS),
        ("/etc/resolv.conf", files::RESOLV),
    ] {
        if !taken(dst) {
            let src = inputs.sandbox.files_dir.join(name);
            out.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate", "rw"]}));
        }
    }
    for m in &c.mounts {
        let propagation = match cri::MountPropagation::try_from(m.propagation) {
            Ok(cri::MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(cri::MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        let rw = if m.readonly { "ro" } else { "rw" };
        out.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": ["rbind", propagation, rw],
        }));
    }
    out
}

/// Our own oom_score_adj: a container may not ask for less (see TESTING.md:
/// lowering it needs CAP_SYS_RESOURCE, which the host may lack).
fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The container's config.json.
pub fn build(inputs: &Inputs) -> Result<Value, CriError> {
    let c = inputs.config;
    let sc = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let args = args(c, inputs.image);
    if args.is_empty() {
        return Err(CriError::invalid(
            "config.command",
            "empty, and the image has no Entrypoint or Cmd",
        ));
    }
    let (uid, gid, extra) = user(inputs.accounts, inputs.image.user.as_deref(), sc)?;
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        inputs
            .image
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    security::check(sc, &inputs.sandbox.config)?;
    let privileged = sc.is_some_and(|s| s.privileged);
    let caps = security::capabilities(sc)?;
    let namespaces = namespaces(inputs, sc)?;
    let parent = inputs.sandbox.cgroup_parent();
    let parent = if parent.is_empty() {
        "/husk".to_string()
    } else {
        parent
    };
    let cgroups_path = format!("{}/{}", parent.trim_end_matches('/'), inputs.id);
    let (devices, device_rules) = security::devices(c)?;
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    rules.extend(device_rules);
    let mut resources = serde_json::Map::new();
    let mut oom_score_adj = None;
    if let Some(r) = c.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        resources = resources::oci("config.linux.resources", r)?;
        resources::check_node("config.linux.resources", r)?;
        if r.oom_score_adj != 0 {
            let own = own_oom_score_adj();
            if r.oom_score_adj < own {
                tracing::warn!(container = %inputs.id, asked = r.oom_score_adj, own,
                    "oom_score_adj raised to husklet's own (lowering it needs CAP_SYS_RESOURCE)");
            }
            oom_score_adj = Some(r.oom_score_adj.max(own));
        }
    }
    resources.insert("devices".into(), rules.into());
    // Privileged containers are unconfined unless a profile is asked for
    // explicitly, as containerd.
    let choice = seccomp::choose(sc)?;
    let seccomp = seccomp::profile(&choice, &caps)?;
    let (masked, readonly) = security::masked_and_readonly(sc);
    let mut annotations: serde_json::Map<String, Value> = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    annotations.insert(
        "io.kubernetes.cri.sandbox-id".into(),
        inputs.sandbox.id.clone().into(),
    );
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra},
        "args": args,
        "env": env(c, inputs.image),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.is_some_and(|s| s.no_new_privs),
    });
    if let Some(adj) = oom_score_adj {
        process["oomScoreAdj"] = adj.into();
    }
    let mut linux = json!({
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces,
        "resources": resources,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "devices": devices,
    });
    if let Some(p) = seccomp {
        linux["seccomp"] = p;
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inputs.rootfs, "readonly": sc.is_some_and(|s| s.readonly_rootfs)},
        "hostname": inputs.sandbox.hostname(),
        "mounts": mounts(inputs, privileged),
        "annotations": annotations,
        "linux": linux,
    }))
}

/// The container's namespaces: its own mount and cgroup namespaces; net,
/// ipc and uts of the sandbox (none when the node's); pid by the
/// container's own mode (POD: the sandbox's pinned one, NODE: the host's,
/// TARGET: another container's, CONTAINER or unset: a new one).
fn namespaces(
    inputs: &Inputs,
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Result<Vec<Value>, CriError> {
    let mut out = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    for (kind, oci) in [
        (ns::Kind::Net, "network"),
        (ns::Kind::Ipc, "ipc"),
        (ns::Kind::Uts, "uts"),
    ] {
        if let Some(p) = inputs.sandbox.ns_path(kind) {
            out.push(json!({"type": oci, "path": p}));
        }
    }
    let pid_mode = sc
        .and_then(|s| s.namespace_options.as_ref())
        .map(|n| cri::NamespaceMode::try_from(n.pid))
        .unwrap_or(Ok(cri::NamespaceMode::Container));
    match pid_mode {
        Ok(cri::NamespaceMode::Node) => {}
        Ok(cri::NamespaceMode::Target) => {
            let p = inputs.target_pid_ns.as_ref().ok_or_else(|| {
                CriError::invalid(
                    "config.linux.security_context.namespace_options.target_id",
                    "names no running container",
                )
            })?;
            out.push(json!({"type": "pid", "path": p}));
        }
        Ok(cri::NamespaceMode::Pod) => match inputs.sandbox.ns_path(ns::Kind::Pid) {
            Some(p) if ns::is_pinned(&p) => out.push(json!({"type": "pid", "path": p})),
            // The sandbox shares no pid namespace: the container gets its own.
            _ => out.push(json!({"type": "pid"})),
        },
        Ok(cri::NamespaceMode::Container) => out.push(json!({"type": "pid"})),
        Err(_) => {
            return Err(CriError::invalid(
                "config.linux.security_context.namespace_options.pid",
                "unknown namespace mode",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ep: &[&str], cmd: &[&str]) -> RunConfig {
        RunConfig {
            entrypoint: Some(ep.iter().map(|s| s.to_string()).collect()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(&["/ep"], &["c1"]);
        let mut c = cri::ContainerConfig::default();
        assert_eq!(args(&c, &img), ["/ep", "c1"]);
        c.args = vec!["a1".into()];
        assert_eq!(args(&c, &img), ["/ep", "a1"]);
        c.command = vec!["/cmd".into()];
        assert_eq!(args(&c, &img), ["/cmd", "a1"]);
    }

    #[test]
    fn cri_env_replaces_the_image_env() {
        let img = image(&[], &[]);
        let c = cri::ContainerConfig {
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "cri".into(),
            }],
            ..Default::default()
        };
        assert_eq!(env(&c, &img), ["PATH=/bin", "A=cri"]);
    }

    #[test]
    fn users_resolve_by_name_in_the_image() {
        let a = Accounts {
            passwd: "root:x:0:0::/:/bin/sh\nwww:x:33:34::/:/bin/sh\n".into(),
            group: "root:x:0:\nweb:x:50:\n".into(),
        };
        assert_eq!(user(&a, Some("www"), None).unwrap(), (33, 34, vec![]));
        assert_eq!(user(&a, Some("www:web"), None).unwrap(), (33, 50, vec![]));
        assert_eq!(user(&a, Some("1000"), None).unwrap(), (1000, 0, vec![]));
        let e = user(&a, Some("nobody"), None).unwrap_err().to_string();
        assert!(e.contains("nobody"), "{e}");
    }
}
