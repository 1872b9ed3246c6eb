//! `husk state`: the OCI state JSON, as runc prints it.

use anyhow::Context;

use super::args::Matches;
use crate::state::Store;

#[derive(Debug)]
pub struct Args {
    /// The container id.
    pub id: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Self {
        Self { id: m.arg(0) }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let (state, status) =
        crate::container::state(store, &a.id).with_context(|| format!("container {}", a.id))?;
    println!("{}", serde_json::to_string_pretty(&state.oci(status))?);
    Ok(0)
}
