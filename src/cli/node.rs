//! `qsfs node ...`: storage node management.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::{Ctx, VaultArg};

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Take an empty folder (a replaced or newly formatted disk mounted at
    /// the node's path) into use as the named node. qsfs never does this by
    /// itself: an empty folder may be the mount point of a disk that is not
    /// mounted, and writing there would fill the wrong disk.
    Adopt(AdoptArgs),
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Node name from qsfs.toml (e.g. node-2).
    name: String,
}

pub fn run(ctx: &Ctx, c: NodeCommand) -> Result<i32> {
    match c {
        NodeCommand::Adopt(a) => {
            let v = ctx.open(&a.vault.vault)?;
            let Some(dir) = v.node_folder(&a.name) else {
                bail!(
                    "{}: no directory node named {:?} in qsfs.toml",
                    a.vault.vault.display(),
                    a.name
                )
            };
            v.adopt_node(&a.name)?;
            println!("{} now serves as {}", dir.display(), a.name);
            Ok(0)
        }
    }
}
