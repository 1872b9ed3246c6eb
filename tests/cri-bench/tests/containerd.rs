//! cri-bench against a real containerd (scripts/bench/containerd-cri): every
//! mode once with a few pods, the shape of its report, and nothing left behind.

mod common;

use common::{Containerd, metric, op_count, ops};

#[test]
fn every_mode_reports_and_cleans_up() {
    let c = Containerd::start();

    let r = c.report(&["lifecycle", "--count", "2"]);
    assert_eq!(r["mode"], "lifecycle");
    assert_eq!(r["count"], 2);
    assert!(
        r["runtime"].as_str().unwrap().starts_with("containerd"),
        "{r}"
    );
    for op in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "ContainerStatus",
        "ContainerStatus, settled",
        "Version",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ] {
        assert_eq!(op_count(&r, op), 2, "{op} in {r}");
    }
    for o in r["ops"].as_array().unwrap() {
        let (med, p90, max) = (
            o["median_ms"].as_f64().unwrap(),
            o["p90_ms"].as_f64().unwrap(),
            o["max_ms"].as_f64().unwrap(),
        );
        assert!(med > 0.0 && med <= p90 && p90 <= max, "{o}");
    }
    c.assert_nothing_left();
    // The run pulled the image; its cleanup removed it again. containerd
    // pulled the pause image itself for the sandboxes: that one stays.
    let images = c.images();
    assert!(!images.contains(&c.image), "{images:?}");
    let pause = "docker.io/husk/pause:latest".to_string();
    assert!(images.contains(&pause), "{images:?}");

    let r = c.report(&["parallel", "--count", "3", "--concurrency", "2"]);
    assert_eq!(r["concurrency"], 2);
    assert_eq!(op_count(&r, "StartContainer"), 3);
    assert_eq!(op_count(&r, "RemovePodSandbox"), 3);
    assert!(metric(&r, "wall time until all pods run") > 0.0);
    c.assert_nothing_left();

    let r = c.report(&["images", "--count", "2"]);
    assert_eq!(
        ops(&r),
        ["PullImage", "ImageStatus", "ListImages", "RemoveImage"]
    );
    assert_eq!(op_count(&r, "PullImage"), 2);
    // Two pulls and two removals of the same image: each pull fetched it anew.
    assert_eq!(op_count(&r, "RemoveImage"), 2);
    // An image the runtime had before: removed and pulled for every cycle,
    // and there again at the end.
    let r = c.report(&["images", "--count", "1", "--image", &pause]);
    assert_eq!(op_count(&r, "PullImage"), 1);
    assert!(c.images().contains(&pause));
    assert!(!c.images().contains(&c.image));

    let r = c.report(&["density", "--count", "2", "--settle", "0.5"]);
    assert_eq!(op_count(&r, "StartContainer"), 2);
    // containerd 1.6 runs one shim per pod.
    assert_eq!(metric(&r, "per-pod processes (shims)"), 2.0, "{r}");
    assert!(metric(&r, "daemon RSS idle") > 1.0, "{r}");
    assert!(metric(&r, "shim RSS median") > 1.0, "{r}");
    let procs = r["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 3, "daemon + 2 shims: {r}");
    assert_eq!(procs[0]["comm"], "containerd");
    for p in &procs[1..] {
        assert_eq!(p["comm"], "containerd-shim-runc-v2", "{p}");
    }
    c.assert_nothing_left();
    c.stop_and_check_clean();
}

/// Pods' networking stays in the script's netns, and the script's teardown
/// removes what a client killed with SIGKILL left running.
#[test]
fn teardown_removes_what_a_killed_client_left() {
    let c = Containerd::start();
    let mut child = c
        .cri_bench(&["density", "--count", "2", "--settle", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while c.leftovers().1 < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "density did not start 2 containers"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The CNI plugins ran inside the script's netns: their NAT rules (commented
    // with the sandbox id) and the bridge are there, not in the host's netns.
    let out = c.run(&["list", "--output", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sandbox_id = list["sandboxes"][0]["id"].as_str().unwrap().to_string();
    let netns_nat = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", c.netns))
        .args(["iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    let netns_nat = String::from_utf8_lossy(&netns_nat.stdout);
    assert!(
        netns_nat.contains(&sandbox_id) && netns_nat.contains("MASQUERADE"),
        "no CNI rules for {sandbox_id} in the netns:\n{netns_nat}"
    );
    let host_rules = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host_rules.stdout).contains(&sandbox_id),
        "CNI rules of {sandbox_id} in the host's netns"
    );
    let host_bridge = std::process::Command::new("ip")
        .args(["link", "show", "crib0"])
        .output()
        .unwrap();
    assert!(
        !host_bridge.status.success(),
        "bridge crib0 in the host's netns"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        c.leftovers(),
        (2, 2),
        "the killed client could not clean up"
    );
    c.stop_and_check_clean();
}

#[test]
fn saved_reports_compare() {
    let c = Containerd::start();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    for f in [&a, &b] {
        let out = c.run(&["lifecycle", "--count", "1", "--save", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The table goes to stdout when JSON is saved.
        assert!(String::from_utf8_lossy(&out.stdout).contains("RunPodSandbox"));
    }
    let out = c.run(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RunPodSandbox median"), "{text}");
    assert!(text.contains("B/A"), "{text}");
    c.assert_nothing_left();
}
