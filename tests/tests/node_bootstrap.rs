//! TLS bootstrap and client certificate rotation against the real
//! kube-apiserver: husklet joins with only a bootstrap-token kubeconfig
//! (`--bootstrap-kubeconfig`), its CSR is approved and signed by the test
//! (the controller-manager's role), and with `--rotate-certificates` a
//! short-lived client certificate is replaced while the node keeps its
//! Lease renewed and its pod watch working.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use husk_tests::control_plane::{self, BOOTSTRAP_GROUP, ControlPlane, NODE_IP};
use husk_tests::pods::PodNode;
use husk_tests::require_control_plane;

mod node_bootstrap_support;
use node_bootstrap_support::*;

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const TOKEN_ID: &str = "abcdef";

/// A control plane with bootstrap tokens, a token, and a node started with
/// only the bootstrap kubeconfig (`extra`: more flags); the node's
/// kubeconfig and cert dir are in `files`.
fn bootstrapping_node(extra: &[&str]) -> (ControlPlane, PodNode, tempfile::TempDir) {
    let cp = ControlPlane::start_with(control_plane::Config {
        bootstrap_token_auth: true,
        ..Default::default()
    });
    let token = cp.bootstrap_token(TOKEN_ID, "0123456789abcdef");
    let bootstrap = cp.bootstrap_kubeconfig(&token);
    let files = tempfile::Builder::new()
        .prefix("husk-test-boot-")
        .tempdir()
        .expect("tempdir");
    let kubeconfig = files.path().join("kubelet.conf");
    let cert_dir = files.path().join("pki");
    let mut args = vec![
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8"),
        "--bootstrap-kubeconfig",
        bootstrap.to_str().expect("utf-8"),
        "--cert-dir",
        cert_dir.to_str().expect("utf-8"),
        "--node-ip",
        NODE_IP,
    ];
    args.extend_from_slice(extra);
    let node = PodNode::start_in(&cp.netns_path(), &args);
    (cp, node, files)
}

fn current_target(cert_dir: &Path) -> PathBuf {
    std::fs::read_link(cert_dir.join("kubelet-client-current.pem")).expect("current symlink")
}

#[test]
fn joins_with_a_bootstrap_token_and_runs_a_pod() {
    require_control_plane!();
    let (cp, node, files) = bootstrapping_node(&[]);
    let csr = wait_csr(&cp, &node, CLIENT_SIGNER, &[]);
    // The CSR as kubelet's TLS bootstrap makes it.
    let name = csr["metadata"]["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert_eq!(csr["spec"]["signerName"], CLIENT_SIGNER);
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "client auth"])
    );
    assert_eq!(
        csr["spec"]["username"],
        format!("system:bootstrap:{TOKEN_ID}")
    );
    let groups = csr["spec"]["groups"].as_array().expect("groups");
    assert!(groups.contains(&BOOTSTRAP_GROUP.into()), "{groups:?}");
    let text = openssl_text("req", &request_pem(&csr));
    assert!(
        text.contains(&format!(
            "Subject: O = system:nodes, CN = system:node:{NODE}"
        )),
        "{text}"
    );
    assert!(
        text.contains("id-ecPublicKey") && text.contains("prime256v1"),
        "{text}"
    );
    assert!(!text.contains("Subject Alternative Name"), "{text}");

    cp.sign_csr(&name, Duration::from_secs(3600));
    let n = wait_get(&cp, &node, &["node", NODE], "Ready", |n| {
        condition(n, "Ready").as_deref() == Some("True")
    });
    assert_eq!(n["metadata"]["name"], NODE);

    // The pair in the cert dir, the kubeconfig pointing at it.
    let cert_dir = files.path().join("pki");
    let target = current_target(&cert_dir);
    let file = target.file_name().and_then(|f| f.to_str()).expect("name");
    assert!(
        file.starts_with("kubelet-client-")
            && file.ends_with(".pem")
            && file != "kubelet-client-current.pem",
        "{file}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&target)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let kubeconfig = files.path().join("kubelet.conf");
    let kc = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    let current = cert_dir.join("kubelet-client-current.pem");
    assert!(
        kc.contains(&format!("client-certificate: {}", current.display()))
            && kc.contains(&format!("client-key: {}", current.display())),
        "{kc}"
    );
    // The issued certificate authenticates the node as itself.
    let can = cp.kubectl_as(&kubeconfig, &["get", "node", NODE, "-o", "name"], None);
    assert!(
        can.status.success(),
        "{}",
        String::from_utf8_lossy(&can.stderr)
    );

    run_pod(&cp, &node, "booted", "exec sleep 3600");

    // Restarted with a valid kubeconfig: no new CSR, the same credentials.
    let mut node = node;
    node.stop();
    let before =
        cp.get_json(&["lease", NODE, "-n", "kube-node-lease"])["spec"]["renewTime"].clone();
    node.spawn();
    wait_get(
        &cp,
        &node,
        &["lease", NODE, "-n", "kube-node-lease"],
        "renewed after the restart",
        |l| l["spec"]["renewTime"] != before,
    );
    let csrs = cp.get_json(&["csr"]);
    assert_eq!(
        csrs["items"].as_array().map(Vec::len),
        Some(1),
        "no second CSR: {csrs}"
    );
    assert_eq!(current_target(&cert_dir), target, "the same pair");
}

#[test]
fn a_denied_bootstrap_csr_is_a_clear_error() {
    require_control_plane!();
    let (cp, node, _files) = bootstrapping_node(&[]);
    let csr = wait_csr(&cp, &node, CLIENT_SIGNER, &[]);
    let name = csr["metadata"]["name"].as_str().expect("name").to_string();
    cp.deny_csr(&name);
    let t0 = Instant::now();
    loop {
        let log = node.log();
        if log.contains(&format!("certificate signing request {name} was denied")) {
            assert!(log.contains("KubectlDeny"), "the reason is named: {log}");
            break;
        }
        assert!(t0.elapsed() < T, "no clear error after {T:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // husklet gave up: no Node was registered.
    let out = cp.kubectl(&["get", "node", NODE, "--ignore-not-found", "-o", "name"]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn rotates_a_short_lived_client_certificate() {
    require_control_plane!();
    let valid = Duration::from_secs(40);
    let (cp, node, files) = bootstrapping_node(&["--rotate-certificates"]);
    let cert_dir = files.path().join("pki");
    let first = wait_csr(&cp, &node, CLIENT_SIGNER, &[]);
    let first_name = first["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    cp.sign_csr(&first_name, valid);
    let first_expiry = Instant::now() + valid;
    wait_get(&cp, &node, &["node", NODE], "Ready", |n| {
        condition(n, "Ready").as_deref() == Some("True")
    });
    let mut targets = vec![current_target(&cert_dir)];
    let mut seen = vec![first_name];
    // Two rotations: each at 70-90 % of the 40 s, with the node's own
    // credentials, a new file behind the symlink each time.
    while seen.len() < 3 {
        let csr = wait_csr(&cp, &node, CLIENT_SIGNER, &seen);
        let name = csr["metadata"]["name"].as_str().expect("name").to_string();
        assert!(name.starts_with("csr-"), "{name}");
        assert_eq!(csr["spec"]["username"], format!("system:node:{NODE}"));
        assert_eq!(
            csr["spec"]["usages"],
            serde_json::json!(["digital signature", "client auth"])
        );
        cp.sign_csr(&name, valid);
        seen.push(name);
        let t0 = Instant::now();
        loop {
            let t = current_target(&cert_dir);
            if !targets.contains(&t) {
                assert!(t.exists(), "{}", t.display());
                targets.push(t);
                break;
            }
            assert!(t0.elapsed() < T, "symlink not swapped\n{}", node.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for t in &targets {
        assert!(t.exists(), "old pairs are kept: {}", t.display());
    }
    // Past the bootstrap certificate's expiry the Lease is still renewed
    // (with the rotated certificate: the apiserver refuses an expired one).
    let now = Instant::now();
    if now < first_expiry + Duration::from_secs(2) {
        std::thread::sleep(first_expiry + Duration::from_secs(2) - now);
    }
    let lease = |cp: &ControlPlane| cp.get_json(&["lease", NODE, "-n", "kube-node-lease"]);
    let before = lease(&cp)["spec"]["renewTime"].clone();
    wait_get(
        &cp,
        &node,
        &["lease", NODE, "-n", "kube-node-lease"],
        "renewed after the first certificate expired",
        |l| l["spec"]["renewTime"] != before,
    );
    // The pod watch came back on the new certificate.
    run_pod(&cp, &node, "after-rotation", "exec sleep 3600");
    let log = node.log();
    assert!(log.contains("certificate rotated"), "{log}");
}
