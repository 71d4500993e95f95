//! The group committer: one thread that makes sealed files durable in
//! groups (shards, keystore, manifests, names: one barrier per step for
//! every file sealed meanwhile), so a tar of thousands of small files does
//! not cost an fsync storm. Groups come from load, not from a timer: a
//! lone seal commits at once, and seals that arrive while a group commits
//! form the next one. It also flushes metadata-only changes every few
//! seconds (as ext4's journal does) and destroys deleted objects.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::seal::Job;
use super::{FsCore, errno};
use crate::ObjectId;
use crate::namespace::NamespaceError;
use crate::vault::VaultError;

/// Files per group commit at most.
const GROUP: usize = 256;
/// How often metadata changes are made durable and deletions run.
const TICK: Duration = Duration::from_secs(2);

/// Body of the committer thread; returns when the channel closes.
pub fn run(core: Arc<FsCore>, rx: Receiver<Job>) {
    loop {
        match rx.recv_timeout(TICK) {
            Ok(job) => {
                let mut batch = vec![job];
                while batch.len() < GROUP {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                commit_batch(&core, batch);
            }
            Err(RecvTimeoutError::Timeout) => tick(&core),
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
    // Shared: one failed step (a flush) fails every job of the batch.
    let mut failed: Vec<Option<Arc<VaultError>>> = vec![None; batch.len()];
    let t0 = std::time::Instant::now();
    let results = vault.commit(&mut objs);
    let t_objects = t0.elapsed();
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
            failed[*j] = Some(Arc::new(e));
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
        match ns.set_content(
            job.file.ino,
            job.extents.clone(),
            job.size,
            mtime,
            ctime,
            job.mark,
        ) {
            Ok(_) => {}
            // The file was deleted meanwhile: its new objects are garbage.
            Err(NamespaceError::NotFound(_)) => gone[j] = true,
            Err(e) => failed[j] = Some(Arc::new(VaultError::Namespace(e))),
        }
    }
    let t_names = t0.elapsed();
    if let Err(e) = ns.flush_durable() {
        // The names may or may not reach the disk: the objects' intents
        // stay open, the data stays staged and is sealed again.
        let e = Arc::new(VaultError::NotDurable(Arc::new(e)));
        for f in failed.iter_mut() {
            f.get_or_insert_with(|| Arc::clone(&e));
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
    let t_durable = t0.elapsed();
    // Waiters (fsync) need durability only, not the clean-up below.
    for (j, job) in batch.iter().enumerate() {
        finish(core, job, failed[j].clone(), Some(shards[j]));
    }
    vault.settle_named(&named);
    vault.settle_failed(&discarded);
    if let Err(e) = vault.collect_garbage() {
        tracing::warn!("replaced objects could not be destroyed yet: {e}");
    }
    tracing::debug!(
        files = batch.len(),
        objects = objs.len(),
        objects_us = t_objects.as_micros() as u64,
        names_us = (t_names - t_objects).as_micros() as u64,
        durable_us = (t_durable - t_names).as_micros() as u64,
        gc_us = (t0.elapsed() - t_durable).as_micros() as u64,
        "group commit"
    );
}

/// Applies the outcome of a job to its file's state and wakes its waiters;
/// a file with changes made meanwhile goes on to the background sealer.
fn finish(
    core: &FsCore,
    job: &Job,
    failure: Option<Arc<VaultError>>,
    shards: Option<(usize, usize)>,
) {
    let f = &job.file;
    let mut st = f.lock();
    match &failure {
        None => {
            st.content.seal_committed(job.size, &job.extents);
            if let Some(r) = st.retry.take() {
                tracing::info!(
                    "ino {}: sealed after {} failed attempts; its staged data is on the nodes now",
                    f.ino,
                    r.attempts
                );
            }
            let (written, total) = shards.unwrap_or((0, 0));
            // A line per seal is for debugging: at info it was most of a
            // busy mount's log. Degraded writes and failures have their
            // own (summarised) warnings.
            tracing::debug!(
                ino = f.ino,
                bytes = job.bytes,
                size = job.size,
                ms = job.started.elapsed().as_millis() as u64,
                shards = format!("{written}/{total}"),
                "sealed"
            );
        }
        Some(why) => {
            st.content.seal_failed();
            st.schedule_retry();
            st.error = Some(errno::write_failure(why));
            tracing::error!(
                "ino {}: commit failed: {why}; the data stays staged and is retried",
                f.ino
            );
        }
    }
    st.committed = st.committed.max(job.ticket);
    f.changed.notify_all();
    // Changes made while it was on its way: a close asked for them, or the
    // file is closed and nobody else will.
    let follow = failure.is_none()
        && st.content.unsealed()
        && (st.seal_wanted || (st.handles == 0 && !st.orphan));
    if failure.is_none() {
        core.reset_journal_if_settled(&mut st, f.ino);
    }
    drop(st);
    if follow {
        core.seal_later(f);
    }
    core.maybe_evict(f);
}
