//! The background sealer: one thread that seals files whose close did not
//! (a seal of the same file was on its way, so the close returned at once)
//! and tries failed seals again, with backoff, while the mount runs: staged
//! data reaches the nodes when they come back, without a remount or an
//! fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::FsCore;
use super::files::OpenFile;
use super::seal::SealHow;

/// How often files waiting for a retry are looked at.
const SCAN: Duration = Duration::from_millis(250);

/// Body of the sealer thread; returns when the channel closes.
pub fn run(core: Arc<FsCore>, rx: Receiver<Arc<OpenFile>>) {
    loop {
        match rx.recv_timeout(SCAN) {
            Ok(f) => seal(&core, &f),
            Err(RecvTimeoutError::Timeout) => retry_due(&core),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn seal(core: &FsCore, f: &Arc<OpenFile>) {
    // A state evicted since it was queued has nothing left to seal.
    if !core.file(f.ino).is_some_and(|cur| Arc::ptr_eq(&cur, f)) {
        return;
    }
    // A fragmented file handed on after its commit is compacted first:
    // what this stages, the seal below makes into fewer objects.
    core.compact_file(f);
    // Kept in the table through the reads above (a close meanwhile must
    // not evict it); what it staged keeps it there until sealed.
    f.lock().compact_queued = false;
    if let Err(e) = core.seal_file(f, SealHow::Background) {
        tracing::debug!(
            "ino {}: background seal failed ({e:?}); the data stays staged and is retried",
            f.ino
        );
    }
    core.maybe_evict(f);
}

/// Seals again the files whose retry is due.
fn retry_due(core: &FsCore) {
    let now = Instant::now();
    let due: Vec<_> = core
        .open_files()
        .into_iter()
        .filter(|f| {
            let st = f.lock();
            st.retry.is_some_and(|r| r.due <= now) && !st.content.sealing() && !st.orphan
        })
        .collect();
    for f in due {
        let attempts = f.lock().retry.map_or(0, |r| r.attempts);
        // Summarised with the failures (logsum), not a line per attempt.
        tracing::debug!(ino = f.ino, attempts, "retrying a failed seal");
        seal(core, &f);
    }
}
