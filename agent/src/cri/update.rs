//! UpdateContainerResources: new cpu, memory, hugepage and unified limits
//! for a container, applied with `husk update` while it is created or
//! running, and kept in its record either way (ContainerStatus reports
//! them, and so would a restart).

use std::process::Stdio;

use k8s_cri::v1 as cri;
use tokio::io::AsyncWriteExt;

use super::container::Live;
use super::error::CriError;
use super::record;
use super::resources;
use super::runtime::Cri;

/// `new` over `old`: a zero (unset) field of the request leaves the current
/// value, as the runtime's update does. oom_score_adj is kept: it cannot
/// change for a running process tree.
fn merge(
    old: &cri::LinuxContainerResources,
    new: &cri::LinuxContainerResources,
) -> cri::LinuxContainerResources {
    let pick = |n: i64, o: i64| if n != 0 { n } else { o };
    let text = |n: &String, o: &String| if n.is_empty() { o.clone() } else { n.clone() };
    let mut unified = old.unified.clone();
    unified.extend(new.unified.clone());
    cri::LinuxContainerResources {
        cpu_period: pick(new.cpu_period, old.cpu_period),
        cpu_quota: pick(new.cpu_quota, old.cpu_quota),
        cpu_shares: pick(new.cpu_shares, old.cpu_shares),
        memory_limit_in_bytes: pick(new.memory_limit_in_bytes, old.memory_limit_in_bytes),
        memory_swap_limit_in_bytes: pick(
            new.memory_swap_limit_in_bytes,
            old.memory_swap_limit_in_bytes,
        ),
        oom_score_adj: old.oom_score_adj,
        cpuset_cpus: text(&new.cpuset_cpus, &old.cpuset_cpus),
        cpuset_mems: text(&new.cpuset_mems, &old.cpuset_mems),
        hugepage_limits: if new.hugepage_limits.is_empty() {
            old.hugepage_limits.clone()
        } else {
            new.hugepage_limits.clone()
        },
        unified,
    }
}

impl Cri {
    pub(crate) async fn update_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> Result<(), CriError> {
        if req.windows.is_some() {
            return Err(CriError::invalid(
                "windows",
                "Windows resources on a Linux node",
            ));
        }
        let new = req
            .linux
            .ok_or_else(|| CriError::invalid("linux", "missing"))?;
        // Checked before anything is touched.
        let doc = resources::oci("linux", &new)?;
        resources::check_node("linux", &new)?;
        let full = self.container(&req.container_id)?.id;
        let _lock = self.lock(&full).await;
        let mut rec = self.container(&full)?;
        let old = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .unwrap_or_default();
        // Not launched yet: StartContainer builds the spec from the record.
        if rec.launched && matches!(rec.live(), Live::Created | Live::Running) {
            let json = serde_json::to_vec(&doc)
                .map_err(|e| CriError::internal("encode the resources", e))?;
            self.husk_update(&rec.id, &json).await?;
        }
        let merged = merge(&old, &new);
        rec.config.linux.get_or_insert_default().resources = Some(merged);
        record::save(&self.cfg.containers_dir(), &rec.id, &rec)?;
        self.state().containers.insert(rec.id.clone(), rec);
        tracing::info!(container = %full, "resources updated");
        Ok(())
    }

    /// `husk update --resources - <id>` with `json` on stdin.
    async fn husk_update(&self, id: &str, json: &[u8]) -> Result<(), CriError> {
        let mut child = tokio::process::Command::new(&self.cfg.runtime)
            .arg("--root")
            .arg(self.cfg.runtime_root())
            .args(["update", "--resources", "-", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CriError::internal(format!("container {id}: run husk update"), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(json)
                .await
                .map_err(|e| CriError::internal(format!("container {id}: husk update stdin"), e))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| CriError::internal(format!("container {id}: wait for husk update"), e))?;
        if !out.status.success() {
            return Err(CriError::internal(
                format!("container {id}: husk update"),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_keep_the_current_value() {
        let old = cri::LinuxContainerResources {
            cpu_shares: 256,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 500,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let new = cri::LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            oom_score_adj: -1000,
            ..Default::default()
        };
        let m = merge(&old, &new);
        assert_eq!(m.memory_limit_in_bytes, 128 << 20);
        assert_eq!((m.cpu_shares, m.oom_score_adj), (256, 500));
        assert_eq!(m.cpuset_cpus, "0");
    }
}
