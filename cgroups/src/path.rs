//! `linux.cgroupsPath` as runc's cgroupfs driver reads it.
//!
//! - absolute (`/husk/abc`): under each hierarchy's root;
//! - relative (`husk/abc`): under the caller's own cgroup on v1, under its
//!   parent on v2 (runc does this because a v2 group holding processes cannot
//!   enable controllers for its children);
//! - absent: the container id, relative as above;
//! - `slice:prefix:name` (systemd driver): refused;
//! - `..` components: refused, so a path can never leave its hierarchy.

use std::path::{Path, PathBuf};

use super::CgroupError;
use super::layout::Hierarchy;

/// A validated cgroupsPath: whether it is absolute, and its clean components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    absolute: bool,
    components: Vec<String>,
}

impl CgroupPath {
    /// Validate the spec's cgroupsPath (or the container id when there is none).
    pub fn parse(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        let (raw, from_id) = match cgroups_path {
            Some(p) if !p.is_empty() => (p, false),
            _ => (container_id, true),
        };
        let invalid = |reason: &str| {
            if from_id {
                CgroupError::InvalidPath {
                    path: raw.to_string(),
                    reason: format!("no cgroupsPath given and the container id {reason}"),
                }
            } else {
                CgroupError::InvalidPath {
                    path: raw.to_string(),
                    reason: reason.to_string(),
                }
            }
        };
        if !from_id && !raw.starts_with('/') && raw.split(':').count() == 3 {
            return Err(CgroupError::SystemdPath(raw.to_string()));
        }
        if raw.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        if from_id && raw.contains('/') {
            return Err(invalid("contains '/'"));
        }
        let mut components = Vec::new();
        for c in raw.split('/') {
            match c {
                "" | "." => continue,
                ".." => return Err(invalid("'..' components are not allowed")),
                c => components.push(c.to_string()),
            }
        }
        if components.is_empty() {
            return Err(invalid("names no cgroup below the hierarchy root"));
        }
        Ok(CgroupPath {
            absolute: raw.starts_with('/'),
            components,
        })
    }

    /// True for an absolute path (placed under the hierarchy roots).
    pub fn is_absolute(&self) -> bool {
        self.absolute
    }

    /// The path as `/a/b` (absolute) or `a/b` (relative).
    pub fn as_string(&self) -> String {
        let joined = self.components.join("/");
        if self.absolute {
            format!("/{joined}")
        } else {
            joined
        }
    }

    /// The directory of this cgroup in one mounted hierarchy.
    pub fn resolve(&self, h: &Hierarchy) -> PathBuf {
        let mut dir = h.mountpoint.clone();
        if !self.absolute {
            let own = Path::new(&h.own_cgroup);
            let base = if h.unified {
                own.parent().unwrap_or(own)
            } else {
                own
            };
            for c in base.components() {
                if let std::path::Component::Normal(c) = c {
                    dir.push(c);
                }
            }
        }
        for c in &self.components {
            dir.push(c);
        }
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hier(mountpoint: &str, own: &str, unified: bool) -> Hierarchy {
        Hierarchy {
            controllers: if unified {
                vec![]
            } else {
                vec!["memory".into()]
            },
            mountpoint: mountpoint.into(),
            own_cgroup: own.into(),
            unified,
        }
    }

    #[test]
    fn absolute_path_goes_under_the_root() {
        let p = CgroupPath::parse(Some("/husk-test/c1"), "id").unwrap();
        let h = hier("/sys/fs/cgroup/memory", "/process_api/x", false);
        assert_eq!(
            p.resolve(&h),
            Path::new("/sys/fs/cgroup/memory/husk-test/c1")
        );
    }

    #[test]
    fn relative_path_goes_under_own_cgroup_on_v1_and_its_parent_on_v2() {
        let p = CgroupPath::parse(Some("a/b"), "id").unwrap();
        let v1 = hier("/sys/fs/cgroup/memory", "/process_api/x", false);
        assert_eq!(
            p.resolve(&v1),
            Path::new("/sys/fs/cgroup/memory/process_api/x/a/b")
        );
        let v2 = hier("/sys/fs/cgroup", "/user.slice/s.scope", true);
        assert_eq!(p.resolve(&v2), Path::new("/sys/fs/cgroup/user.slice/a/b"));
        let top = hier("/sys/fs/cgroup", "/", true);
        assert_eq!(p.resolve(&top), Path::new("/sys/fs/cgroup/a/b"));
    }

    #[test]
    fn no_path_uses_the_container_id() {
        let p = CgroupPath::parse(None, "abc").unwrap();
        assert!(!p.is_absolute());
        assert_eq!(p.as_string(), "abc");
        assert_eq!(CgroupPath::parse(Some(""), "abc").unwrap(), p);
        assert!(CgroupPath::parse(None, "..").is_err());
        assert!(CgroupPath::parse(None, "a/b").is_err());
    }

    #[test]
    fn dot_dot_is_rejected() {
        for bad in ["/a/../b", "../x", "/..", "a/.."] {
            let err = CgroupPath::parse(Some(bad), "id").unwrap_err();
            assert!(
                err.to_string().starts_with("linux.cgroupsPath: "),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(".."), "{bad}: {err}");
        }
    }

    #[test]
    fn systemd_form_is_rejected_clearly() {
        let err = CgroupPath::parse(Some("system.slice:husk:abc"), "id").unwrap_err();
        assert!(
            err.to_string()
                .contains("linux.cgroupsPath: systemd cgroup paths are not supported"),
            "{err}"
        );
    }

    #[test]
    fn root_is_rejected() {
        assert!(CgroupPath::parse(Some("/"), "id").is_err());
        assert!(CgroupPath::parse(Some("//./"), "id").is_err());
    }

    #[test]
    fn redundant_separators_are_cleaned() {
        let p = CgroupPath::parse(Some("//a/./b/"), "id").unwrap();
        assert_eq!(p.as_string(), "/a/b");
    }
}
