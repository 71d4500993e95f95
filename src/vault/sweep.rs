//! Cleaning up after a qsfs process that died mid-write (kill -9, power
//! loss, a failed command): objects it started sealing but never named.
//!
//! Only objects with an open record in the intent log (intents.rs) are
//! considered, and of those only the ones no name points at are destroyed
//! (key shares, backup record, shards and temporary shard files, manifest).
//! A vault whose namespace or manifests went missing is therefore never
//! emptied by a sweep: the work is bounded by what was in flight.

use std::collections::HashSet;

use super::{Vault, VaultError};
use crate::ObjectId;

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// In-flight objects that turned out to be named (their write finished).
    pub completed: u64,
    /// In-flight objects never named, destroyed.
    pub destroyed: u64,
}

impl SweepReport {
    /// True when there was nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == SweepReport::default()
    }
}

impl Vault {
    /// Settles the objects `in_flight` left by an interrupted run: named
    /// ones are kept, the others destroyed.
    pub fn sweep(&self, in_flight: &[ObjectId]) -> Result<SweepReport, VaultError> {
        let referenced = self.ns.referenced_objects()?;
        let queued: HashSet<ObjectId> = self.ns.gc_queue()?.into_iter().collect();
        let (named, unnamed): (Vec<ObjectId>, Vec<ObjectId>) = in_flight
            .iter()
            .partition(|id| referenced.contains(id) || queued.contains(id));
        self.destroy_objects(&unnamed)?;
        self.intents
            .done(in_flight)
            .map_err(super::io_err("update the intent log"))?;
        Ok(SweepReport {
            completed: named.len() as u64,
            destroyed: unnamed.len() as u64,
        })
    }
}
