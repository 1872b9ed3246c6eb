//! A real registry (Debian's `docker-registry`, distribution v2) on a free
//! 127.0.0.1 port with its own temp storage, optionally behind htpasswd
//! basic auth. Stopped (by pid) and removed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first manifest of the OCI layout at `layout` (as JSON) and its digest.
pub fn layout_manifest(layout: &Path) -> (serde_json::Value, String) {
    let index = std::fs::read(layout.join("index.json")).expect("read index.json");
    let idx: serde_json::Value = serde_json::from_slice(&index).expect("index.json is JSON");
    let d = idx["manifests"][0]["digest"]
        .as_str()
        .expect("index.json has a manifest")
        .to_string();
    let m = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
    )
    .expect("read the manifest blob");
    (serde_json::from_slice(&m).expect("manifest is JSON"), d)
}

/// sha256 of `data` as `sha256:<hex>`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// One layer of a layout made by [`write_layout`].
pub struct LayoutLayer {
    /// The blob as stored (compressed or not).
    pub blob: Vec<u8>,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    pub media_type: &'static str,
}

/// Write a one-image OCI layout (tag `latest`) with `layers` to `dir`;
/// returns the manifest's digest.
pub fn write_layout(dir: &Path, layers: &[LayoutLayer]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create blobs dir");
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).expect("write blob");
        d
    };
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({"mediaType": l.media_type, "digest": put(&l.blob), "size": l.blob.len()})
        })
        .collect();
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let cfg = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    .expect("config json");
    let cd = put(&cfg);
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs}))
    .expect("manifest json");
    let md = put(&m);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
        .expect("index json"),
    )
    .expect("write index.json");
    md
}

/// A running registry.
pub struct TestRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// (user, password) when started with auth.
    pub creds: Option<(String, String)>,
    child: Child,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl TestRegistry {
    /// Start an open registry.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// Start a registry that wants basic auth (htpasswd, bcrypt) for `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::spawn(Some((user.to_string(), password.to_string())))
    }

    fn spawn(creds: Option<(String, String)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-registry-")
            .tempdir()
            .expect("tempdir");
        let mut auth = String::new();
        if let Some((u, p)) = &creds {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let f = dir.path().join("htpasswd");
            std::fs::write(&f, out.stdout).expect("write htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: husk-test\n    path: {}\n",
                f.display()
            );
        }
        // The port may be taken between probing and binding: retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let cfg = dir.path().join("config.yml");
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("start /usr/bin/docker-registry (apt-get install docker-registry)");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(&addr).is_ok() {
                    return TestRegistry {
                        addr,
                        creds,
                        child,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not start: {log}");
    }

    /// `127.0.0.1:<port>/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// Where the registry keeps its data (to corrupt a blob on purpose).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The stored data file of a blob (`sha256:<hex>`).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Copy tag `tag` of the OCI layout at `layout` to `<repo_tag>` here with skopeo.
    pub fn push_oci(&self, layout: &Path, tag: &str, repo_tag: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}", self.reference(repo_tag)));
        let out = cmd.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {repo_tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// PUT a manifest (or index) document as `<repo>:<tag>` (no auth).
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
        let f = self.dir.path().join(format!("put-{tag}.json"));
        std::fs::write(&f, body).expect("write manifest");
        let url = format!("http://{}/v2/{repo}/manifests/{tag}", self.addr);
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "-H"])
            .arg(format!("Content-Type: {media_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", f.display()))
            .arg(&url)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "PUT {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
