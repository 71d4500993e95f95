//! Staging: unsealed writes of a file wait in `VAULT/staging/<ino>` (a
//! sparse file holding only what was written) until the file is sealed.
//! Which of its bytes are newer than the file's sealed extents is kept in
//! the file's staging journal (journal.rs).
//!
//! Staging files hold plaintext, so their bytes are overwritten before
//! any of their blocks is freed (src/wipe.rs): a removed staging file goes
//! to the wiper once its last reader is done, a cut or punched range is
//! zeroed first.
//!
//! Older versions kept that in a staging record in the namespace, written
//! at close; the mount still reads such records once (recovery.rs) and
//! writes no new ones. Format v1, little-endian:
//! ```text
//! u8   version = 1
//! u64  size
//! i64  mtime seconds, u32 mtime nanoseconds
//! u32  range count, then per range: u64 start, u64 end
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::ranges::RangeSet;
#[cfg(test)]
use crate::codec::Writer;
use crate::codec::{DecodeError, Reader};
use crate::namespace::Time;
use crate::wipe::Wiper;

const RECORD_VERSION: u8 = 1;

/// What the staging record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingRecord {
    /// File size.
    pub size: u64,
    /// Last modification.
    pub mtime: Time,
    /// Ranges newer in the staging file than in the sealed extents.
    pub dirty: RangeSet,
}

impl StagingRecord {
    /// Encodes the record (as older versions wrote it; tests only now).
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32 + 16 * self.dirty.ranges().len());
        w.u8(RECORD_VERSION)
            .u64(self.size)
            .i64(self.mtime.secs)
            .u32(self.mtime.nanos);
        w.u32(self.dirty.ranges().len() as u32);
        for &(a, b) in self.dirty.ranges() {
            w.u64(a).u64(b);
        }
        w.finish()
    }

    /// Decodes a record.
    pub fn decode(buf: &[u8]) -> Result<StagingRecord, DecodeError> {
        let mut r = Reader::new("staging record", buf);
        let v = r.u8()?;
        if v != RECORD_VERSION {
            return Err(DecodeError::Version {
                what: "staging record",
                found: v.into(),
                supported: RECORD_VERSION.into(),
            });
        }
        let size = r.u64()?;
        let mtime = Time {
            secs: r.i64()?,
            nanos: r.u32()?,
        };
        let n = r.u32()? as usize;
        if n > r.remaining() / 16 {
            return Err(r.invalid("ranges", "more ranges than the record holds"));
        }
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push((r.u64()?, r.u64()?));
        }
        r.finish()?;
        Ok(StagingRecord {
            size,
            mtime,
            dirty: RangeSet::from_ranges(ranges),
        })
    }
}

/// Bytes per staging piece. ext4 files end at 16 TiB, but a qsfs file can
/// be written anywhere up to its (petabyte) size, so staged bytes are kept
/// in pieces of 1 TiB: `staging/<ino>` holds offsets below 1 TiB and
/// `staging/<ino>.<k>` holds `[k TiB, (k+1) TiB)`.
pub const PIECE: u64 = 1 << 40;

/// The staging file(s) of one inode.
#[derive(Debug, Clone)]
pub struct Staging {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    ino: u64,
    pieces: Mutex<BTreeMap<u64, Arc<File>>>,
    wiper: Arc<Wiper>,
    /// Pieces taken away (in the wipe folder) that a clone may still
    /// read: wiped when the last handle goes.
    doomed: Mutex<Vec<PathBuf>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pieces
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let doomed = std::mem::take(
            self.doomed
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !doomed.is_empty() {
            self.wiper.queue(doomed);
        }
    }
}

fn piece_name(ino: u64, k: u64) -> String {
    if k == 0 {
        ino.to_string()
    } else {
        format!("{ino}.{k}")
    }
}

/// The pieces of `ino` present in `dir`.
fn pieces_on_disk(dir: &Path, ino: u64) -> Vec<u64> {
    let prefix = format!("{ino}.");
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name == ino.to_string().as_str() {
                out.push(0);
            } else if let Some(k) = name.strip_prefix(&prefix).and_then(|k| k.parse().ok()) {
                out.push(k);
            }
        }
    }
    out
}

impl Staging {
    /// Path of the first staging piece of `ino` in `dir`.
    #[cfg(test)]
    fn path_for(dir: &Path, ino: u64) -> PathBuf {
        dir.join(piece_name(ino, 0))
    }

    fn new(dir: &Path, ino: u64, wiper: &Arc<Wiper>) -> Staging {
        Staging {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                ino,
                pieces: Mutex::new(BTreeMap::new()),
                wiper: Arc::clone(wiper),
                doomed: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Opens (creating, mode 0600) the staging of `ino`; a new first
    /// piece is taken from the wiper's stock when it has a file ready.
    pub fn open(dir: &Path, ino: u64, wiper: &Arc<Wiper>) -> io::Result<Staging> {
        let s = Self::new(dir, ino, wiper);
        s.adopt_stocked();
        s.piece(0, true)?;
        Ok(s)
    }

    /// Makes a stock file the first piece unless one exists (a hard link
    /// never replaces an existing name); `piece` then opens it, or creates
    /// it when the stock had none.
    fn adopt_stocked(&self) {
        let path = self.inner.dir.join(piece_name(self.inner.ino, 0));
        if path.exists() {
            return;
        }
        let Some(spare) = self.inner.wiper.stock().take() else {
            return;
        };
        let _ = std::fs::hard_link(&spare, &path);
        let _ = std::fs::remove_file(&spare);
    }

    /// Opens the existing staging of `ino` (recovery); None if it is gone.
    pub fn existing(dir: &Path, ino: u64, wiper: &Arc<Wiper>) -> io::Result<Option<Staging>> {
        if pieces_on_disk(dir, ino).is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::new(dir, ino, wiper)))
    }

    fn piece(&self, k: u64, create: bool) -> io::Result<Option<Arc<File>>> {
        let mut pieces = self
            .inner
            .pieces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = pieces.get(&k) {
            return Ok(Some(Arc::clone(f)));
        }
        let path = self.inner.dir.join(piece_name(self.inner.ino, k));
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(f) => {
                let f = Arc::new(f);
                pieces.insert(k, Arc::clone(&f));
                Ok(Some(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Splits `[offset, offset + len)` at piece boundaries.
    fn parts(offset: u64, len: u64) -> impl Iterator<Item = (u64, u64, usize, usize)> {
        let end = offset + len;
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let k = pos / PIECE;
            let stop = end.min((k + 1) * PIECE);
            let item = (
                k,
                pos % PIECE,
                (pos - offset) as usize,
                (stop - offset) as usize,
            );
            pos = stop;
            Some(item)
        })
    }

    /// Writes `data` at file offset `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        for (k, at, a, b) in Self::parts(offset, data.len() as u64) {
            if let Some(f) = self.piece(k, true)? {
                f.write_all_at(&data[a..b], at)?;
            }
        }
        Ok(())
    }

    /// Makes what was written durable: every piece's data, and the folder
    /// that names them (compaction stages bytes already committed, and a
    /// journal that outlived them after a power cut would replay zeros).
    pub fn sync(&self) -> io::Result<()> {
        let pieces: Vec<Arc<File>> = self
            .inner
            .pieces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for f in pieces {
            f.sync_data()?;
        }
        File::open(&self.inner.dir)?.sync_all()
    }

    /// Reads `out.len()` bytes at file offset `offset`; bytes never
    /// written (holes, a missing piece, past a piece's end) read as zeros.
    pub fn read_at(&self, out: &mut [u8], offset: u64) -> io::Result<()> {
        for (k, at, a, b) in Self::parts(offset, out.len() as u64) {
            let dst = &mut out[a..b];
            let Some(f) = self.piece(k, false)? else {
                dst.fill(0);
                continue;
            };
            let mut done = 0;
            while done < dst.len() {
                let n = f.read_at(&mut dst[done..], at + done as u64)?;
                if n == 0 {
                    dst[done..].fill(0);
                    break;
                }
                done += n;
            }
        }
        Ok(())
    }

    /// Cuts the staged bytes at file size `size` (bytes past it can never
    /// be read back): later pieces go to the wiper, the piece across it is
    /// zeroed past the cut and shortened.
    pub fn truncate(&self, size: u64) -> io::Result<()> {
        for k in pieces_on_disk(&self.inner.dir, self.inner.ino) {
            let start = k * PIECE;
            if start >= size && k > 0 {
                self.inner
                    .pieces
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&k);
                self.doom(k)?;
            } else if let Some(f) = self.piece(k, false)? {
                let len = f.metadata()?.len();
                let keep = size.saturating_sub(start);
                if len > keep {
                    zero_or_warn(&f, keep, len, self.inner.ino)?;
                    f.set_len(keep)?;
                }
            }
        }
        Ok(())
    }

    /// Moves piece `k` into the wipe folder; it is overwritten once no
    /// handle can read it.
    fn doom(&self, k: u64) -> io::Result<()> {
        let path = self.inner.dir.join(piece_name(self.inner.ino, k));
        if let Some(moved) = self.inner.wiper.take(&path)? {
            self.inner
                .doomed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(moved);
        }
        Ok(())
    }

    /// The byte ranges that hold data on disk (see [`crate::sys::data_ranges`]).
    pub fn data(&self) -> io::Result<RangeSet> {
        let mut out = RangeSet::new();
        for k in pieces_on_disk(&self.inner.dir, self.inner.ino) {
            if let Some(f) = self.piece(k, false)? {
                for (a, b) in crate::sys::data_ranges(&f)? {
                    out.insert(k * PIECE + a, k * PIECE + b);
                }
            }
        }
        Ok(out)
    }

    /// Frees the staged bytes of `[start, end)` (they are no longer dirty).
    pub fn punch(&self, start: u64, end: u64) -> io::Result<()> {
        if start >= end {
            return Ok(());
        }
        for (k, at, a, b) in Self::parts(start, end - start) {
            if let Some(f) = self.piece(k, false)? {
                zero_or_warn(&f, at, at + (b - a) as u64, self.inner.ino)?;
                crate::sys::punch_hole(&f, at, (b - a) as u64)?;
            }
        }
        Ok(())
    }

    /// Removes every piece: the names go now, the bytes are overwritten
    /// when the last clone goes (a read that started before still reads
    /// what it asked for), and the files then go back to the stock (a
    /// create and a delete saved per written file).
    pub fn remove(self) {
        for k in pieces_on_disk(&self.inner.dir, self.inner.ino) {
            if let Err(e) = self.doom(k) {
                tracing::warn!(
                    "ino {}: cannot move staging piece {k} away to overwrite it: {e}",
                    self.inner.ino
                );
            }
        }
    }
}

/// Zeroes `[start, end)` of a staging piece before it is freed; on a full
/// disk it warns and lets the cut or punch go ahead (freeing space must
/// not fail for want of space).
fn zero_or_warn(f: &File, start: u64, end: u64, ino: u64) -> io::Result<()> {
    match crate::wipe::zero(f, start, end) {
        Err(e) if crate::wipe::no_space(&e) => {
            tracing::warn!(
                "ino {ino}: cannot overwrite staged bytes before freeing them ({e}): the disk is full; freed without overwriting"
            );
            Ok(())
        }
        r => r,
    }
}

/// Reads ranges of a staging one after the other as a stream (what a
/// seal consumes: one object may carry several ranges of a file).
pub struct StagingReader {
    staging: Staging,
    /// Ranges `[start, end)` still to read, in order; the first is
    /// under way.
    ranges: std::collections::VecDeque<(u64, u64)>,
}

impl StagingReader {
    /// A reader of the ranges `[start, end)`, in the order given.
    pub fn ranges(
        staging: &Staging,
        ranges: impl IntoIterator<Item = (u64, u64)>,
    ) -> StagingReader {
        StagingReader {
            staging: staging.clone(),
            ranges: ranges.into_iter().filter(|(a, b)| a < b).collect(),
        }
    }
}

impl io::Read for StagingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(&(pos, end)) = self.ranges.front() else {
            return Ok(0);
        };
        let want = (end - pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        self.staging.read_at(&mut buf[..want], pos)?;
        let pos = pos + want as u64;
        if pos == end {
            self.ranges.pop_front();
        } else if let Some(r) = self.ranges.front_mut() {
            r.0 = pos;
        }
        Ok(want)
    }
}

/// Removes every staging piece of `ino` (no handle on them is left),
/// overwriting them first.
pub fn remove_file(dir: &Path, ino: u64, wiper: &Wiper) {
    for k in pieces_on_disk(dir, ino) {
        wiper.remove(&dir.join(piece_name(ino, k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn record_round_trip() {
        let r = StagingRecord {
            size: 1 << 40,
            mtime: Time { secs: 5, nanos: 6 },
            dirty: RangeSet::from_ranges([(0, 10), (100, 4096)]),
        };
        assert_eq!(StagingRecord::decode(&r.encode()).unwrap(), r);
        assert!(StagingRecord::decode(&r.encode()[..10]).is_err());
    }

    fn wiper(dir: &Path) -> Arc<Wiper> {
        let stock = Arc::new(crate::stock::Stock::new(&dir.join("stock"), 0o600, 4));
        Arc::new(Wiper::start(&dir.join("wipe"), stock).unwrap())
    }

    #[test]
    fn sparse_staging_reads_zeros_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let aside = tempfile::tempdir().unwrap();
        let s = Staging::open(dir.path(), 7, &wiper(aside.path())).unwrap();
        s.write_at(b"abc", 10).unwrap();
        let mut out = [9u8; 20];
        s.read_at(&mut out, 5).unwrap();
        assert_eq!(&out[..8], &[0, 0, 0, 0, 0, b'a', b'b', b'c']);
        assert!(out[8..].iter().all(|b| *b == 0));
        let mut r = StagingReader::ranges(&s, [(8, 18)]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, [0, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        // Several ranges read back to back, in the order given (empty
        // ones skipped), as one object carries them.
        let mut r = StagingReader::ranges(&s, [(12, 13), (4, 4), (10, 12), (0, 2)]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, [b'c', b'a', b'b', 0, 0]);
        s.truncate(11).unwrap();
        assert_eq!(
            std::fs::metadata(Staging::path_for(dir.path(), 7))
                .unwrap()
                .len(),
            11
        );
    }

    #[test]
    fn writes_past_16_tib_go_to_later_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let aside = tempfile::tempdir().unwrap();
        let w = wiper(aside.path());
        let s = Staging::open(dir.path(), 9, &w).unwrap();
        let far = (1u64 << 50) - 5; // just under 1 PiB
        s.write_at(b"0123456789", far).unwrap();
        // Across a piece boundary too.
        s.write_at(b"abcd", 3 * PIECE - 2).unwrap();
        let mut out = [0u8; 10];
        s.read_at(&mut out, far).unwrap();
        assert_eq!(&out, b"0123456789");
        let mut out = [9u8; 6];
        s.read_at(&mut out, 3 * PIECE - 3).unwrap();
        assert_eq!(&out, &[0, b'a', b'b', b'c', b'd', 0]);
        assert!(dir.path().join("9.1023").exists() && dir.path().join("9.2").exists());
        s.truncate(3 * PIECE).unwrap();
        assert!(!dir.path().join("9.1023").exists());
        let mut out = [9u8; 2];
        s.read_at(&mut out, 3 * PIECE - 2).unwrap();
        assert_eq!(&out, b"ab");
        s.clone().remove();
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        // The clone still reads until it goes; then the wiper empties it.
        let mut out = [9u8; 2];
        s.read_at(&mut out, 3 * PIECE - 2).unwrap();
        assert_eq!(&out, b"ab");
        drop(s);
        w.finish();
        assert_eq!(
            std::fs::read_dir(aside.path().join("wipe"))
                .unwrap()
                .count(),
            0
        );
    }
}
