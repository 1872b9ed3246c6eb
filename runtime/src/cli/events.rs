//! `husk events`: a container's statistics in runc's JSON shape — once with
//! `--stats`, else one line every `--interval` (plus `oom` lines when the
//! kernel OOM-kills in the container) until the container stops.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::args::{Flag, Matches, UsageError, switch, value};
use crate::cgroups::{self, Event};
use crate::state::{Status, Store};

/// `husk events`'s flags.
pub const FLAGS: &[Flag] = &[
    switch("stats", 0, "Print the statistics once and exit"),
    value(
        "interval",
        0,
        "How often to print statistics (5s, 500ms, 1m; default 5s)",
    ),
];

#[derive(Debug)]
pub struct Args {
    /// Print the statistics once and exit.
    pub stats: bool,
    /// How often to print statistics when streaming (5s, 500ms, 1m).
    pub interval: Duration,
    /// The container id.
    pub id: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Result<Self, UsageError> {
        let interval = parse_duration(m.get("interval").unwrap_or("5s"))
            .map_err(|e| UsageError(format!("--interval: {e}")))?;
        Ok(Self {
            stats: m.on("stats"),
            interval,
            id: m.arg(0),
        })
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let ctx = || format!("container {}", a.id);
    let (state, status) = crate::container::state(store, &a.id).with_context(ctx)?;
    if status == Status::Stopped {
        anyhow::bail!("container {} is not running", a.id);
    }
    let cg = cgroups::open(state.cgroups_path.as_deref(), &a.id).with_context(ctx)?;
    let mut out = std::io::stdout().lock();
    let mut ooms = None;
    loop {
        let stats = cg.stats().with_context(ctx)?;
        let oom_kills = stats.memory.raw.get("oom_kill").copied().unwrap_or(0);
        if let Some(before) = ooms
            && oom_kills > before
        {
            print(
                &mut out,
                &Event {
                    kind: "oom",
                    id: &a.id,
                    data: None,
                },
            )?;
        }
        ooms = Some(oom_kills);
        print(
            &mut out,
            &Event {
                kind: "stats",
                id: &a.id,
                data: Some(&stats),
            },
        )?;
        if a.stats {
            return Ok(0);
        }
        std::thread::sleep(a.interval);
        match crate::container::state(store, &a.id) {
            Ok((_, Status::Stopped)) | Err(_) => return Ok(0),
            Ok(_) => {}
        }
    }
}

fn print(out: &mut impl Write, ev: &Event<'_>) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, ev).context("write event")?;
    writeln!(out).context("write event")?;
    out.flush().context("write event")
}

/// A Go-style duration as runc takes it: `5s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 5s, 500ms or 1m");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{s:?}: the interval must be positive"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "5", "s", "5x", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
