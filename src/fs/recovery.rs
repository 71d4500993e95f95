//! Mount-time recovery: what a previous mount (killed, or its machine
//! crashed) left behind is finished before anything is served.
//!
//! - Orphans (files unlinked while open) are destroyed.
//! - Every staging journal is replayed (journal.rs) and what it says is
//!   not committed is sealed from the staging file: a file that was open
//!   when qsfs died keeps everything its writer wrote (process kill), or
//!   what reached the disk (power loss). A seal that fails now keeps the
//!   data staged (served from staging) and is retried in the background.
//! - Staging records of older versions are sealed the same way.
//! - Staging files without journal or record are removed.

use std::collections::HashSet;
use std::path::Path;

use super::FsCore;
use super::journal::{Image, Journal, Replay};
use super::ranges::RangeSet;
use super::seal::SealHow;
use super::staging::{Staging, StagingRecord};
use super::state::Content;
use crate::namespace::Time;
use crate::vault::VaultError;

/// Runs the recovery; fails only if the namespace cannot be read.
pub fn recover(core: &FsCore) -> Result<(), VaultError> {
    let ns = core.vault.namespace();
    for ino in ns.orphans()? {
        match ns.release_orphan(ino) {
            Ok(_) => tracing::info!(
                ino,
                "destroyed a file the previous mount left unlinked while open"
            ),
            Err(e) => tracing::warn!(ino, "cannot destroy an orphan yet: {e}"),
        }
    }
    let mut kept = HashSet::new();
    for (ino, image) in journals(&core.journal_dir) {
        if recover_journal(core, ino, image) {
            kept.insert(ino);
        }
    }
    for (ino, raw) in ns.all_staging()? {
        if kept.contains(&ino) {
            // The journal was newer; the record is dropped with it.
            if let Some(f) = core.file(ino) {
                f.lock().legacy_record = true;
            }
            continue;
        }
        if recover_record(core, ino, &raw) {
            kept.insert(ino);
        }
    }
    // Staging files with neither journal nor record: nothing was promised.
    if let Ok(entries) = std::fs::read_dir(&core.staging_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            // `<ino>` or `<ino>.<piece>`; stdin spools and folders are not ours.
            let Some(ino) = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !kept.contains(&ino) && core.file(ino).is_none() {
                // Still plaintext: overwritten before it goes.
                core.wiper.remove(&e.path());
            }
        }
    }
    core.want_flush();
    super::commit::tick(core);
    Ok(())
}

/// The journals in `dir`, by inode; damaged ones are reported and removed.
fn journals(dir: &Path) -> Vec<(u64, Option<Image>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(ino) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
            // A compaction's temporary file: the journal it was to replace
            // is whole.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        match Image::read(&path) {
            Ok(img) if img.ino == ino => out.push((ino, Some(img))),
            Ok(_) => {
                tracing::error!(
                    "{}: names another inode; its staged data cannot be matched to a file",
                    path.display()
                );
                out.push((ino, None));
            }
            Err(e @ super::journal::JournalError::Unstarted { .. }) => {
                // Nothing in it was ever answered to a writer.
                tracing::info!("{e} (the previous mount stopped while starting it): removed");
                out.push((ino, None));
            }
            Err(e) => {
                tracing::error!("{e}; the unsealed data it described cannot be recovered");
                out.push((ino, None));
            }
        }
    }
    out.sort_by_key(|(ino, _)| *ino);
    out
}

/// Replays one journal and seals what it holds. True if the file keeps
/// staged data (its staging file must stay).
fn recover_journal(core: &FsCore, ino: u64, image: Option<Image>) -> bool {
    let ns = core.vault.namespace();
    let path = super::journal::path_for(&core.journal_dir, ino);
    let drop_all = || {
        let _ = std::fs::remove_file(&path);
        let _ = ns.remove_journal_mark(ino);
        super::staging::remove_file(&core.staging_dir, ino, &core.wiper);
    };
    let Some(image) = image else {
        drop_all();
        return false;
    };
    let Ok(inode) = ns.inode(ino) else {
        // The file is gone: so is the need for its data.
        drop_all();
        return false;
    };
    let mark = match ns.journal_mark(ino) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(ino, "{e}; replaying its whole journal");
            None
        }
    };
    let mut replay = image.replay(mark, inode.size);
    let staging = match Staging::existing(&core.staging_dir, ino, &core.wiper) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(ino, "cannot open its staging file ({e})");
            None
        }
    };
    // Bytes the journal names that never reached the staging file.
    let lost = match &staging {
        Some(s) => match s.data() {
            Ok(data) => {
                let mut lost = replay.dirty.clone();
                lost.subtract(&data);
                lost
            }
            Err(e) => {
                tracing::warn!(ino, "cannot map its staging file ({e}); trusting it whole");
                RangeSet::new()
            }
        },
        None => replay.dirty.clone(),
    };
    if !lost.is_empty() {
        tracing::warn!(
            ino,
            bytes = lost.len(),
            "staged bytes named by the journal never reached the disk (a power loss?); the last committed bytes serve them"
        );
    }
    replay.drop_lost(&lost);
    if is_nothing(&replay, &inode) {
        drop_all();
        return false;
    }
    // The journal's own mtime is the time of the last write it recorded;
    // read before reopening it, which truncates it (and so touches it).
    let written = std::fs::metadata(&path)
        .ok()
        .and_then(|m| m.modified().ok())
        .map(super::attr::from_fuser)
        .unwrap_or_else(Time::now);
    let journal = match Journal::reopen(&image, &core.journal_dir) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(ino, "cannot reopen its staging journal ({e})");
            return false;
        }
    };
    let mtime = recovered_mtime(&inode, written);
    reseal(core, ino, replay, staging, Some(journal), mtime, "journal")
}

/// The mtime a recovered file gets: the one its inode records when that
/// record was made after the last staged write (a `touch -d` or `cp -p`
/// after writing, made durable before the mount stopped), otherwise the
/// time of that last write.
fn recovered_mtime(inode: &crate::namespace::Inode, written: Time) -> Time {
    if inode.ctime >= written {
        inode.mtime
    } else {
        written
    }
}

/// True when replaying changes nothing (every change was committed).
fn is_nothing(r: &Replay, inode: &crate::namespace::Inode) -> bool {
    r.dirty.is_empty() && r.cuts.is_empty() && r.size == inode.size
}

/// A staging record of an older qsfs version: its dirty ranges and size.
fn recover_record(core: &FsCore, ino: u64, raw: &[u8]) -> bool {
    let ns = core.vault.namespace();
    let record = match StagingRecord::decode(raw) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(
                ino,
                "damaged staging record ({e}); its staged data cannot be recovered"
            );
            let _ = ns.remove_staging(ino);
            return false;
        }
    };
    let staging = match Staging::existing(&core.staging_dir, ino, &core.wiper) {
        Ok(Some(s)) => Some(s),
        Ok(None) if record.dirty.is_empty() => None,
        Ok(None) | Err(_) => {
            tracing::error!(
                ino,
                "staging record without its staging file; its unsealed data is lost"
            );
            let _ = ns.remove_staging(ino);
            return false;
        }
    };
    if ns.inode(ino).is_err() {
        let _ = ns.remove_staging(ino);
        super::staging::remove_file(&core.staging_dir, ino, &core.wiper);
        return false;
    }
    let replay = Replay::from_record(record.size, record.dirty);
    let kept = reseal(core, ino, replay, staging, None, record.mtime, "record");
    if let Some(f) = core.file(ino) {
        f.lock().legacy_record = true;
        core.maybe_evict(&f);
    }
    kept
}

/// Loads the file with the replayed state and seals it. True if the file
/// keeps staged data.
fn reseal(
    core: &FsCore,
    ino: u64,
    replay: Replay,
    staging: Option<Staging>,
    journal: Option<Journal>,
    mtime: Time,
    from: &str,
) -> bool {
    let Ok(f) = core.file_or_load(ino) else {
        return false;
    };
    {
        let mut st = f.lock();
        let extents = st.content.base().to_vec();
        st.content = Content::recovered(replay.size, &extents, replay.dirty.clone(), replay.cuts);
        st.mtime = mtime;
        st.ctime = st.ctime.max(mtime);
        st.staging = staging;
        st.journal = journal;
    }
    tracing::info!(
        ino,
        bytes = replay.dirty.len(),
        size = replay.size,
        from,
        "sealing data the previous mount left staged"
    );
    match core.seal_file(&f, SealHow::Wait) {
        Ok(Some(ticket)) => {
            if let Err(e) = core.wait_commit(&f, ticket) {
                tracing::error!(
                    ino,
                    "staged data not committed yet ({e:?}); it stays staged and is retried"
                );
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(
                ino,
                "staged data not sealed yet ({e:?}); it stays staged and is retried"
            );
        }
    }
    core.maybe_evict(&f);
    core.file(ino).is_some()
}
