//! Epoch keys: what makes deleting a key record final on a store that
//! keeps old values in its log.
//!
//! Every key record (R1, R2, B) is sealed under the key of the epoch that
//! was current when it was written. Shredding re-seals the live records of
//! an epoch under the current one and then destroys the old epoch key:
//! every copy of a deleted record, wherever sled or a backup kept it, is
//! then noise, even to someone holding the vault key.
//!
//! The table of live epoch keys is small, sealed under a key derived from
//! the vault key, and kept in two slot files, `meta/epochs.0` and
//! `meta/epochs.1`, overwritten in place (never renamed over, so a
//! destroyed key does not survive in a freed file): slot 0 first, then
//! slot 1. A crash between the two leaves one slot with the new table and
//! one with the old; opening takes the newest slot that opens and writes
//! it over the other before anything else.
//!
//! Slot format 1:
//!
//! ```text
//! "QSFSEPK1" || generation (u64 le) || len (u32 le) || sealed body (len) || zero padding
//! sealed body = nonce 12 || AES-256-GCM(body) || tag 16,
//!   key = BLAKE3 derive_key("qsfs 2026-12 epoch table v1", vault key),
//!   aad = "QSFSEPK1" || vault_id || generation (u64 le)
//! body = current epoch (u32 le) || count (u32 le) || count x (epoch u32 le || key 32)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use zeroize::Zeroizing;

use super::KeystoreError;
use super::record::{self, Kind};
use crate::ObjectId;
use crate::unlock::{VaultKey, wrap};

const MAGIC: &[u8; 8] = b"QSFSEPK1";
const HEADER: usize = 8 + 8 + 4;
const CONTEXT: &str = "qsfs 2026-12 epoch table v1";
/// Objects sealed under one epoch before the next starts: a shred pass
/// re-seals the survivors of each epoch that lost a record, so smaller
/// epochs mean less to re-seal per deletion, at one table write each.
const ROTATE_AFTER: u64 = 4096;

type Key = Zeroizing<[u8; 32]>;

#[derive(Clone)]
struct Table {
    generation: u64,
    current: u32,
    keys: BTreeMap<u32, Key>,
}

impl Table {
    fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(8 + self.keys.len() * 36));
        b.extend_from_slice(&self.current.to_le_bytes());
        b.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for (e, k) in &self.keys {
            b.extend_from_slice(&e.to_le_bytes());
            b.extend_from_slice(&k[..]);
        }
        b
    }

    fn parse(generation: u64, body: &[u8]) -> Option<Table> {
        let current = u32::from_le_bytes(body.get(0..4)?.try_into().ok()?);
        let count = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?) as usize;
        if body.len() != 8 + count * 36 {
            return None;
        }
        let mut keys = BTreeMap::new();
        for c in body[8..].chunks_exact(36) {
            let e = u32::from_le_bytes(c[..4].try_into().ok()?);
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&c[4..]);
            keys.insert(e, k);
        }
        keys.contains_key(&current).then_some(Table {
            generation,
            current,
            keys,
        })
    }
}

fn fresh_key() -> Result<Key, KeystoreError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..]).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(k)
}

/// A record as read back.
#[derive(Debug)]
pub enum Opened {
    /// Its payload.
    Payload(Zeroizing<Vec<u8>>),
    /// No record.
    Missing,
    /// Sealed under an epoch whose key is destroyed: shredded.
    Shredded,
    /// Bytes that are no record of this object and role.
    Damaged,
}

/// The live epoch keys of a vault.
pub struct Epochs {
    dir: PathBuf,
    vault_id: String,
    table_key: Mutex<Key>,
    state: RwLock<Table>,
    /// Objects sealed under the current epoch since this process made it
    /// current (or opened the vault).
    sealed: AtomicU64,
    /// One table write at a time.
    write: Mutex<()>,
}

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epochs").field("dir", &self.dir).finish()
    }
}

/// Holds the current epoch while records sealed under it are written: a
/// shred pass cannot switch epochs and re-seal meanwhile, so no record is
/// left under an epoch it destroys.
pub struct Writer<'a> {
    epochs: &'a Epochs,
    table: RwLockReadGuard<'a, Table>,
}

impl Writer<'_> {
    /// Seals `payload` as record `kind` of `id` under the current epoch.
    pub fn seal(
        &self,
        kind: Kind,
        id: &ObjectId,
        payload: &[u8],
    ) -> Result<Vec<u8>, KeystoreError> {
        if kind == Kind::R1 {
            self.epochs.sealed.fetch_add(1, Ordering::Relaxed);
        }
        let key = &self.table.keys[&self.table.current];
        record::seal(
            self.table.current,
            key,
            &self.epochs.vault_id,
            kind,
            id,
            payload,
        )
        .map_err(|e| KeystoreError::Random(e.to_string()))
    }
}

fn slot(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("epochs.{i}"))
}

impl Epochs {
    /// Whether a table exists in `dir` (a vault made before the sealed
    /// keystore has none).
    pub fn exists(dir: &Path) -> bool {
        slot(dir, 0).exists() || slot(dir, 1).exists()
    }

    /// Makes the first table (epoch 1) in `dir`.
    pub fn create(dir: &Path, vault_id: &str, vk: &VaultKey) -> Result<Epochs, KeystoreError> {
        let mut keys = BTreeMap::new();
        keys.insert(1, fresh_key()?);
        let e = Epochs {
            dir: dir.to_path_buf(),
            vault_id: vault_id.into(),
            table_key: Mutex::new(vk.derive(CONTEXT)),
            state: RwLock::new(Table {
                generation: 1,
                current: 1,
                keys,
            }),
            sealed: AtomicU64::new(0),
            write: Mutex::new(()),
        };
        let t = e.read().clone();
        e.persist(&t)?;
        Ok(e)
    }

    /// Opens the table in `dir` with the vault key.
    pub fn open(dir: &Path, vault_id: &str, vk: &VaultKey) -> Result<Epochs, KeystoreError> {
        let key = vk.derive(CONTEXT);
        let mut best: Option<Table> = None;
        let mut seen = Vec::new();
        for i in 0..2 {
            let p = slot(dir, i);
            match std::fs::read(&p) {
                Ok(bytes) => {
                    let t = decode(&bytes, &key, vault_id);
                    seen.push(t.as_ref().map(|t| t.generation));
                    if let Some(t) = t
                        && best.as_ref().is_none_or(|b| t.generation > b.generation)
                    {
                        best = Some(t);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => seen.push(None),
                Err(source) => {
                    return Err(KeystoreError::Io {
                        what: format!("read {}", p.display()),
                        source,
                    });
                }
            }
        }
        let Some(table) = best else {
            return Err(KeystoreError::EpochTable {
                file: slot(dir, 0),
                detail: "neither epoch.0 nor epoch.1 opens with this vault's key: both are damaged or were replaced; restore the vault folder from a backup, or recover the vault from its nodes".into(),
            });
        };
        let e = Epochs {
            dir: dir.to_path_buf(),
            vault_id: vault_id.into(),
            table_key: Mutex::new(key),
            state: RwLock::new(table),
            sealed: AtomicU64::new(0),
            write: Mutex::new(()),
        };
        // A slot left behind by a crash may still hold keys destroyed since.
        let g = e.read().generation;
        if seen.iter().any(|s| *s != Some(g)) {
            let t = e.read().clone();
            e.persist(&t)?;
        }
        Ok(e)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `t` to both slots, slot 0 first.
    fn persist(&self, t: &Table) -> Result<(), KeystoreError> {
        let _w = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = self
            .table_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let bytes = encode(t, &key, &self.vault_id)?;
        for i in 0..2 {
            self.write_slot(i, &bytes)?;
        }
        Ok(())
    }

    fn write_slot(&self, i: usize, bytes: &[u8]) -> Result<(), KeystoreError> {
        let p = slot(&self.dir, i);
        let io = |what: &str| {
            let what = format!("{what} {}", p.display());
            move |source| KeystoreError::Io { what, source }
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&p)
            .map_err(io("open"))?;
        let old = f.metadata().map_err(io("stat"))?.len() as usize;
        // Over the old bytes, never beside them: a shorter table is padded
        // with zeros to the old length.
        let mut out = bytes.to_vec();
        out.resize(out.len().max(old), 0);
        f.write_all_at(&out, 0).map_err(io("write"))?;
        f.sync_all().map_err(io("sync"))?;
        if old == 0 {
            crate::sys::fsync_dir(&self.dir).map_err(io("sync the folder of"))?;
        }
        Ok(())
    }

    /// A writer on the current epoch; starts a new epoch first when the
    /// current one is full.
    pub fn writer(&self) -> Result<Writer<'_>, KeystoreError> {
        if self.sealed.load(Ordering::Relaxed) >= ROTATE_AFTER {
            self.rotate()?;
        }
        Ok(Writer {
            epochs: self,
            table: self.read(),
        })
    }

    /// Starts a new current epoch (waits for writers of the old one);
    /// returns its number.
    pub fn rotate(&self) -> Result<u32, KeystoreError> {
        let mut st = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut t = st.clone();
        let next = t
            .keys
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .wrapping_add(1)
            .max(1);
        t.keys.insert(next, fresh_key()?);
        t.current = next;
        t.generation += 1;
        self.persist(&t)?;
        *st = t;
        self.sealed.store(0, Ordering::Relaxed);
        Ok(next)
    }

    /// Destroys the keys of `epochs` (never the current one): every
    /// record still sealed under them becomes noise.
    pub fn destroy(&self, epochs: &BTreeSet<u32>) -> Result<(), KeystoreError> {
        let mut st = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut t = st.clone();
        t.keys.retain(|e, _| *e == t.current || !epochs.contains(e));
        if t.keys.len() == st.keys.len() {
            return Ok(());
        }
        t.generation += 1;
        self.persist(&t)?;
        *st = t;
        Ok(())
    }

    /// Seals the table under a new vault key. `switch` makes the new key
    /// the one unlocking the vault (writes `unlock.toml`); it runs between
    /// the two slot writes, so whichever key a crash leaves in force opens
    /// one slot.
    pub fn rekey(
        &self,
        vk: &VaultKey,
        switch: impl FnOnce() -> Result<(), KeystoreError>,
    ) -> Result<(), KeystoreError> {
        let mut st = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _w = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut t = st.clone();
        t.generation += 1;
        let key = vk.derive(CONTEXT);
        let bytes = encode(&t, &key, &self.vault_id)?;
        self.write_slot(0, &bytes)?;
        switch()?;
        self.write_slot(1, &bytes)?;
        *self
            .table_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        *st = t;
        Ok(())
    }

    /// The current epoch.
    pub fn current(&self) -> u32 {
        self.read().current
    }

    /// Every live epoch with its key (the shredding tests' attacker).
    pub fn live_keys(&self) -> Vec<(u32, Key)> {
        self.read()
            .keys
            .iter()
            .map(|(e, k)| (*e, k.clone()))
            .collect()
    }

    /// Every epoch whose key is live.
    pub fn live(&self) -> Vec<u32> {
        self.read().keys.keys().copied().collect()
    }

    /// Opens a stored record (`None`: no record).
    pub fn open_record(&self, kind: Kind, id: &ObjectId, stored: Option<&[u8]>) -> Opened {
        let Some(v) = stored else {
            return Opened::Missing;
        };
        let Some(epoch) = record::epoch_of(v) else {
            return Opened::Damaged;
        };
        let t = self.read();
        match t.keys.get(&epoch) {
            None => Opened::Shredded,
            Some(k) => record::open(k, &self.vault_id, kind, id, v)
                .map_or(Opened::Damaged, Opened::Payload),
        }
    }

    /// Re-seals a record under the current epoch (the shred pass);
    /// `None` if it does not open.
    pub fn reseal(
        &self,
        w: &Writer<'_>,
        kind: Kind,
        id: &ObjectId,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>, KeystoreError> {
        match self.open_record(kind, id, Some(stored)) {
            Opened::Payload(p) => Ok(Some(w.seal(kind, id, &p)?)),
            _ => Ok(None),
        }
    }
}

fn aad(vault_id: &str, generation: u64) -> Vec<u8> {
    let mut a = MAGIC.to_vec();
    a.extend_from_slice(vault_id.as_bytes());
    a.extend_from_slice(&generation.to_le_bytes());
    a
}

fn encode(t: &Table, key: &[u8; 32], vault_id: &str) -> Result<Vec<u8>, KeystoreError> {
    let sealed = wrap::wrap(key, &aad(vault_id, t.generation), &t.body())
        .map_err(|e| KeystoreError::Random(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&t.generation.to_le_bytes());
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn decode(bytes: &[u8], key: &[u8; 32], vault_id: &str) -> Option<Table> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
    let sealed = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    let body = wrap::unwrap(key, &aad(vault_id, generation), sealed)?;
    Table::parse(generation, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroyed_epochs_leave_no_key_in_either_slot_and_survivors_open() {
        let dir = tempfile::tempdir().unwrap();
        let vk = VaultKey::generate().unwrap();
        let e = Epochs::create(dir.path(), "v", &vk).unwrap();
        let id = ObjectId([4; 16]);
        let r = e
            .writer()
            .unwrap()
            .seal(Kind::R1, &id, b"share one")
            .unwrap();
        let old = e.read().keys[&1].clone();
        assert_eq!(e.rotate().unwrap(), 2);
        let fresh = {
            let w = e.writer().unwrap();
            e.reseal(&w, Kind::R1, &id, &r).unwrap().unwrap()
        };
        e.destroy(&BTreeSet::from([1])).unwrap();
        assert!(matches!(
            e.open_record(Kind::R1, &id, Some(&r)),
            Opened::Shredded
        ));
        assert!(
            matches!(e.open_record(Kind::R1, &id, Some(&fresh)), Opened::Payload(p) if &p[..] == b"share one")
        );
        drop(e);
        let e = Epochs::open(dir.path(), "v", &vk).unwrap();
        assert_eq!(e.live(), vec![2]);
        assert!(matches!(
            e.open_record(Kind::R1, &id, Some(&r)),
            Opened::Shredded
        ));
        // The old key is not in either slot, under the table key or not.
        let tk = vk.derive(CONTEXT);
        for i in 0..2 {
            let bytes = std::fs::read(slot(dir.path(), i)).unwrap();
            assert!(!bytes.windows(32).any(|w| w == &old[..]));
            let t = decode(&bytes, &tk, "v").unwrap();
            assert!(!t.keys.contains_key(&1));
        }
        // Another vault key opens nothing.
        assert!(Epochs::open(dir.path(), "v", &VaultKey::generate().unwrap()).is_err());
    }

    #[test]
    fn a_torn_or_stale_slot_is_outvoted_and_healed() {
        let dir = tempfile::tempdir().unwrap();
        let vk = VaultKey::generate().unwrap();
        let e = Epochs::create(dir.path(), "v", &vk).unwrap();
        let stale = std::fs::read(slot(dir.path(), 1)).unwrap();
        e.rotate().unwrap();
        e.destroy(&BTreeSet::from([1])).unwrap();
        drop(e);
        // A crash between the slots: slot 1 still has the old table.
        std::fs::write(slot(dir.path(), 1), &stale).unwrap();
        let e = Epochs::open(dir.path(), "v", &vk).unwrap();
        assert_eq!(e.live(), vec![2]);
        let tk = vk.derive(CONTEXT);
        let generation = |i| {
            decode(&std::fs::read(slot(dir.path(), i)).unwrap(), &tk, "v").map(|t| t.generation)
        };
        assert_eq!(generation(0), generation(1));
        assert!(generation(1).is_some());
        // A torn slot 0: slot 1 serves.
        std::fs::write(slot(dir.path(), 0), b"QSFSEPK1 torn").unwrap();
        drop(e);
        let e = Epochs::open(dir.path(), "v", &vk).unwrap();
        assert_eq!(e.live(), vec![2]);
        // A new vault key: both slots move to it.
        let vk2 = VaultKey::generate().unwrap();
        e.rekey(&vk2, || Ok(())).unwrap();
        drop(e);
        assert!(Epochs::open(dir.path(), "v", &vk).is_err());
        assert_eq!(Epochs::open(dir.path(), "v", &vk2).unwrap().live(), vec![2]);
    }
}
