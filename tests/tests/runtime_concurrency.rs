//! Concurrent commands on one container id are serialised: exactly one of
//! many parallel creates wins, and parallel state/kill/delete stay consistent.

use std::sync::Arc;

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;

#[test]
fn parallel_creates_of_one_id() {
    require_root!();
    let rt = Arc::new(Runtime::new());
    let b = Arc::new(Bundle::new(&rt, "c", &["sleep", "300"]));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let rt = rt.clone();
            let b = b.clone();
            std::thread::spawn(move || {
                rt.cmd(&["create", "--bundle", b.path_str(), "p1"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(rt.state("p1")["status"], "created");
    // Parallel state + delete --force: every state call either sees the
    // container whole or not at all.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let o = rt.out(&["state", "p1"]);
                    if o.status.success() {
                        let v: serde_json::Value =
                            serde_json::from_slice(&o.stdout).expect("whole JSON");
                        assert_eq!(v["id"], "p1");
                    }
                }
            })
        })
        .collect();
    rt.ok(&["delete", "--force", "p1"]);
    for r in readers {
        r.join().unwrap();
    }
    assert!(rt.status("p1").is_none());
}
