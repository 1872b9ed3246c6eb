//! ContainerStats and ListContainerStats: cpu and memory from the
//! container's cgroup (through `husk_cgroups`' stats), the writable layer
//! from its overlay upper dir.

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
