//! Sandbox RPCs: run, stop, remove, status, list.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::error::CriError;
use super::filter;
use super::limits;
use super::record;
use super::runtime::{Cri, State, blocking};
use crate::sandbox::{self, SandboxRecord, files, ns};

/// The name a sandbox reserves: its metadata, as the kubelet keys pods.
pub fn name_key(md: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt)
}

/// Check what RunPodSandbox needs before anything is changed.
fn validate(req: &cri::RunPodSandboxRequest) -> Result<&cri::PodSandboxConfig, CriError> {
    let config = req
        .config
        .as_ref()
        .ok_or_else(|| CriError::invalid("config", "missing"))?;
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("config.metadata", "missing"))?;
    if md.name.is_empty() {
        return Err(CriError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
    }
    if md.namespace.is_empty() {
        return Err(CriError::invalid(
            "config.metadata.namespace",
            "must not be empty",
        ));
    }
    if !req.runtime_handler.is_empty() {
        return Err(CriError::invalid(
            "runtime_handler",
            format!(
                "{:?} is not a handler of husklet (only the default, \"\")",
                req.runtime_handler
            ),
        ));
    }
    if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
        return Err(CriError::invalid(
            "config.log_directory",
            "must be an absolute path",
        ));
    }
    limits::check_labels("config.labels", &config.labels)?;
    limits::check_annotations("config.annotations", &config.annotations)?;
    check_port_mappings(&config.port_mappings)?;
    let parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or("");
    if !parent.is_empty() && (!parent.starts_with('/') || parent.split('/').any(|c| c == "..")) {
        return Err(CriError::invalid(
            "config.linux.cgroup_parent",
            "must be an absolute cgroupfs path without ..",
        ));
    }
    sandbox::check_sysctls(config).map_err(|(field, why)| CriError::invalid(field, why))?;
    Ok(config)
}

/// Ports in range and a known protocol, checked before CNI sees them (a
/// plugin would fail half-way through ADD).
fn check_port_mappings(maps: &[cri::PortMapping]) -> Result<(), CriError> {
    for (i, m) in maps.iter().enumerate() {
        let field = |f: &str| format!("config.port_mappings[{i}].{f}");
        if !(1..=65535).contains(&m.container_port) {
            return Err(CriError::invalid(
                field("container_port"),
                format!("{} is not a port (1-65535)", m.container_port),
            ));
        }
        if !(0..=65535).contains(&m.host_port) {
            return Err(CriError::invalid(
                field("host_port"),
                format!("{} is not a port (1-65535, or 0 for none)", m.host_port),
            ));
        }
        if cri::Protocol::try_from(m.protocol).is_err() {
            return Err(CriError::invalid(
                field("protocol"),
                format!("{} is not TCP (0), UDP (1) or SCTP (2)", m.protocol),
            ));
        }
        if !m.host_ip.is_empty() && m.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(CriError::invalid(
                field("host_ip"),
                format!("{:?} is not an IP address", m.host_ip),
            ));
        }
    }
    Ok(())
}

impl Cri {
    pub(crate) async fn run_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> Result<cri::RunPodSandboxResponse, CriError> {
        let config = validate(&req)?.clone();
        let md = config.metadata.clone().unwrap_or_default();
        let id = record::new_id();
        let key = name_key(&md);
        self.state().reserve("sandbox", &key, &id)?;
        let host_network = sandbox::wants_host_network(&config);
        let mut rec = SandboxRecord {
            id: id.clone(),
            created_at: record::now_ns(),
            ready: true,
            ns_dir: self.cfg.ns_dir().join(&id),
            files_dir: self.cfg.sandboxes_dir().join(&id),
            host_network,
            network: None,
            ips: vec![],
            config,
            pending: true,
        };
        let (cni, r, dir) = (self.cni.clone(), rec.clone(), self.cfg.sandboxes_dir());
        let setup = blocking("set up the sandbox", move || setup(&cni, &dir, r)).await;
        match setup {
            Ok((network, ips)) => {
                rec.network = network;
                rec.ips = ips;
                rec.pending = false;
            }
            Err(e) => {
                self.state().names.remove(&key);
                return Err(e);
            }
        }
        if let Err(e) = record::save(&self.cfg.sandboxes_dir(), &id, &rec) {
            let (cni, r, dir) = (self.cni.clone(), rec.clone(), self.cfg.sandboxes_dir());
            let _ = blocking("undo the sandbox", move || {
                teardown(&cni, &r);
                let _ = crate::image::fsutil::remove_tree(&r.files_dir);
                record::remove(&dir, &r.id)
            })
            .await;
            self.state().names.remove(&key);
            return Err(e);
        }
        tracing::info!(sandbox = %id, name = %md.name, namespace = %md.namespace, "sandbox ready");
        self.state().sandboxes.insert(id.clone(), rec);
        Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
    }

    /// The full id of the sandbox `id` names.
    pub(crate) fn sandbox_id(&self, id: &str) -> Result<String, CriError> {
        let st = self.state();
        State::resolve(&st.sandboxes, "sandbox", id).map(|s| s.id.clone())
    }

    pub(crate) async fn stop_sandbox(&self, id: &str) -> Result<(), CriError> {
        let id = self.sandbox_id(id)?;
        let _lock = self.lock(&id).await;
        self.stop_sandbox_locked(&id).await
    }

    /// Stop with the sandbox's lock held.
    async fn stop_sandbox_locked(&self, id: &str) -> Result<(), CriError> {
        let id = id.to_string();
        let members: Vec<String> = {
            let st = self.state();
            st.containers
                .values()
                .filter(|c| c.sandbox_id == id)
                .map(|c| c.id.clone())
                .collect()
        };
        for c in members {
            match self.stop(&c, 0).await {
                // Removed by a concurrent RemoveContainer since the list was taken.
                Ok(()) | Err(CriError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(rec) = self.state().sandboxes.get(&id).cloned() else {
            return Ok(());
        };
        let (cni, r) = (self.cni.clone(), rec.clone());
        blocking("tear the sandbox down", move || {
            teardown(&cni, &r);
            Ok(())
        })
        .await?;
        let mut rec = rec;
        rec.ready = false;
        rec.network = None;
        record::save(&self.cfg.sandboxes_dir(), &id, &rec)?;
        self.state().sandboxes.insert(id.clone(), rec);
        tracing::info!(sandbox = %id, "sandbox stopped");
        Ok(())
    }

    pub(crate) async fn remove_sandbox(&self, id: &str) -> Result<(), CriError> {
        let id = match self.sandbox_id(id) {
            Ok(id) => id,
            // Removed already: RemovePodSandbox is idempotent.
            Err(CriError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = self.lock(&id).await;
        if !self.state().sandboxes.contains_key(&id) {
            // Removed while we waited.
            return Ok(());
        }
        self.stop_sandbox_locked(&id).await?;
        let members: Vec<String> = {
            let st = self.state();
            st.containers
                .values()
                .filter(|c| c.sandbox_id == id)
                .map(|c| c.id.clone())
                .collect()
        };
        for c in members {
            self.remove(&c).await?;
        }
        let Some(rec) = self.state().sandboxes.get(&id).cloned() else {
            return Ok(());
        };
        let dir = rec.files_dir.clone();
        blocking(
            "remove the sandbox files",
            move || match crate::image::fsutil::remove_tree(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(CriError::io("remove the sandbox files", &dir)(e)),
            },
        )
        .await?;
        record::remove(&self.cfg.sandboxes_dir(), &id)?;
        let mut st = self.state();
        st.sandboxes.remove(&id);
        st.names.remove(&name_key(&rec.metadata()));
        drop(st);
        self.drop_lock(&id);
        tracing::info!(sandbox = %id, "sandbox removed");
        Ok(())
    }

    pub(crate) fn sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, CriError> {
        let rec = {
            let st = self.state();
            State::resolve(&st.sandboxes, "sandbox", id)?.clone()
        };
        let opts = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let mut ips = rec.ips.iter();
        let status = cri::PodSandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: sandbox_state(&rec) as i32,
            created_at: rec.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ips.next().cloned().unwrap_or_default(),
                additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(opts),
                }),
            }),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            runtime_handler: String::new(),
        };
        let mut info = HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "nsDir": rec.ns_dir,
                "filesDir": rec.files_dir,
                "hostNetwork": rec.host_network,
                "network": rec.network,
                "config": rec.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            ..Default::default()
        })
    }

    pub(crate) fn list_sandboxes(&self, f: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let st = self.state();
        let mut out: Vec<cri::PodSandbox> = st
            .sandboxes
            .values()
            .filter(|s| {
                let Some(f) = f else { return true };
                filter::id_matches(&s.id, &f.id)
                    && f.state
                        .as_ref()
                        .is_none_or(|v| v.state == sandbox_state(s) as i32)
                    && filter::labels_match(&s.config.labels, &f.label_selector)
            })
            .map(|s| cri::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: sandbox_state(s) as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        out
    }
}

fn sandbox_state(s: &SandboxRecord) -> cri::PodSandboxState {
    if s.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// Record the sandbox as pending (in `records`), pin the namespaces, add the
/// network, write the files; on failure undo what was done, the pending
/// record last. Returns the network's name and the pod IPs.
fn setup(
    cni: &crate::sandbox::net::Cni,
    records: &std::path::Path,
    mut rec: SandboxRecord,
) -> Result<(Option<String>, Vec<String>), CriError> {
    let list = match rec.host_network {
        true => None,
        false => Some(
            cni.default_network()
                .map_err(|e| CriError::internal(format!("sandbox {}: network", rec.id), e))?,
        ),
    };
    // The network's name before any side effect: a crash from here on is
    // rolled back on restart with a CNI DEL on it (see super::recover).
    rec.network = list.as_ref().map(|l| l.name.clone());
    record::save(records, &rec.id, &rec)?;
    let res = setup_pending(cni, list, &rec);
    if res.is_err() {
        let _ = record::remove(records, &rec.id);
    }
    res
}

fn setup_pending(
    cni: &crate::sandbox::net::Cni,
    list: Option<husk_cni::libcni::NetworkConfigList>,
    rec: &SandboxRecord,
) -> Result<(Option<String>, Vec<String>), CriError> {
    let cfg = &rec.config;
    let kinds = rec.pinned_kinds();
    let hostname = if rec.host_network {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        rec.hostname()
    };
    ns::pin_with(&rec.ns_dir, &kinds, &hostname, &rec.sysctls()).map_err(|e| match e {
        ns::NsError::Sysctl { key, source } => {
            CriError::invalid(format!("config.linux.sysctls[{key:?}]"), source.to_string())
        }
        e => CriError::internal(format!("sandbox {}: pin namespaces", rec.id), e),
    })?;
    let mut net = (None, vec![]);
    if let (Some(path), Some(list)) = (rec.ns_path(ns::Kind::Net), list) {
        let name = list.name.clone();
        match cni.add(list, &rec.id, &path, &cfg.port_mappings) {
            Ok(ips) => net = (Some(name), ips),
            Err(e) => {
                // ADD may have done part of its work: DEL cleans what it can.
                let _ = cni.del(&rec.id, &name, Some(&path));
                ns::unpin(&rec.ns_dir);
                return Err(CriError::internal(
                    format!("sandbox {}: network", rec.id),
                    e,
                ));
            }
        }
    }
    let written = files::write(
        &rec.files_dir,
        &hostname,
        net.1.first().map(String::as_str),
        cfg.dns_config.as_ref(),
    )
    // The log directory last: a sandbox that failed leaves nothing behind.
    .and_then(|()| match cfg.log_directory.as_str() {
        "" => Ok(()),
        d => std::fs::create_dir_all(d),
    });
    if let Err(e) = written {
        let mut r = rec.clone();
        r.network = net.0.clone();
        teardown(cni, &r);
        let _ = crate::image::fsutil::remove_tree(&rec.files_dir);
        return Err(CriError::io(
            format!("sandbox {}: write its files and log directory", rec.id),
            &rec.files_dir,
        )(e));
    }
    Ok(net)
}

/// CNI DEL (when attached) and unpin the namespaces; errors are logged, the
/// namespaces are unpinned whatever CNI says (a leaked netns is worse).
pub(super) fn teardown(cni: &crate::sandbox::net::Cni, rec: &SandboxRecord) {
    if let Some(network) = &rec.network {
        let netns = rec.ns_path(ns::Kind::Net).filter(|p| ns::is_pinned(p));
        if let Err(e) = cni.del(&rec.id, network, netns.as_deref()) {
            tracing::warn!(sandbox = %rec.id, error = %super::error::chain(&e), "CNI DEL failed");
        }
    }
    ns::unpin(&rec.ns_dir);
}
