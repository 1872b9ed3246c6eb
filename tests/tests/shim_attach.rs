//! husk-shim's attach socket: stdin through `cat` and back, a tty resized
//! from an attach client and from the control socket (seen by `stty size`),
//! and a client that never reads is dropped while the log stays complete.

mod shim_support;

use std::time::{Duration, Instant};

use husk_tests::require_root;
use serde_json::json;
use shim_support::{Fixture, contains, read_until, stream};

#[test]
fn attach_stdin_reaches_cat_and_its_output_comes_back() {
    require_root!();
    let c = Fixture::new(&["cat"], |_| {});
    c.run(true);
    let mut a = c.attach();
    a.write_stdin(b"hello from attach\n").expect("write stdin");
    let mut out = Vec::new();
    read_until(&mut a, &mut out, 10, |o| contains(o, "hello from attach\n"));
    assert!(
        contains(&out, "hello from attach\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    // EOF on the container's stdin ends cat.
    a.close_stdin().expect("close stdin");
    let rec = c.wait_exit();
    assert_eq!((rec.exit_code, rec.signal), (0, None), "{rec:?}");
    // Output is in the log as well, and the shim hung up on the client.
    assert_eq!(
        stream(&c.log(), "stdout"),
        vec![("F".to_string(), "hello from attach".to_string())]
    );
    read_until(&mut a, &mut out, 10, |_| false);
}

#[test]
fn without_stdin_the_container_reads_eof() {
    require_root!();
    let c = Fixture::new(&["sh", "-c", "cat; echo cat-done"], |_| {});
    // Attached before the start: `cat` ends at once, and with it the sockets.
    c.launch(false);
    let mut a = c.attach();
    c.ctl().start().expect("start");
    // Dropped: the container has no stdin pipe.
    let _ = a.write_stdin(b"ignored\n");
    let rec = c.wait_exit();
    assert_eq!(rec.exit_code, 0);
    assert_eq!(
        stream(&c.log(), "stdout"),
        vec![("F".to_string(), "cat-done".to_string())]
    );
}

#[test]
fn tty_resizes_reach_the_pty() {
    require_root!();
    let c = Fixture::new(
        &["sh", "-c", "read a; stty size; read b; stty size"],
        |cfg| {
            cfg["process"]["terminal"] = json!(true);
        },
    );
    c.run(false);
    let mut a = c.attach();
    a.resize(33, 111).expect("resize through attach");
    a.write_stdin(b"go\n").expect("write to the tty");
    let mut out = Vec::new();
    read_until(&mut a, &mut out, 10, |o| contains(o, "33 111"));
    assert!(
        contains(&out, "33 111"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    c.ctl().resize(44, 122).expect("resize through ctl");
    a.write_stdin(b"go\n").expect("write to the tty");
    read_until(&mut a, &mut out, 10, |o| contains(o, "44 122"));
    assert!(
        contains(&out, "44 122"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let rec = c.wait_exit();
    assert_eq!(rec.exit_code, 0, "{rec:?}");
    // A tty has one stream: all of it is stdout in the log, with the pty's \r.
    let lines = c.log();
    assert!(lines.iter().all(|l| l.stream == "stdout"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.tag == "F" && l.text == "44 122\r"),
        "{lines:?}"
    );

    // No tty: resize is a clear error.
    let plain = Fixture::new(&["sleep", "100"], |_| {});
    plain.launch(false);
    let err = plain.ctl().resize(1, 1).unwrap_err().to_string();
    assert!(err.contains("no tty"), "{err}");
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_log_is_complete() {
    require_root!();
    // ~1.3 MB of output, far more than a unix socket buffers.
    let c = Fixture::new(&["sh", "-c", "read go; seq 1 200000"], |_| {});
    c.run(true);
    let mut stalled = c.attach();
    stalled.write_stdin(b"go\n").expect("write stdin");
    let t = Instant::now();
    let rec = c.wait_exit();
    assert_eq!(rec.exit_code, 0, "{rec:?}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the container was held back"
    );
    let lines = stream(&c.log(), "stdout");
    assert_eq!(lines.len(), 200000);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, (t, s))| t == "F" && *s == (i + 1).to_string())
    );
    // The stalled client got what its socket buffer held, then EOF.
    let mut got = Vec::new();
    read_until(&mut stalled, &mut got, 10, |_| false);
    assert!(
        !got.is_empty() && got.len() < 1_000_000,
        "stalled client got {} bytes",
        got.len()
    );
}

#[test]
fn stdin_the_container_does_not_read_yet_holds_back_only_the_writer() {
    require_root!();
    // The container reads nothing for a second, then counts its stdin.
    let c = Fixture::new(&["sh", "-c", "echo waiting; sleep 1; wc -c"], |_| {});
    c.run(true);
    let mut a = c.attach();
    let writer = std::thread::spawn(move || {
        // 1 MB: far more than the pipe and the socket buffers hold.
        a.write_stdin(&vec![b'x'; 1_000_000]).expect("write stdin");
        a.close_stdin().expect("close stdin");
        a
    });
    // Meanwhile the shim serves control requests and logs output.
    husk_tests::wait_for("the first line", 5, || !c.log().is_empty());
    let t = Instant::now();
    assert_eq!(c.ctl().status().expect("status").state, "running");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the shim was blocked on stdin"
    );
    let rec = c.wait_exit();
    assert_eq!(rec.exit_code, 0, "{rec:?}");
    let _ = writer.join().expect("writer thread");
    let want = vec![
        ("F".to_string(), "waiting".to_string()),
        ("F".into(), "1000000".into()),
    ];
    assert_eq!(stream(&c.log(), "stdout"), want);
}
