//! `husk delete`.

use anyhow::Context;

use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
    /// The container id.
    pub id: String,
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
