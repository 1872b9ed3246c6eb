//! [`PodHost`] on this node: a pod directory per pod
//! (`<root>/pods/<uid>/`) holding its volumes ([`super::volume`]), its
//! /etc/hosts and each container's termination-log file, as kubelet's
//! `/var/lib/kubelet/pods`.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::config::Resolved;
use super::downward::{Allocatable, PodFacts};
use super::host::{HostError, PodHost};
use super::objects::ObjectStore;
use super::qos::{self, CgroupDriver};
use super::token::{TokenError, TokenManager};
use super::{termination, volume};

/// The node's pod directories and settings.
pub struct NodeHost {
    /// Pod dirs are `<root>/pods/<uid>`.
    pub root: PathBuf,
    /// Prefix of every pod cgroup (`--cgroup-root`).
    pub cgroup_root: String,
    pub driver: CgroupDriver,
    /// ConfigMaps and Secrets for volumes and env.
    pub objects: Arc<dyn ObjectStore>,
    /// Node allocatable (capacity less reservations and the eviction
    /// threshold): the downward API's default limits, memory emptyDirs.
    pub allocatable: Allocatable,
    /// The machine's memory in bytes (oom_score_adj is relative to it).
    pub memory_capacity: i64,
    /// The node's IPs (`status.hostIP`).
    pub host_ips: Vec<String>,
    /// Whether the node has the unified cgroup hierarchy only.
    pub cgroup_v2: bool,
    /// Service account tokens for projected volumes.
    pub tokens: Arc<TokenManager>,
}

/// A volume that could not be set up, with its causes (kubelet's
/// `MountVolume.SetUp failed for volume "x" : <why>`).
fn mount_error(e: volume::VolumeError) -> HostError {
    HostError::new(
        "FailedMount",
        format!(
            "MountVolume.SetUp failed for {}",
            crate::cri::error::chain(&e)
        ),
    )
}

/// The tokens of a pod's projected volumes could not be had: kubelet
/// reports it on the (first) volume that needs them.
fn token_error(pod: &Pod, e: TokenError) -> HostError {
    let volume = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| {
            v.projected
                .iter()
                .flat_map(|p| p.sources.iter().flatten())
                .any(|s| s.service_account_token.is_some())
        })
        .map(|v| v.name.as_str())
        .unwrap_or("");
    HostError::new(
        "FailedMount",
        format!("MountVolume.SetUp failed for volume {volume:?} : {e}"),
    )
}

/// A volume that could not be torn down, with its causes.
fn unmount_error(e: impl std::fmt::Display) -> HostError {
    HostError::new("FailedMount", e.to_string())
}

fn config_error(e: impl std::fmt::Display) -> HostError {
    HostError::new("CreateContainerConfigError", e.to_string())
}

/// The /etc/hosts kubelet writes for a pod not on the host network.
fn hosts_file(pod: &Pod, ips: &[String]) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = super::config::hostname(pod);
    for ip in ips {
        s.push_str(&format!("{ip}\t{host}\n"));
    }
    let aliases: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.host_aliases.iter().flatten())
        .collect();
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
    }
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        s.push_str(&format!("{}\t{names}\n", a.ip));
    }
    s
}

impl NodeHost {
    fn facts(&self, pod_ips: &[String]) -> PodFacts {
        PodFacts {
            pod_ips: pod_ips.to_vec(),
            host_ips: self.host_ips.clone(),
            allocatable: self.allocatable,
        }
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        volume::pod_dir(&self.root, pod.metadata.uid.as_deref().unwrap_or("unknown"))
    }
}

#[tonic::async_trait]
impl PodHost for NodeHost {
    async fn setup_pod(&self, pod: &Pod) -> Result<(), HostError> {
        let tokens = self
            .tokens
            .pod_tokens(pod)
            .await
            .map_err(|e| token_error(pod, e))?;
        volume::setup(
            &self.root,
            pod,
            &self.facts(&[]),
            self.objects.as_ref(),
            &tokens,
        )
        .map(|_| ())
        .map_err(mount_error)
    }

    async fn resolve(
        &self,
        pod: &Pod,
        c: &Container,
        _restart_count: u32,
        pod_ip: &str,
    ) -> Result<Resolved, HostError> {
        let ips: Vec<String> = if pod_ip.is_empty() {
            vec![]
        } else {
            vec![pod_ip.to_string()]
        };
        let facts = self.facts(&ips);
        let env =
            super::env::environment(pod, c, &facts, self.objects.as_ref()).map_err(config_error)?;
        let (command, args) = super::env::command_and_args(c, &env);
        let tokens = self
            .tokens
            .pod_tokens(pod)
            .await
            .map_err(|e| token_error(pod, e))?;
        let vols = volume::setup(&self.root, pod, &facts, self.objects.as_ref(), &tokens)
            .map_err(mount_error)?;
        let mut mounts = vols
            .mounts(c, Some(&env))
            .map_err(|e| config_error(crate::cri::error::chain(&e)))?;
        let dir = self.pod_dir(pod);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        std::fs::create_dir_all(&dir)
            .map_err(|e| config_error(format!("create {}: {e}", dir.display())))?;
        if !host_network && !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            let hosts = dir.join("etc-hosts");
            std::fs::write(&hosts, hosts_file(pod, &ips))
                .map_err(|e| config_error(format!("write {}: {e}", hosts.display())))?;
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if !path.is_empty() {
            let (_, m) = termination::prepare(&dir, &c.name, &path)
                .map_err(|e| config_error(format!("termination log of {}: {e}", c.name)))?;
            mounts.push(m);
        }
        let resources = qos::linux_resources(pod, c, self.memory_capacity, self.cgroup_v2);
        Ok(Resolved {
            command,
            args,
            envs: env
                .vars
                .into_iter()
                .map(|(key, value)| cri::KeyValue { key, value })
                .collect(),
            mounts,
            resources: Some(resources),
        })
    }

    async fn teardown_pod(&self, pod: &Pod) -> Result<(), HostError> {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.tokens.forget(uid);
        }
        let dir = self.pod_dir(pod);
        volume::teardown(&dir).map_err(|e| unmount_error(crate::cri::error::chain(&e)))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unmount_error(format!("remove {}: {e}", dir.display()))),
        }
    }

    async fn cgroup_parent(&self, pod: &Pod) -> Result<String, HostError> {
        let p = qos::pod_cgroup_parent(pod, self.driver);
        Ok(match self.driver {
            CgroupDriver::Cgroupfs => format!("{}{p}", self.cgroup_root.trim_end_matches('/')),
            CgroupDriver::Systemd => p,
        })
    }
}
