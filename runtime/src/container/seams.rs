//! The seams to the modules other parts of husk provide: cgroups, hooks and
//! seccomp. Every call into them goes through here: typed errors for the
//! runtime, text for the cloned processes that report over the channel.

use oci_spec::runtime::{Hook, LinuxResources, LinuxSeccomp, Spec};

use super::ContainerError;
pub use crate::cgroups::CgroupError;
use crate::seccomp::SeccompProgram;

pub use crate::hooks::HookKind as HookPoint;

use crate::cgroups::devices;

/// The hooks of one kind from a spec.
pub fn hooks_of(spec: &Spec, point: HookPoint) -> &[Hook] {
    let Some(h) = spec.hooks() else { return &[] };
    let list = match point {
        #[allow(deprecated)]
        HookPoint::Prestart => h.prestart(),
        HookPoint::CreateRuntime => h.create_runtime(),
        HookPoint::CreateContainer => h.create_container(),
        HookPoint::StartContainer => h.start_container(),
        HookPoint::Poststart => h.poststart(),
        HookPoint::Poststop => h.poststop(),
    };
    list.as_deref().unwrap_or(&[])
}

/// Run hooks of one kind with the container's state on their stdin, from a
/// process that reports to the runtime over the channel (text).
pub fn run_hooks(point: HookPoint, hooks: &[Hook], state_json: &[u8]) -> Result<(), String> {
    run_runtime_hooks(point, hooks, state_json).map_err(|e| super::error_chain(&e))
}

/// Run hooks of one kind in the runtime itself (typed error).
pub fn run_runtime_hooks(
    point: HookPoint,
    hooks: &[Hook],
    state_json: &[u8],
) -> Result<(), crate::hooks::HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    if !point.failure_is_fatal() {
        // poststart/poststop: each failure is a warning and the rest still run.
        for e in crate::hooks::run_all(point, hooks, state_json) {
            crate::logging::warn(&format!("{point} hook: {}", super::error_chain(&e)));
        }
        return Ok(());
    }
    crate::hooks::run(point, hooks, state_json)
}

/// Check hooks, seccomp and resources before anything is created; returns
/// the compiled seccomp filter (compiled here once, before the clone: the
/// init only loads it).
pub fn validate(
    spec: &Spec,
    cgroup: Option<&Cgroup>,
) -> Result<Option<SeccompProgram>, ContainerError> {
    for point in [
        HookPoint::Prestart,
        HookPoint::CreateRuntime,
        HookPoint::CreateContainer,
        HookPoint::StartContainer,
        HookPoint::Poststart,
        HookPoint::Poststop,
    ] {
        let hooks = hooks_of(spec, point);
        if !hooks.is_empty() {
            crate::hooks::validate(point, hooks).map_err(ContainerError::InvalidHooks)?;
        }
    }
    let linux = spec.linux().as_ref();
    if let Some(cg) = cgroup {
        // With the device policy set_resources will apply, so a host that
        // cannot enforce it (no devices controller) is refused up front.
        let r = devices::container_resources(linux.and_then(|l| l.resources().as_ref()));
        cg.validate(&r).map_err(ContainerError::InvalidResources)?;
    }
    compile_seccomp(linux.and_then(|l| l.seccomp().as_ref()))
}

/// Compile `linux.seccomp` (validating it), for the process to load before exec.
pub fn compile_seccomp(
    seccomp: Option<&LinuxSeccomp>,
) -> Result<Option<SeccompProgram>, ContainerError> {
    seccomp
        .map(crate::seccomp::compile)
        .transpose()
        .map_err(ContainerError::InvalidSeccomp)
}

/// A container's cgroup.
pub type Cgroup = Box<dyn crate::cgroups::CgroupManager>;

/// Resolve a container's cgroup (creates nothing). Every container gets one,
/// as with runc: without a cgroupsPath, runc's default path for the id.
pub fn open_cgroup(path: Option<&str>, id: &str) -> Result<Option<Cgroup>, CgroupError> {
    // The error names its field (linux.cgroupsPath) or the layout problem itself.
    crate::cgroups::open(path, id).map(Some)
}

/// The lifecycle's names for the cgroup operations.
pub trait CgroupExt {
    /// Move the container's first process in and put its device policy in
    /// place at once (deny-all plus runc's defaults): the container is
    /// default-deny even when the spec has no resources and
    /// [`CgroupExt::set_resources`] is never called.
    fn apply_pid(&self, pid: i32) -> Result<(), CgroupError>;
    /// [`CgroupExt::apply_pid`] for a first process created in the cgroup
    /// (CLONE_INTO_CGROUP): the device policy only.
    fn set_device_policy(&self) -> Result<(), CgroupError>;
    /// Set the spec's resources, with its device rules inside the whole
    /// container policy ([`devices::container_resources`]).
    fn set_resources(&self, r: &LinuxResources) -> Result<(), CgroupError>;
    fn list_pids(&self) -> Result<Vec<i32>, CgroupError>;
    fn freeze_all(&self) -> Result<(), CgroupError>;
    fn thaw_all(&self) -> Result<(), CgroupError>;
    fn remove(&self) -> Result<(), CgroupError>;
}

impl CgroupExt for Cgroup {
    fn apply_pid(&self, pid: i32) -> Result<(), CgroupError> {
        self.apply(pid)?;
        self.set_device_policy()
    }
    fn set_device_policy(&self) -> Result<(), CgroupError> {
        self.set(&devices::container_resources(None))
    }
    fn set_resources(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.set(&devices::container_resources(Some(r)))
    }
    fn list_pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.pids()
    }
    fn freeze_all(&self) -> Result<(), CgroupError> {
        self.freeze()
    }
    fn thaw_all(&self) -> Result<(), CgroupError> {
        self.thaw()
    }
    fn remove(&self) -> Result<(), CgroupError> {
        self.destroy()
    }
}
