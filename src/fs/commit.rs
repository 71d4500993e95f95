//! The group committer: one thread that makes sealed files durable in
//! groups (shards, keystore, manifests, names: one barrier per step for up
//! to 64 files), so a tar of thousands of small files does not cost an
//! fsync storm. It also flushes metadata-only changes every few seconds
//! (as ext4's journal does), destroys deleted objects, and retries commits
//! that failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fuser::Errno;

use super::seal::Job;
use super::{FsCore, errno};
use crate::ObjectId;
use crate::namespace::NamespaceError;

/// Files per group commit.
const GROUP: usize = 256;
/// How long a group waits for more files after its first one. Nobody
/// waits on it (close returns after the seal), unless an fsync does: then
/// the group goes at once.
const GATHER: Duration = Duration::from_millis(500);
/// Poll step while gathering, to notice an fsync waiting.
const GATHER_STEP: Duration = Duration::from_millis(2);
/// How often metadata changes are made durable and deletions run.
const TICK: Duration = Duration::from_secs(2);
/// How often failed commits are retried.
const RETRY: Duration = Duration::from_secs(30);

/// Body of the committer thread; returns when the channel closes.
pub fn run(core: Arc<FsCore>, rx: Receiver<Job>) {
    let mut last_retry = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(job) => {
                let mut batch = vec![job];
                let deadline = Instant::now() + GATHER;
                while batch.len() < GROUP {
                    if let Ok(j) = rx.try_recv() {
                        batch.push(j);
                        continue;
                    }
                    if core.fsync_waiting() || Instant::now() >= deadline {
                        break;
                    }
                    match rx.recv_timeout(GATHER_STEP) {
                        Ok(j) => batch.push(j),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                commit_batch(&core, batch);
            }
            Err(RecvTimeoutError::Timeout) => {
                tick(&core);
                if last_retry.elapsed() >= RETRY {
                    last_retry = Instant::now();
                    retry_failed(&core);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                tick(&core);
                return;
            }
        }
    }
}

/// Makes pending metadata durable and runs deletions.
pub fn tick(core: &FsCore) {
    // Summaries of repeated warnings are written while reads go on, not
    // only when the next warning comes.
    core.vault.tick_warnings();
    if !core.take_flush_wanted() {
        return;
    }
    if let Err(e) = core.vault.namespace().flush_durable() {
        tracing::error!("cannot make the namespace durable: {e}");
        core.want_flush();
        return;
    }
    if let Err(e) = core.vault.collect_garbage() {
        tracing::warn!("deleted files' objects could not be destroyed yet: {e}");
    }
}

fn retry_failed(core: &FsCore) {
    let files: Vec<_> = core
        .files
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for f in files {
        let retry = {
            let st = f.lock();
            st.error.is_some() && st.handles == 0 && st.sealing.is_none() && !st.orphan
        };
        if retry {
            tracing::info!("ino {}: retrying its failed seal", f.ino);
            if let Err(e) = core.seal_file(&f) {
                tracing::warn!("ino {}: retry failed ({e:?}); the data stays staged", f.ino);
                f.lock().error = Some(e);
            }
        }
    }
}

fn commit_batch(core: &FsCore, mut batch: Vec<Job>) {
    let vault = &core.vault;
    let ns = vault.namespace();
    let mut objs = Vec::new();
    let mut owner = Vec::new();
    for (j, job) in batch.iter_mut().enumerate() {
        for o in job.objs.drain(..) {
            owner.push(j);
            objs.push(o);
        }
    }
    let mut failed: Vec<Option<String>> = vec![None; batch.len()];
    let results = vault.commit(&mut objs);
    // Shards that became durable, per job, for the log line.
    let mut shards = vec![(0usize, 0usize); batch.len()];
    for (o, j) in objs.iter().zip(&owner) {
        let n = vault.config().n;
        shards[*j].0 += n - o.missing_shards().count_ones() as usize;
        shards[*j].1 += n;
    }
    for (r, j) in results.into_iter().zip(&owner) {
        if let Err(e) = r
            && failed[*j].is_none()
        {
            failed[*j] = Some(e.to_string());
        }
    }
    let ids_of = |j: usize| -> Vec<ObjectId> {
        objs.iter()
            .zip(&owner)
            .filter(|(_, o)| **o == j)
            .map(|(x, _)| x.id())
            .collect()
    };
    let mut gone = vec![false; batch.len()];
    for (j, job) in batch.iter().enumerate() {
        if failed[j].is_some() {
            continue;
        }
        let (mtime, ctime) = {
            let st = job.file.lock();
            (st.mtime, st.ctime)
        };
        match ns.set_content(job.file.ino, job.extents.clone(), job.size, mtime, ctime) {
            Ok(_) => {}
            // The file was deleted meanwhile: its new objects are garbage.
            Err(NamespaceError::NotFound(_)) => gone[j] = true,
            Err(e) => failed[j] = Some(e.to_string()),
        }
    }
    if let Err(e) = ns.flush_durable() {
        // The names may or may not reach the disk: the objects' intents
        // stay open, the data stays staged and is sealed again.
        for f in failed.iter_mut() {
            f.get_or_insert_with(|| format!("the namespace could not be made durable: {e}"));
        }
        for (j, job) in batch.iter().enumerate() {
            finish(core, job, failed[j].clone(), None);
        }
        return;
    }
    let named: Vec<ObjectId> = (0..batch.len())
        .filter(|j| failed[*j].is_none() && !gone[*j])
        .flat_map(ids_of)
        .collect();
    let discarded: Vec<ObjectId> = (0..batch.len())
        .filter(|j| failed[*j].is_some() || gone[*j])
        .flat_map(ids_of)
        .collect();
    vault.settle_named(&named);
    vault.settle_failed(&discarded);
    if let Err(e) = vault.collect_garbage() {
        tracing::warn!("replaced objects could not be destroyed yet: {e}");
    }
    for (j, job) in batch.iter().enumerate() {
        finish(core, job, failed[j].clone(), Some(shards[j]));
    }
}

/// Applies the outcome of a job to its file's state and wakes its waiters.
fn finish(core: &FsCore, job: &Job, failure: Option<String>, shards: Option<(usize, usize)>) {
    let f = &job.file;
    let mut st = f.lock();
    match &failure {
        None => {
            st.base = crate::namespace::truncate_extents(&job.extents, st.size);
            if st.size != job.size {
                st.meta_dirty = true;
            }
            if let Some(mut done) = st.sealing.take() {
                done.subtract(&st.rewritten);
                st.dirty.subtract(&done);
            }
            // The staging record and file stay until the state is evicted
            // (files.rs): dropping them here, before the record's removal
            // reached the log, could let a crash reseal stale bytes.
            let (written, total) = shards.unwrap_or((0, 0));
            tracing::info!(
                ino = f.ino,
                bytes = job.bytes,
                size = job.size,
                ms = job.started.elapsed().as_millis() as u64,
                shards = format!("{written}/{total}"),
                "sealed"
            );
        }
        Some(why) => {
            st.sealing = None;
            st.meta_dirty = true;
            st.error = Some(if errno::no_space(why) {
                Errno::ENOSPC
            } else {
                Errno::EIO
            });
            tracing::error!(
                "ino {}: commit failed: {why}; the data stays staged and is retried",
                f.ino
            );
        }
    }
    st.rewritten = super::ranges::RangeSet::new();
    st.committed = st.committed.max(job.ticket);
    f.changed.notify_all();
    drop(st);
    core.maybe_evict(f);
}
