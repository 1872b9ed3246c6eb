//! Device rules (`linux.resources.devices`): validation shared by both layouts,
//! the v1 `devices.allow`/`devices.deny` lines, and a container's whole device
//! policy (deny-all, the spec's rules, runc's default allow list).
//!
//! The managers apply exactly the rules they are given (a pod-level cgroup
//! needs none); [`container_resources`] is what makes a container default-deny.

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

/// The device rules every container gets, assembled as runc does: deny
/// everything first, then the spec's `linux.resources.devices` in order, then
/// runc's default allow list ([`runc_default_rules`]).
///
/// The leading deny-all is what keeps a spec without a deny rule (resources
/// absent, `{}`, only a memory limit, only allow rules) from leaving the
/// container with every device of the host: it could otherwise mknod the
/// host's disk and read it. A spec that allows everything (`{"allow": true}`,
/// a privileged container) still can, since later rules win.
pub fn container_rules(spec: Option<&[LinuxDeviceCgroup]>) -> Result<Vec<Rule>, CgroupError> {
    let mut out = vec![Rule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        access: ACC_ALL,
    }];
    out.extend(rules(spec.unwrap_or_default())?);
    out.extend(runc_default_rules());
    Ok(out)
}

/// `resources` (none counts as empty) with the device rules replaced by the
/// container's whole device policy ([`container_rules`]), as spec entries:
/// what a container's cgroup is set with at create, so that the managers,
/// which apply exactly the rules they are given, start it from deny-all.
///
/// Invalid device rules are left in place for the manager's validation to
/// refuse with the field named.
pub fn container_resources(resources: Option<&LinuxResources>) -> LinuxResources {
    let mut out = resources.cloned().unwrap_or_default();
    let policy = container_rules(out.devices().as_deref());
    if let Ok(all) = policy {
        out.set_devices(Some(all.iter().map(Rule::to_spec).collect()));
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

    fn spec(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("resources json")
    }

    fn policy(r: Option<&LinuxResources>) -> Vec<Rule> {
        let out = container_resources(r);
        rules(out.devices().as_ref().expect("device rules are always set")).expect("valid")
    }

    const DISK: (u32, u32) = (8, 0);

    #[test]
    fn without_a_deny_rule_the_container_still_starts_from_deny_all() {
        let cases = [
            ("resources absent", None),
            ("{}", Some(spec("{}"))),
            (
                "only a memory limit",
                Some(spec(r#"{"memory":{"limit":33554432}}"#)),
            ),
            ("no device rules", Some(spec(r#"{"devices":[]}"#))),
            (
                "only allow rules",
                Some(spec(
                    r#"{"devices":[{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"}]}"#,
                )),
            ),
        ];
        for (what, r) in &cases {
            let all = policy(r.as_ref());
            let (maj, min) = DISK;
            assert!(
                !decide(&all, 'b', maj, min, ACC_READ),
                "{what}: disk readable"
            );
            assert!(
                !decide(&all, 'c', 1, 1, ACC_READ),
                "{what}: /dev/mem readable"
            );
            assert!(
                decide(&all, 'b', maj, min, ACC_MKNOD),
                "{what}: mknod is runc's default"
            );
            for (maj, min) in [
                (1, 3),
                (1, 5),
                (1, 7),
                (1, 8),
                (1, 9),
                (5, 0),
                (5, 2),
                (136, 4),
            ] {
                assert!(
                    decide(&all, 'c', maj, min, ACC_READ | ACC_WRITE),
                    "{what}: default device c {maj}:{min} refused"
                );
            }
        }
        let allow_rule = policy(cases[4].1.as_ref());
        assert!(decide(&allow_rule, 'c', 10, 200, ACC_READ | ACC_WRITE));
    }

    #[test]
    fn spec_rules_come_between_the_deny_all_and_the_defaults() {
        let r = spec(
            r#"{"devices":[{"allow":false,"access":"rwm"},
                           {"allow":true,"type":"b","major":8,"minor":0,"access":"r"},
                           {"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
        );
        let all = policy(Some(&r));
        assert_eq!(all[0].kind, 'a');
        assert!(!all[0].allow);
        assert!(
            decide(&all, 'b', 8, 0, ACC_READ),
            "the spec may allow a disk"
        );
        assert!(!decide(&all, 'b', 8, 0, ACC_WRITE));
        // runc appends its defaults after the spec: they win over a spec deny.
        assert!(decide(&all, 'c', 1, 3, ACC_READ));
        // A privileged spec (allow all) still gets everything.
        let all = policy(Some(&spec(
            r#"{"devices":[{"allow":true,"access":"rwm"}]}"#,
        )));
        assert!(decide(&all, 'b', 8, 0, ACC_READ | ACC_WRITE));
    }

    #[test]
    fn v1_writes_start_with_deny_all() {
        let all = policy(None);
        assert_eq!((all[0].allow, all[0].v1_line()), (false, "a".to_string()));
        assert!(all[1..].iter().all(|r| r.allow));
    }

    #[test]
    fn invalid_spec_rules_are_left_for_validation() {
        let r = spec(r#"{"devices":[{"allow":true,"type":"c","access":"rwx"}]}"#);
        let out = container_resources(Some(&r));
        assert_eq!(out.devices(), r.devices());
        assert!(rules(out.devices().as_ref().expect("kept")).is_err());
    }
}
