//! Images and runtime together: pull the three-layer test image from a real
//! registry (by tag and by digest), mount overlay rootfses of it with
//! `husklet rootfs prepare`, and `husk run` busybox on them. The container
//! must see the whiteouts applied and the layer contents, and its writes must
//! land in its own upper dir, never in the shared snapshots.

use std::path::{Path, PathBuf};

use husk_tests::bins::test_image;
use husk_tests::husklet::{husklet, husklet_ok};
use husk_tests::oci::{Bundle, Runtime, host_mounts_under};
use husk_tests::registry::TestRegistry;
use husk_tests::require_root;

/// What the container runs: prints layer2's file, the opaque dir's listing,
/// whether the whited-out file is gone, and writes a file of its own.
const SCRIPT: &str = "cat /etc/layer2 \
    && echo opaque: $(ls -A /opaque) \
    && test ! -e /data/gone && echo gone: yes \
    && echo from-container > /etc/written-by-container \
    && echo done";

fn husklet_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&husklet_ok(root, &a)).expect("json output")
}

/// Overlay rootfses prepared by `husklet rootfs prepare` in one store;
/// each one still present is removed (unmounted) on drop, also when the test
/// fails midway.
struct Rootfses {
    root: PathBuf,
    ids: Vec<String>,
}

impl Rootfses {
    fn new(root: &Path) -> Self {
        Rootfses {
            root: root.to_path_buf(),
            ids: Vec::new(),
        }
    }

    /// Mount a rootfs of `image` for container `id`; returns its path.
    fn prepare(&mut self, image: &str, id: &str) -> PathBuf {
        let out = husklet(&self.root, &["rootfs", "prepare", image, id]);
        // Register before asserting: a failure after the mount must still clean up.
        self.ids.push(id.to_string());
        assert!(
            out.status.success(),
            "husklet rootfs prepare {image} {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("utf8").trim())
    }

    /// `husklet rootfs remove id`, expecting success.
    fn remove(&mut self, id: &str) {
        husklet_ok(&self.root, &["rootfs", "remove", id]);
        self.ids.retain(|i| i != id);
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}

impl Drop for Rootfses {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            if self.container_dir(&id).exists() {
                let _ = husklet(&self.root, &["rootfs", "remove", &id]);
            }
        }
    }
}

/// A bundle whose config.json is `husk spec`'s, edited to run [`SCRIPT`]
/// on the (absolute) `rootfs` in cgroup `cgroups_path`.
fn bundle_for(rootfs: &Path, cgroups_path: &str) -> Bundle {
    let mut bundle = Bundle::husk_spec();
    bundle.edit(|config| {
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(["sh", "-c", SCRIPT]);
        config["root"] = serde_json::json!({"path": rootfs, "readonly": false});
        config["linux"]["cgroupsPath"] = cgroups_path.into();
    });
    bundle
}

/// Files named `name` anywhere under `dir` (not following symlinks).
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name() == name {
            found.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&p, name));
        }
    }
    found
}

#[test]
fn husk_runs_busybox_on_overlay_rootfs_pulled_by_tag_and_digest() {
    require_root!();
    husk_tests::become_subreaper();
    husk_tests::private_mount_ns();

    let reg = TestRegistry::start();
    reg.push_oci(&test_image("busybox-layers"), "latest", "test/layers:v1");
    let tmp = tempfile::Builder::new()
        .prefix("husk-test-images-run-")
        .tempdir()
        .unwrap();
    let store = tmp.path().join("store");

    // Pull by tag, then by the digest the tag resolved to: one image.
    let by_tag = reg.reference("test/layers:v1");
    let img = husklet_json(&store, &["images", "pull", &by_tag]);
    assert_eq!(img["layers"].as_array().unwrap().len(), 3, "{img}");
    let by_digest = img["repoDigests"][0].as_str().unwrap().to_string();
    assert!(
        by_digest.starts_with(&format!("{}@sha256:", reg.reference("test/layers"))),
        "{by_digest}"
    );
    let img2 = husklet_json(&store, &["images", "pull", &by_digest]);
    assert_eq!(img2["id"], img["id"], "by-digest pull is the same image");

    let mut rootfses = Rootfses::new(&store);
    // Declared after the rootfses so that it drops first: containers are
    // deleted before their rootfs is unmounted.
    let rt = Runtime::new();

    for (image, id) in [(&by_tag, "c-tag"), (&by_digest, "c-digest")] {
        let rootfs = rootfses.prepare(image, id);
        assert_eq!(rootfs, rootfses.container_dir(id).join("rootfs"));
        assert_eq!(
            host_mounts_under(&rootfs),
            vec![rootfs.display().to_string()],
            "overlay mounted at {}",
            rootfs.display()
        );
        // Whiteouts already show from the host side.
        assert!(!rootfs.join("data/gone").exists());

        let bundle = bundle_for(&rootfs, &rt.cgroup().path(id));
        let out = rt.out(&["run", "--keep", "--bundle", bundle.path_str(), id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "husk run {id} on {image} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout, "layer2\nopaque: new\ngone: yes\ndone\n",
            "container {id} output"
        );

        // The write is in this container's upper dir and its merged view ...
        let upper = rootfses.container_dir(id).join("upper");
        assert_eq!(
            std::fs::read_to_string(upper.join("etc/written-by-container")).unwrap(),
            "from-container\n"
        );
        assert!(rootfs.join("etc/written-by-container").exists());
        // ... but in no shared snapshot.
        assert_eq!(
            find_named(&store.join("snapshots"), "written-by-container"),
            Vec::<PathBuf>::new(),
            "container write leaked into a shared snapshot"
        );

        let state = rt.state(id);
        assert_eq!(state["status"], "stopped", "{state}");
        assert_eq!(state["rootfs"], rootfs.to_str().unwrap(), "{state}");
        rt.ok(&["delete", id]);
        assert!(
            !rt.container_ids().contains(&id.to_string()),
            "{id} still listed after delete"
        );
        assert!(!rt.root().join(id).exists(), "{id}: runtime state left");
    }

    // c-tag's write is invisible to a later container of the same image.
    let fresh = rootfses.prepare(&by_tag, "c-fresh");
    assert!(fresh.join("etc/layer2").exists());
    assert!(
        !fresh.join("etc/written-by-container").exists(),
        "another container's write is visible in a fresh rootfs"
    );

    for id in ["c-tag", "c-digest", "c-fresh"] {
        let rootfs = rootfses.container_dir(id).join("rootfs");
        rootfses.remove(id);
        assert_eq!(
            host_mounts_under(&rootfs),
            Vec::<String>::new(),
            "{id}: overlay still mounted"
        );
        assert!(
            !rootfses.container_dir(id).exists(),
            "{id}: rootfs dirs left behind"
        );
    }
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        0,
        "container dirs left in the store"
    );
    // The image stays for the next container.
    let kept = husklet_json(&store, &["images", "inspect", &by_digest]);
    assert_eq!(kept["id"], img["id"], "{kept}");
    assert!(
        rt.cgroup().dirs().iter().all(|d| std::fs::read_dir(d)
            .map(|rd| rd.flatten().all(|e| !e.path().is_dir()))
            .unwrap_or(true)),
        "container cgroups left: {:?}",
        rt.cgroup().dirs()
    );
}
