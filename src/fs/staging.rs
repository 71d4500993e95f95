//! Staging: unsealed writes of a file wait in `VAULT/staging/<ino>` (a
//! sparse file holding only what was written) until the file is sealed.
//!
//! A staging record in the namespace says which byte ranges of that file
//! are newer than the file's sealed extents, and the file's size and mtime.
//! It is written when a file is closed (before the seal), so a process
//! killed after close(2) returned leaves enough to seal the data on the
//! next mount. Format v1, little-endian:
//! ```text
//! u8   version = 1
//! u64  size
//! i64  mtime seconds, u32 mtime nanoseconds
//! u32  range count, then per range: u64 start, u64 end
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ranges::RangeSet;
use crate::codec::{DecodeError, Reader, Writer};
use crate::namespace::Time;

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
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32 + 16 * self.dirty.ranges().len());
        w.u8(RECORD_VERSION).u64(self.size).i64(self.mtime.secs).u32(self.mtime.nanos);
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
            return Err(DecodeError::Version { what: "staging record", found: v.into(), supported: RECORD_VERSION.into() });
        }
        let size = r.u64()?;
        let mtime = Time { secs: r.i64()?, nanos: r.u32()? };
        let n = r.u32()? as usize;
        if n > r.remaining() / 16 {
            return Err(r.invalid("ranges", "more ranges than the record holds"));
        }
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push((r.u64()?, r.u64()?));
        }
        r.finish()?;
        Ok(StagingRecord { size, mtime, dirty: RangeSet::from_ranges(ranges) })
    }
}

/// The staging file of one inode.
#[derive(Debug, Clone)]
pub struct Staging {
    /// Shared so reads and seals can use it without the file's lock.
    pub file: Arc<File>,
    /// Its path.
    pub path: PathBuf,
}

impl Staging {
    /// Path of the staging file of `ino` in `dir`.
    pub fn path_for(dir: &Path, ino: u64) -> PathBuf {
        dir.join(ino.to_string())
    }

    /// Opens (creating, mode 0600) the staging file of `ino`.
    pub fn open(dir: &Path, ino: u64) -> io::Result<Staging> {
        let path = Self::path_for(dir, ino);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
        Ok(Staging { file: Arc::new(file), path })
    }

    /// Opens an existing staging file (recovery); None if it is gone.
    pub fn existing(dir: &Path, ino: u64) -> io::Result<Option<Staging>> {
        let path = Self::path_for(dir, ino);
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Some(Staging { file: Arc::new(file), path })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Reads `out.len()` bytes at `offset`; bytes past the staging file's
    /// end (a hole at its tail) read as zeros.
    pub fn read_at(&self, out: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            let n = self.file.read_at(&mut out[done..], offset + done as u64)?;
            if n == 0 {
                out[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    /// Cuts the staging file to `size` (bytes past it can never be read back).
    pub fn truncate(&self, size: u64) -> io::Result<()> {
        if self.file.metadata()?.len() > size {
            self.file.set_len(size)?;
        }
        Ok(())
    }

    /// Removes the staging file.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads `len` bytes at `offset` of a staging file as a stream (what a
/// seal consumes).
pub struct StagingReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl StagingReader {
    /// A reader of `[offset, offset + len)`.
    pub fn new(staging: &Staging, offset: u64, len: u64) -> StagingReader {
        StagingReader { file: Arc::clone(&staging.file), pos: offset, end: offset + len }
    }
}

impl io::Read for StagingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // A hole at the tail of the staging file: zeros.
            buf[..want].fill(0);
            self.pos += want as u64;
            return Ok(want);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Removes the staging file of `ino` if it exists.
pub fn remove_file(dir: &Path, ino: u64) {
    let _ = std::fs::remove_file(Staging::path_for(dir, ino));
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

    #[test]
    fn sparse_staging_reads_zeros_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::open(dir.path(), 7).unwrap();
        s.write_at(b"abc", 10).unwrap();
        let mut out = [9u8; 20];
        s.read_at(&mut out, 5).unwrap();
        assert_eq!(&out[..8], &[0, 0, 0, 0, 0, b'a', b'b', b'c']);
        assert!(out[8..].iter().all(|b| *b == 0));
        let mut r = StagingReader::new(&s, 8, 10);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, [0, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        s.truncate(11).unwrap();
        assert_eq!(s.file.metadata().unwrap().len(), 11);
    }
}
