//! Which cgroup hierarchies this host has mounted, and where the caller sits in them.
//!
//! Read once from `/proc/self/mountinfo` and `/proc/self/cgroup`: a pure v2 host
//! has one cgroup2 mount at `/sys/fs/cgroup`; a v1 host has one mount per
//! controller set, and a hybrid host adds a cgroup2 mount (usually
//! `/sys/fs/cgroup/unified`) that holds no controllers of its own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::CgroupError;

/// Where cgroup v2 lives on a pure v2 host.
pub const UNIFIED_ROOT: &str = "/sys/fs/cgroup";

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The v1 controllers (`["cpu", "cpuacct"]`, `["name=systemd"]`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    pub mountpoint: PathBuf,
    /// The caller's own cgroup in this hierarchy, relative to the mountpoint (`/` at the top).
    pub own_cgroup: String,
    /// True for a cgroup2 mount.
    pub unified: bool,
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2: a single hierarchy with every controller.
    Unified(Hierarchy),
    /// cgroup v1, possibly hybrid (then one of the hierarchies is `unified`).
    Legacy(Vec<Hierarchy>),
}

impl Layout {
    /// Detect the layout of the running host.
    ///
    /// The result is kept for the life of the process (`run` opens the
    /// container's cgroup twice: to create it and to delete it), keyed by pid
    /// so that a forked child, whose own cgroup differs, detects afresh.
    pub fn detect() -> Result<Layout, CgroupError> {
        static CACHE: Mutex<Option<(u32, Layout)>> = Mutex::new(None);
        let pid = std::process::id();
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, layout)) = cache.as_ref()
            && *p == pid
        {
            return Ok(layout.clone());
        }
        let layout = Self::read()?;
        *cache = Some((pid, layout.clone()));
        Ok(layout)
    }

    fn read() -> Result<Layout, CgroupError> {
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        let subsystems = read("/proc/cgroups").unwrap_or_default();
        Layout::parse(&mountinfo, &own, &subsystems)
    }

    /// The layout described by the given `/proc/self/mountinfo`, `/proc/self/cgroup`
    /// and `/proc/cgroups` contents.
    pub fn parse(mountinfo: &str, own: &str, subsystems: &str) -> Result<Layout, CgroupError> {
        let known: HashSet<&str> = subsystems
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut seen_devices = HashSet::new();
        let mut hierarchies = Vec::new();
        for line in mountinfo.lines() {
            let Some(m) = MountLine::parse(line) else {
                continue;
            };
            if m.fstype != "cgroup" && m.fstype != "cgroup2" {
                continue;
            }
            // The same hierarchy bind-mounted twice is still one hierarchy.
            if !seen_devices.insert(m.device.to_string()) {
                continue;
            }
            let unified = m.fstype == "cgroup2";
            let mut controllers: Vec<String> = if unified {
                Vec::new()
            } else {
                m.super_options
                    .split(',')
                    .filter(|o| o.starts_with("name=") || known.contains(o))
                    .map(str::to_string)
                    .collect()
            };
            controllers.sort();
            if !unified && controllers.is_empty() {
                continue;
            }
            let own_cgroup = own_cgroup(own, &controllers, unified, m.root)?;
            hierarchies.push(Hierarchy {
                controllers,
                mountpoint: PathBuf::from(m.mountpoint),
                own_cgroup,
                unified,
            });
        }
        let root = Path::new(UNIFIED_ROOT);
        if let Some(h) = hierarchies
            .iter()
            .find(|h| h.unified && h.mountpoint == root)
        {
            return Ok(Layout::Unified(h.clone()));
        }
        if !hierarchies.iter().any(|h| !h.unified) {
            return Err(CgroupError::Layout(
                "no cgroup v1 controllers are mounted and /sys/fs/cgroup is not cgroup2".into(),
            ));
        }
        Ok(Layout::Legacy(hierarchies))
    }
}

/// The fields of one `/proc/self/mountinfo` line that matter here.
struct MountLine<'a> {
    device: &'a str,
    root: &'a str,
    mountpoint: &'a str,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let f: Vec<&str> = before.split(' ').collect();
        let a: Vec<&str> = after.split(' ').collect();
        Some(MountLine {
            device: f.get(2)?,
            root: f.get(3)?,
            mountpoint: f.get(4)?,
            fstype: a.first()?,
            super_options: a.get(2).copied().unwrap_or(""),
        })
    }
}

/// The caller's cgroup in one hierarchy, relative to that hierarchy's mount root.
fn own_cgroup(
    own: &str,
    controllers: &[String],
    unified: bool,
    mount_root: &str,
) -> Result<String, CgroupError> {
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let matches = if unified {
            ctrls.is_empty()
        } else {
            let mut c: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
            c.sort();
            c == controllers.iter().map(String::as_str).collect::<Vec<_>>()
        };
        if !matches {
            continue;
        }
        // Inside a cgroup namespace or a bind mount of a subtree, the mount's
        // root is a prefix of the path the kernel reports.
        let rel = if mount_root != "/" {
            path.strip_prefix(mount_root).unwrap_or(path)
        } else {
            path
        };
        let rel = if rel.is_empty() { "/" } else { rel };
        return Ok(rel.to_string());
    }
    // A hierarchy the caller is not listed in (it cannot happen for a mounted one,
    // but a hand-made mount may hide it): treat the caller as being at the top.
    Ok("/".to_string())
}

fn read(path: &str) -> Result<String, CgroupError> {
    crate::fs::read_proc(path).map_err(|e| CgroupError::io(path, "read", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSYS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t2\t1\t1\nmemory\t4\t1\t1\npids\t8\t1\t1\n";

    #[test]
    fn hybrid_host_is_legacy_with_unified_hierarchy() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  42 31 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory\n";
        let own = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpuacct,cpu:/x\n0::/\n";
        let Layout::Legacy(h) = Layout::parse(mi, own, SUBSYS).unwrap() else {
            panic!("expected legacy");
        };
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(h[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[0].own_cgroup, "/x");
        assert_eq!(h[1].own_cgroup, "/process_api/abc");
        assert_eq!(h[2].controllers, vec!["name=systemd"]);
        assert!(h[3].unified);
        assert_eq!(h[3].mountpoint, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn pure_v2_host_is_unified() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
        let own = "0::/user.slice/session-1.scope\n";
        let Layout::Unified(h) = Layout::parse(mi, own, SUBSYS).unwrap() else {
            panic!("expected unified");
        };
        assert_eq!(h.own_cgroup, "/user.slice/session-1.scope");
    }

    #[test]
    fn cgroup_namespace_root_is_stripped() {
        let mi = "31 23 0:28 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let own = "0::/kubepods/pod1/c1\n";
        let Layout::Unified(h) = Layout::parse(mi, own, SUBSYS).unwrap() else {
            panic!("expected unified");
        };
        assert_eq!(h.own_cgroup, "/c1");
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let mi = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert!(Layout::parse(mi, "", SUBSYS).is_err());
    }

    #[test]
    fn this_host_is_detected() {
        Layout::detect().expect("the test host has cgroups");
    }
}
