//! The staging journal: how the bytes of a file that is open when qsfs
//! dies are found again.
//!
//! Every change to a file's unsealed content (a write into its staging
//! file, a size change, a punched or zeroed range) is appended to
//! `VAULT/staging/journal/<ino>` as it happens, before the FUSE request is
//! answered. It sits in the page cache like the staging file, so both
//! survive the qsfs process being killed; the next mount replays the
//! journal and seals what the staging file holds, as ext4 keeps a killed
//! writer's data. A write is journalled after its bytes are in the staging
//! file; a cut (truncate, punch) before the staging file is cut.
//!
//! When a seal commits, the namespace records in the same atomic batch how
//! far into the journal it reached (a [`JournalMark`]); replay skips those
//! entries, so committed bytes are never replaced by staging bytes that a
//! power loss may have left stale.
//!
//! Format v1, little-endian:
//! ```text
//! header (40 bytes)
//!   [8] magic "qsfsjrnl"   u8 version = 1   [3] zero
//!   u64 inode   u64 epoch (random; names this journal)   u64 size at its start
//!   u32 check: the first 4 bytes of BLAKE3 over the 36 bytes before it
//! entry (21 bytes each), the n-th (from 0) at 40 + 21 n
//!   u8  kind: 1 = bytes [a, b) written, 2 = size set to a (b = 0),
//!             3 = bytes [a, b) read as zeros (punched; b may be 2^64 - 1)
//!   u64 a   u64 b
//!   u32 check: the first 4 bytes of BLAKE3 over (epoch, n, the 17 bytes)
//! ```
//! Replay stops at the first entry whose check fails (a torn tail).
//! A journal that grows long is rewritten (new epoch, to a temporary name,
//! renamed over it) as the state it describes: the zeroed ranges, then the
//! dirty ranges.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::ranges::RangeSet;
use crate::namespace::JournalMark;

const MAGIC: &[u8; 8] = b"qsfsjrnl";
const VERSION: u8 = 1;
const HEADER: u64 = 40;
const ENTRY: u64 = 21;
/// Entries after which a journal is rewritten as the state it describes
/// (when no seal is on its way), at least.
const COMPACT_AT: u64 = 4096;

/// One change to a file's unsealed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Bytes `[a, b)` were written to the staging file.
    Wrote(u64, u64),
    /// The size was set.
    Size(u64),
    /// Bytes `[a, b)` read as zeros.
    Zeroed(u64, u64),
}

impl Entry {
    fn parts(self) -> (u8, u64, u64) {
        match self {
            Entry::Wrote(a, b) => (1, a, b),
            Entry::Size(s) => (2, s, 0),
            Entry::Zeroed(a, b) => (3, a, b),
        }
    }

    fn from_parts(kind: u8, a: u64, b: u64) -> Option<Entry> {
        match kind {
            1 if a <= b => Some(Entry::Wrote(a, b)),
            2 if b == 0 => Some(Entry::Size(a)),
            3 if a <= b => Some(Entry::Zeroed(a, b)),
            _ => None,
        }
    }
}

fn check(parts: &[&[u8]]) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 4];
    out.copy_from_slice(&h.finalize().as_bytes()[..4]);
    out
}

fn header_bytes(ino: u64, epoch: u64, size: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8] = VERSION;
    h[12..20].copy_from_slice(&ino.to_le_bytes());
    h[20..28].copy_from_slice(&epoch.to_le_bytes());
    h[28..36].copy_from_slice(&size.to_le_bytes());
    let c = check(&[&h[..36]]);
    h[36..].copy_from_slice(&c);
    h
}

fn entry_bytes(epoch: u64, seq: u64, e: Entry) -> [u8; ENTRY as usize] {
    let (kind, a, b) = e.parts();
    let mut out = [0u8; ENTRY as usize];
    out[0] = kind;
    out[1..9].copy_from_slice(&a.to_le_bytes());
    out[9..17].copy_from_slice(&b.to_le_bytes());
    let c = check(&[&epoch.to_le_bytes(), &seq.to_le_bytes(), &out[..17]]);
    out[17..].copy_from_slice(&c);
    out
}

fn new_epoch() -> io::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// Where the journal of `ino` lives.
pub fn path_for(dir: &Path, ino: u64) -> PathBuf {
    dir.join(ino.to_string())
}

/// How many files' journals `dir` holds: the files a mount left staged
/// (a clean unmount leaves none).
pub fn count_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u64>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

/// The open journal of one file.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    ino: u64,
    epoch: u64,
    /// Entries written.
    seq: u64,
}

impl Journal {
    /// Starts the journal of `ino` (replacing any old one) for a file of
    /// `size` bytes whose content is as the namespace has it. A file from
    /// `stock` (same filesystem) is renamed into place when one is ready:
    /// a create is the slow part of starting one.
    pub fn create(
        dir: &Path,
        ino: u64,
        size: u64,
        stock: Option<&crate::stock::Stock>,
    ) -> io::Result<Journal> {
        let path = path_for(dir, ino);
        if let Some(spare) = stock.and_then(super::super::stock::Stock::take)
            && std::fs::rename(&spare, &path).is_err()
        {
            let _ = std::fs::remove_file(&spare);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        let epoch = new_epoch()?;
        file.write_all_at(&header_bytes(ino, epoch, size), 0)?;
        Ok(Journal {
            file,
            path,
            ino,
            epoch,
            seq: 0,
        })
    }

    /// Reopens a journal found at mount (its valid entries kept, a torn
    /// tail cut off) to go on appending to it.
    pub fn reopen(image: &Image, dir: &Path) -> io::Result<Journal> {
        let path = path_for(dir, image.ino);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let seq = image.entries.len() as u64;
        file.set_len(HEADER + seq * ENTRY)?;
        Ok(Journal {
            file,
            path,
            ino: image.ino,
            epoch: image.epoch,
            seq,
        })
    }

    /// How far the journal reaches now (what a seal started now covers).
    pub fn mark(&self) -> JournalMark {
        JournalMark {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Appends one change.
    pub fn append(&mut self, e: Entry) -> io::Result<()> {
        self.file.write_all_at(
            &entry_bytes(self.epoch, self.seq, e),
            HEADER + self.seq * ENTRY,
        )?;
        self.seq += 1;
        Ok(())
    }

    /// True when the journal is long enough to be worth rewriting as the
    /// state it describes (`ranges`: how many ranges that state has).
    pub fn wants_compaction(&self, ranges: usize) -> bool {
        self.seq > COMPACT_AT.max(4 * ranges as u64)
    }

    /// Rewrites the journal as `size`, `cuts` and `dirty` under a new epoch
    /// (to a temporary name, then renamed over it, so a kill in between
    /// leaves the old or the new one whole). Only while no seal is on its
    /// way: a seal's mark names the epoch it started in.
    pub fn compact(&mut self, size: u64, cuts: &RangeSet, dirty: &RangeSet) -> io::Result<()> {
        let epoch = new_epoch()?;
        if cuts.ranges().is_empty() && dirty.ranges().is_empty() {
            return self.reset(epoch, size);
        }
        let mut buf = Vec::with_capacity(
            HEADER as usize + ENTRY as usize * (cuts.ranges().len() + dirty.ranges().len()),
        );
        buf.extend_from_slice(&header_bytes(self.ino, epoch, size));
        let mut seq = 0u64;
        let entries = cuts
            .ranges()
            .iter()
            .map(|&(a, b)| Entry::Zeroed(a, b))
            .chain(dirty.ranges().iter().map(|&(a, b)| Entry::Wrote(a, b)));
        for e in entries {
            buf.extend_from_slice(&entry_bytes(epoch, seq, e));
            seq += 1;
        }
        let tmp = self.path.with_extension("new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all_at(&buf, 0)?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = file;
        self.epoch = epoch;
        self.seq = seq;
        Ok(())
    }

    /// Empties the journal in place under a new epoch: what it described
    /// is all committed. No temporary file: a new file and the rename
    /// over the old one cost an inode made and one freed at every commit
    /// of a file kept open. A kill in between leaves either the old header
    /// with no entries (nothing to replay) or a torn header (the journal
    /// is dropped at mount); both are right for a file with nothing
    /// unsealed.
    fn reset(&mut self, epoch: u64, size: u64) -> io::Result<()> {
        self.file.set_len(HEADER)?;
        self.file
            .write_all_at(&header_bytes(self.ino, epoch, size), 0)?;
        self.epoch = epoch;
        self.seq = 0;
        Ok(())
    }

    /// Removes the journal (the file's content is all committed), into
    /// `stock` when one is given (nothing else has the journal open).
    pub fn remove(self, stock: Option<&crate::stock::Stock>) {
        let Journal { file, path, .. } = self;
        drop(file);
        let _ = match stock {
            Some(stock) => stock.recycle(&path),
            None => std::fs::remove_file(&path),
        };
    }
}

/// A journal as read back at mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The file.
    pub ino: u64,
    /// The journal's epoch.
    pub epoch: u64,
    /// The file's size when the journal started.
    pub start_size: u64,
    /// Its valid entries, in order.
    pub entries: Vec<Entry>,
}

/// Why a journal cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading it failed.
    #[error("staging journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Shorter than its header: the process stopped between starting the
    /// journal and writing its header, so it records no write (a write is
    /// answered only after its entry is written).
    #[error("staging journal {path}: started but records no write")]
    Unstarted {
        /// The journal file.
        path: PathBuf,
    },
    /// Its header is not a journal header of this version.
    #[error("staging journal {path}: {detail}")]
    Header {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
}

impl Image {
    /// Decodes a journal's bytes: the header must be whole and valid; the
    /// entries are taken up to the first that is not.
    pub fn decode(buf: &[u8], path: &Path) -> Result<Image, JournalError> {
        let bad = |detail| JournalError::Header {
            path: path.to_path_buf(),
            detail,
        };
        let h = buf
            .get(..HEADER as usize)
            .ok_or_else(|| JournalError::Unstarted {
                path: path.to_path_buf(),
            })?;
        if &h[..8] != MAGIC {
            return Err(bad("not a staging journal (bad magic)"));
        }
        if h[8] != VERSION {
            return Err(bad("written by another qsfs version (journal version)"));
        }
        if check(&[&h[..36]]) != h[36..40] {
            return Err(bad("damaged header"));
        }
        let u64_at = |b: &[u8], at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let ino = u64_at(h, 12);
        let epoch = u64_at(h, 20);
        let start_size = u64_at(h, 28);
        let mut entries = Vec::new();
        for (seq, e) in buf[HEADER as usize..]
            .chunks_exact(ENTRY as usize)
            .enumerate()
        {
            if check(&[&epoch.to_le_bytes(), &(seq as u64).to_le_bytes(), &e[..17]]) != e[17..] {
                break;
            }
            match Entry::from_parts(e[0], u64_at(e, 1), u64_at(e, 9)) {
                Some(x) => entries.push(x),
                None => break,
            }
        }
        Ok(Image {
            ino,
            epoch,
            start_size,
            entries,
        })
    }

    /// Reads the journal at `path`.
    pub fn read(path: &Path) -> Result<Image, JournalError> {
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Image::decode(&buf, path)
    }

    /// What the journal says is not committed: entries the namespace's
    /// `mark` covers are skipped (the namespace then holds the file as of
    /// that mark, `committed_size` bytes long).
    pub fn replay(&self, mark: Option<JournalMark>, committed_size: u64) -> Replay {
        let (skip, size) = match mark {
            Some(m) if m.epoch == self.epoch && m.seq <= self.entries.len() as u64 => {
                (m.seq as usize, committed_size)
            }
            _ => (0, self.start_size),
        };
        let mut r = Replay {
            size,
            dirty: RangeSet::new(),
            cuts: RangeSet::new(),
            floor: size,
        };
        for e in &self.entries[skip..] {
            match *e {
                Entry::Wrote(a, b) => {
                    r.dirty.insert(a, b);
                    r.size = r.size.max(b);
                }
                Entry::Size(s) => {
                    if s < r.size {
                        r.dirty.remove(s, u64::MAX);
                        r.cuts.insert(s, u64::MAX);
                    }
                    r.size = s;
                    r.floor = s;
                }
                Entry::Zeroed(a, b) => {
                    r.dirty.remove(a, b);
                    r.cuts.insert(a, b);
                }
            }
        }
        r.floor = r.floor.min(r.size);
        r
    }
}

/// The uncommitted state a journal describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The file's size.
    pub size: u64,
    /// Ranges whose bytes are in the staging file.
    pub dirty: RangeSet,
    /// Ranges cut from the namespace's extents.
    pub cuts: RangeSet,
    /// The size before the writes since the last explicit size change.
    floor: u64,
}

impl Replay {
    /// The state an older version's staging record describes (dirty
    /// ranges and size, no cuts).
    pub fn from_record(size: u64, dirty: RangeSet) -> Replay {
        Replay {
            size,
            dirty,
            cuts: RangeSet::new(),
            floor: size,
        }
    }

    /// Forgets dirty ranges whose bytes never reached the staging file
    /// (a power loss before writeback: the journal entry survived, the
    /// data did not). The namespace's bytes serve them instead; and when
    /// the file's end was such a write, the size falls back as ext4's
    /// ordered mode would leave it, to the end of what survived.
    pub fn drop_lost(&mut self, lost: &RangeSet) {
        if lost.is_empty() {
            return;
        }
        let tail_lost = self.size > 0
            && lost
                .ranges()
                .iter()
                .any(|&(a, b)| a < self.size && b >= self.size)
            && self.dirty.ranges().last().is_some_and(|r| r.1 == self.size);
        self.dirty.subtract(lost);
        if tail_lost {
            let kept_end = self.dirty.ranges().last().map_or(0, |r| r.1);
            self.size = self.floor.max(kept_end).min(self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 42, 100, None).unwrap();
        j.append(Entry::Wrote(0, 10)).unwrap();
        j.append(Entry::Size(5)).unwrap();
        j.append(Entry::Zeroed(1, 3)).unwrap();
        let path = path_for(dir.path(), 42);
        let img = Image::read(&path).unwrap();
        assert_eq!(img.ino, 42);
        assert_eq!(img.start_size, 100);
        assert_eq!(
            img.entries,
            vec![Entry::Wrote(0, 10), Entry::Size(5), Entry::Zeroed(1, 3)]
        );
        // A torn last entry is dropped, the rest kept.
        let bytes = std::fs::read(&path).unwrap();
        let img = Image::decode(&bytes[..bytes.len() - 3], &path).unwrap();
        assert_eq!(img.entries.len(), 2);
        // Garbage after the valid entries is ignored.
        let mut junk = bytes.clone();
        junk.extend_from_slice(&[0xAB; 21]);
        assert_eq!(Image::decode(&junk, &path).unwrap().entries.len(), 3);
        // A damaged header is an error naming the file.
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        let e = Image::decode(&bad, &path).unwrap_err().to_string();
        assert!(e.contains("damaged header") && e.contains("42"), "{e}");
        // Cut inside the header (a kill between starting the journal and
        // writing its header): it records no write, which is not damage.
        for cut in [0, 1, HEADER as usize - 1] {
            assert!(matches!(
                Image::decode(&bytes[..cut], &path),
                Err(JournalError::Unstarted { .. })
            ));
        }
        // Reopen cuts the torn tail and appends after the valid entries.
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let img = Image::read(&path).unwrap();
        let mut j = Journal::reopen(&img, dir.path()).unwrap();
        j.append(Entry::Wrote(7, 9)).unwrap();
        assert_eq!(
            Image::read(&path).unwrap().entries,
            vec![Entry::Wrote(0, 10), Entry::Size(5), Entry::Wrote(7, 9)]
        );
    }

    #[test]
    fn a_settled_reset_empties_the_same_file_under_a_new_epoch() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 9, 100, None).unwrap();
        j.append(Entry::Wrote(0, 10)).unwrap();
        j.append(Entry::Size(50)).unwrap();
        let path = path_for(dir.path(), 9);
        let (inode, before) = (
            std::fs::metadata(&path).unwrap().ino(),
            Image::read(&path).unwrap(),
        );
        j.compact(50, &RangeSet::new(), &RangeSet::new()).unwrap();
        let after = Image::read(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            inode,
            "a new file was made"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER);
        assert_ne!(after.epoch, before.epoch);
        assert_eq!((after.start_size, after.entries.len()), (50, 0));
        assert_eq!(j.mark().epoch, after.epoch);
        // It goes on appending after the new header.
        j.append(Entry::Wrote(3, 4)).unwrap();
        assert_eq!(
            Image::read(&path).unwrap().entries,
            vec![Entry::Wrote(3, 4)]
        );
    }

    /// A v1 journal as this version wrote it: inode 7, epoch
    /// 0x0102030405060708, start size 4096, then "wrote [4096, 4106)" and
    /// "size 100". It must keep decoding to that.
    const FROZEN_V1: &str = "717366736a726e6c01000000070000000000000008070605040302010010000000000000f3827efc0100100000000000000a10000000000000057a50d30264000000000000000000000000000000d4c224b5";

    #[test]
    fn the_frozen_v1_example_still_reads() {
        let buf = hex::decode(FROZEN_V1).unwrap();
        let img = Image::decode(&buf, Path::new("frozen")).unwrap();
        assert_eq!(
            (img.ino, img.epoch, img.start_size),
            (7, 0x0102_0304_0506_0708, 4096)
        );
        assert_eq!(
            img.entries,
            vec![Entry::Wrote(4096, 4106), Entry::Size(100)]
        );
        // And this version still writes it byte for byte.
        let mut again = header_bytes(7, 0x0102_0304_0506_0708, 4096).to_vec();
        again.extend_from_slice(&entry_bytes(
            0x0102_0304_0506_0708,
            0,
            Entry::Wrote(4096, 4106),
        ));
        again.extend_from_slice(&entry_bytes(0x0102_0304_0506_0708, 1, Entry::Size(100)));
        assert_eq!(
            again, buf,
            "the v1 format changed: bump VERSION and keep reading v1"
        );
    }

    #[test]
    fn a_mark_skips_what_the_namespace_holds() {
        let img = Image {
            ino: 1,
            epoch: 9,
            start_size: 0,
            entries: vec![
                Entry::Wrote(0, 100),
                Entry::Size(50),
                Entry::Wrote(200, 210),
            ],
        };
        let all = img.replay(None, 0);
        assert_eq!(all.size, 210);
        assert_eq!(all.dirty.ranges(), &[(0, 50), (200, 210)]);
        assert_eq!(all.cuts.ranges(), &[(50, u64::MAX)]);
        let after = img.replay(Some(JournalMark { epoch: 9, seq: 2 }), 50);
        assert_eq!(after.size, 210);
        assert_eq!(after.dirty.ranges(), &[(200, 210)]);
        assert!(after.cuts.is_empty());
        // A mark of another epoch (an older journal of the same inode) is
        // no mark at all.
        assert_eq!(img.replay(Some(JournalMark { epoch: 8, seq: 3 }), 7), all);
    }

    #[test]
    fn lost_tail_falls_back_to_what_survived() {
        let img = Image {
            ino: 1,
            epoch: 1,
            start_size: 100,
            entries: vec![Entry::Wrote(100, 150), Entry::Wrote(150, 400)],
        };
        let mut r = img.replay(None, 0);
        r.drop_lost(&RangeSet::from_ranges([(150, 400)]));
        assert_eq!((r.size, r.dirty.ranges()), (150, &[(100, 150)][..]));
        let mut r = img.replay(None, 0);
        r.drop_lost(&RangeSet::from_ranges([(100, 400)]));
        assert_eq!(r.size, 100);
        assert!(r.dirty.is_empty());
        // A lost range in the middle keeps the size.
        let mut r = img.replay(None, 0);
        r.drop_lost(&RangeSet::from_ranges([(120, 130)]));
        assert_eq!(r.size, 400);
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            (0u64..500, 1u64..100).prop_map(|(a, l)| Entry::Wrote(a, a + l)),
            (0u64..600).prop_map(Entry::Size),
            (0u64..500, 1u64..100).prop_map(|(a, l)| Entry::Zeroed(a, a + l)),
        ]
    }

    proptest! {
        /// A compacted journal replays to the same state as the original.
        #[test]
        fn compaction_keeps_the_state(start in 0u64..300, entries in proptest::collection::vec(entry(), 0..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut j = Journal::create(dir.path(), 3, start, None).unwrap();
            for e in &entries { j.append(*e).unwrap(); }
            let path = path_for(dir.path(), 3);
            let before = Image::read(&path).unwrap().replay(None, 0);
            j.compact(before.size, &before.cuts, &before.dirty).unwrap();
            let after = Image::read(&path).unwrap().replay(None, 0);
            prop_assert_eq!((after.size, &after.dirty, &after.cuts), (before.size, &before.dirty, &before.cuts));
            prop_assert!(!path.with_extension("new").exists());
        }
    }
}
