//! `husk list`: a table like runc's, or `--format json`.

use super::args::{Flag, Matches, switch, value};
use crate::state::{State, Status, Store, live_status};

/// The status of a container whose state cannot be read.
const UNKNOWN: &str = "unknown";

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

/// One row: a container's state, or only its id when its state.json
/// cannot be read (a create killed half-way, a corrupt file), listed with
/// the status `unknown` as runc does, so that it can be found and deleted.
struct Row {
    id: String,
    state: Option<(State, Status)>,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let mut rows = Vec::new();
    for id in store.ids()? {
        let dir = store.root().join(&id);
        let state = match store.peek(&id) {
            Ok(s) => {
                let status = live_status(&dir, &s);
                Some((s, status))
            }
            // Removed meanwhile by a concurrent delete.
            Err(_) if !dir.exists() => continue,
            Err(_) => None,
        };
        rows.push(Row { id, state });
    }
    if a.quiet {
        for r in &rows {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| match &r.state {
                    Some((s, st)) => serde_json::to_value(s.oci(*st)),
                    None => Ok(serde_json::json!({"id": r.id, "pid": 0, "status": UNKNOWN})),
                })
                .collect::<Result<_, _>>()?;
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    let Some((s, st)) = &r.state else {
                        return [
                            r.id.clone(),
                            "0".into(),
                            UNKNOWN.into(),
                            String::new(),
                            String::new(),
                            String::new(),
                        ];
                    };
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
