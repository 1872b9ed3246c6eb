//! `husk state`: the OCI state JSON, as runc prints it.

use anyhow::Context;

use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container id.
    pub id: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let (state, status) =
        crate::container::state(store, &a.id).with_context(|| format!("container {}", a.id))?;
    println!("{}", serde_json::to_string_pretty(&state.oci(status))?);
    Ok(0)
}
