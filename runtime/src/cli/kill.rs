//! `husk kill`.

use anyhow::Context;

use crate::container::signals;
use crate::state::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Send the signal to every process of the container.
    #[arg(short, long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal: a name (KILL, SIGKILL) or a number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let sig = signals::parse(&a.signal).map_err(anyhow::Error::msg)?;
    crate::container::kill(store, &a.id, sig, a.all)
        .with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
