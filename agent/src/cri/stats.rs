//! ContainerStats, PodSandboxStats and their List forms: cpu and memory from the
//! container's cgroup (through `husk_cgroups`' stats), the writable layer
//! from its overlay upper dir, a pod's network from its pinned netns.

use k8s_cri::v1 as cri;

use super::container::{ContainerRecord, Live};
use super::error::CriError;
use super::filter;
use super::runtime::{Cri, State, blocking};
use crate::image::ImageStore;

fn val(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// The first of `keys` that memory.stat has (v1's hierarchical `total_*`
/// first, then v2's names).
fn raw(s: &husk_cgroups::Stats, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| s.memory.raw.get(*k).copied())
}

/// Cpu and memory as the kubelet (cadvisor) computes them from `s`.
pub fn usage(s: &husk_cgroups::Stats, now: i64) -> (cri::CpuUsage, cri::MemoryUsage) {
    let cpu = cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: val(s.cpu.usage.total),
        usage_nano_cores: None,
    };
    let usage = s.memory.usage.usage;
    // cadvisor's working set: usage minus inactive file pages, never below 0.
    let inactive = raw(s, &["total_inactive_file", "inactive_file"]).unwrap_or(0);
    let working_set = usage.saturating_sub(inactive);
    // A limit of "unlimited" reads as a huge number on v1 (0 from the v2 reader).
    let limit = s.memory.usage.limit;
    let available = (limit > 0 && limit < (1 << 62)).then(|| limit.saturating_sub(working_set));
    let memory = cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: val(working_set),
        available_bytes: available.and_then(val),
        usage_bytes: val(usage),
        rss_bytes: raw(s, &["total_rss", "anon"]).and_then(val),
        page_faults: raw(s, &["total_pgfault", "pgfault"]).and_then(val),
        major_page_faults: raw(s, &["total_pgmajfault", "pgmajfault"]).and_then(val),
    };
    (cpu, memory)
}

/// Bytes and inodes of the container's overlay upper dir.
fn writable_layer(images: &ImageStore, id: &str, now: i64) -> Option<cri::FilesystemUsage> {
    let rootfs = images.rootfs(id).ok()?;
    let (bytes, inodes) = crate::image::fsutil::usage(&rootfs.upper);
    Some(cri::FilesystemUsage {
        timestamp: now,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: rootfs.upper.to_string_lossy().into_owned(),
        }),
        used_bytes: val(bytes),
        inodes_used: val(inodes),
    })
}

/// The stats of one container: cpu and memory only while it runs (its
/// cgroup is gone once it exits), the writable layer always.
fn stats_of(
    images: &ImageStore,
    rec: &ContainerRecord,
    cgroups_path: &str,
) -> Result<cri::ContainerStats, CriError> {
    let now = super::record::now_ns();
    let (cpu, memory) = if matches!(rec.live(), Live::Running) {
        let s = husk_cgroups::open(Some(cgroups_path), &rec.id)
            .and_then(|m| m.stats())
            .map_err(|e| {
                CriError::internal(
                    format!("read the cgroup {cgroups_path} of container {}", rec.id),
                    e,
                )
            })?;
        let (c, m) = usage(&s, now);
        (Some(c), Some(m))
    } else {
        (None, None)
    };
    Ok(cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }),
        cpu,
        memory,
        writable_layer: writable_layer(images, &rec.id, now),
        ..Default::default()
    })
}

impl Cri {
    /// Each container with its cgroups path (`<sandbox cgroup_parent>/<id>`,
    /// as CreateContainer set it), filtered.
    fn with_cgroups(
        &self,
        f: Option<&cri::ContainerStatsFilter>,
    ) -> Vec<(ContainerRecord, String)> {
        let st = self.state();
        st.containers
            .values()
            .filter(|c| {
                f.is_none_or(|f| {
                    filter::id_matches(&c.id, &f.id)
                        && filter::id_matches(&c.sandbox_id, &f.pod_sandbox_id)
                        && filter::labels_match(&c.config.labels, &f.label_selector)
                })
            })
            .filter_map(|c| {
                let sb = st.sandboxes.get(&c.sandbox_id)?;
                let path = format!("{}/{}", sb.cgroup_parent().trim_end_matches('/'), c.id);
                Some((c.clone(), path))
            })
            .collect()
    }

    pub(crate) async fn container_stats_of(
        &self,
        id: &str,
    ) -> Result<cri::ContainerStatsResponse, CriError> {
        let full = State::resolve(&self.state().containers, "container", id)?
            .id
            .clone();
        let f = cri::ContainerStatsFilter {
            id: full.clone(),
            ..Default::default()
        };
        let Some((rec, path)) = self
            .with_cgroups(Some(&f))
            .into_iter()
            .find(|(c, _)| c.id == full)
        else {
            return Err(CriError::NotFound {
                kind: "container",
                id: id.to_string(),
            });
        };
        let images = self.images.clone();
        let stats = blocking("read container stats", move || {
            stats_of(&images, &rec, &path)
        })
        .await?;
        Ok(cri::ContainerStatsResponse { stats: Some(stats) })
    }

    /// Stats of the running containers that pass `f` (CRI lists running ones only).
    pub(crate) async fn list_container_stats_of(
        &self,
        f: Option<cri::ContainerStatsFilter>,
    ) -> Result<cri::ListContainerStatsResponse, CriError> {
        let list = self.with_cgroups(f.as_ref());
        let images = self.images.clone();
        blocking("read container stats", move || {
            let mut stats = Vec::new();
            for (rec, path) in list {
                if !matches!(rec.live(), Live::Running) {
                    continue;
                }
                match stats_of(&images, &rec, &path) {
                    Ok(s) => stats.push(s),
                    // Exited between the two reads: not running any more.
                    Err(e) if !matches!(rec.live(), Live::Running) => {
                        tracing::debug!(container = %rec.id, error = %super::error::chain(&e), "stats of an exiting container");
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(cri::ListContainerStatsResponse { stats })
        })
        .await
    }
}

/// Counters of each interface but `lo` in `/proc/net/dev` text.
pub fn parse_net_dev(text: &str) -> Vec<cri::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if name == "lo" || f.len() < 11 {
                return None;
            }
            Some(cri::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: val(f[0]),
                rx_errors: val(f[2]),
                tx_bytes: val(f[8]),
                tx_errors: val(f[10]),
            })
        })
        .collect()
}

/// `/proc/net/dev` as the network namespace pinned at `netns` sees it, read
/// from a thread of its own that joins the namespace and then ends (never a
/// pool thread, which would stay in the pod's namespace).
fn read_net_dev(netns: std::path::PathBuf) -> std::io::Result<String> {
    std::thread::spawn(move || {
        let f = std::fs::File::open(&netns)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the netns reader panicked")))
}

/// The sum of the containers' cpu and memory.
fn sum(containers: &[cri::ContainerStats], now: i64) -> (cri::CpuUsage, cri::MemoryUsage) {
    let total = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> Option<u64> {
        let vals: Vec<u64> = containers.iter().filter_map(f).collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    };
    let m = |g: fn(&cri::MemoryUsage) -> &Option<cri::UInt64Value>| {
        move |c: &cri::ContainerStats| {
            c.memory
                .as_ref()
                .and_then(|m| g(m).as_ref())
                .map(|v| v.value)
        }
    };
    let cpu = cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: total(&|c| {
            c.cpu
                .as_ref()
                .and_then(|c| c.usage_core_nano_seconds.as_ref())
                .map(|v| v.value)
        })
        .and_then(val),
        usage_nano_cores: None,
    };
    let memory = cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: total(&m(|m| &m.working_set_bytes)).and_then(val),
        available_bytes: None,
        usage_bytes: total(&m(|m| &m.usage_bytes)).and_then(val),
        rss_bytes: total(&m(|m| &m.rss_bytes)).and_then(val),
        page_faults: total(&m(|m| &m.page_faults)).and_then(val),
        major_page_faults: total(&m(|m| &m.major_page_faults)).and_then(val),
    };
    (cpu, memory)
}

impl Cri {
    /// Stats of the ready sandboxes that pass `id` (or prefix) and `labels`.
    pub(crate) async fn pod_stats(
        &self,
        id: &str,
        labels: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<cri::PodSandboxStats>, CriError> {
        let pods: Vec<crate::sandbox::SandboxRecord> = self
            .state()
            .sandboxes
            .values()
            .filter(|s| {
                s.ready
                    && filter::id_matches(&s.id, id)
                    && filter::labels_match(&s.config.labels, labels)
            })
            .cloned()
            .collect();
        let mut out = Vec::new();
        for pod in pods {
            let f = cri::ContainerStatsFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            };
            let containers = self.list_container_stats_of(Some(f)).await?.stats;
            let netns = pod.ns_path(crate::sandbox::ns::Kind::Net);
            let pod_id = pod.id.clone();
            let network = blocking("read the pod's network counters", move || {
                let now = super::record::now_ns();
                let Some(netns) = netns else {
                    return Ok(None);
                };
                let text = read_net_dev(netns.clone()).map_err(CriError::io(
                    format!("read /proc/net/dev of sandbox {pod_id}"),
                    &netns,
                ))?;
                let interfaces = parse_net_dev(&text);
                Ok(Some(cri::NetworkUsage {
                    timestamp: now,
                    default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
                    interfaces,
                }))
            })
            .await?;
            let now = super::record::now_ns();
            let (cpu, memory) = sum(&containers, now);
            out.push(cri::PodSandboxStats {
                attributes: Some(cri::PodSandboxAttributes {
                    id: pod.id.clone(),
                    metadata: Some(pod.metadata()),
                    labels: pod.config.labels.clone(),
                    annotations: pod.config.annotations.clone(),
                }),
                linux: Some(cri::LinuxPodSandboxStats {
                    cpu: Some(cpu),
                    memory: Some(memory),
                    network,
                    process: None,
                    containers,
                }),
                windows: None,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_is_usage_minus_inactive_file() {
        let mut s = husk_cgroups::Stats::default();
        s.memory.usage.usage = 100 << 20;
        s.memory.usage.limit = 9_223_372_036_854_771_712; // v1's "unlimited"
        s.memory.raw.insert("total_inactive_file".into(), 30 << 20);
        s.memory.raw.insert("total_rss".into(), 50 << 20);
        s.cpu.usage.total = 42;
        let (cpu, m) = usage(&s, 1);
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 42);
        assert_eq!(m.working_set_bytes.unwrap().value, 70 << 20);
        assert_eq!(m.rss_bytes.unwrap().value, 50 << 20);
        assert!(m.available_bytes.is_none() && m.page_faults.is_none());
        s.memory.usage.limit = 80 << 20;
        s.memory.raw.insert("total_inactive_file".into(), 200 << 20);
        let (_, m) = usage(&s, 1);
        assert_eq!(m.working_set_bytes.unwrap().value, 0);
        assert_eq!(m.available_bytes.unwrap().value, 80 << 20);
    }

    #[test]
    fn net_dev_skips_lo() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth0: 100 2 3 0 0 0 0 0 200 4 5 0 0 0 0 0\n";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "eth0");
        assert_eq!(
            (v[0].rx_bytes.unwrap().value, v[0].rx_errors.unwrap().value),
            (100, 3)
        );
        assert_eq!(
            (v[0].tx_bytes.unwrap().value, v[0].tx_errors.unwrap().value),
            (200, 5)
        );
    }
}
