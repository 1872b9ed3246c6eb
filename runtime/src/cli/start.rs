//! `husk start`.

use anyhow::Context;

use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container id.
    pub id: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    crate::container::start(store, &a.id).with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
