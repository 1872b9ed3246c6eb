//! Registry credentials from docker credential helpers (`credHelpers`,
//! `credsStore` in config.json) against a real registry with htpasswd auth.
//! The helpers are shell scripts on the husklet process's PATH only; each
//! test runs in a network namespace of its own.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use husk_tests::bins::test_image;
use husk_tests::husklet::{husklet_command, husklet_json as json};
use husk_tests::registry::TestRegistry;
use husk_tests::require_root;

/// Write `docker-credential-<name>` (a /bin/sh script) into `dir`.
fn helper(dir: &Path, name: &str, body: &str) {
    let p = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `husklet --docker-config CFG images pull REF` with `helpers` first on PATH.
fn pull(root: &Path, helpers: &Path, cfg: &Path, reference: &str) -> Output {
    let mut path = OsString::from(helpers);
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    husklet_command(root)
        .env("PATH", path)
        .args(["--output", "json", "--docker-config"])
        .arg(cfg)
        .args(["images", "pull", reference])
        .output()
        .expect("run husklet")
}

#[test]
fn pull_with_credentials_from_a_helper_only() {
    require_root!();
    husk_tests::netns::private_loopback();
    let reg = TestRegistry::start_with_auth("alice", "s3cret-pw");
    reg.push_oci(&test_image("busybox"), "latest", "private/bb:1");
    let r = reg.reference("private/bb:1");
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Answers only for this registry, and logs what it was asked.
    let log = t.path().join("asked");
    helper(
        &bin,
        "husk-test",
        &format!(
            r#"[ "$1" = get ] || exit 3
read -r url
echo "$url" >> {log}
if [ "$url" = "{addr}" ]; then
  printf '{{"ServerURL":"%s","Username":"alice","Secret":"s3cret-pw"}}' "$url"
else
  echo 'credentials not found in native keychain'; exit 1
fi"#,
            log = log.display(),
            addr = reg.addr
        ),
    );
    helper(
        &bin,
        "husk-none",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    helper(
        &bin,
        "husk-broken",
        "echo 'cannot unlock the keychain' >&2; exit 4",
    );
    let cfg = t.path().join("config.json");

    // credHelpers for this host; no auths at all.
    std::fs::write(
        &cfg,
        format!(r#"{{"credHelpers":{{"{}":"husk-test"}}}}"#, reg.addr),
    )
    .unwrap();
    let out = pull(&t.path().join("r1"), &bin, &cfg, &r);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(img["names"][0], r.as_str());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        reg.addr,
        "the helper is asked with the registry host on stdin"
    );

    // credsStore says "not found": no credentials, and the registry says no.
    std::fs::write(&cfg, r#"{"credsStore":"husk-none"}"#).unwrap();
    let out = pull(&t.path().join("r2"), &bin, &cfg, &r);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("denied") && err.contains("no credentials"),
        "{err}"
    );

    // A failing helper fails the pull, naming helper, host and its message.
    std::fs::write(&cfg, r#"{"credsStore":"husk-broken"}"#).unwrap();
    let out = pull(&t.path().join("r3"), &bin, &cfg, &r);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("docker-credential-husk-broken")
            && err.contains(&reg.addr)
            && err.contains("cannot unlock the keychain"),
        "{err}"
    );

    // A per-host credHelpers entry wins over credsStore.
    std::fs::write(
        &cfg,
        format!(
            r#"{{"credsStore":"husk-broken","credHelpers":{{"{}":"husk-test"}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let out = pull(&t.path().join("r4"), &bin, &cfg, &r);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(&t.path().join("r4"), &["images", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
