//! `qsfs node ...`: storage node management and the node server.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::format::bytes;
use super::progress::Bar;
use super::{Ctx, VaultArg};
use crate::maint::{AddNodeOptions, DrainOptions, DrainReport, RemoveNodeOptions};
use crate::node::server::{ServeOptions, Server};
use std::sync::Arc;

use crate::node::transport::{Transport, plain_transport, qkd_transport};
use crate::qkd::End;
use crate::qkd::etsi014::{Etsi014Config, Etsi014Source};
use crate::qkd::link::LinkConfig;
use crate::qkd::pool::PoolFile;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List the nodes: health, draining, shards and bytes they hold, free space.
    List(ListArgs),
    /// Add a node to the vault (a folder, or a node server). Run
    /// `qsfs rebalance VAULT` afterwards to move shards onto it.
    Add(AddArgs),
    /// Move every shard off a node by verified transfer, then check that
    /// the node holds nothing for the vault any more.
    Drain(DrainArgs),
    /// Remove a node from qsfs.toml once it holds no shards (drain it first).
    Remove(RemoveArgs),
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
pub struct ListArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["dir", "address"])))]
pub struct AddArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Name of the new node (unique in the vault, e.g. node-5).
    name: String,
    /// A folder: created if missing, must be empty.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// A node server (`qsfs node serve`) at host:port.
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// With --address: the vault's key pool file (end A) of the link.
    #[arg(long, value_name = "FILE", requires = "address")]
    keypool: Option<PathBuf>,
    /// With --address: no link encryption (tests and trusted networks only).
    #[arg(long, requires = "address", conflicts_with = "keypool")]
    insecure_plaintext: bool,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// The node to empty.
    name: String,
    /// Machine-readable report.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// The node to remove.
    name: String,
    /// Remove it although it still holds shards: they become repair debt
    /// (`qsfs scrub --repair` rebuilds them elsewhere). Refused if a file
    /// would keep fewer than k shards.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The node folder: a node folder of a vault, or an empty folder
    /// (create it first: a missing one is refused, so a mistyped path
    /// never starts an empty node), which becomes the node of the first
    /// vault that connects.
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
    /// Authenticated connections served at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_connections: usize,
    /// Connections still in their handshake, from everyone (kept apart
    /// from --max-connections, so strangers cannot use those up).
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_handshakes: usize,
    /// Connections still in their handshake, from one address.
    #[arg(long, default_value_t = 4, value_name = "N")]
    max_handshakes_per_source: usize,
    /// A connection must finish its handshake within this many
    /// milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    handshake_timeout_ms: u64,
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
        NodeCommand::List(a) => list(ctx, a),
        NodeCommand::Add(a) => add(ctx, a),
        NodeCommand::Drain(a) => drain(ctx, a),
        NodeCommand::Remove(a) => remove(ctx, a),
        NodeCommand::Serve(a) => serve(a),
    }
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let nodes: Vec<crate::maint::NodeInfo> = super::maint::run(
        ctx,
        &a.vault.vault,
        "node-list",
        &(),
        &Bar::new(true),
        |v, _| v.node_list(),
    )?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &nodes)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<12} {:<7} {:<9} {:>8} {:>8} {:>11} {:>11}  LOCATION",
        "NODE", "KIND", "STATE", "SHARDS", "MISSING", "BYTES", "FREE"
    )?;
    for n in &nodes {
        let state = if n.draining && n.health == "ok" {
            "draining".to_string()
        } else {
            n.health.clone()
        };
        writeln!(
            out,
            "{:<12} {:<7} {:<9} {:>8} {:>8} {:>11} {:>11}  {}",
            n.name,
            n.kind,
            state,
            n.shards,
            n.missing,
            bytes(n.bytes),
            n.free_bytes.map(bytes).unwrap_or_else(|| "-".into()),
            n.location
        )?;
        if let Some(p) = &n.problem {
            writeln!(out, "{:<12} {p}", "")?;
        }
    }
    Ok(0)
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<i32> {
    let opts = AddNodeOptions {
        name: a.name,
        dir: a.dir,
        address: a.address,
        keypool: a.keypool,
        insecure_plaintext: a.insecure_plaintext,
    };
    let r = ctx.open(&a.vault.vault)?.add_node(&opts)?;
    println!("added {} ({} node at {})", r.name, r.kind, r.location);
    if let Some((pa, pb)) = &r.link_pools {
        println!(
            "its in-process QKD-keyed link uses {} and {}",
            pa.display(),
            pb.display()
        );
    }
    if let Some((original, copy)) = &r.imported_pool {
        println!(
            "its link's key pool is now {} (sealed under the vault key); {} still holds the \
             same keys in clear and must not be used again: remove it (shred -u {})",
            copy.display(),
            original.display(),
            original.display()
        );
    }
    println!(
        "move shards onto it with: qsfs rebalance {}",
        a.vault.vault.display()
    );
    Ok(0)
}

fn drain(ctx: &Ctx, a: DrainArgs) -> Result<i32> {
    let bar = Bar::new(a.quiet || a.json);
    let opts = DrainOptions {
        node: a.name.clone(),
    };
    let r: DrainReport = super::maint::run(ctx, &a.vault.vault, "drain", &opts, &bar, |v, p| {
        v.drain(&opts, p)
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
    } else {
        print_drain(&mut out, &r)?;
        if r.ok() {
            writeln!(
                out,
                "remove it from the vault with: qsfs node remove {} {}",
                a.vault.vault.display(),
                r.node
            )?;
        }
    }
    Ok(i32::from(!r.ok()))
}

/// The summary of one drain.
pub fn print_drain(out: &mut impl Write, r: &DrainReport) -> std::io::Result<()> {
    writeln!(
        out,
        "drained {}: {} shards moved in {} passes, {:.1} s",
        r.node, r.shards_moved, r.passes, r.elapsed_secs
    )?;
    writeln!(
        out,
        "  chunks    {} copied after verification, {} rebuilt from other shards",
        r.chunks_copied, r.chunks_rebuilt
    )?;
    writeln!(
        out,
        "  bytes     {} read, {} written",
        bytes(r.bytes_read),
        bytes(r.bytes_written)
    )?;
    for f in &r.failures {
        writeln!(out, "  FAILED    {f}")?;
    }
    let d = &r.deletion;
    let verdict = if let Some(e) = &d.error {
        format!("could not ask the node: {e}")
    } else if d.empty() {
        "the node holds no shards of this vault (its root over its holdings matches the empty set)"
            .to_string()
    } else if d.clean() {
        format!(
            "the node holds only {} shards of objects still being written",
            d.in_flight.len()
        )
    } else {
        format!(
            "the node holds {} shards, {} expected{}",
            d.held,
            d.expected,
            if d.matches {
                ""
            } else {
                " (its root does not match)"
            }
        )
    };
    writeln!(out, "  deletion  {verdict}")?;
    if d.stale_removed > 0 {
        writeln!(
            out,
            "            {} unreferenced shard files were removed first",
            d.stale_removed
        )?;
    }
    for s in &d.still_placed {
        writeln!(out, "            still placed there: {s}")?;
    }
    for s in &d.leftovers {
        writeln!(out, "            left over: {s}")?;
    }
    Ok(())
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<i32> {
    let opts = RemoveNodeOptions {
        name: a.name,
        force: a.force,
    };
    let r = ctx.open(&a.vault.vault)?.remove_node(&opts)?;
    println!("removed {} from the vault", r.name);
    if r.shards_abandoned > 0 {
        println!(
            "{} shards of {} objects are now repair debt: run `qsfs scrub {} --repair`",
            r.shards_abandoned,
            r.objects_degraded,
            a.vault.vault.display()
        );
    }
    if let Some(f) = &r.folder {
        println!(
            "its folder {} was left in place; delete it when it is no longer needed",
            f.display()
        );
    }
    Ok(0)
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
    for (flag, v) in [
        ("--max-connections", a.max_connections),
        ("--max-handshakes", a.max_handshakes),
        ("--max-handshakes-per-source", a.max_handshakes_per_source),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if a.handshake_timeout_ms == 0 {
        bail!("--handshake-timeout-ms must be above 0");
    }
    opts.max_connections = a.max_connections;
    opts.max_handshakes = a.max_handshakes;
    opts.max_handshakes_per_source = a.max_handshakes_per_source;
    opts.handshake_timeout = std::time::Duration::from_millis(a.handshake_timeout_ms);
    opts.identify = !a.insecure_plaintext;
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
        if let Some(addr) = server.local_addr() {
            writeln!(out, "listening on {addr}")?;
        }
        out.flush()?;
    }
    server.run();
    Ok(0)
}
