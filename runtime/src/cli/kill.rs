//! `husk kill`.

use anyhow::Context;

use super::args::{Flag, Matches, switch};
use crate::container::signals;
use crate::state::Store;

/// `husk kill`'s flags.
pub const FLAGS: &[Flag] = &[switch(
    "all",
    b'a',
    "Send the signal to every process of the container",
)];

#[derive(Debug)]
pub struct Args {
    /// Send the signal to every process of the container.
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal: a name (KILL, SIGKILL) or a number.
    pub signal: String,
}

impl Args {
    /// The arguments found by the parser (the command table has checked their count).
    pub fn parse(m: &Matches) -> Self {
        Self {
            all: m.on("all"),
            id: m.arg(0),
            signal: m.pos.get(1).map_or("SIGTERM", String::as_str).into(),
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<i32> {
    let sig = signals::parse(&a.signal).map_err(anyhow::Error::msg)?;
    crate::container::kill(store, &a.id, sig, a.all)
        .with_context(|| format!("container {}", a.id))?;
    Ok(0)
}
