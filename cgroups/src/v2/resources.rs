//! The spec's `linux.resources` as cgroup v2 file writes.
//!
//! [`plan`] validates everything that can be checked without the host and
//! turns it into writes; the manager then checks the host has each file.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::CgroupError;
use crate::convert::{self, Write};

const R: &str = "linux.resources";

/// What `set` will do on a v2 cgroup.
#[derive(Debug, Default)]
pub struct Plan {
    /// File writes, in order.
    pub writes: Vec<Write>,
    /// Refuse a memory limit below current usage (`memory.checkBeforeUpdate`).
    pub check_limit_above_usage: Option<u64>,
}

/// Validate `res` and list the v2 writes it needs. `bfq` says whether the
/// host's io controller has `io.bfq.weight` (then weights are written as is).
pub fn plan(res: &LinuxResources, bfq: bool) -> Result<Plan, CgroupError> {
    let mut p = Plan::default();
    if let Some(m) = res.memory() {
        memory(m, &mut p)?;
    }
    if let Some(c) = res.cpu() {
        cpu(c, &mut p.writes)?;
    }
    if let Some(pids) = res.pids() {
        let field = format!("{R}.pids.limit");
        let v = match pids.limit() {
            -1 | 0 => "max".to_string(),
            l if l > 0 => l.to_string(),
            l => {
                return Err(CgroupError::invalid(
                    field,
                    format!("{l} is negative (use -1 or 0 for unlimited)"),
                ));
            }
        };
        p.writes.push(Write::new(&field, "pids.max", v));
    }
    if let Some(b) = res.block_io() {
        block_io(b, bfq, &mut p.writes)?;
    }
    if let Some(hp) = res.hugepage_limits() {
        for (i, h) in hp.iter().enumerate() {
            let field = format!("{R}.hugepageLimits[{i}]");
            convert::hugepage_kb(&format!("{field}.pageSize"), h.page_size())?;
            if h.limit() < 0 {
                return Err(CgroupError::invalid(
                    format!("{field}.limit"),
                    format!("{} is negative", h.limit()),
                ));
            }
            p.writes.push(Write::new(
                &field,
                format!("hugetlb.{}.max", h.page_size()),
                h.limit().to_string(),
            ));
        }
    }
    if let Some(rdma) = res.rdma() {
        let mut devs: Vec<_> = rdma.iter().collect();
        devs.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, r) in devs {
            let field = format!("{R}.rdma.{dev}");
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(CgroupError::invalid(field, "not a device name"));
            }
            let mut v = dev.clone();
            if let Some(h) = r.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            p.writes.push(Write::new(&field, "rdma.max", v));
        }
    }
    if let Some(n) = res.network()
        && (n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()))
    {
        return Err(CgroupError::unsupported(
            format!("{R}.network"),
            "cgroup v2 has no net_cls/net_prio controllers",
        ));
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            let field = format!("{R}.unified.{k}");
            unified_key(&field, k)?;
            p.writes.push(Write::new(&field, k.clone(), v.clone()));
        }
    }
    Ok(p)
}

/// A unified key must name a controller file in this cgroup: `<controller>.<name>`,
/// no path separators, not one of the files that move processes.
fn unified_key(field: &str, k: &str) -> Result<(), CgroupError> {
    let Some((ctrl, rest)) = k.split_once('.') else {
        return Err(CgroupError::invalid(
            field,
            "not a <controller>.<file> name",
        ));
    };
    if ctrl.is_empty() || rest.is_empty() || k.contains('/') || k.contains('\0') {
        return Err(CgroupError::invalid(
            field,
            "not a <controller>.<file> name",
        ));
    }
    if matches!(
        k,
        "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control" | "cgroup.kill"
    ) {
        return Err(CgroupError::invalid(
            field,
            "this file cannot be set through unified",
        ));
    }
    Ok(())
}

fn memory(m: &LinuxMemory, p: &mut Plan) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{R}.memory.{n}");
    let limit = match m.limit() {
        Some(l) => convert::limit(&f("limit"), l)?,
        None => None,
    };
    if let Some(swap) = m.swap() {
        if let Some(s) = convert::swap_v2(&f("swap"), swap, m.limit())? {
            p.writes
                .push(Write::new(&f("swap"), "memory.swap.max", s.v2()));
        }
    }
    if let Some(l) = limit {
        p.writes.push(Write::new(&f("limit"), "memory.max", l.v2()));
        if m.check_before_update() == Some(true)
            && let convert::Limit::Value(v) = l
        {
            p.check_limit_above_usage = Some(v);
        }
    }
    if let Some(r) = m.reservation()
        && let Some(r) = convert::limit(&f("reservation"), r)?
    {
        p.writes
            .push(Write::new(&f("reservation"), "memory.low", r.v2()));
    }
    if m.swappiness().is_some() {
        return Err(CgroupError::unsupported(
            f("swappiness"),
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if m.kernel().is_some_and(|k| k != 0) || m.kernel_tcp().is_some_and(|k| k != 0) {
        return Err(CgroupError::unsupported(
            f("kernel"),
            "cgroup v2 has no separate kernel memory limit",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(CgroupError::unsupported(
            f("disableOOMKiller"),
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(CgroupError::unsupported(
            f("useHierarchy"),
            "cgroup v2 is always hierarchical",
        ));
    }
    Ok(())
}

fn cpu(c: &LinuxCpu, w: &mut Vec<Write>) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{R}.cpu.{n}");
    if let Some(s) = c.shares()
        && let Some(s) = convert::shares(&f("shares"), s)?
    {
        w.push(Write::new(
            &f("shares"),
            "cpu.weight",
            convert::shares_to_weight(s).to_string(),
        ));
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota < -1 {
        return Err(CgroupError::invalid(
            f("quota"),
            format!("{quota} is negative (use -1 for unlimited)"),
        ));
    }
    if quota > 0 && quota < 1000 {
        return Err(CgroupError::invalid(
            f("quota"),
            format!("{quota} is below 1000 µs"),
        ));
    }
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return Err(CgroupError::invalid(
            f("period"),
            format!("{period} is outside [1000, 1000000] µs"),
        ));
    }
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        w.push(Write::new(&f("quota"), "cpu.max", v));
    }
    if let Some(b) = c.burst() {
        w.push(Write::new(&f("burst"), "cpu.max.burst", b.to_string()));
    }
    if let Some(i) = c.idle() {
        if !(0..=1).contains(&i) {
            return Err(CgroupError::invalid(
                f("idle"),
                format!("{i} is not 0 or 1"),
            ));
        }
        w.push(Write::new(&f("idle"), "cpu.idle", i.to_string()));
    }
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|r| r != 0) {
        return Err(CgroupError::unsupported(
            f("realtimeRuntime"),
            "cgroup v2 has no realtime CPU controller",
        ));
    }
    if let Some(cpus) = c.cpus()
        && let Some(v) = convert::cpuset_list(&f("cpus"), cpus)?
    {
        w.push(Write::new(&f("cpus"), "cpuset.cpus", v));
    }
    if let Some(mems) = c.mems()
        && let Some(v) = convert::cpuset_list(&f("mems"), mems)?
    {
        w.push(Write::new(&f("mems"), "cpuset.mems", v));
    }
    Ok(())
}

fn block_io(b: &LinuxBlockIo, bfq: bool, w: &mut Vec<Write>) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{R}.blockIO.{n}");
    if let Some(weight) = b.weight()
        && let Some(weight) = convert::blkio_weight(&f("weight"), weight)?
    {
        if bfq {
            w.push(Write::new(
                &f("weight"),
                "io.bfq.weight",
                weight.to_string(),
            ));
        } else {
            let v = convert::blkio_weight_to_io_weight(weight).to_string();
            w.push(Write::new(
                &f("weight"),
                "io.weight",
                format!("default {v}"),
            ));
        }
    }
    if b.leaf_weight().is_some_and(|l| l != 0) {
        return Err(CgroupError::unsupported(
            f("leafWeight"),
            "cgroup v2 has no leaf weights",
        ));
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = f(&format!("weightDevice[{i}]"));
        let maj = convert::dev_number(&format!("{field}.major"), d.major())?;
        let min = convert::dev_number(&format!("{field}.minor"), d.minor())?;
        if d.leaf_weight().is_some_and(|l| l != 0) {
            return Err(CgroupError::unsupported(
                format!("{field}.leafWeight"),
                "cgroup v2 has no leaf weights",
            ));
        }
        if let Some(weight) = d.weight()
            && let Some(weight) = convert::blkio_weight(&format!("{field}.weight"), weight)?
        {
            if bfq {
                w.push(Write::new(
                    &field,
                    "io.bfq.weight",
                    format!("{maj}:{min} {weight}"),
                ));
            } else {
                let v = convert::blkio_weight_to_io_weight(weight);
                w.push(Write::new(&field, "io.weight", format!("{maj}:{min} {v}")));
            }
        }
    }
    let throttles = [
        (
            "throttleReadBpsDevice",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ];
    for (name, key, list) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            let field = f(&format!("{name}[{i}]"));
            let maj = convert::dev_number(&format!("{field}.major"), d.major())?;
            let min = convert::dev_number(&format!("{field}.minor"), d.minor())?;
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            w.push(Write::new(
                &field,
                "io.max",
                format!("{maj}:{min} {key}={rate}"),
            ));
        }
    }
    Ok(())
}

/// The writable interface files of cgroup v2 (Documentation/admin-guide/cgroup-v2.rst,
/// Linux 6.x), for checking names when no existing cgroup has the controller
/// enabled to look at.
pub fn known_file(file: &str) -> bool {
    const FILES: &[&str] = &[
        "cgroup.type",
        "cgroup.max.descendants",
        "cgroup.max.depth",
        "cgroup.freeze",
        "cgroup.pressure",
        "cpu.weight",
        "cpu.weight.nice",
        "cpu.max",
        "cpu.max.burst",
        "cpu.idle",
        "cpu.uclamp.min",
        "cpu.uclamp.max",
        "cpu.pressure",
        "cpuset.cpus",
        "cpuset.mems",
        "cpuset.cpus.partition",
        "cpuset.cpus.exclusive",
        "memory.min",
        "memory.low",
        "memory.high",
        "memory.max",
        "memory.oom.group",
        "memory.swap.high",
        "memory.swap.max",
        "memory.zswap.max",
        "memory.zswap.writeback",
        "memory.reclaim",
        "memory.pressure",
        "memory.peak",
        "memory.swap.peak",
        "io.weight",
        "io.bfq.weight",
        "io.max",
        "io.latency",
        "io.pressure",
        "irq.pressure",
        "pids.max",
        "rdma.max",
        "misc.max",
    ];
    if FILES.contains(&file) {
        return true;
    }
    // hugetlb.<size>.max and hugetlb.<size>.rsvd.max
    file.strip_prefix("hugetlb.")
        .and_then(|r| r.strip_suffix(".max"))
        .map(|size| size.strip_suffix(".rsvd").unwrap_or(size))
        .is_some_and(|size| convert::hugepage_kb("", size).is_ok())
}

/// The controller a v2 file belongs to (`memory.max` → `memory`); core
/// `cgroup.*` files need none.
pub fn controller_of(file: &str) -> Option<&str> {
    let c = file.split('.').next()?;
    (c != "cgroup").then_some(c)
}

/// The controllers available to children of `dir` — those listed in its
/// `cgroup.controllers`.
pub fn available_controllers(dir: &Path) -> Vec<String> {
    crate::fs::read(dir, "cgroup.controllers")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("resources json")
    }

    fn files(p: &Plan) -> Vec<(String, String)> {
        p.writes
            .iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    #[test]
    fn memory_cpu_pids_map_to_v2_files() {
        let r = res(
            r#"{"memory":{"limit":104857600,"reservation":52428800,"swap":209715200},
            "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0","mems":"0","idle":0},
            "pids":{"limit":20}}"#,
        );
        let p = plan(&r, false).unwrap();
        let f = files(&p);
        for want in [
            ("memory.max", "104857600"),
            ("memory.low", "52428800"),
            ("memory.swap.max", "104857600"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0"),
            ("cpuset.mems", "0"),
            ("cpu.idle", "0"),
            ("pids.max", "20"),
        ] {
            assert!(
                f.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {f:?}"
            );
        }
    }

    #[test]
    fn unlimited_values_become_max() {
        let r = res(r#"{"memory":{"limit":-1},"cpu":{"quota":-1},"pids":{"limit":-1}}"#);
        let f = files(&plan(&r, false).unwrap());
        assert!(f.contains(&("memory.max".into(), "max".into())));
        assert!(
            f.contains(&("memory.swap.max".into(), "max".into()))
                || !f.iter().any(|x| x.0 == "memory.swap.max")
        );
        assert!(f.contains(&("cpu.max".into(), "max".into())));
        assert!(f.contains(&("pids.max".into(), "max".into())));
    }

    #[test]
    fn block_io_and_hugetlb_and_unified() {
        let r = res(
            r#"{"blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":100}],
            "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],
            "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":0}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
            "unified":{"memory.oom.group":"1","memory.high":"max"}}"#,
        );
        let f = files(&plan(&r, false).unwrap());
        for want in [
            ("io.weight", "default 4950"),
            ("io.weight", "8:0 910"),
            ("io.max", "8:0 rbps=1048576"),
            ("io.max", "8:0 wiops=max"),
            ("hugetlb.2MB.max", "4194304"),
            ("memory.oom.group", "1"),
            ("memory.high", "max"),
        ] {
            assert!(
                f.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {f:?}"
            );
        }
        let f = files(&plan(&r, true).unwrap());
        assert!(f.contains(&("io.bfq.weight".into(), "500".into())), "{f:?}");
    }

    #[test]
    fn known_files_cover_what_plan_writes() {
        for f in [
            "memory.max",
            "cpu.max",
            "pids.max",
            "hugetlb.2MB.max",
            "hugetlb.1GB.rsvd.max",
            "cgroup.freeze",
        ] {
            assert!(known_file(f), "{f}");
        }
        for f in [
            "memory.nosuch",
            "hugetlb.3XB.max",
            "cgroup.procs",
            "cpu.stat",
        ] {
            assert!(!known_file(f), "{f}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (r#"{"memory":{"limit":-2}}"#, "linux.resources.memory.limit"),
            (
                r#"{"memory":{"limit":100,"swap":50}}"#,
                "linux.resources.memory.swap",
            ),
            (
                r#"{"memory":{"swappiness":10}}"#,
                "linux.resources.memory.swappiness",
            ),
            (r#"{"cpu":{"shares":1}}"#, "linux.resources.cpu.shares"),
            (r#"{"cpu":{"quota":-5}}"#, "linux.resources.cpu.quota"),
            (r#"{"cpu":{"period":10}}"#, "linux.resources.cpu.period"),
            (r#"{"cpu":{"cpus":"zero"}}"#, "linux.resources.cpu.cpus"),
            (r#"{"pids":{"limit":-3}}"#, "linux.resources.pids.limit"),
            (
                r#"{"blockIO":{"weight":5}}"#,
                "linux.resources.blockIO.weight",
            ),
            (
                r#"{"blockIO":{"throttleReadBpsDevice":[{"major":-1,"minor":0,"rate":1}]}}"#,
                "linux.resources.blockIO.throttleReadBpsDevice[0].major",
            ),
            (
                r#"{"hugepageLimits":[{"pageSize":"2XB","limit":1}]}"#,
                "linux.resources.hugepageLimits[0].pageSize",
            ),
            (
                r#"{"unified":{"memory/../x":"1"}}"#,
                "linux.resources.unified.memory/../x",
            ),
            (
                r#"{"unified":{"cgroup.procs":"1"}}"#,
                "linux.resources.unified.cgroup.procs",
            ),
            (
                r#"{"unified":{"nodot":"1"}}"#,
                "linux.resources.unified.nodot",
            ),
        ] {
            let e = plan(&res(json), false).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}: ")), "{json}: {e}");
        }
    }
}
