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
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::FsCore;

/// How long after a failed collection it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Body of the reaper thread. Each message on `rx` asks for a collection
/// (many asks while one runs make one more); returns when the channel
/// closes, after a last collection.
pub fn run(core: Arc<FsCore>, rx: Receiver<()>) {
    let mut failed = false;
    loop {
        let wait = if failed { RETRY } else { Duration::MAX };
        match rx.recv_timeout(wait) {
            Ok(()) => while rx.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                collect(&core);
                return;
            }
        }
        failed = !collect(&core);
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
