//! husklet images against a real registry (Debian's docker-registry on
//! 127.0.0.1): pulls by tag and digest, whiteouts in the mounted rootfs,
//! manifest lists, auth, corrupt blobs, interrupted pulls.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use husk_tests::bins::{bin, test_image};
use husk_tests::husklet::{
    entry_count as count, husklet_fails as fails, husklet_json as json, husklet_ok as ok,
};
use husk_tests::registry::{TestRegistry, layout_manifest};
use husk_tests::require_root;

fn check_layers_rootfs(root: &Path, image: &str, id: &str) {
    let rootfs = PathBuf::from(ok(root, &["rootfs", "prepare", image, id]).trim());
    assert!(
        rootfs.join("bin/busybox").exists(),
        "busybox missing in {}",
        rootfs.display()
    );
    assert!(
        !rootfs.join("data/gone").exists(),
        "whiteout of /data/gone not applied"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/keep")).unwrap(),
        "keep\n"
    );
    let mut opaque: Vec<String> = std::fs::read_dir(rootfs.join("opaque"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    opaque.sort();
    assert_eq!(
        opaque,
        vec!["new"],
        "opaque dir must hide the lower layers' entries"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("data/link-to-layer2")).unwrap(),
        Path::new("../etc/layer2")
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/link-to-layer2")).unwrap(),
        "layer2\n"
    );
    let a = std::fs::metadata(rootfs.join("data/hardlink-to-layer2")).unwrap();
    let b = std::fs::metadata(rootfs.join("etc/layer2")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link must share the inode");
    assert_eq!(a.nlink(), 2);
    // Writes land in the container's upper dir, not in the shared snapshots.
    std::fs::write(rootfs.join("etc/written"), "x").unwrap();
    let upper = root.join("containers").join(id).join("upper/etc/written");
    assert!(upper.exists());
    ok(root, &["rootfs", "remove", id]);
    assert!(
        !root.join("containers").join(id).exists(),
        "rootfs dirs left behind"
    );
}

#[test]
fn pull_by_tag_and_by_digest_shows_whiteouts_in_rootfs() {
    require_root!();
    let reg = TestRegistry::start();
    reg.push_oci(&test_image("busybox-layers"), "latest", "test/layers:v1");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("by-tag");
    let img = json(&root, &["images", "pull", &reg.reference("test/layers:v1")]);
    assert_eq!(img["names"][0], reg.reference("test/layers:v1"));
    assert_eq!(img["layers"].as_array().unwrap().len(), 3);
    let repo_digest = img["repoDigests"][0].as_str().unwrap().to_string();
    let (_, manifest_digest) = layout_manifest(&test_image("busybox-layers"));
    assert_eq!(
        repo_digest,
        format!("{}@{manifest_digest}", reg.reference("test/layers"))
    );
    // Every layer is a snapshot; nothing is left in tmp.
    assert_eq!(count(&root.join("snapshots")), 3);
    assert_eq!(count(&root.join("tmp")), 0);

    // A second pull fetches nothing new and keeps the same id.
    let again = json(&root, &["images", "pull", &reg.reference("test/layers:v1")]);
    assert_eq!(again["id"], img["id"]);

    let root2 = t.path().join("by-digest");
    let img2 = json(&root2, &["images", "pull", &repo_digest]);
    assert_eq!(img2["id"], img["id"]);
    assert_eq!(img2["names"].as_array().unwrap().len(), 0);
    let inspect = json(&root2, &["images", "inspect", &repo_digest]);
    assert_eq!(inspect["config"]["Cmd"][0], "sh");
    assert_eq!(
        inspect["config"]["Labels"]["org.husk.test-image"],
        "busybox-layers"
    );
    assert_eq!(inspect["config"]["StopSignal"], "SIGTERM");

    husk_tests::private_mount_ns();
    check_layers_rootfs(&root, &reg.reference("test/layers:v1"), "c-tag");
    check_layers_rootfs(&root2, &repo_digest, "c-digest");
}

#[test]
fn manifest_list_resolves_to_amd64() {
    require_root!();
    let reg = TestRegistry::start();
    reg.push_oci(&test_image("busybox"), "latest", "multi:amd64");
    reg.push_oci(&test_image("busybox-layers"), "latest", "multi:arm64");
    let entry = |layout: &Path, arch: &str| {
        let (_, d) = layout_manifest(layout);
        let size = std::fs::metadata(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
        .len();
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": size, "platform": {"architecture": arch, "os": "linux"}})
    };
    // arm64 first, so that taking the first entry would be wrong.
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&test_image("busybox-layers"), "arm64"), entry(&test_image("busybox"), "amd64")]});
    reg.put_manifest(
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );

    let t = tempfile::tempdir().unwrap();
    let img = json(
        t.path(),
        &["images", "pull", &reg.reference("multi:latest")],
    );
    let busybox = json(t.path(), &["images", "pull", &reg.reference("multi:amd64")]);
    assert_eq!(
        img["id"], busybox["id"],
        "the index must resolve to the amd64 manifest"
    );
    assert!(img["index"].is_string(), "the index digest is recorded");
    // Asking for an architecture the index lacks is a clear error.
    let err = fails(
        t.path(),
        &[
            "images",
            "pull",
            "--arch",
            "s390x",
            &reg.reference("multi:latest"),
        ],
    );
    assert!(
        err.contains("no linux/s390x entry") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn registry_with_auth_needs_and_accepts_credentials() {
    require_root!();
    let reg = TestRegistry::start_with_auth("alice", "s3cret-pw");
    reg.push_oci(&test_image("busybox"), "latest", "private/bb:1");
    let t = tempfile::tempdir().unwrap();
    let r = reg.reference("private/bb:1");
    let empty_cfg = t.path().join("empty.json");
    std::fs::write(&empty_cfg, "{}").unwrap();
    let err = fails(
        t.path(),
        &[
            "--docker-config",
            empty_cfg.to_str().unwrap(),
            "images",
            "pull",
            &r,
        ],
    );
    assert!(
        err.contains("denied") && err.contains("no credentials"),
        "{err}"
    );
    let err = fails(
        t.path(),
        &[
            "images",
            "pull",
            "--username",
            "alice",
            "--password",
            "wrong",
            &r,
        ],
    );
    assert!(err.contains("denied"), "{err}");
    assert_eq!(
        json(t.path(), &["images", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let img = json(
        t.path(),
        &[
            "images",
            "pull",
            "--username",
            "alice",
            "--password",
            "s3cret-pw",
            &r,
        ],
    );
    assert_eq!(img["names"][0], r);

    // The same from a docker config.json (auth = base64 "user:password").
    let cfg = t.path().join("config.json");
    let auth = "YWxpY2U6czNjcmV0LXB3"; // alice:s3cret-pw
    std::fs::write(
        &cfg,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let root2 = t.path().join("r2");
    let img2 = json(
        &root2,
        &[
            "--docker-config",
            cfg.to_str().unwrap(),
            "images",
            "pull",
            &r,
        ],
    );
    assert_eq!(img2["id"], img["id"]);
}

#[test]
fn corrupt_blob_is_rejected_and_leaves_nothing() {
    require_root!();
    let reg = TestRegistry::start();
    let layout = test_image("busybox-layers");
    reg.push_oci(&layout, "latest", "bad/layers:1");
    let (m, _) = layout_manifest(&layout);
    let layer = m["layers"][1]["digest"].as_str().unwrap().to_string();
    // Same size, different content.
    let f = reg.blob_file(&layer);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    data[mid + 1] ^= 0xff;
    std::fs::write(&f, &data).unwrap();

    let t = tempfile::tempdir().unwrap();
    let err = fails(
        t.path(),
        &["images", "pull", &reg.reference("bad/layers:1")],
    );
    assert!(
        err.contains(&layer) && err.contains("does not match its digest"),
        "{err}"
    );
    assert_eq!(
        json(t.path(), &["images", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let hex = layer.trim_start_matches("sha256:");
    assert!(
        !t.path().join("content/sha256").join(hex).exists(),
        "corrupt blob stored"
    );
    assert_eq!(count(&t.path().join("tmp")), 0, "temp files left behind");
    // No snapshot of the corrupt layer (the others may be complete and are reused).
    let cfg = layout.join("blobs/sha256").join(
        m["config"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(cfg).unwrap()).unwrap();
    let diff1 = c["rootfs"]["diff_ids"][1]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert!(!t.path().join("snapshots").join(&diff1).exists());
}

#[test]
fn pull_killed_midway_leaves_a_consistent_store() {
    require_root!();
    let big = husk_tests::bins::build_dir().join("images/big");
    if !big.join("index.json").exists() {
        let st = Command::new(husk_tests::bins::repo_root().join("scripts/build-test-images"))
            .arg("--big")
            .status()
            .unwrap();
        assert!(st.success());
    }
    let reg = TestRegistry::start();
    reg.push_oci(&big, "latest", "big:1");
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let r = reg.reference("big:1");
    // One layer at a time; kill once a layer is complete and the next partly in.
    let mut child = Command::new(bin("husklet"))
        .arg("--root")
        .arg(root)
        .args(["images", "pull", "-q", "--max-concurrent", "1", &r])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut killed_midway = false;
    while t0.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let partial = std::fs::read_dir(root.join("tmp"))
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().ends_with(".blob")
                        && e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if partial && count(&root.join("snapshots")) >= 1 {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            killed_midway = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    assert!(
        killed_midway,
        "the pull finished before it could be killed midway"
    );
    // The killed pull recorded no image; every snapshot present is complete.
    assert_eq!(json(root, &["images", "list"]).as_array().unwrap().len(), 0);
    for e in std::fs::read_dir(root.join("snapshots")).unwrap() {
        assert!(e.unwrap().path().join("info.json").exists());
    }
    let img = json(root, &["images", "pull", "-q", &r]);
    assert_eq!(img["layers"].as_array().unwrap().len(), 5);
    assert_eq!(
        count(&root.join("tmp")),
        0,
        "leftovers of the killed pull were not cleaned"
    );
    assert_eq!(count(&root.join("snapshots")), 5);
    for l in img["layers"].as_array().unwrap() {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert_eq!(
            std::fs::metadata(root.join("content/sha256").join(hex))
                .unwrap()
                .len(),
            l["size"].as_u64().unwrap()
        );
    }
    let top = json(root, &["images", "inspect", &r])["diffIds"][4]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(
        std::fs::metadata(root.join("snapshots").join(top).join("fs/blob/data4"))
            .unwrap()
            .len(),
        25 * 1024 * 1024
    );
}

#[test]
fn shared_base_layer_is_fetched_and_stored_once() {
    require_root!();
    let reg = TestRegistry::start();
    reg.push_oci(&test_image("busybox"), "latest", "share/a:1");
    reg.push_oci(&test_image("busybox-extra"), "latest", "share/b:1");
    let t = tempfile::tempdir().unwrap();
    let a = json(t.path(), &["images", "pull", &reg.reference("share/a:1")]);
    let b = json(t.path(), &["images", "pull", &reg.reference("share/b:1")]);
    assert_eq!(a["layers"][0]["diff_id"], b["layers"][0]["diff_id"]);
    assert_eq!(
        count(&t.path().join("snapshots")),
        2,
        "base layer unpacked once"
    );
    // manifests 2 + configs 2 + layers (1 shared + 1) = 6 blobs
    assert_eq!(count(&t.path().join("content/sha256")), 6);
}
