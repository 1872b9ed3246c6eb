//! Which pid namespace a new container joins besides its own: the pod's
//! shared one (pinned from the first container that shares it, re-pinned
//! once that init is gone) or another container's (TARGET, for ephemeral
//! containers).

use std::path::PathBuf;

use husk_shim::layout;
use k8s_cri::v1 as cri;

use super::container::Live;
use super::error::CriError;
use super::runtime::Cri;

impl Cri {
    /// Whether `config` shares its pod's pid namespace and must pin it
    /// (true: none is pinned, or its init container is gone and the stale
    /// pin was removed; false: the container joins the pinned one, or does
    /// not share).
    pub(crate) fn pod_pid_ns(
        &self,
        config: &cri::ContainerConfig,
        sandbox: &crate::sandbox::SandboxRecord,
    ) -> bool {
        use crate::sandbox::ns;
        let wants = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.pid == cri::NamespaceMode::Pod as i32);
        let Some(pin) = sandbox.ns_path(ns::Kind::Pid).filter(|_| wants) else {
            return false;
        };
        let init = std::fs::read_to_string(sandbox.ns_dir.join(ns::PID_INIT)).unwrap_or_default();
        let alive = ns::is_pinned(&pin)
            && self
                .container(init.trim())
                .is_ok_and(|c| matches!(c.live(), Live::Created | Live::Running));
        if !alive {
            ns::unpin_pid(&sandbox.ns_dir);
        }
        !alive
    }

    /// The pid namespace of the container a TARGET pid mode names (None
    /// for other modes).
    pub(crate) fn target_pid_ns(
        &self,
        config: &cri::ContainerConfig,
    ) -> Result<Option<PathBuf>, CriError> {
        let Some(n) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .filter(|n| n.pid == cri::NamespaceMode::Target as i32)
        else {
            return Ok(None);
        };
        const FIELD: &str = "config.linux.security_context.namespace_options.target_id";
        let target = self
            .container(&n.target_id)
            .map_err(|_| CriError::invalid(FIELD, format!("no container {:?}", n.target_id)))?;
        if !matches!(target.live(), Live::Running) {
            return Err(CriError::invalid(
                FIELD,
                format!("container {} is not running", target.id),
            ));
        }
        let pid = std::fs::read_to_string(target.shim_dir.join(layout::PID))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .ok_or_else(|| {
                CriError::invalid(FIELD, format!("container {} has no pid", target.id))
            })?;
        Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))))
    }
}
