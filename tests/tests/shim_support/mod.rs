//! A container under a real `husk-shim` running the built `husk`, with its
//! bundle, runtime root and cgroup of its own (shared by the shim_* tests).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use husk_shim::client::{Attach, Ctl, LaunchConfig, LaunchError, launch, read_exit};
use husk_shim::{ExitRecord, Frame, Stream};
use husk_tests::bins;
use husk_tests::oci::{Bundle, Runtime};
use serde_json::Value;

/// A bundle and a shim dir; dropping it deletes (`--force`) the container,
/// which ends the shim.
pub struct Fixture {
    pub rt: Runtime,
    pub bundle: Bundle,
    pub id: String,
    tmp: tempfile::TempDir,
}

impl Fixture {
    /// A busybox container running `args`, after `edit` changed its config.
    pub fn new(args: &[&str], edit: impl FnOnce(&mut Value)) -> Fixture {
        let rt = Runtime::husk();
        let mut bundle = Bundle::new(&rt, "shim", args);
        bundle.edit(edit);
        Fixture {
            rt,
            bundle,
            id: format!("shim-{}", husk_tests::unique_suffix()),
            tmp: tempfile::Builder::new()
                .prefix("husk-test-shim-")
                .tempdir()
                .expect("shim tempdir"),
        }
    }

    /// The shim's directory (made by the shim).
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("shim")
    }

    /// The CRI log file.
    pub fn log_path(&self) -> PathBuf {
        self.tmp.path().join("ctr.log")
    }

    /// A scratch path next to the shim dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// What `launch` gets: the built `husk-shim` and `husk`.
    pub fn config(&self, stdin: bool) -> LaunchConfig {
        LaunchConfig {
            shim: bins::bin("husk-shim"),
            runtime: bins::bin("husk"),
            root: self.rt.root().to_path_buf(),
            id: self.id.clone(),
            bundle: self.bundle.path().to_path_buf(),
            dir: self.dir(),
            log_path: self.log_path(),
            stdin,
            exec: None,
            release: None,
        }
    }

    /// Launch the shim (the container is created, not started); its pid.
    pub fn launch(&self, stdin: bool) -> i32 {
        self.try_launch(stdin)
            .unwrap_or_else(|e| panic!("launch husk-shim: {e}"))
    }

    /// Launch the shim, returning the launcher's error.
    pub fn try_launch(&self, stdin: bool) -> Result<i32, LaunchError> {
        launch(&self.config(stdin))
    }

    /// A new control connection.
    pub fn ctl(&self) -> Ctl {
        Ctl::connect(&self.dir()).expect("connect to ctl.sock")
    }

    /// A new attach connection.
    pub fn attach(&self) -> Attach {
        Attach::connect(&self.dir()).expect("connect to attach.sock")
    }

    /// Launch and start.
    pub fn run(&self, stdin: bool) -> i32 {
        let pid = self.launch(stdin);
        self.ctl().start().expect("start");
        pid
    }

    /// Wait (20 s at most) for the shim's exit record.
    pub fn wait_exit(&self) -> ExitRecord {
        wait_exit(&self.dir())
    }

    /// The log's lines, each checked against the CRI format.
    pub fn log(&self) -> Vec<LogLine> {
        parse_log(&self.log_path())
    }
}

/// Wait (20 s at most) for the exit record in a shim dir.
pub fn wait_exit(dir: &Path) -> ExitRecord {
    let mut rec = None;
    husk_tests::wait_for("the shim's exit.json", 20, || {
        rec = read_exit(dir).expect("read exit.json");
        rec.is_some()
    });
    rec.expect("exit record")
}

/// One CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub text: String,
}

/// Parse a CRI log, asserting every line is `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>`.
pub fn parse_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8(text).expect("log is UTF-8 here");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "log ends mid-line: {text:?}"
    );
    // split, not lines(): a tty's "\r" before the newline is part of the text.
    text.split_terminator('\n')
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (time, stream, tag) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            let text = f.next().unwrap_or_else(|| panic!("short log line {l:?}"));
            assert!(is_rfc3339_nano_utc(time), "bad timestamp in {l:?}");
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream in {l:?}"
            );
            assert!(tag == "F" || tag == "P", "bad tag in {l:?}");
            LogLine {
                time: time.into(),
                stream: stream.into(),
                tag: tag.into(),
                text: text.into(),
            }
        })
        .collect()
}

/// `2016-10-06T00:17:09.669794202Z`.
pub fn is_rfc3339_nano_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.dddddddddZ".as_bytes();
    b.len() == shape.len()
        && b.iter().zip(shape).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => c == p,
        })
}

/// The lines of one stream, as (tag, text).
pub fn stream(lines: &[LogLine], name: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l.stream == name)
        .map(|l| (l.tag.clone(), l.text.clone()))
        .collect()
}

/// Read attach frames into `out` (stdout and stderr together) until `until`
/// holds for it or the shim closes the connection; panics after `secs`.
pub fn read_until(a: &mut Attach, out: &mut Vec<u8>, secs: u64, until: impl Fn(&[u8]) -> bool) {
    a.socket()
        .set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .expect("set read timeout");
    while !until(out) {
        match a.read_frame().expect("read an attach frame (timed out?)") {
            Some(Frame {
                stream: Stream::Stdout | Stream::Stderr,
                data,
            }) => out.extend_from_slice(&data),
            Some(f) => panic!("unexpected frame from the shim: {f:?}"),
            None => return,
        }
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
