//! `/containerLogs/{ns}/{pod}/{container}`: a container's log, decoded
//! from the CRI log format (`<time> <stream> <P|F> <content>`), with
//! kubelet's `PodLogOptions` query: `follow` (until the container stops),
//! `previous`, `timestamps`, `tailLines`, `sinceSeconds`/`sinceTime`,
//! `limitBytes`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::StatusCode;
use http_body_util::StreamBody;
use hyper::Response;
use hyper::body::Frame;
use k8s_openapi::api::core::v1::ContainerStatus;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncSeekExt as _, BufReader};
use tokio::sync::mpsc;

use super::{Body, NodeApi, text};
use crate::pod::termination::parse_log_line;

/// How often a followed log is polled for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query of a log request (`v1.PodLogOptions`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

/// Parse the query; `Err` is the message of a 400.
pub fn parse_query(query: &str, now: DateTime<Utc>) -> Result<LogOptions, String> {
    let mut o = LogOptions::default();
    for (k, v) in form_pairs(query) {
        let boolean = || match v.as_str() {
            "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!("{k}: {v:?} is not a boolean")),
        };
        let number = || {
            v.parse::<i64>()
                .map_err(|_| format!("{k}: {v:?} is not an integer"))
        };
        let non_negative = |n: i64, min: i64| {
            u64::try_from(n)
                .ok()
                .filter(|_| n >= min)
                .ok_or_else(|| format!("{k}: must be at least {min}"))
        };
        match k.as_str() {
            "follow" => o.follow = boolean()?,
            "previous" => o.previous = boolean()?,
            "timestamps" => o.timestamps = boolean()?,
            "tailLines" => o.tail_lines = Some(non_negative(number()?, 0)?),
            "limitBytes" => o.limit_bytes = Some(non_negative(number()?, 1)?),
            "sinceSeconds" => {
                let s = non_negative(number()?, 1)?;
                let s = i64::try_from(s).map_err(|_| format!("{k}: too large"))?;
                o.since = Some(now - chrono::Duration::seconds(s));
            }
            "sinceTime" => {
                let t = DateTime::parse_from_rfc3339(&v)
                    .map_err(|e| format!("sinceTime: {v:?}: {e}"))?;
                o.since = Some(t.with_timezone(&Utc));
            }
            _ => {}
        }
    }
    Ok(o)
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container's status in `statuses` of every kind.
fn status_of<'a>(
    st: &'a k8s_openapi::api::core::v1::PodStatus,
    name: &str,
) -> Option<&'a ContainerStatus> {
    st.container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .chain(st.ephemeral_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
}

/// Whether the pod's spec has a container `name`.
fn in_spec(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| c.name == name)
            || s.init_containers.iter().flatten().any(|c| c.name == name)
            || s.ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == name)
    })
}

/// Serve one log request.
pub async fn serve(
    api: &NodeApi,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = match parse_query(query, Utc::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let Some(report) = api.find_pod(ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {pod:?} does not exist"),
        );
    };
    if !in_spec(&report.pod, container) {
        return text(
            StatusCode::NOT_FOUND,
            &format!("container {container:?} not found in pod {pod:?}"),
        );
    }
    let Some(status) = status_of(&report.status, container).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("container {container:?} in pod {pod:?} is waiting to start"),
        );
    };
    let n = if opts.previous {
        let terminated = status
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some());
        if !terminated || status.restart_count == 0 {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        status.restart_count - 1
    } else {
        if status.container_id.is_none() {
            let why = status
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone())
                .unwrap_or_else(|| "ContainerCreating".into());
            return text(
                StatusCode::BAD_REQUEST,
                &format!("container {container:?} in pod {pod:?} is waiting to start: {why}"),
            );
        }
        status.restart_count
    };
    let path = Path::new(&report.log_directory)
        .join(container)
        .join(format!("{n}.log"));
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("open {}: {e}", path.display()),
            );
        }
    };
    // Following the previous container is reading it: it has stopped.
    let follow = opts.follow && !opts.previous;
    let watch = api
        .deps
        .pods
        .as_ref()
        .zip(report.pod.metadata.uid.as_deref())
        .and_then(|(m, uid)| m.watch(uid));
    let running = {
        let (name, id) = (container.to_string(), status.container_id.clone());
        move || {
            watch.as_ref().is_some_and(|w| {
                let r = w.borrow();
                !r.gone
                    && status_of(&r.status, &name).is_some_and(|s| {
                        s.container_id == id
                            && s.state.as_ref().is_some_and(|st| st.running.is_some())
                    })
            })
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    tokio::spawn(copy_log(file, path, opts, follow, running, tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut r = Response::new(http_body_util::BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Where the last `n` lines of `file` start.
async fn tail_offset(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.seek(SeekFrom::End(0)).await?;
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut lines = 0u64;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(chunk).await?;
        for i in (0..chunk.len()).rev() {
            let at = start + i as u64;
            // The newline at the very end ends a line; the others start one.
            if chunk[i] == b'\n' && at != len - 1 {
                lines += 1;
                if lines == n {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// One decoded log entry as the client sees it.
fn render(line: &[u8], opts: &LogOptions, out: &mut Vec<u8>) {
    let Some(l) = parse_log_line(line) else {
        return;
    };
    if let Some(since) = opts.since {
        match DateTime::parse_from_rfc3339(l.time) {
            Ok(t) if t.with_timezone(&Utc) < since => return,
            _ => {}
        }
    }
    if opts.timestamps {
        out.extend_from_slice(l.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.content);
    if l.full {
        out.push(b'\n');
    }
}

async fn copy_log(
    mut file: tokio::fs::File,
    path: PathBuf,
    opts: LogOptions,
    follow: bool,
    running: impl Fn() -> bool + Send + 'static,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) {
    let start = match opts.tail_lines {
        Some(n) => tail_offset(&mut file, n).await,
        None => Ok(0),
    };
    let seeked = match start {
        Ok(s) => file.seek(SeekFrom::Start(s)).await,
        Err(e) => Err(e),
    };
    if let Err(e) = seeked {
        tracing::warn!(path = %path.display(), error = %e, "kubelet API: read log");
        return;
    }
    let mut r = BufReader::new(file);
    let mut left = opts.limit_bytes.unwrap_or(u64::MAX);
    let mut line = Vec::new();
    // After the container stopped: one more pass picks up its last words.
    let mut last_pass = false;
    loop {
        line.clear();
        let got = match r.read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if got > 0 && line.ends_with(b"\n") {
            let mut out = Vec::new();
            render(&line[..line.len() - 1], &opts, &mut out);
            let take = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if take > 0 {
                out.truncate(take);
                left -= take as u64;
                if tx.send(Ok(Frame::data(Bytes::from(out)))).await.is_err() {
                    return;
                }
            }
            if left == 0 {
                return;
            }
            continue;
        }
        // End of what is written (a line in progress is read again whole).
        if got > 0 {
            let back = i64::try_from(got).unwrap_or(0);
            if r.seek(SeekFrom::Current(-back)).await.is_err() {
                return;
            }
        }
        if !follow || last_pass {
            return;
        }
        if !running() {
            last_pass = true;
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_parsed_as_pod_log_options() {
        let now = Utc::now();
        let o = parse_query(
            "follow=true&tailLines=3&timestamps=1&limitBytes=10&sinceSeconds=5&x=y",
            now,
        )
        .expect("query");
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(10)));
        assert_eq!(o.since, Some(now - chrono::Duration::seconds(5)));
        assert!(parse_query("tailLines=-1", now).is_err());
        assert!(parse_query("limitBytes=0", now).is_err());
        assert!(parse_query("follow=maybe", now).is_err());
        let o = parse_query("sinceTime=2024-01-02T03%3A04%3A05Z", now).expect("time");
        assert_eq!(
            o.since.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-01-02T03:04:05+00:00")
        );
    }

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_pairs("command=sh&command=-c&command=echo+a%20b%3B"),
            vec![
                ("command".into(), "sh".into()),
                ("command".into(), "-c".into()),
                ("command".into(), "echo a b;".into()),
            ]
        );
        assert_eq!(
            form_pairs("a=%zz&b=%4"),
            vec![("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
    }

    #[test]
    fn entries_render_with_partials_timestamps_and_since() {
        let mut o = LogOptions::default();
        let mut out = Vec::new();
        render(b"2024-01-01T00:00:00.5Z stdout P par", &o, &mut out);
        render(b"2024-01-01T00:00:01Z stdout F tial", &o, &mut out);
        render(b"2024-01-01T00:00:02Z stderr F err", &o, &mut out);
        assert_eq!(out, b"partial\nerr\n");
        o.timestamps = true;
        o.since = DateTime::parse_from_rfc3339("2024-01-01T00:00:01Z")
            .ok()
            .map(|t| t.with_timezone(&Utc));
        out.clear();
        render(b"2024-01-01T00:00:00Z stdout F old", &o, &mut out);
        render(b"2024-01-01T00:00:02Z stdout F new", &o, &mut out);
        assert_eq!(out, b"2024-01-01T00:00:02Z new\n");
    }

    #[tokio::test]
    async fn tail_finds_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.log");
        std::fs::write(&p, "a\nb\nc\n").expect("write");
        let mut f = tokio::fs::File::open(&p).await.expect("open");
        assert_eq!(tail_offset(&mut f, 1).await.expect("tail"), 4);
        assert_eq!(tail_offset(&mut f, 2).await.expect("tail"), 2);
        assert_eq!(tail_offset(&mut f, 3).await.expect("tail"), 0);
        assert_eq!(tail_offset(&mut f, 10).await.expect("tail"), 0);
        assert_eq!(tail_offset(&mut f, 0).await.expect("tail"), 6);
    }
}
