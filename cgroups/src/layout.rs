//! Which cgroup hierarchies this host has mounted, and where the caller sits in them.
//!
//! Read once from `/proc/self/mountinfo` and `/proc/self/cgroup`: a pure v2 host
//! has one cgroup2 mount at `/sys/fs/cgroup`; a v1 host has one mount per
//! controller set, and a hybrid host adds a cgroup2 mount (usually
//! `/sys/fs/cgroup/unified`) that holds no controllers of its own.

use std::collections::{HashMap, HashSet};
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
    ///
    /// Only the cgroup mounts visible at their mount points count: a
    /// hierarchy that another mount covers (a tmpfs mounted over
    /// /sys/fs/cgroup in a private mount namespace, say) is not used, since
    /// directories made "in" it would land on whatever covers it.
    pub fn parse(mountinfo: &str, own: &str, subsystems: &str) -> Result<Layout, CgroupError> {
        let known: HashSet<&str> = subsystems
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mounts: Vec<MountLine> = mountinfo.lines().filter_map(MountLine::parse).collect();
        let tree = MountTree::new(&mounts);
        let mut hidden = 0;
        // One entry per hierarchy: the same hierarchy bind-mounted twice is
        // still one (the mount under /sys/fs/cgroup is preferred).
        let mut chosen: Vec<(&str, Hierarchy)> = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            if m.fstype != "cgroup" && m.fstype != "cgroup2" {
                continue;
            }
            if !tree.visible(i) {
                hidden += 1;
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
            let h = Hierarchy {
                own_cgroup: own_cgroup(own, &controllers, unified, m.root)?,
                controllers,
                mountpoint: PathBuf::from(&m.mountpoint),
                unified,
            };
            match chosen.iter_mut().find(|(dev, _)| *dev == m.device) {
                Some((_, old)) => {
                    if !old.mountpoint.starts_with(UNIFIED_ROOT)
                        && h.mountpoint.starts_with(UNIFIED_ROOT)
                    {
                        *old = h;
                    }
                }
                None => chosen.push((m.device, h)),
            }
        }
        let hierarchies: Vec<Hierarchy> = chosen.into_iter().map(|(_, h)| h).collect();
        let root = Path::new(UNIFIED_ROOT);
        if let Some(h) = hierarchies
            .iter()
            .find(|h| h.unified && h.mountpoint == root)
        {
            return Ok(Layout::Unified(h.clone()));
        }
        if !hierarchies.iter().any(|h| !h.unified) {
            let mut reason = String::from(
                "no cgroup v1 controller is mounted and /sys/fs/cgroup is not cgroup2",
            );
            if hidden > 0 {
                reason.push_str(&format!(
                    " ({hidden} cgroup mounts are hidden under later mounts, \
                     e.g. a filesystem mounted over /sys/fs/cgroup)"
                ));
            }
            return Err(CgroupError::Layout(reason));
        }
        Ok(Layout::Legacy(hierarchies))
    }
}

/// The fields of one `/proc/self/mountinfo` line that matter here.
struct MountLine<'a> {
    id: &'a str,
    parent: &'a str,
    device: &'a str,
    root: &'a str,
    mountpoint: String,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let f: Vec<&str> = before.split(' ').collect();
        let a: Vec<&str> = after.split(' ').collect();
        Some(MountLine {
            id: f.first()?,
            parent: f.get(1)?,
            device: f.get(2)?,
            root: f.get(3)?,
            mountpoint: unescape(f.get(4)?),
            fstype: a.first()?,
            super_options: a.get(2).copied().unwrap_or(""),
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..=i + 3]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount tree of one mountinfo, for asking which mounts path lookup can
/// reach (the kernel's rule, not mountinfo order: a moved mount keeps its
/// place in the list).
struct MountTree<'m, 'a> {
    mounts: &'m [MountLine<'a>],
    by_id: HashMap<&'a str, usize>,
    children: HashMap<&'a str, Vec<usize>>,
}

impl<'m, 'a> MountTree<'m, 'a> {
    fn new(mounts: &'m [MountLine<'a>]) -> Self {
        let mut by_id = HashMap::new();
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, m) in mounts.iter().enumerate() {
            by_id.insert(m.id, i);
            children.entry(m.parent).or_default().push(i);
        }
        MountTree {
            mounts,
            by_id,
            children,
        }
    }

    /// Whether mount `i` is what path lookup finds at its mount point: no
    /// mount is stacked on it, and up the chain of parents no sibling covers
    /// the mount point or a directory above it. (A mount on `/` covers
    /// nothing: lookup starts at the process root and does not cross mounts
    /// stacked on it.)
    fn visible(&self, i: usize) -> bool {
        let m = &self.mounts[i];
        let stacked = m.mountpoint != "/"
            && self
                .children_of(m.id)
                .any(|c| c != i && self.mounts[c].mountpoint == m.mountpoint);
        if stacked {
            return false;
        }
        // A parent's own mount point being stacked on is seen from here as a
        // sibling covering a directory above (or the same point, later).
        let mut cur = i;
        // Bounded: a malformed table with a parent cycle must not loop.
        for _ in 0..self.mounts.len() {
            let m = &self.mounts[cur];
            let covered = self.children_of(m.parent).any(|s| {
                let sp = &self.mounts[s].mountpoint;
                s != cur
                    && sp != "/"
                    && (is_strict_ancestor(sp, &m.mountpoint) || (*sp == m.mountpoint && s > cur))
            });
            if covered {
                return false;
            }
            match self.by_id.get(m.parent) {
                Some(&p) if p != cur => cur = p,
                // The root of what this process sees.
                _ => return true,
            }
        }
        false
    }

    fn children_of(&self, id: &str) -> impl Iterator<Item = usize> + '_ {
        self.children.get(id).into_iter().flatten().copied()
    }
}

/// `a` is a directory strictly above `b` (`/sys` above `/sys/fs/cgroup`).
fn is_strict_ancestor(a: &str, b: &str) -> bool {
    a != b && b.starts_with(a) && (a.ends_with('/') || b.as_bytes().get(a.len()) == Some(&b'/'))
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

    /// This machine's hybrid layout, as mountinfo shows it.
    const HYBRID: &str = "23 27 0:22 / /sys rw - sysfs sysfs rw\n\
        27 1 254:0 / / rw - ext4 /dev/vda rw\n\
        31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
        39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
    const HYBRID_OWN: &str = "8:pids:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n";

    fn layout_err(mi: &str, own: &str) -> String {
        match Layout::parse(mi, own, SUBSYS) {
            Ok(l) => panic!("expected an error, got {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn hierarchies_under_a_tmpfs_mounted_over_sys_fs_cgroup_are_not_used() {
        // A private mount namespace that put a fresh tmpfs on /sys/fs/cgroup:
        // the new mount stacks on the old tmpfs (its parent is 31).
        let mi = format!("{HYBRID}90 31 0:90 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
        let err = layout_err(&mi, HYBRID_OWN);
        assert!(err.contains("4 cgroup mounts are hidden"), "{err}");
        // The same on a pure v2 host.
        let mi = "23 27 0:22 / /sys rw - sysfs sysfs rw\n\
                  29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                  90 29 0:90 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
        let err = layout_err(mi, "0::/\n");
        assert!(err.contains("1 cgroup mounts are hidden"), "{err}");
    }

    #[test]
    fn a_mount_over_a_directory_above_hides_the_hierarchies_below() {
        let mi = format!("{HYBRID}90 23 0:90 / /sys/fs rw - tmpfs tmpfs rw\n");
        assert!(layout_err(&mi, HYBRID_OWN).contains("hidden"));
    }

    #[test]
    fn a_covering_mount_earlier_in_mountinfo_still_covers() {
        // mountinfo lists mounts in creation order and a moved mount keeps
        // its place: here an old tmpfs (id 20) was moved over /sys/fs/cgroup.
        let mi = format!("20 31 0:20 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n{HYBRID}");
        assert!(layout_err(&mi, HYBRID_OWN).contains("hidden"));
    }

    #[test]
    fn the_visible_mount_of_a_hierarchy_is_used() {
        // tmpfs over /sys/fs/cgroup, then the unified hierarchy mounted again
        // on top of it: what is visible at /sys/fs/cgroup is cgroup2.
        let mi = format!(
            "{HYBRID}90 31 0:90 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             91 90 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        );
        let Layout::Unified(h) = Layout::parse(&mi, HYBRID_OWN, SUBSYS).expect("layout") else {
            panic!("expected unified");
        };
        assert_eq!(h.mountpoint, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn mounts_below_a_hierarchy_or_elsewhere_do_not_hide_it() {
        let mi = format!(
            "{HYBRID}90 35 0:90 / /sys/fs/cgroup/memory/x rw - tmpfs tmpfs rw\n\
             91 27 0:91 / /mnt rw - tmpfs tmpfs rw\n\
             92 23 0:92 / /sys/kernel/debug rw - debugfs debugfs rw\n"
        );
        let Layout::Legacy(h) = Layout::parse(&mi, HYBRID_OWN, SUBSYS).expect("layout") else {
            panic!("expected legacy");
        };
        let mps: Vec<_> = h.iter().map(|h| h.mountpoint.clone()).collect();
        assert_eq!(
            mps,
            ["cpu", "memory", "pids", "unified"].map(|c| Path::new(UNIFIED_ROOT).join(c))
        );
    }

    #[test]
    fn a_bind_of_a_hierarchy_listed_first_does_not_displace_the_real_one() {
        let mi = format!("10 27 0:32 / /mnt/mem rw - cgroup cgroup rw,memory\n{HYBRID}");
        let Layout::Legacy(h) = Layout::parse(&mi, HYBRID_OWN, SUBSYS).expect("layout") else {
            panic!("expected legacy");
        };
        let mem = h
            .iter()
            .find(|h| h.controllers == ["memory"])
            .expect("memory");
        assert_eq!(mem.mountpoint, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(mem.own_cgroup, "/process_api/x");
    }

    #[test]
    fn escaped_mount_points_are_read_back() {
        let mi = "23 27 0:22 / /sys rw - sysfs sysfs rw\n\
                  31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  35 31 0:32 / /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory\n";
        let Layout::Legacy(h) = Layout::parse(mi, "4:memory:/\n", SUBSYS).expect("layout") else {
            panic!("expected legacy");
        };
        assert_eq!(h[0].mountpoint, Path::new("/sys/fs/cgroup/my mem"));
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/a\\04"), "/a\\04", "a short escape is kept");
    }

    #[test]
    fn a_mount_on_the_process_root_hides_nothing() {
        // Path lookup starts at the process root and never crosses a mount
        // stacked on it.
        let mi = format!("{HYBRID}90 27 0:90 / / rw - tmpfs tmpfs rw\n");
        assert!(matches!(
            Layout::parse(&mi, HYBRID_OWN, SUBSYS),
            Ok(Layout::Legacy(_))
        ));
    }

    #[test]
    fn this_host_is_detected() {
        Layout::detect().expect("the test host has cgroups");
    }
}
