//! The pack file format: many small shards in one append-only file, so a
//! group of small files costs one file and one barrier per node instead of
//! a file, a rename and a folder sync per shard. Pure encoding; the store
//! that writes and reads packs is packs.rs.
//!
//! A pack describes itself: every shard record holds a whole shard file's
//! bytes (its 64-byte header names the object and index, see header.rs),
//! so a node lists what a pack holds without the vault.
//!
//! Format v1, integers little-endian, `NODE/packs/<seq as 16 hex>.pack`:
//! ```text
//! pack header (32 bytes)
//!   [ 0.. 8] magic "QSFSPACK"
//!   [ 8]     version u8 = 1
//!   [ 9..16] zero
//!   [16..24] seq u64 (the number in the file name)
//!   [24..32] check: first 8 bytes of BLAKE3(bytes 0..24)
//! record (the first at offset 32, each right after the one before)
//!   [ 0]     kind u8: 1 shard, 2 commit, 3 tombstone
//!   [ 1.. 4] zero
//!   [ 4.. 8] body length u32
//!   [ 8..24] check: first 16 bytes of BLAKE3(seq u64, record offset u64,
//!            kind u8, body length u32, covered), where covered is the
//!            whole body of a commit or tombstone and the first 64 bytes
//!            (the shard header) of a shard record
//!   [24..]   body
//! shard body:     a shard file's bytes: header, payload, key piece
//! commit body:    u32 count, then count u64 offsets of shard records in
//!                 this pack that are now committed
//! tombstone body: u64 seq and u64 offset of the shard record it removes,
//!                 then its object id (16 bytes) and shard index (u8)
//! ```
//! A shard record counts only once a commit record names it: a write that
//! was never committed (discarded, or cut off by a crash) is dead space,
//! never a shard. The check binds a record to its pack and place, so bytes
//! left over from elsewhere do not parse as a record. A shard's payload is
//! not covered by the check: the reader verifies every chunk against the
//! manifest's hashes anyway, and hashing it twice would cost every write.
//! A record that does not parse ends the pack (a torn tail): writers only
//! ever append, so nothing valid follows it.

use crate::ObjectId;
use crate::node::header::{HEADER_LEN, ShardKey};

/// Magic bytes of a pack file.
pub const MAGIC: &[u8; 8] = b"QSFSPACK";
/// Pack format version.
pub const VERSION: u8 = 1;
/// Length of the pack header.
pub const PACK_HEADER_LEN: u64 = 32;
/// Length of a record header.
pub const RECORD_HEADER_LEN: u64 = 24;
/// Length of a tombstone body.
pub const TOMBSTONE_LEN: usize = 8 + 8 + 16 + 1;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A shard file's bytes.
    Shard,
    /// Offsets of shard records now committed.
    Commit,
    /// A shard record removed.
    Tombstone,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Shard => 1,
            Kind::Commit => 2,
            Kind::Tombstone => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Shard),
            2 => Some(Kind::Commit),
            3 => Some(Kind::Tombstone),
            _ => None,
        }
    }
}

/// Where a shard record sits: its pack and the offset of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordAt {
    /// The pack's sequence number.
    pub seq: u64,
    /// Offset of the record (its header) in the pack.
    pub offset: u64,
}

/// The pack header of pack `seq`.
pub fn pack_header(seq: u64) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8] = VERSION;
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let check = blake3::hash(&h[..24]);
    h[24..32].copy_from_slice(&check.as_bytes()[..8]);
    h
}

/// Why a pack header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackHeaderError {
    /// Not a pack, or damaged.
    #[error("not a qsfs pack (bad magic or check)")]
    NotAPack,
    /// A newer format.
    #[error("pack format version {0}; this qsfs reads version {VERSION}: upgrade qsfs")]
    Version(u8),
    /// The header names another pack than its file name does.
    #[error("the header says pack {found}, the file name says {expected}")]
    Seq {
        /// From the file name.
        expected: u64,
        /// From the header.
        found: u64,
    },
}

/// Checks the pack header of the file named for pack `seq`.
pub fn check_pack_header(seq: u64, h: &[u8]) -> Result<(), PackHeaderError> {
    if h.len() < PACK_HEADER_LEN as usize || &h[..8] != MAGIC {
        return Err(PackHeaderError::NotAPack);
    }
    if blake3::hash(&h[..24]).as_bytes()[..8] != h[24..32] {
        return Err(PackHeaderError::NotAPack);
    }
    if h[8] != VERSION {
        return Err(PackHeaderError::Version(h[8]));
    }
    let found = u64::from_le_bytes(h[16..24].try_into().unwrap_or([0; 8]));
    if found != seq {
        return Err(PackHeaderError::Seq {
            expected: seq,
            found,
        });
    }
    Ok(())
}

fn covered(kind: Kind, body: &[u8]) -> &[u8] {
    match kind {
        Kind::Shard => &body[..body.len().min(HEADER_LEN)],
        Kind::Commit | Kind::Tombstone => body,
    }
}

fn check(at: RecordAt, kind: Kind, len: u32, covered: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(&at.seq.to_le_bytes());
    h.update(&at.offset.to_le_bytes());
    h.update(&[kind.byte()]);
    h.update(&len.to_le_bytes());
    h.update(covered);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The header of a record of `kind` with `body`, to be written at `at`.
/// None for a body over 4 GiB (packs hold small shards only).
pub fn record_header(at: RecordAt, kind: Kind, body: &[u8]) -> Option<[u8; 24]> {
    let len = u32::try_from(body.len()).ok()?;
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    h[0] = kind.byte();
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..24].copy_from_slice(&check(at, kind, len, covered(kind, body)));
    Some(h)
}

/// A record header as read, before its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Its kind.
    pub kind: Kind,
    /// Body length.
    pub len: u32,
    check: [u8; 16],
}

impl RecordHead {
    /// Parses a record header; None if it cannot be one (a torn tail).
    pub fn parse(h: &[u8]) -> Option<RecordHead> {
        if h.len() < RECORD_HEADER_LEN as usize || h[1..4] != [0, 0, 0] {
            return None;
        }
        let kind = Kind::from_byte(h[0])?;
        let len = u32::from_le_bytes(h[4..8].try_into().ok()?);
        let mut check = [0u8; 16];
        check.copy_from_slice(&h[8..24]);
        Some(RecordHead { kind, len, check })
    }

    /// How many body bytes [`RecordHead::verify`] needs.
    pub fn covered_len(&self) -> usize {
        match self.kind {
            Kind::Shard => (self.len as usize).min(HEADER_LEN),
            Kind::Commit | Kind::Tombstone => self.len as usize,
        }
    }

    /// Whether the record at `at` with these covered body bytes is whole.
    pub fn verify(&self, at: RecordAt, covered: &[u8]) -> bool {
        covered.len() == self.covered_len() && check(at, self.kind, self.len, covered) == self.check
    }
}

/// The body of a commit record.
pub fn commit_body(offsets: &[u64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + 8 * offsets.len());
    b.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for o in offsets {
        b.extend_from_slice(&o.to_le_bytes());
    }
    b
}

/// Parses a commit body; None if its count does not match its length.
pub fn parse_commit(body: &[u8]) -> Option<Vec<u64>> {
    let count = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    if body.len() != 4 + 8 * count {
        return None;
    }
    Some(
        body[4..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    )
}

/// The body of a tombstone removing the shard record at `at`, which holds `key`.
pub fn tombstone_body(at: RecordAt, key: ShardKey) -> [u8; TOMBSTONE_LEN] {
    let mut b = [0u8; TOMBSTONE_LEN];
    b[..8].copy_from_slice(&at.seq.to_le_bytes());
    b[8..16].copy_from_slice(&at.offset.to_le_bytes());
    b[16..32].copy_from_slice(key.object.as_bytes());
    b[32] = key.index;
    b
}

/// Parses a tombstone body.
pub fn parse_tombstone(body: &[u8]) -> Option<(RecordAt, ShardKey)> {
    if body.len() != TOMBSTONE_LEN {
        return None;
    }
    let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
    let offset = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let object = ObjectId(body[16..32].try_into().ok()?);
    Some((
        RecordAt { seq, offset },
        ShardKey {
            object,
            index: body[32],
        },
    ))
}

/// The file name of pack `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:016x}.pack")
}

/// The pack number in a file name, if it is a pack's.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".pack")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn key() -> ShardKey {
        ShardKey {
            object: ObjectId([7; 16]),
            index: 3,
        }
    }

    #[test]
    fn records_bind_to_their_place() {
        let at = RecordAt { seq: 5, offset: 32 };
        let body = vec![9u8; 100];
        let h = record_header(at, Kind::Shard, &body).unwrap();
        let head = RecordHead::parse(&h).unwrap();
        assert_eq!((head.kind, head.len), (Kind::Shard, 100));
        assert!(head.verify(at, &body[..64]));
        assert!(!head.verify(RecordAt { seq: 5, offset: 33 }, &body[..64]));
        assert!(!head.verify(RecordAt { seq: 6, offset: 32 }, &body[..64]));
        let mut other = body.clone();
        other[10] ^= 1;
        assert!(!head.verify(at, &other[..64]));
        // The payload past the shard header is not covered.
        let mut tail = body;
        tail[90] ^= 1;
        assert!(head.verify(at, &tail[..64]));
        assert!(RecordHead::parse(&[0u8; 24]).is_none());
    }

    #[test]
    fn bodies_round_trip() {
        assert_eq!(
            parse_commit(&commit_body(&[32, 4000])).unwrap(),
            vec![32, 4000]
        );
        assert!(parse_commit(&commit_body(&[1])[..11]).is_none());
        let at = RecordAt { seq: 2, offset: 77 };
        assert_eq!(
            parse_tombstone(&tombstone_body(at, key())).unwrap(),
            (at, key())
        );
        assert_eq!(parse_file_name(&file_name(0xab)), Some(0xab));
        assert_eq!(parse_file_name("00ab.pack"), None);
    }

    #[test]
    fn pack_headers() {
        let h = pack_header(9);
        assert_eq!(check_pack_header(9, &h), Ok(()));
        assert_eq!(
            check_pack_header(8, &h),
            Err(PackHeaderError::Seq {
                expected: 8,
                found: 9
            })
        );
        let mut bad = h;
        bad[20] ^= 1;
        assert_eq!(check_pack_header(9, &bad), Err(PackHeaderError::NotAPack));
    }

    /// A pack written by this version, frozen: it must keep parsing.
    #[test]
    fn frozen_example() {
        let at = RecordAt {
            seq: 1,
            offset: PACK_HEADER_LEN,
        };
        let h = record_header(at, Kind::Tombstone, &tombstone_body(at, key())).unwrap();
        assert_eq!(
            hex::encode(pack_header(1)),
            "515346535041434b01000000000000000100000000000000c769c2ba6806ebe9"
        );
        assert_eq!(
            hex::encode(h),
            "03000000210000001da62866921598f2457d5151b4564704"
        );
    }
}
