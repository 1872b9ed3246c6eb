//! `husk start`.

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
    crate::container::start(store, &a.id).with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
