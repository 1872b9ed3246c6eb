//! The control plane's PKI, made with openssl: a CA, the apiserver's
//! serving certificate, client certificates, the service-account key pair,
//! kubeconfigs; and CSR signing as kube-controller-manager's signer would.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ControlPlane, Credentials, SERVER};

impl ControlPlane {
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.pki())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new_key(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ]);
    }

    /// Sign `<name>.csr` in the PKI dir with the CA into `<name>.crt`,
    /// adding the X.509v3 extensions `ext` (openssl extfile lines).
    fn sign(&self, name: &str, ext: &str, days: u32) {
        std::fs::write(self.pki().join(format!("{name}.ext")), ext).expect("write extfile");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            &days.to_string(),
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// A client certificate `<name>.crt`/`<name>.key` in the PKI dir for
    /// user `cn` in groups `orgs`, signed by the cluster CA.
    pub fn client_cert(&self, name: &str, cn: &str, orgs: &[&str]) -> (PathBuf, PathBuf) {
        self.new_key(name);
        let mut subj: String = orgs.iter().map(|o| format!("/O={o}")).collect();
        subj.push_str(&format!("/CN={cn}"));
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &subj,
            "-out",
            &format!("{name}.csr"),
        ]);
        self.sign(name, CLIENT_EXT, 2);
        (
            self.pki().join(format!("{name}.crt")),
            self.pki().join(format!("{name}.key")),
        )
    }

    pub(super) fn make_pki(&self) {
        std::fs::write(self.pki().join("ca.cnf"), CA_CNF).expect("write ca.cnf");
        std::fs::write(self.pki().join("index.txt"), "").expect("write index.txt");
        std::fs::write(self.pki().join("ca.serial"), "1000\n").expect("write ca.serial");
        std::fs::create_dir_all(self.pki().join("issued")).expect("issued dir");
        self.new_key("ca");
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=husk-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]);
        self.new_key("apiserver");
        self.openssl(&[
            "req",
            "-new",
            "-key",
            "apiserver.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "apiserver.csr",
        ]);
        self.sign(
            "apiserver",
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local\n\
             extendedKeyUsage=serverAuth\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             basicConstraints=critical,CA:FALSE\n",
            2,
        );
        let (admin_crt, admin_key) = self.client_cert("admin", "admin", &["system:masters"]);
        let node = self.config.node.clone();
        let (node_crt, node_key) =
            self.client_cert("node", &format!("system:node:{node}"), &["system:nodes"]);
        self.client_cert(
            "kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        );
        self.new_key("sa");
        self.openssl(&["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        self.write_kubeconfig(
            &self.admin_kubeconfig(),
            Credentials::Cert {
                cert: &admin_crt,
                key: &admin_key,
            },
        );
        self.write_kubeconfig(
            &self.node_kubeconfig(),
            Credentials::Cert {
                cert: &node_crt,
                key: &node_key,
            },
        );
        if !self.config.tokens.is_empty() {
            let csv: String = self
                .config
                .tokens
                .iter()
                .map(|t| {
                    format!(
                        "{},{},{},\"{}\"\n",
                        t.token,
                        t.user,
                        t.uid,
                        t.groups.join(",")
                    )
                })
                .collect();
            std::fs::write(self.pki().join("tokens.csv"), csv).expect("write tokens.csv");
        }
    }

    /// Write a kubeconfig for this cluster with `creds` to `path`.
    pub fn write_kubeconfig(&self, path: &Path, creds: Credentials<'_>) {
        let user = match creds {
            Credentials::Cert { cert, key } => format!(
                "    client-certificate: {}\n    client-key: {}\n",
                cert.display(),
                key.display()
            ),
            Credentials::Token(t) => format!("    token: {t}\n"),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    \
             server: {SERVER}\n    certificate-authority: {ca}\nusers:\n- name: user\n  \
             user:\n{user}contexts:\n- name: test\n  context:\n    cluster: test\n    \
             user: user\ncurrent-context: test\n",
            ca = self.ca_cert().display()
        );
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
    }

    /// Approve and sign CertificateSigningRequest `name` as
    /// kube-controller-manager's approver and signer would, the
    /// certificate valid for `valid` from one second ago; returns the PEM.
    pub fn sign_csr(&self, name: &str, valid: Duration) -> Vec<u8> {
        self.kubectl_ok(&["certificate", "approve", name]);
        self.issue(name, valid)
    }

    /// Sign the already approved CSR `name` as the signers of its
    /// `signerName` do: the CSR's subject (and subject alternative names)
    /// kept, key usage and extended key usage from `spec.usages`, signed by
    /// the cluster CA (`openssl ca`, so that the validity can be seconds);
    /// the certificate is written to the CSR's status, as a signer writes it.
    pub fn issue(&self, name: &str, valid: Duration) -> Vec<u8> {
        let csr = self.get_json(&["csr", name]);
        let request = csr["spec"]["request"].as_str().expect("CSR spec.request");
        let base = format!("csr-{name}");
        std::fs::write(
            self.pki().join(format!("{base}.csr")),
            decode_base64(request),
        )
        .expect("write CSR");
        let usages: Vec<&str> = csr["spec"]["usages"]
            .as_array()
            .map(|u| u.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        std::fs::write(self.pki().join(format!("{base}.ext")), usage_ext(&usages))
            .expect("write extfile");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let (start, end) = (utc_time(now - 1), utc_time(now + valid.as_secs()));
        self.openssl(&[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-notext",
            "-preserveDN",
            "-in",
            &format!("{base}.csr"),
            "-out",
            &format!("{base}.crt"),
            "-startdate",
            &start,
            "-enddate",
            &end,
            "-extfile",
            &format!("{base}.ext"),
        ]);
        let crt = std::fs::read(self.pki().join(format!("{base}.crt"))).expect("read cert");
        let status = serde_json::json!({"status": {
            "conditions": csr["status"]["conditions"],
            "certificate": encode_base64(&crt),
        }});
        let out = self.kubectl_as(
            &self.admin_kubeconfig(),
            &[
                "replace",
                "--raw",
                &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/status"),
                "-f",
                "-",
            ],
            Some(&merge(csr.clone(), status).to_string()),
        );
        assert!(
            out.status.success(),
            "write CSR {name} status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        crt
    }

    /// Deny CSR `name` (`kubectl certificate deny`).
    pub fn deny_csr(&self, name: &str) {
        self.kubectl_ok(&["certificate", "deny", name]);
    }

    /// The CSRs of `signer` that are neither approved nor denied yet.
    pub fn pending_csrs(&self, signer: &str) -> Vec<serde_json::Value> {
        let list = self.get_json(&["csr"]);
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| c["spec"]["signerName"] == signer)
                    .filter(|c| {
                        c["status"]["conditions"]
                            .as_array()
                            .is_none_or(|v| v.is_empty())
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Approve and sign every pending CSR of `signer` (see [`Self::sign_csr`]);
    /// returns their names.
    pub fn sign_pending(&self, signer: &str, valid: Duration) -> Vec<String> {
        let mut names = Vec::new();
        for c in self.pending_csrs(signer) {
            let name = c["metadata"]["name"]
                .as_str()
                .expect("CSR name")
                .to_string();
            self.sign_csr(&name, valid);
            names.push(name);
        }
        names
    }
}

/// openssl extension lines for a certificate with the CSR `usages`
/// (certificates.k8s.io key usage names), as the signers map them.
fn usage_ext(usages: &[&str]) -> String {
    let ku: Vec<&str> = usages
        .iter()
        .filter_map(|u| match *u {
            "digital signature" => Some("digitalSignature"),
            "key encipherment" => Some("keyEncipherment"),
            _ => None,
        })
        .collect();
    let eku: Vec<&str> = usages
        .iter()
        .filter_map(|u| match *u {
            "client auth" => Some("clientAuth"),
            "server auth" => Some("serverAuth"),
            _ => None,
        })
        .collect();
    let mut ext = String::from("basicConstraints=critical,CA:FALSE\n");
    if !ku.is_empty() {
        ext.push_str(&format!("keyUsage=critical,{}\n", ku.join(",")));
    }
    if !eku.is_empty() {
        ext.push_str(&format!("extendedKeyUsage={}\n", eku.join(",")));
    }
    ext
}

/// `secs` since the epoch as an ASN.1 UTCTime (`YYMMDDHHMMSSZ`, openssl ca).
fn utc_time(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%y%m%d%H%M%SZ"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `openssl ca` configuration of the test CA: any subject, kept as the
/// CSR has it; the CSR's extensions (subject alternative names) copied
/// unless the extfile sets them.
const CA_CNF: &str = "[ca]\ndefault_ca = test_ca\n\n[test_ca]\ndir = .\n\
    database = index.txt\nnew_certs_dir = issued\nserial = ca.serial\n\
    certificate = ca.crt\nprivate_key = ca.key\ndefault_md = sha256\n\
    policy = any\nunique_subject = no\ncopy_extensions = copy\nemail_in_dn = no\n\n\
    [any]\ncommonName = optional\norganizationName = optional\n";

/// openssl extfile lines of a client certificate.
const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\n\
    keyUsage=critical,digitalSignature,keyEncipherment\n\
    basicConstraints=critical,CA:FALSE\n";

/// `base` with the top-level keys of `patch` merged one level deep.
fn merge(mut base: serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            match (b.get_mut(k).and_then(|x| x.as_object_mut()), v.as_object()) {
                (Some(inner), Some(vo)) => {
                    for (ik, iv) in vo {
                        inner.insert(ik.clone(), iv.clone());
                    }
                }
                _ => {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
    }
    base
}

pub(super) fn encode_base64(data: &[u8]) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("run base64");
    String::from_utf8(out.stdout).expect("base64 output")
}

fn decode_base64(text: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run base64 -d");
    assert!(out.status.success(), "base64 -d failed");
    out.stdout
}
