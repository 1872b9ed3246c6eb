//! `husk delete`.

use anyhow::Context;

use super::args::{Flag, Matches, switch};
use crate::state::Store;

/// `husk delete`'s flags.
pub const FLAGS: &[Flag] = &[switch(
    "force",
    b'f',
    "Kill the container first if it is still running",
)];

#[derive(Debug)]
pub struct Args {
    /// Kill the container first if it is still running.
    pub force: bool,
    /// The container id.
    pub id: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Self {
        Self {
            force: m.on("force"),
            id: m.arg(0),
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    match crate::container::delete(store, &a.id, a.force) {
        Ok(()) => Ok(0),
        // runc: deleting a missing container with --force succeeds.
        Err(crate::container::ContainerError::State(crate::state::StateError::NotFound(_)))
            if a.force =>
        {
            Ok(0)
        }
        Err(e) => Err(e).with_context(|| format!("container {}", a.id)),
    }
}
