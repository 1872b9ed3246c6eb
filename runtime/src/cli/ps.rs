//! `husk ps`: the container's processes (`ps -ef` filtered to them, or a JSON list of pids).

use anyhow::Context;

use super::args::{Flag, Matches, value};
use crate::state::Store;

/// `husk ps`'s flags.
pub const FLAGS: &[Flag] = &[value("format", b'f', "table or json (default table)")];

#[derive(Debug)]
pub struct Args {
    /// table or json.
    pub format: String,
    /// The container id.
    pub id: String,
    /// Options for ps (default -ef).
    pub ps_args: Vec<String>,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Self {
        Self {
            format: m.get("format").unwrap_or("table").into(),
            id: m.arg(0),
            ps_args: m.pos.get(1..).unwrap_or_default().to_vec(),
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let pids =
        crate::container::pids(store, &a.id).with_context(|| format!("container {}", a.id))?;
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            return Ok(0);
        }
        "table" => {}
        other => anyhow::bail!("--format: unknown format {other:?} (table or json)"),
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    anyhow::ensure!(
        out.status.success(),
        "ps {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(pid) = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&pid) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}
