//! Destroying objects that no name points at any more.
//!
//! Order per object: both key shares (without them and `B` the shards are
//! undecryptable noise, whatever copies a node kept), then the backup
//! record, the shards and the manifest, and finally the queue entry. Each
//! step is idempotent, so a crash anywhere is finished by the next run. An
//! R2 share whose store is away is destroyed when the store is back.

use super::{Vault, VaultError};

impl Vault {
    /// Destroys every object queued for deletion. Returns how many.
    pub fn collect_garbage(&self) -> Result<usize, VaultError> {
        self.finish_r2_cleanup()?;
        let ids = self.ns.gc_queue()?;
        if ids.is_empty() {
            return Ok(0);
        }
        // An id is queued by the same batch that unnamed its object; that
        // batch must be durable before the object goes, or a crash would
        // bring back a name whose keys are destroyed. The caller may have
        // flushed already (then this costs nothing), or collect while
        // names change (the mount's reaper).
        self.ns.flush_durable()?;
        self.destroy_objects(&ids)?;
        self.ns.gc_done(&ids)?;
        Ok(ids.len())
    }

    /// Destroys R2 shares of deleted objects that waited for their store.
    fn finish_r2_cleanup(&self) -> Result<(), VaultError> {
        if self.keys.check_writable().is_err() {
            return Ok(());
        }
        let ids = self.ns.r2_cleanup_queue()?;
        if !ids.is_empty() {
            self.keys.destroy_many(&ids)?;
            self.ns.r2_cleanup_done(&ids)?;
        }
        Ok(())
    }
}
