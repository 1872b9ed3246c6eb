//! Termination messages: the host file behind `terminationMessagePath`
//! (read from its end, at most 4 KiB) and, for
//! `FallbackToLogsOnError`, the tail of the container's CRI log (last 80
//! lines, at most 2 KiB), as kubelet does.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

/// Most bytes of a termination message file kubelet reports.
pub const MAX_MESSAGE: usize = 4096;
/// Log lines looked at for `FallbackToLogsOnError`.
pub const MAX_LOG_LINES: usize = 80;
/// Most bytes of a message taken from the log.
pub const MAX_LOG_BYTES: usize = 2048;

/// Create the empty host file for a container's termination log under
/// `<pod_dir>/containers/<name>/<random>` and the CRI mount that puts it at
/// `container_path` (kubelet's `makeMounts`). A restart gets a new file.
pub fn prepare(
    pod_dir: &Path,
    container: &str,
    container_path: &str,
) -> std::io::Result<(PathBuf, cri::Mount)> {
    let dir = pod_dir.join("containers").join(container);
    std::fs::create_dir_all(&dir)?;
    let name = crate::cri::record::new_id()[..8].to_string();
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Writable by any container user, as kubelet leaves it (0666 via chmod).
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    let mount = cri::Mount {
        container_path: container_path.to_string(),
        host_path: path.to_string_lossy().into_owned(),
        ..Default::default()
    };
    Ok((path, mount))
}

/// The last `max` bytes of `path` (`tail.ReadAtMost`).
fn read_at_most(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max as u64 {
        f.seek(SeekFrom::Start(len - max as u64))?;
    }
    let mut buf = Vec::with_capacity(max.min(len as usize));
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The message of an exited container. `message_file`: the host file of
/// its termination log (None when `terminationMessagePath` is empty);
/// `fallback_to_logs`: the policy is FallbackToLogsOnError and the exit
/// code is non-zero; `log_path`: its CRI log.
pub fn message(message_file: Option<&Path>, fallback_to_logs: bool, log_path: &Path) -> String {
    let (msg, check_logs) = match message_file {
        None => (String::new(), fallback_to_logs),
        Some(p) => match read_at_most(p, MAX_MESSAGE) {
            Ok(data) => {
                let empty = data.is_empty();
                (
                    String::from_utf8_lossy(&data).into_owned(),
                    fallback_to_logs && empty,
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), fallback_to_logs),
            Err(e) => return format!("Error on reading termination log {}: {e}", p.display()),
        },
    };
    if check_logs {
        return log_tail(log_path, MAX_LOG_LINES, MAX_LOG_BYTES);
    }
    msg
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// RFC 3339 timestamp.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// False for a `P` (partial) line: no newline follows the content.
    pub full: bool,
    /// The content.
    pub content: &'a [u8],
}

/// Parse `<time> <stream> <P|F> <content>` (the CRI log format); the tag
/// is optional in old logs (then the line is full).
pub fn parse_log_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let rest = parts.next().unwrap_or(b"");
    let (full, content) = match rest {
        [b'P', b' ', content @ ..] => (false, content),
        [b'F', b' ', content @ ..] => (true, content),
        [b'P'] => (false, &rest[1..]),
        [b'F'] => (true, &rest[1..]),
        _ => (true, rest),
    };
    Some(LogLine {
        time,
        stream,
        full,
        content,
    })
}

/// The output of the last `lines` log lines of both streams, at most
/// `max_bytes` from its end (`readLastStringFromContainerLogs`).
pub fn log_tail(log_path: &Path, lines: usize, max_bytes: usize) -> String {
    let Ok(data) = std::fs::read(log_path) else {
        return String::new();
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(l) = parse_log_line(raw) else {
            continue;
        };
        current.extend_from_slice(l.content);
        if l.full {
            current.push(b'\n');
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    let start = out.len().saturating_sub(lines);
    let joined: Vec<u8> = out[start..].concat();
    let from = joined.len().saturating_sub(max_bytes);
    String::from_utf8_lossy(&joined[from..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_message_and_cap() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mount) = prepare(dir.path(), "app", "/dev/termination-log").unwrap();
        assert_eq!(mount.container_path, "/dev/termination-log");
        assert!(path.starts_with(dir.path().join("containers/app")));
        let log = dir.path().join("log");
        std::fs::write(&path, "all done").unwrap();
        assert_eq!(message(Some(&path), true, &log), "all done");
        let long: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(&path, &long).unwrap();
        let m = message(Some(&path), false, &log);
        assert_eq!(m.len(), MAX_MESSAGE);
        assert_eq!(
            m,
            long[long.len() - MAX_MESSAGE..],
            "the end of the file is kept"
        );
        // A second container start gets its own file.
        let (other, _) = prepare(dir.path(), "app", "/dev/termination-log").unwrap();
        assert_ne!(other, path);
    }

    #[test]
    fn fallback_to_logs() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let log = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "2026-01-02T15:04:05.999999999Z stdout F line {i}\n"
            ));
        }
        text.push_str(
            "2026-01-02T15:04:06Z stderr P partial \n2026-01-02T15:04:06Z stderr F end\n",
        );
        std::fs::write(&log, &text).unwrap();
        let m = message(Some(&empty), true, &log);
        assert!(m.starts_with("line 21\n"), "last 80 lines: {m:?}");
        assert!(m.ends_with("line 99\npartial end\n"), "{m:?}");
        assert_eq!(
            message(Some(&empty), false, &log),
            "",
            "File policy: no logs"
        );
        assert_eq!(message(None, false, &log), "");
        assert!(message(Some(&dir.path().join("missing")), true, &log).ends_with("partial end\n"));
        // The 2 KiB cap on what comes from logs.
        let big = dir.path().join("big.log");
        let line = format!("2026-01-02T15:04:05Z stdout F {}\n", "x".repeat(100));
        std::fs::write(&big, line.repeat(50)).unwrap();
        assert_eq!(
            log_tail(&big, MAX_LOG_LINES, MAX_LOG_BYTES).len(),
            MAX_LOG_BYTES
        );
    }

    #[test]
    fn log_lines() {
        let l = parse_log_line(b"2026-01-02T15:04:05Z stdout P abc def").unwrap();
        assert_eq!(
            (l.stream, l.full, l.content),
            ("stdout", false, &b"abc def"[..])
        );
        let l = parse_log_line(b"2026-01-02T15:04:05Z stderr F").unwrap();
        assert_eq!((l.full, l.content), (true, &b""[..]));
        assert!(parse_log_line(b"garbage").is_none());
        assert!(parse_log_line(b"t stdin F x").is_none());
    }
}
