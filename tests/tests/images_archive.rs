//! husklet images without a registry: imports of docker archives and OCI
//! layouts, layer sharing, prune, malicious layers, and bad input.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use husk_tests::bins::test_image;
use husk_tests::husklet::{
    entry_count as count, husklet_command, husklet_fails as fails, husklet_json as json,
    husklet_ok as ok,
};
use husk_tests::registry::{LayoutLayer, write_layout};
use husk_tests::require_root;
use sha2::Digest as _;

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[test]
fn import_docker_archive_and_oci_layout_share_the_base_layer() {
    require_root!();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let images = test_image("busybox").parent().unwrap().to_path_buf();
    test_image("busybox-extra");
    let a = json(
        root,
        &[
            "images",
            "import",
            images.join("busybox.docker.tar").to_str().unwrap(),
        ],
    );
    assert_eq!(a[0]["names"][0], "docker.io/library/busybox:latest");
    let b = json(
        root,
        &[
            "images",
            "import",
            "--name",
            "example.com/extra:1",
            images.join("busybox-extra").to_str().unwrap(),
        ],
    );
    assert_eq!(b[0]["names"][0], "example.com/extra:1");
    assert_eq!(a[0]["layers"][0]["diff_id"], b[0]["layers"][0]["diff_id"]);
    assert_eq!(
        count(&root.join("snapshots")),
        2,
        "the shared base layer is unpacked once"
    );
    // The docker archive's layers are stored uncompressed: blob digest == diff_id.
    assert_eq!(a[0]["layers"][0]["digest"], a[0]["layers"][0]["diff_id"]);
    // The OCI layout of busybox-layers, as a directory and (same image) as a docker archive.
    let c = json(
        root,
        &[
            "images",
            "import",
            test_image("busybox-layers").to_str().unwrap(),
        ],
    );
    assert_eq!(c[0]["names"][0], "localhost/busybox-layers:latest");
    let d = json(
        root,
        &[
            "images",
            "import",
            images.join("busybox-layers.docker.tar").to_str().unwrap(),
        ],
    );
    assert_eq!(c[0]["id"], d[0]["id"], "same config, same image id");
    assert_eq!(count(&root.join("snapshots")), 5);
    let inspect = json(root, &["images", "inspect", "busybox-layers"]);
    assert_eq!(
        inspect["config"]["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(inspect["config"]["WorkingDir"], "/");
    // Both names resolve; short ids too.
    let short = &c[0]["id"].as_str().unwrap()[7..19];
    assert_eq!(json(root, &["images", "inspect", short])["id"], c[0]["id"]);
    assert_eq!(count(&root.join("tmp")), 0);
}

#[test]
fn prune_removes_unreferenced_content_and_keeps_the_rest() {
    require_root!();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let layers = json(
        root,
        &[
            "images",
            "import",
            "--name",
            "t:1",
            test_image("busybox-layers").to_str().unwrap(),
        ],
    );
    let extra = json(
        root,
        &[
            "images",
            "import",
            "--name",
            "keep:1",
            test_image("busybox-extra").to_str().unwrap(),
        ],
    );
    assert_eq!(count(&root.join("snapshots")), 5);
    // Moving the tag t:1 to busybox drops the busybox-layers image; its content stays until prune.
    let bb = json(
        root,
        &[
            "images",
            "import",
            "--name",
            "t:1",
            test_image("busybox").to_str().unwrap(),
        ],
    );
    let list = json(root, &["images", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(count(&root.join("snapshots")), 5);
    let report = json(root, &["images", "prune"]);
    let pruned_snaps: Vec<&str> = report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = layers[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap())
        .collect();
    let mut got = pruned_snaps.clone();
    expected.sort();
    got.sort();
    assert_eq!(
        got, expected,
        "exactly the dropped image's layers are pruned"
    );
    // 3 layers + config + manifest of busybox-layers.
    assert_eq!(report["blobs"].as_array().unwrap().len(), 5);
    assert_eq!(count(&root.join("snapshots")), 2);
    for img in [&extra[0], &bb[0]] {
        for l in img["layers"].as_array().unwrap() {
            let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            assert!(root.join("content/sha256").join(hex).exists());
            assert!(
                root.join("snapshots")
                    .join(l["diff_id"].as_str().unwrap().trim_start_matches("sha256:"))
                    .join("info.json")
                    .exists()
            );
        }
    }
    // Nothing left to prune; rm frees what only that image used.
    let again = json(root, &["images", "prune"]);
    assert_eq!(again["blobs"].as_array().unwrap().len(), 0);
    ok(root, &["images", "rm", "keep:1"]);
    assert_eq!(
        count(&root.join("snapshots")),
        1,
        "the shared base stays for t:1"
    );
    assert_eq!(json(root, &["images", "list"]).as_array().unwrap().len(), 1);
}

/// An OCI layout with one uncompressed layer built from `entries`.
fn malicious_layout(dir: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let layer = b.into_inner().unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let ld = put(&layer);
    let cfg = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [ld]}})).unwrap();
    let cd = put(&cfg);
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]}))
    .unwrap();
    let md = put(&m);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]})).unwrap(),
    )
    .unwrap();
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Write a raw name into a header (bypassing the tar crate's `..` checks).
fn raw_name(h: &mut tar::Header, name: &str) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn raw_link(h: &mut tar::Header, target: &str) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
}

fn append(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: Option<&str>,
    data: &[u8],
) {
    let mut h = header(kind, data.len() as u64);
    raw_name(&mut h, name);
    if let Some(l) = link {
        raw_link(&mut h, l);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn assert_refused(root: &Path, layout: &Path, what: &str) {
    let err = fails(root, &["images", "import", layout.to_str().unwrap()]);
    assert!(err.contains("refused"), "{what}: {err}");
    assert_eq!(
        json(root, &["images", "list"]).as_array().unwrap().len(),
        0,
        "{what}: image recorded"
    );
    assert_eq!(count(&root.join("snapshots")), 0, "{what}: snapshot kept");
    assert_eq!(count(&root.join("tmp")), 0, "{what}: temp files kept");
}

#[test]
fn malicious_layers_are_refused_and_the_host_is_untouched() {
    require_root!();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // A host directory the layers aim at, outside the store.
    let target = tempfile::Builder::new()
        .prefix("husk-test-target-")
        .tempdir()
        .unwrap();
    let tpath = target.path().to_str().unwrap().to_string();

    // 1. `../../x` path traversal (relative to the snapshot's fs dir it reaches the store root and beyond).
    let l1 = t.path().join("dotdot");
    malicious_layout(&l1, |b| {
        append(
            b,
            tar::EntryType::Regular,
            "../../../../../../../../x-husk-escape",
            None,
            b"pwned",
        )
    });
    assert_refused(&root, &l1, "../ path");
    assert!(!Path::new("/x-husk-escape").exists());

    // 2. An absolute symlink to a host dir, then a write through it.
    let l2 = t.path().join("symlink");
    malicious_layout(&l2, |b| {
        append(b, tar::EntryType::Symlink, "evil", Some(&tpath), b"");
        append(b, tar::EntryType::Regular, "evil/pwned", None, b"pwned");
    });
    assert_refused(&root, &l2, "write through absolute symlink");
    assert!(
        !target.path().join("pwned").exists(),
        "file written through the symlink"
    );

    // 2b. A relative symlink climbing out, then a write through it.
    let l2b = t.path().join("symlink-rel");
    malicious_layout(&l2b, |b| {
        append(
            b,
            tar::EntryType::Symlink,
            "up",
            Some("../../../../../../../../../../../"),
            b"",
        );
        append(
            b,
            tar::EntryType::Regular,
            &format!("up{tpath}/pwned2"),
            None,
            b"pwned",
        );
    });
    assert_refused(&root, &l2b, "write through relative escaping symlink");
    assert!(!target.path().join("pwned2").exists());

    // 3. Hard links to /etc/shadow: absolute, by `..`, and through a symlink.
    let shadow_links = std::fs::metadata("/etc/shadow").map(|m| m.nlink()).ok();
    for (name, build) in [
        (
            "hardlink-abs",
            Box::new(|b: &mut tar::Builder<Vec<u8>>| {
                append(b, tar::EntryType::Link, "shadow", Some("/etc/shadow"), b"")
            }) as Box<dyn FnOnce(&mut tar::Builder<Vec<u8>>)>,
        ),
        (
            "hardlink-dotdot",
            Box::new(|b: &mut tar::Builder<Vec<u8>>| {
                append(
                    b,
                    tar::EntryType::Link,
                    "shadow",
                    Some("../../../../../../../../etc/shadow"),
                    b"",
                )
            }),
        ),
        (
            "hardlink-via-symlink",
            Box::new(|b: &mut tar::Builder<Vec<u8>>| {
                append(b, tar::EntryType::Symlink, "etcdir", Some("/etc"), b"");
                append(
                    b,
                    tar::EntryType::Link,
                    "shadow",
                    Some("etcdir/shadow"),
                    b"",
                );
            }),
        ),
    ] {
        let l = t.path().join(name);
        malicious_layout(&l, build);
        assert_refused(&root, &l, name);
    }
    assert_eq!(
        std::fs::metadata("/etc/shadow").map(|m| m.nlink()).ok(),
        shadow_links,
        "/etc/shadow gained a link"
    );

    // 4. Absolute entry names are refused too.
    let l4 = t.path().join("absolute");
    malicious_layout(&l4, |b| {
        append(
            b,
            tar::EntryType::Regular,
            &format!("{tpath}/abs"),
            None,
            b"pwned",
        )
    });
    assert_refused(&root, &l4, "absolute path");
    assert!(!target.path().join("abs").exists());
    assert_eq!(count(target.path()), 0, "the host dir was touched");

    // A benign layer with in-snapshot relative symlinks still imports.
    let ok_l = t.path().join("benign");
    malicious_layout(&ok_l, |b| {
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        raw_name(&mut h, "usr/lib/");
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        append(b, tar::EntryType::Symlink, "lib", Some("usr/lib"), b"");
        append(b, tar::EntryType::Regular, "lib/file", None, b"inside");
        append(
            b,
            tar::EntryType::Link,
            "usr/hard",
            Some("usr/lib/file"),
            b"",
        );
    });
    let img = json(&root, &["images", "import", ok_l.to_str().unwrap()]);
    let diff = img[0]["layers"][0]["diff_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let fs = root.join("snapshots").join(diff).join("fs");
    assert_eq!(
        std::fs::read_to_string(fs.join("usr/lib/file")).unwrap(),
        "inside"
    );
    assert_eq!(
        std::fs::metadata(fs.join("usr/hard")).unwrap().ino(),
        std::fs::metadata(fs.join("usr/lib/file")).unwrap().ino()
    );
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    require_root!();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    ok(
        &root,
        &["images", "import", test_image("busybox").to_str().unwrap()],
    );
    let before = std::fs::read(root.join("images.json")).unwrap();

    let err = fails(&root, &["images", "inspect", "no-such-image:latest"]);
    assert!(err.contains("\"no-such-image:latest\" not found"), "{err}");
    let err = fails(&root, &["images", "rm", "no-such-image"]);
    assert!(err.contains("not found"), "{err}");
    let err = fails(&root, &["images", "pull", "Bad/Upper:tag"]);
    assert!(
        err.contains("invalid repository path component \"Bad\""),
        "{err}"
    );
    let err = fails(&root, &["images", "pull", "busybox:bad:tag"]);
    assert!(err.contains("image reference"), "{err}");
    let err = fails(&root, &["images", "pull", "x@sha256:1234"]);
    assert!(err.contains("sha256") && err.contains("hex"), "{err}");
    // A closed loopback port: nothing listens on port 1.
    let err = fails(&root, &["images", "pull", "127.0.0.1:1/nothing/here:1"]);
    assert!(
        err.contains(
            "registry 127.0.0.1:1: cannot reach http://127.0.0.1:1/v2/nothing/here/manifests/1"
        ),
        "{err}"
    );
    // The reason is there (reqwest keeps it in its sources), printed once.
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");

    // Archives: random bytes, a truncated docker archive, a layout with a corrupt blob.
    let junk = t.path().join("junk.tar");
    std::fs::write(&junk, vec![0x5au8; 10_000]).unwrap();
    let err = fails(&root, &["images", "import", junk.to_str().unwrap()]);
    assert!(err.contains("junk.tar"), "{err}");
    let images = test_image("busybox").parent().unwrap().to_path_buf();
    let full = std::fs::read(images.join("busybox-layers.docker.tar")).unwrap();
    let trunc = t.path().join("truncated.tar");
    std::fs::write(&trunc, &full[..full.len() / 3]).unwrap();
    let err = fails(&root, &["images", "import", trunc.to_str().unwrap()]);
    assert!(err.contains("truncated.tar"), "{err}");
    let bad_layout = t.path().join("bad-layout");
    Command::new("cp")
        .arg("-a")
        .arg(test_image("busybox-layers"))
        .arg(&bad_layout)
        .status()
        .unwrap();
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bad_layout.join("index.json")).unwrap()).unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            bad_layout.join("blobs/sha256").join(
                idx["manifests"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = bad_layout.join("blobs/sha256").join(
        m["layers"][2]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let mut data = std::fs::read(&layer).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&layer, data).unwrap();
    let err = fails(&root, &["images", "import", bad_layout.to_str().unwrap()]);
    assert!(err.contains("does not match its digest"), "{err}");
    let err = fails(
        &root,
        &[
            "images",
            "import",
            t.path().join("missing.tar").to_str().unwrap(),
        ],
    );
    assert!(err.contains("missing.tar"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // Bad container ids and unknown containers.
    let err = fails(&root, &["rootfs", "prepare", "busybox", "../evil"]);
    assert!(err.contains("container id \"../evil\""), "{err}");
    let err = fails(&root, &["rootfs", "remove", "nope"]);
    assert!(err.contains("no rootfs"), "{err}");

    assert_eq!(
        std::fs::read(root.join("images.json")).unwrap(),
        before,
        "bad input changed the image metadata"
    );
    assert_eq!(count(&root.join("tmp")), 0);
    assert_eq!(count(&root.join("snapshots")), 1);
}

/// A small valid layer: one file.
fn small_layer() -> LayoutLayer {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, tar::EntryType::Regular, "hello", None, b"hello\n");
    let blob = b.into_inner().unwrap();
    LayoutLayer {
        diff_id: sha(&blob),
        blob,
        media_type: "application/vnd.oci.image.layer.v1.tar",
    }
}

#[test]
fn layout_files_that_are_symlinks_are_refused_and_nothing_is_copied() {
    require_root!();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // A host file only root may read, whose digest the attacker knows.
    let host = tempfile::Builder::new()
        .prefix("husk-test-secret-")
        .tempdir()
        .unwrap();
    let secret = host.path().join("shadow");
    let data = b"root:$6$husk-test-secret$x:19000:0:99999:7:::\n".to_vec();
    std::fs::write(&secret, &data).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let hex = sha(&data).trim_start_matches("sha256:").to_string();
    let no_secret_copied = |what: &str| {
        assert!(
            !root.join("content/sha256").join(&hex).exists(),
            "{what}: the host file was copied into the content store"
        );
        for e in std::fs::read_dir(root.join("content/sha256"))
            .into_iter()
            .flatten()
        {
            let p = e.unwrap().path();
            assert_ne!(
                std::fs::read(&p).unwrap(),
                data,
                "{what}: {} holds the host file",
                p.display()
            );
        }
        assert_eq!(
            json(&root, &["images", "list"]).as_array().unwrap().len(),
            0,
            "{what}: image recorded"
        );
        assert_eq!(count(&root.join("snapshots")), 0, "{what}: snapshot kept");
        assert_eq!(count(&root.join("tmp")), 0, "{what}: temp files kept");
    };

    // 1. The layer blob is a symlink to the host file, under that file's digest.
    let l1 = t.path().join("blob-link");
    write_layout(
        &l1,
        &[LayoutLayer {
            blob: data.clone(),
            diff_id: sha(&data),
            media_type: "application/vnd.oci.image.layer.v1.tar",
        }],
    );
    let blob = l1.join("blobs/sha256").join(&hex);
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&secret, &blob).unwrap();
    let err = fails(&root, &["images", "import", l1.to_str().unwrap()]);
    assert!(
        err.contains(&format!("blobs/sha256/{hex}: is a symlink")) && err.contains("refused"),
        "{err}"
    );
    no_secret_copied("blob symlink");

    // 2. blobs/ itself is a symlink to a directory outside the layout.
    let l2 = t.path().join("dir-link");
    write_layout(&l2, &[small_layer()]);
    let outside = host.path().join("blobs");
    std::fs::rename(l2.join("blobs"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, l2.join("blobs")).unwrap();
    let err = fails(&root, &["images", "import", l2.to_str().unwrap()]);
    assert!(err.contains("is a symlink or lies under one"), "{err}");
    no_secret_copied("blobs dir symlink");

    // 3. index.json and oci-layout as symlinks (to good files elsewhere).
    for name in ["index.json", "oci-layout"] {
        let l = t.path().join(format!("{name}-link"));
        write_layout(&l, &[small_layer()]);
        let elsewhere = host.path().join(name);
        std::fs::rename(l.join(name), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, l.join(name)).unwrap();
        let err = fails(&root, &["images", "import", l.to_str().unwrap()]);
        assert!(
            err.contains(&format!("{name}: is a symlink")),
            "{name}: {err}"
        );
        no_secret_copied(name);
        // The same layout with the real file imports.
        std::fs::remove_file(l.join(name)).unwrap();
        std::fs::rename(&elsewhere, l.join(name)).unwrap();
        let img = json(&root, &["images", "import", l.to_str().unwrap()]);
        ok(&root, &["images", "rm", img[0]["id"].as_str().unwrap()]);
    }
}

#[test]
fn a_relative_root_works_like_an_absolute_one() {
    require_root!();
    husk_tests::private_mount_ns();
    let t = tempfile::tempdir().unwrap();
    let run = |root: &str, args: &[&str]| {
        let out = husklet_command(Path::new(root))
            .current_dir(t.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "husklet --root {root} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let busybox = test_image("busybox");
    run(
        "store",
        &[
            "images",
            "import",
            "--name",
            "rel:1",
            busybox.to_str().unwrap(),
        ],
    );
    let rootfs = run("store", &["rootfs", "prepare", "rel:1", "c1"]);
    let want = t.path().join("store/containers/c1/rootfs");
    assert_eq!(Path::new(rootfs.trim()), want);
    assert!(
        want.join("bin/busybox").exists(),
        "the overlay is not mounted"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&run("./store/", &["rootfs", "show", "c1"])).unwrap();
    assert_eq!(shown["rootfs"], want.to_str().unwrap());
    run("store/../store", &["rootfs", "remove", "c1"]);
    assert!(!t.path().join("store/containers/c1").exists());
}
