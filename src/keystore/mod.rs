//! The local keystore: the two key shares `R1` and `R2` of every object.
//!
//! Both shares live in sled stores on the user's side; `R2` may sit in a
//! second store on another disk or a removable drive, so losing either one
//! is survivable through the backup record `B`. Records: key `1`/`2` +
//! object id -> a key record (`record.rs`): format 2, sealed under an
//! epoch key (`epochs.rs`), or format 1, the 33-byte share (`x` then `y`)
//! in clear, in vaults made before the sealed keystore. Shares are raw
//! bytes here; the envelope gives them meaning.
//!
//! Key `s` + epoch (u32 be) -> u64 le: records deleted from that epoch and
//! not yet shredded (epoch 0 counts clear records of a vault being
//! sealed). A shred pass re-seals the epoch's survivors and destroys its
//! key, and clears the count.
//!
//! A separate `R2` store that is absent (drive not mounted: the folder is
//! missing or holds no store) is never created behind the user's back:
//! reads fall back to `R1` + `B`, writes fail with a message naming the
//! path. Only `qsfs keys repair --rebuild-r2` builds a new one there.

pub mod epochs;
pub mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

use crate::ObjectId;
use crate::store::{Batch, Db, OpenMode, StoreError};
pub use epochs::{Epochs, Opened, Writer};
pub use record::Kind;

/// Bytes of one stored share (x then 32 bytes y).
pub const SHARE_BYTES: usize = 33;
const RECORD_VERSION: u8 = record::CLEAR;

/// A share as stored.
pub type ShareBytes = [u8; SHARE_BYTES];

/// Keystore failures.
#[derive(Debug, Error)]
pub enum KeystoreError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The separate R2 store is not there.
    #[error(
        "the R2 keystore at {0} is not available ({1}); files can still be read with R1 and the backup records, but nothing can be written until it is back (if that drive is lost for good, `qsfs keys repair --rebuild-r2 VAULT` builds a new R2 store there)"
    )]
    R2Unavailable(PathBuf, String),
    /// The epoch table cannot be opened.
    #[error("{}: {detail}", .file.display())]
    EpochTable {
        /// The slot file.
        file: PathBuf,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A file operation on the epoch table failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
}

/// What the keystore holds for one object. A share whose record is
/// damaged is reported as `Damaged` so the caller can recover through `B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A well-formed share record.
    Present(ShareBytes),
    /// No record.
    Missing,
    /// A record that cannot be decoded.
    Damaged,
}

impl Drop for Stored {
    /// A share read from the keystore is wiped when its copy is dropped.
    fn drop(&mut self) {
        if let Stored::Present(b) = self {
            zeroize::Zeroize::zeroize(b);
        }
    }
}

impl Stored {
    /// The share bytes if present.
    pub fn bytes(&self) -> Option<&ShareBytes> {
        match self {
            Stored::Present(b) => Some(b),
            _ => None,
        }
    }
}

/// Where `R2` lives.
enum R2Store {
    SameAsR1,
    Separate(Db),
    Unavailable(PathBuf, String),
}

/// R1 and R2 of every object.
pub struct Keystore {
    r1: Db,
    r2: R2Store,
    /// The epoch keys records are sealed under; `None` in a vault made
    /// before the sealed keystore (records in clear).
    epochs: std::sync::OnceLock<Arc<Epochs>>,
    /// Held by deletions and by a shred pass's re-sealing: a record
    /// re-sealed into the current epoch just before it is deleted would be
    /// counted against its old epoch and never shredded.
    shred: Mutex<()>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("r1", &self.r1.path())
            .finish()
    }
}

const DIRTY: u8 = b's';

fn dirty_key(epoch: u32) -> [u8; 5] {
    let mut k = [DIRTY; 5];
    k[1..].copy_from_slice(&epoch.to_be_bytes());
    k
}

fn kind_of(which: u8) -> Kind {
    if which == b'1' { Kind::R1 } else { Kind::R2 }
}

/// The epoch a stored record counts against: its own, or 0 for a record
/// in clear.
pub fn epoch_of_stored(v: &[u8]) -> u32 {
    record::epoch_of(v).unwrap_or(0)
}

fn key(which: u8, id: &ObjectId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = which;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

pub(crate) fn encode(share: &ShareBytes) -> [u8; 1 + SHARE_BYTES] {
    let mut v = [0u8; 1 + SHARE_BYTES];
    v[0] = RECORD_VERSION;
    v[1..].copy_from_slice(share);
    v
}

pub(crate) fn decode(v: Option<Vec<u8>>) -> Stored {
    // The record read holds a share: wiped when this copy is dropped.
    let v = v.map(zeroize::Zeroizing::new);
    match v {
        None => Stored::Missing,
        Some(v) if v.len() == 1 + SHARE_BYTES && v[0] == RECORD_VERSION => {
            let mut s = [0u8; SHARE_BYTES];
            s.copy_from_slice(&v[1..]);
            Stored::Present(s)
        }
        Some(_) => Stored::Damaged,
    }
}

impl Keystore {
    /// Opens the keystore of vault `vault_id` at `path`, with `R2` in
    /// `r2_path` if given. `r2_mode` = `Create` builds a missing separate
    /// R2 store (at init, or `keys repair --rebuild-r2`); otherwise a
    /// missing one is "unavailable", never created.
    pub fn open(
        path: &Path,
        r2_path: Option<&Path>,
        vault_id: &str,
        mode: OpenMode,
        r2_mode: OpenMode,
        epochs: Option<Arc<Epochs>>,
    ) -> Result<Keystore, KeystoreError> {
        let r1 = Db::open_vault_store(path, "keystore (R1)", vault_id, mode)?;
        let r2 = match r2_path {
            None => R2Store::SameAsR1,
            Some(p) => {
                if r2_mode == OpenMode::Create {
                    crate::perms::create_private_dir_all(p).map_err(|e| {
                        KeystoreError::Store(StoreError::Sync {
                            role: "keystore (R2)",
                            path: p.to_path_buf(),
                            file: p.to_path_buf(),
                            source: e,
                        })
                    })?;
                }
                match Db::open_vault_store(p, "keystore (R2)", vault_id, r2_mode) {
                    Ok(db) => R2Store::Separate(db),
                    Err(StoreError::Missing { .. }) => R2Store::Unavailable(
                        p.to_path_buf(),
                        "no R2 store there: is its drive mounted?".into(),
                    ),
                    Err(e @ StoreError::Foreign { .. }) => {
                        R2Store::Unavailable(p.to_path_buf(), e.to_string())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let cell = std::sync::OnceLock::new();
        if let Some(e) = epochs {
            let _ = cell.set(e);
        }
        Ok(Keystore {
            r1,
            r2,
            epochs: cell,
            shred: Mutex::new(()),
        })
    }

    /// The epoch keys, if the keystore is sealed.
    pub fn epochs(&self) -> Option<&Arc<Epochs>> {
        self.epochs.get()
    }

    /// Seals from now on under `epochs` (an old vault being sealed: its
    /// clear records stay readable until a shred pass re-seals them).
    pub fn start_sealing(&self, epochs: Arc<Epochs>) {
        let _ = self.epochs.set(epochs);
    }

    /// A writer on the current epoch (`None` when records are in clear).
    pub fn writer(&self) -> Result<Option<Writer<'_>>, KeystoreError> {
        self.epochs().map(|e| e.writer()).transpose()
    }

    fn stored_form(
        &self,
        w: Option<&Writer<'_>>,
        kind: Kind,
        id: &ObjectId,
        share: &ShareBytes,
    ) -> Result<Vec<u8>, KeystoreError> {
        match w {
            Some(w) => w.seal(kind, id, share),
            None => Ok(encode(share).to_vec()),
        }
    }

    fn read_form(&self, kind: Kind, id: &ObjectId, v: Option<Vec<u8>>) -> Stored {
        let v = v.map(zeroize::Zeroizing::new);
        match (self.epochs(), v.as_deref()) {
            (_, None) => Stored::Missing,
            // A clear record in a sealed keystore: left by an interrupted
            // sealing of an old vault, re-sealed by the next shred pass.
            (_, Some(b)) if b.first() == Some(&RECORD_VERSION) => decode(Some(b.clone())),
            (None, Some(_)) => Stored::Damaged,
            (Some(e), Some(b)) => match e.open_record(kind, id, Some(b)) {
                Opened::Payload(p) if p.len() == SHARE_BYTES => {
                    let mut s = [0u8; SHARE_BYTES];
                    s.copy_from_slice(&p);
                    Stored::Present(s)
                }
                Opened::Missing => Stored::Missing,
                _ => Stored::Damaged,
            },
        }
    }

    /// Folder of the R1 store.
    pub fn r1_path(&self) -> &Path {
        self.r1.path()
    }

    /// Folder of the R2 store and whether it is available.
    pub fn r2_location(&self) -> (PathBuf, bool) {
        match &self.r2 {
            R2Store::SameAsR1 => (self.r1.path().to_path_buf(), true),
            R2Store::Separate(db) => (db.path().to_path_buf(), true),
            R2Store::Unavailable(p, _) => (p.clone(), false),
        }
    }

    fn r2_db(&self) -> Result<&Db, KeystoreError> {
        match &self.r2 {
            R2Store::SameAsR1 => Ok(&self.r1),
            R2Store::Separate(db) => Ok(db),
            R2Store::Unavailable(p, why) => {
                Err(KeystoreError::R2Unavailable(p.clone(), why.clone()))
            }
        }
    }

    /// Fails if new shares could not be stored (R2 store away).
    pub fn check_writable(&self) -> Result<(), KeystoreError> {
        self.r2_db().map(|_| ())
    }

    /// Records the shares of new objects and makes them durable.
    pub fn put_many(
        &self,
        items: &[(ObjectId, ShareBytes, ShareBytes)],
    ) -> Result<(), KeystoreError> {
        let r2 = self.r2_db()?;
        let same = std::ptr::eq(r2, &self.r1);
        let mut b1 = Batch::new();
        let mut b2 = Batch::new();
        // Held until the records are applied: see `Writer`.
        let w = self.writer()?;
        for (id, s1, s2) in items {
            b1.insert(
                key(b'1', id),
                self.stored_form(w.as_ref(), Kind::R1, id, s1)?,
            );
            // One atomic batch when both shares share a store.
            if same { &mut b1 } else { &mut b2 }.insert(
                key(b'2', id),
                self.stored_form(w.as_ref(), Kind::R2, id, s2)?,
            );
        }
        self.r1.apply(b1)?;
        if !same {
            r2.apply(b2)?;
        }
        drop(w);
        if !same {
            r2.flush_durable()?;
        }
        self.r1.flush_durable()?;
        Ok(())
    }

    /// R1 and R2 of an object (R2 reads as missing if its store is away).
    pub fn get(&self, id: &ObjectId) -> Result<(Stored, Stored), KeystoreError> {
        let r1 = self.read_form(Kind::R1, id, self.r1.get(key(b'1', id))?);
        let r2 = match self.r2_db() {
            Ok(db) => self.read_form(Kind::R2, id, db.get(key(b'2', id))?),
            Err(_) => Stored::Missing,
        };
        Ok((r1, r2))
    }

    /// Writes back one healed share (`which` is 1 or 2).
    pub fn heal(&self, id: &ObjectId, which: u8, share: &ShareBytes) -> Result<(), KeystoreError> {
        let db = if which == 1 { &self.r1 } else { self.r2_db()? };
        let byte = if which == 1 { b'1' } else { b'2' };
        let w = self.writer()?;
        db.insert(
            key(byte, id),
            self.stored_form(w.as_ref(), kind_of(byte), id, share)?,
        )?;
        drop(w);
        db.flush_durable()?;
        Ok(())
    }

    /// Destroys both shares of each object, durably (one flush per store).
    /// Returns the ids whose R2 could not be destroyed because the R2 store
    /// is away (the caller retries them when it is back).
    pub fn destroy_many(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>, KeystoreError> {
        self.destroy_counting(ids, &|_| None)
    }

    /// [`Keystore::destroy_many`], also counting each object's backup
    /// record B as waiting to be shredded in the epoch `b_epoch` gives
    /// (asked while deletions and re-sealing are held apart).
    pub fn destroy_counting(
        &self,
        ids: &[ObjectId],
        b_epoch: &dyn Fn(&ObjectId) -> Option<u32>,
    ) -> Result<Vec<ObjectId>, KeystoreError> {
        let _shred = self.shred_guard();
        let mut b1 = Batch::new();
        let mut b2 = Batch::new();
        let r2 = self.r2_db().ok();
        let mut dirty = BTreeMap::<u32, u64>::new();
        for id in ids {
            if self.epochs().is_some() {
                if let Some(e) = b_epoch(id) {
                    *dirty.entry(e).or_default() += 1;
                }
                let mut count = |v: Option<Vec<u8>>| {
                    if let Some(v) = v {
                        *dirty.entry(epoch_of_stored(&v)).or_default() += 1;
                    }
                };
                count(self.r1.get(key(b'1', id))?);
                if let Some(r2) = r2 {
                    count(r2.get(key(b'2', id))?);
                }
            }
            b1.remove(key(b'1', id));
            b2.remove(key(b'2', id));
        }
        if self.epochs().is_some() {
            self.add_dirty(&mut b1, &dirty)?;
        }
        let left = match r2 {
            Some(r2) if std::ptr::eq(r2, &self.r1) => {
                self.r1.apply(b1)?;
                self.r1.apply(b2)?;
                Vec::new()
            }
            Some(r2) => {
                self.r1.apply(b1)?;
                r2.apply(b2)?;
                r2.flush_durable()?;
                Vec::new()
            }
            None => {
                self.r1.apply(b1)?;
                ids.to_vec()
            }
        };
        self.r1.flush_durable()?;
        Ok(left)
    }

    fn shred_guard(&self) -> MutexGuard<'_, ()> {
        self.shred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add_dirty(&self, batch: &mut Batch, more: &BTreeMap<u32, u64>) -> Result<(), KeystoreError> {
        let now = self.dirty()?;
        for (e, n) in more.iter().filter(|(_, n)| **n > 0) {
            let total = now.get(e).copied().unwrap_or(0).saturating_add(*n);
            batch.insert(dirty_key(*e), total.to_le_bytes());
        }
        Ok(())
    }

    /// Deleted records waiting to be shredded, by epoch.
    pub fn dirty(&self) -> Result<BTreeMap<u32, u64>, KeystoreError> {
        let mut out = BTreeMap::new();
        for r in self.r1.scan_prefix([DIRTY]) {
            let (k, v) = r?;
            if let (Ok(e), Ok(n)) = (<[u8; 4]>::try_from(&k[1..]), <[u8; 8]>::try_from(&v[..])) {
                out.insert(u32::from_be_bytes(e), u64::from_le_bytes(n));
            }
        }
        Ok(out)
    }

    /// Counts every live epoch as waiting to be shredded (its key was
    /// exposed: the vault key was kept in clear), so the next pass
    /// re-seals every record under a new epoch.
    pub fn mark_all_epochs(&self) -> Result<(), KeystoreError> {
        let Some(ep) = self.epochs() else {
            return Ok(());
        };
        let _shred = self.shred_guard();
        let mut b = Batch::new();
        let all: BTreeMap<u32, u64> = ep.live().into_iter().map(|e| (e, 1)).collect();
        self.add_dirty(&mut b, &all)?;
        self.r1.apply(b)?;
        self.r1.flush_durable()?;
        Ok(())
    }

    /// Counts every record in clear as waiting to be shredded (epoch 0):
    /// the first step of sealing an old vault's keystore.
    pub fn mark_clear_records(&self, more: u64) -> Result<u64, KeystoreError> {
        let mut n = more;
        let mut count = |db: &Db, which: u8| -> Result<(), KeystoreError> {
            for r in db.scan_prefix([which]) {
                let (_, v) = r?;
                if v.first() == Some(&RECORD_VERSION) {
                    n += 1;
                }
            }
            Ok(())
        };
        count(&self.r1, b'1')?;
        if let Ok(r2) = self.r2_db() {
            count(r2, b'2')?;
        }
        if n > 0 {
            let _shred = self.shred_guard();
            let mut b = Batch::new();
            self.add_dirty(&mut b, &BTreeMap::from([(0, n)]))?;
            self.r1.apply(b)?;
            self.r1.flush_durable()?;
        }
        Ok(n)
    }

    /// Re-seals under the current epoch every R1/R2 record of `epochs`
    /// (0: records in clear), durably; returns how many. Deletions wait
    /// meanwhile (see `shred`). The R2 store must be there.
    pub fn reseal(&self, epochs: &BTreeSet<u32>) -> Result<u64, KeystoreError> {
        let Some(ep) = self.epochs() else {
            return Ok(0);
        };
        let _shred = self.shred_guard();
        let r2 = self.r2_db()?;
        let mut n = 0;
        let mut dbs = vec![(&self.r1, b'1')];
        dbs.push((r2, b'2'));
        for (db, which) in dbs {
            let old: Vec<(Vec<u8>, Vec<u8>)> = db
                .scan_prefix([which])
                .filter_map(|r| match r {
                    Ok((k, v)) if epochs.contains(&epoch_of_stored(&v)) => Some(Ok((k, v))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            for (k, v) in old {
                let Ok(idb) = <[u8; 16]>::try_from(&k[1..]) else {
                    continue;
                };
                let id = ObjectId(idb);
                let kind = kind_of(which);
                let w = ep.writer()?;
                let new = if v.first() == Some(&RECORD_VERSION) {
                    match decode(Some(v.clone())) {
                        Stored::Present(s) => Some(w.seal(kind, &id, &s)?),
                        _ => None,
                    }
                } else {
                    ep.reseal(&w, kind, &id, &v)?
                };
                // A record that opens under no key is left as it is: fsck
                // reports it, and B rebuilds it.
                if let Some(new) = new
                    && db.compare_and_swap(&k, &v, &new)?
                {
                    n += 1;
                }
            }
            db.flush_durable()?;
        }
        Ok(n)
    }

    /// Runs `f` while no deletion runs (a shred pass re-sealing the backup
    /// records: see [`Keystore::has_shares`]).
    pub fn apart_from_deletions<T>(&self, f: impl FnOnce() -> T) -> T {
        let _shred = self.shred_guard();
        f()
    }

    /// Whether `id` still has an R1 or R2 record. A deletion removes both
    /// before its backup record, so inside [`Keystore::apart_from_deletions`]
    /// an object without them is being deleted, and its B must not be
    /// re-sealed (its old epoch was counted).
    pub fn has_shares(&self, id: &ObjectId) -> Result<bool, KeystoreError> {
        if self.r1.get(key(b'1', id))?.is_some() {
            return Ok(true);
        }
        Ok(match self.r2_db() {
            Ok(db) => db.get(key(b'2', id))?.is_some(),
            // R2 away: only R1 decides (its removal is not delayed).
            Err(_) => false,
        })
    }

    /// Forgets the counts of shredded epochs.
    pub fn clear_dirty(&self, epochs: &BTreeSet<u32>) -> Result<(), KeystoreError> {
        let mut b = Batch::new();
        for e in epochs {
            b.remove(dirty_key(*e));
        }
        self.r1.apply(b)?;
        self.r1.flush_durable()?;
        Ok(())
    }

    /// The R1 store, and the R2 store when it is separate and there.
    pub(crate) fn dbs(&self) -> (&Db, Option<&Db>) {
        match &self.r2 {
            R2Store::Separate(db) => (&self.r1, Some(db)),
            _ => (&self.r1, None),
        }
    }

    /// The stores holding key records, for a scan of their files.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut v = vec![self.r1.path().to_path_buf()];
        if let R2Store::Separate(db) = &self.r2 {
            v.push(db.path().to_path_buf());
        }
        v
    }

    /// Ids of every object with an R1 or R2 record.
    pub fn ids(&self) -> Result<Vec<ObjectId>, KeystoreError> {
        let mut out = Vec::new();
        let mut push = |db: &Db, which: u8| -> Result<(), KeystoreError> {
            for r in db.scan_prefix([which]) {
                let (k, _) = r?;
                if let Ok(b) = <[u8; 16]>::try_from(&k[1..]) {
                    out.push(ObjectId(b));
                }
            }
            Ok(())
        };
        push(&self.r1, b'1')?;
        if let Ok(r2) = self.r2_db() {
            push(r2, b'2')?;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_trip_and_separate_r2() {
        let dir = tempfile::tempdir().unwrap();
        let r2p = dir.path().join("removable");
        let id = ObjectId([1; 16]);
        let (s1, s2) = ([1u8; 33], [2u8; 33]);
        {
            let ks = Keystore::open(
                &dir.path().join("keys"),
                Some(&r2p),
                "v",
                OpenMode::Create,
                OpenMode::Create,
                None,
            )
            .unwrap();
            ks.put_many(&[(id, s1, s2)]).unwrap();
            assert_eq!(
                ks.get(&id).unwrap(),
                (Stored::Present(s1), Stored::Present(s2))
            );
        }
        // Drive unplugged: R2 reads as missing, writes refuse.
        std::fs::rename(&r2p, dir.path().join("elsewhere")).unwrap();
        let ks = Keystore::open(
            &dir.path().join("keys"),
            Some(&r2p),
            "v",
            OpenMode::Existing,
            OpenMode::Existing,
            None,
        )
        .unwrap();
        assert!(!r2p.exists());
        assert_eq!(ks.get(&id).unwrap(), (Stored::Present(s1), Stored::Missing));
        assert!(matches!(
            ks.put_many(&[(id, s1, s2)]),
            Err(KeystoreError::R2Unavailable(..))
        ));
        ks.destroy_many(&[id]).unwrap();
        assert_eq!(ks.get(&id).unwrap().0, Stored::Missing);
    }

    #[test]
    fn same_store_and_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(
            &dir.path().join("keys"),
            None,
            "v",
            OpenMode::Create,
            OpenMode::Existing,
            None,
        )
        .unwrap();
        let id = ObjectId([3; 16]);
        ks.put_many(&[(id, [1u8; 33], [2u8; 33])]).unwrap();
        ks.r1.insert(key(b'1', &id), b"junk").unwrap();
        assert_eq!(
            ks.get(&id).unwrap(),
            (Stored::Damaged, Stored::Present([2u8; 33]))
        );
        ks.heal(&id, 1, &[9u8; 33]).unwrap();
        assert_eq!(ks.get(&id).unwrap().0, Stored::Present([9u8; 33]));
        assert_eq!(ks.ids().unwrap(), vec![id]);
    }
}
