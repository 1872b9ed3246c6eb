//! `husk list`: a table like runc's, or `--format json`.

use super::args::{Flag, Matches, switch, value};
use crate::state::{Store, live_status};

/// `husk list`'s flags.
pub const FLAGS: &[Flag] = &[
    value("format", b'f', "table or json (default table)"),
    switch("quiet", b'q', "Print only the ids"),
];

#[derive(Debug)]
pub struct Args {
    /// table or json.
    pub format: String,
    /// Print only the ids.
    pub quiet: bool,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Self {
        Self {
            format: m.get("format").unwrap_or("table").into(),
            quiet: m.on("quiet"),
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut rows = Vec::new();
    for id in store.ids()? {
        let Ok(state) = store.peek(&id) else { continue };
        let status = live_status(&store.root().join(&id), &state);
        rows.push((state, status));
    }
    if a.quiet {
        for (s, _) in &rows {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = rows.iter().map(|(s, st)| s.oci(*st)).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|(s, st)| {
                    let o = s.oci(*st);
                    [
                        s.id.clone(),
                        o.pid.to_string(),
                        st.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        if s.owner.is_empty() {
                            "root".into()
                        } else {
                            s.owner.clone()
                        },
                    ]
                })
                .collect();
            let mut widths = header.map(str::len);
            for r in &table {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.len());
                }
            }
            let line = |cells: Vec<&str>| {
                let mut out = String::new();
                for (i, c) in cells.iter().enumerate() {
                    if i + 1 == cells.len() {
                        out.push_str(c);
                    } else {
                        out.push_str(&format!("{c:<w$}   ", w = widths[i]));
                    }
                }
                println!("{out}");
            };
            line(header.to_vec());
            for r in &table {
                line(r.iter().map(String::as_str).collect());
            }
        }
        other => anyhow::bail!("--format: unknown format {other:?} (table or json)"),
    }
    Ok(0)
}
