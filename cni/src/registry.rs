//! The per-netns lock and registry of husk's nat rules, under
//! `/run/husk-cni/portmap-<netns inode>.{lock,json}`.
//!
//! The registry records which hostPorts husk-portmap (and anyone else, as
//! read from the table) holds and whether the shared chains exist, so that
//! ADD needs no `iptables-save`. It is a cache, never the truth: it is
//! trusted only when its netns cookie and nf_tables generation equal the
//! live ones ([`crate::nftgen`]); every husk writer that commits under the
//! lock re-stamps it only when its own commits account for the whole
//! generation change. Anything else — a crash between commit and write, a
//! change by another program, the legacy iptables backend — leaves a stale
//! stamp, and the next call reads the table instead and rebuilds it.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::iptables::Family;
use crate::netlink::NetNs;
use crate::nftgen;
use crate::portmap::rules::{Held, Shared};

/// Where locks and registries live.
pub const DIR: &str = "/run/husk-cni";

/// A registry failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file operation failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        cause: std::io::Error,
    },
    /// The calling thread's netns could not be identified.
    #[error("netns: {0}")]
    Netns(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |cause| RegistryError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// What the registry knows about one family's nat table (None: unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamState {
    /// Which shared chains and their entry jumps exist.
    pub shared: Shared,
    /// Every hostPort mapped in the table.
    pub held: Vec<Held>,
}

/// The registry file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The netns cookie it describes.
    pub cookie: u64,
    /// The nf_tables generation it is exact for.
    pub generation: u32,
    /// IPv4 nat table.
    pub v4: Option<FamState>,
    /// IPv6 nat table.
    pub v6: Option<FamState>,
}

impl State {
    /// The family's part.
    pub fn fam(&self, f: Family) -> Option<&FamState> {
        match f {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// Set the family's part.
    pub fn set(&mut self, f: Family, s: Option<FamState>) {
        match f {
            Family::V4 => self.v4 = s,
            Family::V6 => self.v6 = s,
        }
    }
}

/// The held lock plus what was read when it was taken.
pub struct Registry {
    _lock: File,
    json: PathBuf,
    cookie: Option<u64>,
    /// Generation read right after locking (None: not nf_tables / unknown).
    start: Option<u32>,
    /// The registry content, when it is exact for `start`.
    trusted: Option<State>,
}

/// Lock `path` exclusively, re-opening when a GC removed it meanwhile.
fn lock_file(path: &Path) -> Result<File, RegistryError> {
    loop {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        flock(&f, libc::LOCK_EX).map_err(io(path))?;
        // A GC unlinks a lock file only while holding it: if ours was
        // unlinked before we got it, take the new one instead.
        let same = std::fs::metadata(path)
            .ok()
            .zip(f.metadata().ok())
            .is_some_and(|(p, o)| p.ino() == o.ino() && p.dev() == o.dev());
        if same {
            return Ok(f);
        }
    }
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Registry {
    /// Lock the calling thread's netns and read the registry.
    pub fn lock() -> Result<Registry, RegistryError> {
        Self::lock_in(Path::new(DIR))
    }

    /// [`Registry::lock`] with another directory (tests).
    pub fn lock_in(dir: &Path) -> Result<Registry, RegistryError> {
        let ino = NetNs::current()
            .map_err(|e| RegistryError::Netns(e.to_string()))?
            .inode();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock_file(&dir.join(format!("portmap-{ino}.lock")))?;
        let json = dir.join(format!("portmap-{ino}.json"));
        let (cookie, start) = if nftgen::iptables_is_nft() {
            (nftgen::netns_cookie().ok(), nftgen::generation().ok())
        } else {
            (None, None)
        };
        let trusted = match (cookie, start) {
            (Some(c), Some(g)) => std::fs::read(&json)
                .ok()
                .and_then(|b| serde_json::from_slice::<State>(&b).ok())
                .filter(|s| s.cookie == c && s.generation == g),
            _ => None,
        };
        Ok(Registry {
            _lock: lock,
            json,
            cookie,
            start,
            trusted,
        })
    }

    /// The registry, when it is exact for the table as it is now.
    pub fn trusted(&self) -> Option<&State> {
        self.trusted.as_ref()
    }

    /// Record `state` after this process made exactly `commits` commits
    /// since [`Registry::lock`]; when anyone else committed meanwhile (or
    /// the generation is unknown) the old stamp is left to go stale.
    pub fn record(&self, commits: u32, state: Option<State>) {
        let (Some(cookie), Some(g0), Some(mut s)) = (self.cookie, self.start, state) else {
            return;
        };
        match nftgen::generation() {
            Ok(g1) if g1 == g0.wrapping_add(commits) => {
                s.cookie = cookie;
                s.generation = g1;
                if let Err(e) = self.write(&s) {
                    tracing::warn!(error = %e, "portmap registry");
                }
            }
            Ok(g1) => tracing::debug!(g0, g1, commits, "registry left stale: other commits"),
            Err(e) => tracing::debug!(error = %e, "registry left stale"),
        }
    }

    /// After commits that did not change portmap's part (the bridge's
    /// masquerade rules): carry a trusted registry over to the new generation.
    pub fn carry(&self, commits: u32) {
        self.record(commits, self.trusted.clone());
    }

    fn write(&self, s: &State) -> Result<(), RegistryError> {
        let tmp = self
            .json
            .with_extension(format!("tmp{}", std::process::id()));
        let body = serde_json::to_vec(s).map_err(|e| RegistryError::Io {
            path: tmp.clone(),
            cause: e.into(),
        })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.json).map_err(io(&self.json))
    }
}

/// Network namespace inodes that still exist somewhere a plugin could run:
/// a thread's netns, an open fd, or an nsfs bind mount in any mount ns.
fn live_netns_inodes() -> HashSet<u64> {
    fn ns_ino(link: &str) -> Option<u64> {
        link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
    }
    let mut live = HashSet::new();
    let mut mnt_seen = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return live;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = p.path();
        for sub in ["task", "fd"] {
            let Ok(entries) = std::fs::read_dir(base.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let link = if sub == "task" {
                    e.path().join("ns/net")
                } else {
                    e.path()
                };
                if let Some(i) = std::fs::read_link(&link)
                    .ok()
                    .and_then(|l| ns_ino(&l.to_string_lossy()))
                {
                    live.insert(i);
                }
            }
        }
        let Ok(mnt) = std::fs::read_link(base.join("ns/mnt")) else {
            continue;
        };
        if !mnt_seen.insert(mnt) {
            continue;
        }
        if let Ok(info) = std::fs::read_to_string(base.join("mountinfo")) {
            for line in info.lines() {
                // Field 4 is the mount's root: `net:[N]` for a netns bind mount.
                if let Some(i) = line.split_whitespace().nth(3).and_then(ns_ino) {
                    live.insert(i);
                }
            }
        }
    }
    live
}

/// Remove lock and registry files of network namespaces that are gone.
/// Returns the removed inode keys.
pub fn gc_files(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let keys: HashSet<u64> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix("portmap-")?;
            rest.split('.').next()?.parse().ok()
        })
        .collect();
    if keys.is_empty() {
        return Vec::new();
    }
    let live = live_netns_inodes();
    let mut removed = Vec::new();
    for k in keys.difference(&live) {
        let lock = dir.join(format!("portmap-{k}.lock"));
        // Only a lock nobody holds, and unlinked while we hold it, so a
        // waiter re-opens a fresh one (see `lock_file`).
        let Ok(f) = File::options().write(true).open(&lock) else {
            let _ = std::fs::remove_file(dir.join(format!("portmap-{k}.json")));
            continue;
        };
        if flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            continue;
        }
        let _ = std::fs::remove_file(dir.join(format!("portmap-{k}.json")));
        if std::fs::remove_file(&lock).is_ok() {
            removed.push(*k);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_keeps_live_and_removes_gone_netns_files() {
        let dir = tempfile::tempdir().unwrap();
        let me = NetNs::current().unwrap().inode();
        // An inode no netns has: nsfs inodes are far below u64::MAX.
        let gone = u64::MAX - 7;
        for k in [me, gone] {
            std::fs::write(dir.path().join(format!("portmap-{k}.lock")), "").unwrap();
            std::fs::write(dir.path().join(format!("portmap-{k}.json")), "{}").unwrap();
        }
        assert_eq!(gc_files(dir.path()), vec![gone]);
        assert!(dir.path().join(format!("portmap-{me}.lock")).exists());
        assert!(!dir.path().join(format!("portmap-{gone}.json")).exists());
        // A held lock is not removed even when its netns looks gone.
        let held = lock_file(&dir.path().join(format!("portmap-{gone}.lock"))).unwrap();
        assert!(gc_files(dir.path()).is_empty());
        drop(held);
        assert_eq!(gc_files(dir.path()), vec![gone]);
    }

    #[test]
    fn registry_round_trip_is_trusted_only_at_its_generation() {
        husk_tests::require_root!();
        if !nftgen::iptables_is_nft() {
            husk_tests::skip!("tool", "iptables is not the nft backend");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let r = Registry::lock_in(&d).unwrap();
            assert!(r.trusted().is_none());
            let st = State {
                v4: Some(FamState::default()),
                ..State::default()
            };
            r.record(0, Some(st.clone()));
            drop(r);
            let r = Registry::lock_in(&d).unwrap();
            assert_eq!(r.trusted().and_then(|s| s.v4.clone()), st.v4);
            // Someone else commits: the stamp goes stale.
            crate::iptables::restore(Family::V4, "*nat\n:HUSK-OTHER - [0:0]\nCOMMIT\n").unwrap();
            r.record(0, Some(st.clone()));
            drop(r);
            assert!(Registry::lock_in(&d).unwrap().trusted().is_none());
        })
        .join()
        .unwrap();
    }
}
