//! The CRI log file: `<time> <stream> <F|P> <line>` per line, reopened on
//! request (after a rotator renamed it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{ShimError, io_err};

/// The log file and what is pending in each stream's unfinished line.
pub struct CriLog {
    path: PathBuf,
    file: File,
    limit: usize,
    /// Unfinished line of stdout and stderr (index 0 and 1).
    pending: [Vec<u8>; 2],
}

/// Which stream a chunk came from.
#[derive(Clone, Copy)]
pub enum Out {
    Stdout = 0,
    Stderr = 1,
}

impl Out {
    fn name(self) -> &'static str {
        match self {
            Out::Stdout => "stdout",
            Out::Stderr => "stderr",
        }
    }
}

fn open(path: &Path) -> Result<File, ShimError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("open log file {}", path.display())))
}

impl CriLog {
    /// Open (create or append to) the log at `path`; lines longer than
    /// `limit` bytes are cut into `P` pieces.
    pub fn open(path: &Path, limit: usize) -> Result<CriLog, ShimError> {
        Ok(CriLog {
            path: path.to_path_buf(),
            file: open(path)?,
            limit,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Open the path again: lines from now on go to whatever file is there
    /// (a new one after a rename). The old file is kept if this fails.
    pub fn reopen(&mut self) -> Result<(), ShimError> {
        self.file = open(&self.path)?;
        Ok(())
    }

    /// Log what the container wrote: every whole line as `F`, pieces of
    /// `limit` bytes as `P`; the rest waits for more.
    pub fn write(&mut self, out: Out, mut data: &[u8]) -> Result<(), ShimError> {
        let mut text = Vec::new();
        let ts = husk_shim::time::now();
        while !data.is_empty() {
            let room = self.limit - self.pending[out as usize].len();
            // A newline right after `room` bytes still ends a full line.
            match data.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.pending[out as usize]);
                    line.extend_from_slice(&data[..i]);
                    entry(&mut text, &ts, out, 'F', &line);
                    data = &data[i + 1..];
                }
                None if data.len() > room => {
                    let mut line = std::mem::take(&mut self.pending[out as usize]);
                    line.extend_from_slice(&data[..room]);
                    entry(&mut text, &ts, out, 'P', &line);
                    data = &data[room..];
                }
                None => {
                    self.pending[out as usize].extend_from_slice(data);
                    data = &[];
                }
            }
        }
        self.emit(&text)
    }

    /// The stream ended: its unfinished line goes out as `P`.
    pub fn finish(&mut self, out: Out) -> Result<(), ShimError> {
        let line = std::mem::take(&mut self.pending[out as usize]);
        if line.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        entry(&mut text, &husk_shim::time::now(), out, 'P', &line);
        self.emit(&text)
    }

    fn emit(&mut self, text: &[u8]) -> Result<(), ShimError> {
        if text.is_empty() {
            return Ok(());
        }
        // One write per chunk of output: O_APPEND keeps lines whole.
        self.file
            .write_all(text)
            .map_err(io_err(format!("write log file {}", self.path.display())))
    }
}

fn entry(text: &mut Vec<u8>, ts: &str, out: Out, tag: char, line: &[u8]) {
    text.extend_from_slice(ts.as_bytes());
    text.push(b' ');
    text.extend_from_slice(out.name().as_bytes());
    text.push(b' ');
    text.push(tag as u8);
    text.push(b' ');
    text.extend_from_slice(line);
    text.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let ts = p.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    p.next().unwrap().into(),
                    p.next().unwrap().into(),
                    p.next().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_full_partial_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut log = CriLog::open(&p, 4).unwrap();
        log.write(Out::Stdout, b"ab\ncd").unwrap();
        log.write(Out::Stderr, b"e\n").unwrap();
        log.write(Out::Stdout, b"e\n0123456789\n").unwrap();
        log.write(Out::Stdout, b"xyz").unwrap();
        log.finish(Out::Stdout).unwrap();
        log.finish(Out::Stderr).unwrap();
        let got = lines(&p);
        let want = [
            ("stdout", "F", "ab"),
            ("stderr", "F", "e"),
            ("stdout", "F", "cde"),
            ("stdout", "P", "0123"),
            ("stdout", "P", "4567"),
            ("stdout", "F", "89"),
            ("stdout", "P", "xyz"),
        ];
        let got: Vec<_> = got
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut log = CriLog::open(&p, 4).unwrap();
        log.write(Out::Stdout, b"abcd\n").unwrap();
        assert_eq!(lines(&p), [("stdout".into(), "F".into(), "abcd".into())]);
    }
}
