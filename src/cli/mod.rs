//! Argument parsing and dispatch; one file per command group.

mod audit;
mod envelope;
mod files;
mod format;
mod fsck;
mod keypool;
mod keys;
mod kme;
mod live;
mod maint;
mod mount;
mod node;
mod progress;
mod rebalance;
mod scrub;
mod status;
mod unlock;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::vault::{OpenOptions, Vault};

/// qsfs: a quantum-safe, fault-tolerant vault. Files are sealed with
/// AES-256-GCM under fresh random keys, the key material is split with
/// Shamir secret sharing, and the sealed object is Reed-Solomon coded into n
/// shards on n storage nodes, any k of which rebuild it.
#[derive(Parser, Debug)]
#[command(name = "qsfs", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Seconds to wait for another qsfs process to release the vault.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    wait: u64,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    unlock: unlock::UnlockArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a vault (default: 3-of-5 with five node folders inside it).
    Init(files::InitArgs),
    /// Store local files (or `-` for stdin) at a vault path.
    Put(files::PutArgs),
    /// Read a vault file into a local file (or `-` for stdout).
    Get(files::GetArgs),
    /// List a vault folder.
    Ls(files::LsArgs),
    /// Remove a vault file (or with -r a folder tree) and destroy its keys.
    Rm(files::RmArgs),
    /// Create a vault folder.
    Mkdir(files::MkdirArgs),
    /// Show what the vault holds, its overhead, nodes, keys and random source.
    ///
    /// Logical bytes are the sum of the files' sizes, holes included (as
    /// `du --apparent-size` counts them); stored bytes are what the nodes
    /// hold; the overhead is stored / logical.
    Status(status::StatusArgs),
    /// Read every shard on every node and check it against its manifest;
    /// with --repair rebuild what is missing or damaged and remove orphans.
    #[command(after_help = scrub::EXIT_HELP)]
    Scrub(scrub::ScrubArgs),
    /// Check that names, manifests, keys and node contents agree; with
    /// --repair remove what crashes left over.
    Fsck(fsck::FsckArgs),
    /// Check or heal the key shares R1/R2 and backup records B.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// How the vault key is unwrapped: list, add or remove a passphrase or
    /// key file.
    #[command(subcommand)]
    Unlock(unlock::UnlockCommand),
    /// Make deleted files' keys unrecoverable now: re-seal the surviving
    /// key records and destroy the epoch keys of deleted ones (runs by
    /// itself after `rm` and in a mount).
    Shred(unlock::ShredArgs),
    /// Write a metadata snapshot to the nodes now. The first starts backups:
    /// a mount then journals every change to the nodes within a second and
    /// writes a snapshot at unmount.
    Backup(VaultArg),
    /// Rebuild a lost vault on this machine from its node folders (the
    /// metadata snapshots qsfs keeps there) and an unlock method.
    Recover(unlock::RecoverArgs),
    /// A key holder of the t-of-n unlock (seed 003).
    #[command(subcommand)]
    Keyholder(unlock::KeyholderCommand),
    /// Mount a vault as a folder (FUSE); returns once the mount is live.
    Mount(mount::MountArgs),
    /// Unmount, waiting until every pending seal is finished.
    Umount(mount::UmountArgs),
    /// Prove each node still holds its data (random blocks checked against
    /// Merkle roots) and holds nothing it should not (deletion check).
    Audit(audit::AuditArgs),
    /// Storage nodes: list, add, drain, remove, adopt a replaced (empty)
    /// disk, serve a node over the network.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Spread shards evenly over the nodes (after `node add`), drain nodes
    /// marked draining, and separate shards of one object sharing a node.
    Rebalance(rebalance::RebalanceArgs),
    /// A local ETSI GS QKD 014 key manager (KME) and its certificates.
    #[command(subcommand)]
    Kme(kme::KmeCommand),
    /// Key pool files of QKD-keyed links: make a pair, show keys left.
    #[command(subcommand)]
    Keypool(keypool::KeypoolCommand),
    /// Expert tool: seal or open one object by hand (interoperability, recovery).
    #[command(subcommand)]
    Envelope(envelope::EnvelopeCommand),
}

/// The vault argument shared by most commands.
#[derive(Args, Debug, Clone)]
pub struct VaultArg {
    /// Vault folder.
    #[arg(value_name = "VAULT")]
    pub vault: PathBuf,
}

/// Options every vault command shares.
pub struct Ctx {
    wait: Duration,
    unlock_args: unlock::UnlockArgs,
}

impl Ctx {
    /// What to unlock a vault with.
    pub fn unlock(&self) -> Result<crate::unlock::Unlock> {
        Ok(crate::unlock::Unlock::With(self.unlock_args.input()?))
    }

    /// Opens a vault with the shared options.
    pub fn open(&self, vault: &std::path::Path) -> Result<Vault> {
        Ok(Vault::open(
            vault,
            &OpenOptions {
                wait: self.wait,
                rebuild_r2: false,
                unlock: self.unlock()?,
            },
        )?)
    }

    /// Opens a vault that must not be mounted: `why` says what the
    /// command changes that a mount must not see change under it.
    pub fn open_offline(&self, vault: &std::path::Path, why: &str) -> Result<Vault> {
        match crate::control::connect(vault) {
            Ok(_) => {
                let at = vault
                    .canonicalize()
                    .ok()
                    .and_then(|v| {
                        crate::sys::mounts()
                            .into_iter()
                            .find(|m| std::path::Path::new(&m.source) == v)
                    })
                    .map_or_else(
                        || "MOUNTPOINT".to_string(),
                        |m| m.target.display().to_string(),
                    );
                anyhow::bail!(
                    "vault {} is mounted at {at}; unmount it first (`qsfs umount {at}`) to {why}",
                    vault.display()
                )
            }
            Err(crate::control::ControlError::NotMounted(_)) => self.open(vault),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a vault building a new R2 store where the configured one is
    /// missing (`keys repair --rebuild-r2`).
    pub fn open_rebuilding_r2(&self, vault: &std::path::Path) -> Result<Vault> {
        Ok(Vault::open(
            vault,
            &OpenOptions {
                wait: self.wait,
                rebuild_r2: true,
                unlock: self.unlock()?,
            },
        )?)
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: warnings redirected to a file or a pipe
    // must be plain text.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Runs the command line; returns the exit status.
pub fn run() -> i32 {
    qsfs_sys::default_sigpipe();
    // A group commit keeps a file per shard open; wide codes (n up to 32)
    // need more than the usual soft limit of 1024 descriptors.
    qsfs_sys::raise_fd_limit();
    let cli = Cli::parse();
    // A mount logs to its vault's log file instead (mount.rs).
    if !matches!(cli.command, Command::Mount(_)) {
        init_logging(cli.verbose);
    }
    let ctx = Ctx {
        wait: Duration::from_secs(cli.wait),
        unlock_args: cli.unlock.clone(),
    };
    let result = match cli.command {
        Command::Init(a) => files::init(&ctx, a),
        Command::Put(a) => files::put(&ctx, a),
        Command::Get(a) => files::get(&ctx, a),
        Command::Ls(a) => files::ls(&ctx, a),
        Command::Rm(a) => files::rm(&ctx, a),
        Command::Mkdir(a) => files::mkdir(&ctx, a),
        Command::Status(a) => status::status(&ctx, a),
        Command::Scrub(a) => scrub::scrub(&ctx, a),
        Command::Fsck(a) => fsck::fsck(&ctx, a),
        Command::Keys(c) => keys::run(&ctx, c),
        Command::Unlock(c) => unlock::run(&ctx, c),
        Command::Shred(a) => unlock::shred(&ctx, a),
        Command::Keyholder(c) => unlock::keyholder(c),
        Command::Recover(a) => unlock::recover(&ctx, a),
        Command::Backup(a) => unlock::backup(&ctx, a),
        Command::Node(c) => node::run(&ctx, c),
        Command::Rebalance(a) => rebalance::rebalance(&ctx, a),
        Command::Audit(a) => audit::audit(&ctx, a),
        Command::Mount(a) => mount::mount(&ctx, a),
        Command::Umount(a) => mount::umount(a),
        Command::Kme(c) => kme::run(c),
        Command::Keypool(c) => keypool::run(c),
        Command::Envelope(c) => envelope::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Typed errors already fold their cause into their message;
            // only print causes that add something.
            let mut shown = e.to_string();
            eprintln!("qsfs: error: {shown}");
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown.push_str(&text);
                }
            }
            1
        }
    }
}
