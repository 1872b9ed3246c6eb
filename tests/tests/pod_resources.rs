//! Resources end to end, as Kubernetes documents them: the QoS class of a
//! pod, its cgroup under `kubepods[/burstable|/besteffort]/pod<uid>`, the
//! container's cpu and memory limits in the cgroup files, and
//! oom_score_adj per QoS class.

use std::path::PathBuf;
use std::time::Duration;

use husk_tests::cgroup::{hierarchies, is_v2};
use husk_tests::pods::{PodNode, condition};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn pod(name: &str, resources: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    resources: {resources}
"#
    )
}

/// The hierarchy holding `file` (v1: the controller's; v2: the one root).
fn hierarchy_with(file: &str) -> PathBuf {
    hierarchies()
        .into_iter()
        .find(|h| {
            let controller = file.split('.').next().unwrap_or("");
            is_v2()
                || h.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split(',').any(|c| c == controller))
        })
        .unwrap_or_else(|| panic!("no cgroup hierarchy has {file}"))
}

/// `file` of every container cgroup under the pod cgroup `pod_dir`
/// (relative to a hierarchy); panics unless the pod cgroup exists.
fn container_values(pod_dir: &str, file: &str) -> Vec<String> {
    let dir = hierarchy_with(file).join(pod_dir.trim_start_matches('/'));
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("pod cgroup {}: {e}", dir.display()));
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| std::fs::read_to_string(e.path().join(file)).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

fn oom_score_adj(node: &PodNode, name: &str) -> i64 {
    let (ok, out) = node.exec(name, "c", &["cat", "/proc/1/oom_score_adj"]);
    assert!(ok, "{out}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("oom_score_adj {out:?}"))
}

fn mem_total() -> i64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kb: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    kb * 1024
}

#[test]
fn qos_classes_place_pods_in_the_kubepods_hierarchy_with_their_limits() {
    require_root!();
    let node = PodNode::start();
    node.add(
        "gold.yaml",
        &pod("gold", "{limits: {cpu: 500m, memory: 64Mi}}"),
    );
    node.add(
        "silver.yaml",
        &pod(
            "silver",
            "{requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: 500m, memory: 512Mi}}",
        ),
    );
    node.add("bronze.yaml", &pod("bronze", "{}"));
    let root = node.cgroup_root();
    for (name, class, dir) in [
        ("gold", "Guaranteed", "kubepods"),
        ("silver", "Burstable", "kubepods/burstable"),
        ("bronze", "BestEffort", "kubepods/besteffort"),
    ] {
        let p = node.wait_pod(name, T, "Ready", |p| condition(p, "Ready"));
        assert_eq!(p["status"]["qosClass"], class, "{name}");
        let uid = p["pod"]["metadata"]["uid"].as_str().expect("uid");
        let pod_dir = format!("{root}/{dir}/pod{uid}");
        let (mem_file, cpu_file) = if is_v2() {
            ("memory.max", "cpu.max")
        } else {
            ("memory.limit_in_bytes", "cpu.cfs_quota_us")
        };
        let mem = container_values(&pod_dir, mem_file);
        let cpu = container_values(&pod_dir, cpu_file);
        let (want_mem, want_cpu) = match name {
            "gold" => ("67108864", if is_v2() { "50000 100000" } else { "50000" }),
            "silver" => ("536870912", if is_v2() { "50000 100000" } else { "50000" }),
            _ => ("", ""),
        };
        if want_mem.is_empty() {
            // No limits: the container's cgroup has none either.
            assert!(
                mem.iter()
                    .all(|m| m == "max" || m.parse::<u64>().is_ok_and(|v| v > 1 << 50)),
                "{name}: {mem:?}"
            );
        } else {
            assert!(
                mem.iter().any(|m| m == want_mem),
                "{name} {pod_dir} {mem_file}: {mem:?}"
            );
            assert!(
                cpu.iter().any(|c| c == want_cpu),
                "{name} {pod_dir} {cpu_file}: {cpu:?}"
            );
        }
    }
    if !is_v2() {
        let shares = container_values(
            &format!(
                "{root}/kubepods/burstable/pod{}",
                node.pod("silver").expect("silver")["pod"]["metadata"]["uid"]
                    .as_str()
                    .expect("uid")
            ),
            "cpu.shares",
        );
        assert!(
            shares.iter().any(|s| s == "102"),
            "100m is 102 shares: {shares:?}"
        );
    }
    // oom_score_adj: Guaranteed -997 (or husklet's own where the host
    // forbids lowering it), BestEffort 1000, Burstable from its request.
    let own: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    let gold = oom_score_adj(&node, "gold");
    assert!(gold == -997 || gold == own.max(-997), "Guaranteed: {gold}");
    assert_eq!(oom_score_adj(&node, "bronze"), 1000);
    let want = (1000 - 1000 * (256 << 20) / mem_total()).clamp(2, 999);
    let silver = oom_score_adj(&node, "silver");
    assert!(
        (silver - want).abs() <= 2,
        "Burstable: {silver}, want about {want}"
    );
}
