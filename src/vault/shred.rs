//! The shred pass: makes deleted key records unrecoverable on disk.
//!
//! A deletion removes an object's R1, R2 and B at once, but sled keeps old
//! values in its log, and backups of the vault folder keep them too. Each
//! record is sealed under its epoch's key (`keystore::epochs`), and each
//! deletion counts against its records' epochs. A pass:
//!
//! 1. starts a new current epoch if the current one lost records (writers
//!    of the old one finish first);
//! 2. re-seals every surviving R1, R2 and B of the epochs that lost
//!    records under the current epoch, durably;
//! 3. destroys those epochs' keys (both slots of the table overwritten).
//!
//! A crash before step 3 leaves both keys live and every record readable
//! under one of them; the next pass finishes. Step 3 never runs before
//! step 2 is durable, so no live file loses a key.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Vault, VaultError};
use crate::keystore::{Kind, epoch_of_stored};

/// What a shred pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredReport {
    /// Whether the vault's keystore is sealed (an old vault's is not, and
    /// cannot be shredded until `qsfs unlock add` seals it).
    pub sealed: bool,
    /// Deleted key records whose every copy is now noise.
    pub records_shredded: u64,
    /// Live records re-sealed under the current epoch.
    pub records_resealed: u64,
    /// Epoch keys destroyed (0 stands for records kept in clear).
    pub epochs_destroyed: Vec<u32>,
    /// Deleted records still waiting (the R2 store is away).
    pub pending: u64,
}

impl Vault {
    /// Deleted key records waiting for a shred pass.
    pub fn pending_shreds(&self) -> Result<u64, VaultError> {
        Ok(self.keys.dirty()?.values().sum())
    }

    /// Runs a shred pass now (see the module doc).
    pub fn shred(&self) -> Result<ShredReport, VaultError> {
        let Some(epochs) = self.keys.epochs().cloned() else {
            return Ok(ShredReport::default());
        };
        let _one = self
            .shredding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dirty = self.keys.dirty()?;
        let mut report = ShredReport {
            sealed: true,
            ..Default::default()
        };
        if dirty.is_empty() {
            return Ok(report);
        }
        if let Err(e) = self.keys.check_writable() {
            report.pending = dirty.values().sum();
            tracing::warn!("deleted keys wait to be shredded: {e}");
            return Ok(report);
        }
        let set: BTreeSet<u32> = dirty.keys().copied().collect();
        if set.contains(&epochs.current()) {
            epochs.rotate()?;
        }
        report.records_resealed = self.keys.reseal(&set)?;
        report.records_resealed += self.reseal_backups(&set)?;
        epochs.destroy(&set)?;
        self.keys.clear_dirty(&set)?;
        report.records_shredded = dirty.values().sum();
        report.epochs_destroyed = set.into_iter().collect();
        tracing::info!(?report, "shred pass");
        Ok(report)
    }

    fn reseal_backups(&self, set: &BTreeSet<u32>) -> Result<u64, VaultError> {
        let Some(epochs) = self.keys.epochs() else {
            return Ok(0);
        };
        let store = self.ec.store();
        let old: Vec<_> = store
            .backups()
            .filter(|r| {
                r.as_ref().map_or(true, |(_, v)| {
                    v.first() != Some(&crate::dispersal::DISPERSED_BACKUP)
                        && set.contains(&epoch_of_stored(v))
                })
            })
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for (id, v) in old {
            let swapped = self
                .keys
                .apart_from_deletions(|| -> Result<bool, VaultError> {
                    if !self.keys.has_shares(&id)? {
                        return Ok(false);
                    }
                    let w = epochs.writer()?;
                    let new = if v.first() == Some(&crate::dispersal::CLEAR_BACKUP) {
                        Some(w.seal(Kind::Backup, &id, &v[1..])?)
                    } else {
                        epochs.reseal(&w, Kind::Backup, &id, &v)?
                    };
                    Ok(match new {
                        Some(new) => store.swap_backup(&id, &v, &new)?,
                        None => false,
                    })
                })?;
            n += u64::from(swapped);
        }
        store.flush()?;
        Ok(n)
    }
}
