//! Ordered key-value stores (sled today) behind a small interface of ours.
//!
//! Every persistent table of qsfs (namespace, manifests and backup records,
//! keystore) goes through [`Db`], so the engine can change without touching
//! the layers above. sled 0.34's `flush()` only uses `sync_file_range`,
//! which is not a durability barrier, so [`Db::flush_durable`] also fsyncs
//! sled's log and, when files came or went, its folder. sled's periodic
//! flusher is off, but sled still writes a full log buffer whenever it
//! likes, so a record may reach the disk *before* we flush: the durability
//! order of a seal therefore never writes a record until the records it
//! depends on are durable, rather than relying on when sled writes.
//!
//! Each store carries the id of its vault (key `\0vault-id`), so a store
//! folder that was swapped, restored from another vault or recreated empty
//! is refused instead of silently used; and only `qsfs init` creates
//! stores: a missing store is an error, never a fresh empty one.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store could not be opened.
    #[error("cannot open the {role} store at {path}: {source}")]
    Open {
        /// Which store (namespace, manifests, keystore R1, ...).
        role: &'static str,
        /// Its folder.
        path: PathBuf,
        /// Engine error.
        source: sled::Error,
    },
    /// The engine failed an operation.
    #[error("the {role} store at {path} failed to {op}: {source}")]
    Engine {
        /// Which store.
        role: &'static str,
        /// Its folder.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Engine error.
        source: sled::Error,
    },
    /// The store's folder or files could not be made owner-only.
    #[error("cannot make the {role} store at {path} owner-only (0700/0600): {source}")]
    Perms {
        /// Which store.
        role: &'static str,
        /// Its folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store folder is not there (or holds no store).
    #[error(
        "the {role} store at {path} is missing or empty; the vault is damaged or a drive is not mounted (restore the folder, or see `qsfs keys repair --rebuild-r2` for a lost R2 store)"
    )]
    Missing {
        /// Which store.
        role: &'static str,
        /// Its folder.
        path: PathBuf,
    },
    /// The store belongs to another vault.
    #[error("the {role} store at {path} belongs to vault {found}, not to this vault ({expected})")]
    Foreign {
        /// Which store.
        role: &'static str,
        /// Its folder.
        path: PathBuf,
        /// Vault id found in the store.
        found: String,
        /// This vault's id.
        expected: String,
    },
    /// Making the store durable failed.
    #[error("the {role} store at {path} could not be made durable ({file}): {source}")]
    Sync {
        /// Which store.
        role: &'static str,
        /// Its folder.
        path: PathBuf,
        /// The file that failed to sync.
        file: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

const REBUILT_MARK: &str = ".rebuilt";

/// Copies every record of the closed store at `path` into a fresh store
/// and puts that in its place, so nothing the old store's log kept (clear
/// key records of a vault sealed in place) survives in the folder. A
/// crash leaves the old store or the new one, finished by
/// [`finish_rebuild`] at the next open.
pub fn rebuild(path: &Path, role: &'static str) -> Result<(), StoreError> {
    finish_rebuild(path);
    let fresh = sibling(path, "rebuild");
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| StoreError::Sync {
            role,
            path: path.to_path_buf(),
            file,
            source,
        }
    };
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
    }
    {
        let old = Db::open(path, role)?;
        let new = Db::open(&fresh, role)?;
        for r in old.inner.iter() {
            let (k, v) = r.map_err(old.engine("read"))?;
            new.inner.insert(k, v).map_err(new.engine("write"))?;
        }
        new.changes.fetch_add(1, Ordering::AcqRel);
        new.flush_durable()?;
    }
    let mark = fresh.join(REBUILT_MARK);
    std::fs::File::create(&mark)
        .and_then(|f| f.sync_all())
        .map_err(io(&mark))?;
    crate::sys::fsync_dir(&fresh).map_err(io(&fresh))?;
    let old = sibling(path, "old");
    std::fs::rename(path, &old).map_err(io(path))?;
    std::fs::rename(&fresh, path).map_err(io(&fresh))?;
    if let Some(parent) = path.parent() {
        crate::sys::fsync_dir(parent).map_err(io(parent))?;
    }
    finish_rebuild(path);
    Ok(())
}

/// Finishes or undoes a [`rebuild`] a crash interrupted.
pub fn finish_rebuild(path: &Path) {
    let fresh = sibling(path, "rebuild");
    let old = sibling(path, "old");
    if !path.exists() {
        if fresh.join(REBUILT_MARK).exists() {
            let _ = std::fs::rename(&fresh, path);
        } else if old.exists() {
            let _ = std::fs::rename(&old, path);
        }
    }
    if path.exists() {
        let _ = std::fs::remove_file(path.join(REBUILT_MARK));
        if fresh.exists() {
            let _ = std::fs::remove_dir_all(&fresh);
        }
        if old.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
        if let Some(parent) = path.parent() {
            let _ = crate::sys::fsync_dir(parent);
        }
    }
}

/// One opened store: a single ordered table of byte keys and values.
///
/// Record kinds share the table under one-byte key prefixes, so any set of
/// changes can be applied atomically with one [`Batch`].
pub struct Db {
    inner: sled::Db,
    role: &'static str,
    path: PathBuf,
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Names in the store folder at the last durable flush: the folder
    /// itself needs an fsync only when a file appeared or went away.
    known_files: Mutex<Vec<OsString>>,
    /// Changes made, and how many of them a flush has handed to the OS
    /// and made durable: [`Db::flush_if_changed`] and [`Db::flush_durable`]
    /// cost nothing when nothing changed. A change is counted once it is
    /// applied, so a flush that saw the count saw the change.
    changes: AtomicU64,
    flushed: AtomicU64,
    durable: AtomicU64,
    /// While tracked (a mount's metadata journal, vault/metabackup.rs):
    /// the latest value of every key changed since the last
    /// [`Db::take_changes`], `None` for a removed one. Writes hold this
    /// lock while they apply, so the log's order is the store's.
    log: Mutex<Option<ChangeLog>>,
}

/// Changed keys and their latest values (`None`: removed).
pub type ChangeLog = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("role", &self.role)
            .field("path", &self.path)
            .finish()
    }
}

/// A set of inserts and removes applied atomically by [`Db::apply`].
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
    empty: bool,
    /// The same changes, for a tracking store's log.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            inner: sled::Batch::default(),
            empty: true,
            ops: Vec::new(),
        }
    }
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.inner.insert(key.as_ref(), value.as_ref());
        self.ops
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
        self.empty = false;
    }
    /// Removes `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.inner.remove(key.as_ref());
        self.ops.push((key.as_ref().to_vec(), None));
        self.empty = false;
    }
    /// True if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.empty
    }
}

/// Whether opening may create the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// `qsfs init` (or an explicit rebuild): create it if absent.
    Create,
    /// Everything else: it must exist.
    Existing,
}

/// Key of the vault-id record (no record prefix starts with a NUL byte).
const VAULT_ID_KEY: &[u8] = b"\0vault-id";

impl Db {
    /// Opens the store in folder `path`, which must belong to `vault_id`.
    pub fn open_vault_store(
        path: &Path,
        role: &'static str,
        vault_id: &str,
        mode: OpenMode,
    ) -> Result<Db, StoreError> {
        if mode == OpenMode::Existing && !path.join("conf").is_file() {
            return Err(StoreError::Missing {
                role,
                path: path.to_path_buf(),
            });
        }
        let db = Self::open(path, role)?;
        match db.get(VAULT_ID_KEY)? {
            Some(found) if found != vault_id.as_bytes() => Err(StoreError::Foreign {
                role,
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: vault_id.to_string(),
            }),
            Some(_) => Ok(db),
            None => {
                // A new store, or one from before stores were stamped.
                db.insert(VAULT_ID_KEY, vault_id.as_bytes())?;
                db.flush_durable()?;
                Ok(db)
            }
        }
    }

    /// Opens (creating if needed) the store in folder `path`.
    pub fn open(path: &Path, role: &'static str) -> Result<Db, StoreError> {
        remove_unfinished_snapshots(path);
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(32 * 1024 * 1024)
            .flush_every_ms(None);
        // sled releases its file lock from a background thread after the
        // last handle drops, so a reopen in the same process can race it
        // for a moment; another process holding it is reported at once by
        // the vault lock before we ever get here.
        let mut tries = 0;
        let inner = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        role,
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        };
        let db = Db {
            inner,
            role,
            path: path.to_path_buf(),
            synced_blobs: Mutex::new(HashSet::new()),
            known_files: Mutex::new(Vec::new()),
            // One change counted at open: the first durable flush always
            // runs, for whatever an earlier process left with the OS only.
            changes: AtomicU64::new(1),
            log: Mutex::new(None),
            flushed: AtomicU64::new(0),
            durable: AtomicU64::new(0),
        };
        // sled creates its folder and files with the umask; every store
        // is owner-only (the vault checks its key stores' folders before
        // opening them, so this never hides a store others could reach).
        db.make_private()?;
        // A freshly created store must itself survive a crash before anything
        // is recorded in it.
        db.flush_durable()?;
        Ok(db)
    }

    /// Sets 0700/0600 on the store's folder and everything in it.
    fn make_private(&self) -> Result<(), StoreError> {
        crate::perms::make_private_tree(&self.path).map_err(|source| StoreError::Perms {
            role: self.role,
            path: self.path.clone(),
            source,
        })
    }

    /// The folder of this store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn engine(&self, op: &'static str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Engine {
            role: self.role,
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Reads one value.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .get(key)
            .map_err(self.engine("read"))?
            .map(|v| v.to_vec()))
    }

    /// Writes one value (not durable until [`Db::flush_durable`]).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        let mut log = self.log();
        let r = self.inner.insert(key.as_ref(), value.as_ref());
        self.changes.fetch_add(1, Ordering::AcqRel);
        r.map_err(self.engine("write"))?;
        if let Some(log) = log.as_mut() {
            log.insert(key.as_ref().to_vec(), Some(value.as_ref().to_vec()));
        }
        Ok(())
    }

    /// Removes one value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        let mut log = self.log();
        let r = self.inner.remove(key.as_ref());
        self.changes.fetch_add(1, Ordering::AcqRel);
        r.map_err(self.engine("remove"))?;
        if let Some(log) = log.as_mut() {
            log.insert(key.as_ref().to_vec(), None);
        }
        Ok(())
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Option<ChangeLog>> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts (or restarts, empty) the change log: every later change is
    /// returned by [`Db::take_changes`].
    pub fn track_changes(&self) {
        *self.log() = Some(ChangeLog::new());
    }

    /// The changes since tracking started or the last take (empty when
    /// not tracking); the log starts over.
    pub fn take_changes(&self) -> ChangeLog {
        self.log().as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Replaces the value of `key` with `new` only if it is still `old`;
    /// false if it changed meanwhile (or went away).
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let mut log = self.log();
        let r = self
            .inner
            .compare_and_swap(key.as_ref(), Some(old), Some(new));
        self.changes.fetch_add(1, Ordering::AcqRel);
        let swapped = r.map_err(self.engine("compare and swap"))?.is_ok();
        if swapped && let Some(log) = log.as_mut() {
            log.insert(key.as_ref().to_vec(), Some(new.to_vec()));
        }
        Ok(swapped)
    }

    /// Applies a batch atomically.
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.empty {
            return Ok(());
        }
        let mut log = self.log();
        let r = self.inner.apply_batch(batch.inner);
        self.changes.fetch_add(1, Ordering::AcqRel);
        r.map_err(self.engine("apply a batch"))?;
        if let Some(log) = log.as_mut() {
            for (k, v) in batch.ops {
                log.insert(k, v);
            }
        }
        Ok(())
    }

    /// Changes applied since the store was opened (a cheap "did anything
    /// change" for the metadata backup).
    pub fn change_count(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Every record, in key order.
    pub fn iter_all(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner.iter().map(move |r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(self.engine("scan"))
        })
    }

    /// All records whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner.scan_prefix(prefix).map(move |r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(self.engine("scan"))
        })
    }

    /// Records with keys in `[start, end)`, in key order.
    pub fn range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner
            .range(start.to_vec()..end.to_vec())
            .map(move |r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(self.engine("scan"))
            })
    }

    /// Hands every change so far to the OS (sled's flush: written and
    /// `sync_file_range`d): it survives the process being killed, but is
    /// not a durability barrier against power loss.
    pub fn flush(&self) -> Result<(), StoreError> {
        let upto = self.changes.load(Ordering::Acquire);
        self.inner.flush().map_err(self.engine("flush"))?;
        self.flushed.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// [`Db::flush`], only when something changed since the last flush.
    pub fn flush_if_changed(&self) -> Result<(), StoreError> {
        if self.flushed.load(Ordering::Acquire) < self.changes.load(Ordering::Acquire) {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes every change so far durable: sled's flush, then an fsync of its
    /// log, blob files and folders (sled's flush alone is not a barrier).
    pub fn flush_durable(&self) -> Result<(), StoreError> {
        let upto = self.changes.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        self.flush()?;
        let sync_err = |file: &Path| {
            let file = file.to_path_buf();
            move |source| StoreError::Sync {
                role: self.role,
                path: self.path.clone(),
                file,
                source,
            }
        };
        // The log is where sled's flush writes. `conf` is written once when
        // the store is created and is covered by the first flush's folder
        // sync below; snapshots are fsynced by sled itself.
        let log = self.path.join("db");
        std::fs::File::open(&log)
            .and_then(|f| f.sync_data())
            .map_err(sync_err(&log))?;
        let blobs = self.path.join("blobs");
        if blobs.is_dir() {
            let mut synced = self
                .synced_blobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entries = std::fs::read_dir(&blobs).map_err(sync_err(&blobs))?;
            let mut any_new = false;
            for entry in entries {
                let entry = entry.map_err(sync_err(&blobs))?;
                let name = entry.file_name();
                if synced.contains(&name) {
                    continue;
                }
                let p = entry.path();
                match std::fs::File::open(&p) {
                    Ok(f) => f.sync_all().map_err(sync_err(&p))?,
                    // sled removes blobs it no longer needs; a vanished one
                    // needs no sync.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(sync_err(&p)(e)),
                }
                synced.insert(name);
                any_new = true;
            }
            if any_new {
                crate::sys::fsync_dir(&blobs).map_err(sync_err(&blobs))?;
            }
        }
        let mut names: Vec<OsString> = std::fs::read_dir(&self.path)
            .map_err(sync_err(&self.path))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        let mut known = self
            .known_files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *known != names {
            // Files sled made since (snapshots, blobs) get the umask's mode.
            self.make_private()?;
            for name in ["conf", "db"] {
                let p = self.path.join(name);
                if p.exists() {
                    std::fs::File::open(&p)
                        .and_then(|f| f.sync_all())
                        .map_err(sync_err(&p))?;
                }
            }
            crate::sys::fsync_dir(&self.path).map_err(sync_err(&self.path))?;
            *known = names;
        }
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, fsyncs it and
/// renames it to `snap.<lsn>`, but on open it reads the newest `snap.*`
/// file *including* a `.generating` one. A process killed while writing a
/// snapshot (sled writes one on every open) thus left a store that never
/// opens again ("empty/corrupt snapshot file found", then "Read corrupted
/// data"; sled issues #1387 and #1527). A `.generating` file never
/// completed: the previous snapshot is only removed after the rename, and
/// the log is intact, so the unfinished file is deleted before opening.
/// Only the vault lock holder opens a store, so no other process can be
/// writing that file right now.
fn remove_unfinished_snapshots(path: &Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.")
            && name.ends_with(".generating")
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(
                "cannot remove the unfinished store snapshot {}: {e}",
                entry.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_log_holds_the_latest_value_of_each_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db"), "test").unwrap();
        db.insert(b"before", b"x").unwrap();
        assert!(db.take_changes().is_empty(), "not tracking");
        db.track_changes();
        db.insert(b"a", b"1").unwrap();
        db.insert(b"a", b"2").unwrap();
        db.remove(b"before").unwrap();
        let mut batch = Batch::new();
        batch.insert(b"b", b"3");
        batch.remove(b"a");
        db.apply(batch).unwrap();
        assert!(db.compare_and_swap(b"b", b"3", b"4").unwrap());
        assert!(!db.compare_and_swap(b"b", b"3", b"5").unwrap());
        let log = db.take_changes();
        let want: ChangeLog = [
            (b"a".to_vec(), None),
            (b"b".to_vec(), Some(b"4".to_vec())),
            (b"before".to_vec(), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(log, want);
        assert!(db.take_changes().is_empty(), "a take starts over");
        db.insert(b"b", b"6").unwrap();
        let after: ChangeLog = [(b"b".to_vec(), Some(b"6".to_vec()))].into_iter().collect();
        assert_eq!(db.take_changes(), after, "only what changed since the take");
    }

    #[test]
    fn reopens_after_a_crash_while_writing_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let db = Db::open(&p, "test").unwrap();
            db.insert(b"k", b"v").unwrap();
            db.flush_durable().unwrap();
        }
        // What a process killed inside sled's write_snapshot leaves.
        std::fs::write(p.join("snap.FFFFFFFFFFFFFFF0.generating"), b"").unwrap();
        let db = Db::open(&p, "test").unwrap();
        assert_eq!(db.get(b"k").unwrap().unwrap(), b"v");
        assert!(!p.join("snap.FFFFFFFFFFFFFFF0.generating").exists());
    }

    #[test]
    fn batch_scan_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let db = Db::open(&p, "test").unwrap();
            let mut b = Batch::new();
            b.insert(b"a1", b"x");
            b.insert(b"a2", vec![7u8; 200_000]); // large enough to become a sled blob
            b.insert(b"b1", b"z");
            db.apply(b).unwrap();
            db.flush_durable().unwrap();
            let keys: Vec<_> = db.scan_prefix(b"a").map(|r| r.unwrap().0).collect();
            assert_eq!(keys, vec![b"a1".to_vec(), b"a2".to_vec()]);
        }
        {
            let db = Db::open(&p, "test").unwrap();
            assert_eq!(db.get(b"b1").unwrap().unwrap(), b"z");
            assert_eq!(db.get(b"a2").unwrap().unwrap().len(), 200_000);
            db.remove(b"b1").unwrap();
            assert!(db.get(b"b1").unwrap().is_none());
        }
        // Vault stamps: adopted once, then enforced; a missing store is an error.
        Db::open_vault_store(&p, "test", "v1", OpenMode::Existing)
            .map(drop)
            .unwrap();
        assert!(matches!(
            Db::open_vault_store(&p, "test", "v2", OpenMode::Existing),
            Err(StoreError::Foreign { .. })
        ));
        assert!(matches!(
            Db::open_vault_store(&dir.path().join("gone"), "test", "v1", OpenMode::Existing),
            Err(StoreError::Missing { .. })
        ));
        assert!(!dir.path().join("gone").exists());
    }
}
