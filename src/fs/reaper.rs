//! The reaper: one thread that destroys the objects of deleted files and
//! replaced versions, apart from the group committer.
//!
//! Destroying an object is a remove on every node. Done by the committer
//! after each group, it held up the next group and every fsync(2) waiting
//! for it: under fsstress, garbage took 80% of the committer's time. Here
//! it runs beside the commits; [`Vault::collect_garbage`] makes the names
//! that queued an object durable before the object goes, so running while
//! names change is safe.
//!
//! [`Vault::collect_garbage`]: crate::vault::Vault::collect_garbage

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::FsCore;

/// How long after a failed collection it is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// How long deleted keys may wait for a shred pass: a pass re-seals the
/// survivors of every epoch that lost records, so deletions in a burst
/// (an `rm -rf`, a build's temporaries) share one.
pub const SHRED_DELAY: Duration = Duration::from_secs(30);

/// Body of the reaper thread. Each message on `rx` asks for a collection
/// (many asks while one runs make one more); a shred pass follows within
/// [`SHRED_DELAY`] of a deletion. Returns when the channel closes, after
/// a last collection and shred pass.
pub fn run(core: Arc<FsCore>, rx: Receiver<()>) {
    let mut failed = false;
    let mut shred_at: Option<Instant> = None;
    loop {
        let mut wait = if failed { RETRY } else { Duration::MAX };
        if let Some(at) = shred_at {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        match rx.recv_timeout(wait) {
            Ok(()) => while rx.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                collect(&core);
                shred(&core);
                return;
            }
        }
        failed = !collect(&core);
        if shred_at.is_some_and(|at| at <= Instant::now()) {
            shred_at = None;
            if !shred(&core) {
                shred_at = Some(Instant::now() + RETRY);
            }
        }
        if shred_at.is_none() && core.vault.pending_shreds().is_ok_and(|n| n > 0) {
            shred_at = Some(Instant::now() + SHRED_DELAY);
        }
    }
}

/// A shred pass; false if it failed (the deleted keys stay counted).
fn shred(core: &FsCore) -> bool {
    match core.vault.shred() {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("deleted files' keys could not be shredded yet: {e}");
            false
        }
    }
}

/// Destroys what is queued; false if that failed (it is left queued).
fn collect(core: &FsCore) -> bool {
    match core.vault.collect_garbage() {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("deleted files' objects could not be destroyed yet: {e}");
            false
        }
    }
}
