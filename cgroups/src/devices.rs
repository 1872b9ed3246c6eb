//! Device rules (`linux.resources.devices`): validation shared by both layouts,
//! the v1 `devices.allow`/`devices.deny` lines, and runc's default allow list.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::CgroupError;

/// A validated device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// `a` (all), `b` or `c`.
    pub kind: char,
    /// None is the wildcard.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write (the eBPF access bits).
    pub access: u32,
}

pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

impl Rule {
    /// The rule as an OCI `linux.resources.devices` entry.
    pub fn to_spec(&self) -> LinuxDeviceCgroup {
        let mut access = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        let typ = match self.kind {
            'b' => LinuxDeviceType::B,
            'c' => LinuxDeviceType::C,
            _ => LinuxDeviceType::A,
        };
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(self.allow);
        d.set_typ(Some(typ));
        d.set_major(self.major.map(i64::from));
        d.set_minor(self.minor.map(i64::from));
        d.set_access(Some(access));
        d
    }

    /// The rule as a v1 `devices.allow`/`devices.deny` line (`c 1:3 rwm`).
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut acc = String::new();
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        if self.kind == 'a' {
            // The kernel reads any `a` line as "everything".
            return "a".to_string();
        }
        format!(
            "{} {}:{} {acc}",
            self.kind,
            num(self.major),
            num(self.minor)
        )
    }
}

/// Validate the spec's device rules.
pub fn rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, CgroupError> {
    list.iter()
        .enumerate()
        .map(|(i, d)| {
            let field = format!("linux.resources.devices[{i}]");
            let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => 'a',
                LinuxDeviceType::B => 'b',
                LinuxDeviceType::C | LinuxDeviceType::U => 'c',
                LinuxDeviceType::P => {
                    return Err(CgroupError::invalid(
                        format!("{field}.type"),
                        "fifos (p) are not device-controlled",
                    ));
                }
            };
            let num = |v: Option<i64>, name: &str| -> Result<Option<u32>, CgroupError> {
                match v {
                    None | Some(-1) => Ok(None),
                    Some(v) => u32::try_from(v).map(Some).map_err(|_| {
                        CgroupError::invalid(
                            format!("{field}.{name}"),
                            format!("{v} is not a device number"),
                        )
                    }),
                }
            };
            let major = num(d.major(), "major")?;
            let minor = num(d.minor(), "minor")?;
            let access_str = d.access().as_deref().unwrap_or("rwm");
            let mut access = 0;
            for c in access_str.chars() {
                access |= match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => {
                        return Err(CgroupError::invalid(
                            format!("{field}.access"),
                            format!("{access_str:?} is not a combination of r, w and m"),
                        ));
                    }
                };
            }
            if access == 0 {
                access = ACC_ALL;
            }
            Ok(Rule {
                allow: d.allow(),
                kind,
                major,
                minor,
                access,
            })
        })
        .collect()
}

/// `resources` with runc's default allow list appended to its device rules,
/// as runc's specconv does before the cgroup manager sees them: a spec that
/// denies everything (as `husk spec` and `runc spec` write) still lets the
/// container use /dev/null and friends. The manager itself applies exactly
/// the rules it is given. Resources without device rules are left as they are.
pub fn with_default_devices(resources: &LinuxResources) -> LinuxResources {
    let mut out = resources.clone();
    if let Some(list) = out.devices_mut() {
        list.extend(runc_default_rules().iter().map(Rule::to_spec));
    }
    out
}

/// The devices runc lets every container use, besides the ones in the spec:
/// null, zero, full, random, urandom, tty, ptmx and /dev/pts/*, mknod of any
/// char or block device (creating it is harmless, opening it is controlled).
pub fn runc_default_rules() -> Vec<Rule> {
    let c = |major, minor| Rule {
        allow: true,
        kind: 'c',
        major: Some(major),
        minor,
        access: ACC_ALL,
    };
    vec![
        Rule {
            allow: true,
            kind: 'c',
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        Rule {
            allow: true,
            kind: 'b',
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        c(1, Some(3)),
        c(1, Some(5)),
        c(1, Some(7)),
        c(1, Some(8)),
        c(1, Some(9)),
        c(5, Some(0)),
        c(5, Some(2)),
        c(136, None),
    ]
}

/// What the rules decide for one access (the last matching rule wins,
/// nothing matching is denied) — the semantics the eBPF program encodes.
pub fn decide(rules: &[Rule], kind: char, major: u32, minor: u32, access: u32) -> bool {
    for r in rules.iter().rev() {
        if r.kind != 'a' && r.kind != kind {
            continue;
        }
        if r.major.is_some_and(|m| m != major) || r.minor.is_some_and(|m| m != minor) {
            continue;
        }
        if r.allow {
            if access & r.access == access {
                return true;
            }
        } else if access & r.access != 0 {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod default_device_tests {
    use super::*;

    #[test]
    fn default_rules_round_trip_through_spec_entries() {
        let defaults = runc_default_rules();
        let spec: Vec<_> = defaults.iter().map(Rule::to_spec).collect();
        assert_eq!(rules(&spec).expect("valid"), defaults);
    }

    #[test]
    fn defaults_follow_the_spec_rules_and_only_when_there_are_rules() {
        let deny_all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).expect("json");
        let mut r = LinuxResources::default();
        assert!(with_default_devices(&r).devices().is_none());
        r.set_devices(Some(vec![deny_all]));
        let all = rules(
            with_default_devices(&r)
                .devices()
                .as_ref()
                .expect("devices"),
        )
        .expect("ok");
        assert!(!all[0].allow, "the spec's rule comes first");
        // Last match wins: /dev/null (c 1:3) is allowed, /dev/mem (c 1:1) is not.
        assert!(decide(&all, 'c', 1, 3, ACC_READ | ACC_WRITE));
        assert!(!decide(&all, 'c', 1, 1, ACC_READ));
    }
}
