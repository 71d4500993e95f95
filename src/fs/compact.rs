//! Compaction: a fragmented file's small objects and half-dead objects
//! are sealed again as fewer, larger ones, in the background.
//!
//! It reuses the write path instead of a path of its own: the ranges
//! fragments.rs picks are read from the nodes and staged again, as if the
//! file had been written with the bytes it holds, and the next seal makes
//! each range one object. So a compaction is as crash-safe as a write (the
//! staging journal brings it back after a `kill -9`, with the same bytes),
//! the old objects go the way replaced ones always go (the reaper destroys
//! them once the new names are durable), and the file's times do not move.
//!
//! A user write always wins: bytes are staged only where the file is not
//! dirty, and only if its committed extents are still the ones read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{FileState, OpenFile};
use super::ranges::RangeSet;
use super::{FsCore, fragments};

/// How long after a failed compaction (a node unreadable) a file is left
/// alone.
const BACKOFF: Duration = Duration::from_secs(60);
/// Bytes read from the nodes at once.
const CHUNK: u64 = 1 << 20;

/// Whether the file is worth compacting now: no seal on its way, not
/// deleted, not backing off, and fragmented. Dirty bytes do not stop it
/// (they are left out of what it stages): a log appended to without a
/// pause would never be compacted otherwise.
pub fn wanted(core: &FsCore, st: &FileState) -> bool {
    plan(core, st).is_some()
}

/// The ranges to stage again when the file is worth compacting now.
fn plan(core: &FsCore, st: &FileState) -> Option<RangeSet> {
    let idle = !st.content.sealing()
        && st.submitted == st.committed
        && !st.orphan
        && !st.evicted
        && st.compact_after.is_none_or(|t| t <= Instant::now());
    if !idle {
        return None;
    }
    let ranges = fragments::plan(st.content.base(), &|id| core.object_len(id));
    (!ranges.is_empty()).then_some(ranges)
}

impl FsCore {
    /// The plaintext length of an object, from its manifest.
    fn object_len(&self, id: &crate::ObjectId) -> Option<u64> {
        self.vault.manifest(id).ok().map(|m| m.plain_len)
    }

    /// Stages again the ranges of `f` that compaction picks; the caller
    /// seals them. Returns the bytes staged.
    pub fn compact_file(&self, f: &Arc<OpenFile>) -> u64 {
        let (base, ranges) = {
            let st = f.lock();
            let Some(ranges) = plan(self, &st) else {
                return 0;
            };
            (st.content.base().to_vec(), ranges)
        };
        // Read outside the lock: a read is a round trip per node.
        let mut read: Vec<(u64, Vec<u8>)> = Vec::new();
        for &(a, b) in ranges.ranges() {
            let mut at = a;
            while at < b {
                let len = (b - at).min(CHUNK);
                let mut buf = vec![0u8; len as usize];
                if let Err(e) = self.reader.read(&base, at, &mut buf) {
                    tracing::debug!(
                        ino = f.ino,
                        "compaction cannot read bytes {at}..{}: {e:?}; tried again later",
                        at + len
                    );
                    f.lock().compact_after = Some(Instant::now() + BACKOFF);
                    return 0;
                }
                read.push((at, buf));
                at += len;
            }
        }
        let mut st = f.lock();
        // A write, truncate, seal or eviction since: the plan is stale.
        if st.evicted || st.orphan || st.content.sealing() || st.content.base() != base.as_slice() {
            return 0;
        }
        let size = st.content.size();
        // Holes between extents stay holes.
        let stored = RangeSet::from_ranges(base.iter().map(|e| (e.offset, e.offset + e.len)));
        let mut clean = Vec::new();
        for (i, (at, buf)) in read.iter().enumerate() {
            let end = (at + buf.len() as u64).min(size);
            for (a, b, kept) in stored.pieces(*at, end) {
                if !kept {
                    continue;
                }
                for (c, d, dirty) in st.content.dirty().pieces(a, b) {
                    if !dirty {
                        clean.push((i, c, d));
                    }
                }
            }
        }
        let pieces: Vec<(u64, &[u8])> = clean
            .iter()
            .map(|&(i, a, b)| {
                let (at, buf) = &read[i];
                (a, &buf[(a - at) as usize..(b - at) as usize])
            })
            .collect();
        let staged: u64 = pieces.iter().map(|(_, d)| d.len() as u64).sum();
        if staged == 0 {
            return 0;
        }
        if let Err(e) = self.restage(&mut st, f.ino, &pieces) {
            tracing::warn!(
                ino = f.ino,
                "compaction cannot stage {staged} bytes again: {e:?}; tried again later"
            );
            st.compact_after = Some(Instant::now() + BACKOFF);
            return 0;
        }
        tracing::debug!(
            ino = f.ino,
            bytes = staged,
            ranges = ranges.ranges().len(),
            "compacting"
        );
        staged
    }
}
