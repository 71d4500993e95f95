//! Moving one shard to another node by verified transfer: the step under
//! `qsfs node drain` and `qsfs rebalance`.
//!
//! Order, so that a crash or a concurrent change never loses a shard:
//! 1. the target writes the shard: chunks copied from the source when they
//!    verify against the manifest, rebuilt from `k` other shards when they
//!    do not; the target commits only if the shard's RMHT root equals the
//!    manifest's (`Dispersal::place_shard`);
//! 2. the manifest switches to the target, compare-and-replace: if the
//!    object changed or was deleted meanwhile nothing switches and the new
//!    copy is removed again;
//! 3. only then the source deletes its shard.
//!
//! A crash after 1 leaves an unreferenced shard on the target (an orphan
//! for fsck); after 2, a stale shard on the source that drain's cleanup or
//! fsck removes. Neither is ever read, because reads follow the manifest.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dispersal::Manifest;
use crate::node::{Node, ShardKey};
use crate::vault::{Vault, VaultError};

/// One shard moved from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMove {
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub index: usize,
    /// Node it left.
    pub from: String,
    /// Node it went to.
    pub to: String,
    /// Chunks copied from the source after they verified.
    pub copied: u64,
    /// Chunks rebuilt from the other shards (the source's failed
    /// verification or could not be read).
    pub rebuilt: u64,
    /// Bytes read from nodes.
    pub bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Why the source still has its (now unreferenced) copy, if it does.
    pub source_left: Option<String>,
}

/// How a move ended.
#[derive(Debug)]
pub(super) enum MoveOutcome {
    /// Placed, switched, source deleted (or its deletion failed, noted).
    Moved(ShardMove),
    /// The object changed or went away meanwhile: nothing switched, the
    /// target's copy was removed again. Re-read the manifest and retry.
    Stale,
    /// The object is being deleted: its destruction purges every node,
    /// the copy being written included, so the write failed. Nothing to
    /// move any more.
    Gone,
}

impl Vault {
    /// Moves shard `index` of `m`'s object to `target` (see the module
    /// comment for the order of steps).
    pub(super) fn move_shard(
        &self,
        m: &Manifest,
        index: usize,
        target: &Arc<dyn Node>,
    ) -> Result<MoveOutcome, VaultError> {
        let from = m.placement[index].clone();
        let _busy = self
            .intents()
            .hold(m.id)
            .map_err(crate::vault::io_err("update the intent log"))?;
        let placed = match self.dispersal().place_shard(m, index, target, true) {
            Ok(p) => p,
            Err(_) if self.being_deleted(&m.id) => return Ok(MoveOutcome::Gone),
            Err(e) => return Err(e.into()),
        };
        let mut new = m.clone();
        new.placement[index] = target.name().to_string();
        new.missing &= !(1u32 << index);
        let key = ShardKey {
            object: m.id,
            index: index as u8,
        };
        if !self.dispersal().store().replace_manifest(m, &new)? {
            // Remove our copy unless the object's current manifest uses a
            // shard under the same key on the same node (a concurrent
            // repair that placed the very same shard there).
            let used = self
                .dispersal()
                .store()
                .manifest(&m.id)?
                .is_some_and(|cur| {
                    cur.placement.get(index).map(String::as_str) == Some(target.name())
                });
            if !used && let Err(e) = target.delete(key) {
                tracing::warn!("{e}; the unreferenced copy stays as an orphan for `qsfs fsck`");
            }
            return Ok(MoveOutcome::Stale);
        }
        let source_left = match self.dispersal().node(&from) {
            Some(src) => src.delete(key).err().map(|e| e.to_string()),
            None => Some(format!("node {from} is not configured")),
        };
        Ok(MoveOutcome::Moved(ShardMove {
            object: m.id.to_hex(),
            index,
            from,
            to: target.name().to_string(),
            copied: placed.copied,
            rebuilt: placed.rebuilt,
            bytes_read: placed.bytes_read,
            bytes_written: placed.bytes_written,
            source_left,
        }))
    }

    /// Whether object `id` is queued for deletion or already destroyed.
    fn being_deleted(&self, id: &crate::ObjectId) -> bool {
        self.namespace().queued_for_gc(id).unwrap_or(false)
            || matches!(self.dispersal().store().manifest(id), Ok(None))
    }

    /// After moves: objects deleted while their shard was moving may have
    /// had their new copy written after the delete purged the object. Any
    /// such copy whose manifest is gone now is removed.
    pub(super) fn settle_moved(&self, moves: &[ShardMove]) {
        for mv in moves {
            let Some(id) = crate::ObjectId::from_hex(&mv.object) else {
                continue;
            };
            if !matches!(self.dispersal().store().manifest(&id), Ok(None)) {
                continue;
            }
            if let Some(node) = self.dispersal().node(&mv.to)
                && let Err(e) = node.delete(ShardKey {
                    object: id,
                    index: mv.index as u8,
                })
            {
                tracing::warn!(
                    "{e}; the copy of a deleted object stays as an orphan for `qsfs fsck`"
                );
            }
        }
    }
}
