//! The group committer: one thread that makes sealed files durable in
//! groups (shards, keystore, manifests, names: one barrier per step for
//! every file sealed meanwhile), so a tar of thousands of small files does
//! not cost an fsync storm. Groups come from load, not from a timer: a
//! lone seal commits at once, and seals that arrive while a group commits
//! form the next one. It also flushes metadata-only changes every few
//! seconds (as ext4's journal does); the reaper (reaper.rs) destroys what
//! they replaced or deleted.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fuser::Errno;

use super::seal::Job;
use super::{FsCore, errno};
use crate::ObjectId;
use crate::namespace::NamespaceError;
use crate::vault::{Fate, ItemOutcome, Namer, PublishError, SealedObject, Shards};

/// Files per group commit at most.
const GROUP: usize = 256;
/// How long the committer may gather closed files into one group while
/// nobody waits for a commit (an fsync or unmount ends the wait at once).
/// Closed files are not promised durable until an fsync, and a group of
/// many costs the barriers of one: at 20 ms a tar of small files went
/// from a commit per one or two files to one per dozens.
const GATHER: Duration = Duration::from_millis(20);
/// How often a gathering committer looks for a waiter.
const GATHER_STEP: Duration = Duration::from_millis(1);
/// How often metadata changes are made durable.
const TICK: Duration = Duration::from_secs(2);

/// Body of the committer thread; returns when the channel closes.
pub fn run(core: Arc<FsCore>, rx: Receiver<Job>) {
    loop {
        match rx.recv_timeout(TICK) {
            Ok(job) => {
                let mut batch = vec![job];
                let start = std::time::Instant::now();
                while batch.len() < GROUP {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) if core.commit_awaited() || start.elapsed() >= GATHER => break,
                        Err(_) => match rx.recv_timeout(GATHER_STEP) {
                            Ok(j) => batch.push(j),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        },
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

/// Makes pending metadata durable and asks for deletions.
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
    core.collect_soon();
}

fn commit_batch(core: &FsCore, mut batch: Vec<Job>) {
    let items: Vec<_> = batch
        .iter_mut()
        .map(|job| std::mem::take(&mut job.objs))
        .collect();
    let objects: usize = items.iter().map(Vec::len).sum();
    let mut names = Names {
        core,
        batch: &batch,
    };
    let done = core.vault.publish(items, &mut names);
    if !done.names_durable {
        return;
    }
    core.collect_soon();
    let t = done.timing;
    tracing::debug!(
        files = batch.len(),
        objects,
        objects_us = t.objects.as_micros() as u64,
        names_us = t.names.as_micros() as u64,
        durable_us = t.durable.as_micros() as u64,
        gc_us = t.gc.as_micros() as u64,
        "group commit"
    );
}

/// The mount's naming step: a sealed file's new extents replace its old
/// ones, up to the journal mark the seal reached.
struct Names<'a> {
    core: &'a FsCore,
    batch: &'a [Job],
}

impl Namer for Names<'_> {
    type Error = NamespaceError;

    fn name(
        &mut self,
        item: usize,
        _objs: &[SealedObject],
        replaced: &mut Vec<ObjectId>,
    ) -> Result<Fate, NamespaceError> {
        let job = &self.batch[item];
        // The state stays locked until the inode is written: a setattr
        // (touch -d) changes the inode and the state under the same lock,
        // so this write can never put back an mtime read before it.
        let st = job.file.lock();
        let named = self.core.vault.namespace().set_content(
            job.file.ino,
            job.extents.clone(),
            job.size,
            st.mtime,
            st.ctime,
            job.mark,
        );
        drop(st);
        match named {
            Ok(old) => {
                replaced.extend(old);
                Ok(Fate::Named)
            }
            // The file was deleted meanwhile: its new objects are garbage.
            Err(NamespaceError::NotFound(_)) => Ok(Fate::Gone),
            Err(e) => Err(e),
        }
    }

    fn durable(&mut self, outcomes: &[ItemOutcome<NamespaceError>]) {
        for (job, outcome) in self.batch.iter().zip(outcomes) {
            finish(self.core, job, outcome);
        }
    }

    fn collects_garbage(&self) -> bool {
        false
    }
}

/// Applies the outcome of a job to its file's state and wakes its waiters;
/// a file with changes made meanwhile goes on to the background sealer.
fn finish(core: &FsCore, job: &Job, outcome: &ItemOutcome<NamespaceError>) {
    let f = &job.file;
    let mut st = f.lock();
    match outcome {
        Ok(published) => {
            st.content.seal_committed(job.size, &job.extents);
            if let Some(r) = st.retry.take() {
                tracing::info!(
                    "ino {}: sealed after {} failed attempts; its staged data is on the nodes now",
                    f.ino,
                    r.attempts
                );
            }
            let Shards { written, total } = published.shards;
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
        Err(e) => {
            let why = e.to_string();
            st.content.seal_failed();
            st.schedule_retry();
            st.error = Some(match e {
                PublishError::Commit(v) => errno::write_failure(v),
                PublishError::Name(_) | PublishError::NotDurable(_) => Errno::EIO,
            });
            tracing::error!(
                "ino {}: commit failed: {why}; the data stays staged and is retried",
                f.ino
            );
        }
    }
    st.committed = st.committed.max(job.ticket);
    f.changed.notify_all();
    // Changes made while it was on its way: a close asked for them, or the
    // file is closed and nobody else will. A fragmented file goes on to be
    // compacted (compact.rs), open or not.
    let compact = outcome.is_ok() && super::compact::wanted(core, &st);
    st.compact_queued |= compact;
    let follow = outcome.is_ok()
        && ((st.content.unsealed() && (st.seal_wanted || (st.handles == 0 && !st.orphan)))
            || compact);
    if outcome.is_ok() {
        core.reset_journal_if_settled(&mut st, f.ino);
    }
    drop(st);
    if follow {
        core.seal_later(f);
    }
    core.maybe_evict(f);
}
