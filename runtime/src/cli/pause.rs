//! `husk pause` and `husk resume`.

use anyhow::Context;

use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container id.
    pub id: String,
}

pub fn run(store: &Store, a: Args, pause: bool) -> anyhow::Result<i32> {
    crate::container::set_paused(store, &a.id, pause)
        .with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
