//! Helpers of the TLS bootstrap tests: CSRs as the apiserver holds them,
//! openssl's view of requests and certificates, waiting on objects.

use std::time::{Duration, Instant};

use husk_tests::control_plane::ControlPlane;
pub use husk_tests::pods::NODE;
use husk_tests::pods::PodNode;
use serde_json::Value;

/// How long anything is waited for.
pub const T: Duration = Duration::from_secs(90);

/// Wait for a pending CSR of `signer` (other than `seen`).
pub fn wait_csr(cp: &ControlPlane, node: &PodNode, signer: &str, seen: &[String]) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(c) = cp.pending_csrs(signer).into_iter().find(|c| {
            let name = c["metadata"]["name"].as_str().unwrap_or_default();
            !seen.iter().any(|s| s == name)
        }) {
            return c;
        }
        assert!(
            t0.elapsed() < T,
            "no {signer} CSR after {T:?}\nhusklet:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `openssl <kind> -noout -text` of the PEM `pem` (`req` or `x509`).
pub fn openssl_text(kind: &str, pem: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args([kind, "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem)
        .expect("write pem");
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {kind} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PEM request of a CSR object.
pub fn request_pem(csr: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(csr["spec"]["request"].as_str().expect("spec.request"))
        .expect("base64 request")
}

pub fn condition(obj: &Value, type_: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Poll `kubectl get ARGS -o json` until `pred` holds.
pub fn wait_get(
    cp: &ControlPlane,
    node: &PodNode,
    args: &[&str],
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    loop {
        let out = cp.kubectl(&a);
        if out.status.success() {
            if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                if pred(&v) {
                    return v;
                }
            }
        }
        assert!(
            t0.elapsed() < T,
            "{args:?}: not {what} after {T:?}\nhusklet:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Create pod `name` bound to the node running busybox `script`; wait
/// until it is Running and Ready.
pub fn run_pod(cp: &ControlPlane, node: &PodNode, name: &str, script: &str) {
    cp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "{script}"]
"#
    ));
    wait_get(cp, node, &["pod", name], "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready").as_deref() == Some("True")
    });
}
