//! A vault: one folder of configuration and stores, plus its nodes.
//!
//! ```text
//! VAULT/qsfs.toml        settings (see config.rs)
//! VAULT/unlock.toml      the vault key, wrapped once per unlock method (unlock/)
//! VAULT/.lock            one qsfs process at a time
//! VAULT/keys/            keystore: R1 (and R2 unless [keystore] r2_path moves it)
//! VAULT/meta/epochs.0|1  epoch keys, sealed under the vault key (keystore/epochs.rs)
//! VAULT/meta/ns/         namespace: inodes, directory entries, gc queue
//! VAULT/meta/ec/         erasure-coding side: manifests and backup records B
//! VAULT/meta/intents     objects being written and not yet named (intents.rs)
//! VAULT/nodes/node-0..4/ directory nodes of the default vault
//! VAULT/staging/         0700; plaintext waiting to be sealed (stdin spools)
//! ```
//! [`Vault`] runs the write path in the durability order of ARCHITECTURE.md:
//! shards durable -> keystore -> manifest and `B` -> namespace -> old
//! objects destroyed. A crash anywhere leaves the old or the new version
//! plus garbage, never a name pointing at a broken object.

mod commit;
pub(crate) mod config;
mod files;
mod gc;
mod init;
pub(crate) mod intents;
pub(crate) mod links;
mod lock;
mod metabackup;
mod read;
mod records;
mod recover;
mod seal;
mod shred;
mod sweep;
mod unlocking;

pub use commit::{Fate, ItemOutcome, Namer, Publication, PublishError, Published, Shards, Timing};
pub use config::{
    BackupPlace, CONFIG_FORMAT, Config, DEFAULT_MAX_CHUNK, KeystoreConfig, KmeConfig, LinksConfig,
    NodeConfig,
};
pub(crate) use files::whole_extents;
pub use files::{Linker, ListEntry, LocalSource, PutSource, Received, Spool, write_local};
pub use init::{InitOptions, init};
pub use links::{INITIAL_KEYS as INITIAL_LINK_KEYS, LinkKind, LinkStatus};
pub use metabackup::{MetaBackup, MetaWrite};
pub use read::ReadOutcome;
pub use records::KeyDump;
pub(crate) use records::StoredBackup;
pub use recover::{RecoverNode, RecoverOptions, Recovered, recover};
pub use seal::SealedObject;
pub use shred::ShredReport;
pub use sweep::SweepReport;
pub use unlocking::AddedUnlock;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::ObjectId;
use crate::dispersal::{Dispersal, DispersalConfig, DispersalError, EcStore};
use crate::entropy::{EntropyError, EntropySource};
use crate::envelope::EnvelopeError;
use crate::keystore::{Keystore, KeystoreError};
use crate::namespace::{Namespace, NamespaceError};
use crate::node::DirNode;
use crate::store::{OpenMode, StoreError};

/// Vault-level failures. Each names the vault path, file or object.
#[derive(Debug, Error)]
pub enum VaultError {
    /// No folder at the vault path.
    #[error("no vault at {0}: create one with `qsfs init {0}`")]
    NoVault(PathBuf),
    /// The vault path is on a FUSE mount whose process has ended.
    #[error("{}", .mount.explain(.path))]
    DeadMount {
        /// The path given.
        path: PathBuf,
        /// The dead mount.
        mount: crate::sys::DeadMount,
    },
    /// The vault is still listed as mounted, but the process that served
    /// the mount has ended (killed or crashed): its staged writes are
    /// sealed only by the next mount, so commands must not work on the
    /// vault behind its back, and the dead mount must be cleared first.
    #[error(
        "vault {} is still mounted at {}, but the qsfs process serving that mount has ended (killed or crashed); clear the dead mount with `qsfs umount {}` (or `fusermount3 -u {}`), then mount again with `qsfs mount {} {}`, which also seals what the dead process had staged",
        .vault.display(), .mountpoint.display(), .mountpoint.display(), .mountpoint.display(), .vault.display(), .mountpoint.display()
    )]
    MountDied {
        /// The vault.
        vault: PathBuf,
        /// Where its dead mount is.
        mountpoint: PathBuf,
    },
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
    /// A key store (or the vault folder) other users can reach.
    #[error(transparent)]
    Exposed(#[from] crate::perms::PermsError),
    /// The namespace refused an operation.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The vault could not be unlocked, or its unlock methods changed.
    #[error(transparent)]
    Unlock(#[from] crate::unlock::UnlockError),
    /// The erasure-coding side failed.
    #[error(transparent)]
    Dispersal(#[from] DispersalError),
    /// The random source failed.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// Sealing a file failed; nothing was changed.
    #[error("cannot store {path}: {source}; the vault was not changed")]
    Seal {
        /// Vault path being written.
        path: String,
        /// Why, typed: the FUSE side turns a full node into ENOSPC from it.
        source: Box<VaultError>,
    },
    /// The names of a group could not be made durable after its objects
    /// were committed.
    #[error(
        "the namespace could not be made durable ({0}); after a restart the path shows either version"
    )]
    NotDurable(#[source] Arc<NamespaceError>),
    /// Storing data read from standard input failed; it cannot be read
    /// again, so the spooled copy was kept.
    #[error("{source}; the data read from standard input is kept in {} (in clear: store it with `qsfs put VAULT {} PATH`, then remove it with `shred -u`)", kept.display(), kept.display())]
    SpoolKept {
        /// Why storing failed.
        source: Box<VaultError>,
        /// Where the data is.
        kept: PathBuf,
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
    /// A group commit failed after its shards were written; they were
    /// removed. Shared: one failed step fails every object of the group.
    #[error("{0}")]
    Commit(#[source] Arc<VaultError>),
    /// Key material problem outside a read.
    #[error("object {object}: {source}")]
    Envelope {
        /// The object.
        object: ObjectId,
        /// Envelope error.
        source: EnvelopeError,
    },
    /// `B` of an object is on the nodes as key pieces and could not be
    /// had, or cannot be rewritten from the client.
    #[error(transparent)]
    Pieces(#[from] crate::dispersal::PiecesError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How to open a vault.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long to wait for another qsfs process to release the vault.
    pub wait: Duration,
    /// Build a new, empty R2 store where the configured one is missing
    /// (`qsfs keys repair --rebuild-r2`, after the R2 drive was lost for
    /// good); otherwise a missing R2 store is "away" and never created.
    pub rebuild_r2: bool,
    /// What to unlock the vault key with.
    pub unlock: crate::unlock::Unlock,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            wait: Duration::from_secs(30),
            rebuild_r2: false,
            unlock: Default::default(),
        }
    }
}

/// An open vault (holds the vault lock).
pub struct Vault {
    root: PathBuf,
    config: Config,
    /// The unwrapped vault key (`None`: a vault made before the sealed
    /// keystore, not yet sealed).
    key: Mutex<Option<crate::unlock::VaultKey>>,
    ns: Namespace,
    keys: Keystore,
    ec: Dispersal,
    /// Link threads and in-process node servers; dropped after `ec`, whose
    /// nodes talk to them.
    links: links::Links,
    /// Opened on the first seal: reads must work while a pool file or a
    /// random device is away, and must not wait for a stalled device.
    random: Mutex<Option<Arc<dyn EntropySource>>>,
    intents: intents::Intents,
    threads: usize,
    /// Warnings that repeat per read or per write (a node's shards gone),
    /// logged once and then summarised per node and cause.
    warnings: crate::logsum::Warnings,
    /// Told which objects were destroyed, so caches of their keys and
    /// plaintext (the mount's reader) drop them at once.
    on_destroy: Mutex<Vec<DestroyHook>>,
    /// One shred pass at a time.
    shredding: Mutex<()>,
    /// Where the metadata journal stands (metabackup.rs).
    journal: Mutex<metabackup::JournalState>,
    /// Held (shared) by deletions, and alone by a metadata backup while it
    /// reads the stores: no name it dumps loses its keys meanwhile.
    deleting: std::sync::RwLock<()>,
    _lock: lock::VaultLock,
}

/// A listener for destroyed objects (see [`Vault::on_destroy`]).
pub(crate) type DestroyHook = Box<dyn Fn(&[ObjectId]) + Send + Sync>;

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("root", &self.root).finish()
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VaultError {
    let what = what.into();
    move |source| VaultError::Io { what, source }
}

/// Refuses a vault whose key-bearing folders group or others can reach:
/// the vault folder, `keys` (R1), the separate R2 store, `meta/ec` (B) and
/// `links` (key pools). The folders' modes are what guard the files in
/// them (sled makes files with the umask; they are tightened on open).
fn check_key_stores(root: &Path, r2: Option<&Path>) -> Result<(), crate::perms::PermsError> {
    let mut paths = vec![
        root.to_path_buf(),
        root.join("keys"),
        root.join("meta/ec"),
        root.join("links"),
    ];
    // An R2 folder without a store (an empty mount point of an unplugged
    // drive) exposes nothing; it is reported as missing by the keystore,
    // and a store rebuilt there is made 0700.
    paths.extend(
        r2.filter(|p| p.join("conf").exists())
            .map(Path::to_path_buf),
    );
    paths
        .iter()
        .try_for_each(|p| crate::perms::check_private(p))
}

impl Vault {
    /// Opens the vault at `root`. Every store must exist and belong to
    /// this vault (only `qsfs init` creates stores).
    pub fn open(root: &Path, opts: &OpenOptions) -> Result<Vault, VaultError> {
        let config = Config::load(root)?;
        let root = root
            .canonicalize()
            .map_err(io_err(format!("resolve {}", root.display())))?;
        let lock = lock::VaultLock::acquire(&root, opts.wait)?;
        let id = config.vault_id.as_str();
        let r2 = config.keystore.r2_path.as_ref().map(|p| root.join(p));
        // A rebuild of the key stores a crash interrupted is finished first.
        for p in [root.join("keys"), root.join("meta/ec")]
            .iter()
            .chain(r2.as_ref())
        {
            crate::store::finish_rebuild(p);
        }
        check_key_stores(&root, r2.as_deref())?;
        let key = crate::unlock::open(&root, id, &opts.unlock)?;
        let epochs = key
            .as_ref()
            .map(|k| crate::keystore::Epochs::open(&root.join("meta"), id, k).map(Arc::new))
            .transpose()?;
        let r2_mode = if opts.rebuild_r2 {
            OpenMode::Create
        } else {
            OpenMode::Existing
        };
        let keys = Keystore::open(
            &root.join("keys"),
            r2.as_deref(),
            id,
            OpenMode::Existing,
            r2_mode,
            epochs,
        )?;
        let ns = Namespace::open(
            &root.join("meta/ns"),
            id,
            OpenMode::Existing,
            current_uid(),
            current_gid(),
        )?;
        let store = EcStore::open(&root.join("meta/ec"), id, OpenMode::Existing)?;
        let seal = links::seal_for(&root, id, key.as_ref());
        if let Some(s) = &seal {
            links::seal_pools(&root, &config, s);
        }
        let (nodes, links) = links::build(&root, &config, seal.as_ref());
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
        for node in config.nodes.iter().filter(|n| n.draining) {
            ec.set_draining(&node.name, true);
        }
        let log = root.join("meta/intents");
        let (intents, in_flight) = intents::Intents::open(&log)
            .map_err(io_err(format!("open the intent log {}", log.display())))?;
        let threads = std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(2);
        let vault = Vault {
            root,
            config,
            key: Mutex::new(key),
            ns,
            keys,
            ec,
            links,
            random: Mutex::new(None),
            intents,
            threads,
            warnings: Default::default(),
            on_destroy: Mutex::new(Vec::new()),
            shredding: Mutex::new(()),
            journal: Mutex::new(Default::default()),
            deleting: std::sync::RwLock::new(()),
            _lock: lock,
        };
        vault.clean_staging();
        // Finish what an interrupted run left: deletions first, then the
        // objects it was writing. Neither may keep the vault from opening.
        if let Err(e) = vault.collect_garbage() {
            tracing::warn!(
                "could not finish pending deletions yet ({e}); the next qsfs command retries"
            );
        }
        if !in_flight.is_empty() {
            match vault.sweep(&in_flight) {
                Ok(r) if !r.is_empty() => {
                    tracing::info!(?r, "cleaned up after an interrupted qsfs run");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    "could not clean up after an interrupted run yet ({e}); the next qsfs command retries"
                ),
            }
        }
        Ok(vault)
    }

    /// The random source, opened on first use.
    pub fn random(&self) -> Result<Arc<dyn EntropySource>, VaultError> {
        let mut slot = self
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = slot.as_ref() {
            return Ok(Arc::clone(r));
        }
        let r: Arc<dyn EntropySource> = Arc::from(crate::entropy::open_source(
            &self.config.random,
            &self.root,
            Some(&self.root),
        )?);
        *slot = Some(Arc::clone(&r));
        Ok(r)
    }

    /// Destroys objects whatever state they are in: both key shares, the
    /// backup record, every shard (found by id on every node if the
    /// manifest is gone or damaged) and the manifest. Idempotent.
    pub(crate) fn destroy_objects(&self, ids: &[ObjectId]) -> Result<(), VaultError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _deleting = self
            .deleting
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Held in flight while they go: a scrub or fsck running beside
        // (through the mount's control socket) would otherwise see shards
        // vanish under manifests that are removed last, and report damage.
        let _held: Vec<_> = ids
            .iter()
            .map(|id| self.intents.hold(*id))
            .collect::<std::io::Result<_>>()
            .map_err(|source| VaultError::Io {
                what: "hold the objects being destroyed".into(),
                source,
            })?;
        // The backup records' epochs are counted with the shares' as
        // waiting to be shredded.
        let store = self.ec.store();
        let b_epoch = |id: &ObjectId| {
            store
                .backup(id)
                .ok()
                .flatten()
                .filter(|b| b.first() != Some(&crate::dispersal::DISPERSED_BACKUP))
                .map(|b| crate::keystore::epoch_of_stored(&b))
        };
        let r2_left = self.keys.destroy_counting(ids, &b_epoch)?;
        if !r2_left.is_empty() {
            self.ns.queue_r2_cleanup(&r2_left)?;
        }
        // Caches are told once the shares are gone: whatever a reader
        // recovered before then is dropped, and nothing can be recovered
        // after.
        self.tell_destroyed(ids);
        for e in self.ec.destroy_many(ids)? {
            tracing::warn!("{e}; the shard stays on its node as an orphan until a later cleanup");
        }
        Ok(())
    }

    /// Calls `hook` with the ids of every batch of objects destroyed from
    /// now on (deleted or replaced files' old versions).
    pub(crate) fn on_destroy(&self, hook: DestroyHook) {
        self.on_destroy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    fn tell_destroyed(&self, ids: &[ObjectId]) {
        for hook in self
            .on_destroy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            hook(ids);
        }
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

    /// The log of objects being written and not yet named, for the
    /// maintenance runs that must not mistake them for garbage.
    pub(crate) fn intents(&self) -> &intents::Intents {
        &self.intents
    }

    /// Folder of the directory node `name`, if there is one.
    pub fn node_folder(&self, name: &str) -> Option<PathBuf> {
        let node = self
            .config
            .nodes
            .iter()
            .find(|n| n.name == name && n.kind == "dir")?;
        self.config.node_path(&self.root, node)
    }

    /// Takes the empty folder of node `name` into use (`qsfs node adopt`).
    pub fn adopt_node(&self, name: &str) -> Result<(), VaultError> {
        let path = self.node_folder(name).ok_or_else(|| VaultError::Config {
            file: self.root.join("qsfs.toml"),
            detail: format!("no directory node named {name:?}"),
        })?;
        let dir = DirNode::new(name, &path, &self.config.vault_id);
        dir.adopt_empty()
            .and_then(|()| {
                if self.config.packs {
                    dir.enable_packs()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| VaultError::Config {
                file: self.root.join("qsfs.toml"),
                detail: e.to_string(),
            })
    }

    /// Each node's link: kind, key source, keys left and used.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links.status()
    }

    /// The staging folder (0700).
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Overwrites and removes the plaintext an interrupted process left:
    /// stdin spools of `put -`, and staging files it had moved aside to
    /// overwrite (src/wipe.rs).
    fn clean_staging(&self) {
        if let Ok(entries) = std::fs::read_dir(self.staging()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("spool-")
                    && let Err(err) = crate::wipe::wipe_and_remove(&e.path(), None)
                {
                    tracing::warn!(
                        "cannot overwrite the spool {} before removing it ({err}); it stays",
                        e.path().display()
                    );
                }
            }
        }
        crate::wipe::wipe_leftovers(&self.staging().join("wipe"));
    }
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn current_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.gid())
        .unwrap_or(0)
}

/// A vault at `root` on direct node folders with no links, opened: the
/// vault the crate's unit tests work on.
#[cfg(test)]
pub(crate) fn direct_test_vault(root: &Path) -> Result<Vault, Box<dyn std::error::Error>> {
    init(
        root,
        &InitOptions {
            direct: true,
            link_keys: 0,
            unlock: Some(crate::unlock::NewMethod::None),
            ..Default::default()
        },
    )?;
    Ok(Vault::open(root, &OpenOptions::default())?)
}
