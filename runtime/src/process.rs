//! The container process's own settings: user and groups, capabilities,
//! rlimits, oom_score_adj, and finding the program to execute.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

/// Errors while setting up the process.
///
/// They are rendered to text in the cloned process and cross the channel as
/// such, so each carries its cause in its own message (no `source()`: the
/// cause is printed once).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{op}: {errno}")]
    Sys { op: String, errno: nix::Error },
    #[error("capabilities: {0}")]
    Caps(String),
    #[error("write /proc/self/oom_score_adj {value:?}: {err}")]
    OomScoreAdj { value: i32, err: std::io::Error },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    #[error("chdir to cwd ({0:?}) set in config.json failed: {1}")]
    Cwd(PathBuf, nix::Error),
    #[error("current working directory is outside of the container mount namespace root")]
    CwdOutside,
    #[error("invalid string in {0}: contains a NUL byte")]
    Nul(&'static str),
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let op = op.into();
    move |errno| ProcessError::Sys { op, errno }
}

/// Set the rlimits of this process (inherited across execve).
pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<(), ProcessError> {
    for l in limits {
        let res = rlimit_resource(l.typ());
        let rl = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass; no other memory is touched.
        if unsafe { libc::setrlimit(res, &rl) } != 0 {
            return Err(ProcessError::Sys {
                op: format!("setrlimit {}", l.typ()),
                errno: nix::Error::last(),
            });
        }
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Write /proc/self/oom_score_adj.
pub fn set_oom_score_adj(value: i32) -> Result<(), ProcessError> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
        .map_err(|err| ProcessError::OomScoreAdj { value, err })
}

fn to_caps(
    set: Option<&oci_spec::runtime::Capabilities>,
) -> Result<HashSet<Capability>, ProcessError> {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Capability = name
            .parse()
            .map_err(|_| ProcessError::Caps(format!("unknown capability {name}")))?;
        out.insert(cap);
    }
    Ok(out)
}

/// Capability sets resolved from the spec, checked against what this kernel knows.
pub struct CapSets {
    /// Every capability this kernel knows.
    known: HashSet<Capability>,
    bounding: HashSet<Capability>,
    effective: HashSet<Capability>,
    permitted: HashSet<Capability>,
    inheritable: HashSet<Capability>,
    ambient: HashSet<Capability>,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self, ProcessError> {
        let known = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
        let Some(c) = c else {
            return Ok(CapSets {
                known,
                bounding: HashSet::new(),
                effective: HashSet::new(),
                permitted: HashSet::new(),
                inheritable: HashSet::new(),
                ambient: HashSet::new(),
            });
        };
        let keep = |s: HashSet<Capability>| s.intersection(&known).copied().collect();
        Ok(CapSets {
            bounding: keep(to_caps(c.bounding().as_ref())?),
            effective: keep(to_caps(c.effective().as_ref())?),
            permitted: keep(to_caps(c.permitted().as_ref())?),
            inheritable: keep(to_caps(c.inheritable().as_ref())?),
            ambient: keep(to_caps(c.ambient().as_ref())?),
            known,
        })
    }

    /// Drop from the bounding set everything not listed (needs CAP_SETPCAP: do it before the uid change).
    ///
    /// Dropping a capability that is already out of the set is a no-op, so
    /// the current set is not read first (one prctl per capability, not two).
    pub fn drop_bounding(&self) -> Result<(), ProcessError> {
        for c in self.known.difference(&self.bounding) {
            if let Err(e) = caps::drop(None, CapSet::Bounding, *c) {
                // A capability newer than this kernel (the list fell back to
                // the crate's) is not in the set to begin with.
                if caps::has_cap(None, CapSet::Bounding, *c).unwrap_or(false) {
                    return Err(ProcessError::Caps(format!(
                        "drop {c} from bounding set: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Set the effective, permitted, inheritable and ambient sets (after the uid change).
    pub fn apply(&self) -> Result<(), ProcessError> {
        self.apply_keeping(None)
    }

    /// [`CapSets::apply`], also keeping `extra` permitted and effective
    /// (until a later `apply` drops it).
    pub fn apply_keeping(&self, extra: Option<Capability>) -> Result<(), ProcessError> {
        let mut permitted = self.permitted.clone();
        let mut effective = self.effective.clone();
        permitted.extend(extra);
        effective.extend(extra);
        let err = |what: &str| {
            let what = what.to_string();
            move |e: caps::errors::CapsError| ProcessError::Caps(format!("set {what}: {e}"))
        };
        // Permitted must be a superset of effective and inheritable first.
        caps::set(None, CapSet::Effective, &HashSet::new()).map_err(err("effective"))?;
        caps::set(None, CapSet::Inheritable, &HashSet::new()).map_err(err("inheritable"))?;
        caps::set(None, CapSet::Permitted, &permitted).map_err(err("permitted"))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable).map_err(err("inheritable"))?;
        caps::set(None, CapSet::Effective, &effective).map_err(err("effective"))?;
        // As runc: an ambient capability that is not also permitted and
        // inheritable cannot be raised; that is not an error. (No log line:
        // this runs in the cloned process, which has let go of the log file.)
        for c in &self.ambient {
            let _ = caps::raise(None, CapSet::Ambient, *c);
        }
        Ok(())
    }
}

/// Switch to the process's user: supplementary groups, gid, uid. Keeps the
/// permitted capabilities across the uid change (they are set right after).
pub fn set_user(proc: &Process, in_userns_without_setgroups: bool) -> Result<(), ProcessError> {
    let user = proc.user();
    // SAFETY: prctl(PR_SET_KEEPCAPS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(ProcessError::Sys {
            op: "prctl(PR_SET_KEEPCAPS)".into(),
            errno: nix::Error::last(),
        });
    }
    if !in_userns_without_setgroups {
        let gids: Vec<nix::unistd::Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).map_err(sys("setgroups"))?;
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setgid {}", user.gid())))?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setuid {}", user.uid())))?;
    // SAFETY: as above. A uid change resets "dumpable" to the host's
    // fs.suid_dumpable: keep this runtime-image process non-dumpable, as it
    // is still in the container's reach until it execs.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// chdir to the process's cwd and check that it is inside the container's root
/// (a leaked directory fd as cwd shows up as "(unreachable)").
pub fn enter_cwd(cwd: &Path) -> Result<(), ProcessError> {
    nix::unistd::chdir(cwd).map_err(|e| ProcessError::Cwd(cwd.to_path_buf(), e))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(ProcessError::CwdOutside),
    }
}

/// Find args[0] the way execvp would, using the container's PATH.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if !p.exists() {
            return Err(ProcessError::NotFound(arg0.into()));
        }
        if !is_exec(&p) {
            return Err(ProcessError::NotExecutable(arg0.into()));
        }
        return Ok(p);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(arg0);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(ProcessError::NotFound(arg0.into()))
}

/// Strings as C strings for execve.
pub fn cstrings(v: &[String], what: &'static str) -> Result<Vec<CString>, ProcessError> {
    v.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| ProcessError::Nul(what)))
        .collect()
}

/// Set no_new_privs.
pub fn set_no_new_privs() -> Result<(), ProcessError> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ProcessError::Sys {
            op: "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            errno: nix::Error::last(),
        });
    }
    Ok(())
}
