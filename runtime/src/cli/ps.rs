//! `husk ps`: the container's processes (`ps -ef` filtered to them, or a JSON list of pids).

use anyhow::Context;

use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// The container id.
    pub id: String,
    /// Options for ps (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
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
