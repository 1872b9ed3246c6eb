//! `exec` into a running container: exit status, namespaces, cgroup, user, env, cwd.

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;

fn start(rt: &Runtime, id: &str) -> (Bundle, i32) {
    let b = Bundle::new(rt, "c", &["sleep", "300"]);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), id]);
    let pid = rt.state(id)["pid"].as_i64().unwrap() as i32;
    (b, pid)
}

#[test]
fn exec_status_propagates() {
    require_root!();
    let rt = Runtime::new();
    let (_b, _) = start(&rt, "x1");
    let st = rt
        .cmd(&["exec", "x1", "sh", "-c", "exit 5"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(5));
    let st = rt.cmd(&["exec", "x1", "true"]).status().unwrap();
    assert_eq!(st.code(), Some(0));
    let o = rt.out(&["exec", "x1", "/no/such/program"]);
    assert!(!o.status.success());
    rt.ok(&["delete", "--force", "x1"]);
}

#[test]
fn exec_joins_every_namespace_and_the_cgroup() {
    require_root!();
    let rt = Runtime::new();
    let (_b, pid) = start(&rt, "x2");
    let out = rt.ok(&[
        "exec",
        "x2",
        "sh",
        "-c",
        "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup; hostname",
    ]);
    let mut want = String::new();
    for n in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let l = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        want.push_str(&format!("{}\n", l.display()));
    }
    assert!(out.starts_with(&want), "got:\n{out}\nwant:\n{want}");
    // The exec'd process is in the container's cgroup: inside the cgroup
    // namespace every hierarchy shows its root.
    for l in out.lines().filter(|l| l.contains(":/")) {
        assert!(l.ends_with(":/"), "{out}");
    }
    assert!(out.ends_with("husk-test\n"), "{out}");
    // And on the host, the exec'd process was listed in the container's cgroup.
    let ps: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "x2"])).unwrap();
    assert_eq!(ps, [pid as i64], "only the init is left");
    rt.ok(&["delete", "--force", "x2"]);
}

#[test]
fn exec_detached_is_in_the_cgroup_and_process_json_is_used() {
    require_root!();
    let rt = Runtime::new();
    let (b, pid) = start(&rt, "x3");
    let proc_json = b.path().join("process.json");
    std::fs::write(
        &proc_json,
        serde_json::to_vec(&serde_json::json!({
            "args": ["sh", "-c", "echo $FOO $(id -u) $(pwd) > /tmp/out; exec sleep 300"],
            "env": ["FOO=bar", "PATH=/bin"],
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1000}
        }))
        .unwrap(),
    )
    .unwrap();
    let pidfile = b.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "--process",
        proc_json.to_str().unwrap(),
        "x3",
    ]);
    let epid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ps: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "x3"])).unwrap();
        let out = std::fs::read_to_string(b.rootfs().join("tmp/out")).unwrap_or_default();
        if ps.contains(&epid) && out == "bar 1000 /tmp\n" {
            assert!(ps.contains(&(pid as i64)));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ps {ps:?} out {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rt.ok(&["delete", "--force", "x3"]);
    assert!(husk_tests::oci::wait_gone(epid as i32));
}

#[test]
fn exec_with_env_user_and_cwd_flags() {
    require_root!();
    let rt = Runtime::new();
    let (_b, _) = start(&rt, "x4");
    let out = rt.ok(&[
        "exec",
        "-e",
        "A=1",
        "--cwd",
        "/etc",
        "--user",
        "123:456",
        "x4",
        "sh",
        "-c",
        "echo $A $(id -u) $(id -g) $(pwd)",
    ]);
    assert_eq!(out, "1 123 456 /etc\n");
    rt.ok(&["delete", "--force", "x4"]);
}
