//! `husk pause` and `husk resume`.

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

pub fn run(store: &Store, a: Args, pause: bool) -> anyhow::Result<i32> {
    crate::container::set_paused(store, &a.id, pause)
        .with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
