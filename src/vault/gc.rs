//! Destroying objects that no name points at any more.
//!
//! Order per object: both key shares (without them and `B` the shards are
//! undecryptable noise, whatever copies a node kept), then the backup
//! record, the shards and the manifest, and finally the queue entry. Each
//! step is idempotent, so a crash anywhere is finished by the next run.

use super::{Vault, VaultError};

impl Vault {
    /// Destroys every object queued for deletion. Returns how many.
    pub fn collect_garbage(&self) -> Result<usize, VaultError> {
        let ids = self.ns.gc_queue()?;
        if ids.is_empty() {
            return Ok(0);
        }
        self.keys.destroy_many(&ids)?;
        for e in self.ec.destroy_many(&ids)? {
            tracing::warn!("{e}; the shard stays on its node as an orphan");
        }
        self.ns.gc_done(&ids)?;
        Ok(ids.len())
    }
}
