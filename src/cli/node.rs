//! `qsfs node ...`: storage node management and the node server.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::{Ctx, VaultArg};
use qsfs::nodeproto::server::{ServeOptions, Server};
use qsfs::nodeproto::{Transport, plain_transport};

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Take an empty folder (a replaced or newly formatted disk mounted at
    /// the node's path) into use as the named node. qsfs never does this by
    /// itself: an empty folder may be the mount point of a disk that is not
    /// mounted, and writing there would fill the wrong disk.
    Adopt(AdoptArgs),
    /// Serve a node folder to a vault over the network (a remote node).
    /// Prints `listening on ADDR` when ready; stops on SIGTERM or SIGINT.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Node name from qsfs.toml (e.g. node-2).
    name: String,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The node folder: a node folder of a vault, or an empty (or new)
    /// folder, which becomes the node of the first vault that connects.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Address to listen on (host:port; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Key pool file of the QKD-keyed link to the vault.
    #[arg(long, value_name = "FILE")]
    keypool: Option<PathBuf>,
    /// No link encryption: shards cross the network in clear. For tests
    /// and trusted networks only; the vault's node entry needs
    /// `insecure_plaintext = true`.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_connections: usize,
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
        NodeCommand::Serve(a) => serve(a),
    }
}

/// The server end of the QKD-keyed link.
// TODO(issue 4, link): build `qsfs::link::Link` (end B) over each stream
// with the key pool at `keypool`.
fn link_transport(keypool: &std::path::Path) -> Result<Transport> {
    bail!(
        "--keypool {}: QKD-keyed links are not available in this build of qsfs yet; \
         run with --insecure-plaintext on a trusted network only",
        keypool.display()
    )
}

fn serve(a: ServeArgs) -> Result<i32> {
    let transport = match (&a.keypool, a.insecure_plaintext) {
        (_, true) => {
            if a.keypool.is_some() {
                tracing::warn!("--keypool is ignored with --insecure-plaintext");
            }
            tracing::warn!(
                "serving without link encryption (--insecure-plaintext): shards cross the network in clear"
            );
            plain_transport(&format!("node server {}", a.dir.display()))
        }
        (Some(pool), false) => link_transport(pool)?,
        (None, false) => bail!(
            "give --keypool FILE (the key pool of the link to the vault), or --insecure-plaintext \
             to serve without link encryption"
        ),
    };
    let mut opts = ServeOptions::new(&a.dir, &a.listen);
    if a.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    opts.max_connections = a.max_connections;
    let server = Server::bind(opts, transport)?;
    let stop = server.stop_handle();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(mut signals) => {
            std::thread::Builder::new()
                .name("qsfs-signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        tracing::info!("signal {sig}: stopping the node server");
                        stop.stop();
                    }
                })?;
        }
        Err(e) => tracing::warn!("cannot watch for signals ({e}); stop the server with SIGKILL"),
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.local_addr())?;
        out.flush()?;
    }
    server.run();
    Ok(0)
}
