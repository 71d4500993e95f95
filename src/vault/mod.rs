//! A vault: one folder of configuration and stores, plus its nodes.
//!
//! ```text
//! VAULT/qsfs.toml        settings (see config.rs)
//! VAULT/.lock            one qsfs process at a time
//! VAULT/keys/            keystore: R1 (and R2 unless [keystore] r2_path moves it)
//! VAULT/meta/ns/         namespace: inodes, directory entries, gc queue
//! VAULT/meta/ec/         erasure-coding side: manifests and backup records B
//! VAULT/nodes/node-0..4/ directory nodes of the default vault
//! VAULT/staging/         0700; plaintext waiting to be sealed (stdin spools)
//! ```
//! [`Vault`] runs the write path in the durability order of ARCHITECTURE.md:
//! shards durable -> keystore -> manifest and `B` -> namespace -> old
//! objects destroyed. A crash anywhere leaves the old or the new version
//! plus garbage, never a name pointing at a broken object.

mod config;
mod files;
mod gc;
mod init;
mod keys;
mod lock;
mod read;
mod seal;
mod status;
mod sweep;

pub use config::{CONFIG_FORMAT, Config, DEFAULT_MAX_CHUNK, KeystoreConfig, NodeConfig};
pub use files::{ListEntry, PutSource};
pub use init::{InitOptions, init};
pub use keys::{KeyIssue, KeyReport, ObjectKeyState};
pub use read::ReadOutcome;
pub use seal::SealedObject;
pub use status::{NodeStatus, Status};
pub use sweep::SweepReport;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::ObjectId;
use crate::dispersal::{Dispersal, DispersalConfig, DispersalError, EcStore};
use crate::entropy::{EntropyError, EntropySource};
use crate::envelope::EnvelopeError;
use crate::keystore::{Keystore, KeystoreError};
use crate::namespace::{Namespace, NamespaceError};
use crate::node::{DirNode, Node};
use crate::store::StoreError;

/// Vault-level failures. Each names the vault path, file or object.
#[derive(Debug, Error)]
pub enum VaultError {
    /// No folder at the vault path.
    #[error("no vault at {0}: create one with `qsfs init {0}`")]
    NoVault(PathBuf),
    /// A folder without `qsfs.toml`.
    #[error("{0} is not a qsfs vault (it has no qsfs.toml)")]
    NotAVault(PathBuf),
    /// `qsfs init` on a folder in use.
    #[error("{0} already exists and is not empty; choose a new folder for the vault")]
    Exists(PathBuf),
    /// A bad `qsfs.toml`.
    #[error("{file}: {detail}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// Another process holds the vault.
    #[error("vault {path} is in use by another qsfs process ({holder}); wait for it or stop it")]
    Busy {
        /// The vault.
        path: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// A local file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The namespace refused an operation.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The erasure-coding side failed.
    #[error(transparent)]
    Dispersal(#[from] DispersalError),
    /// The random source failed.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// Sealing a file failed; nothing was changed.
    #[error("cannot store {path}: {detail}; the vault was not changed")]
    Seal {
        /// Vault path being written.
        path: String,
        /// Why.
        detail: String,
    },
    /// A file could not be read back.
    #[error("cannot read {path} (object {object}): {detail}")]
    Read {
        /// Vault path.
        path: String,
        /// Object that failed.
        object: ObjectId,
        /// Why.
        detail: String,
    },
    /// A group commit failed after its shards were written; they were removed.
    #[error("{0}")]
    Commit(String),
    /// Key material problem outside a read.
    #[error("object {object}: {source}")]
    Envelope {
        /// The object.
        object: ObjectId,
        /// Envelope error.
        source: EnvelopeError,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How to open a vault.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for another qsfs process to release the vault.
    pub wait: Duration,
    /// Create a separate R2 store that is missing (`qsfs keys repair`
    /// rebuilding a lost R2 drive); otherwise a missing one is "away".
    pub create_r2: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { wait: Duration::from_secs(30), create_r2: false }
    }
}

/// An open vault (holds the vault lock).
pub struct Vault {
    root: PathBuf,
    config: Config,
    ns: Namespace,
    keys: Keystore,
    ec: Dispersal,
    random: Box<dyn EntropySource>,
    threads: usize,
    _lock: lock::VaultLock,
}

impl Drop for Vault {
    /// A clean close: the next open need not sweep.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.root.join(".dirty"));
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("root", &self.root).finish()
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VaultError {
    let what = what.into();
    move |source| VaultError::Io { what, source }
}

impl Vault {
    /// Opens the vault at `root`.
    pub fn open(root: &Path, opts: &OpenOptions) -> Result<Vault, VaultError> {
        let config = Config::load(root)?;
        let root = root.canonicalize().map_err(io_err(format!("resolve {}", root.display())))?;
        let lock = lock::VaultLock::acquire(&root, opts.wait)?;
        let r2 = config.keystore.r2_path.as_ref().map(|p| root.join(p));
        let keys = Keystore::open(&root.join("keys"), r2.as_deref(), opts.create_r2)?;
        let ns = Namespace::open(&root.join("meta/ns"), current_uid(), current_gid())?;
        let store = EcStore::open(&root.join("meta/ec"))?;
        let nodes = build_nodes(&root, &config);
        let ec = Dispersal::new(
            DispersalConfig {
                k: config.k,
                n: config.n,
                write_quorum: config.quorum(),
                max_chunk: config.max_chunk,
            },
            nodes,
            store,
        )?;
        let random = crate::entropy::open_source(&config.random, &root)?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let vault = Vault { root, config, ns, keys, ec, random, threads, _lock: lock };
        vault.clean_staging();
        // Finish deletions a crash interrupted, then sweep its leftovers.
        vault.collect_garbage()?;
        vault.recover_if_interrupted()?;
        Ok(vault)
    }

    /// The vault folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The keystore.
    pub fn keystore(&self) -> &Keystore {
        &self.keys
    }

    /// The erasure-coding side.
    pub fn dispersal(&self) -> &Dispersal {
        &self.ec
    }

    /// The random source.
    pub fn random(&self) -> &dyn EntropySource {
        self.random.as_ref()
    }

    /// The staging folder (0700).
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Removes stdin spools left by an interrupted `put -`.
    fn clean_staging(&self) {
        if let Ok(entries) = std::fs::read_dir(self.staging()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("spool-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The node objects of a config.
fn build_nodes(root: &Path, config: &Config) -> Vec<Arc<dyn Node>> {
    config
        .nodes
        .iter()
        .filter_map(|n| match n.kind.as_str() {
            "dir" => config
                .node_path(root, n)
                .map(|p| Arc::new(DirNode::new(&n.name, &p, &config.vault_id)) as Arc<dyn Node>),
            _ => None,
        })
        .collect()
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

fn current_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.gid()).unwrap_or(0)
}
