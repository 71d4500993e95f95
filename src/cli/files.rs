//! `init`, `put`, `get`, `ls`, `rm`, `mkdir`. While the vault is mounted,
//! `put`, `get`, `ls`, `rm` and `mkdir` go through the mount process
//! (live.rs), with the same output and exit statuses.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Ctx, VaultArg, format, live};
use crate::entropy::EntropyConfig;
use crate::namespace::{Kind, VaultPath};
use crate::vault::{self, InitOptions, PutSource};

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Data shards per stripe: any k of the n shards rebuild a file.
    #[arg(long, default_value_t = 3)]
    k: usize,
    /// Shards per file, each on a different node.
    #[arg(long, default_value_t = 5)]
    n: usize,
    /// Shards that must be durable for a write to succeed (default k+1).
    #[arg(long)]
    quorum: Option<usize>,
    /// Node folders, comma-separated (default: n folders inside the vault).
    #[arg(long, value_delimiter = ',', value_name = "DIR,...")]
    nodes: Option<Vec<PathBuf>>,
    /// Random source for keys: `os`, `device:PATH` (a character device such
    /// as /dev/hwrng or a QRNG card, or a FIFO; not a regular file) or
    /// `pool:FILE` (a preloaded file of quantum random numbers). A device or
    /// pool is health-tested and always mixed with the OS RNG.
    #[arg(long, default_value = "os", value_name = "SOURCE")]
    random: String,
    /// Keep the R2 key shares in this separate folder (another disk).
    #[arg(long, value_name = "DIR")]
    r2_path: Option<PathBuf>,
    /// Where each file's backup record B (the fourth key share R4) is kept:
    /// `client` (sealed in the keystore) or `nodes` (split k-of-n beside
    /// the shards, so neither this machine nor fewer than k nodes hold it).
    #[arg(long, value_enum, default_value = "client", value_name = "WHERE")]
    backup_records: BackupPlaceArg,
    /// Largest chunk per shard and stripe, in bytes.
    #[arg(long, default_value_t = vault::DEFAULT_MAX_CHUNK)]
    max_chunk: u32,
    /// Reach the node folders directly (plain local disks) instead of
    /// through in-process QKD-keyed links.
    #[arg(long)]
    direct: bool,
    /// Pack small shards (up to 1 MiB) many to a file in each node folder
    /// (NODE/packs): the default. A tree of small files costs a few appends
    /// and one disk barrier per node per group.
    #[arg(long, conflicts_with = "no_packs")]
    packs: bool,
    /// A file per shard in each node folder (NODE/shards), as vaults made
    /// before packs were the default.
    #[arg(long)]
    no_packs: bool,
    /// Keys each link's key pool pair starts with (simulated links refill).
    #[arg(long, value_name = "N", default_value_t = crate::vault::INITIAL_LINK_KEYS)]
    link_keys: u64,
    /// How the vault key is protected. Default: a passphrase when run on a
    /// terminal (or given --passphrase-file), else a key file at --key-file
    /// or ~/.config/qsfs/<vault id>.key. `none` keeps the key in clear (tests
    /// only; `qsfs status` warns).
    #[arg(long, value_enum, value_name = "METHOD")]
    unlock: Option<super::unlock::MethodKind>,
    #[command(flatten)]
    holders: super::unlock::HolderArgs,
}

/// `--backup-records`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackupPlaceArg {
    /// In the client's sealed keystore.
    Client,
    /// Split over the nodes, beside the shards.
    Nodes,
}

fn parse_random(spec: &str) -> Result<EntropyConfig> {
    Ok(match spec.split_once(':') {
        None if spec == "os" => EntropyConfig::Os,
        Some(("device", p)) if !p.is_empty() => EntropyConfig::Device {
            path: p.into(),
            timeout_ms: crate::entropy::DEFAULT_TIMEOUT_MS,
        },
        Some(("pool", p)) if !p.is_empty() => EntropyConfig::Pool { path: p.into() },
        _ => bail!("--random {spec:?}: expected `os`, `device:PATH` or `pool:FILE`"),
    })
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<i32> {
    let method = super::unlock::new_method(a.unlock, &ctx.unlock_args, &a.holders)?;
    let opts = InitOptions {
        k: a.k,
        n: a.n,
        write_quorum: a.quorum,
        nodes: a.nodes,
        random: parse_random(&a.random)?,
        r2_path: a.r2_path,
        backup: match a.backup_records {
            BackupPlaceArg::Client => vault::BackupPlace::Client,
            BackupPlaceArg::Nodes => vault::BackupPlace::Nodes,
        },
        max_chunk: a.max_chunk,
        direct: a.direct,
        packs: a.packs || !a.no_packs,
        link_keys: a.link_keys,
        // An empty key-file path: the default place, once the id exists.
        unlock: match method {
            crate::unlock::NewMethod::KeyFile(p) if p.as_os_str().is_empty() => None,
            m => Some(m),
        },
    };
    let cfg = vault::init(&a.vault.vault, &opts)?;
    println!(
        "created vault {} ({} of {} shards rebuild a file, write quorum {}, {} nodes)",
        a.vault.vault.display(),
        cfg.k,
        cfg.n,
        cfg.quorum(),
        cfg.nodes.len()
    );
    super::unlock::print_methods(&a.vault.vault, &cfg.vault_id, None)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Local files (`-` for stdin), then the vault path. With several
    /// sources the vault path must be a folder.
    #[arg(value_name = "LOCAL... PATH", num_args = 2.., required = true)]
    paths: Vec<String>,
    /// Copy local folders recursively.
    #[arg(short, long)]
    recursive: bool,
}

/// Where a command works: in the mount process while the vault is
/// mounted, else on the vault opened here.
enum Place {
    Mount,
    Here(Box<vault::Vault>),
}

impl Place {
    /// `mkdir -p` of one folder (`put -r`).
    fn mkdir_p(&self, root: &Path, dest: &VaultPath) -> Result<()> {
        match self {
            Place::Mount => {
                live::mkdir(root, dest, true, 0o755)?.ok_or_else(|| live::mount_ended(root))
            }
            Place::Here(v) => Ok(v.mkdir(dest, true, 0o755)?),
        }
    }
}

/// Collects (source, vault path) pairs for a local tree, creating vault
/// folders as it goes.
fn walk(
    place: &Place,
    root: &Path,
    local: &Path,
    dest: &VaultPath,
    items: &mut Vec<(PutSource, VaultPath)>,
) -> Result<()> {
    place.mkdir_p(root, dest)?;
    let mut entries: Vec<_> = std::fs::read_dir(local)
        .with_context(|| format!("cannot read folder {}", local.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read folder {}", local.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let path = e.path();
        let target = dest.join(e.file_name().as_encoded_bytes());
        let ft = e
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if ft.is_dir() {
            walk(place, root, &path, &target, items)?;
        } else if ft.is_file() {
            items.push((PutSource::File(path), target));
        } else {
            eprintln!(
                "qsfs: skipping {} (not a regular file or folder)",
                path.display()
            );
        }
    }
    Ok(())
}

pub fn put(ctx: &Ctx, a: PutArgs) -> Result<i32> {
    let (dest, sources) = a
        .paths
        .split_last()
        .context("need a source and a vault path")?;
    let root = &a.vault.vault;
    let dest_path = VaultPath::parse(dest)?;
    let (place, dest_is_dir) = match live::is_dir(root, &dest_path)? {
        Some(dir) => (Place::Mount, dir),
        None => {
            let v = ctx.open(root)?;
            let dir = match v.namespace().resolve(&dest_path) {
                Ok((_, inode)) => inode.kind == Kind::Dir,
                Err(_) => false,
            };
            (Place::Here(Box::new(v)), dir)
        }
    };
    if sources.len() > 1 && !dest_is_dir {
        bail!("{dest}: with several sources the vault path must be an existing folder");
    }
    if sources.iter().filter(|s| *s == "-").count() > 1 {
        bail!("stdin (`-`) can be given only once");
    }
    let mut items = Vec::new();
    for src in sources {
        if src == "-" {
            if dest_is_dir {
                bail!("{dest} is a folder: give the vault file name to store stdin under");
            }
            items.push((PutSource::Stdin, dest_path.clone()));
            continue;
        }
        let local = PathBuf::from(src);
        let meta = std::fs::metadata(&local)
            .with_context(|| format!("cannot read {}", local.display()))?;
        let name = local
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        let target = if dest_is_dir {
            dest_path.join(&name)
        } else {
            dest_path.clone()
        };
        if meta.is_dir() {
            if !a.recursive {
                bail!("{} is a folder; use -r to copy it", local.display());
            }
            walk(&place, root, &local, &target, &mut items)?;
        } else {
            items.push((PutSource::File(local), target));
        }
    }
    let errors: Vec<Option<String>> = match &place {
        Place::Mount => live::put(root, &items)?.ok_or_else(|| live::mount_ended(root))?,
        Place::Here(v) => v
            .put_many(&items)
            .into_iter()
            .map(|r| r.err().map(|e| e.to_string()))
            .collect(),
    };
    let mut failed = 0;
    for ((src, path), err) in items.iter().zip(errors) {
        if let Some(e) = err {
            failed += 1;
            let from = match src {
                PutSource::File(p) => p.display().to_string(),
                PutSource::Stdin => "stdin".into(),
                PutSource::Received(r) => r.spool.display().to_string(),
            };
            eprintln!("qsfs: error: {e} (storing {from} as {path})");
        }
    }
    if failed > 0 {
        if items.len() > 1 {
            eprintln!("qsfs: {failed} of {} files were not stored", items.len());
        }
        return Ok(1);
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Vault file.
    path: String,
    /// Local file, or `-` for stdout.
    local: String,
}

pub fn get(ctx: &Ctx, a: GetArgs) -> Result<i32> {
    let root = &a.vault.vault;
    let path = VaultPath::parse(&a.path)?;
    let local = (a.local != "-")
        .then(|| local_target(&path, &a.local))
        .transpose()?;
    if live::get(root, &path, local.as_deref())?.is_some() {
        return Ok(0);
    }
    let v = ctx.open(root)?;
    if let Some(local) = local {
        v.get_to_file(&path, &local)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        // Authenticate everything before the first byte leaves: stdout
        // cannot be taken back.
        v.read_file(&path, &mut out, true)?;
        out.flush().context("cannot write to standard output")?;
    }
    Ok(0)
}

/// The local file `get` writes: `local`, or the vault file's name inside
/// it when it is a folder.
fn local_target(path: &VaultPath, local: &str) -> Result<PathBuf> {
    let mut local = PathBuf::from(local);
    if local.is_dir() {
        let name = path
            .components()
            .last()
            .context("the vault root is a folder")?;
        local = local.join(std::ffi::OsStr::from_bytes(name));
    }
    Ok(local)
}

use std::os::unix::ffi::OsStrExt;

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Vault folder or file (default `/`).
    #[arg(default_value = "/")]
    path: String,
    /// Long listing: mode, links, owner, size, and the modification time
    /// as `ls -l` shows it (local time; the year instead of the time of
    /// day when older than six months).
    #[arg(short, long)]
    long: bool,
    /// Machine-readable output (times as seconds and nanoseconds).
    #[arg(long)]
    json: bool,
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<i32> {
    let root = &a.vault.vault;
    let path = VaultPath::parse(&a.path)?;
    let entries = match live::ls(root, &path)? {
        Some(entries) => entries,
        None => ctx.open(root)?.list(&path)?,
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
    } else {
        for e in &entries {
            if a.long {
                writeln!(out, "{}", format::long_line(&e.name, &e.inode))?;
            } else {
                writeln!(out, "{}", e.name)?;
            }
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Vault paths.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Remove folders and everything in them.
    #[arg(short, long)]
    recursive: bool,
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    let root = &a.vault.vault;
    // Opened here once no mount answers.
    let mut here: Option<vault::Vault> = None;
    let mut code = 0;
    for p in &a.paths {
        let r = VaultPath::parse(p)
            .map_err(anyhow::Error::from)
            .and_then(|path| {
                if here.is_none() && live::rm(root, &path, a.recursive)?.is_some() {
                    return Ok(());
                }
                let v = match &mut here {
                    Some(v) => v,
                    none => none.insert(ctx.open(root)?),
                };
                Ok(v.remove(&path, a.recursive).map(|_| ())?)
            });
        if let Err(e) = r {
            eprintln!("qsfs: error: {e}");
            code = 1;
        }
    }
    // The deleted files' keys are destroyed in the stores at once; the
    // copies the stores' logs keep go with their epoch keys now.
    if let Some(v) = &here {
        v.shred()?;
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct MkdirArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Vault paths.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Create parents as needed; no error if the folder exists.
    #[arg(short, long)]
    parents: bool,
    /// Permission bits, octal.
    #[arg(short, long, default_value = "755")]
    mode: String,
}

pub fn mkdir(ctx: &Ctx, a: MkdirArgs) -> Result<i32> {
    let mode = u32::from_str_radix(&a.mode, 8)
        .with_context(|| format!("--mode {:?} is not an octal mode", a.mode))?;
    let root = &a.vault.vault;
    // Opened here once no mount answers.
    let mut here: Option<vault::Vault> = None;
    for p in &a.paths {
        let path = VaultPath::parse(p)?;
        if here.is_none() && live::mkdir(root, &path, a.parents, mode)?.is_some() {
            continue;
        }
        let v = match &mut here {
            Some(v) => v,
            none => none.insert(ctx.open(root)?),
        };
        v.mkdir(&path, a.parents, mode)?;
    }
    Ok(0)
}
