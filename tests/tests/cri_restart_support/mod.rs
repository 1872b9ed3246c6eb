//! Shared by the restart and network CRI tests, on top of `cri_client`:
//! pods with hostPorts, the pod network with portmap, and an inventory of
//! everything a pod can leave on the node.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use husk_tests::cri::{CriNode, SUBNET};
use k8s_cri::v1 as cri;

/// A pod config; `host_port` > 0 maps it to the pod's port 80.
pub fn pod_config(node: &CriNode, name: &str, host_port: i32) -> cri::PodSandboxConfig {
    let mut config = crate::cri_client::pod_config(node, name);
    if host_port > 0 {
        config.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port,
            host_ip: String::new(),
        }];
    }
    config
}

/// The pod network with husk-bridge (masquerade on: a chain per pod) and
/// husk-portmap (hostPorts: chains per pod), replacing CriNode's.
pub fn write_portmap_conflist(node: &CriNode) {
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"podnet","plugins":[
          {{"type":"husk-bridge","bridge":"cni-t0","isGateway":true,"ipMasq":true,"hairpinMode":true,
            "ipam":{{"type":"host-local","subnet":"{SUBNET}","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
          {{"type":"husk-portmap","capabilities":{{"portMappings":true}}}}]}}"#,
        node.dir.path().join("ipam").display()
    );
    std::fs::write(node.conf_dir().join("10-podnet.conflist"), conf).expect("conflist");
}

/// Run a program in the test's namespaces (a child of the test thread).
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything pods can leave on the node, one line per object: mounts under
/// the node's dir, state entries, rootfs dirs, IPAM allocations, per-pod
/// iptables chains and rules, veths, container cgroups, shims. Empty once
/// every pod is removed.
pub fn leftovers(node: &CriNode) -> Vec<String> {
    let mut out = vec![];
    let dir = node.dir.path().to_string_lossy().into_owned();
    // This thread's mount namespace is the node's (husklet inherited it).
    let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    out.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount: {l}")),
    );
    for sub in ["sandboxes", "containers", "shim", "ns", "exec"] {
        out.extend(entries(&node.state().join(sub)).map(|e| format!("state/{sub}/{e}")));
    }
    out.extend(entries(&node.root().join("containers")).map(|e| format!("rootfs: {e}")));
    let ipam = node.dir.path().join("ipam");
    for net in entries(&ipam) {
        out.extend(
            entries(&ipam.join(&net))
                .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
                .map(|f| format!("IPAM {net}: {f}")),
        );
    }
    for table in ["nat", "filter"] {
        let rules = run("iptables-save", &["-t", table]);
        out.extend(
            rules
                .lines()
                .filter(|l| per_pod_rule(l))
                .map(|l| format!("iptables {table}: {l}")),
        );
    }
    out.extend(
        run("ip", &["-o", "link", "show", "type", "veth"])
            .lines()
            .filter(|l| l.contains("master cni-t0"))
            .map(|l| format!("veth: {l}")),
    );
    for d in node.cgroup.dirs() {
        for pod in entries(&d) {
            let p = d.join(&pod);
            if p.is_dir() {
                out.extend(
                    entries(&p)
                        .filter(|c| p.join(c).is_dir())
                        .map(|c| format!("cgroup: {}/{c}", p.display())),
                );
            }
        }
    }
    let state = node.state().to_string_lossy().into_owned();
    for pid in entries(Path::new("/proc")).filter_map(|p| p.parse::<u32>().ok()) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("husk-shim") && cmd.contains(&state) {
            out.push(format!("process {pid}: {cmd}"));
        }
    }
    out
}

/// A rule or chain that belongs to one pod: the bridge's masquerade chain
/// (`CNI-<hash>`) and portmap's DNAT chain (`CNI-DN-<hash>`), and the jumps
/// to them; the shared `CNI-HOSTPORT-*` chains stay.
fn per_pod_rule(line: &str) -> bool {
    line.split_whitespace().any(|w| {
        let w = w.trim_start_matches(':');
        w.starts_with("CNI-") && !w.starts_with("CNI-HOSTPORT-")
    })
}

fn entries(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// How often husklet's log says `needle`.
pub fn log_count(node: &CriNode, needle: &str) -> usize {
    node.log().matches(needle).count()
}

/// Labels by name, for filters.
pub fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
