//! Per-blob fallback along a hosts.toml's endpoints: mirrors that serve
//! manifests but fail blobs (HTTP 500/404, cut-off bodies, resets, wrong
//! bytes) in front of a real registry. Each test runs in a network
//! namespace of its own.

use std::path::{Path, PathBuf};

use husk_tests::bins::test_image;
use husk_tests::husklet::{entry_count as count, husklet_fails as fails, husklet_json as json};
use husk_tests::mirror::{Fault, FlakyMirror};
use husk_tests::registry::{TestRegistry, layout_manifest};
use husk_tests::require_root;
use sha2::Digest as _;

/// Write `<dir>/<registry>/hosts.toml`: the mirrors in order, then the registry.
fn hosts_dir(dir: &Path, registry: &str, mirrors: &[&FlakyMirror]) -> PathBuf {
    let d = dir.join("hosts.d");
    std::fs::create_dir_all(d.join(registry)).unwrap();
    let mut toml = format!("server = \"http://{registry}\"\n");
    for m in mirrors {
        toml.push_str(&format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            m.addr
        ));
    }
    std::fs::write(d.join(registry).join("hosts.toml"), toml).unwrap();
    d
}

/// Config and layer digests of a layout's manifest.
fn blob_digests(layout: &Path) -> (String, Vec<String>) {
    let (m, _) = layout_manifest(layout);
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let layers = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (config, layers)
}

#[test]
fn each_blob_falls_back_to_the_next_endpoint() {
    require_root!();
    husk_tests::netns::private_loopback();
    let layout = test_image("busybox-layers");
    let reg = TestRegistry::start();
    reg.push_oci(&layout, "latest", "test/layers:v1");
    let (config, layers) = blob_digests(&layout);
    assert_eq!(layers.len(), 3);

    // The first mirror fails every blob differently; the second resets every
    // connection; the registry itself (last) has everything.
    let (c, l0, l1) = (config.clone(), layers[0].clone(), layers[1].clone());
    let first = FlakyMirror::start(&layout, move |d| {
        if d == c {
            Fault::ServerError
        } else if d == l0 {
            Fault::Truncate
        } else if d == l1 {
            Fault::Corrupt
        } else {
            Fault::NotFound
        }
    });
    let second = FlakyMirror::start(&layout, |_| Fault::Reset);
    let t = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(t.path(), &reg.addr, &[&first, &second]);
    let root = t.path().join("root");
    let r = reg.reference("test/layers:v1");
    let img = json(
        &root,
        &[
            "--registry-config",
            hosts.to_str().unwrap(),
            "images",
            "pull",
            &r,
        ],
    );

    // The tag resolved through the first mirror, whose manifest is the layout's.
    let (_, manifest_digest) = layout_manifest(&layout);
    assert!(
        first
            .requests()
            .iter()
            .any(|p| p == "/v2/test/layers/manifests/v1"),
        "{:?}",
        first.requests()
    );
    assert_eq!(
        img["repoDigests"][0],
        format!("{}@{manifest_digest}", reg.reference("test/layers"))
    );
    assert_eq!(img["id"], config.as_str());
    // Every blob was tried on both mirrors before the registry served it.
    for d in std::iter::once(&config).chain(&layers) {
        assert!(
            first.was_asked_for_blob(d),
            "first mirror never asked for {d}"
        );
        assert!(
            second.was_asked_for_blob(d),
            "second mirror never asked for {d}"
        );
    }
    // What was stored is what the manifest names, byte for byte.
    for d in std::iter::once(&config).chain(&layers) {
        let hex = d.trim_start_matches("sha256:");
        let data = std::fs::read(root.join("content/sha256").join(hex)).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&data)), hex);
    }
    assert_eq!(count(&root.join("snapshots")), 3);
    assert_eq!(count(&root.join("tmp")), 0, "failed attempts left files");
    let inspect = json(&root, &["images", "inspect", &r]);
    assert_eq!(
        inspect["config"]["Labels"]["org.husk.test-image"],
        "busybox-layers"
    );
}

#[test]
fn pull_fails_only_when_every_endpoint_failed_and_names_them() {
    require_root!();
    husk_tests::netns::private_loopback();
    let layout = test_image("busybox-layers");
    let reg = TestRegistry::start();
    reg.push_oci(&layout, "latest", "bad/layers:1");
    let (_, layers) = blob_digests(&layout);
    // The registry's copy of one layer is corrupt (same size, other bytes).
    let bad = layers[1].clone();
    let f = reg.blob_file(&bad);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, &data).unwrap();

    let first = FlakyMirror::start(&layout, |_| Fault::ServerError);
    let second = FlakyMirror::start(&layout, |_| Fault::Truncate);
    let t = tempfile::tempdir().unwrap();
    let hosts = hosts_dir(t.path(), &reg.addr, &[&first, &second]);
    let root = t.path().join("root");
    let err = fails(
        &root,
        &[
            "--registry-config",
            hosts.to_str().unwrap(),
            "images",
            "pull",
            &reg.reference("bad/layers:1"),
        ],
    );
    let first_msg = format!("http://{}/v2: ", first.addr);
    let second_msg = format!("http://{}/v2: ", second.addr);
    let registry_msg = format!("http://{}/v2: ", reg.addr);
    assert!(
        err.contains(&format!("blob {bad}: every endpoint failed")),
        "{err}"
    );
    // Each endpoint, in order, with what went wrong there.
    let (a, b, c) = (
        err.find(&first_msg),
        err.find(&second_msg),
        err.find(&registry_msg),
    );
    assert!(
        a.is_some() && b.is_some() && c.is_some() && a < b && b < c,
        "{err}"
    );
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("download broke off"), "{err}");
    assert!(err.contains("does not match its digest"), "{err}");
    // Nothing recorded, the corrupt blob not stored, no temp files.
    assert_eq!(
        json(&root, &["images", "list"]).as_array().unwrap().len(),
        0
    );
    let hex = bad.trim_start_matches("sha256:");
    assert!(!root.join("content/sha256").join(hex).exists());
    assert_eq!(count(&root.join("tmp")), 0, "temp files left behind");
}
