//! The open-file table: per-inode state of files that are open, have
//! unsealed writes, or wait for a commit.
//!
//! While an inode has state here, the state is the truth for its size,
//! mtime and content (state.rs): dirty bytes come from the staging file,
//! the rest from the sealed extents as last committed, past the size
//! nothing. Every change is journalled (journal.rs) before it is answered.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuser::Errno;

use super::journal::{Entry, Journal};
use super::staging::Staging;
use super::state::Content;
use super::{FsCore, errno};
use crate::namespace::{Inode, Time};

/// First wait before a failed seal is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two tries of a failed seal (how long a node that
/// came back waits at most for the staged data).
const RETRY_MAX: Duration = Duration::from_secs(10);

/// When a failed seal is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Failed tries so far.
    pub attempts: u32,
    /// Not before then.
    pub due: Instant,
}

/// Mutable state of one file.
#[derive(Debug)]
pub struct FileState {
    /// Open handles.
    pub handles: u32,
    /// Size, committed extents, dirty ranges, the seal on its way.
    pub content: Content,
    /// Last modification (kept here until the next commit writes it).
    pub mtime: Time,
    /// Last inode change by a write or truncate (likewise).
    pub ctime: Time,
    /// Staging file, once something was written.
    pub staging: Option<Staging>,
    /// Staging journal, once anything changed.
    pub journal: Option<Journal>,
    /// Seals handed to the committer.
    pub submitted: u64,
    /// Seals whose commit finished (succeeded or failed).
    pub committed: u64,
    /// A failure not yet reported (returned by the next flush/fsync).
    pub error: Option<Errno>,
    /// Unlinked while in use: destroyed when the last user goes.
    pub orphan: bool,
    /// A close asked for a seal while one was on its way: the next seal
    /// starts when that one lands (the close did not wait for it).
    pub seal_wanted: bool,
    /// The last seal failed: when to try again.
    pub retry: Option<Retry>,
    /// An older version's staging record exists for this file (recovery).
    pub legacy_record: bool,
    /// Dropped from the open-file table: a request that still holds it
    /// must look the file up again (see [`FsCore::with_live`]).
    pub evicted: bool,
    /// A compaction failed (a node unreadable): none before then.
    pub compact_after: Option<Instant>,
    /// Handed to the sealer to be compacted: kept in the table until the
    /// sealer has looked at it.
    pub compact_queued: bool,
}

impl FileState {
    /// State of a file as the namespace has it.
    pub fn from_inode(inode: &Inode) -> FileState {
        FileState {
            handles: 0,
            content: Content::new(inode.size, inode.extents.clone()),
            mtime: inode.mtime,
            ctime: inode.ctime,
            staging: None,
            journal: None,
            submitted: 0,
            committed: 0,
            error: None,
            orphan: false,
            seal_wanted: false,
            retry: None,
            legacy_record: false,
            evicted: false,
            compact_after: None,
            compact_queued: false,
        }
    }

    /// True when nothing waits to be sealed or committed.
    pub fn settled(&self) -> bool {
        self.content.settled() && self.submitted == self.committed
    }

    /// A seal failed: try again later, a little later each time.
    pub fn schedule_retry(&mut self) {
        let attempts = self.retry.map_or(0, |r| r.attempts) + 1;
        let wait = RETRY_FIRST
            .saturating_mul(1 << (attempts - 1).min(8))
            .min(RETRY_MAX);
        self.retry = Some(Retry {
            attempts,
            due: Instant::now() + wait,
        });
    }

    fn touched(&mut self) {
        self.mtime = Time::now();
        self.ctime = self.mtime;
    }
}

/// One file's state and the condition its waiters sleep on.
#[derive(Debug)]
pub struct OpenFile {
    /// The inode.
    pub ino: u64,
    state: Mutex<FileState>,
    /// Signalled when a seal or commit of this file finishes.
    pub changed: Condvar,
}

impl OpenFile {
    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits on `changed`.
    pub fn wait<'a>(&self, g: MutexGuard<'a, FileState>) -> MutexGuard<'a, FileState> {
        self.changed
            .wait(g)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FsCore {
    /// The state of `ino` if it has one.
    pub fn file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&ino)
            .cloned()
    }

    /// The state of `ino`, loading it from the namespace if needed.
    pub fn file_or_load(&self, ino: u64) -> Result<Arc<OpenFile>, Errno> {
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = files.get(&ino) {
            return Ok(Arc::clone(f));
        }
        let inode = self
            .vault
            .namespace()
            .inode(ino)
            .map_err(|e| errno::ns(&e))?;
        let f = Arc::new(OpenFile {
            ino,
            state: Mutex::new(FileState::from_inode(&inode)),
            changed: Condvar::new(),
        });
        files.insert(ino, Arc::clone(&f));
        Ok(f)
    }

    /// Runs `op` on the state of `ino` under its lock, loading it if
    /// needed. A state evicted between the lookup and the lock is looked up
    /// again, so a change never lands on a state the table no longer holds.
    pub fn with_live<T>(
        &self,
        ino: u64,
        op: impl FnOnce(&Arc<OpenFile>, &mut FileState) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        loop {
            let f = self.file_or_load(ino)?;
            let mut st = f.lock();
            if st.evicted {
                continue;
            }
            return op(&f, &mut st);
        }
    }

    /// True while `ino` is open or has writes on their way to the nodes
    /// (an unlink then leaves an orphan rather than destroying it).
    ///
    /// The namespace asks this under its lock, while the committer,
    /// setattr and eviction take the file table, then a file's state, then
    /// the namespace: waiting here for either lock closed that cycle (an
    /// unlink, a commit and an eviction hung fsstress for good). A table or
    /// state locked right now is busy, so it counts as in use: the unlink
    /// leaves an orphan, which [`FsCore::after_removal`] or the file's last
    /// close destroys once the file is idle.
    pub fn in_use(&self, ino: u64) -> bool {
        use std::sync::TryLockError;
        let f = match self.files.try_lock() {
            Ok(files) => files.get(&ino).cloned(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().get(&ino).cloned(),
            Err(TryLockError::WouldBlock) => return true,
        };
        let Some(f) = f else {
            return false;
        };
        match f.state.try_lock() {
            Ok(st) => st.handles > 0 || !st.settled(),
            Err(TryLockError::Poisoned(p)) => {
                let st = p.into_inner();
                st.handles > 0 || !st.settled()
            }
            Err(TryLockError::WouldBlock) => true,
        }
    }

    /// The journal of `ino`, started on the first change.
    fn journal<'a>(&self, st: &'a mut FileState, ino: u64) -> Result<&'a mut Journal, Errno> {
        if st.journal.is_none() {
            // A journal is only worth something if the file it names
            // survives the process too (a create not yet handed to the OS).
            self.vault.namespace().flush_if_changed().map_err(|e| {
                tracing::error!("ino {ino}: cannot hand the namespace to the OS: {e}");
                errno::ns(&e)
            })?;
            let stock = Some(self.wiper.stock());
            let j =
                Journal::create(&self.journal_dir, ino, st.content.size(), stock).map_err(|e| {
                    tracing::error!("ino {ino}: cannot start its staging journal: {e}");
                    errno::io(&e)
                })?;
            st.journal = Some(j);
        }
        st.journal.as_mut().ok_or(Errno::EIO)
    }

    fn log_change(&self, st: &mut FileState, ino: u64, e: Entry) -> Result<(), Errno> {
        self.journal(st, ino)?.append(e).map_err(|e| {
            tracing::error!("ino {ino}: cannot append to its staging journal: {e}");
            errno::io(&e)
        })
    }

    /// Writes `data` at `at`: into the staging file, then the journal
    /// (so a journalled write always has its bytes staged).
    pub fn write_into(
        &self,
        st: &mut FileState,
        ino: u64,
        data: &[u8],
        at: u64,
    ) -> Result<(), Errno> {
        self.ensure_staging(st, ino)?;
        if let Some(s) = &st.staging {
            s.write_at(data, at).map_err(|e| errno::io(&e))?;
        }
        let end = at.saturating_add(data.len() as u64);
        self.log_change(st, ino, Entry::Wrote(at, end))?;
        st.content.write(at, data.len() as u64);
        st.touched();
        self.maybe_compact(st, ino);
        Ok(())
    }

    /// Stages `pieces` (offset, bytes) again for compaction: bytes the
    /// file already holds, so its times do not move. Unlike a write, the
    /// staged bytes are synced before the journal names them: they replace
    /// bytes already durable on the nodes, and a journal that outlived
    /// them after a power cut would replay whatever the disk held there.
    pub fn restage(
        &self,
        st: &mut FileState,
        ino: u64,
        pieces: &[(u64, &[u8])],
    ) -> Result<(), Errno> {
        self.ensure_staging(st, ino)?;
        if let Some(s) = &st.staging {
            for (at, data) in pieces {
                s.write_at(data, *at).map_err(|e| errno::io(&e))?;
            }
            s.sync().map_err(|e| errno::io(&e))?;
        }
        for (at, data) in pieces {
            let len = data.len() as u64;
            self.log_change(st, ino, Entry::Wrote(*at, at.saturating_add(len)))?;
            st.content.write(*at, len);
        }
        self.maybe_compact(st, ino);
        Ok(())
    }

    fn ensure_staging(&self, st: &mut FileState, ino: u64) -> Result<(), Errno> {
        if st.staging.is_none() {
            st.staging = Some(
                Staging::open(&self.staging_dir, ino, &self.wiper).map_err(|e| {
                    tracing::error!("ino {ino}: cannot create its staging file: {e}");
                    errno::io(&e)
                })?,
            );
        }
        Ok(())
    }

    /// Sets the size (truncate, O_TRUNC, growing fallocate). The cut is
    /// journalled before the staging file is cut, so a kill in between
    /// never brings cut bytes back.
    pub fn set_size(&self, st: &mut FileState, ino: u64, size: u64) -> Result<(), Errno> {
        self.log_change(st, ino, Entry::Size(size))?;
        if st.content.set_size(size)
            && let Some(s) = &st.staging
        {
            s.truncate(size).map_err(|e| errno::io(&e))?;
        }
        st.touched();
        Ok(())
    }

    /// Makes `[start, end)` read as zeros, keeping the size (punch hole,
    /// zero range).
    pub fn zero_range(
        &self,
        st: &mut FileState,
        ino: u64,
        start: u64,
        end: u64,
    ) -> Result<(), Errno> {
        let end = end.min(st.content.size());
        if start >= end {
            return Ok(());
        }
        self.log_change(st, ino, Entry::Zeroed(start, end))?;
        st.content.zero(start, end);
        if let Some(s) = &st.staging
            && let Err(e) = s.punch(start, end)
        {
            // Only space: the range is no longer dirty, nothing reads it.
            tracing::debug!("ino {ino}: cannot free staged bytes: {e}");
        }
        st.touched();
        Ok(())
    }

    /// Rewrites a long journal as the state it describes (never while a
    /// seal is on its way: that seal's mark names the current epoch).
    fn maybe_compact(&self, st: &mut FileState, ino: u64) {
        if st.content.sealing() {
            return;
        }
        let ranges = st.content.dirty().ranges().len() + st.content.cuts().ranges().len();
        let (size, cuts, dirty) = (
            st.content.size(),
            st.content.cuts().clone(),
            st.content.dirty().clone(),
        );
        if let Some(j) = st.journal.as_mut()
            && j.wants_compaction(ranges)
            && let Err(e) = j.compact(size, &cuts, &dirty)
        {
            tracing::warn!("ino {ino}: cannot compact its staging journal: {e}");
        }
    }

    /// After a commit: a file still open whose content is all committed
    /// starts its journal afresh, so a file written for days keeps a short
    /// one.
    pub fn reset_journal_if_settled(&self, st: &mut FileState, ino: u64) {
        if !st.settled() {
            return;
        }
        let size = st.content.size();
        if let Some(j) = st.journal.as_mut()
            && let Err(e) = j.compact(size, &Default::default(), &Default::default())
        {
            tracing::warn!("ino {ino}: cannot reset its staging journal: {e}");
        }
    }

    /// Drops the state of a file nobody uses and nothing waits for; an
    /// orphan is destroyed then.
    ///
    /// Order matters for crash safety: the journal goes before the staging
    /// file (a staging file without journal is dropped at the next mount;
    /// a journal without its staging file would describe bytes that are
    /// gone), and it all happens under the table lock, so no open of the
    /// same inode can start a new staging file that this would then
    /// delete.
    pub fn maybe_evict(&self, f: &Arc<OpenFile>) {
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the state the table holds: an older one of the same inode
        // (evicted already, still held by a queued seal or a slow request)
        // must never take its successor out of the table.
        if !files.get(&f.ino).is_some_and(|cur| Arc::ptr_eq(cur, f)) {
            return;
        }
        let mut st = f.lock();
        let idle = st.handles == 0 && st.submitted == st.committed && !st.content.sealing();
        if !idle || !(st.content.settled() || st.orphan) {
            return;
        }
        // Handed to the sealer for compaction, which evicts it after; once
        // the sealer has stopped (unmount), nothing will.
        if st.compact_queued && self.sealer_running() {
            return;
        }
        let ns = self.vault.namespace();
        if st.legacy_record
            && let Err(e) = ns.remove_staging(f.ino).and_then(|()| ns.flush())
        {
            tracing::warn!("ino {}: cannot drop its staging record yet: {e}", f.ino);
            return;
        }
        files.remove(&f.ino);
        st.evicted = true;
        let orphan = st.orphan;
        if let Some(j) = st.journal.take() {
            j.remove(Some(self.wiper.stock()));
            if !orphan && let Err(e) = ns.remove_journal_mark(f.ino) {
                tracing::debug!("ino {}: journal mark stays: {e}", f.ino);
            }
        }
        if let Some(s) = st.staging.take() {
            s.remove();
        }
        drop(st);
        drop(files);
        if orphan {
            match ns.release_orphan(f.ino) {
                Ok(_) => self.want_flush(),
                Err(e) => {
                    tracing::warn!("ino {}: cannot destroy the unlinked file yet: {e}", f.ino);
                }
            }
        }
    }

    /// Content of `ino` at `offset` from its state: staged bytes where
    /// dirty, sealed extents elsewhere, zeros in holes; short at EOF.
    pub fn read_state(&self, f: &OpenFile, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        // A seal that commits while this reads (outside the state lock)
        // replaces the extents read from, and the reaper may destroy their
        // object before its chunks are fetched: the read fails then, but the
        // file did not, so it is read again from the new state.
        let mut tries = 0;
        loop {
            let (result, base) = self.read_state_once(f, offset, size);
            match result {
                Err(e) if tries < 3 && base.is_some_and(|b| b != f.lock().content.base()) => {
                    tries += 1;
                    tracing::debug!(ino = f.ino, "read raced a commit ({e:?}); reading again");
                }
                r => return r,
            }
        }
    }

    /// One try of [`FsCore::read_state`]; also gives the sealed extents
    /// it read from.
    fn read_state_once(
        &self,
        f: &OpenFile,
        offset: u64,
        size: u32,
    ) -> (
        Result<Vec<u8>, Errno>,
        Option<Vec<crate::namespace::Extent>>,
    ) {
        let (len, pieces, base, staging) = {
            let st = f.lock();
            let end = offset
                .saturating_add(u64::from(size))
                .min(st.content.size());
            if offset >= end {
                return (Ok(Vec::new()), None);
            }
            (
                end - offset,
                st.content.dirty().pieces(offset, end),
                st.content.base().to_vec(),
                st.staging.clone(),
            )
        };
        let mut out = vec![0u8; len as usize];
        for (a, b, dirty) in pieces {
            let dst = &mut out[(a - offset) as usize..(b - offset) as usize];
            let r = match (dirty, &staging) {
                (true, Some(s)) => s.read_at(dst, a).map_err(|e| errno::io(&e)),
                (true, None) => {
                    dst.fill(0);
                    Ok(())
                }
                (false, _) => self.reader.read(&base, a, dst),
            };
            if let Err(e) = r {
                return (Err(e), Some(base));
            }
        }
        (Ok(out), Some(base))
    }

    /// Files with staged bytes not yet sealed, those bytes, and files
    /// whose last seal failed (for `qsfs status` while mounted).
    pub fn staged_summary(&self) -> StagedSummary {
        let files: Vec<_> = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut s = StagedSummary::default();
        for f in files {
            let st = f.lock();
            if !st.settled() {
                s.files += 1;
                s.bytes += st.content.staged_bytes();
            }
            if st.retry.is_some() {
                s.failing += 1;
            }
        }
        s
    }
}

/// Staged data of a live mount.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct StagedSummary {
    /// Files with changes not yet committed.
    pub files: u64,
    /// Their staged bytes.
    pub bytes: u64,
    /// Files whose last seal failed (retried in the background).
    pub failing: u64,
}
