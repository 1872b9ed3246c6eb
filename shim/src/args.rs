//! The command line (no clap: a per-container process stays small).

use std::path::PathBuf;

use crate::error::ShimError;

/// What the shim was asked to run.
#[derive(Debug)]
pub struct Args {
    pub runtime: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub dir: PathBuf,
    /// The CRI log; `None` only with `--stream` (output goes to the stream alone).
    pub log_path: Option<PathBuf>,
    pub stdin: bool,
    /// fd 0 is a connected attach client that the process's output waits for.
    pub stream: bool,
    pub exec: Option<PathBuf>,
    pub log_limit: usize,
    /// Once the container has exited: `husk delete` it and unmount this
    /// path (its rootfs), before the exit is recorded.
    pub release: Option<PathBuf>,
}

pub const USAGE: &str = "usage: husk-shim --runtime PATH --root DIR --id ID --bundle DIR --dir SHIM_DIR \
--log-path FILE [--stdin] [--exec PROCESS_JSON] [--log-limit BYTES] [--release ROOTFS]
       husk-shim ... --exec PROCESS_JSON --stream [--stdin]   (fd 0: the stream's attach socket; no log)";

impl Args {
    /// Parse `argv[1..]`: `--flag value` or `--flag=value`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, ShimError> {
        let mut v: [Option<String>; 9] = Default::default();
        const NAMES: [&str; 9] = [
            "runtime",
            "root",
            "id",
            "bundle",
            "dir",
            "log-path",
            "exec",
            "log-limit",
            "release",
        ];
        let (mut stdin, mut stream) = (false, false);
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--") else {
                return Err(ShimError::Usage(format!("unexpected argument {a:?}")));
            };
            match flag {
                "stdin" => stdin = true,
                "stream" => stream = true,
                _ => {}
            }
            if matches!(flag, "stdin" | "stream") {
                continue;
            }
            let (name, inline) = match flag.split_once('=') {
                Some((n, val)) => (n, Some(val.to_string())),
                None => (flag, None),
            };
            let i = NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| ShimError::Usage(format!("unknown flag --{name}")))?;
            let val = match inline {
                Some(x) => x,
                None => it
                    .next()
                    .ok_or_else(|| ShimError::Usage(format!("--{name} needs a value")))?,
            };
            v[i] = Some(val);
        }
        let log_path = v[5].take().filter(|s| !s.is_empty()).map(PathBuf::from);
        let mut need = |i: usize| {
            v[i].take()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ShimError::Usage(format!("--{} is required", NAMES[i])))
        };
        let args = Args {
            runtime: need(0)?.into(),
            root: need(1)?.into(),
            id: need(2)?,
            bundle: need(3)?.into(),
            dir: need(4)?.into(),
            log_path,
            exec: v[6].take().map(PathBuf::from),
            log_limit: match v[7].take() {
                Some(s) => s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ShimError::Usage(format!("--log-limit: {s:?} is not a positive number"))
                })?,
                None => husk_shim::DEFAULT_LOG_LIMIT,
            },
            release: v[8].take().filter(|s| !s.is_empty()).map(PathBuf::from),
            stdin,
            stream,
        };
        if args.log_path.is_none() && !args.stream {
            return Err(ShimError::Usage("--log-path is required".into()));
        }
        if args.release.is_some() && args.exec.is_some() {
            return Err(ShimError::Usage(
                "--release is for containers: an exec session has nothing to delete".into(),
            ));
        }
        if args.stream && args.exec.is_none() {
            return Err(ShimError::Usage(
                "--stream needs --exec: only exec sessions stream".into(),
            ));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, ShimError> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_flags() {
        let a = parse("--runtime /h --root=/r --id c --bundle /b --dir /d --log-path /l --stdin --log-limit 10").unwrap();
        assert_eq!(a.root, PathBuf::from("/r"));
        assert!(a.stdin);
        assert_eq!(a.log_limit, 10);
        assert!(a.exec.is_none());
    }

    #[test]
    fn names_the_missing_or_bad_flag() {
        let e = parse("--runtime /h --root /r").unwrap_err().to_string();
        assert!(e.contains("--id is required"), "{e}");
        let e = parse("--bogus 1").unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
        let e =
            parse("--runtime /h --root /r --id c --bundle /b --dir /d --log-path /l --log-limit 0")
                .unwrap_err()
                .to_string();
        assert!(e.contains("--log-limit"), "{e}");
        let e = parse("--runtime /h --root /r --id c --bundle /b --dir /d --stream")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--stream needs --exec"), "{e}");
        let a = parse(
            "--runtime /h --root /r --id c --bundle /b --dir /d --log-path /l --release /rootfs",
        )
        .unwrap();
        assert_eq!(a.release.as_deref(), Some(std::path::Path::new("/rootfs")));
        let e = parse(
            "--runtime /h --root /r --id c --bundle /b --dir /d --exec /p --stream --release /x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--release is for containers"), "{e}");
    }

    #[test]
    fn stream_sessions_need_no_log() {
        let a =
            parse("--runtime /h --root /r --id c --bundle /b --dir /d --exec /p --stream --stdin")
                .unwrap();
        assert!(a.stream && a.stdin && a.log_path.is_none());
        let e = parse("--runtime /h --root /r --id c --bundle /b --dir /d --exec /p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--log-path is required"), "{e}");
    }
}
