//! Sealing a file on close and fsync: its dirty ranges become new sealed
//! objects laid over its old extents, handed to the group committer.
//!
//! The seal itself (encryption, erasure coding, shard writes) runs in the
//! caller's thread, so close(2) reports what it finds (a node out of space,
//! too few nodes written): EIO or ENOSPC, and the staged data stays for a
//! retry in the background. Making it durable is the committer's job (one
//! barrier per group of files); fsync(2) waits for that too.
//!
//! One seal of a file is on its way at a time. A close that finds one
//! does not wait for it: its changes are journalled already, and the next
//! seal starts when the one on its way lands (so a loop of appends costs
//! what its bytes cost, and seals gather what came meanwhile).

use std::sync::Arc;
use std::time::Instant;

use fuser::Errno;

use super::files::OpenFile;
use super::ranges::RangeSet;
use super::staging::StagingReader;
use super::{FsCore, errno};
use crate::namespace::{Extent, JournalMark};
use crate::vault::SealedObject;

/// Sealed objects of one file waiting for their commit.
pub struct Job {
    /// The file.
    pub file: Arc<OpenFile>,
    /// Its seal number (what fsync waits for).
    pub ticket: u64,
    /// The new objects.
    pub objs: Vec<SealedObject>,
    /// The file's extents once they are committed.
    pub extents: Vec<Extent>,
    /// The file's size as sealed.
    pub size: u64,
    /// How far into the file's journal this seal reaches.
    pub mark: Option<JournalMark>,
    /// Plaintext bytes sealed (for the log line).
    pub bytes: u64,
    /// When the seal started.
    pub started: Instant,
}

/// Ranges at least this long are sealed as objects of their own.
const GROUP_LARGE: u64 = 1 << 20;
/// Most bytes of small ranges sealed together in one object.
const GROUP_MAX: u64 = 4 << 20;

/// Splits dirty ranges into the groups sealed as one object each.
fn group_ranges(ranges: &[(u64, u64)]) -> Vec<Vec<(u64, u64)>> {
    let mut out: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut small: Vec<(u64, u64)> = Vec::new();
    let mut small_len = 0;
    for &(a, b) in ranges {
        if b - a >= GROUP_LARGE {
            out.push(vec![(a, b)]);
            continue;
        }
        if small_len + (b - a) > GROUP_MAX && !small.is_empty() {
            out.push(std::mem::take(&mut small));
            small_len = 0;
        }
        small.push((a, b));
        small_len += b - a;
    }
    if !small.is_empty() {
        out.push(small);
    }
    out
}

/// A caller counted in `FsCore::commit_waiters`.
struct WaitingForCommit<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for WaitingForCommit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Who asks for a seal, which decides whether it waits for one on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealHow {
    /// close(2): seal now and report what fails; if a seal of the file is
    /// on its way, leave the rest to follow it and return at once.
    Close,
    /// The background sealer: as `Close`, but failures are kept for the
    /// next close or fsync to report.
    Background,
    /// fsync(2), unmount, recovery: wait for a seal on its way, then seal
    /// what is left.
    Wait,
}

impl FsCore {
    /// Seals whatever `f` has unsealed and queues it for commit. Returns
    /// the ticket to wait for when something is (still) on its way.
    pub fn seal_file(&self, f: &Arc<OpenFile>, how: SealHow) -> Result<Option<u64>, Errno> {
        let started = Instant::now();
        let _waiting = (how == SealHow::Wait).then(|| self.waiting_for_commit());
        let mut st = f.lock();
        if how == SealHow::Wait {
            while st.content.sealing() {
                st = f.wait(st);
            }
        }
        let reported = if how == SealHow::Background {
            None
        } else {
            st.error.take()
        };
        if st.content.sealing() {
            // It follows the seal on its way (commit.rs hands it on).
            st.seal_wanted = true;
            return match reported {
                Some(e) => Err(e),
                None => Ok(Some(st.submitted)),
            };
        }
        let Some(plan) = st.content.begin_seal() else {
            let pending = (st.submitted > st.committed).then_some(st.submitted);
            return match reported {
                Some(e) => Err(e),
                None => Ok(pending),
            };
        };
        st.seal_wanted = false;
        let mark = st.journal.as_ref().map(super::journal::Journal::mark);
        let staging = st.staging.clone();
        // A retry that fails again says so once, at its first failure.
        let quiet = st.retry.is_some();
        drop(st);

        let sealed = self.seal_ranges(f.ino, &plan.ranges, staging.as_ref(), quiet);
        let (objs, new_extents) = match sealed {
            Ok(x) => x,
            Err(e) => {
                let mut st = f.lock();
                st.content.seal_failed();
                st.schedule_retry();
                f.changed.notify_all();
                if how == SealHow::Background {
                    st.error = Some(e);
                }
                return Err(e);
            }
        };
        let extents = plan.extents(&new_extents);
        let mut st = f.lock();
        st.submitted += 1;
        let ticket = st.submitted;
        drop(st);
        let job = Job {
            file: Arc::clone(f),
            ticket,
            objs,
            extents,
            size: plan.size,
            mark,
            bytes: plan.ranges.len(),
            started,
        };
        if let Err(job) = self.submit(job) {
            // Shutting down: nothing commits any more; the journal lets
            // the next mount finish it.
            let mut st = job.file.lock();
            st.content.seal_failed();
            st.committed = st.submitted;
            f.changed.notify_all();
            return Err(Errno::EIO);
        }
        Ok(Some(ticket))
    }

    /// Seals the dirty ranges: a large range as an object of its own,
    /// small ones together, many to an object (up to [`GROUP_MAX`] bytes),
    /// each range an extent at its place in the object. A thousand random
    /// 4 KiB writes then cost one seal, not a thousand. On failure the
    /// objects sealed so far are discarded.
    fn seal_ranges(
        &self,
        ino: u64,
        dirty: &RangeSet,
        staging: Option<&super::staging::Staging>,
        quiet: bool,
    ) -> Result<(Vec<SealedObject>, Vec<Extent>), Errno> {
        let level_error = |msg: &str| {
            if quiet {
                tracing::debug!("{msg}");
            } else {
                tracing::error!("{msg}");
            }
        };
        let what = format!("ino {ino}");
        let quorum = self.vault.config().quorum();
        let n = self.vault.config().n;
        let mut objs: Vec<SealedObject> = Vec::new();
        let mut extents = Vec::new();
        for group in group_ranges(dirty.ranges()) {
            let Some(staging) = staging else {
                level_error(&format!("{what}: dirty bytes but no staging file"));
                return Err(self.discard(objs, Errno::EIO));
            };
            let len: u64 = group.iter().map(|(a, b)| b - a).sum();
            let src = StagingReader::ranges(staging, group.iter().copied());
            // Someone's fsync may wait for the commit this seal joins.
            let obj = match self.vault.seal(src, len, &what, self.commit_awaited()) {
                Ok(o) => o,
                Err(e) => {
                    level_error(&format!("{what}: seal failed: {e}"));
                    let code = errno::vault(&e);
                    return Err(self.discard(objs, code));
                }
            };
            let written = n - obj.missing_shards().count_ones() as usize;
            if written < quorum {
                let why = obj.failures();
                // While nodes are down every file and every retry fails the
                // same way: in full once, then a summary a minute.
                self.vault.warnings().warn(
                    "the mount",
                    crate::logsum::Cause::QuorumMissed,
                    u128::from(ino),
                    || {
                        format!(
                            "{what}: only {written} of {n} shards written (write quorum {quorum}): {why}; the data stays staged and is retried"
                        )
                    },
                );
                let code = errno::node_failures(why).unwrap_or(Errno::EIO);
                objs.push(obj);
                return Err(self.discard(objs, code));
            }
            let mut at = 0;
            for &(a, b) in &group {
                extents.push(Extent {
                    offset: a,
                    len: b - a,
                    object: obj.id(),
                    object_offset: at,
                });
                at += b - a;
            }
            objs.push(obj);
        }
        extents.sort_by_key(|e| e.offset);
        Ok((objs, extents))
    }

    /// Counts the caller as waiting for a commit until the guard drops.
    fn waiting_for_commit(&self) -> WaitingForCommit<'_> {
        self.commit_waiters
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        WaitingForCommit(&self.commit_waiters)
    }

    /// Whether anyone waits for a commit now.
    pub fn commit_awaited(&self) -> bool {
        self.commit_waiters
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
    }

    fn discard(&self, objs: Vec<SealedObject>, code: Errno) -> Errno {
        let ids: Vec<_> = objs.iter().map(SealedObject::id).collect();
        drop(objs);
        self.vault.discard(&ids);
        code
    }

    /// Waits until seal `ticket` of `f` is committed; its error if it failed.
    pub fn wait_commit(&self, f: &OpenFile, ticket: u64) -> Result<(), Errno> {
        let _waiting = self.waiting_for_commit();
        let mut st = f.lock();
        while st.committed < ticket {
            st = f.wait(st);
        }
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ranges_share_an_object_and_large_ones_keep_their_own() {
        let r = [
            (0, 4096),
            (8192, 12288),
            (1 << 30, (1 << 30) + (2 << 20)),
            (5 << 30, (5 << 30) + 100),
        ];
        let g = group_ranges(&r);
        assert_eq!(
            g,
            vec![
                vec![(1 << 30, (1 << 30) + (2 << 20))],
                vec![(0, 4096), (8192, 12288), (5 << 30, (5 << 30) + 100)],
            ]
        );
        // 2,000 ranges of 4 KiB: 8 MiB of small ranges make two objects.
        let many: Vec<(u64, u64)> = (0..2000u64).map(|i| (i * 8192, i * 8192 + 4096)).collect();
        let g = group_ranges(&many);
        assert_eq!(g.len(), 2);
        assert!(
            g.iter()
                .all(|x| x.iter().map(|(a, b)| b - a).sum::<u64>() <= GROUP_MAX)
        );
        assert_eq!(g.concat(), many);
    }
}
