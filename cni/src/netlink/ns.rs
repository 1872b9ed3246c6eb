//! Network namespace handles.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A network namespace could not be opened or entered.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// Opening the namespace file failed.
    #[error("netns {path}: {cause}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The path is not a network namespace.
    #[error("netns {path}: not a network namespace")]
    NotNetns {
        /// The path.
        path: PathBuf,
    },
    /// setns(2) failed.
    #[error("netns {path}: setns: {cause}")]
    Setns {
        /// The path.
        path: PathBuf,
        /// The errno.
        cause: nix::Error,
    },
}

/// An open network namespace (`/run/netns/x`, `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

const NSFS_MAGIC: i64 = 0x6e73_6673;

impl NetNs {
    /// Open the namespace at `path`, checking that it is an nsfs file.
    pub fn open(path: &Path) -> Result<NetNs, NsError> {
        let file = File::open(path).map_err(|cause| NsError::Open {
            path: path.to_path_buf(),
            cause,
        })?;
        let st = nix::sys::statfs::fstatfs(&file).map_err(|e| NsError::Open {
            path: path.to_path_buf(),
            cause: e.into(),
        })?;
        // /proc/<pid>/ns/net is nsfs too; a bind mount of it keeps the magic.
        #[allow(clippy::unnecessary_cast)]
        if st.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(NsError::NotNetns {
                path: path.to_path_buf(),
            });
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs, NsError> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw fd (for IFLA_NET_NS_FD).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The namespace's inode number (identifies it while it exists).
    pub fn inode(&self) -> u64 {
        self.file.metadata().map(|m| m.ino()).unwrap_or(0)
    }

    /// Run `f` on a new thread that has entered this namespace. The caller's
    /// threads stay where they are.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(self.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|cause| NsError::Setns {
                        path: self.path.clone(),
                        cause,
                    })?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}
