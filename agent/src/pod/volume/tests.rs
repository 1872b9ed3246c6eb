//! Real volumes: tmpfs and bind mounts in a private mount namespace of the
//! test's thread (nothing reaches the host's mount table), files in tempdirs.

use std::os::unix::fs::PermissionsExt;

use nix::sys::statfs::{TMPFS_MAGIC, statfs};

use super::*;
use crate::pod::downward::Allocatable;
use crate::pod::manifest::{Format, Object, parse};
use crate::pod::objects::MemoryObjects;

fn load(yaml: &str) -> (Pod, MemoryObjects) {
    let mut pod = None;
    let mut objects = MemoryObjects::default();
    for o in parse(yaml, Format::Yaml).unwrap() {
        match o {
            Object::Pod(mut p) => {
                crate::pod::defaults::apply(&mut p);
                crate::pod::validate::pod(&p).unwrap();
                pod = Some(*p);
            }
            Object::ConfigMap(cm) => objects.put_config_map(cm),
            Object::Secret(s) => objects.put_secret(s),
        }
    }
    (pod.unwrap(), objects)
}

fn facts() -> PodFacts {
    PodFacts {
        pod_ips: vec!["10.0.0.9".into()],
        host_ips: vec![],
        allocatable: Allocatable {
            memory: Quantity::parse("1Gi").unwrap(),
            cpu: Quantity::parse("2").unwrap(),
            ..Default::default()
        },
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ns, uid: uid-1, labels: {app: web, tier: front}}
spec:
  containers:
  - name: app
    image: busybox
    resources: {limits: {cpu: 500m, memory: 64Mi}}
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: mem, mountPath: /mem, mountPropagation: HostToContainer}
    - {name: cfg, mountPath: /etc/app}
    - {name: cfg, mountPath: /etc/app.conf, subPath: app.conf}
    - {name: creds, mountPath: /creds, readOnly: false}
    - {name: info, mountPath: /info}
    - {name: all, mountPath: /all}
    - {name: scratch, mountPath: /logs, subPath: logs/app, readOnly: true}
    - {name: host, mountPath: /host}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
  - {name: cfg, configMap: {name: cfg, items: [{key: app.conf, path: app.conf}, {key: extra, path: sub/extra.conf, mode: 0600}]}}
  - {name: creds, secret: {secretName: creds, defaultMode: 0400}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}, {path: cpu, resourceFieldRef: {containerName: app, resource: limits.cpu, divisor: 1m}}]}}
  - name: all
    projected:
      sources:
      - configMap: {name: cfg}
      - secret: {name: creds, items: [{key: password, path: pw}]}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
  - {name: host, hostPath: {path: HOSTDIR, type: DirectoryOrCreate}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ns}
data: {app.conf: "listen 80", extra: "x=1"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ns}
stringData: {password: hunter2}
"#;

#[test]
fn setup_mounts_update_teardown() {
    husk_tests::require_root!();
    husk_tests::private_mount_ns();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host_dir = tmp.path().join("host/created");
    let (pod, mut objects) = load(&POD.replace("HOSTDIR", host_dir.to_str().unwrap()));
    let vols = setup(&root, &pod, &facts(), &objects, &PodTokens::new()).unwrap();
    let pd = root.join("pods/uid-1");
    assert_eq!(vols.pod_dir, pd);
    let v = |p: &str| pd.join("volumes").join(p);

    assert_eq!(mode(&v("kubernetes.io~empty-dir/scratch")), 0o777);
    let mem = statfs(&v("kubernetes.io~empty-dir/mem")).unwrap();
    assert_eq!(mem.filesystem_type(), TMPFS_MAGIC);
    assert_eq!(
        mem.blocks() * mem.block_size() as u64,
        16 << 20,
        "tmpfs sized by sizeLimit"
    );
    assert_ne!(
        statfs(&v("kubernetes.io~empty-dir/scratch"))
            .unwrap()
            .filesystem_type(),
        TMPFS_MAGIC
    );

    let cfg = v("kubernetes.io~configmap/cfg");
    assert_eq!(
        std::fs::read_to_string(cfg.join("app.conf")).unwrap(),
        "listen 80"
    );
    assert_eq!(
        std::fs::read_to_string(cfg.join("sub/extra.conf")).unwrap(),
        "x=1"
    );
    assert_eq!(mode(&cfg.join("app.conf")), 0o644);
    assert_eq!(mode(&cfg.join("sub/extra.conf")), 0o600);
    assert_ne!(
        statfs(&cfg).unwrap().filesystem_type(),
        TMPFS_MAGIC,
        "configMap on disk"
    );

    let creds = v("kubernetes.io~secret/creds");
    assert_eq!(
        statfs(&creds).unwrap().filesystem_type(),
        TMPFS_MAGIC,
        "secret on tmpfs"
    );
    assert_eq!(
        std::fs::read_to_string(creds.join("password")).unwrap(),
        "hunter2"
    );
    assert_eq!(mode(&creds.join("password")), 0o400);

    let info = v("kubernetes.io~downward-api/info");
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"front\""
    );
    assert_eq!(std::fs::read_to_string(info.join("cpu")).unwrap(), "500");

    let all = v("kubernetes.io~projected/all");
    for (f, want) in [
        ("app.conf", "listen 80"),
        ("extra", "x=1"),
        ("pw", "hunter2"),
        ("name", "web"),
    ] {
        assert_eq!(std::fs::read_to_string(all.join(f)).unwrap(), want, "{f}");
    }
    assert!(host_dir.is_dir(), "DirectoryOrCreate made the host dir");

    // CRI mounts.
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let mounts = vols.mounts(c, None).unwrap();
    let by_path = |p: &str| {
        mounts
            .iter()
            .find(|m| m.container_path == p)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_path("/scratch").host_path,
        v("kubernetes.io~empty-dir/scratch").to_str().unwrap()
    );
    assert!(!by_path("/scratch").readonly);
    assert_eq!(
        by_path("/mem").propagation,
        cri::MountPropagation::PropagationHostToContainer as i32
    );
    assert!(by_path("/etc/app").readonly, "configMap is read-only");
    assert!(
        by_path("/creds").readonly,
        "secret is read-only even with readOnly: false"
    );
    assert!(by_path("/logs").readonly);
    assert_eq!(by_path("/host").host_path, host_dir.to_str().unwrap());
    // subPath of a configMap key: the file itself, bind-mounted.
    let sub = by_path("/etc/app.conf");
    assert_eq!(
        sub.host_path,
        pd.join("volume-subpaths/cfg/app/3").to_str().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&sub.host_path).unwrap(),
        "listen 80"
    );
    // subPath dirs are created inside the volume.
    assert!(v("kubernetes.io~empty-dir/scratch/logs/app").is_dir());
    let logs = by_path("/logs");
    std::fs::write(Path::new(&logs.host_path).join("x"), "y").unwrap();
    assert!(
        v("kubernetes.io~empty-dir/scratch/logs/app/x").exists(),
        "the bind mount is the subdir"
    );
    // Calling mounts again (container restart) reuses the subPath mounts.
    assert_eq!(vols.mounts(c, None).unwrap(), mounts);

    // A refresh leaves what containers did to an emptyDir alone.
    std::fs::set_permissions(
        v("kubernetes.io~empty-dir/scratch"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(v("kubernetes.io~empty-dir/mem/data"), "kept").unwrap();
    setup(&root, &pod, &facts(), &objects, &PodTokens::new()).unwrap();
    assert_eq!(mode(&v("kubernetes.io~empty-dir/scratch")), 0o700);
    assert_eq!(
        std::fs::read_to_string(v("kubernetes.io~empty-dir/mem/data")).unwrap(),
        "kept",
        "tmpfs not remounted"
    );

    // An update of the ConfigMap reaches the volume on the next setup.
    let mut cm = objects.config_map("ns", "cfg").unwrap();
    cm.data
        .as_mut()
        .unwrap()
        .insert("app.conf".into(), "listen 8080".into());
    objects.put_config_map(cm);
    let before = std::fs::read_link(cfg.join("..data")).unwrap();
    setup(&root, &pod, &facts(), &objects, &PodTokens::new()).unwrap();
    assert_eq!(
        std::fs::read_to_string(cfg.join("app.conf")).unwrap(),
        "listen 8080"
    );
    assert_ne!(std::fs::read_link(cfg.join("..data")).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(&sub.host_path).unwrap(),
        "listen 80",
        "a subPath mount keeps its file"
    );

    teardown(&pd).unwrap();
    assert!(host::mounts_under(&pd).is_empty(), "every mount gone");
    assert!(!pd.join("volumes").exists() && !pd.join("volume-subpaths").exists());
    assert!(host_dir.is_dir(), "hostPath left alone");
    teardown(&pd).unwrap();
}

#[test]
fn missing_objects_change_nothing() {
    husk_tests::require_root!();
    husk_tests::private_mount_ns();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host_dir = tmp.path().join("hostdir");
    let (pod, objects) = load(&POD.replace("HOSTDIR", host_dir.to_str().unwrap()));
    let empty = MemoryObjects::default();
    let err = setup(&root, &pod, &facts(), &empty, &PodTokens::new()).unwrap_err();
    assert_eq!(err.to_string(), "volume \"cfg\"");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "configmap ns/cfg not found"
    );
    assert!(!root.exists(), "nothing created");
    assert!(!host_dir.exists());
    // A missing items key.
    let mut partial = objects.clone();
    let mut cm = partial.config_map("ns", "cfg").unwrap();
    cm.data.as_mut().unwrap().remove("extra");
    partial.put_config_map(cm);
    let err = setup(&root, &pod, &facts(), &partial, &PodTokens::new()).unwrap_err();
    let src = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(src, "configmap ns/cfg references non-existent key extra");
    // Optional: an empty volume instead.
    let optional = r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, uid: uid-2}
spec:
  containers: [{name: c, image: i}]
  volumes:
  - {name: a, configMap: {name: nope, optional: true}}
  - {name: b, secret: {secretName: creds, optional: true, items: [{key: nope, path: x}]}}
"#;
    let (pod, _) = load(optional);
    let vols = setup(&root, &pod, &facts(), &objects, &PodTokens::new()).unwrap();
    assert_eq!(vols.volumes.len(), 2);
    teardown(&vols.pod_dir).unwrap();
    // A token source without a token (the caller fetches them first, see
    // crate::pod::token) is refused by name.
    let sa = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u3}\nspec:\n  containers: [{name: c, image: i}]\n  volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: token}}]}}]\n";
    let (pod, _) = load(sa);
    let err = setup(&root, &pod, &facts(), &objects, &PodTokens::new()).unwrap_err();
    let src = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(
        src,
        "serviceAccountToken \"token\": no token was fetched for it"
    );
}

#[test]
fn host_path_types() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let file = d.join("file");
    std::fs::write(&file, "x").unwrap();
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ok = |p: &Path, t: &str| host::check_host_path(p, t).map_err(|e| e.to_string());
    assert_eq!(ok(d, "Directory"), Ok(()));
    assert_eq!(ok(&file, "File"), Ok(()));
    assert_eq!(ok(&sock, "Socket"), Ok(()));
    assert_eq!(ok(Path::new("/dev/null"), "CharDevice"), Ok(()));
    assert_eq!(ok(&d.join("missing"), ""), Ok(()), "no type: no check");
    let fail = |p: &Path, t: &str, what: &str| {
        assert_eq!(
            ok(p, t),
            Err(format!(
                "hostPath type check failed: {} is not {what}",
                p.display()
            )),
            "{t}"
        );
    };
    fail(&d.join("missing"), "Directory", "a directory");
    fail(&file, "Directory", "a directory");
    fail(&file, "DirectoryOrCreate", "a directory");
    fail(d, "File", "a file");
    fail(d, "FileOrCreate", "a file");
    fail(&file, "Socket", "a socket file");
    fail(&file, "CharDevice", "a character device");
    fail(Path::new("/dev/null"), "BlockDevice", "a block device");
    assert_eq!(
        ok(d, "Folder"),
        Err("Folder is an invalid volume type".into())
    );
    let made = d.join("a/b/c");
    assert_eq!(ok(&made, "DirectoryOrCreate"), Ok(()));
    assert!(made.is_dir());
    assert_eq!(mode(&made), 0o755);
    let made_file = d.join("new.txt");
    assert_eq!(ok(&made_file, "FileOrCreate"), Ok(()));
    assert!(made_file.is_file());
    assert_eq!(mode(&made_file), 0o644);
}

#[test]
fn sub_path_escapes_refused() {
    husk_tests::require_root!();
    husk_tests::private_mount_ns();
    let tmp = tempfile::tempdir().unwrap();
    let pd = tmp.path().join("pod");
    let vol = tmp.path().join("vol");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("evil")).unwrap();
    std::os::unix::fs::symlink("../outside", vol.join("evil-rel")).unwrap();
    std::fs::create_dir(vol.join("good")).unwrap();
    std::os::unix::fs::symlink("good", vol.join("alias")).unwrap();
    for sub in [
        "evil",
        "evil/new",
        "evil-rel",
        "evil-rel/x/y",
        "../outside",
        "/etc",
    ] {
        let e = subpath::prepare(&pd, &vol, sub, "v", "c", 0).unwrap_err();
        assert!(matches!(e, VolumeError::SubPath { .. }), "{sub}: {e}");
    }
    assert!(
        !outside.join("new").exists() && !outside.join("x").exists(),
        "nothing created outside"
    );
    assert!(host::mounts_under(tmp.path()).is_empty(), "nothing mounted");
    // A symlink that stays inside is fine and mounts its target.
    let target = subpath::prepare(&pd, &vol, "alias/deeper", "v", "c", 1).unwrap();
    assert!(vol.join("good/deeper").is_dir());
    std::fs::write(target.join("f"), "1").unwrap();
    assert!(vol.join("good/deeper/f").exists());
    teardown(&pd).unwrap();
}

#[test]
fn projected_service_account_tokens_take_the_default_mode() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ns, uid: uid-1}
spec:
  containers: [{name: app, image: busybox}]
  volumes:
  - name: kube-api-access
    projected:
      defaultMode: 0640
      sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - serviceAccountToken: {path: vault/token, audience: vault, expirationSeconds: 600}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: ns}
data: {ca.crt: "CERT"}
"#;
    let (pod, objects) = load(yaml);
    let pr = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
        .projected
        .clone()
        .unwrap();
    let sources = pr.sources.unwrap();
    let tokens = PodTokens::from([
        ((String::new(), 3607), "api-jwt".to_string()),
        (("vault".to_string(), 600), "vault-jwt".to_string()),
    ]);
    let p =
        payload::projected(&pod, &sources, pr.default_mode, &facts(), &objects, &tokens).unwrap();
    assert_eq!(p["token"].data, b"api-jwt");
    assert_eq!(p["token"].mode, 0o640);
    assert_eq!(p["vault/token"].data, b"vault-jwt");
    assert_eq!(p["ca.crt"].data, b"CERT");
    // Without its token the volume is not made.
    let err = payload::projected(&pod, &sources, None, &facts(), &objects, &PodTokens::new())
        .unwrap_err();
    assert!(err.to_string().contains("no token was fetched"), "{err}");
}
