//! Sealing a file on close and fsync: its dirty ranges become new sealed
//! objects laid over its old extents, handed to the group committer.
//!
//! The seal itself (encryption, erasure coding, shard writes) runs in the
//! caller's thread, so close(2) reports what it finds (a node out of space,
//! too few nodes written): EIO or ENOSPC, and the staged data stays for a
//! retry. Making it durable is the committer's job (one barrier per group
//! of files); fsync(2) waits for that too.

use std::sync::Arc;
use std::time::Instant;

use fuser::Errno;

use super::files::OpenFile;
use super::ranges::{RangeSet, overlay};
use super::staging::{StagingReader, StagingRecord};
use super::{FsCore, errno};
use crate::namespace::{Extent, truncate_extents};
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
    /// Plaintext bytes sealed (for the log line).
    pub bytes: u64,
    /// When the seal started.
    pub started: Instant,
}

impl FsCore {
    /// Seals whatever `f` has unsealed and queues it for commit. Returns
    /// the ticket to wait for when something is (still) on its way.
    pub fn seal_file(&self, f: &Arc<OpenFile>) -> Result<Option<u64>, Errno> {
        let started = Instant::now();
        let mut st = f.lock();
        while st.sealing.is_some() {
            st = f.wait(st);
        }
        let reported = st.error.take();
        if st.dirty.is_empty() && !st.meta_dirty {
            let pending = (st.submitted > st.committed).then_some(st.submitted);
            return match reported {
                Some(e) => Err(e),
                None => Ok(pending),
            };
        }
        let size = st.size;
        let mut snapshot = st.dirty.clone();
        snapshot.remove(size, u64::MAX);
        let record = StagingRecord {
            size,
            mtime: st.mtime,
            dirty: snapshot.clone(),
        };
        let base = st.base.clone();
        let staging = st.staging.clone();
        st.sealing = Some(snapshot.clone());
        st.rewritten = RangeSet::new();
        st.meta_dirty = false;
        st.recorded = true;
        drop(st);

        // What a killed process leaves must be enough to finish this seal.
        let ns = self.vault.namespace();
        let t0 = Instant::now();
        let persisted = ns
            .put_staging(f.ino, &record.encode())
            .and_then(|_| ns.flush());
        let t_record = t0.elapsed();
        let sealed = persisted.map_err(|e| {
            tracing::error!("ino {}: cannot record its staged data: {e}", f.ino);
            Errno::EIO
        });
        let sealed = sealed.and_then(|_| self.seal_ranges(f.ino, &snapshot, staging.as_ref()));
        let (objs, extents) = match sealed {
            Ok(x) => x,
            Err(e) => {
                let mut st = f.lock();
                st.sealing = None;
                st.meta_dirty = true;
                f.changed.notify_all();
                return Err(e);
            }
        };
        tracing::debug!(
            ino = f.ino,
            record_us = t_record.as_micros() as u64,
            seal_us = (t0.elapsed() - t_record).as_micros() as u64,
            "seal timing"
        );
        let extents = truncate_extents(&overlay(&base, &extents), size);
        let mut st = f.lock();
        st.submitted += 1;
        let ticket = st.submitted;
        drop(st);
        let job = Job {
            file: Arc::clone(f),
            ticket,
            objs,
            extents,
            size,
            bytes: snapshot.len(),
            started,
        };
        if let Err(job) = self.submit(job) {
            // Shutting down: nothing commits any more; the staging record
            // lets the next mount finish it.
            let mut st = job.file.lock();
            st.sealing = None;
            st.committed = st.submitted;
            f.changed.notify_all();
            return Err(Errno::EIO);
        }
        Ok(Some(ticket))
    }

    /// Seals each dirty range as one object. On failure the objects sealed
    /// so far are discarded.
    fn seal_ranges(
        &self,
        ino: u64,
        dirty: &RangeSet,
        staging: Option<&super::staging::Staging>,
    ) -> Result<(Vec<SealedObject>, Vec<Extent>), Errno> {
        let what = format!("ino {ino}");
        let quorum = self.vault.config().quorum();
        let n = self.vault.config().n;
        let mut objs: Vec<SealedObject> = Vec::new();
        let mut extents = Vec::new();
        for &(a, b) in dirty.ranges() {
            let Some(staging) = staging else {
                tracing::error!("{what}: dirty bytes but no staging file");
                return Err(self.discard(objs, Errno::EIO));
            };
            let obj = match self
                .vault
                .seal(StagingReader::new(staging, a, b - a), b - a, &what)
            {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("{what}: seal failed: {e}");
                    let code = errno::vault(&e);
                    return Err(self.discard(objs, code));
                }
            };
            let written = n - obj.missing_shards().count_ones() as usize;
            if written < quorum {
                let why = obj.failures().join("; ");
                tracing::error!(
                    "{what}: only {written} of {n} shards written (write quorum {quorum}): {why}; the data stays staged"
                );
                let code = if errno::no_space(&why) {
                    Errno::ENOSPC
                } else {
                    Errno::EIO
                };
                objs.push(obj);
                return Err(self.discard(objs, code));
            }
            extents.push(Extent {
                offset: a,
                len: b - a,
                object: obj.id(),
                object_offset: 0,
            });
            objs.push(obj);
        }
        Ok((objs, extents))
    }

    fn discard(&self, objs: Vec<SealedObject>, code: Errno) -> Errno {
        let ids: Vec<_> = objs.iter().map(|o| o.id()).collect();
        drop(objs);
        self.vault.settle_failed(&ids);
        code
    }

    /// Waits until seal `ticket` of `f` is committed; its error if it failed.
    pub fn wait_commit(&self, f: &OpenFile, ticket: u64) -> Result<(), Errno> {
        let mut st = f.lock();
        self.fsync_waiters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        while st.committed < ticket {
            st = f.wait(st);
        }
        self.fsync_waiters
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
