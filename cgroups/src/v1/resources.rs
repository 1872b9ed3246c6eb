//! The spec's `linux.resources` as cgroup v1 file writes (runc's fs driver).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::CgroupError;
use crate::convert::{self, Write};
use crate::devices;

const R: &str = "linux.resources";

/// Validate `res` and list the v1 writes it needs, in order. `bfq` says
/// whether the blkio hierarchy has `blkio.bfq.weight` instead of `blkio.weight`.
pub fn plan(res: &LinuxResources, bfq: bool) -> Result<Vec<Write>, CgroupError> {
    let mut w = Vec::new();
    if let Some(d) = res.devices() {
        let rules = devices::rules(d)?;
        for (i, r) in rules.iter().enumerate() {
            let file = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            w.push(Write::new(&format!("{R}.devices[{i}]"), file, r.v1_line()));
        }
    }
    if let Some(m) = res.memory() {
        memory(m, &mut w)?;
    }
    if let Some(c) = res.cpu() {
        cpu(c, &mut w)?;
    }
    if let Some(p) = res.pids() {
        let field = format!("{R}.pids.limit");
        let v = match p.limit() {
            -1 | 0 => "max".to_string(),
            l if l > 0 => l.to_string(),
            l => {
                return Err(CgroupError::invalid(
                    field,
                    format!("{l} is negative (use -1 or 0 for unlimited)"),
                ));
            }
        };
        w.push(Write::new(&field, "pids.max", v));
    }
    if let Some(b) = res.block_io() {
        block_io(b, bfq, &mut w)?;
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
            w.push(Write::new(
                &field,
                format!("hugetlb.{}.limit_in_bytes", h.page_size()),
                h.limit().to_string(),
            ));
        }
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            w.push(Write::new(
                &format!("{R}.network.classID"),
                "net_cls.classid",
                id.to_string(),
            ));
        }
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            w.push(Write::new(
                &format!("{R}.network.priorities[{i}]"),
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    if let Some(rdma) = res.rdma() {
        let mut devs: Vec<_> = rdma.iter().collect();
        devs.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, r) in devs {
            let mut v = dev.clone();
            if let Some(h) = r.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            w.push(Write::new(&format!("{R}.rdma.{dev}"), "rdma.max", v));
        }
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::unsupported(
            format!("{R}.unified"),
            "unified (cgroup v2) keys need a cgroup v2 host; this one is v1",
        ));
    }
    Ok(w)
}

fn memory(m: &LinuxMemory, w: &mut Vec<Write>) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{R}.memory.{n}");
    let limit = m
        .limit()
        .map(|l| convert::limit(&f("limit"), l))
        .transpose()?
        .flatten();
    if let Some(l) = limit {
        w.push(Write::new(&f("limit"), "memory.limit_in_bytes", l.v1()));
    }
    if let Some(s) = m.swap()
        && let Some(s) = convert::limit(&f("swap"), s)?
    {
        if let (convert::Limit::Value(sv), Some(convert::Limit::Value(lv))) = (s, limit)
            && sv < lv
        {
            return Err(CgroupError::invalid(
                f("swap"),
                format!("memory+swap {sv} is below the memory limit {lv}"),
            ));
        }
        w.push(Write::new(
            &f("swap"),
            "memory.memsw.limit_in_bytes",
            s.v1(),
        ));
    }
    if let Some(r) = m.reservation()
        && let Some(r) = convert::limit(&f("reservation"), r)?
    {
        w.push(Write::new(
            &f("reservation"),
            "memory.soft_limit_in_bytes",
            r.v1(),
        ));
    }
    if let Some(k) = m.kernel()
        && let Some(k) = convert::limit(&f("kernel"), k)?
    {
        w.push(Write::new(
            &f("kernel"),
            "memory.kmem.limit_in_bytes",
            k.v1(),
        ));
    }
    if let Some(k) = m.kernel_tcp()
        && let Some(k) = convert::limit(&f("kernelTCP"), k)?
    {
        w.push(Write::new(
            &f("kernelTCP"),
            "memory.kmem.tcp.limit_in_bytes",
            k.v1(),
        ));
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::invalid(
                f("swappiness"),
                format!("{s} is above 100"),
            ));
        }
        w.push(Write::new(
            &f("swappiness"),
            "memory.swappiness",
            s.to_string(),
        ));
    }
    if let Some(d) = m.disable_oom_killer() {
        w.push(Write::new(
            &f("disableOOMKiller"),
            "memory.oom_control",
            u8::from(d).to_string(),
        ));
    }
    if let Some(h) = m.use_hierarchy() {
        w.push(Write::new(
            &f("useHierarchy"),
            "memory.use_hierarchy",
            u8::from(h).to_string(),
        ));
    }
    Ok(())
}

fn cpu(c: &LinuxCpu, w: &mut Vec<Write>) -> Result<(), CgroupError> {
    let f = |n: &str| format!("{R}.cpu.{n}");
    if let Some(s) = c.shares()
        && let Some(s) = convert::shares(&f("shares"), s)?
    {
        w.push(Write::new(&f("shares"), "cpu.shares", s.to_string()));
    }
    if let Some(p) = c.period().filter(|&p| p != 0) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(CgroupError::invalid(
                f("period"),
                format!("{p} is outside [1000, 1000000] µs"),
            ));
        }
        w.push(Write::new(&f("period"), "cpu.cfs_period_us", p.to_string()));
    }
    if let Some(q) = c.quota().filter(|&q| q != 0) {
        if q < -1 {
            return Err(CgroupError::invalid(
                f("quota"),
                format!("{q} is negative (use -1 for unlimited)"),
            ));
        }
        if q > 0 && q < 1000 {
            return Err(CgroupError::invalid(
                f("quota"),
                format!("{q} is below 1000 µs"),
            ));
        }
        w.push(Write::new(&f("quota"), "cpu.cfs_quota_us", q.to_string()));
    }
    if let Some(b) = c.burst() {
        w.push(Write::new(&f("burst"), "cpu.cfs_burst_us", b.to_string()));
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
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        w.push(Write::new(
            &f("realtimePeriod"),
            "cpu.rt_period_us",
            p.to_string(),
        ));
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        if r < -1 {
            return Err(CgroupError::invalid(
                f("realtimeRuntime"),
                format!("{r} is negative"),
            ));
        }
        w.push(Write::new(
            &f("realtimeRuntime"),
            "cpu.rt_runtime_us",
            r.to_string(),
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
    let (weight_file, weight_dev_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(weight) = b.weight()
        && let Some(weight) = convert::blkio_weight(&f("weight"), weight)?
    {
        w.push(Write::new(&f("weight"), weight_file, weight.to_string()));
    }
    if let Some(l) = b.leaf_weight()
        && let Some(l) = convert::blkio_weight(&f("leafWeight"), l)?
    {
        w.push(Write::new(
            &f("leafWeight"),
            "blkio.leaf_weight",
            l.to_string(),
        ));
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = f(&format!("weightDevice[{i}]"));
        let maj = convert::dev_number(&format!("{field}.major"), d.major())?;
        let min = convert::dev_number(&format!("{field}.minor"), d.minor())?;
        if let Some(weight) = d.weight()
            && let Some(weight) = convert::blkio_weight(&format!("{field}.weight"), weight)?
        {
            w.push(Write::new(
                &field,
                weight_dev_file,
                format!("{maj}:{min} {weight}"),
            ));
        }
        if let Some(l) = d.leaf_weight()
            && let Some(l) = convert::blkio_weight(&format!("{field}.leafWeight"), l)?
        {
            w.push(Write::new(
                &field,
                "blkio.leaf_weight_device",
                format!("{maj}:{min} {l}"),
            ));
        }
    }
    let throttles = [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (name, file, list) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            let field = f(&format!("{name}[{i}]"));
            let maj = convert::dev_number(&format!("{field}.major"), d.major())?;
            let min = convert::dev_number(&format!("{field}.minor"), d.minor())?;
            w.push(Write::new(
                &field,
                file,
                format!("{maj}:{min} {}", d.rate()),
            ));
        }
    }
    Ok(())
}

/// The v1 controller a file belongs to (`memory.limit_in_bytes` → `memory`).
pub fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("resources json")
    }

    #[test]
    fn maps_to_v1_files() {
        let r = res(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}],
            "memory":{"limit":104857600,"swap":209715200,"reservation":1000,"swappiness":10},
            "cpu":{"shares":512,"quota":-1,"period":100000,"cpus":"0"},
            "pids":{"limit":0},"blockIO":{"weight":100,"throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":10}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#,
        );
        let w: Vec<(String, String)> = plan(&r, false)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        for want in [
            ("devices.deny", "a"),
            ("devices.allow", "c 1:3 rw"),
            ("memory.limit_in_bytes", "104857600"),
            ("memory.memsw.limit_in_bytes", "209715200"),
            ("memory.soft_limit_in_bytes", "1000"),
            ("memory.swappiness", "10"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpuset.cpus", "0"),
            ("pids.max", "max"),
            ("blkio.weight", "100"),
            ("blkio.throttle.write_bps_device", "8:0 10"),
            ("hugetlb.2MB.limit_in_bytes", "0"),
        ] {
            assert!(
                w.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {w:?}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (r#"{"memory":{"limit":-9}}"#, "linux.resources.memory.limit"),
            (
                r#"{"memory":{"limit":100,"swap":10}}"#,
                "linux.resources.memory.swap",
            ),
            (
                r#"{"memory":{"swappiness":101}}"#,
                "linux.resources.memory.swappiness",
            ),
            (r#"{"cpu":{"quota":-2}}"#, "linux.resources.cpu.quota"),
            (r#"{"pids":{"limit":-2}}"#, "linux.resources.pids.limit"),
            (
                r#"{"unified":{"memory.max":"1"}}"#,
                "linux.resources.unified",
            ),
            (
                r#"{"devices":[{"allow":true,"access":"rwx"}]}"#,
                "linux.resources.devices[0].access",
            ),
        ] {
            let e = plan(&res(json), false).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}: ")), "{json}: {e}");
        }
    }
}
