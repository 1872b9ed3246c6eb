//! Runtime logging as runc does it: errors on stderr and, with `--log`, as
//! lines in the log file (`--log-format json`: `{"level":"error","msg":...,"time":...}`,
//! which containerd's shim reads back to report the last error).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

/// Where log lines go.
struct Sink {
    file: Option<File>,
    json: bool,
    debug: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    json: false,
    debug: false,
});

/// Set up logging from the global flags. Opening the log file is best effort
/// only in the sense that a failure is reported and logging falls back to stderr.
pub fn init(log: Option<&Path>, json: bool, debug: bool) -> std::io::Result<()> {
    let file = match log {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)?,
        ),
        None => None,
    };
    let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
    s.file = file;
    s.json = json;
    s.debug = debug;
    Ok(())
}

/// Whether --debug was given.
pub fn debug_enabled() -> bool {
    SINK.lock().map(|s| s.debug).unwrap_or(false)
}

/// Log an error: stderr, and the log file if any.
pub fn error(msg: &str) {
    write("error", msg, true);
}

/// Log a warning: the log file if any, else stderr.
pub fn warn(msg: &str) {
    write("warning", msg, false);
}

/// Log a debug line when --debug is on.
pub fn debug(msg: &str) {
    if debug_enabled() {
        write("debug", msg, false);
    }
}

fn write(level: &str, msg: &str, always_stderr: bool) {
    let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let json = s.json;
    let has_file = s.file.is_some();
    if let Some(f) = s.file.as_mut() {
        let line = if json {
            let mut v = serde_json::to_string(&serde_json::json!({
                "level": level,
                "msg": msg,
                "time": crate::sys::rfc3339_now(),
            }))
            .unwrap_or_default();
            v.push('\n');
            v
        } else {
            format!(
                "time=\"{}\" level={level} msg={:?}\n",
                crate::sys::rfc3339_now(),
                msg
            )
        };
        let _ = f.write_all(line.as_bytes());
    }
    if always_stderr || !has_file {
        let _ = writeln!(std::io::stderr(), "husk: {level}: {msg}");
    }
}
