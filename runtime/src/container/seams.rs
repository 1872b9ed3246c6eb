//! The seams to the modules other parts of husk provide: cgroups, hooks and
//! seccomp. Every call into them goes through here, so errors get the same
//! shape (a message naming what failed) in the lifecycle code.

use oci_spec::runtime::{Hook, LinuxResources, LinuxSeccomp, Spec};

use crate::seccomp::SeccompProgram;

pub use crate::hooks::HookKind as HookPoint;

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
    if !point.failure_is_fatal() {
        // poststart/poststop: each failure is a warning and the rest still run.
        for e in crate::hooks::run_all(point, hooks, state_json) {
            crate::logging::warn(&format!("{point} hook: {e}"));
        }
        return Ok(());
    }
    crate::hooks::run(point, hooks, state_json).map_err(|e| format!("{point} hook: {e}"))
}

/// Check hooks, seccomp and resources before anything is created; returns
/// the compiled seccomp filter (compiled here once, before the clone: the
/// init only loads it).
pub fn validate(spec: &Spec, cgroup: Option<&Cgroup>) -> Result<Option<SeccompProgram>, String> {
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
    if let (Some(cg), Some(r)) = (cgroup, linux.and_then(|l| l.resources().as_ref())) {
        cg.validate(r)
            .map_err(|e| format!("config.json: linux.resources: {e}"))?;
    }
    compile_seccomp(linux.and_then(|l| l.seccomp().as_ref()))
}

/// Compile `linux.seccomp` (validating it), for the process to load before exec.
pub fn compile_seccomp(seccomp: Option<&LinuxSeccomp>) -> Result<Option<SeccompProgram>, String> {
    seccomp
        .map(crate::seccomp::compile)
        .transpose()
        .map_err(|e| format!("config.json: linux.seccomp: {e}"))
}

/// A container's cgroup.
pub type Cgroup = Box<dyn crate::cgroups::CgroupManager>;

/// Resolve a container's cgroup (creates nothing). Every container gets one,
/// as with runc: without a cgroupsPath, runc's default path for the id.
pub fn open_cgroup(path: Option<&str>, id: &str) -> Result<Option<Cgroup>, String> {
    crate::cgroups::open(path, id)
        .map(Some)
        .map_err(|e| format!("linux.cgroupsPath: {e}"))
}

/// Adapters returning string errors.
pub trait CgroupExt {
    fn apply_pid(&self, pid: i32) -> Result<(), String>;
    fn set_resources(&self, r: &LinuxResources) -> Result<(), String>;
    fn list_pids(&self) -> Result<Vec<i32>, String>;
    fn freeze_all(&self) -> Result<(), String>;
    fn thaw_all(&self) -> Result<(), String>;
    fn remove(&self) -> Result<(), String>;
}

impl CgroupExt for Cgroup {
    fn apply_pid(&self, pid: i32) -> Result<(), String> {
        self.apply(pid).map_err(|e| e.to_string())
    }
    fn set_resources(&self, r: &LinuxResources) -> Result<(), String> {
        self.set(&crate::cgroups::devices::with_default_devices(r))
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
