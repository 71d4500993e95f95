//! Unlocking at the command line: the passphrase and key-file options
//! every vault command shares, the method `qsfs init` picks, `qsfs unlock
//! add|remove|list` and `qsfs shred`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use super::{Ctx, VaultArg};
use crate::unlock::{NewMethod, UnlockInput};

/// Unlock options shared by every command that opens a vault.
#[derive(Args, Debug, Clone, Default)]
pub struct UnlockArgs {
    /// Read the vault's passphrase from the first line of FILE instead of
    /// asking on the terminal (never give a passphrase on the command line).
    #[arg(long, global = true, env = "QSFS_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with this key file (tried before the path the vault records;
    /// with `init` and `unlock add`, where to make the key file).
    #[arg(long, global = true, env = "QSFS_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// The first line of a passphrase file.
fn read_passphrase_file(p: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the passphrase file {}", p.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        bail!(
            "the passphrase file {} is empty (its first line is the passphrase)",
            p.display()
        );
    }
    Ok(Zeroizing::new(line.to_string()))
}

fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn ask(prompt: &str) -> Option<Zeroizing<String>> {
    if !on_terminal() {
        return None;
    }
    rpassword::prompt_password(prompt).ok().map(Zeroizing::new)
}

impl UnlockArgs {
    /// What commands offer to unlock with.
    pub fn input(&self) -> Result<UnlockInput> {
        Ok(UnlockInput {
            passphrase: self
                .passphrase_file
                .as_deref()
                .map(read_passphrase_file)
                .transpose()?,
            key_file: self.key_file.clone(),
            ask: Some(Arc::new(ask)),
        })
    }
}

/// Key holders for `--unlock holders` / `unlock add holders`.
#[derive(Args, Debug, Clone, Default)]
pub struct HolderArgs {
    /// A key holder: `name=NAME,addr=HOST:PORT,pool=FILE` (FILE: the
    /// vault's end of the holder link's key pool; keep it with the QKD key
    /// source, not in the vault folder), or with an ETSI 014 KME instead
    /// of a pool: `name=NAME,addr=HOST:PORT,kme=URL,sae=ID,peer=ID,
    /// cert=FILE,key=FILE,ca=FILE` (the link is named NAME). Repeat for
    /// each holder.
    #[arg(long = "holder", value_name = "SPEC")]
    pub holders: Vec<String>,
    /// How many holders must answer to unlock (default: a majority).
    #[arg(long, value_name = "T")]
    pub threshold: Option<u8>,
}

/// Parses one `--holder` (see [`HolderArgs::holders`]).
fn holder_spec(spec: &str) -> Result<(String, String, crate::unlock::holders::HolderKeys)> {
    use crate::unlock::holders::HolderKeys;
    let mut f: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some((
                k @ ("name" | "addr" | "pool" | "kme" | "sae" | "peer" | "cert" | "key" | "ca"),
                v,
            )) => {
                f.insert(k, v);
            }
            _ => bail!(
                "--holder {spec:?}: unknown part {part:?}; expected name=NAME,addr=HOST:PORT,pool=FILE \
                 or name=NAME,addr=HOST:PORT,kme=URL,sae=ID,peer=ID,cert=FILE,key=FILE,ca=FILE"
            ),
        }
    }
    let (Some(name), Some(addr)) = (f.get("name"), f.get("addr")) else {
        bail!("--holder {spec:?}: name and addr are needed");
    };
    let keys = match (f.get("pool"), f.get("kme")) {
        (Some(p), None) => HolderKeys::Pool(PathBuf::from(p)),
        (None, Some(url)) => {
            let need = |k: &str| {
                f.get(k).map(|v| (*v).to_string()).ok_or_else(|| {
                    anyhow::anyhow!("--holder {spec:?}: with kme=URL give {k}= as well (sae, peer, cert, key, ca)")
                })
            };
            HolderKeys::Kme(crate::qkd::etsi014::KmeConfig {
                url: url.to_string(),
                sae_id: need("sae")?,
                peer_sae_id: need("peer")?,
                cert: need("cert")?.into(),
                key: need("key")?.into(),
                ca: need("ca")?.into(),
            })
        }
        _ => bail!("--holder {spec:?}: give pool=FILE or kme=URL (one of them)"),
    };
    Ok((name.to_string(), addr.to_string(), keys))
}

impl HolderArgs {
    fn method(&self) -> Result<NewMethod> {
        if self.holders.is_empty() {
            bail!("key holders need at least one --holder name=NAME,addr=HOST:PORT,pool=FILE");
        }
        let mut list = Vec::new();
        for spec in &self.holders {
            list.push(holder_spec(spec)?);
        }
        let n = list.len();
        let t = self.threshold.map_or(n / 2 + 1, usize::from);
        if t == 0 || t > n {
            bail!("--threshold {t} with {n} holder(s): it must be between 1 and {n}");
        }
        Ok(NewMethod::Holders(t as u8, list))
    }
}

/// How `qsfs init` and `qsfs unlock add` protect the vault key.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// A passphrase (Argon2id), asked on the terminal or read from
    /// --passphrase-file.
    Passphrase,
    /// A key file: --key-file PATH, or ~/.config/qsfs/<vault id>.key.
    KeyFile,
    /// t-of-n key holders (`qsfs keyholder serve`), given with --holder
    /// and --threshold.
    Holders,
    /// The vault key in clear in unlock.toml: for tests only.
    None,
}

/// A new passphrase: from --passphrase-file, else asked twice.
fn new_passphrase(u: &UnlockArgs) -> Result<Zeroizing<String>> {
    if let Some(p) = &u.passphrase_file {
        return read_passphrase_file(p);
    }
    if !on_terminal() {
        bail!(
            "a passphrase needs a terminal to ask on; give --passphrase-file FILE (or QSFS_PASSPHRASE_FILE), or use --unlock key-file"
        );
    }
    let first = Zeroizing::new(rpassword::prompt_password("New passphrase: ")?);
    if first.is_empty() {
        bail!("an empty passphrase protects nothing; run again and type one");
    }
    let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
    if first != again {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(first)
}

/// The method to make: `kind` if given; otherwise a passphrase on a
/// terminal (or with --passphrase-file), else a key file.
pub fn new_method(kind: Option<MethodKind>, u: &UnlockArgs, h: &HolderArgs) -> Result<NewMethod> {
    let kind = kind.unwrap_or(if u.passphrase_file.is_some() || on_terminal() {
        MethodKind::Passphrase
    } else {
        MethodKind::KeyFile
    });
    Ok(match kind {
        MethodKind::Passphrase => {
            let p = new_passphrase(u)?;
            NewMethod::Passphrase(p, crate::unlock::calibrate())
        }
        MethodKind::KeyFile => match &u.key_file {
            Some(p) => NewMethod::KeyFile(p.clone()),
            // `init` resolves the default place once the vault id exists.
            None => NewMethod::KeyFile(PathBuf::new()),
        },
        MethodKind::Holders => h.method()?,
        MethodKind::None => NewMethod::None,
    })
}

/// Prints how a vault made or changed now unlocks (`only`: just that
/// method).
pub fn print_methods(root: &Path, vault_id: &str, only: Option<&str>) -> Result<()> {
    for m in crate::unlock::list(root, vault_id)?
        .into_iter()
        .filter(|m| only.is_none_or(|o| o == m.name))
    {
        match m.kind.as_str() {
            "key-file" => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&m.detail).map_or_else(
                    |e| format!("cannot stat: {e}"),
                    |md| format!("mode {:04o}", md.permissions().mode() & 0o777),
                );
                println!(
                    "unlock: key file {} ({mode}); keep it (or a copy) away from the vault folder: without it or another method the vault cannot be opened",
                    m.detail
                );
            }
            "passphrase" => println!("unlock: passphrase ({})", m.detail),
            "holders" => println!("unlock: key holders, {}", m.detail),
            _ => println!(
                "unlock: NONE - the vault key is stored in clear in {}; anyone with a copy of the vault folder can read every file (for tests only; `qsfs unlock add` fixes it)",
                root.join(crate::unlock::UNLOCK_FILE).display()
            ),
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum UnlockCommand {
    /// List the vault's unlock methods.
    List(VaultArg),
    /// Add an unlock method (a passphrase, a key file). Adding one to a
    /// vault unlocked by `none` moves the vault to a new key.
    Add(AddArgs),
    /// Remove an unlock method; the last one is refused.
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// The kind of method to add.
    #[arg(value_enum)]
    kind: MethodKind,
    /// Its name (default: its kind, numbered if taken).
    #[arg(long)]
    name: Option<String>,
    /// With `passphrase`: read the new passphrase from the first line of
    /// FILE (the current one, if asked for, comes from --passphrase-file
    /// or the terminal).
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    holders: HolderArgs,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// The method's name (see `qsfs unlock list`).
    name: String,
}

pub fn run(ctx: &Ctx, c: UnlockCommand) -> Result<i32> {
    match c {
        UnlockCommand::List(v) => {
            let cfg = crate::vault::Config::load(&v.vault)?;
            let methods = crate::unlock::list(&v.vault, &cfg.vault_id)?;
            if methods.is_empty() {
                println!(
                    "vault {} has no unlock methods: its key records are kept in clear (made by an older qsfs); `qsfs unlock add {} passphrase` (or key-file) seals them",
                    v.vault.display(),
                    v.vault.display()
                );
            }
            for m in methods {
                println!("{:<16} {:<11} {}", m.name, m.kind, m.detail);
            }
            Ok(0)
        }
        UnlockCommand::Add(a) => {
            let vault = ctx.open_offline(&a.vault.vault, "change its unlock methods")?;
            let mut u = ctx.unlock_args.clone();
            let has_passphrase = vault
                .unlock_methods()?
                .iter()
                .any(|m| m.kind == "passphrase");
            if a.new_passphrase_file.is_some() {
                u.passphrase_file = a.new_passphrase_file.clone();
            } else if has_passphrase {
                // --passphrase-file gave the current passphrase, not a new one.
                u.passphrase_file = None;
            }
            let mut method = new_method(Some(a.kind), &u, &a.holders)?;
            if let NewMethod::KeyFile(p) = &method
                && p.as_os_str().is_empty()
            {
                method = NewMethod::KeyFile(
                    crate::unlock::default_key_file(&vault.config().vault_id).context(
                        "no HOME or XDG_CONFIG_HOME for the key file; give --key-file PATH",
                    )?,
                );
            }
            let out = vault.add_unlock(&method, a.name.as_deref())?;
            println!("added unlock method {:?}", out.name);
            if out.sealed_now {
                println!(
                    "the keystore was kept in clear (a vault from an older qsfs): its {} key records are now sealed under the vault key, and their clear copies destroyed",
                    out.records_sealed
                );
            }
            if !out.replaced.is_empty() {
                println!(
                    "removed {:?} (the vault key in clear); the vault now has a new key, and every key record was re-sealed under new epoch keys",
                    out.replaced
                );
            }
            print_methods(vault.root(), &vault.config().vault_id, Some(&out.name))?;
            if out.sealed_now {
                // The clear copies the stores' logs kept go with the old
                // store files.
                vault.rebuild_key_stores()?;
            }
            Ok(0)
        }
        UnlockCommand::Remove(a) => {
            let vault = ctx.open_offline(&a.vault.vault, "change its unlock methods")?;
            vault.remove_unlock(&a.name)?;
            println!("removed unlock method {:?}", a.name);
            Ok(0)
        }
    }
}

#[derive(Args, Debug)]
pub struct ShredArgs {
    #[command(flatten)]
    vault: VaultArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `qsfs shred VAULT`: a shred pass now.
pub fn shred(ctx: &Ctx, a: ShredArgs) -> Result<i32> {
    let report: crate::vault::ShredReport =
        match crate::control::call(&a.vault.vault, "shred", serde_json::json!(null), &|_| {}) {
            Ok(v) => serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("undecodable report from the mount process: {e}"))?,
            Err(crate::control::ControlError::NotMounted(_)) => {
                ctx.open(&a.vault.vault)?.shred()?
            }
            Err(e) => return Err(e.into()),
        };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    if !report.sealed {
        println!(
            "vault {} keeps its key records in clear (made by an older qsfs): nothing can be shredded; `qsfs unlock add` seals it",
            a.vault.vault.display()
        );
        return Ok(0);
    }
    if report.epochs_destroyed.is_empty() && report.pending == 0 {
        println!("nothing to shred: no deleted key records wait");
        return Ok(0);
    }
    println!(
        "shredded {} deleted key record(s): destroyed epoch key(s) {:?}, re-sealed {} live record(s) under the current epoch",
        report.records_shredded, report.epochs_destroyed, report.records_resealed
    );
    if report.pending > 0 {
        println!(
            "{} deleted record(s) still wait: the R2 store is away (plug its drive in and run `qsfs shred` again)",
            report.pending
        );
        return Ok(3);
    }
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum KeyholderCommand {
    /// Run one key holder: keep a share of a vault's wrapping key and
    /// release it only over the vault's QKD-keyed link, rate-limited, with
    /// every release logged in DIR/releases.log.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The holder's folder (its shares and release log).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Where to listen, e.g. 127.0.0.1:7200 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The holder's end (B) of the vault link's key pool.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "kme",
        conflicts_with = "kme"
    )]
    keypool: Option<PathBuf>,
    /// Get the link's keys from an ETSI GS QKD 014 KME instead of a pool
    /// (`https://host:port`); needs --link, --sae-id, --peer-sae-id,
    /// --cert, --key and --ca.
    #[arg(long, value_name = "URL")]
    kme: Option<String>,
    /// With --kme: the link's name, the holder's name in the vault's
    /// `--holder name=...`.
    #[arg(long, value_name = "NAME", requires = "kme")]
    link: Option<String>,
    /// With --kme: this holder's SAE ID.
    #[arg(long, value_name = "ID", requires = "kme")]
    sae_id: Option<String>,
    /// With --kme: the vault's SAE ID.
    #[arg(long, value_name = "ID", requires = "kme")]
    peer_sae_id: Option<String>,
    /// With --kme: this holder's client certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "kme")]
    cert: Option<PathBuf>,
    /// With --kme: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "kme")]
    key: Option<PathBuf>,
    /// With --kme: the CA of the KME's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "kme")]
    ca: Option<PathBuf>,
    /// Releases of one vault's share allowed in any minute.
    #[arg(long, default_value_t = 30, value_name = "N")]
    releases_per_minute: usize,
}

pub fn keyholder(c: KeyholderCommand) -> Result<i32> {
    let KeyholderCommand::Serve(a) = c;
    use crate::unlock::holders::HolderKeys;
    let (keys, link) = match (a.keypool, &a.kme) {
        (Some(p), None) => (HolderKeys::Pool(p), None),
        (None, Some(url)) => {
            let need = |v: &Option<String>, flag: &str| {
                v.clone()
                    .ok_or_else(|| anyhow::anyhow!("--kme needs {flag} as well"))
            };
            let needp = |v: &Option<PathBuf>, flag: &str| {
                v.clone()
                    .ok_or_else(|| anyhow::anyhow!("--kme needs {flag} as well"))
            };
            (
                HolderKeys::Kme(crate::qkd::etsi014::KmeConfig {
                    url: url.clone(),
                    sae_id: need(&a.sae_id, "--sae-id")?,
                    peer_sae_id: need(&a.peer_sae_id, "--peer-sae-id")?,
                    cert: needp(&a.cert, "--cert")?,
                    key: needp(&a.key, "--key")?,
                    ca: needp(&a.ca, "--ca")?,
                }),
                Some(need(
                    &a.link,
                    "--link NAME (the holder's name in the vault)",
                )?),
            )
        }
        _ => bail!("give --keypool FILE or --kme URL (one of them)"),
    };
    let opts = crate::unlock::keyholder::HolderOptions {
        dir: a.dir,
        listen: a.listen,
        keys: keys.absolute()?,
        link,
        releases_per_minute: a.releases_per_minute,
    };
    crate::unlock::keyholder::serve(&opts, |addr| {
        println!("key holder listening on {addr}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The new vault folder (must not exist, or be empty).
    #[arg(value_name = "NEW_VAULT")]
    vault: PathBuf,
    /// A node of the lost vault; repeat for each (at least k). A folder
    /// (`DIR`), a node server over a QKD-keyed link
    /// (`addr=HOST:PORT,pool=FILE`, FILE: this machine's end A of a pool
    /// pair whose end B the server uses), or a node server without link
    /// encryption (`addr=HOST:PORT,plaintext,vault=ID,name=NODE`).
    #[arg(
        long = "node",
        value_name = "DIR|addr=HOST:PORT,pool=FILE",
        required = true
    )]
    nodes: Vec<String>,
}

/// Parses one `--node` of `qsfs recover`.
fn recover_node(spec: &str) -> Result<crate::vault::RecoverNode> {
    use crate::vault::RecoverNode;
    if !spec.starts_with("addr=") {
        return Ok(RecoverNode::Folder(PathBuf::from(spec)));
    }
    let (mut addr, mut pool, mut plaintext, mut vault, mut name) = (None, None, false, None, None);
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("addr", v)) => addr = Some(v.to_string()),
            Some(("pool", v)) => pool = Some(PathBuf::from(v)),
            Some(("vault", v)) => vault = Some(v.to_string()),
            Some(("name", v)) => name = Some(v.to_string()),
            None if part == "plaintext" => plaintext = true,
            _ => bail!(
                "--node {spec:?}: unknown part {part:?}; expected addr=HOST:PORT,pool=FILE or \
                 addr=HOST:PORT,plaintext,vault=ID,name=NODE"
            ),
        }
    }
    let address = addr.filter(|a| !a.is_empty()).ok_or_else(|| {
        anyhow::anyhow!("--node {spec:?}: give the node server's address as addr=HOST:PORT")
    })?;
    match (pool, plaintext, vault, name) {
        (Some(pool), false, None, None) => Ok(RecoverNode::Linked { address, pool }),
        (None, true, Some(vault_id), Some(node)) => Ok(RecoverNode::Plaintext {
            address,
            vault_id,
            node,
        }),
        (None, true, _, _) => bail!(
            "--node {spec:?}: a plaintext node server does not say whose node it is; add \
             vault=ID,name=NODE (the vault id `qsfs status` showed, the node's name)"
        ),
        (None, false, _, _) => bail!(
            "--node {spec:?}: give pool=FILE, this machine's end of a key pool pair whose other \
             end the node server uses (`qsfs keypool gen`, or from the QKD equipment)"
        ),
        _ => bail!(
            "--node {spec:?}: pool=FILE is for a QKD-keyed server, plaintext,vault=ID,name=NODE \
             for a plaintext one; not both"
        ),
    }
}

/// `qsfs recover NEW_VAULT --node DIR...`: the vault rebuilt from its
/// node folders and an unlock method.
pub fn recover(ctx: &Ctx, a: RecoverArgs) -> Result<i32> {
    let r = crate::vault::recover(
        &a.vault,
        &crate::vault::RecoverOptions {
            nodes: a
                .nodes
                .iter()
                .map(|s| recover_node(s))
                .collect::<Result<_>>()?,
            unlock: ctx.unlock()?,
        },
    )?;
    println!(
        "recovered vault {} (id {}) from metadata snapshot {} and {} journal entr{} after it, on {} node(s)",
        a.vault.display(),
        r.vault_id,
        r.generation,
        r.journal_entries,
        if r.journal_entries == 1 { "y" } else { "ies" },
        r.nodes.len()
    );
    for (name, at) in &r.nodes {
        println!("  {name}: {at}");
    }
    for (given, copy) in &r.imported_pools {
        println!(
            "the link pool {} is now {} (sealed under the vault key); the file given still holds \
             the same keys in clear and must not be used again: remove it (shred -u {})",
            given.display(),
            copy.display(),
            given.display()
        );
    }
    println!(
        "check it with `qsfs fsck {}` and mount it with `qsfs mount {} MOUNTPOINT`",
        a.vault.display(),
        a.vault.display()
    );
    Ok(0)
}

/// `qsfs backup VAULT`: a metadata snapshot to the nodes now.
pub fn backup(ctx: &Ctx, a: VaultArg) -> Result<i32> {
    let done: Option<crate::vault::MetaBackup> =
        match crate::control::call(&a.vault, "backup", serde_json::json!(null), &|_| {}) {
            Ok(v) => serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("undecodable report from the mount process: {e}"))?,
            Err(crate::control::ControlError::NotMounted(_)) => {
                ctx.open(&a.vault)?.backup_metadata()?
            }
            Err(e) => return Err(e.into()),
        };
    match done {
        Some(b) => println!(
            "metadata snapshot {} ({} bytes) written to the nodes; `qsfs recover` rebuilds the vault from them",
            b.generation, b.bytes
        ),
        None => println!(
            "vault {} has no vault key (made by an older qsfs): seal it with `qsfs unlock add` first, then back it up",
            a.vault.display()
        ),
    }
    Ok(0)
}
