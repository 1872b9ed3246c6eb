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
    rt.ok(&[
        "create",
        "--bundle",
        b.path_str(),
        "--console-socket",
        sock.to_str().unwrap(),
        "t1",
    ]);
    let (name, master) = t.join().unwrap();
    assert_eq!(name, "/dev/ptmx");
    rt.ok(&["start", "t1"]);
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

/// A runtime command whose stdin/stdout/stderr is the slave of a fresh pty
/// (its controlling terminal, as in a shell), driven through the master.
struct OnPty {
    master: std::fs::File,
    /// Kept to check the terminal's modes after the runtime exits.
    slave: std::fs::File,
    child: std::process::Child,
    out: String,
}

impl OnPty {
    fn spawn(rt: &Runtime, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let ws = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = rt.cmd(args);
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn runtime");
        drop(cmd);
        OnPty {
            master: std::fs::File::from(pty.master),
            slave,
            child,
            out: String::new(),
        }
    }

    /// Read output until `pred` holds on all of it, or the runtime exits.
    fn read_until(&mut self, pred: impl Fn(&str) -> bool) {
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !pred(&self.out) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out; output so far: {:?}",
                self.out
            );
            let mut p = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let n = nix::poll::poll(&mut p, nix::poll::PollTimeout::from(100u16)).unwrap_or(0);
            if n > 0 {
                let mut buf = [0u8; 4096];
                match self.master.read(&mut buf) {
                    Ok(n) if n > 0 => self.out.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => {}
                }
            } else if self.child.try_wait().expect("try_wait").is_some() {
                return;
            }
        }
    }

    fn type_in(&mut self, s: &str) {
        use std::io::Write;
        self.master
            .write_all(s.as_bytes())
            .expect("write to the pty");
    }

    /// Wait for the runtime to exit (reading what is left) and return its code.
    fn wait(mut self) -> (String, Option<i32>, nix::sys::termios::Termios) {
        self.read_until(|_| false);
        let st = self.child.wait().expect("wait");
        let modes = nix::sys::termios::tcgetattr(&self.slave).expect("tcgetattr");
        (self.out, st.code(), modes)
    }
}

fn assert_cooked(modes: &nix::sys::termios::Termios) {
    use nix::sys::termios::LocalFlags;
    assert!(
        modes
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "the caller's terminal was not restored: {:?}",
        modes.local_flags
    );
}

#[test]
fn run_with_a_terminal_and_no_console_socket_uses_the_callers_terminal() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["sh"]);
    b.edit(|c| c["process"]["terminal"] = true.into());
    let mut t = OnPty::spawn(&rt, &["run", "--bundle", b.path_str(), "fg-tty"]);
    // busybox sh prints its prompt once it reads the terminal.
    t.read_until(|o| o.contains("# "));
    // $((...)) keeps the echoed input apart from the output.
    t.type_in("stty size; test -t 0 && test -t 1 && echo tty-$((1+1))yes\n");
    t.read_until(|o| o.contains("tty-2yes"));
    assert!(t.out.contains("40 100"), "initial size: {:?}", t.out);
    // The caller's terminal is raw: the input is echoed once, by the
    // container's pty, not a second time by the caller's.
    assert_eq!(t.out.matches("echo tty-").count(), 1, "{:?}", t.out);
    // A resize of the caller's terminal reaches the container (SIGWINCH).
    let ws = libc::winsize {
        ws_row: 50,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&t.master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };
    assert_eq!(rc, 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    t.type_in("stty size; exit 7\n");
    let (out, code, modes) = t.wait();
    assert!(out.contains("50 120"), "size after resize: {out:?}");
    assert_eq!(code, Some(7), "{out:?}");
    assert_cooked(&modes);
    assert!(
        !rt.state_dir("fg-tty").exists(),
        "run deletes the container"
    );
}

#[test]
fn exec_with_a_terminal_and_no_console_socket_uses_the_callers_terminal() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), "fg-exec"]);
    let t = OnPty::spawn(
        &rt,
        &[
            "exec",
            "-t",
            "fg-exec",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo exec-tty; exit 3",
        ],
    );
    let (out, code, modes) = t.wait();
    assert!(out.contains("exec-tty"), "{out:?}");
    assert_eq!(code, Some(3), "{out:?}");
    assert_cooked(&modes);
    rt.ok(&["delete", "-f", "fg-exec"]);
}

#[test]
fn detached_run_with_a_terminal_still_needs_a_console_socket() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["true"]);
    b.edit(|c| c["process"]["terminal"] = true.into());
    let o = rt.out(&["run", "-d", "--bundle", b.path_str(), "det-tty"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("console"), "{err}");
    assert!(!rt.state_dir("det-tty").exists(), "nothing is left behind");
}
