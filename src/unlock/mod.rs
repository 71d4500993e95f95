//! The vault key and the methods that unwrap it.
//!
//! Every key record of a vault (R1, R2, B) is sealed under an epoch key,
//! and the epoch keys under the vault key (see `keystore::epochs`). The
//! vault key itself is never written in clear (except by the test-only
//! method `none`): `VAULT/unlock.toml` holds one wrapped copy per unlock
//! method, as LUKS keeps key slots.
//!
//! `unlock.toml`, format 1:
//!
//! ```toml
//! format = 1
//! vault_id = "<32 hex>"
//!
//! [[method]]
//! kind = "passphrase"          # Argon2id, parameters calibrated at init
//! name = "passphrase"
//! memory_kib = 65536
//! iterations = 3
//! lanes = 1
//! salt = "<32 hex>"
//! wrapped = "<hex: nonce 12 || AES-256-GCM(vault key) 32 || tag 16>"
//!
//! [[method]]
//! kind = "key-file"            # KEK = BLAKE3 derive_key of the file's bytes
//! name = "key-file"
//! path = "/root/.config/qsfs/<vault id>.key"
//! wrapped = "<hex>"
//!
//! [[method]]
//! kind = "none"                # tests only: the vault key in clear
//! name = "none"
//! vault_key = "<64 hex>"
//! ```
//!
//! A wrapped copy's associated data is `"qsfs unlock v1\0" || vault_id ||
//! "\0" || name`, so a slot cannot be moved to another vault or name. A
//! wrong passphrase or key file fails the GCM tag and is reported as such.

pub mod holders;
mod kdf;
pub mod keyholder;
pub mod wrap;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

pub use kdf::{Argon2Params, calibrate};

/// File name of the unlock methods in the vault folder.
pub const UNLOCK_FILE: &str = "unlock.toml";
const FORMAT: u32 = 1;
const KEY_BYTES: usize = 32;

/// The vault key: unwraps the epoch keys, which unwrap the key records.
#[derive(Clone)]
pub struct VaultKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey(..)")
    }
}

impl VaultKey {
    /// A fresh random vault key.
    pub fn generate() -> Result<VaultKey, UnlockError> {
        let mut k = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(&mut k[..]).map_err(|e| UnlockError::Random(e.to_string()))?;
        Ok(VaultKey(k))
    }

    /// A key from its bytes (frozen examples, the mount daemon's pipe).
    pub fn from_bytes(b: [u8; KEY_BYTES]) -> VaultKey {
        VaultKey(Zeroizing::new(b))
    }

    /// Its bytes, to hand to the mount daemon over a pipe.
    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// A subkey for one purpose (`context` names it), so the vault key
    /// itself encrypts nothing.
    pub fn derive(&self, context: &str) -> Zeroizing<[u8; KEY_BYTES]> {
        Zeroizing::new(blake3::derive_key(context, &self.0[..]))
    }
}

/// How an unlock method is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Method {
    Passphrase {
        name: String,
        #[serde(flatten)]
        params: Argon2Params,
        salt: String,
        wrapped: String,
    },
    KeyFile {
        name: String,
        path: PathBuf,
        wrapped: String,
    },
    Holders {
        name: String,
        threshold: u8,
        #[serde(rename = "holder")]
        holders: Vec<holders::HolderRef>,
        wrapped: String,
    },
    None {
        name: String,
        vault_key: String,
    },
}

impl Method {
    fn name(&self) -> &str {
        match self {
            Method::Passphrase { name, .. }
            | Method::KeyFile { name, .. }
            | Method::Holders { name, .. }
            | Method::None { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnlockFile {
    format: u32,
    vault_id: String,
    #[serde(rename = "method", default)]
    methods: Vec<Method>,
}

/// One unlock method as `qsfs unlock list` and `status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodInfo {
    /// Its name (unique in the vault).
    pub name: String,
    /// `passphrase`, `key-file` or `none`.
    pub kind: String,
    /// What it needs: the key file's path, the Argon2 parameters.
    pub detail: String,
}

/// A method to add at `qsfs init` or `qsfs unlock add`.
#[derive(Clone)]
pub enum NewMethod {
    /// A passphrase, stretched with Argon2id under `params`.
    Passphrase(Zeroizing<String>, Argon2Params),
    /// A key file: created at the path if missing, used as it is if there.
    KeyFile(PathBuf),
    /// `threshold` of these key holders (name, address, how the vault's
    /// end of the link is keyed).
    Holders(u8, Vec<(String, String, holders::HolderKeys)>),
    /// The vault key in clear (tests only; loud in `qsfs status`).
    None,
}

impl fmt::Debug for NewMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewMethod::Passphrase(_, p) => write!(f, "Passphrase(.., {p:?})"),
            NewMethod::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            NewMethod::Holders(t, h) => write!(f, "Holders({t} of {})", h.len()),
            NewMethod::None => f.write_str("None"),
        }
    }
}

/// Why one method did not unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodFailure {
    /// The key file is not there.
    KeyFileMissing(PathBuf),
    /// The key file could not be read.
    KeyFileUnreadable(PathBuf, String),
    /// The key file is not this vault's.
    KeyFileWrong(PathBuf),
    /// No passphrase was given and there is no terminal to ask on.
    NoPassphrase,
    /// The passphrase is wrong.
    WrongPassphrase,
    /// The wrapped copy is damaged (bad hex, wrong length).
    Damaged(String),
    /// Fewer than `threshold` key holders gave a good share.
    Holders {
        /// Good shares received.
        got: usize,
        /// Shares needed.
        threshold: u8,
        /// Each holder that did not give one, and why.
        failed: Vec<(String, holders::HolderFailure)>,
    },
}

impl fmt::Display for MethodFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodFailure::KeyFileMissing(p) => write!(
                f,
                "key file {} is missing (is its drive mounted? give another with --key-file)",
                p.display()
            ),
            MethodFailure::KeyFileUnreadable(p, e) => {
                write!(f, "key file {} cannot be read ({e})", p.display())
            }
            MethodFailure::KeyFileWrong(p) => {
                write!(f, "key file {} is not this vault's key file", p.display())
            }
            MethodFailure::NoPassphrase => f.write_str(
                "no passphrase given (run on a terminal, or give --passphrase-file FILE or QSFS_PASSPHRASE_FILE)",
            ),
            MethodFailure::WrongPassphrase => f.write_str("the passphrase is wrong"),
            MethodFailure::Damaged(d) => write!(f, "its entry is damaged ({d})"),
            MethodFailure::Holders {
                got,
                threshold,
                failed,
            } => {
                write!(
                    f,
                    "only {got} of the {threshold} key holders needed gave their share"
                )?;
                for (name, why) in failed {
                    write!(f, "; holder {name:?} {why}")?;
                }
                Ok(())
            }
        }
    }
}

/// Unlock failures. The vault is never changed by a failed unlock.
#[derive(Debug, Error)]
pub enum UnlockError {
    /// No method unlocked.
    #[error("cannot unlock vault {}: {}", .vault.display(), describe(.tried))]
    Locked {
        /// The vault folder.
        vault: PathBuf,
        /// Each method tried, and why it failed.
        tried: Vec<(String, MethodFailure)>,
    },
    /// `unlock.toml` cannot be read or is damaged.
    #[error("{}: {detail}", .file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Removing the last method would lock the vault for good.
    #[error(
        "{name:?} is the only unlock method of vault {}; add another first (`qsfs unlock add`), then remove this one",
        .vault.display()
    )]
    LastMethod {
        /// The vault.
        vault: PathBuf,
        /// The method.
        name: String,
    },
    /// No such method.
    #[error("vault {} has no unlock method named {name:?}; `qsfs unlock list {}` shows them", .vault.display(), .vault.display())]
    NoSuchMethod {
        /// The vault.
        vault: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A method with that name exists.
    #[error("vault {} already has an unlock method named {name:?}; choose another --name", .vault.display())]
    NameTaken {
        /// The vault.
        vault: PathBuf,
        /// The name.
        name: String,
    },
    /// A key file to create exists and is not this vault's.
    #[error("{}: {detail}", .path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// The OS random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
    /// Key holders could not be set up.
    #[error("{0}")]
    Holders(String),
}

fn describe(tried: &[(String, MethodFailure)]) -> String {
    if tried.is_empty() {
        return "it has no unlock method (unlock.toml lists none); restore unlock.toml from a backup"
            .into();
    }
    tried
        .iter()
        .map(|(name, why)| format!("method {name:?}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Asks for a passphrase on a terminal; `None` when there is none.
pub type Ask = Arc<dyn Fn(&str) -> Option<Zeroizing<String>> + Send + Sync>;

/// What the caller offers to unlock with.
#[derive(Clone, Default)]
pub struct UnlockInput {
    /// A passphrase read from `--passphrase-file` or `QSFS_PASSPHRASE_FILE`.
    pub passphrase: Option<Zeroizing<String>>,
    /// A key file given on the command line, tried before the recorded
    /// paths (the drive is mounted elsewhere, a copy of the file).
    pub key_file: Option<PathBuf>,
    /// Asks on a terminal, if there is one, when nothing else unlocked.
    pub ask: Option<Ask>,
}

impl fmt::Debug for UnlockInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockInput")
            .field("passphrase", &self.passphrase.as_ref().map(|_| ".."))
            .field("key_file", &self.key_file)
            .field("ask", &self.ask.is_some())
            .finish()
    }
}

/// How a vault is unlocked when opened.
#[derive(Debug, Clone)]
pub enum Unlock {
    /// Try the methods with what the caller offers.
    With(UnlockInput),
    /// The key, already unwrapped (the mount daemon gets it from its parent).
    Key(VaultKey),
}

impl Default for Unlock {
    fn default() -> Self {
        Unlock::With(UnlockInput::default())
    }
}

fn path_of(root: &Path) -> PathBuf {
    root.join(UNLOCK_FILE)
}

fn aad(vault_id: &str, name: &str) -> Vec<u8> {
    let mut a = b"qsfs unlock v1\0".to_vec();
    a.extend_from_slice(vault_id.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

fn load(root: &Path, vault_id: &str) -> Result<Option<UnlockFile>, UnlockError> {
    let file = path_of(root);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(UnlockError::Io {
                what: format!("read {}", file.display()),
                source,
            });
        }
    };
    let parsed: UnlockFile = toml::from_str(&text).map_err(|e| UnlockError::File {
        file: file.clone(),
        detail: format!("damaged ({e}); restore it from a backup of the vault folder"),
    })?;
    if parsed.format != FORMAT {
        return Err(UnlockError::File {
            file,
            detail: format!(
                "format {} is not one this qsfs reads (it reads {FORMAT}); use a newer qsfs",
                parsed.format
            ),
        });
    }
    if parsed.vault_id != vault_id {
        return Err(UnlockError::File {
            file,
            detail: format!(
                "belongs to vault {}, not to this vault ({vault_id}); it was copied from another vault",
                parsed.vault_id
            ),
        });
    }
    Ok(Some(parsed))
}

/// Writes `unlock.toml` whole: a temporary file, fsynced, renamed over.
fn save(root: &Path, f: &UnlockFile) -> Result<(), UnlockError> {
    let file = path_of(root);
    let tmp = root.join(".unlock.toml.tmp");
    let text = toml::to_string(f).map_err(|e| UnlockError::File {
        file: file.clone(),
        detail: format!("cannot be written ({e})"),
    })?;
    let io = |what: &str| {
        let what = format!("{what} {}", tmp.display());
        move |source| UnlockError::Io { what, source }
    };
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("write"))?;
        out.write_all(text.as_bytes()).map_err(io("write"))?;
        out.sync_all().map_err(io("sync"))?;
    }
    std::fs::rename(&tmp, &file).map_err(|source| UnlockError::Io {
        what: format!("replace {}", file.display()),
        source,
    })?;
    crate::sys::fsync_dir(root).map_err(|source| UnlockError::Io {
        what: format!("sync {}", root.display()),
        source,
    })
}

/// Whether the vault at `root` has unlock methods (a vault made before
/// them has none, and keeps its key records in clear until sealed).
pub fn is_sealed(root: &Path) -> bool {
    path_of(root).exists()
}

/// Unwraps the vault key of the vault at `root`: `None` for a vault made
/// before unlock methods existed.
pub fn open(root: &Path, vault_id: &str, how: &Unlock) -> Result<Option<VaultKey>, UnlockError> {
    let Some(file) = load(root, vault_id)? else {
        return Ok(None);
    };
    let input = match how {
        Unlock::Key(k) => return Ok(Some(k.clone())),
        Unlock::With(i) => i,
    };
    let mut tried = Vec::new();
    // Cheapest and least interactive first: a clear key, key files, a
    // given passphrase, then a prompt.
    for m in &file.methods {
        if let Method::None { vault_key, .. } = m {
            match decode_key(vault_key) {
                Some(k) => return Ok(Some(k)),
                None => tried.push((m.name().into(), MethodFailure::Damaged("bad hex".into()))),
            }
        }
    }
    for m in &file.methods {
        if let Method::KeyFile {
            name,
            path,
            wrapped,
        } = m
        {
            let candidates: Vec<&Path> = input
                .key_file
                .as_deref()
                .into_iter()
                .chain(std::iter::once(path.as_path()))
                .collect();
            let mut failure = None;
            for p in candidates {
                match try_key_file(&file.vault_id, name, p, wrapped) {
                    Ok(k) => {
                        // The file given did not open it: say so, or a
                        // user believes a wrong or stale copy works.
                        if let Some(f) = &failure
                            && let Some(given) = &input.key_file
                        {
                            tracing::warn!(
                                "the key file given ({}) does not open vault {}: {f}; it was opened with the key file it records ({})",
                                given.display(),
                                root.display(),
                                p.display()
                            );
                        }
                        return Ok(Some(k));
                    }
                    Err(f) => failure = failure.or(Some(f)),
                }
            }
            if let Some(f) = failure {
                tried.push((name.clone(), f));
            }
        }
    }
    for m in &file.methods {
        if let Method::Holders {
            name,
            threshold,
            holders,
            wrapped,
        } = m
        {
            match try_holders(&file.vault_id, name, *threshold, holders, wrapped) {
                Ok(k) => return Ok(Some(k)),
                Err(f) => tried.push((name.clone(), f)),
            }
        }
    }
    let phrases: Vec<&Method> = file
        .methods
        .iter()
        .filter(|m| matches!(m, Method::Passphrase { .. }))
        .collect();
    if !phrases.is_empty() {
        let given = match (&input.passphrase, &input.ask) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(ask)) => ask(&format!("Passphrase for vault {}: ", root.display())),
            (None, None) => None,
        };
        match given {
            None => tried.extend(
                phrases
                    .iter()
                    .map(|m| (m.name().to_string(), MethodFailure::NoPassphrase)),
            ),
            Some(p) => {
                for m in phrases {
                    match try_passphrase(&file.vault_id, m, &p) {
                        Ok(k) => return Ok(Some(k)),
                        Err(f) => tried.push((m.name().into(), f)),
                    }
                }
            }
        }
    }
    Err(UnlockError::Locked {
        vault: root.to_path_buf(),
        tried,
    })
}

fn decode_key(hex_key: &str) -> Option<VaultKey> {
    let b = Zeroizing::new(hex::decode(hex_key).ok()?);
    let arr: [u8; KEY_BYTES] = b.as_slice().try_into().ok()?;
    Some(VaultKey::from_bytes(arr))
}

fn unwrap_key(
    kek: &[u8; 32],
    vault_id: &str,
    name: &str,
    wrapped: &str,
) -> Result<Option<VaultKey>, MethodFailure> {
    let w = hex::decode(wrapped)
        .map_err(|_| MethodFailure::Damaged("wrapped key is not hex".into()))?;
    Ok(wrap::unwrap(kek, &aad(vault_id, name), &w).and_then(|k| {
        let arr: [u8; KEY_BYTES] = k.as_slice().try_into().ok()?;
        Some(VaultKey::from_bytes(arr))
    }))
}

fn try_key_file(
    vault_id: &str,
    name: &str,
    path: &Path,
    wrapped: &str,
) -> Result<VaultKey, MethodFailure> {
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "key file {} can be read by others (mode {:04o}); make it the owner's alone: chmod 600 {}",
                path.display(),
                m.permissions().mode() & 0o777,
                path.display()
            );
        }
    }
    let kek = kdf::key_file_kek(path)?;
    unwrap_key(&kek, vault_id, name, wrapped)?
        .ok_or_else(|| MethodFailure::KeyFileWrong(path.into()))
}

fn try_holders(
    vault_id: &str,
    name: &str,
    threshold: u8,
    list: &[holders::HolderRef],
    wrapped: &str,
) -> Result<VaultKey, MethodFailure> {
    let (shares, failed) = holders::gather(list, vault_id, threshold as usize);
    if shares.len() < threshold as usize {
        return Err(MethodFailure::Holders {
            got: shares.len(),
            threshold,
            failed,
        });
    }
    for (h, why) in &failed {
        tracing::warn!("key holder {h:?} of vault {vault_id} {why}; the others unlocked it");
    }
    let w = holders::combine(&shares, threshold).map_err(MethodFailure::Damaged)?;
    unwrap_key(&w, vault_id, name, wrapped)?.ok_or_else(|| {
        MethodFailure::Damaged(
            "the holders' shares rebuild a key that does not unwrap the vault key".into(),
        )
    })
}

fn try_passphrase(vault_id: &str, m: &Method, phrase: &str) -> Result<VaultKey, MethodFailure> {
    let Method::Passphrase {
        name,
        params,
        salt,
        wrapped,
    } = m
    else {
        return Err(MethodFailure::Damaged("not a passphrase method".into()));
    };
    let salt = hex::decode(salt).map_err(|_| MethodFailure::Damaged("salt is not hex".into()))?;
    let kek = kdf::passphrase_kek(phrase, &salt, params).map_err(MethodFailure::Damaged)?;
    unwrap_key(&kek, vault_id, name, wrapped)?.ok_or(MethodFailure::WrongPassphrase)
}

/// Makes the stored form of `new` for the key `vk`.
fn make(vault_id: &str, name: &str, vk: &VaultKey, new: &NewMethod) -> Result<Method, UnlockError> {
    let random = |e: getrandom::Error| UnlockError::Random(e.to_string());
    Ok(match new {
        NewMethod::None => Method::None {
            name: name.into(),
            vault_key: hex::encode(vk.bytes()),
        },
        NewMethod::KeyFile(path) => {
            let path = std::path::absolute(path).map_err(|source| UnlockError::Io {
                what: format!("resolve {}", path.display()),
                source,
            })?;
            kdf::ensure_key_file(&path)?;
            // Recorded as the clean path it now has (no `..`, no links).
            let path = path.canonicalize().unwrap_or(path);
            let kek = kdf::key_file_kek(&path).map_err(|f| UnlockError::KeyFile {
                path: path.clone(),
                detail: f.to_string(),
            })?;
            Method::KeyFile {
                name: name.into(),
                wrapped: hex::encode(
                    wrap::wrap(&kek, &aad(vault_id, name), vk.bytes()).map_err(random)?,
                ),
                path,
            }
        }
        NewMethod::Holders(threshold, list) => {
            for (i, (hname, addr, _)) in list.iter().enumerate() {
                if list[..i].iter().any(|(n, a, _)| n == hname || a == addr) {
                    return Err(UnlockError::Holders(format!(
                        "key holder {hname:?} at {addr} is named twice (by name or address); name \
                         each holder once"
                    )));
                }
            }
            let n = u8::try_from(list.len())
                .map_err(|_| UnlockError::Holders("at most 255 key holders".into()))?;
            let mut w = Zeroizing::new([0u8; KEY_BYTES]);
            getrandom::fill(&mut w[..]).map_err(random)?;
            let shares = holders::split(&w, *threshold, n).map_err(UnlockError::Holders)?;
            let mut refs = Vec::new();
            for ((hname, addr, keys), share) in list.iter().zip(&shares) {
                let keys = keys.absolute().map_err(|source| UnlockError::Io {
                    what: format!("resolve the key files of holder {hname:?}"),
                    source,
                })?;
                holders::enroll(hname, addr, &keys, vault_id, share).map_err(|e| {
                    UnlockError::Holders(format!(
                        "key holder {hname:?} at {addr}: {e}; nothing was changed"
                    ))
                })?;
                refs.push(holders::HolderRef {
                    name: hname.clone(),
                    addr: addr.clone(),
                    pool: match &keys {
                        holders::HolderKeys::Pool(p) => Some(p.clone()),
                        holders::HolderKeys::Kme(_) => None,
                    },
                    kme: match keys {
                        holders::HolderKeys::Kme(k) => Some(k),
                        holders::HolderKeys::Pool(_) => None,
                    },
                    x: share[0],
                    check: holders::share_check(vault_id, share),
                });
            }
            Method::Holders {
                name: name.into(),
                threshold: *threshold,
                holders: refs,
                wrapped: hex::encode(
                    wrap::wrap(&w, &aad(vault_id, name), vk.bytes()).map_err(random)?,
                ),
            }
        }
        NewMethod::Passphrase(phrase, params) => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(random)?;
            let kek =
                kdf::passphrase_kek(phrase, &salt, params).map_err(|detail| UnlockError::File {
                    file: PathBuf::from("Argon2 parameters"),
                    detail,
                })?;
            Method::Passphrase {
                name: name.into(),
                params: *params,
                salt: hex::encode(salt),
                wrapped: hex::encode(
                    wrap::wrap(&kek, &aad(vault_id, name), vk.bytes()).map_err(random)?,
                ),
            }
        }
    })
}

fn kind_of(new: &NewMethod) -> &'static str {
    match new {
        NewMethod::Passphrase(..) => "passphrase",
        NewMethod::KeyFile(_) => "key-file",
        NewMethod::Holders(..) => "holders",
        NewMethod::None => "none",
    }
}

/// Writes the first unlock method of a new vault (`qsfs init`).
pub fn create(
    root: &Path,
    vault_id: &str,
    vk: &VaultKey,
    first: &NewMethod,
) -> Result<String, UnlockError> {
    let name = kind_of(first).to_string();
    let file = UnlockFile {
        format: FORMAT,
        vault_id: vault_id.into(),
        methods: vec![make(vault_id, &name, vk, first)?],
    };
    save(root, &file)?;
    Ok(name)
}

/// What [`add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The new method's name.
    pub name: String,
    /// Methods `none` it replaced (a key in clear is not kept beside a
    /// real method).
    pub replaced_none: Vec<String>,
}

/// Adds a method for the (unlocked) key `vk`. Adding a real method drops
/// the method `none`, if there is one: the caller must then have moved the
/// vault to a new key, since the old one was in clear (see `Vault`).
pub fn add(
    root: &Path,
    vault_id: &str,
    vk: &VaultKey,
    new: &NewMethod,
    name: Option<&str>,
) -> Result<Added, UnlockError> {
    let mut file = load(root, vault_id)?.ok_or_else(|| UnlockError::File {
        file: path_of(root),
        detail: "missing".into(),
    })?;
    let base = kind_of(new);
    let name = match name {
        Some(n) => {
            if file.methods.iter().any(|m| m.name() == n) {
                return Err(UnlockError::NameTaken {
                    vault: root.into(),
                    name: n.into(),
                });
            }
            n.to_string()
        }
        None => (1..)
            .map(|i| {
                if i == 1 {
                    base.to_string()
                } else {
                    format!("{base}-{i}")
                }
            })
            .find(|n| !file.methods.iter().any(|m| m.name() == n))
            .unwrap_or_else(|| base.to_string()),
    };
    if let NewMethod::KeyFile(p) = new {
        let p = std::path::absolute(p)
            .ok()
            .map(|p| p.canonicalize().unwrap_or(p));
        if let Some(same) = file
            .methods
            .iter()
            .find(|m| matches!(m, Method::KeyFile { path, .. } if Some(path) == p.as_ref()))
        {
            return Err(UnlockError::NameTaken {
                vault: root.into(),
                name: format!("{} (it already uses this key file)", same.name()),
            });
        }
    }
    if let NewMethod::Holders(_, list) = new {
        holders_unused(&file, list)?;
    }
    let method = make(vault_id, &name, vk, new)?;
    let mut replaced_none = Vec::new();
    if !matches!(new, NewMethod::None) {
        file.methods.retain(|m| {
            let none = matches!(m, Method::None { .. });
            if none {
                replaced_none.push(m.name().to_string());
            }
            !none
        });
        // The other methods wrap the old key: re-wrap is the caller's job
        // (`rewrap_all`) when the key changes.
    }
    file.methods.push(method);
    save(root, &file)?;
    Ok(Added {
        name,
        replaced_none,
    })
}

/// Refuses key holders already in one of `file`'s holders methods: a
/// holder keeps one share per vault, so enrolling it again
/// would silently take its share away from the other method.
fn holders_unused(
    file: &UnlockFile,
    list: &[(String, String, holders::HolderKeys)],
) -> Result<(), UnlockError> {
    for (name, addr, _) in list {
        for m in &file.methods {
            if let Method::Holders {
                name: method,
                holders,
                ..
            } = m
                && let Some(h) = holders.iter().find(|h| h.name == *name || h.addr == *addr)
            {
                return Err(UnlockError::Holders(format!(
                    "key holder {name:?} at {addr} already keeps a share for the method {method:?} \
                     (as {:?} at {}); a holder keeps one share per vault, so enrolling it again \
                     would break that method. Use other holders, or `qsfs unlock remove` {method:?} \
                     first; nothing was changed",
                    h.name, h.addr
                )));
            }
        }
    }
    Ok(())
}

/// Replaces every method by `new`, for the new key `vk` (a vault moving
/// off a key kept in clear: the old methods wrap the old key).
pub fn replace(
    root: &Path,
    vault_id: &str,
    vk: &VaultKey,
    new: &NewMethod,
    name: Option<&str>,
) -> Result<Added, UnlockError> {
    let old = load(root, vault_id)?.ok_or_else(|| UnlockError::File {
        file: path_of(root),
        detail: "missing".into(),
    })?;
    let name = name.unwrap_or(kind_of(new)).to_string();
    let file = UnlockFile {
        format: FORMAT,
        vault_id: vault_id.into(),
        methods: vec![make(vault_id, &name, vk, new)?],
    };
    save(root, &file)?;
    Ok(Added {
        name,
        replaced_none: old.methods.iter().map(|m| m.name().to_string()).collect(),
    })
}

/// Whether the vault has the method `none` (its key in clear).
pub fn has_clear_key(root: &Path, vault_id: &str) -> Result<bool, UnlockError> {
    Ok(load(root, vault_id)?
        .is_some_and(|f| f.methods.iter().any(|m| matches!(m, Method::None { .. }))))
}

/// Removes the method `name`; the last one is refused.
pub fn remove(root: &Path, vault_id: &str, name: &str) -> Result<(), UnlockError> {
    let mut file = load(root, vault_id)?.ok_or_else(|| UnlockError::NoSuchMethod {
        vault: root.into(),
        name: name.into(),
    })?;
    if !file.methods.iter().any(|m| m.name() == name) {
        return Err(UnlockError::NoSuchMethod {
            vault: root.into(),
            name: name.into(),
        });
    }
    if file.methods.len() == 1 {
        return Err(UnlockError::LastMethod {
            vault: root.into(),
            name: name.into(),
        });
    }
    file.methods.retain(|m| m.name() != name);
    save(root, &file)
}

/// The vault's unlock methods (empty for a vault that has none yet).
pub fn list(root: &Path, vault_id: &str) -> Result<Vec<MethodInfo>, UnlockError> {
    Ok(load(root, vault_id)?
        .map(|f| {
            f.methods
                .iter()
                .map(|m| match m {
                    Method::Passphrase { name, params, .. } => MethodInfo {
                        name: name.clone(),
                        kind: "passphrase".into(),
                        detail: format!(
                            "Argon2id, {} MiB, {} iterations, {} lane(s)",
                            params.memory_kib / 1024,
                            params.iterations,
                            params.lanes
                        ),
                    },
                    Method::KeyFile { name, path, .. } => MethodInfo {
                        name: name.clone(),
                        kind: "key-file".into(),
                        detail: path.display().to_string(),
                    },
                    Method::Holders {
                        name,
                        threshold,
                        holders,
                        ..
                    } => MethodInfo {
                        name: name.clone(),
                        kind: "holders".into(),
                        detail: format!(
                            "any {threshold} of {}: {}",
                            holders.len(),
                            holders
                                .iter()
                                .map(|h| format!("{} at {}", h.name, h.addr))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    Method::None { name, .. } => MethodInfo {
                        name: name.clone(),
                        kind: "none".into(),
                        detail: "the vault key is stored in clear in unlock.toml (for tests only)"
                            .into(),
                    },
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Each key holder of the vault: its method, name, and whether it
/// answers with a share for this vault (asked all at once; releases
/// nothing).
pub fn holder_health(root: &Path, vault_id: &str) -> Result<Vec<HolderHealth>, UnlockError> {
    let Some(file) = load(root, vault_id)? else {
        return Ok(Vec::new());
    };
    let refs: Vec<(String, holders::HolderRef)> = file
        .methods
        .iter()
        .filter_map(|m| match m {
            Method::Holders { name, holders, .. } => Some((name.clone(), holders.clone())),
            _ => None,
        })
        .flat_map(|(m, hs)| hs.into_iter().map(move |h| (m.clone(), h)))
        .collect();
    Ok(std::thread::scope(|s| {
        let jobs: Vec<_> = refs
            .iter()
            .map(|(m, h)| (m, h, s.spawn(move || holders::ping(h, vault_id))))
            .collect();
        jobs.into_iter()
            .map(|(m, h, j)| HolderHealth {
                method: m.clone(),
                name: h.name.clone(),
                addr: h.addr.clone(),
                problem: match j.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the check failed".into()),
                },
            })
            .collect()
    }))
}

/// One key holder as `qsfs status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderHealth {
    /// The unlock method it belongs to.
    pub method: String,
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: String,
    /// Why it did not answer with a share (`None`: it did).
    pub problem: Option<String>,
}

/// The default place of a new vault's key file:
/// `$XDG_CONFIG_HOME/qsfs/<vault id>.key`, else `~/.config/qsfs/...`.
pub fn default_key_file(vault_id: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("qsfs").join(format!("{vault_id}.key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Params {
        Argon2Params {
            memory_kib: 256,
            iterations: 1,
            lanes: 1,
        }
    }

    fn with_pass(p: &str) -> Unlock {
        Unlock::With(UnlockInput {
            passphrase: Some(Zeroizing::new(p.into())),
            ..Default::default()
        })
    }

    #[test]
    fn each_method_unwraps_the_same_key_and_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let vk = VaultKey::generate().unwrap();
        create(
            root,
            "v1",
            &vk,
            &NewMethod::Passphrase(Zeroizing::new("right".into()), fast()),
        )
        .unwrap();
        let k = open(root, "v1", &with_pass("right")).unwrap().unwrap();
        assert_eq!(k.bytes(), vk.bytes());
        let e = open(root, "v1", &with_pass("wrong")).unwrap_err();
        assert!(
            matches!(&e, UnlockError::Locked { tried, .. } if tried == &[("passphrase".to_string(), MethodFailure::WrongPassphrase)]),
            "{e}"
        );
        let e = open(root, "v1", &Unlock::default()).unwrap_err();
        assert!(e.to_string().contains("QSFS_PASSPHRASE_FILE"), "{e}");
        // Another vault's id: refused by name.
        assert!(matches!(
            open(root, "v2", &with_pass("right")),
            Err(UnlockError::File { .. })
        ));

        let kf = root.join("drive/vault.key");
        let added = add(root, "v1", &vk, &NewMethod::KeyFile(kf.clone()), None).unwrap();
        assert_eq!(added.name, "key-file");
        let k = open(root, "v1", &Unlock::default()).unwrap().unwrap();
        assert_eq!(k.bytes(), vk.bytes());
        // The drive away: the error names the path, the passphrase still works.
        std::fs::rename(root.join("drive"), root.join("away")).unwrap();
        let e = open(root, "v1", &Unlock::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&kf.display().to_string()) && e.contains("missing"),
            "{e}"
        );
        assert!(open(root, "v1", &with_pass("right")).unwrap().is_some());
        // A copy given on the command line works.
        let given = Unlock::With(UnlockInput {
            key_file: Some(root.join("away/vault.key")),
            ..Default::default()
        });
        assert_eq!(
            open(root, "v1", &given).unwrap().unwrap().bytes(),
            vk.bytes()
        );
        // Another file at the path is named as the wrong one.
        std::fs::create_dir_all(root.join("drive")).unwrap();
        std::fs::write(&kf, b"not the key file of this vault").unwrap();
        let e = open(root, "v1", &Unlock::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not this vault's key file"), "{e}");

        assert_eq!(list(root, "v1").unwrap().len(), 2);
        remove(root, "v1", "passphrase").unwrap();
        assert!(matches!(
            remove(root, "v1", "key-file"),
            Err(UnlockError::LastMethod { .. })
        ));
        assert!(matches!(
            remove(root, "v1", "nope"),
            Err(UnlockError::NoSuchMethod { .. })
        ));
    }

    #[test]
    fn no_file_means_an_unsealed_vault_and_none_is_replaced_by_a_real_method() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(dir.path(), "v", &Unlock::default()).unwrap().is_none());
        let vk = VaultKey::generate().unwrap();
        create(dir.path(), "v", &vk, &NewMethod::None).unwrap();
        assert!(has_clear_key(dir.path(), "v").unwrap());
        assert_eq!(
            open(dir.path(), "v", &Unlock::default())
                .unwrap()
                .unwrap()
                .bytes(),
            vk.bytes()
        );
        let vk2 = VaultKey::generate().unwrap();
        let a = add(
            dir.path(),
            "v",
            &vk2,
            &NewMethod::Passphrase(Zeroizing::new("p".into()), fast()),
            None,
        )
        .unwrap();
        assert_eq!(a.replaced_none, vec!["none".to_string()]);
        assert!(!has_clear_key(dir.path(), "v").unwrap());
        let text = std::fs::read_to_string(dir.path().join(UNLOCK_FILE)).unwrap();
        assert!(!text.contains(&hex::encode(vk.bytes())));
        assert!(!text.contains(&hex::encode(vk2.bytes())));
    }
}
