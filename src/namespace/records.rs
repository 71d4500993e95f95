//! Queues and side records kept with the namespace: objects waiting to be
//! destroyed, R2 shares waiting for their store, and the staging records
//! of files with unsealed writes (their format belongs to `fs/`).

use super::{Batch, Namespace, Result, idkey, inokey};
use crate::ObjectId;

impl Namespace {
    /// Objects queued for deletion.
    pub fn gc_queue(&self) -> Result<Vec<ObjectId>> {
        self.ids(b'g')
    }

    /// Removes finished deletions from the queue (durably).
    pub fn gc_done(&self, ids: &[ObjectId]) -> Result<()> {
        self.remove_ids(b'g', ids)
    }

    /// Records deleted objects whose R2 share must still be destroyed
    /// (their R2 store was away), durably.
    pub fn queue_r2_cleanup(&self, ids: &[ObjectId]) -> Result<()> {
        let mut b = Batch::new();
        for id in ids {
            b.insert(idkey(b'r', id), []);
        }
        self.db.apply(b)?;
        self.db.flush_durable()?;
        Ok(())
    }

    /// Objects whose R2 share still waits to be destroyed.
    pub fn r2_cleanup_queue(&self) -> Result<Vec<ObjectId>> {
        self.ids(b'r')
    }

    /// Clears finished R2 cleanups, durably.
    pub fn r2_cleanup_done(&self, ids: &[ObjectId]) -> Result<()> {
        self.remove_ids(b'r', ids)
    }

    /// The object ids recorded under `prefix`.
    fn ids(&self, prefix: u8) -> Result<Vec<ObjectId>> {
        self.db
            .scan_prefix([prefix])
            .map(|r| {
                let (k, _) = r?;
                Ok(ObjectId(
                    k.get(1..17)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 16]),
                ))
            })
            .collect()
    }

    /// Removes object ids recorded under `prefix`, durably.
    fn remove_ids(&self, prefix: u8, ids: &[ObjectId]) -> Result<()> {
        let mut b = Batch::new();
        for id in ids {
            b.remove(idkey(prefix, id));
        }
        self.db.apply(b)?;
        self.db.flush_durable()?;
        Ok(())
    }

    /// Records (or replaces) the staging record of file `ino`.
    pub fn put_staging(&self, ino: u64, record: &[u8]) -> Result<()> {
        self.db.insert(inokey(b's', ino), record)?;
        Ok(())
    }

    /// The staging record of file `ino`.
    pub fn staging(&self, ino: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(inokey(b's', ino))?)
    }

    /// Every staging record: (inode, record).
    pub fn all_staging(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        self.db
            .scan_prefix([b's'])
            .map(|r| {
                let (k, v) = r?;
                Ok((
                    k.get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0),
                    v,
                ))
            })
            .collect()
    }

    /// Forgets the staging record of file `ino`.
    pub fn remove_staging(&self, ino: u64) -> Result<()> {
        self.db.remove(inokey(b's', ino))?;
        Ok(())
    }

    /// Writes everything so far to the OS (it survives the process being
    /// killed, not a power loss; [`Namespace::flush_durable`] does both).
    pub fn flush(&self) -> Result<()> {
        Ok(self.db.flush()?)
    }
}
