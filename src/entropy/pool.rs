//! A preloaded pool file of raw QRNG bytes, consumed front to back and never served twice.
//!
//! The pool has no header: it is the QRNG's output as is (for tests,
//! `head -c 1M /dev/urandom > qrng.bin`). Its position lives in the sidecar
//! `<pool>.pos` (format in `pool_state.rs`). A draw that memory cannot
//! serve reserves a whole [`BLOCK`] (or more) under an exclusive lock:
//!
//! 1. read the reserved bytes into memory, and refuse them if they hold a
//!    zero run (already consumed: the position file is stale);
//! 2. durably record the new position, so a crash wastes bytes but never
//!    serves them twice, and, for a vault's pool, raise the vault's own
//!    high-water mark for the pool (`high_water.rs`), so a restored copy of
//!    pool and sidecar is refused later;
//! 3. overwrite the reserved bytes in the pool with zeros and fsync, so a
//!    copy of the pool taken later cannot replay them;
//! 4. unlock and serve from memory.
//!
//! The lock is `flock(2)` (via `File::lock`) on the pool file itself, not on
//! the sidecar: the sidecar is replaced by rename, and a lock on a replaced
//! inode would exclude nobody. Several processes (or several sources in one
//! process) can thus share a pool; each gets disjoint blocks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use zeroize::{Zeroize, Zeroizing};

use super::high_water::HighWater;
use super::pool_state::{self, BLOCK, PoolState, ZERO_RUN, io_err};
use super::{EntropyError, EntropySource, SourceStatus};

/// Reserved bytes held in memory, and what this process knows of the pool.
struct Inner {
    file: File,
    /// Reserved, not yet served bytes are `mem[off..]`.
    mem: Zeroizing<Vec<u8>>,
    off: usize,
    /// Position as of this process's last look at the sidecar.
    disk_pos: u64,
    /// Pool length as of the last look.
    len: u64,
}

/// A pool file of QRNG bytes with its position sidecar.
pub struct PoolSource {
    path: PathBuf,
    state_path: PathBuf,
    /// The vault's high-water mark, for a pool opened for a vault.
    mark: Option<HighWater>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PoolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSource")
            .field("path", &self.path)
            .finish()
    }
}

/// Holds `flock(LOCK_EX)` on the pool until dropped.
struct PoolLock<'a>(&'a File);

impl<'a> PoolLock<'a> {
    fn take(file: &'a File, path: &Path) -> Result<Self, EntropyError> {
        file.lock().map_err(|source| EntropyError::PoolLock {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self(file))
    }
}

impl Drop for PoolLock<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves
        // nothing to repair.
        let _ = self.0.unlock();
    }
}

impl PoolSource {
    /// Opens the pool at `path` (read and write: consumed bytes get zeroed)
    /// and checks its position file, recovering the position from the
    /// zeroed prefix if the position file is missing. No vault keeps a
    /// high-water mark for it: a restored copy is caught only by
    /// [`PoolSource::open_for_vault`].
    pub fn open(path: &Path) -> Result<Self, EntropyError> {
        Self::open_with(path, None)
    }

    /// Like [`PoolSource::open`], for the vault at `vault_dir`: the pool's
    /// position must not be behind the vault's high-water mark for it, and
    /// every reservation raises that mark before bytes leave.
    pub fn open_for_vault(path: &Path, vault_dir: &Path) -> Result<Self, EntropyError> {
        Self::open_with(path, Some(vault_dir))
    }

    fn open_with(path: &Path, vault_dir: Option<&Path>) -> Result<Self, EntropyError> {
        let path = path.to_path_buf();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(EntropyError::PoolMissing { path, source });
            }
            Err(source) => {
                return Err(EntropyError::PoolIo {
                    action: "open for reading and writing",
                    path,
                    source,
                });
            }
        };
        let state_path = pool_state::state_path(&path);
        let mut inner = Inner {
            file,
            mem: Zeroizing::new(Vec::new()),
            off: 0,
            disk_pos: 0,
            len: 0,
        };
        let mark = {
            let _lock = PoolLock::take(&inner.file, &path)?;
            let (pos, len) = load_position(&inner.file, &path, &state_path)?;
            inner.disk_pos = pos;
            inner.len = len;
            let mark = vault_dir
                .map(|dir| HighWater::locate(dir, &inner.file, &path, len))
                .transpose()?;
            if let Some(m) = &mark {
                m.check(&path, &state_path, pos)?;
            }
            mark
        };
        Ok(Self {
            path,
            state_path,
            mark,
            inner: Mutex::new(inner),
        })
    }

    /// The pool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position sidecar.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The state, recovering from a panicked holder by discarding reserved
    /// bytes in memory: some may already have been copied out.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            self.inner.clear_poison();
            let mut inner = poisoned.into_inner();
            inner.mem.zeroize();
            inner.off = 0;
            inner
        })
    }

    /// Reserves at least `need` more bytes from the pool (rounded up to the
    /// next block boundary) and appends them to memory. `wanted` and `have`
    /// only feed the exhaustion message. On error nothing is consumed,
    /// except that bytes recorded as consumed before a failed zeroing are
    /// wasted.
    fn reserve(
        &self,
        inner: &mut Inner,
        need: u64,
        wanted: u64,
        have: u64,
    ) -> Result<(), EntropyError> {
        let _lock = PoolLock::take(&inner.file, &self.path)?;
        let (pos, len) = load_position(&inner.file, &self.path, &self.state_path)?;
        inner.disk_pos = pos;
        inner.len = len;
        if let Some(m) = &self.mark {
            m.check(&self.path, &self.state_path, pos)?;
        }
        let left = len - pos;
        if left < need {
            return Err(EntropyError::PoolExhausted {
                path: self.path.clone(),
                needed: wanted,
                left: have + left,
            });
        }
        let end = (pos + need).next_multiple_of(BLOCK).min(len);
        let mut block = Zeroizing::new(vec![0u8; usize::try_from(end - pos).unwrap_or(usize::MAX)]);
        inner
            .file
            .read_exact_at(&mut block, pos)
            .map_err(io_err("read", &self.path))?;
        if let Some(offset) = pool_state::first_zero_run(&block, pos) {
            return Err(EntropyError::PoolAlreadyConsumed {
                path: self.path.clone(),
                state_path: self.state_path.clone(),
                offset,
            });
        }
        pool_state::write(
            &self.state_path,
            &PoolState {
                position: end,
                pool_len: len,
            },
        )?;
        inner.disk_pos = end;
        if let Some(m) = &self.mark {
            m.advance(end)?;
        }
        let zeros = vec![0u8; block.len()];
        inner
            .file
            .write_all_at(&zeros, pos)
            .map_err(io_err("zero consumed bytes in", &self.path))?;
        inner
            .file
            .sync_data()
            .map_err(io_err("fsync zeroed bytes in", &self.path))?;
        let mut mem = Zeroizing::new(Vec::with_capacity(
            inner.mem.len() - inner.off + block.len(),
        ));
        mem.extend_from_slice(&inner.mem[inner.off..]);
        mem.extend_from_slice(&block);
        inner.mem = mem;
        inner.off = 0;
        Ok(())
    }
}

/// Reads (or, when the sidecar is missing, recovers and records) the
/// position; the caller holds the pool lock. Returns (position, length).
fn load_position(file: &File, path: &Path, state_path: &Path) -> Result<(u64, u64), EntropyError> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    match pool_state::read(state_path)? {
        Some(st) if st.position > len => Err(EntropyError::PoolShorter {
            path: path.to_path_buf(),
            state_path: state_path.to_path_buf(),
            len,
            position: st.position,
            recorded_len: st.pool_len,
        }),
        Some(st) => {
            if st.pool_len != len {
                tracing::warn!(
                    pool = %path.display(),
                    recorded_len = st.pool_len,
                    len,
                    "random pool changed length since its position was recorded; continuing after byte {}",
                    st.position
                );
            }
            Ok((st.position, len))
        }
        None => {
            let position = pool_state::zeroed_prefix_end(file, path, len)?;
            tracing::warn!(
                pool = %path.display(),
                position_file = %state_path.display(),
                position,
                "random pool position file is missing; resuming after the zeroed (consumed) prefix at byte {position}"
            );
            pool_state::write(
                state_path,
                &PoolState {
                    position,
                    pool_len: len,
                },
            )?;
            Ok((position, len))
        }
    }
}

impl EntropySource for PoolSource {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut inner = self.lock();
        let have = inner.mem.len() - inner.off;
        if buf.len() > have {
            let need = (buf.len() - have) as u64;
            self.reserve(&mut inner, need, buf.len() as u64, have as u64)?;
        }
        let start = inner.off;
        let taken = &mut inner.mem[start..start + buf.len()];
        buf.copy_from_slice(taken);
        taken.zeroize();
        inner.off += buf.len();
        // Second guard: zeroed bytes mean a replayed pool, never randomness.
        if buf.len() >= ZERO_RUN && buf.iter().all(|&b| b == 0) {
            let offset = inner
                .disk_pos
                .saturating_sub((inner.mem.len() - inner.off + buf.len()) as u64);
            return Err(EntropyError::PoolAlreadyConsumed {
                path: self.path.clone(),
                state_path: self.state_path.clone(),
                offset,
            });
        }
        Ok(())
    }

    fn describe(&self) -> SourceStatus {
        let inner = self.lock();
        let in_memory = (inner.mem.len() - inner.off) as u64;
        let (disk_pos, len, note) = match pool_state::read(&self.state_path) {
            Ok(Some(st)) => (
                st.position,
                inner.file.metadata().map_or(inner.len, |m| m.len()),
                None,
            ),
            Ok(None) => (
                inner.disk_pos,
                inner.len,
                Some("position file missing; it is recovered on the next draw".to_owned()),
            ),
            Err(e) => (inner.disk_pos, inner.len, Some(e.to_string())),
        };
        SourceStatus {
            kind: "pool".into(),
            path: Some(self.path.clone()),
            remaining: Some(len.saturating_sub(disk_pos) + in_memory),
            total: Some(len),
            note,
        }
    }
}
