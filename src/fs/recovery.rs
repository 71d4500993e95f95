//! Mount-time recovery: what a previous mount (killed, or its machine
//! crashed) left behind is finished before anything is served.
//!
//! - Orphans (files unlinked while open) are destroyed.
//! - Every staging record is sealed again from its staging file: files
//!   whose close(2) returned success get their data sealed and committed.
//!   A seal that fails now keeps the data staged (served from staging) and
//!   is retried by the committer.
//! - Staging files without a record (never closed) are removed.

use std::collections::HashSet;

use super::FsCore;
use super::staging::{Staging, StagingRecord};
use crate::vault::VaultError;

/// Runs the recovery; fails only if the namespace cannot be read.
pub fn recover(core: &FsCore) -> Result<(), VaultError> {
    let ns = core.vault.namespace();
    for ino in ns.orphans()? {
        match ns.release_orphan(ino) {
            Ok(_) => tracing::info!(
                ino,
                "destroyed a file unlinked while open before the last unmount"
            ),
            Err(e) => tracing::warn!(ino, "cannot destroy an orphan yet: {e}"),
        }
    }
    let mut staged = HashSet::new();
    for (ino, raw) in ns.all_staging()? {
        staged.insert(ino);
        let record = match StagingRecord::decode(&raw) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    ino,
                    "damaged staging record ({e}); its staged data cannot be recovered"
                );
                let _ = ns.remove_staging(ino);
                continue;
            }
        };
        let staging = match Staging::existing(&core.staging_dir, ino) {
            Ok(Some(s)) => s,
            Ok(None) if record.dirty.is_empty() => {
                // Only a size change was pending: no staging file needed.
                let _ = std::fs::File::create(Staging::path_for(&core.staging_dir, ino));
                match Staging::existing(&core.staging_dir, ino) {
                    Ok(Some(s)) => s,
                    _ => continue,
                }
            }
            Ok(None) | Err(_) => {
                tracing::error!(
                    ino,
                    "staging record without its staging file; its unsealed data is lost"
                );
                let _ = ns.remove_staging(ino);
                continue;
            }
        };
        let f = match core.file_or_load(ino) {
            Ok(f) => f,
            Err(_) => {
                // The file is gone: so is the need for its data.
                let _ = ns.remove_staging(ino);
                staging.remove();
                continue;
            }
        };
        {
            let mut st = f.lock();
            st.size = record.size;
            st.mtime = record.mtime;
            st.dirty = record.dirty.clone();
            st.meta_dirty = true;
            st.recorded = true;
            st.staging = Some(staging);
        }
        tracing::info!(
            ino,
            bytes = record.dirty.len(),
            "sealing data staged before the last unmount"
        );
        match core.seal_file(&f) {
            Ok(Some(ticket)) => {
                if let Err(e) = core.wait_commit(&f, ticket) {
                    tracing::error!(
                        ino,
                        "staged data not committed yet ({e:?}); it stays staged and is retried"
                    );
                    f.lock().error = Some(e);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(
                    ino,
                    "staged data not sealed yet ({e:?}); it stays staged and is retried"
                );
                f.lock().error = Some(e);
            }
        }
        core.maybe_evict(&f);
    }
    // Staging files of files never closed (no record): nothing was promised.
    if let Ok(entries) = std::fs::read_dir(&core.staging_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            // `<ino>` or `<ino>.<piece>`; stdin spools and others are not ours.
            let Some(ino) = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !staged.contains(&ino) && core.file(ino).is_none() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    core.want_flush();
    super::commit::tick(core);
    Ok(())
}
