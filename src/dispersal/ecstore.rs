//! The erasure-coding side's own store: manifests and backup records `B`.
//!
//! Keys: `m` + object id -> manifest; `b` + object id -> the backup record
//! as the vault hands it over: a key record of `keystore::record` (format
//! 2, sealed under an epoch key; or format 1, a version byte then the
//! 105-byte `B` in clear, in vaults made before the sealed keystore). Kept
//! apart from the client's namespace and keystore, as in the paper: the EC
//! server holds `B`, the user holds `R1` and `R2`.

use std::path::Path;

use super::DispersalError;
use super::manifest::Manifest;
use crate::ObjectId;
use crate::store::{Batch, Db, OpenMode};

/// Format byte of a backup record kept in clear (format 1).
pub const CLEAR_BACKUP: u8 = 1;

/// Format byte of the marker a vault keeps instead of `B` when `B` is on
/// the nodes as key pieces (format 3: this byte alone).
pub const DISPERSED_BACKUP: u8 = 3;

/// The stored form of `b` in clear (format 1).
pub fn clear_backup(b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + b.len());
    v.push(CLEAR_BACKUP);
    v.extend_from_slice(b);
    v
}

fn key(prefix: u8, id: &ObjectId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Manifests and backup records.
#[derive(Debug)]
pub struct EcStore {
    db: Db,
    /// Serialises read-modify-write of manifests (repair, migration and
    /// debt recording run concurrently with a mount's reads).
    edit: std::sync::Mutex<()>,
    /// Sum of [`Manifest::stored_bytes`] over every manifest, once
    /// counted (None before): a mount's statfs asks at every `df`, which
    /// must not walk every manifest, so each change of a manifest keeps
    /// the sum in step. Changed only with `edit` held.
    stored: std::sync::Mutex<Option<u64>>,
}

impl EcStore {
    /// Opens the store of vault `vault_id` in `path`.
    pub fn open(path: &Path, vault_id: &str, mode: OpenMode) -> Result<EcStore, DispersalError> {
        Ok(EcStore {
            db: Db::open_vault_store(path, "manifest and backup-record", vault_id, mode)?,
            edit: std::sync::Mutex::new(()),
            stored: std::sync::Mutex::new(None),
        })
    }

    fn damaged(&self, id: &ObjectId, detail: String) -> DispersalError {
        DispersalError::Record {
            object: *id,
            detail: format!("{detail} (store {})", self.db.path().display()),
        }
    }

    /// The manifest of `id`, if recorded.
    pub fn manifest(&self, id: &ObjectId) -> Result<Option<Manifest>, DispersalError> {
        match self.db.get(key(b'm', id))? {
            None => Ok(None),
            Some(v) => Manifest::decode(&v)
                .map(Some)
                .map_err(|e| self.damaged(id, e.to_string())),
        }
    }

    /// The stored backup record of `id` (as handed to [`EcStore::publish`]),
    /// if recorded.
    pub fn backup(&self, id: &ObjectId) -> Result<Option<Vec<u8>>, DispersalError> {
        Ok(self.db.get(key(b'b', id))?)
    }

    /// The store itself (the metadata backup copies its records).
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Records a metadata snapshot object of generation `generation`: its
    /// manifest (so scrub, audit, drain and the deletion check treat its
    /// shards as any other) and its registry entry (`S` + id), durably.
    pub fn add_meta(&self, m: &Manifest, generation: u64) -> Result<(), DispersalError> {
        let _guard = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = Batch::new();
        batch.insert(key(b'm', &m.id), m.encode());
        batch.insert(key(b'S', &m.id), generation.to_le_bytes());
        self.db.apply(batch)?;
        self.restate(0, m.stored_bytes());
        self.db.flush_durable()?;
        Ok(())
    }

    /// The metadata snapshot objects and their generations.
    pub fn meta_objects(&self) -> Result<Vec<(ObjectId, u64)>, DispersalError> {
        let mut out = Vec::new();
        for r in self.db.scan_prefix([b'S']) {
            let (k, v) = r?;
            let id = ObjectId(k[1..].try_into().unwrap_or([0; 16]));
            let g = <[u8; 8]>::try_from(&v[..]).map_or(0, u64::from_le_bytes);
            out.push((id, g));
        }
        Ok(out)
    }

    /// The highest snapshot generation ever used (`G`), so none repeats.
    pub fn meta_generation(&self) -> Result<u64, DispersalError> {
        Ok(self
            .db
            .get([b'G'])?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Records `g` as used, durably, before a snapshot with it is written.
    pub fn set_meta_generation(&self, g: u64) -> Result<(), DispersalError> {
        self.db.insert([b'G'], g.to_le_bytes())?;
        self.db.flush_durable()?;
        Ok(())
    }

    /// Forgets the registry entries of destroyed snapshot objects.
    pub fn remove_meta(&self, ids: &[ObjectId]) -> Result<(), DispersalError> {
        self.remove_all(b'S', ids)
    }

    /// Every stored backup record, in id order.
    pub fn backups(
        &self,
    ) -> impl Iterator<Item = Result<(ObjectId, Vec<u8>), DispersalError>> + '_ {
        self.db.scan_prefix([b'b']).map(|r| {
            let (k, v) = r?;
            Ok((ObjectId(k[1..].try_into().unwrap_or([0; 16])), v))
        })
    }

    /// Replaces the stored backup record of `id` by `new` if it is still
    /// `old` (a shred pass re-sealing it); false if it changed or went.
    pub fn swap_backup(
        &self,
        id: &ObjectId,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, DispersalError> {
        Ok(self.db.compare_and_swap(key(b'b', id), old, new)?)
    }

    /// Makes swapped backup records durable.
    pub fn flush(&self) -> Result<(), DispersalError> {
        Ok(self.db.flush_durable()?)
    }

    /// The store's folder.
    pub fn folder(&self) -> &Path {
        self.db.path()
    }

    /// Bytes every object occupies on the nodes (headers included): the
    /// sum of [`Manifest::stored_bytes`]. The first call walks the
    /// manifests; later ones are answered from a running sum.
    pub fn stored_total(&self) -> Result<u64, DispersalError> {
        if let Some(sum) = *self.stored_sum() {
            return Ok(sum);
        }
        // No manifest may change between the walk and recording its sum.
        let _guard = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sum) = *self.stored_sum() {
            return Ok(sum);
        }
        let mut sum = 0u64;
        for m in self.manifests() {
            sum = sum.saturating_add(m?.stored_bytes());
        }
        *self.stored_sum() = Some(sum);
        Ok(sum)
    }

    fn stored_sum(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the manifest of `id` now stored adds to the running sum (0
    /// when there is none, or it cannot be read: the sum is only for
    /// statfs, which must not fail over one damaged record).
    fn stored_of(&self, id: &ObjectId) -> u64 {
        self.manifest(id)
            .ok()
            .flatten()
            .map_or(0, |m| m.stored_bytes())
    }

    /// Moves the running sum, if counted, from `old` to `new` bytes.
    /// Called with `edit` held, after the change is applied.
    fn restate(&self, old: u64, new: u64) {
        if let Some(sum) = self.stored_sum().as_mut() {
            *sum = sum.saturating_sub(old).saturating_add(new);
        }
    }

    fn counting(&self) -> bool {
        self.stored_sum().is_some()
    }

    /// Records manifests and backups of newly sealed objects, durably. The
    /// backups are in their stored form (see the module's doc).
    pub fn publish(&self, items: &[(&Manifest, &[u8])]) -> Result<(), DispersalError> {
        let _guard = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before: u64 = if self.counting() {
            items.iter().map(|(m, _)| self.stored_of(&m.id)).sum()
        } else {
            0
        };
        let mut batch = Batch::new();
        for (m, b) in items {
            batch.insert(key(b'm', &m.id), m.encode());
            batch.insert(key(b'b', &m.id), b);
        }
        self.db.apply(batch)?;
        self.restate(before, items.iter().map(|(m, _)| m.stored_bytes()).sum());
        self.db.flush_durable()?;
        Ok(())
    }

    /// Replaces manifest `old` by `new`, durably, if the stored manifest
    /// is still `old`. Returns false (and changes nothing) when the object
    /// is gone or its manifest changed meanwhile (a concurrent repair,
    /// migration or delete): the caller's view is stale.
    pub fn replace_manifest(&self, old: &Manifest, new: &Manifest) -> Result<bool, DispersalError> {
        let _guard = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.manifest(&old.id)? {
            Some(current) if current == *old => {}
            _ => return Ok(false),
        }
        self.db.insert(key(b'm', &new.id), new.encode())?;
        self.restate(old.stored_bytes(), new.stored_bytes());
        self.db.flush_durable()?;
        Ok(true)
    }

    /// Replaces a backup record (keys repair rebuilt it), in stored form.
    pub fn update_backup(&self, id: &ObjectId, stored: &[u8]) -> Result<(), DispersalError> {
        self.db.insert(key(b'b', id), stored)?;
        self.db.flush_durable()?;
        Ok(())
    }

    /// Destroys the backup records of `ids`, durably (first step of a
    /// delete on this side: without `B` and the local shares the shards
    /// are undecryptable).
    pub fn remove_backups(&self, ids: &[ObjectId]) -> Result<(), DispersalError> {
        self.remove_all(b'b', ids)
    }

    /// Forgets the manifests of `ids`, durably (last step of a delete).
    pub fn remove_manifests(&self, ids: &[ObjectId]) -> Result<(), DispersalError> {
        self.remove_all(b'm', ids)
    }

    fn remove_all(&self, prefix: u8, ids: &[ObjectId]) -> Result<(), DispersalError> {
        // A concurrent compare-and-replace must not re-insert what goes here.
        let _guard = self
            .edit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before: u64 = if prefix == b'm' && self.counting() {
            ids.iter().map(|id| self.stored_of(id)).sum()
        } else {
            0
        };
        let mut batch = Batch::new();
        for id in ids {
            batch.remove(key(prefix, id));
        }
        self.db.apply(batch)?;
        self.restate(before, 0);
        self.db.flush_durable()?;
        Ok(())
    }

    /// Every manifest, in id order.
    pub fn manifests(&self) -> impl Iterator<Item = Result<Manifest, DispersalError>> + '_ {
        self.db.scan_prefix([b'm']).map(|r| {
            let (k, v) = r?;
            let id = ObjectId(k[1..].try_into().unwrap_or([0; 16]));
            Manifest::decode(&v).map_err(|e| self.damaged(&id, e.to_string()))
        })
    }

    /// Ids of every object with a backup record.
    pub fn backup_ids(&self) -> impl Iterator<Item = Result<ObjectId, DispersalError>> + '_ {
        self.db.scan_prefix([b'b']).map(|r| {
            let (k, _) = r?;
            Ok(ObjectId(k[1..].try_into().unwrap_or([0; 16])))
        })
    }
}
