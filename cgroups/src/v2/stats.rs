//! Reading a v2 cgroup's statistics (runc's fs2 stats).

use std::path::Path;

use crate::stats::{BlkioEntry, Hugetlb, Stats, parse_list};
use crate::{CgroupError, fs};

/// The statistics of the cgroup at `dir`; controllers that are not enabled
/// there are left at zero.
pub fn read(dir: &Path) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    // cpu.stat exists in every v2 cgroup (usage is core accounting).
    for (k, v) in fs::read_keyed(dir, "cpu.stat")? {
        match k.as_str() {
            "usage_usec" => s.cpu.usage.total = v * 1000,
            "user_usec" => s.cpu.usage.user = v * 1000,
            "system_usec" => s.cpu.usage.kernel = v * 1000,
            "nr_periods" => s.cpu.throttling.periods = v,
            "nr_throttled" => s.cpu.throttling.throttled_periods = v,
            "throttled_usec" => s.cpu.throttling.throttled_time = v * 1000,
            _ => {}
        }
    }
    if let Ok(c) = fs::read(dir, "cpuset.cpus.effective") {
        s.cpuset.cpus = parse_list(&c);
    }
    if let Ok(m) = fs::read(dir, "cpuset.mems.effective") {
        s.cpuset.mems = parse_list(&m);
    }
    if dir.join("memory.current").exists() {
        let current = fs::read_u64(dir, "memory.current")?;
        s.memory.usage.usage = current;
        s.memory.usage.limit = fs::read_u64(dir, "memory.max")?;
        if let Ok(peak) = fs::read_u64(dir, "memory.peak") {
            s.memory.usage.max = peak;
        }
        if let Ok(Some(oom)) = fs::keyed_value(dir, "memory.events", "max") {
            s.memory.usage.failcnt = oom;
        }
        for (k, v) in fs::read_keyed(dir, "memory.stat")? {
            if k == "file" {
                s.memory.cache = v;
            }
            s.memory.raw.insert(k, v);
        }
        if let Ok(Some(oom_kill)) = fs::keyed_value(dir, "memory.events", "oom_kill") {
            s.memory.raw.insert("oom_kill".into(), oom_kill);
        }
        if dir.join("memory.swap.current").exists() {
            // runc reports swap as memory+swap, like v1's memsw.
            let swap = fs::read_u64(dir, "memory.swap.current")?;
            let swap_max = fs::read_u64(dir, "memory.swap.max")?;
            s.memory.swap.usage = current + swap;
            s.memory.swap.limit = if swap_max == u64::MAX || s.memory.usage.limit == u64::MAX {
                u64::MAX
            } else {
                s.memory.usage.limit + swap_max
            };
        }
    }
    if dir.join("pids.current").exists() {
        s.pids.current = fs::read_u64(dir, "pids.current")?;
        let max = fs::read_u64(dir, "pids.max")?;
        s.pids.limit = if max == u64::MAX { 0 } else { max };
    }
    if let Ok(io) = fs::read(dir, "io.stat") {
        for line in io.lines() {
            let mut parts = line.split_whitespace();
            let Some((maj, min)) = parts.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
                continue;
            };
            for kv in parts {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    for entry in fs::read_dir_names(dir)? {
        // hugetlb.<size>.current / .max / .events
        let Some(size) = entry
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(".current"))
        else {
            continue;
        };
        // hugetlb.<size>.rsvd.current is the reservation accounting: skip it.
        if size.contains('.') {
            continue;
        }
        let max = fs::read_u64(dir, &format!("hugetlb.{size}.max"))?;
        let failcnt = fs::keyed_value(dir, &format!("hugetlb.{size}.events"), "max")?.unwrap_or(0);
        s.hugetlb.insert(
            size.to_string(),
            Hugetlb {
                usage: fs::read_u64(dir, &entry)?,
                max,
                failcnt,
            },
        );
    }
    Ok(s)
}
