//! Reading a v1 cgroup's statistics (runc's fs stats).

use std::path::Path;

use crate::stats::{BlkioEntry, Hugetlb, MemoryEntry, Stats, parse_list};
use crate::{CgroupError, fs};

use super::V1Manager;

/// Nanoseconds per USER_HZ tick in cpuacct.stat (USER_HZ is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

pub fn read(m: &V1Manager) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    if let Some(d) = m.dir_of("cpuacct").filter(|d| d.exists()) {
        s.cpu.usage.total = fs::read_u64(d, "cpuacct.usage")?;
        s.cpu.usage.percpu = fs::read(d, "cpuacct.usage_percpu")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        for (k, v) in fs::read_keyed(d, "cpuacct.stat")? {
            match k.as_str() {
                "user" => s.cpu.usage.user = v * NS_PER_TICK,
                "system" => s.cpu.usage.kernel = v * NS_PER_TICK,
                _ => {}
            }
        }
    }
    if let Some(d) = m.dir_of("cpu").filter(|d| d.exists()) {
        for (k, v) in fs::read_keyed(d, "cpu.stat")? {
            match k.as_str() {
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_time" => s.cpu.throttling.throttled_time = v,
                _ => {}
            }
        }
    }
    if let Some(d) = m.dir_of("cpuset").filter(|d| d.exists()) {
        s.cpuset.cpus = parse_list(&fs::read(d, "cpuset.cpus")?);
        s.cpuset.mems = parse_list(&fs::read(d, "cpuset.mems")?);
    }
    if let Some(d) = m.dir_of("memory").filter(|d| d.exists()) {
        s.memory.usage = entry(d, "memory")?;
        if d.join("memory.memsw.usage_in_bytes").exists() {
            s.memory.swap = entry(d, "memory.memsw")?;
        }
        if d.join("memory.kmem.usage_in_bytes").exists() {
            s.memory.kernel = entry(d, "memory.kmem")?;
        }
        if d.join("memory.kmem.tcp.usage_in_bytes").exists() {
            s.memory.kernel_tcp = entry(d, "memory.kmem.tcp")?;
        }
        for (k, v) in fs::read_keyed(d, "memory.stat")? {
            if k == "cache" {
                s.memory.cache = v;
            }
            s.memory.raw.insert(k, v);
        }
        if let Ok(Some(oom_kill)) = fs::keyed_value(d, "memory.oom_control", "oom_kill") {
            s.memory.raw.insert("oom_kill".into(), oom_kill);
        }
    }
    if let Some(d) = m.dir_of("pids").filter(|d| d.exists()) {
        s.pids.current = fs::read_u64(d, "pids.current")?;
        let max = fs::read_u64(d, "pids.max")?;
        s.pids.limit = if max == u64::MAX { 0 } else { max };
    }
    if let Some(d) = m.dir_of("blkio").filter(|d| d.exists()) {
        s.blkio.io_service_bytes_recursive = blkio(d, "blkio.throttle.io_service_bytes_recursive")?;
        s.blkio.io_serviced_recursive = blkio(d, "blkio.throttle.io_serviced_recursive")?;
    }
    if let Some(d) = m.dir_of("hugetlb").filter(|d| d.exists()) {
        for name in fs::read_dir_names(d)? {
            let Some(size) = name
                .strip_prefix("hugetlb.")
                .and_then(|r| r.strip_suffix(".usage_in_bytes"))
            else {
                continue;
            };
            if size.contains(".rsvd") {
                continue;
            }
            s.hugetlb.insert(
                size.to_string(),
                Hugetlb {
                    usage: fs::read_u64(d, &name)?,
                    max: fs::read_u64(d, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                    failcnt: fs::read_u64(d, &format!("hugetlb.{size}.failcnt"))?,
                },
            );
        }
    }
    Ok(s)
}

fn entry(d: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    Ok(MemoryEntry {
        limit: fs::read_u64(d, &format!("{prefix}.limit_in_bytes"))?,
        usage: fs::read_u64(d, &format!("{prefix}.usage_in_bytes"))?,
        max: fs::read_u64(d, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: fs::read_u64(d, &format!("{prefix}.failcnt"))?,
    })
}

/// `8:0 Read 4096` lines (the `Total` line has no device and is skipped).
fn blkio(d: &Path, file: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    if !d.join(file).exists() {
        return Ok(Vec::new());
    }
    Ok(fs::read(d, file)?
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let (maj, min) = p.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: p.next()?.to_string(),
                value: p.next()?.parse().ok()?,
            })
        })
        .collect())
}
