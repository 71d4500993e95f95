//! The open-file table: per-inode state of files that are open, have
//! unsealed writes, or wait for a commit.
//!
//! While an inode has state here, the state is the truth for its size,
//! mtime and content: bytes in `dirty` come from the staging file, the rest
//! from `base` (the sealed extents as last committed), past `size` nothing.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use fuser::Errno;

use super::ranges::RangeSet;
use super::staging::Staging;
use super::{FsCore, errno};
use crate::namespace::{Extent, Inode, Time, truncate_extents};

/// Mutable state of one file.
#[derive(Debug)]
pub struct FileState {
    /// Open handles.
    pub handles: u32,
    /// Logical size.
    pub size: u64,
    /// Last modification (kept here until the next commit writes it).
    pub mtime: Time,
    /// Last inode change by a write or truncate (likewise).
    pub ctime: Time,
    /// Sealed extents as last committed.
    pub base: Vec<Extent>,
    /// Staging file, once something was written.
    pub staging: Option<Staging>,
    /// Bytes newer in the staging file than in `base`.
    pub dirty: RangeSet,
    /// Size or extents changed (truncate) and must be committed.
    pub meta_dirty: bool,
    /// The dirty ranges of the seal in flight, if any.
    pub sealing: Option<RangeSet>,
    /// Bytes written since that seal's snapshot.
    pub rewritten: RangeSet,
    /// Seals handed to the committer.
    pub submitted: u64,
    /// Seals whose commit finished (succeeded or failed).
    pub committed: u64,
    /// A failure not yet reported (returned by the next flush/fsync).
    pub error: Option<Errno>,
    /// Unlinked while in use: destroyed when the last user goes.
    pub orphan: bool,
    /// A staging record was written for this file.
    pub recorded: bool,
}

impl FileState {
    /// State of a file as the namespace has it.
    pub fn from_inode(inode: &Inode) -> FileState {
        FileState {
            handles: 0,
            size: inode.size,
            mtime: inode.mtime,
            ctime: inode.ctime,
            base: inode.extents.clone(),
            staging: None,
            dirty: RangeSet::new(),
            meta_dirty: false,
            sealing: None,
            rewritten: RangeSet::new(),
            submitted: 0,
            committed: 0,
            error: None,
            orphan: false,
            recorded: false,
        }
    }

    /// True when nothing waits to be sealed or committed.
    pub fn settled(&self) -> bool {
        self.dirty.is_empty()
            && !self.meta_dirty
            && self.sealing.is_none()
            && self.submitted == self.committed
    }

    /// Records a write of `len` bytes at `offset` (already in staging).
    pub fn wrote(&mut self, offset: u64, len: u64) {
        let end = offset + len;
        self.dirty.insert(offset, end);
        if self.sealing.is_some() {
            self.rewritten.insert(offset, end);
        }
        self.size = self.size.max(end);
        self.mtime = Time::now();
        self.ctime = self.mtime;
    }

    /// Sets the size: a hole when growing; when shrinking, the cut bytes
    /// are gone from staging and extents alike, so growing again reads zeros.
    pub fn truncate(&mut self, size: u64) -> std::io::Result<()> {
        if size < self.size {
            self.dirty.remove(size, u64::MAX);
            self.rewritten.remove(size, u64::MAX);
            self.base = truncate_extents(&self.base, size);
            if let Some(s) = &self.staging {
                s.truncate(size)?;
            }
        }
        self.size = size;
        self.mtime = Time::now();
        self.ctime = self.mtime;
        self.meta_dirty = true;
        Ok(())
    }

    /// Bytes stored or staged, for `stat`'s block count.
    pub fn stored_bytes(&self) -> u64 {
        self.base.iter().map(|e| e.len).sum::<u64>() + self.dirty.len()
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
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on `changed`.
    pub fn wait<'a>(&self, g: MutexGuard<'a, FileState>) -> MutexGuard<'a, FileState> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }
}

impl FsCore {
    /// The state of `ino` if it has one.
    pub fn file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ino)
            .cloned()
    }

    /// The state of `ino`, loading it from the namespace if needed.
    pub fn file_or_load(&self, ino: u64) -> Result<Arc<OpenFile>, Errno> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
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

    /// True while `ino` is open or has writes on their way to the nodes
    /// (an unlink then leaves an orphan rather than destroying it).
    pub fn in_use(&self, ino: u64) -> bool {
        self.file(ino).is_some_and(|f| {
            let st = f.lock();
            st.handles > 0 || !st.settled()
        })
    }

    /// Drops the state of a file nobody uses and nothing waits for; an
    /// orphan is destroyed then.
    ///
    /// Order matters for crash safety: the staging record's removal is
    /// handed to the OS before the staging file goes, so a process killed
    /// in between never finds a record describing a file that changed; and
    /// it all happens under the table lock, so no open of the same inode
    /// can start a new staging file that this would then delete.
    pub fn maybe_evict(&self, f: &Arc<OpenFile>) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = f.lock();
        if st.handles > 0
            || !(st.settled() || st.orphan && st.sealing.is_none() && st.submitted == st.committed)
        {
            return;
        }
        if st.error.is_some() && !st.orphan {
            // A failed commit keeps its staged data for the retry.
            return;
        }
        let ns = self.vault.namespace();
        if (st.recorded || st.staging.is_some())
            && let Err(e) = ns.remove_staging(f.ino).and_then(|_| ns.flush())
        {
            tracing::warn!("ino {}: cannot drop its staging record yet: {e}", f.ino);
            return;
        }
        files.remove(&f.ino);
        let orphan = st.orphan;
        if let Some(s) = st.staging.take() {
            s.remove();
        }
        drop(st);
        drop(files);
        if orphan {
            match ns.release_orphan(f.ino) {
                Ok(_) => self.want_flush(),
                Err(e) => {
                    tracing::warn!("ino {}: cannot destroy the unlinked file yet: {e}", f.ino)
                }
            }
        }
    }

    /// Content of `ino` at `offset` from its state: staged bytes where
    /// dirty, sealed extents elsewhere, zeros in holes; short at EOF.
    pub fn read_state(&self, f: &OpenFile, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let (len, pieces, base, staging) = {
            let st = f.lock();
            let end = (offset + u64::from(size)).min(st.size);
            if offset >= end {
                return Ok(Vec::new());
            }
            (
                end - offset,
                st.dirty.pieces(offset, end),
                st.base.clone(),
                st.staging.clone(),
            )
        };
        let mut out = vec![0u8; len as usize];
        for (a, b, dirty) in pieces {
            let dst = &mut out[(a - offset) as usize..(b - offset) as usize];
            match (dirty, &staging) {
                (true, Some(s)) => s.read_at(dst, a).map_err(|e| errno::io(&e))?,
                (true, None) => dst.fill(0),
                (false, _) => self.reader.read(&base, a, dst)?,
            }
        }
        Ok(out)
    }
}
