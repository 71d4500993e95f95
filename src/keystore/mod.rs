//! The local keystore: the two key shares `R1` and `R2` of every object.
//!
//! Both shares live in sled stores on the user's side; `R2` may sit in a
//! second store on another disk or a removable drive, so losing either one
//! is survivable through the backup record `B`. Records: key `1`/`2` +
//! object id -> version byte (1) then the 33-byte share (`x` then `y`).
//! Shares are kept as raw bytes here; the envelope gives them meaning.
//!
//! A separate `R2` store that is absent (drive not mounted: the folder is
//! missing or holds no store) is never created behind the user's back:
//! reads fall back to `R1` + `B`, writes fail with a message naming the
//! path. Only `qsfs keys repair --rebuild-r2` builds a new one there.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ObjectId;
use crate::store::{Batch, Db, OpenMode, StoreError};

/// Bytes of one stored share (x then 32 bytes y).
pub const SHARE_BYTES: usize = 33;
const RECORD_VERSION: u8 = 1;

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
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("r1", &self.r1.path())
            .finish()
    }
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
        Ok(Keystore { r1, r2 })
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
        for (id, s1, s2) in items {
            b1.insert(key(b'1', id), encode(s1));
            // One atomic batch when both shares share a store.
            if same { &mut b1 } else { &mut b2 }.insert(key(b'2', id), encode(s2));
        }
        self.r1.apply(b1)?;
        if !same {
            r2.apply(b2)?;
            r2.flush_durable()?;
        }
        self.r1.flush_durable()?;
        Ok(())
    }

    /// R1 and R2 of an object (R2 reads as missing if its store is away).
    pub fn get(&self, id: &ObjectId) -> Result<(Stored, Stored), KeystoreError> {
        let r1 = decode(self.r1.get(key(b'1', id))?);
        let r2 = match self.r2_db() {
            Ok(db) => decode(db.get(key(b'2', id))?),
            Err(_) => Stored::Missing,
        };
        Ok((r1, r2))
    }

    /// Writes back one healed share (`which` is 1 or 2).
    pub fn heal(&self, id: &ObjectId, which: u8, share: &ShareBytes) -> Result<(), KeystoreError> {
        let db = if which == 1 { &self.r1 } else { self.r2_db()? };
        db.insert(key(if which == 1 { b'1' } else { b'2' }, id), encode(share))?;
        db.flush_durable()?;
        Ok(())
    }

    /// Destroys both shares of each object, durably (one flush per store).
    /// Returns the ids whose R2 could not be destroyed because the R2 store
    /// is away (the caller retries them when it is back).
    pub fn destroy_many(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>, KeystoreError> {
        let mut b1 = Batch::new();
        let mut b2 = Batch::new();
        for id in ids {
            b1.remove(key(b'1', id));
            b2.remove(key(b'2', id));
        }
        let left = match self.r2_db() {
            Ok(r2) if std::ptr::eq(r2, &self.r1) => {
                self.r1.apply(b1)?;
                self.r1.apply(b2)?;
                Vec::new()
            }
            Ok(r2) => {
                self.r1.apply(b1)?;
                r2.apply(b2)?;
                r2.flush_durable()?;
                Vec::new()
            }
            Err(_) => {
                self.r1.apply(b1)?;
                ids.to_vec()
            }
        };
        self.r1.flush_durable()?;
        Ok(left)
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
