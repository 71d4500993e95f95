//! The mounted filesystem (FUSE, fuser 0.18) over a vault.
//!
//! It shows the vault's namespace. Writes go to a staging file per inode
//! (`VAULT/staging/<ino>`, in a 0700 folder); closing a dirty file seals
//! its written ranges (only those: sealing cost follows the bytes written)
//! and the group committer makes them durable in groups; fsync waits for
//! that. Reads of sealed content fetch and decrypt only the segments they
//! need. Sparse files store nothing for their holes.
//!
//! Layout: `state` (a file's content while it changes: pure), `files`
//! (the open-file table), `staging` (staging files), `journal` (what a
//! killed process leaves to recover), `seal` (close/fsync), `commit`
//! (group commit thread), `sealer` (background seals and retries),
//! `reader` (random-access reads), `recovery` (mount-time cleanup and
//! resealing), `ops` (the FUSE operations), `live` (the command line's
//! file commands on the mounted vault, through the control socket),
//! `mount` (mounting, options, daemon, unmount).

mod acl;
mod attr;
mod commit;
mod compact;
mod errno;
mod files;
mod fragments;
mod handle;
pub(crate) mod journal;
pub mod live;
pub mod mount;
mod ops;
mod ranges;
mod reader;
mod reaper;
mod recovery;
mod seal;
mod sealer;
pub(crate) mod staging;
mod state;

/// How many files the last mount of the vault whose staging folder is
/// `staging` left staged (their seal had not succeeded at unmount); the
/// next mount seals them.
pub fn staged_left(staging: &std::path::Path) -> usize {
    journal::count_in(&staging.join("journal"))
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use files::OpenFile;
use reader::Reader;
use seal::{Job, SealHow};

use crate::namespace::DirEntry;
use crate::vault::Vault;
pub use handle::VaultHandle;

/// State shared by the FUSE threads and the committer.
pub struct FsCore {
    vault: VaultHandle,
    reader: Reader,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    staging_dir: PathBuf,
    /// Staging journals (`staging/journal/`).
    journal_dir: PathBuf,
    /// Tells the kernel about changes it did not make itself (set once
    /// the FUSE session exists).
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    /// Overwrites removed staging files (`staging/wipe/`) and returns
    /// them to the stock of empty staging files made ahead
    /// (`staging/stock/`).
    wiper: Arc<crate::wipe::Wiper>,
    commit_tx: Mutex<Option<Sender<Job>>>,
    /// Callers waiting for a commit (fsync, unmount): while there are
    /// any, the committer does not wait to gather a bigger group.
    commit_waiters: std::sync::atomic::AtomicUsize,
    /// Files for the background sealer (sealer.rs).
    sealer_tx: Mutex<Option<Sender<Arc<OpenFile>>>>,
    /// Asks the reaper (reaper.rs) for a garbage collection.
    reaper_tx: Mutex<Option<Sender<()>>>,
    flush_wanted: AtomicBool,
    read_only: bool,
}

impl FsCore {
    /// Drops the kernel's cached attributes of `ino` (after qsfs changed
    /// them on its own, e.g. cleared set-id bits on a write).
    pub fn invalidate_attr(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(fuser::INodeNo(ino), -1, 0)
        {
            tracing::debug!(ino, "attribute invalidation failed: {e}");
        }
    }

    /// Tells the kernel that entry `name` of folder `parent` changed
    /// behind its back (a command made or removed it through the control
    /// socket), so that its next lookup asks qsfs instead of answering from
    /// its cache, and that the folder's own attributes changed.
    pub fn invalidate_entry(&self, parent: u64, name: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::from_bytes(name))
        {
            // ENOENT: the kernel has not cached that folder; nothing to drop.
            tracing::debug!(parent, "entry invalidation failed: {e}");
        }
        self.invalidate_attr(parent);
    }

    /// Tells the kernel that `child`, entry `name` of `parent`, was removed
    /// behind its back (also when a process still uses the entry, such as
    /// a shell inside a removed folder).
    pub fn notify_deleted(&self, parent: u64, child: u64, name: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.delete(
                fuser::INodeNo(parent),
                fuser::INodeNo(child),
                std::ffi::OsStr::from_bytes(name),
            )
        {
            tracing::debug!(parent, child, "delete notification failed: {e}");
            self.invalidate_entry(parent, name);
            return;
        }
        self.invalidate_attr(parent);
        self.invalidate_attr(child);
    }

    /// Applies what an unlink or rename (or a `qsfs rm` or `put` through
    /// the control socket) took away: an inode still in use becomes an
    /// orphan destroyed at its last close, a destroyed one loses its
    /// staging file.
    pub fn after_removal(&self, removed: crate::namespace::Removed) {
        if let Some(ino) = removed.orphan {
            match self.file(ino) {
                Some(f) => {
                    f.lock().orphan = true;
                    self.maybe_evict(&f);
                }
                // Its state went idle meanwhile: nobody holds it any more.
                None => match self.vault.namespace().release_orphan(ino) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("ino {ino}: cannot destroy the unlinked file yet: {e}");
                    }
                },
            }
        }
        if let Some(ino) = removed.destroyed {
            // A state kept for compaction has nothing left to compact.
            if let Some(f) = self.file(ino) {
                f.lock().compact_queued = false;
                self.maybe_evict(&f);
            }
            staging::remove_file(&self.staging_dir, ino, &self.wiper);
        }
        // Handed to the OS before the answer (not made durable: that is
        // the tick's job), so a kill -9 of the mount cannot bring back
        // what an unlink, rmdir or rename removed, as close does for a
        // create. It costs a sled flush (about 0.15 ms) per removal.
        if let Err(e) = self.vault.namespace().flush_if_changed() {
            tracing::warn!(
                "cannot hand a removal to the OS yet: {e}; the next metadata flush does"
            );
        }
        self.want_flush();
    }

    /// Backs the metadata up to the nodes' journal before an `fsync(2)`
    /// returns, so a recovery on a new machine is as fresh as the last
    /// acknowledged sync (once backups are started; a no-op otherwise).
    /// A failure does not fail the fsync: the data is durable, and the
    /// mount's backup thread retries within a second.
    pub fn journal_now(&self) {
        match self.vault.journal_metadata() {
            Ok(Some(crate::vault::MetaWrite::Entry { base, seq, bytes })) => {
                tracing::debug!(
                    base,
                    seq,
                    bytes,
                    "metadata journal entry written for an fsync"
                );
            }
            Ok(Some(crate::vault::MetaWrite::Snapshot(b))) => {
                tracing::debug!(
                    generation = b.generation,
                    "metadata snapshot written for an fsync"
                );
            }
            Ok(None) => tracing::debug!("metadata journal: nothing to write for an fsync"),
            Err(e) => tracing::warn!(
                "fsync: the metadata journal could not be written to the nodes ({e}); the backup thread retries"
            ),
        }
    }

    /// Asks the committer to make metadata durable and run deletions soon.
    pub fn want_flush(&self) {
        self.flush_wanted.store(true, Ordering::Relaxed);
    }

    fn take_flush_wanted(&self) -> bool {
        self.flush_wanted.swap(false, Ordering::Relaxed)
    }

    /// Every file with state.
    fn open_files(&self) -> Vec<Arc<OpenFile>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Whether the background sealer still takes files.
    fn sealer_running(&self) -> bool {
        self.sealer_tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Hands a file to the background sealer; while shutting down it stays
    /// as it is (the unmount seals everything).
    fn seal_later(&self, f: &Arc<OpenFile>) {
        if let Some(tx) = self
            .sealer_tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(Arc::clone(f));
        }
    }

    /// Asks the reaper to destroy what is queued for deletion; at once
    /// when it has stopped (shutdown, recovery before it ran).
    fn collect_soon(&self) {
        let tx = self
            .reaper_tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match tx {
            // Full: a collection is asked for already and covers this one.
            Some(tx) => {
                let _ = tx.try_send(());
            }
            None => {
                if let Err(e) = self.vault.collect_garbage() {
                    tracing::warn!("deleted files' objects could not be destroyed yet: {e}");
                }
            }
        }
    }

    /// Hands a job to the committer (the job back if it has stopped).
    fn submit(&self, job: Job) -> Result<(), Job> {
        match self
            .commit_tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

/// One open file handle.
#[derive(Debug, Clone, Copy)]
struct Handle {
    ino: u64,
    write: bool,
    append: bool,
}

/// The filesystem object handed to fuser.
pub struct Qsfs {
    core: Arc<FsCore>,
    handles: Mutex<HashMap<u64, Handle>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    sealer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reaper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Qsfs {
    /// The shared state, for the control socket (weak: it must not keep
    /// the filesystem alive).
    pub fn core_weak(&self) -> std::sync::Weak<FsCore> {
        Arc::downgrade(&self.core)
    }

    /// Where the mount puts the session's notifier once it exists.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        Arc::clone(&self.core.notifier)
    }

    /// A filesystem over `vault`. Before it serves anything it finishes
    /// what a previous mount left: orphans are destroyed and staged data
    /// is sealed (recovery.rs).
    pub fn new(vault: Arc<Vault>, read_only: bool) -> Result<Qsfs, crate::vault::VaultError> {
        let vault = VaultHandle::new(vault);
        let staging_dir = vault.staging();
        let journal_dir = staging_dir.join("journal");
        crate::perms::create_private_dir_all(&journal_dir).map_err(|e| {
            crate::vault::VaultError::Io {
                what: format!(
                    "create the staging journal folder {}",
                    journal_dir.display()
                ),
                source: e,
            }
        })?;
        let stock = Arc::new(crate::stock::Stock::new(
            &staging_dir.join("stock"),
            0o600,
            32,
        ));
        let wipe_dir = staging_dir.join("wipe");
        let wiper = crate::wipe::Wiper::start(&wipe_dir, stock).map_err(|e| {
            crate::vault::VaultError::Io {
                what: format!("start the wiper of staging files in {}", wipe_dir.display()),
                source: e,
            }
        })?;
        let wiper = Arc::new(wiper);
        let (tx, rx) = crossbeam_channel::unbounded();
        let (seal_tx, seal_rx) = crossbeam_channel::unbounded();
        let (reap_tx, reap_rx) = crossbeam_channel::bounded(1);
        let core = Arc::new(FsCore {
            reader: Reader::new(vault.clone()),
            vault,
            files: Mutex::new(HashMap::new()),
            notifier: Arc::new(std::sync::OnceLock::new()),
            wiper,
            staging_dir,
            journal_dir,
            commit_tx: Mutex::new(Some(tx)),
            commit_waiters: std::sync::atomic::AtomicUsize::new(0),
            sealer_tx: Mutex::new(Some(seal_tx)),
            reaper_tx: Mutex::new(Some(reap_tx)),
            flush_wanted: AtomicBool::new(false),
            read_only,
        });
        let committer = start_thread("qsfs-commit", "commit", &core, |c| commit::run(c, rx))?;
        let sealer = start_thread("qsfs-sealer", "sealer", &core, |c| sealer::run(c, seal_rx))?;
        let reaper = start_thread("qsfs-reaper", "reaper", &core, |c| reaper::run(c, reap_rx))?;
        let fs = Qsfs {
            core,
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            committer: Mutex::new(Some(committer)),
            sealer: Mutex::new(Some(sealer)),
            reaper: Mutex::new(Some(reaper)),
        };
        recovery::recover(&fs.core)?;
        Ok(fs)
    }

    /// Seals everything still unsealed, waits for every commit, and stops
    /// the committer: after this, nothing written is only in memory.
    pub fn shutdown(&self) {
        stop_thread(&self.core.sealer_tx, &self.sealer);
        let mut unsealed = Vec::new();
        for f in self.core.open_files() {
            let r = match self.core.seal_file(&f, SealHow::Wait) {
                Ok(Some(ticket)) => self.core.wait_commit(&f, ticket),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                unsealed.push((f.ino, e));
            }
        }
        // The umount command points the user here: name the files.
        if !unsealed.is_empty() {
            let inos: std::collections::HashSet<u64> = unsealed.iter().map(|(i, _)| *i).collect();
            let paths = self
                .core
                .vault
                .namespace()
                .paths_of(&inos)
                .unwrap_or_default();
            for (ino, e) in unsealed {
                let path = paths.get(&ino).map_or("(unlinked)", String::as_str);
                tracing::error!(
                    "{path} (ino {ino}): not sealed at unmount ({e:?}); it stays staged and the next mount seals it"
                );
            }
        }
        self.core.reader.stop();
        stop_thread(&self.core.commit_tx, &self.committer);
        self.core.want_flush();
        commit::tick(&self.core);
        // The reaper collects once more as it stops.
        stop_thread(&self.core.reaper_tx, &self.reaper);
        // Every removed staging file overwritten before the mount ends.
        self.core.wiper.finish();
        // Left only when empty: a clean unmount leaves a clean staging folder.
        let _ = std::fs::remove_dir(&self.core.journal_dir);
        let _ = std::fs::remove_dir(self.core.staging_dir.join("wipe"));
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }
}

/// Starts a worker thread over the shared state.
fn start_thread(
    name: &str,
    role: &str,
    core: &Arc<FsCore>,
    body: impl FnOnce(Arc<FsCore>) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, crate::vault::VaultError> {
    let core = Arc::clone(core);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(core))
        .map_err(|e| crate::vault::VaultError::Io {
            what: format!("start the {role} thread"),
            source: e,
        })
}

/// Closes a worker thread's channel, which ends its loop, and waits for it.
fn stop_thread<T>(
    tx: &Mutex<Option<Sender<T>>>,
    handle: &Mutex<Option<std::thread::JoinHandle<()>>>,
) {
    tx.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(h) = handle
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        let _ = h.join();
    }
}

impl Drop for Qsfs {
    fn drop(&mut self) {
        if self
            .committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
        {
            self.shutdown();
        }
    }
}
