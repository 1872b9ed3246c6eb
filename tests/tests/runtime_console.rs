//! `--console-socket`: the runtime sends the pty master over SCM_RIGHTS, as
//! runc does; the container's stdio is the pty's slave.

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// Receive one fd and its name from the console socket.
fn recv_master(listener: &UnixListener) -> (String, OwnedFd) {
    let (conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&conn),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this fd for us.
            fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    (
        String::from_utf8_lossy(&buf[..n]).into_owned(),
        fd.expect("an fd in the message"),
    )
}

#[test]
fn console_socket_receives_the_pty_master() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(
        &rt,
        "c",
        &[
            "sh",
            "-c",
            "tty; test -t 0 && test -t 1 && echo stdio-is-tty; echo size $(stty size)",
        ],
    );
    b.edit(|c| {
        c["process"]["terminal"] = true.into();
        c["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 111});
    });
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let t = std::thread::spawn(move || recv_master(&listener));
    rt.detached(&[
        "create",
        "--bundle",
        b.path_str(),
        "--console-socket",
        sock.to_str().unwrap(),
        "t1",
    ]);
    let (name, master) = t.join().unwrap();
    assert_eq!(name, "/dev/ptmx");
    rt.detached(&["start", "t1"]);
    let mut f = std::fs::File::from(master);
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    // Read until the slave side closes (EIO on a pty master).
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        out.contains("/dev/pts/0") || out.contains("/dev/console"),
        "{out}"
    );
    assert!(out.contains("stdio-is-tty"), "{out}");
    assert!(out.contains("size 33 111"), "{out}");
    rt.wait_status("t1", "stopped");
    rt.ok(&["delete", "t1"]);
}
