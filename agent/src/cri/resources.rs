//! CRI `LinuxContainerResources` as OCI `linux.resources` (cpu, memory,
//! swap, hugepages, unified), checked field by field: the same document
//! goes into config.json at create and to `husk update` later.

use std::path::Path;

use k8s_cri::v1 as cri;
use serde_json::{Map, Value, json};

use super::error::CriError;

/// The OCI resources for `r`; errors name the field under `prefix`
/// (`config.linux.resources` or `linux`).
pub fn oci(prefix: &str, r: &cri::LinuxContainerResources) -> Result<Map<String, Value>, CriError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let non_negative = |f: &str, v: i64| {
        if v < 0 {
            Err(CriError::invalid(field(f), format!("{v} is negative")))
        } else {
            Ok(v)
        }
    };
    let mut out = Map::new();
    let mut memory = Map::new();
    if non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)? > 0 {
        memory.insert("limit".into(), r.memory_limit_in_bytes.into());
    }
    if r.memory_swap_limit_in_bytes != 0 && r.memory_swap_limit_in_bytes != -1 {
        let swap = non_negative("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes)?;
        if r.memory_limit_in_bytes > 0 && swap < r.memory_limit_in_bytes {
            return Err(CriError::invalid(
                field("memory_swap_limit_in_bytes"),
                format!(
                    "{swap} is less than memory_limit_in_bytes {} (it is memory plus swap)",
                    r.memory_limit_in_bytes
                ),
            ));
        }
        memory.insert("swap".into(), swap.into());
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    let mut cpu = Map::new();
    if non_negative("cpu_shares", r.cpu_shares)? > 0 {
        cpu.insert("shares".into(), r.cpu_shares.into());
    }
    // A quota of -1 is "no limit" (the kubelet sends it to lift one).
    if r.cpu_quota < -1 {
        return Err(CriError::invalid(
            field("cpu_quota"),
            format!("{} is negative (only -1, unlimited, is)", r.cpu_quota),
        ));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), r.cpu_quota.into());
    }
    if non_negative("cpu_period", r.cpu_period)? > 0 {
        if !(1000..=1_000_000).contains(&r.cpu_period) {
            return Err(CriError::invalid(
                field("cpu_period"),
                format!("{} is outside 1000..=1000000 µs", r.cpu_period),
            ));
        }
        cpu.insert("period".into(), r.cpu_period.into());
    }
    for (name, key, v, online) in [
        (
            "cpuset_cpus",
            "cpus",
            &r.cpuset_cpus,
            "/sys/devices/system/cpu/online",
        ),
        (
            "cpuset_mems",
            "mems",
            &r.cpuset_mems,
            "/sys/devices/system/node/online",
        ),
    ] {
        if v.is_empty() {
            continue;
        }
        let Some(want) = parse_list(v) else {
            return Err(CriError::invalid(
                field(name),
                format!("{v:?} is not a list like 0-3,5"),
            ));
        };
        // The kernel would refuse others half-way through an update.
        if let Some(have) = std::fs::read_to_string(online)
            .ok()
            .and_then(|s| parse_list(s.trim()))
        {
            if let Some(bad) = want.iter().find(|n| !have.contains(n)) {
                return Err(CriError::invalid(
                    field(name),
                    format!("{bad} is not online on this node ({online})"),
                ));
            }
        }
        cpu.insert(key.into(), v.clone().into());
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    let mut huge = vec![];
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        if page_kb(&h.page_size).is_none() {
            return Err(CriError::invalid(
                field(&format!("hugepage_limits[{i}].page_size")),
                format!("{:?} is not a size like 2MB or 1GB", h.page_size),
            ));
        }
        huge.push(json!({"pageSize": h.page_size, "limit": h.limit}));
    }
    if !huge.is_empty() {
        out.insert("hugepageLimits".into(), huge.into());
    }
    if !r.unified.is_empty() {
        for k in r.unified.keys() {
            if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(CriError::invalid(
                    field(&format!("unified[{k:?}]")),
                    "not a cgroup v2 file name like memory.high",
                ));
            }
        }
        let m: Map<String, Value> = r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        out.insert("unified".into(), Value::Object(m));
    }
    Ok(out)
}

/// Refuse what this node's cgroups cannot hold, naming the field: unified
/// files without cgroup v2, huge pages of a size the kernel lacks or
/// without a hugetlb controller. (The runtime would refuse them too, but
/// only after the container's rootfs and shim were set up.)
pub fn check_node(prefix: &str, r: &cri::LinuxContainerResources) -> Result<(), CriError> {
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok();
    if !r.unified.is_empty() && controllers.is_none() {
        return Err(CriError::invalid(
            format!("{prefix}.unified"),
            "needs the cgroup v2 hierarchy; this node has v1 controllers",
        ));
    }
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let field = format!("{prefix}.hugepage_limits[{i}].page_size");
        let kb = page_kb(&h.page_size)
            .ok_or_else(|| CriError::invalid(&field, format!("{:?} is not a size", h.page_size)))?;
        if !Path::new(&format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB")).exists() {
            return Err(CriError::invalid(
                &field,
                format!("the node has no {} huge pages", h.page_size),
            ));
        }
        let hugetlb = match &controllers {
            Some(c) => c.split_whitespace().any(|x| x == "hugetlb"),
            None => Path::new("/sys/fs/cgroup/hugetlb").is_dir(),
        };
        if !hugetlb {
            return Err(CriError::invalid(
                &field,
                "the node's cgroups have no hugetlb controller",
            ));
        }
    }
    Ok(())
}

/// `2MB`, `1GB`, `64KB` (a number and a binary unit, as the kubelet sends) in KiB.
fn page_kb(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    let mult = match &s[digits..] {
        "KB" => 1,
        "MB" => 1 << 10,
        "GB" => 1 << 20,
        "TB" => 1 << 30,
        "PB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `0-3,5`: comma-separated numbers and ranges, as the numbers (None when
/// malformed or absurdly large).
fn parse_list(s: &str) -> Option<Vec<u32>> {
    let mut out = vec![];
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |x: &str| {
            (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                .then(|| x.parse::<u32>().ok())
                .flatten()
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b || b - a > 65536 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_convert_and_bad_fields_are_named() {
        let r = cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpuset_cpus: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            unified: [("memory.high".to_string(), "max".to_string())].into(),
            ..Default::default()
        };
        let v = Value::Object(oci("linux", &r).unwrap());
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["memory"], json!({"limit": 64 << 20, "swap": 64 << 20}));
        assert_eq!(
            v["hugepageLimits"],
            json!([{"pageSize": "2MB", "limit": 0}])
        );
        assert_eq!(v["unified"]["memory.high"], "max");
        let bad = |f: fn(&mut cri::LinuxContainerResources), needle: &str| {
            let mut r = r.clone();
            f(&mut r);
            let e = oci("linux", &r).unwrap_err().to_string();
            assert!(e.starts_with(needle), "{e}");
        };
        bad(
            |r| r.memory_limit_in_bytes = -5,
            "linux.memory_limit_in_bytes",
        );
        bad(|r| r.cpu_quota = -7, "linux.cpu_quota");
        bad(|r| r.cpu_period = 10, "linux.cpu_period");
        bad(|r| r.cpuset_cpus = "0-".into(), "linux.cpuset_cpus");
        bad(
            |r| r.cpuset_cpus = "4095".into(),
            "linux.cpuset_cpus: 4095 is not online",
        );
        bad(
            |r| r.hugepage_limits[0].page_size = "2M".into(),
            "linux.hugepage_limits[0].page_size",
        );
        bad(
            |r| {
                r.unified.insert("../x".into(), "1".into());
            },
            "linux.unified[",
        );
        bad(
            |r| r.memory_swap_limit_in_bytes = 1,
            "linux.memory_swap_limit_in_bytes",
        );
    }
}
