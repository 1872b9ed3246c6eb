//! The kubelet API's serving certificate from the cluster
//! (`--rotate-server-certificates`): nothing is served until the
//! kubelet-serving CSR is issued, then the cluster-signed certificate (with
//! the node's name and address) is, `kubectl logs` works through it with
//! the apiserver verifying it (`--kubelet-certificate-authority`), and a
//! short-lived one is replaced without restarting the listener.

use std::time::{Duration, Instant};

use husk_tests::control_plane::{self, ControlPlane, NODE_IP};
use husk_tests::pods::PodNode;
use husk_tests::require_control_plane;

mod node_bootstrap_support;
use node_bootstrap_support::*;

const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// `openssl s_client` to the kubelet API, verifying against the cluster
/// CA: the leaf certificate's PEM, or why the handshake failed.
fn served_cert(cp: &ControlPlane) -> Result<Vec<u8>, String> {
    let out = cp
        .command("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("{NODE_IP}:10250"),
            "-CAfile",
        ])
        .arg(cp.ca_cert())
        .args(["-verify_return_error", "-showcerts"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !text.contains("Verify return code: 0 (ok)") {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .ok_or("no certificate")?;
    let end = text[begin..]
        .find("-----END CERTIFICATE-----")
        .ok_or("no certificate end")?;
    let end = begin + end + "-----END CERTIFICATE-----".len();
    Ok(text.as_bytes()[begin..end].to_vec())
}

fn serial(pem: &[u8]) -> String {
    let text = openssl_text("x509", pem);
    let i = text.find("Serial Number:").expect("serial");
    text[i..].lines().take(2).collect::<Vec<_>>().join(" ")
}

fn wait_served(cp: &ControlPlane, node: &PodNode, not: Option<&str>) -> Vec<u8> {
    let t0 = Instant::now();
    loop {
        let r = served_cert(cp);
        if let Ok(pem) = &r {
            if not.is_none_or(|s| serial(pem) != s) {
                return pem.clone();
            }
        }
        assert!(
            t0.elapsed() < T,
            "no (new) cluster-signed serving certificate: {r:?}\nhusklet:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn kubectl_logs(cp: &ControlPlane, node: &PodNode, pod: &str) {
    let t0 = Instant::now();
    loop {
        let out = cp.kubectl(&["logs", pod]);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("hello-from-the-pod") {
            return;
        }
        assert!(
            t0.elapsed() < T,
            "kubectl logs: {text:?} {}\nhusklet:\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn serves_the_cluster_signed_certificate_and_rotates_it() {
    require_control_plane!();
    let cp = ControlPlane::start_with(control_plane::Config {
        verify_kubelets: true,
        ..Default::default()
    });
    let files = tempfile::Builder::new()
        .prefix("husk-test-serving-")
        .tempdir()
        .expect("tempdir");
    let cert_dir = files.path().join("pki");
    let ca = cp.ca_cert();
    let node = PodNode::join(
        &cp,
        &[
            "--rotate-server-certificates",
            "--cert-dir",
            cert_dir.to_str().expect("utf-8"),
            "--client-ca-file",
            ca.to_str().expect("utf-8"),
        ],
    );
    let csr = wait_csr(&cp, &node, SERVING_SIGNER, &[]);
    let name = csr["metadata"]["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("csr-"), "{name}");
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "server auth"])
    );
    assert_eq!(csr["spec"]["username"], format!("system:node:{NODE}"));
    let req = openssl_text("req", &request_pem(&csr));
    assert!(
        req.contains(&format!(
            "Subject: O = system:nodes, CN = system:node:{NODE}"
        )),
        "{req}"
    );
    assert!(
        req.contains(&format!("DNS:{NODE}")) && req.contains(&format!("IP Address:{NODE_IP}")),
        "{req}"
    );
    // Nothing is served until the certificate is issued (kubelet's way).
    let before = served_cert(&cp);
    assert!(before.is_err(), "served before the CSR was signed");
    assert!(
        !cert_dir.join("kubelet.crt").exists(),
        "no self-signed certificate is made"
    );

    let valid = Duration::from_secs(40);
    cp.sign_csr(&name, valid);
    let first = wait_served(&cp, &node, None);
    let text = openssl_text("x509", &first);
    assert!(text.contains("Issuer: CN = husk-test-ca"), "{text}");
    assert!(
        text.contains(&format!("DNS:{NODE}")) && text.contains(&format!("IP Address:{NODE_IP}")),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    let link = std::fs::read_link(cert_dir.join("kubelet-server-current.pem")).expect("symlink");
    assert!(
        link.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with("kubelet-server-")),
        "{}",
        link.display()
    );

    // kubectl logs: the apiserver verifies the serving certificate.
    run_pod(
        &cp,
        &node,
        "talker",
        "echo hello-from-the-pod; exec sleep 3600",
    );
    kubectl_logs(&cp, &node, "talker");

    // Rotation at 70-90 % of the 40 s: a new CSR, a new certificate served
    // by the same listener.
    let next = wait_csr(&cp, &node, SERVING_SIGNER, &[name]);
    let next_name = next["metadata"]["name"].as_str().expect("name").to_string();
    cp.sign_csr(&next_name, Duration::from_secs(3600));
    let second = wait_served(&cp, &node, Some(&serial(&first)));
    assert_ne!(first, second);
    let link2 = std::fs::read_link(cert_dir.join("kubelet-server-current.pem")).expect("symlink");
    assert_ne!(link, link2, "a new file behind the symlink");
    kubectl_logs(&cp, &node, "talker");
}
