//! The seams to the modules other parts of husk provide: cgroups, hooks and
//! seccomp. Every call into them goes through here, so errors get the same
//! shape (a message naming what failed) in the lifecycle code.

use oci_spec::runtime::{Hook, LinuxResources, LinuxSeccomp, Spec};

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

/// Run hooks of one kind with the container's state on their stdin.
pub fn run_hooks(point: HookPoint, hooks: &[Hook], state_json: &[u8]) -> Result<(), String> {
    if hooks.is_empty() {
        return Ok(());
    }
    crate::hooks::run(point, hooks, state_json).map_err(|e| format!("{point} hook: {e}"))
}

/// Check hooks, seccomp and resources before anything is created.
pub fn validate(spec: &Spec, cgroup: Option<&Cgroup>) -> Result<(), String> {
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
            crate::hooks::validate(point, hooks).map_err(|e| format!("config.json: hooks: {e}"))?;
        }
    }
    let linux = spec.linux().as_ref();
    if let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) {
        crate::seccomp::validate(s).map_err(|e| format!("config.json: linux.seccomp: {e}"))?;
    }
    if let Some(cg) = cgroup {
        // With the device policy set_resources will apply, so a host that
        // cannot enforce it (no devices controller) is refused up front.
        let r = devices::container_resources(linux.and_then(|l| l.resources().as_ref()));
        cg.validate(&r)
            .map_err(|e| format!("config.json: linux.resources: {e}"))?;
    }
    Ok(())
}

/// Load a seccomp filter into the calling process.
pub fn apply_seccomp(seccomp: &LinuxSeccomp) -> Result<(), String> {
    crate::seccomp::apply(seccomp).map_err(|e| format!("seccomp: {e}"))
}

/// A container's cgroup.
pub type Cgroup = Box<dyn crate::cgroups::CgroupManager>;

/// Resolve a container's cgroup (creates nothing). Every container gets one,
/// as with runc: without a cgroupsPath, runc's default path for the id.
pub fn open_cgroup(path: Option<&str>, id: &str) -> Result<Option<Cgroup>, String> {
    // The error names its field (linux.cgroupsPath) or the layout problem itself.
    crate::cgroups::open(path, id)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Adapters returning string errors.
pub trait CgroupExt {
    /// Move the container's first process in and put its device policy in
    /// place at once (deny-all plus runc's defaults): the container is
    /// default-deny even when the spec has no resources and
    /// [`CgroupExt::set_resources`] is never called.
    fn apply_pid(&self, pid: i32) -> Result<(), String>;
    /// Set the spec's resources, with its device rules inside the whole
    /// container policy ([`devices::container_resources`]).
    fn set_resources(&self, r: &LinuxResources) -> Result<(), String>;
    fn list_pids(&self) -> Result<Vec<i32>, String>;
    fn freeze_all(&self) -> Result<(), String>;
    fn thaw_all(&self) -> Result<(), String>;
    fn remove(&self) -> Result<(), String>;
}

impl CgroupExt for Cgroup {
    fn apply_pid(&self, pid: i32) -> Result<(), String> {
        self.apply(pid).map_err(|e| e.to_string())?;
        self.set(&devices::container_resources(None))
            .map_err(|e| e.to_string())
    }
    fn set_resources(&self, r: &LinuxResources) -> Result<(), String> {
        self.set(&devices::container_resources(Some(r)))
            .map_err(|e| e.to_string())
    }
    fn list_pids(&self) -> Result<Vec<i32>, String> {
        self.pids().map_err(|e| e.to_string())
    }
    fn freeze_all(&self) -> Result<(), String> {
        self.freeze().map_err(|e| e.to_string())
    }
    fn thaw_all(&self) -> Result<(), String> {
        self.thaw().map_err(|e| e.to_string())
    }
    fn remove(&self) -> Result<(), String> {
        self.destroy().map_err(|e| e.to_string())
    }
}
