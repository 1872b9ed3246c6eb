//! The on-disk allocation store, laid out like the reference host-local
//! plugin's (`<dataDir>/<network>/<ip>` holding `<containerID>\r\n<ifname>`,
//! `last_reserved_ip.<set>`), serialised by an exclusive flock on the
//! network's directory so that concurrent ADDs never share an address.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("IPAM store {path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The allocations of one network.
#[derive(Debug, Clone)]
pub struct AllocStore {
    dir: PathBuf,
}

/// The store with its lock held; dropped = unlocked.
pub struct Locked<'a> {
    store: &'a AllocStore,
    _lock: File,
}

/// One allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The address.
    pub ip: IpAddr,
    /// Owner container.
    pub container_id: String,
    /// Owner interface.
    pub ifname: String,
}

impl AllocStore {
    /// The store of `network` under `data_dir`.
    pub fn new(data_dir: &Path, network: &str) -> Self {
        AllocStore {
            dir: data_dir.join(network),
        }
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the exclusive lock (creating the directory if needed).
    pub fn lock(&self) -> Result<Locked<'_>, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let f = File::open(&self.dir).map_err(io(&self.dir))?;
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io(&self.dir)(e));
            }
        }
        Ok(Locked {
            store: self,
            _lock: f,
        })
    }
}

impl Locked<'_> {
    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.store.dir.join(ip.to_string())
    }

    /// Whether `ip` is allocated.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.ip_path(ip).exists()
    }

    /// The last address handed out from range set `set`.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        std::fs::read_to_string(self.store.dir.join(format!("last_reserved_ip.{set}")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Record `ip` for (`id`, `ifname`); false when it was already taken.
    pub fn reserve(
        &self,
        ip: IpAddr,
        id: &str,
        ifname: &str,
        set: usize,
    ) -> Result<bool, StoreError> {
        let p = self.ip_path(ip);
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io(&p)(e)),
        };
        f.write_all(format!("{id}\r\n{ifname}").as_bytes())
            .map_err(io(&p))?;
        let last = self.store.dir.join(format!("last_reserved_ip.{set}"));
        std::fs::write(&last, ip.to_string()).map_err(io(&last))?;
        Ok(true)
    }

    /// Every allocation in the store.
    pub fn list(&self) -> Result<Vec<Allocation>, StoreError> {
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&self.store.dir).map_err(io(&self.store.dir))? {
            let ent = ent.map_err(io(&self.store.dir))?;
            let Some(ip) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(ent.path()) else {
                continue;
            };
            let mut lines = text.lines();
            let container_id = lines.next().unwrap_or_default().trim().to_string();
            let ifname = lines.next().unwrap_or_default().trim().to_string();
            out.push(Allocation {
                ip,
                container_id,
                ifname,
            });
        }
        out.sort_by_key(|a| super::alloc::to_u128(a.ip));
        Ok(out)
    }

    /// Addresses held by (`id`, `ifname`).
    pub fn find(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|a| a.container_id == id && (a.ifname == ifname || a.ifname.is_empty()))
            .map(|a| a.ip)
            .collect())
    }

    /// Free the addresses of (`id`, `ifname`); returns what was freed.
    pub fn release(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, StoreError> {
        let ips = self.find(id, ifname)?;
        for ip in &ips {
            let p = self.ip_path(*ip);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => {}
            }
        }
        Ok(ips)
    }

    /// Free those of `ips` that (`id`, `ifname`) still holds: a failed ADD
    /// gives back what it reserved and never another attachment's address.
    pub fn release_owned(&self, ips: &[IpAddr], id: &str, ifname: &str) -> Result<(), StoreError> {
        let owned = self.find(id, ifname)?;
        for ip in ips.iter().filter(|ip| owned.contains(ip)) {
            let p = self.ip_path(*ip);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Free every allocation whose owner is not in `valid`; returns them.
    pub fn release_all_except(
        &self,
        valid: &HashSet<(String, String)>,
    ) -> Result<Vec<Allocation>, StoreError> {
        let mut freed = Vec::new();
        for a in self.list()? {
            if valid.contains(&(a.container_id.clone(), a.ifname.clone())) {
                continue;
            }
            let p = self.ip_path(a.ip);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => freed.push(a),
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_find_release() {
        let d = tempfile::tempdir().unwrap();
        let s = AllocStore::new(d.path(), "net");
        let l = s.lock().unwrap();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.reserve(ip, "c1", "eth0", 0).unwrap());
        assert!(!l.reserve(ip, "c2", "eth0", 0).unwrap());
        assert!(l.is_reserved(ip));
        assert_eq!(l.last_reserved(0), Some(ip));
        assert_eq!(
            std::fs::read_to_string(d.path().join("net/10.0.0.2")).unwrap(),
            "c1\r\neth0"
        );
        assert_eq!(l.find("c1", "eth0").unwrap(), vec![ip]);
        assert!(l.find("c1", "eth1").unwrap().is_empty());
        assert_eq!(l.release("c1", "eth0").unwrap(), vec![ip]);
        assert!(l.release("c1", "eth0").unwrap().is_empty());
        assert!(!l.is_reserved(ip));
    }

    #[test]
    fn release_owned_spares_other_owners() {
        let d = tempfile::tempdir().unwrap();
        let s = AllocStore::new(d.path(), "net");
        let l = s.lock().unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        l.reserve(a, "other", "eth0", 0).unwrap();
        l.reserve(b, "me", "eth0", 0).unwrap();
        l.release_owned(&[a, b], "me", "eth0").unwrap();
        assert!(l.is_reserved(a), "another attachment's address was freed");
        assert!(!l.is_reserved(b));
    }

    #[test]
    fn gc_keeps_valid_only() {
        let d = tempfile::tempdir().unwrap();
        let s = AllocStore::new(d.path(), "net");
        let l = s.lock().unwrap();
        l.reserve("10.0.0.2".parse().unwrap(), "keep", "eth0", 0)
            .unwrap();
        l.reserve("10.0.0.3".parse().unwrap(), "gone", "eth0", 0)
            .unwrap();
        let valid: HashSet<_> = [("keep".to_string(), "eth0".to_string())].into();
        let freed = l.release_all_except(&valid).unwrap();
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].container_id, "gone");
        assert_eq!(l.list().unwrap().len(), 1);
    }

    #[test]
    fn lock_serialises_threads() {
        let d = tempfile::tempdir().unwrap();
        let s = AllocStore::new(d.path(), "net");
        let range = super::super::alloc::RangeSet(vec![
            super::super::alloc::Range::new("10.9.0.0/24".parse().unwrap(), None, None, None)
                .unwrap(),
        ]);
        std::thread::scope(|sc| {
            for t in 0..8 {
                let (s, range) = (&s, &range);
                sc.spawn(move || {
                    for i in 0..10 {
                        // Each thread opens its own fd, as separate processes would.
                        let l = s.lock().unwrap();
                        let (ip, _) = range
                            .next_free(l.last_reserved(0), |x| l.is_reserved(x))
                            .unwrap();
                        assert!(l.reserve(ip, &format!("c{t}-{i}"), "eth0", 0).unwrap());
                    }
                });
            }
        });
        let l = s.lock().unwrap();
        let all = l.list().unwrap();
        assert_eq!(all.len(), 80);
        let uniq: HashSet<_> = all.iter().map(|a| a.ip).collect();
        assert_eq!(uniq.len(), 80);
    }
}
