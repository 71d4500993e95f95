//! `qsfs node ...`: storage node management and the node server.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::{Ctx, VaultArg};
use qsfs::nodeproto::server::{ServeOptions, Server};
use std::sync::Arc;

use qsfs::etsi014::{Etsi014Config, Etsi014Source};
use qsfs::keypool::PoolFile;
use qsfs::link::LinkConfig;
use qsfs::nodeproto::{Transport, plain_transport, qkd_transport};
use qsfs::qkd::End;

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
    /// Key pool file of the QKD-keyed link to the vault (end B of a pair
    /// made by `qsfs keypool gen`).
    #[arg(long, value_name = "FILE")]
    keypool: Option<PathBuf>,
    /// Get the link's keys from an ETSI GS QKD 014 KME instead of a pool
    /// file (`https://host:port`); needs --link, --sae-id, --peer-sae-id,
    /// --cert, --key and --ca.
    #[arg(long, value_name = "URL")]
    kme: Option<String>,
    /// With --kme: the link's name, the same as the node's name in the
    /// vault's qsfs.toml.
    #[arg(long, value_name = "NAME")]
    link: Option<String>,
    /// With --kme: this node's SAE ID.
    #[arg(long, value_name = "ID")]
    sae_id: Option<String>,
    /// With --kme: the vault's SAE ID.
    #[arg(long, value_name = "ID")]
    peer_sae_id: Option<String>,
    /// With --kme: client certificate (PEM).
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// With --kme: its private key (PEM).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// With --kme: the CA of the KME's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
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

/// The server end (B) of the QKD-keyed link, keyed from a pool file.
fn link_transport(keypool: &std::path::Path) -> Result<Transport> {
    let pool = PoolFile::open(keypool)?;
    if pool.end() != End::B {
        bail!(
            "--keypool {}: this is end A of its link (the vault's file); a node server needs end B \
             (the --peer-out file of `qsfs keypool gen`)",
            keypool.display()
        );
    }
    let cfg = LinkConfig::for_pool(&pool);
    Ok(qkd_transport(Arc::new(pool), End::B, cfg))
}

/// The server end of a link keyed by a KME.
fn kme_transport(a: &ServeArgs, url: &str) -> Result<Transport> {
    let need = |v: &Option<String>, flag: &str| -> Result<String> {
        v.clone()
            .ok_or_else(|| anyhow::anyhow!("--kme needs {flag}"))
    };
    let needp = |v: &Option<PathBuf>, flag: &str| -> Result<PathBuf> {
        v.clone()
            .ok_or_else(|| anyhow::anyhow!("--kme needs {flag}"))
    };
    let link = need(
        &a.link,
        "--link NAME (the node's name in the vault's qsfs.toml)",
    )?;
    let cfg = Etsi014Config::new(
        link.clone(),
        End::B,
        url.to_string(),
        need(&a.sae_id, "--sae-id")?,
        need(&a.peer_sae_id, "--peer-sae-id")?,
        needp(&a.cert, "--cert")?,
        needp(&a.key, "--key")?,
        needp(&a.ca, "--ca")?,
    );
    let source = Etsi014Source::new(cfg)?;
    Ok(qkd_transport(
        Arc::new(source),
        End::B,
        LinkConfig::new(&link),
    ))
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
        (Some(_), false) if a.kme.is_some() => bail!("give --keypool or --kme, not both"),
        (Some(pool), false) => link_transport(pool)?,
        (None, false) => match &a.kme {
            Some(url) => kme_transport(&a, url)?,
            None => bail!(
                "give --keypool FILE (the key pool of the link to the vault), --kme URL (a key \
                 manager), or --insecure-plaintext to serve without link encryption"
            ),
        },
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
