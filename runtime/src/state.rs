//! The state store: `<root>/<id>/state.json` (written atomically), the
//! `exec.fifo` rendezvous, a copy of config.json, and a per-container flock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// File names inside a container's state directory.
pub const STATE_FILE: &str = "state.json";
pub const FIFO_FILE: &str = "exec.fifo";
pub const CONFIG_FILE: &str = "config.json";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    /// An id that is not a plain name: it could reach outside the root.
    #[error("{0}")]
    InvalidId(String),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed state", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The lifecycle status (OCI runtime spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What husk records for a container. The first fields are the OCI state as
/// runc prints it; the `husk*` ones are private.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Start time of the init (ticks since boot), to detect pid reuse.
    #[serde(rename = "huskInitStart", default)]
    pub init_start: u64,
    /// The container's cgroupsPath, as given.
    #[serde(rename = "huskCgroupsPath", default)]
    pub cgroups_path: Option<String>,
}

/// The OCI state document as `husk state` prints it.
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

impl State {
    /// The OCI view with the given status; the pid is 0 once stopped, as runc reports.
    pub fn oci(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
        }
    }
}

/// The root directory holding every container's state.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A container's state directory, held under an exclusive flock.
#[derive(Debug)]
pub struct Locked {
    pub id: String,
    pub dir: PathBuf,
    lock: Flock<File>,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Check a container id (runc's rule): every command reaches a
    /// container's directory through [`Store::create`] or [`Store::open`],
    /// which call this, so no id can name a path outside the root.
    pub fn check_id(id: &str) -> Result<(), StateError> {
        crate::config::validate_id(id).map_err(StateError::InvalidId)
    }

    /// Create the state directory of a new container and lock it.
    pub fn create(&self, id: &str) -> Result<Locked, StateError> {
        Self::check_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(io_err(&self.root))?;
        let dir = self.root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.into()));
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        // mkdir honours the umask: make the mode exact so the container's user
        // can reach the exec fifo.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).map_err(io_err(&dir))?;
        self.lock_dir(id, dir)
    }

    /// Lock an existing container's directory (waits for other commands).
    pub fn open(&self, id: &str) -> Result<Locked, StateError> {
        Self::check_id(id)?;
        let dir = self.root.join(id);
        let locked = match self.lock_dir(id, dir) {
            Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.into()));
            }
            other => other?,
        };
        // A concurrent delete may have removed it while we waited.
        if !locked.dir.exists() {
            return Err(StateError::NotFound(id.into()));
        }
        Ok(locked)
    }

    fn lock_dir(&self, id: &str, dir: PathBuf) -> Result<Locked, StateError> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&dir)
            .map_err(io_err(&dir))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
            path: dir.clone(),
            source: e.into(),
        })?;
        Ok(Locked {
            id: id.into(),
            dir,
            lock,
        })
    }

    /// Every container id with a state directory.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let mut ids = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Some(s) = e.file_name().to_str() {
                    ids.push(s.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Read a container's state without locking (for `list`).
    pub fn peek(&self, id: &str) -> Result<State, StateError> {
        Self::check_id(id)?;
        read_state(&self.root.join(id), id)
    }
}

fn read_state(dir: &Path, id: &str) -> Result<State, StateError> {
    let path = dir.join(STATE_FILE);
    let raw = match fs::read(&path) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StateError::NotFound(id.into()));
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_slice(&raw).map_err(|source| StateError::Malformed { path, source })
}

impl Locked {
    pub fn load(&self) -> Result<State, StateError> {
        read_state(&self.dir, &self.id)
    }

    /// Write state.json atomically: temp file, rename.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let buf = serde_json::to_vec(state).map_err(|source| StateError::Malformed {
            path: self.dir.join(STATE_FILE),
            source,
        })?;
        self.write_atomic(STATE_FILE, &buf)
    }

    /// Write a file in the state dir atomically (temp file, rename).
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let dst = self.dir.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        // No fsync (as runc): the state lives on /run, a tmpfs gone at reboot;
        // the rename alone makes the update atomic for readers.
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Create the exec fifo (mode 0622, owned by the container's root).
    pub fn make_fifo(&self, uid: u32, gid: u32) -> Result<(), StateError> {
        let path = self.dir.join(FIFO_FILE);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| io_err(&path)(e.into()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o622)).map_err(io_err(&path))?;
        if uid != 0 || gid != 0 {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io_err(&path))?;
        }
        Ok(())
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(FIFO_FILE)
    }

    /// The status derived from the init process and the fifo, as runc does.
    pub fn status(&self, state: &State) -> Status {
        live_status(&self.dir, state)
    }

    /// Remove the state directory (the lock goes with it).
    pub fn remove(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))
    }

    /// An O_PATH handle on the exec fifo, the only thing of the host the
    /// created init holds: it reopens it (through /proc/self/fd) for writing
    /// to wait for `start`. A process that gets hold of it reaches the fifo
    /// alone, not the state directory.
    pub fn fifo_handle(&self) -> Result<OwnedFd, StateError> {
        let path = self.fifo_path();
        nix::fcntl::openat(
            self.lock.as_fd(),
            FIFO_FILE,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io_err(&path)(e.into()))
    }
}

/// Status from a state dir and record, without holding the lock.
pub fn live_status(dir: &Path, state: &State) -> Status {
    if !crate::sys::process_alive(state.pid, state.init_start) {
        return Status::Stopped;
    }
    if dir.join(FIFO_FILE).exists() {
        return Status::Created;
    }
    if state.status == Status::Paused {
        return Status::Paused;
    }
    Status::Running
}
