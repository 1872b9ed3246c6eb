//! Volume mounts end to end, as Kubernetes documents them: hostPath with
//! its `type` checks (a mismatch keeps the pod from starting, with a
//! FailedMount event), subPath, readOnly, and `emptyDir.medium: Memory` as
//! a tmpfs of `sizeLimit`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use husk_tests::pods::{PodNode, condition, has_event};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn pod_with_host_path(name: &str, path: &str, type_: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: h, hostPath: {{path: "{path}", type: {type_}}}}}]
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    volumeMounts: [{{name: h, mountPath: /h}}]
"#
    )
}

#[test]
fn host_path_types_are_checked_before_the_pod_starts() {
    require_root!();
    let node = PodNode::start();
    let host = node.dir.path().join("host");
    std::fs::create_dir_all(host.join("dir")).expect("dir");
    std::fs::write(host.join("dir/marker"), "on-the-host").expect("marker");
    std::fs::write(host.join("file"), "a file").expect("file");
    let sock = host.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind socket");
    let h = |p: &str| host.join(p).display().to_string();
    let good = [
        ("dir", h("dir"), "Directory", "test -f /h/marker"),
        ("mkdir", h("made/deep"), "DirectoryOrCreate", "test -d /h"),
        ("file", h("file"), "File", "test -f /h"),
        ("mkfile", h("new-file"), "FileOrCreate", "test -f /h"),
        ("sock", h("sock"), "Socket", "test -S /h"),
        ("chr", "/dev/null".to_string(), "CharDevice", "test -c /h"),
    ];
    let bad = [
        ("not-dir", h("file"), "Directory", "is not a directory"),
        ("not-file", h("dir"), "File", "is not a file"),
        (
            "file-not-dir",
            h("file"),
            "DirectoryOrCreate",
            "is not a directory",
        ),
        ("dir-not-file", h("dir"), "FileOrCreate", "is not a file"),
        ("not-sock", h("file"), "Socket", "is not a socket file"),
        (
            "not-chr",
            h("file"),
            "CharDevice",
            "is not a character device",
        ),
        (
            "not-blk",
            "/dev/null".to_string(),
            "BlockDevice",
            "is not a block device",
        ),
    ];
    for (name, path, type_, _) in good.iter().chain(bad.iter()) {
        node.add(
            &format!("{name}.yaml"),
            &pod_with_host_path(name, path, type_),
        );
    }
    for (name, _, type_, check) in &good {
        node.wait_pod(name, T, "Ready", |p| condition(p, "Ready"));
        let (ok, out) = node.exec(name, "c", &["sh", "-c", check]);
        assert!(ok, "{name} ({type_}): `{check}` in the container: {out}");
    }
    let mode = |p: &str| {
        std::fs::metadata(host.join(p))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{p} was not created: {e}"))
    };
    assert_eq!(mode("made/deep"), 0o755, "DirectoryOrCreate makes 0755");
    assert_eq!(mode("new-file"), 0o644, "FileOrCreate makes 0644");
    for (name, _, type_, why) in &bad {
        let p = node.wait_pod(name, T, "FailedMount", |p| {
            has_event(p, "FailedMount", "hostPath type check failed")
        });
        assert!(
            has_event(&p, "FailedMount", why),
            "{name} ({type_}): {:#}",
            p["events"]
        );
        assert_eq!(p["status"]["phase"], "Pending", "{name}: not started");
        assert!(p["sandbox_id"].is_null(), "{name}: no sandbox: {p:#}");
    }
}

#[test]
fn sub_paths_and_read_only_mounts() {
    require_root!();
    let node = PodNode::start();
    std::fs::write(
        node.config_dir().join("settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\ndata: {color: blue, size: \"3\"}\n",
    )
    .expect("configmap");
    let ro = node.dir.path().join("ro");
    std::fs::create_dir_all(&ro).expect("ro dir");
    std::fs::write(ro.join("given"), "read me").expect("ro file");
    node.add(
        "sub.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: sub}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: cfg, configMap: {{name: settings}}}}
  - {{name: ro, hostPath: {{path: "{ro}", type: Directory}}}}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo in-a > /only-a/file; exec sleep 3600"]
    volumeMounts:
    - {{name: scratch, mountPath: /only-a, subPath: a}}
    - {{name: scratch, mountPath: /whole}}
    - {{name: cfg, mountPath: /etc/color, subPath: color}}
    - {{name: ro, mountPath: /ro, readOnly: true}}
"#,
            ro = ro.display()
        ),
    );
    node.wait_pod("sub", T, "Ready", |p| condition(p, "Ready"));
    let sh = |cmd: &str| node.exec("sub", "c", &["sh", "-c", cmd]);
    assert_eq!(
        sh("cat /whole/a/file").1,
        "in-a\n",
        "the subPath is the volume's a/"
    );
    assert_eq!(sh("ls /whole").1.trim(), "a");
    assert_eq!(
        sh("cat /etc/color").1,
        "blue",
        "a file subPath of a configMap"
    );
    assert_eq!(sh("cat /ro/given").1, "read me");
    let (ok, out) = sh("touch /ro/new");
    assert!(!ok && out.contains("Read-only file system"), "{out}");
    assert!(!ro.join("new").exists());
}

#[test]
fn a_memory_empty_dir_is_a_tmpfs_limited_to_its_size() {
    require_root!();
    let node = PodNode::start();
    node.add(
        "ram.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ram}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}]
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    volumeMounts: [{name: mem, mountPath: /mem}]
"#,
    );
    node.wait_pod("ram", T, "Ready", |p| condition(p, "Ready"));
    let (_, mounts) = node.exec("ram", "c", &["cat", "/proc/mounts"]);
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/mem"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.starts_with("tmpfs ") && line.contains("size=8192k"),
        "medium Memory: a tmpfs of sizeLimit: {line:?}"
    );
    let (ok, out) = node.exec(
        "ram",
        "c",
        &["dd", "if=/dev/zero", "of=/mem/big", "bs=1M", "count=16"],
    );
    assert!(!ok && out.contains("No space left"), "{out}");
}
