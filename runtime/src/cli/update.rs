//! `husk update`: change a running container's resource limits, from a
//! `linux.resources` JSON document (`--resources FILE|-`) and/or runc's
//! single-value flags. The new values are validated (errors name the field),
//! written to the cgroup, and merged into the saved config.json so later
//! updates build on them.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, Spec};

use super::args::{Flag, Matches, UsageError, value};
use crate::cgroups;
use crate::state::{Status, Store};

/// `husk update`'s flags.
pub const FLAGS: &[Flag] = &[
    value(
        "resources",
        b'r',
        "New resources as linux.resources JSON, from FILE or stdin (-)",
    ),
    value(
        "memory",
        0,
        "Memory limit in bytes (suffixes k, m, g, t; -1 for unlimited)",
    ),
    value(
        "memory-swap",
        0,
        "Memory plus swap limit in bytes (-1 for unlimited)",
    ),
    value("memory-reservation", 0, "Memory soft limit in bytes"),
    value("cpu-shares", 0, "CPU shares (relative weight)"),
    value(
        "cpu-quota",
        0,
        "CPU CFS quota in microseconds per period (-1: unlimited)",
    ),
    value("cpu-period", 0, "CPU CFS period in microseconds"),
    value("cpuset-cpus", 0, "CPUs the container may run on (0-3, 0,1)"),
    value(
        "cpuset-mems",
        0,
        "Memory nodes the container may use (0-3, 0,1)",
    ),
    value(
        "pids-limit",
        0,
        "Maximum number of tasks (-1 for unlimited)",
    ),
    value("blkio-weight", 0, "Block IO weight (10-1000)"),
];

#[derive(Debug, Default)]
pub struct Args {
    /// New resources as linux.resources JSON, from FILE or stdin ("-").
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g, t; -1 for unlimited).
    pub memory: Option<String>,
    /// Memory plus swap limit in bytes (-1 for unlimited swap).
    pub memory_swap: Option<String>,
    /// Memory soft limit in bytes.
    pub memory_reservation: Option<String>,
    /// CPU shares (relative weight).
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1 for unlimited).
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (0-3, 0,1).
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1 for unlimited).
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    pub blkio_weight: Option<u16>,
    /// The container id.
    pub id: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Result<Self, UsageError> {
        let s = |long| m.get(long).map(String::from);
        Ok(Self {
            resources: m.path("resources"),
            memory: s("memory"),
            memory_swap: s("memory-swap"),
            memory_reservation: s("memory-reservation"),
            cpu_shares: m.num("cpu-shares")?,
            cpu_quota: m.num("cpu-quota")?,
            cpu_period: m.num("cpu-period")?,
            cpuset_cpus: s("cpuset-cpus"),
            cpuset_mems: s("cpuset-mems"),
            pids_limit: m.num("pids-limit")?,
            blkio_weight: m.num("blkio-weight")?,
            id: m.arg(0),
        })
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let update = requested(&a)?;
    let ctx = || format!("container {}", a.id);
    let locked = store.open(&a.id).with_context(ctx)?;
    let state = locked.load().with_context(ctx)?;
    let status = locked.status(&state);
    if status == Status::Stopped {
        anyhow::bail!("container {} is not running", a.id);
    }
    let mut spec = crate::container::load_spec(&locked).with_context(ctx)?;
    let stored = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut to_set = update.clone();
    // cgroup v2 stores swap apart from memory: a new memory+swap total needs
    // the memory limit it is relative to.
    if let Some(m) = to_set.memory_mut()
        && m.swap().is_some()
        && m.limit().is_none()
    {
        m.set_limit(stored.memory().as_ref().and_then(|s| s.limit()));
    }
    let merged = merge(stored, &update);
    // The managers apply exactly the device rules they are given (on v2 they
    // replace the whole filter), so new rules go in as the container's whole
    // device policy, deny-all first and runc's defaults last, as at create.
    if update.devices().is_some() {
        let policy = cgroups::devices::container_resources(Some(&merged));
        to_set.set_devices(policy.devices().clone());
    }
    let cg = cgroups::open(state.cgroups_path.as_deref(), &a.id).with_context(ctx)?;
    cg.validate(&to_set).with_context(ctx)?;
    cg.set(&to_set).with_context(ctx)?;
    save(&locked, &mut spec, merged).with_context(ctx)?;
    Ok(0)
}

/// The resources the command line asks for: the JSON document, then the flags on top.
fn requested(a: &Args) -> anyhow::Result<LinuxResources> {
    let mut r: LinuxResources = match &a.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let mut raw = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut raw)
                    .context("--resources: read stdin")?;
            } else {
                raw = std::fs::read_to_string(p)
                    .with_context(|| format!("--resources: read {}", p.display()))?;
            }
            serde_json::from_str(&raw)
                .context("--resources: not a linux.resources JSON document")?
        }
    };
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_size("--memory", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_size("--memory-swap", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_size("--memory-reservation", v)?));
        }
        r.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            c.set_shares(a.cpu_shares);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(c));
    }
    if let Some(l) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// A byte size as runc's flags take it: `1024`, `64k`, `128m`, `1g`, `-1`.
pub fn parse_size(flag: &str, s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag}: {s:?} is not a size like 1024, 64k, 128m or 1g"))?;
    Ok((n * mult as f64) as i64)
}

/// `stored` with every value the update sets replaced.
fn merge(mut stored: LinuxResources, u: &LinuxResources) -> LinuxResources {
    if let Some(um) = u.memory() {
        let mut m: LinuxMemory = (*stored.memory()).unwrap_or_default();
        macro_rules! take {
            ($($f:ident, $set:ident);*) => {$(if um.$f().is_some() { m.$set(um.$f()); })*};
        }
        take!(limit, set_limit; reservation, set_reservation; swap, set_swap;
              kernel, set_kernel; kernel_tcp, set_kernel_tcp; swappiness, set_swappiness;
              disable_oom_killer, set_disable_oom_killer; use_hierarchy, set_use_hierarchy;
              check_before_update, set_check_before_update);
        stored.set_memory(Some(m));
    }
    if let Some(uc) = u.cpu() {
        let mut c: LinuxCpu = stored.cpu().clone().unwrap_or_default();
        macro_rules! take {
            ($($f:ident, $set:ident);*) => {$(if uc.$f().is_some() { c.$set(uc.$f()); })*};
        }
        take!(shares, set_shares; quota, set_quota; period, set_period; burst, set_burst;
              idle, set_idle; realtime_runtime, set_realtime_runtime;
              realtime_period, set_realtime_period);
        if uc.cpus().is_some() {
            c.set_cpus(uc.cpus().clone());
        }
        if uc.mems().is_some() {
            c.set_mems(uc.mems().clone());
        }
        stored.set_cpu(Some(c));
    }
    if u.pids().is_some() {
        stored.set_pids(*u.pids());
    }
    if let Some(ub) = u.block_io() {
        let mut b: LinuxBlockIo = stored.block_io().clone().unwrap_or_default();
        if ub.weight().is_some() {
            b.set_weight(ub.weight());
        }
        if ub.leaf_weight().is_some() {
            b.set_leaf_weight(ub.leaf_weight());
        }
        if ub.weight_device().is_some() {
            b.set_weight_device(ub.weight_device().clone());
        }
        if ub.throttle_read_bps_device().is_some() {
            b.set_throttle_read_bps_device(ub.throttle_read_bps_device().clone());
        }
        if ub.throttle_write_bps_device().is_some() {
            b.set_throttle_write_bps_device(ub.throttle_write_bps_device().clone());
        }
        if ub.throttle_read_iops_device().is_some() {
            b.set_throttle_read_iops_device(ub.throttle_read_iops_device().clone());
        }
        if ub.throttle_write_iops_device().is_some() {
            b.set_throttle_write_iops_device(ub.throttle_write_iops_device().clone());
        }
        stored.set_block_io(Some(b));
    }
    if u.devices().is_some() {
        stored.set_devices(u.devices().clone());
    }
    if u.hugepage_limits().is_some() {
        stored.set_hugepage_limits(u.hugepage_limits().clone());
    }
    if u.network().is_some() {
        stored.set_network(u.network().clone());
    }
    if u.rdma().is_some() {
        stored.set_rdma(u.rdma().clone());
    }
    if let Some(uu) = u.unified() {
        let mut all = stored.unified().clone().unwrap_or_default();
        all.extend(uu.clone());
        stored.set_unified(Some(all));
    }
    stored
}

fn save(locked: &crate::state::Locked, spec: &mut Spec, r: LinuxResources) -> anyhow::Result<()> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(r));
    spec.set_linux(Some(linux));
    let json = serde_json::to_vec(spec).context("serialise config.json")?;
    locked
        .write_atomic(crate::state::CONFIG_FILE, &json)
        .context("save config.json")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_size("f", "1024").unwrap(), 1024);
        assert_eq!(parse_size("f", "64k").unwrap(), 65536);
        assert_eq!(parse_size("f", "128m").unwrap(), 128 << 20);
        assert_eq!(parse_size("f", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("f", "2mb").unwrap(), 2 << 20);
        assert_eq!(parse_size("f", "-1").unwrap(), -1);
        assert_eq!(parse_size("f", "-5").unwrap(), -5);
        assert!(
            parse_size("--memory", "lots")
                .unwrap_err()
                .to_string()
                .starts_with("--memory: ")
        );
    }

    #[test]
    fn flags_override_the_document_and_merge_keeps_the_rest() {
        let a = Args {
            memory: Some("256m".into()),
            pids_limit: Some(7),
            cpu_quota: Some(-1),
            id: "x".into(),
            ..Default::default()
        };
        let u = requested(&a).unwrap();
        assert_eq!(u.memory().as_ref().unwrap().limit(), Some(256 << 20));
        assert_eq!(u.pids().unwrap().limit(), 7);
        let stored: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1,"reservation":2},"cpu":{"shares":512,"quota":5000},"devices":[{"allow":false,"access":"rwm"}]}"#,
        )
        .unwrap();
        let m = merge(stored, &u);
        assert_eq!(m.memory().as_ref().unwrap().limit(), Some(256 << 20));
        assert_eq!(m.memory().as_ref().unwrap().reservation(), Some(2));
        assert_eq!(m.cpu().as_ref().unwrap().shares(), Some(512));
        assert_eq!(m.cpu().as_ref().unwrap().quota(), Some(-1));
        assert_eq!(m.devices().as_ref().unwrap().len(), 1);
        assert_eq!(m.pids().unwrap().limit(), 7);
    }
}
