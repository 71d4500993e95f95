//! Cleaning up after a qsfs process that died mid-write (kill -9, power
//! loss): temporary shard files, objects committed but never named, key,
//! backup and shard records without a manifest.
//!
//! The durability order guarantees such leftovers are never referenced, so
//! removing them is always safe; they only cost space. A marker file
//! (`VAULT/.dirty`) exists while a process has the vault open, so the
//! sweep runs only when the previous process did not close cleanly.

use std::collections::HashSet;

use super::{Vault, VaultError, io_err};
use crate::ObjectId;
use crate::node::ShardKey;

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Temporary files of shard writes that never committed.
    pub temp_files: u64,
    /// Objects with a manifest but no name pointing at them.
    pub orphan_objects: u64,
    /// Shard files of objects without a manifest.
    pub orphan_shards: u64,
    /// Key-share records of objects without a manifest.
    pub stray_keys: u64,
    /// Backup records without a manifest.
    pub stray_backups: u64,
}

impl SweepReport {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        *self == SweepReport::default()
    }
}

impl Vault {
    /// Removes every leftover of interrupted writes (see the module doc).
    pub fn sweep(&self) -> Result<SweepReport, VaultError> {
        let mut report = SweepReport::default();
        let referenced = self.ns.referenced_objects()?;
        let queued: HashSet<ObjectId> = self.ns.gc_queue()?.into_iter().collect();
        let mut manifests = HashSet::new();
        let mut orphans = Vec::new();
        for m in self.ec.store().manifests() {
            let m = m?;
            if !referenced.contains(&m.id) && !queued.contains(&m.id) {
                orphans.push(m.id);
            } else {
                manifests.insert(m.id);
            }
        }
        if !orphans.is_empty() {
            report.orphan_objects = orphans.len() as u64;
            self.keys.destroy_many(&orphans)?;
            self.ec.destroy_many(&orphans)?;
        }
        let stray_keys: Vec<ObjectId> =
            self.keys.ids()?.into_iter().filter(|id| !manifests.contains(id) && !queued.contains(id)).collect();
        if !stray_keys.is_empty() {
            report.stray_keys = stray_keys.len() as u64;
            self.keys.destroy_many(&stray_keys)?;
        }
        let stray_backups: Vec<ObjectId> = self
            .ec
            .store()
            .backup_ids()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|id| !manifests.contains(id) && !queued.contains(id))
            .collect();
        if !stray_backups.is_empty() {
            report.stray_backups = stray_backups.len() as u64;
            self.ec.store().remove_backups(&stray_backups)?;
        }
        for node in self.ec.nodes() {
            // A node that cannot be listed now keeps its leftovers until a
            // later sweep; that costs space, never data.
            let Ok(listing) = node.list() else { continue };
            for tmp in &listing.leftovers {
                if std::fs::remove_file(tmp).is_ok() {
                    report.temp_files += 1;
                }
            }
            for shard in &listing.shards {
                if !manifests.contains(&shard.key.object) && !queued.contains(&shard.key.object) {
                    let key = ShardKey { object: shard.key.object, index: shard.key.index };
                    if node.delete(key).is_ok() {
                        report.orphan_shards += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Marks the vault open; if the previous process left its mark, it
    /// died mid-run and its leftovers are swept first.
    pub(super) fn recover_if_interrupted(&self) -> Result<(), VaultError> {
        let marker = self.root.join(".dirty");
        if marker.exists() {
            let report = self.sweep()?;
            if !report.is_empty() {
                tracing::info!(?report, "cleaned up after an interrupted qsfs process");
            }
        } else {
            std::fs::write(&marker, b"a qsfs process has this vault open\n")
                .map_err(io_err(format!("write {}", marker.display())))?;
        }
        Ok(())
    }
}
