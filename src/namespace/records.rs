//! Queues and side records kept with the namespace: objects waiting to be
//! destroyed, R2 shares waiting for their store, the journal marks of
//! files with unsealed writes, and the staging records older versions
//! wrote (their formats belong to `fs/`).
//!
//! Journal mark, key `j` + inode (big-endian), format v1, little-endian:
//! ```text
//! u8 version = 1   u64 epoch   u64 entries
//! ```
//! "The inode's content includes the first `entries` entries of the
//! staging journal of that epoch" (see `fs/journal.rs`); written in the
//! same atomic batch as the content it describes.

use super::{Batch, Namespace, NamespaceError, Result, idkey, inokey};
use crate::ObjectId;

const MARK_VERSION: u8 = 1;

/// How far into a file's staging journal its committed content reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalMark {
    /// The journal's epoch.
    pub epoch: u64,
    /// Entries of it the committed content includes.
    pub seq: u64,
}

impl JournalMark {
    /// Encodes the mark.
    pub fn encode(&self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[0] = MARK_VERSION;
        b[1..9].copy_from_slice(&self.epoch.to_le_bytes());
        b[9..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Decodes a mark.
    pub fn decode(b: &[u8]) -> Option<JournalMark> {
        if b.len() != 17 || b[0] != MARK_VERSION {
            return None;
        }
        Some(JournalMark {
            epoch: u64::from_le_bytes(b[1..9].try_into().ok()?),
            seq: u64::from_le_bytes(b[9..].try_into().ok()?),
        })
    }
}

impl Namespace {
    /// Objects queued for deletion.
    pub fn gc_queue(&self) -> Result<Vec<ObjectId>> {
        self.ids(b'g')
    }

    /// Whether object `id` is queued for deletion.
    pub fn queued_for_gc(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.db.get(idkey(b'g', id))?.is_some())
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

    /// The journal mark of file `ino`, if it has one.
    pub fn journal_mark(&self, ino: u64) -> Result<Option<JournalMark>> {
        match self.db.get(inokey(b'j', ino))? {
            None => Ok(None),
            Some(v) => JournalMark::decode(&v)
                .map(Some)
                .ok_or(NamespaceError::Record {
                    ino,
                    detail: "undecodable journal mark".into(),
                }),
        }
    }

    /// Forgets the journal mark of file `ino` (its journal is gone).
    pub fn remove_journal_mark(&self, ino: u64) -> Result<()> {
        self.db.remove(inokey(b'j', ino))?;
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

    /// [`Namespace::flush`], only when something changed since the last one.
    pub fn flush_if_changed(&self) -> Result<()> {
        Ok(self.db.flush_if_changed()?)
    }
}
