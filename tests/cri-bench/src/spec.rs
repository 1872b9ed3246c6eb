//! The pod and container configs cri-bench sends: unique names and uids per
//! run, a run label that cleanup sweeps by, kubelet-like security defaults.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

/// Label carried by every sandbox and container cri-bench creates.
pub const RUN_LABEL: &str = "io.husk.cri-bench/run";
/// Kubernetes namespace of the pods.
pub const NAMESPACE: &str = "cri-bench";

/// What every pod of a run shares.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    pub run_id: String,
    pub mode: String,
    pub image: String,
    pub command: Vec<String>,
    pub cgroup_parent: String,
}

/// A run id: `crib-` and 8 hex digits from the kernel's random pool.
pub fn new_run_id() -> String {
    let mut buf = [0u8; 4];
    // getrandom(2) cannot fail for 4 bytes once the pool is initialised;
    // fall back to time and pid if it does.
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let v = if n == 4 {
        u32::from_ne_bytes(buf)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        t ^ std::process::id()
    };
    format!("crib-{v:08x}")
}

fn labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())])
}

impl PodTemplate {
    /// The config of pod number `index` of this run.
    pub fn sandbox(&self, index: usize) -> cri::PodSandboxConfig {
        let name = format!("{}-{}-{index}", self.run_id, self.mode);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("{}-{}-uid-{index}", self.run_id, self.mode),
                namespace: NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: name,
            labels: labels(&self.run_id),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The config of the one container of a pod.
    pub fn container(&self) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "bench".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            labels: labels(&self.run_id),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    seccomp: Some(unconfined()),
                    no_new_privs: false,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// Kubelet's defaults: pod network and IPC, a pid namespace per container.
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Kubelet's default when the pod does not ask for a seccomp profile.
fn unconfined() -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplate {
        PodTemplate {
            run_id: "crib-0000abcd".into(),
            mode: "lifecycle".into(),
            image: "docker.io/husk/busybox:latest".into(),
            command: vec!["sleep".into(), "3600".into()],
            cgroup_parent: "/husk-test-x/pods".into(),
        }
    }

    #[test]
    fn pods_get_unique_names_and_uids_and_the_run_label() {
        let t = template();
        let a = t.sandbox(0);
        let b = t.sandbox(1);
        let (ma, mb) = (a.metadata.unwrap(), b.metadata.unwrap());
        assert_ne!(ma.name, mb.name);
        assert_ne!(ma.uid, mb.uid);
        assert_eq!(a.labels[RUN_LABEL], "crib-0000abcd");
        assert_eq!(a.linux.unwrap().cgroup_parent, "/husk-test-x/pods");
        assert_eq!(t.container().labels[RUN_LABEL], "crib-0000abcd");
    }

    #[test]
    fn run_ids_differ() {
        assert_ne!(new_run_id(), new_run_id());
    }
}
