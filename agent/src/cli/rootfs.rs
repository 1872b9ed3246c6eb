//! `husklet rootfs prepare|remove|show`: a container's overlay rootfs.

use anyhow::Context;
use clap::Subcommand;

use super::{Global, Output, open_store, print_json};

#[derive(Subcommand)]
pub enum RootfsCmd {
    /// Mount an overlay rootfs of IMAGE for CONTAINER_ID; prints its path.
    Prepare { image: String, container_id: String },
    /// Unmount and delete a container's rootfs (upper and work dirs too).
    Remove { container_id: String },
    /// Show a container's rootfs mount.
    Show { container_id: String },
}

pub fn run(g: &Global, cmd: RootfsCmd) -> anyhow::Result<()> {
    let store = open_store(g)?;
    match cmd {
        RootfsCmd::Prepare {
            image,
            container_id,
        } => {
            let m = store
                .prepare_rootfs(&image, &container_id)
                .with_context(|| format!("container {container_id}: prepare rootfs of {image}"))?;
            match g.output {
                Output::Json => print_json(&m)?,
                Output::Text => println!("{}", m.rootfs.display()),
            }
        }
        RootfsCmd::Remove { container_id } => {
            store
                .remove_rootfs(&container_id)
                .with_context(|| format!("container {container_id}: remove rootfs"))?;
        }
        RootfsCmd::Show { container_id } => {
            let m = store
                .rootfs(&container_id)
                .with_context(|| format!("container {container_id}"))?;
            print_json(&m)?;
        }
    }
    Ok(())
}
