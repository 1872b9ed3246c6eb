//! What the node reports about itself: capacity, system info, pressure.
//! Read from /proc and the filesystem, as kubelet's cadvisor-backed
//! collectors do.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::NodeSystemInfo;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The Kubernetes version whose kubelet API husklet implements, reported as
/// `nodeInfo.kubeletVersion` with husklet's own version as build metadata.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// `nodeInfo.kubeletVersion`.
pub fn kubelet_version() -> String {
    format!("{KUBELET_VERSION}+husk-{}", env!("CARGO_PKG_VERSION"))
}

/// Logical CPUs online.
pub fn cpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as i64
}

fn meminfo(field: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|kb| kb * 1024)
}

/// MemTotal in bytes.
pub fn memory_total() -> i64 {
    meminfo("MemTotal:").unwrap_or(0)
}

/// MemAvailable in bytes.
pub fn memory_available() -> i64 {
    meminfo("MemAvailable:").unwrap_or(i64::MAX)
}

/// Total and available bytes of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> (i64, i64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(st) => {
            let f = st.fragment_size() as i64;
            (st.blocks() as i64 * f, st.blocks_available() as i64 * f)
        }
        Err(_) => (0, 0),
    }
}

/// The node's capacity: cpu, memory, pods, ephemeral-storage (of `root`).
pub fn capacity(max_pods: u32, root: &Path) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus().to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", memory_total() / 1024)),
        ),
        ("pods".to_string(), Quantity(max_pods.to_string())),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", fs_space(root).0 / 1024)),
        ),
    ])
}

/// Kubernetes' name of the machine architecture (GOARCH).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `status.nodeInfo`.
pub fn system_info(runtime_version: &str) -> NodeSystemInfo {
    let uname = nix::sys::utsname::uname().ok();
    NodeSystemInfo {
        architecture: arch().into(),
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: runtime_version.into(),
        kernel_version: uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        kube_proxy_version: String::new(),
        kubelet_version: kubelet_version(),
        machine_id: read_trim("/etc/machine-id"),
        operating_system: "linux".into(),
        os_image: os_image(),
        system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
        swap: None,
    }
}

/// The node's IP when `--node-ip` is not given: as kubelet, the address of
/// the interface that routes to the default gateway, else the first
/// non-loopback IPv4 address.
pub fn detect_node_ip() -> Option<IpAddr> {
    // A UDP "connect" only picks the route; nothing is sent.
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified());
    routed.or_else(|| {
        nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
            addrs
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
                .find(|ip| !ip.is_loopback())
        })
    })
}

/// A hard eviction threshold: an amount, or a share of the capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Bytes(i64),
    Percent(f64),
}

impl Threshold {
    fn crossed(self, available: i64, capacity: i64) -> bool {
        match self {
            Threshold::Bytes(b) => available < b,
            Threshold::Percent(p) => {
                capacity > 0 && (available as f64) < capacity as f64 * p / 100.0
            }
        }
    }
}

/// kubelet's `--eviction-hard` signals that set the pressure conditions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eviction {
    pub memory_available: Threshold,
    pub nodefs_available: Threshold,
    pub pid_available: Threshold,
}

impl Default for Eviction {
    /// kubelet's defaults (memory.available<100Mi, nodefs.available<10%);
    /// pid.available has none there: 10% here.
    fn default() -> Self {
        Eviction {
            memory_available: Threshold::Bytes(100 * 1024 * 1024),
            nodefs_available: Threshold::Percent(10.0),
            pid_available: Threshold::Percent(10.0),
        }
    }
}

impl std::str::FromStr for Eviction {
    type Err = String;

    /// `signal<value,...` with signals memory.available, nodefs.available
    /// and pid.available; a value is a quantity or N%. Unnamed signals keep
    /// their defaults.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut e = Eviction::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (signal, value) = part
                .split_once('<')
                .ok_or_else(|| format!("{part:?}: expected signal<value"))?;
            let t = match value.strip_suffix('%') {
                Some(p) => {
                    Threshold::Percent(p.parse::<f64>().map_err(|err| format!("{part:?}: {err}"))?)
                }
                None => Threshold::Bytes(
                    crate::pod::quantity::Quantity::parse(value)
                        .map_err(|err| format!("{part:?}: {err}"))?
                        .value(),
                ),
            };
            match signal {
                "memory.available" => e.memory_available = t,
                "nodefs.available" => e.nodefs_available = t,
                "pid.available" => e.pid_available = t,
                other => return Err(format!("{other}: unknown eviction signal")),
            }
        }
        Ok(e)
    }
}

/// `--system-reserved` / `--kube-reserved`: what the node keeps back from
/// pods (`cpu=100m,memory=256Mi,ephemeral-storage=1Gi,pid=1000`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    /// Millicores.
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Process IDs (they limit the pod cgroups' pids in kubelet; the Node
    /// has no pid capacity to subtract them from).
    pub pid: i64,
}

impl std::str::FromStr for Reserved {
    type Err = String;

    /// `resource=quantity,...` for cpu, memory, ephemeral-storage and pid,
    /// as kubelet's `ParseResourceList`: unknown resources and negative
    /// quantities are refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut r = Reserved::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected resource=quantity"))?;
            let q = crate::pod::quantity::Quantity::parse(value)
                .map_err(|err| format!("{part:?}: {err}"))?;
            if q.is_negative() {
                return Err(format!(
                    "resource quantity for {name:?} cannot be negative: {value}"
                ));
            }
            match name {
                "cpu" => r.milli_cpu = q.milli_value(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pid" => r.pid = q.value(),
                other => return Err(format!("cannot reserve {other:?} resource")),
            }
        }
        Ok(r)
    }
}

/// A byte quantity as the apiserver would write it (`Ki` when exact).
fn bytes(v: i64) -> Quantity {
    if v != 0 && v % 1024 == 0 {
        Quantity(format!("{}Ki", v / 1024))
    } else {
        Quantity(v.to_string())
    }
}

/// kubelet's `hardEvictionReservation` for one signal: the threshold as
/// an amount (a percentage of `capacity`, rounded down).
fn eviction_reservation(t: Threshold, capacity: i64) -> i64 {
    match t {
        Threshold::Bytes(b) => b,
        Threshold::Percent(p) => (capacity as f64 * p / 100.0) as i64,
    }
}

/// `status.allocatable`, as kubelet computes it: each resource of
/// `capacity` less the system and kube reservations and the hard eviction
/// threshold (memory.available for memory, nodefs.available for
/// ephemeral-storage); never below zero.
pub fn allocatable(
    capacity: &BTreeMap<String, Quantity>,
    system: &Reserved,
    kube: &Reserved,
    eviction: &Eviction,
) -> BTreeMap<String, Quantity> {
    let parse = |q: &Quantity| crate::pod::quantity::Quantity::parse(&q.0).ok();
    capacity
        .iter()
        .map(|(name, q)| {
            let out = match (name.as_str(), parse(q)) {
                ("cpu", Some(c)) => {
                    let m = c.milli_value() - system.milli_cpu - kube.milli_cpu;
                    Quantity(crate::pod::quantity::Quantity::from_milli(m.max(0)).to_string())
                }
                ("memory", Some(c)) => {
                    let cap = c.value();
                    let e = eviction_reservation(eviction.memory_available, cap);
                    bytes((cap - system.memory - kube.memory - e).max(0))
                }
                ("ephemeral-storage", Some(c)) => {
                    let cap = c.value();
                    let e = eviction_reservation(eviction.nodefs_available, cap);
                    bytes((cap - system.ephemeral_storage - kube.ephemeral_storage - e).max(0))
                }
                _ => q.clone(),
            };
            (name.clone(), out)
        })
        .collect()
}

/// Pressure signals against the hard eviction thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The node's pressure now.
pub fn pressure(root: &Path, e: &Eviction) -> Pressure {
    let (total, avail) = fs_space(root);
    let pid_max: i64 = read_trim("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(i64::MAX);
    // /proc/loadavg's fourth field is running/total scheduling entities.
    let threads: i64 = read_trim("/proc/loadavg")
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Pressure {
        memory: e
            .memory_available
            .crossed(memory_available(), memory_total()),
        disk: e.nodefs_available.crossed(avail, total),
        pid: e.pid_available.crossed(pid_max - threads, pid_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_thresholds() {
        let e: Eviction = "memory.available<1Gi, nodefs.available<5%".parse().unwrap();
        assert_eq!(e.memory_available, Threshold::Bytes(1 << 30));
        assert_eq!(e.nodefs_available, Threshold::Percent(5.0));
        assert_eq!(e.pid_available, Threshold::Percent(10.0));
        assert!("imagefs.available<1%".parse::<Eviction>().is_err());
        assert!("memory.available=1".parse::<Eviction>().is_err());
        assert!(Threshold::Percent(10.0).crossed(9, 100));
        assert!(!Threshold::Percent(10.0).crossed(10, 100));
        assert!(Threshold::Bytes(5).crossed(4, 100));
    }

    #[test]
    fn reserved_flags() {
        let r: Reserved = "cpu=100m,memory=256Mi,ephemeral-storage=1Gi,pid=1000"
            .parse()
            .unwrap();
        assert_eq!(
            r,
            Reserved {
                milli_cpu: 100,
                memory: 256 << 20,
                ephemeral_storage: 1 << 30,
                pid: 1000
            }
        );
        assert_eq!("".parse::<Reserved>().unwrap(), Reserved::default());
        let err = "gpu=1".parse::<Reserved>().unwrap_err();
        assert_eq!(err, "cannot reserve \"gpu\" resource");
        assert!(
            "cpu=-1"
                .parse::<Reserved>()
                .unwrap_err()
                .contains("negative")
        );
        assert!("memory=lots".parse::<Reserved>().is_err());
        assert!("cpu".parse::<Reserved>().is_err());
    }

    #[test]
    fn allocatable_is_capacity_less_reservations_and_eviction() {
        let capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
            ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
            ("pods".to_string(), Quantity("110".into())),
        ]);
        let system: Reserved = "cpu=500m,memory=1Gi,ephemeral-storage=5Gi".parse().unwrap();
        let kube: Reserved = "cpu=250m,memory=512Mi,pid=100".parse().unwrap();
        let eviction: Eviction = "memory.available<100Mi,nodefs.available<10%"
            .parse()
            .unwrap();
        let a = allocatable(&capacity, &system, &kube, &eviction);
        assert_eq!(a["cpu"].0, "3250m");
        // 8Gi - 1Gi - 512Mi - 100Mi = 6556Mi.
        assert_eq!(a["memory"].0, format!("{}Ki", 6556 * 1024));
        // 100Gi - 5Gi - 10 % of 100Gi = 85Gi.
        assert_eq!(a["ephemeral-storage"].0, format!("{}Ki", 85 * 1024 * 1024));
        assert_eq!(a["pods"].0, "110");
        // More reserved than there is: zero, not negative.
        let greedy: Reserved = "cpu=8,memory=16Gi".parse().unwrap();
        let a = allocatable(&capacity, &greedy, &Reserved::default(), &eviction);
        assert_eq!(a["cpu"].0, "0");
        assert_eq!(a["memory"].0, "0");
    }
}
