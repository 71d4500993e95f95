//! The key pool file layout, version 1: a checksummed header, then fixed-size key records.
//!
//! Pure code: encodes and decodes bytes, no I/O.
//!
//! ```text
//! Header (HEADER_LEN = 312 bytes, all integers big endian):
//!   off len  field
//!     0   8  magic "QSFSPOOL"
//!     8   2  version, 1
//!    10   1  end: b'A' (vault side) or b'B' (node side)
//!    11   1  flags: bit 0 = REFILL (a simulated link: qsfs may append keys);
//!            bit 1 = SEALED (key bytes sealed under a vault's pool key,
//!            below); other bits must be 0 (a pool from QKD equipment has 0)
//!    12  16  link id: 16 random bytes shared by both ends of the link, so a
//!            peer holding another pool is recognised
//!    28   1  link name length L, 1..=200
//!    29 200  link name, UTF-8, zero padded
//!   229   8  capacity: keys at generation; 100% for the low-water warning
//!   237   8  key count N: records 0..N are valid. Bytes after record N-1
//!            are an unfinished append (a crash before the count was
//!            updated) and are ignored.
//!   245  16  seal check (flag SEALED only, else zero): the first 16 bytes
//!            of BLAKE3-keyed(seal key, "qsfs pool seal check v1" ‖ link
//!            id), so a wrong seal key is refused before any key is used
//!   261  19  reserved, zero
//!   280  32  blake3 of bytes 0..280
//!
//! Record i at HEADER_LEN + i * RECORD_LEN (RECORD_LEN = 50 bytes):
//!     0  16  key id: random UUID v4 bytes, the same at both ends
//!    16  32  key (AES-256); all zeros once used
//!    48   1  state: 0 unused, 1 used
//!    49   1  direction: 0 A->B, 1 B->A
//! ```
//!
//! Directions alternate by record index: even records carry A->B keys, odd
//! records B->A keys, in the generated part and in every refill, so a pool
//! always holds (within one key) as many keys for each direction and an
//! append never needs to know what came before.
//!
//! A sealed pool (flag SEALED) stores each unused key XORed with a pad,
//! `BLAKE3-keyed(seal key, "qsfs pool key pad v1" ‖ link id ‖ key id)`: a
//! stream cipher whose nonce is the key id, unique in the pool. The seal
//! key is derived from the vault key, so a copy of the vault folder holds
//! no usable link key without an unlock. Both ends of an in-process link
//! share the seal key and therefore identical record bytes. The pad has no
//! MAC: a changed key byte only makes the link's own MAC fail. Used keys
//! are zeros, as in a clear pool. Pools from QKD equipment and the node
//! ends of remote links stay clear (their machines hold no vault key).
//!
//! The header fits in one 512-byte sector, so the count update after an
//! append is a single-sector write; a torn header is caught by the checksum
//! and refused, never half-trusted.

use super::error::HeaderFault;
use crate::qkd::{Direction, End, KEY_LEN, KeyId};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"QSFSPOOL";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Header bytes before the first record.
pub const HEADER_LEN: usize = 312;
/// Bytes per key record.
pub const RECORD_LEN: usize = 50;
/// Longest link name, in bytes.
pub const MAX_NAME: usize = 200;
/// Header flag: qsfs may append keys (simulated link).
pub const FLAG_REFILL: u8 = 1;
/// Header flag: key bytes are sealed under a vault's pool key.
pub const FLAG_SEALED: u8 = 2;
/// Bytes of the seal check in the header.
pub const SEAL_CHECK_LEN: usize = 16;
const SEAL_CHECK_AT: usize = 245;

const CHECKSUM_AT: usize = 280;
const COUNT_AT: usize = 237;
/// Offset of the key bytes inside a record.
pub const KEY_AT: usize = 16;
/// Offset of the state byte inside a record.
pub const STATE_AT: usize = 48;

/// Record state byte: unused.
pub const STATE_UNUSED: u8 = 0;
/// Record state byte: used (key bytes zeroed).
pub const STATE_USED: u8 = 1;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Which end this file belongs to.
    pub end: End,
    /// True for a simulated link that qsfs refills.
    pub refill: bool,
    /// Shared by both ends' files.
    pub link_id: [u8; 16],
    /// The link's name.
    pub link: String,
    /// Keys at generation.
    pub capacity: u64,
    /// Valid records.
    pub count: u64,
    /// The seal check of a sealed pool; `None` for a clear one.
    pub sealed: Option<[u8; SEAL_CHECK_LEN]>,
}

impl Header {
    /// The header bytes, checksum included. Fails for a link name that is
    /// empty or longer than [`MAX_NAME`] bytes.
    pub fn encode(&self) -> Result<[u8; HEADER_LEN], HeaderFault> {
        let name = self.link.as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(HeaderFault::Name);
        }
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_be_bytes());
        h[10] = end_byte(self.end);
        h[11] = if self.refill { FLAG_REFILL } else { 0 };
        if let Some(check) = &self.sealed {
            h[11] |= FLAG_SEALED;
            h[SEAL_CHECK_AT..SEAL_CHECK_AT + SEAL_CHECK_LEN].copy_from_slice(check);
        }
        h[12..28].copy_from_slice(&self.link_id);
        h[28] = name.len() as u8;
        h[29..29 + name.len()].copy_from_slice(name);
        h[229..237].copy_from_slice(&self.capacity.to_be_bytes());
        h[COUNT_AT..COUNT_AT + 8].copy_from_slice(&self.count.to_be_bytes());
        let sum = blake3::hash(&h[..CHECKSUM_AT]);
        h[CHECKSUM_AT..].copy_from_slice(sum.as_bytes());
        Ok(h)
    }

    /// Parses and checks header bytes.
    pub fn decode(h: &[u8]) -> Result<Header, HeaderFault> {
        if h.len() < 8 || &h[0..8] != MAGIC {
            return Err(HeaderFault::Magic);
        }
        if h.len() < HEADER_LEN {
            return Err(HeaderFault::Short(h.len()));
        }
        let version = u16::from_be_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(HeaderFault::Version(version));
        }
        if blake3::hash(&h[..CHECKSUM_AT]).as_bytes() != &h[CHECKSUM_AT..HEADER_LEN] {
            return Err(HeaderFault::Checksum);
        }
        let end = match h[10] {
            b'A' => End::A,
            b'B' => End::B,
            other => return Err(HeaderFault::Field(format!("end byte {other:#04x}"))),
        };
        if h[11] & !(FLAG_REFILL | FLAG_SEALED) != 0 {
            return Err(HeaderFault::Field(format!("unknown flags {:#04x}", h[11])));
        }
        let len = usize::from(h[28]);
        if len == 0 || len > MAX_NAME {
            return Err(HeaderFault::Field(format!("link name length {len}")));
        }
        let link = std::str::from_utf8(&h[29..29 + len])
            .map_err(|_| HeaderFault::Field("link name is not UTF-8".to_owned()))?
            .to_owned();
        let mut link_id = [0u8; 16];
        link_id.copy_from_slice(&h[12..28]);
        let sealed = (h[11] & FLAG_SEALED != 0).then(|| {
            let mut c = [0u8; SEAL_CHECK_LEN];
            c.copy_from_slice(&h[SEAL_CHECK_AT..SEAL_CHECK_AT + SEAL_CHECK_LEN]);
            c
        });
        Ok(Header {
            end,
            refill: h[11] & FLAG_REFILL != 0,
            link_id,
            link,
            capacity: be64(&h[229..237]),
            count: be64(&h[COUNT_AT..COUNT_AT + 8]),
            sealed,
        })
    }
}

/// The key that seals a pool's key bytes (derived from a vault key by the
/// vault; this module only uses it).
#[derive(Clone)]
pub struct SealKey(zeroize::Zeroizing<[u8; KEY_LEN]>);

impl SealKey {
    /// Wraps 32 key bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> SealKey {
        SealKey(zeroize::Zeroizing::new(bytes))
    }

    /// The header's check value for a pool of link `link_id`.
    pub fn check(&self, link_id: &[u8; 16]) -> [u8; SEAL_CHECK_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"qsfs pool seal check v1");
        h.update(link_id);
        let mut c = [0u8; SEAL_CHECK_LEN];
        c.copy_from_slice(&h.finalize().as_bytes()[..SEAL_CHECK_LEN]);
        c
    }

    /// XORs the pad of key `id` into `key` (sealing and unsealing alike).
    pub fn apply(&self, link_id: &[u8; 16], id: &KeyId, key: &mut [u8]) {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"qsfs pool key pad v1");
        h.update(link_id);
        h.update(&id.0);
        let pad = zeroize::Zeroizing::new(*h.finalize().as_bytes());
        for (k, p) in key.iter_mut().zip(pad.iter()) {
            *k ^= p;
        }
    }

    /// Seals (or unseals) the key bytes of every unused record in `records`
    /// (whole records, as stored); used records stay zero.
    pub fn apply_records(&self, link_id: &[u8; 16], records: &mut [u8]) {
        for r in records.chunks_exact_mut(RECORD_LEN) {
            if r[STATE_AT] != STATE_UNUSED {
                continue;
            }
            let mut id = [0u8; 16];
            id.copy_from_slice(&r[0..16]);
            self.apply(link_id, &KeyId(id), &mut r[KEY_AT..KEY_AT + KEY_LEN]);
        }
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The header byte for an end.
pub fn end_byte(end: End) -> u8 {
    match end {
        End::A => b'A',
        End::B => b'B',
    }
}

/// The direction of record `index` (even: A->B, odd: B->A).
pub fn direction_of(index: u64) -> Direction {
    if index.is_multiple_of(2) {
        Direction::AToB
    } else {
        Direction::BToA
    }
}

/// The record's direction byte.
pub fn direction_byte(dir: Direction) -> u8 {
    match dir {
        Direction::AToB => 0,
        Direction::BToA => 1,
    }
}

/// File offset of record `index`.
pub fn record_offset(index: u64) -> u64 {
    HEADER_LEN as u64 + index * RECORD_LEN as u64
}

/// One decoded record (the key bytes stay in the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Key name.
    pub id: KeyId,
    /// True once used.
    pub used: bool,
    /// Which traffic it protects.
    pub dir: Direction,
}

/// Decodes a record's id, state and direction; `None` for bytes no valid
/// record has (unknown state or direction, a used key with key bytes left).
pub fn decode_record(r: &[u8]) -> Option<RecordMeta> {
    let mut id = [0u8; 16];
    id.copy_from_slice(&r[0..16]);
    let used = match r[STATE_AT] {
        STATE_UNUSED => false,
        STATE_USED => true,
        _ => return None,
    };
    if used && r[KEY_AT..KEY_AT + KEY_LEN].iter().any(|b| *b != 0) {
        return None;
    }
    let dir = match r[49] {
        0 => Direction::AToB,
        1 => Direction::BToA,
        _ => return None,
    };
    Some(RecordMeta {
        id: KeyId(id),
        used,
        dir,
    })
}

/// Writes an unused record for key `index` into `out` (RECORD_LEN bytes).
pub fn encode_record(out: &mut [u8], id: &KeyId, key: &[u8; KEY_LEN], index: u64) {
    out[0..16].copy_from_slice(&id.0);
    out[KEY_AT..KEY_AT + KEY_LEN].copy_from_slice(key);
    out[STATE_AT] = STATE_UNUSED;
    out[49] = direction_byte(direction_of(index));
}

/// Turns 16 random bytes into UUID v4 bytes (version and variant bits set).
pub fn uuid_v4(mut b: [u8; 16]) -> KeyId {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    KeyId(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            end: End::B,
            refill: true,
            link_id: [7; 16],
            link: "node-3".to_owned(),
            capacity: 1000,
            count: 1234,
            sealed: None,
        }
    }

    #[test]
    fn sealed_header_and_records() {
        let key = SealKey::new([5; 32]);
        let mut h = header();
        h.sealed = Some(key.check(&h.link_id));
        let bytes = h.encode().unwrap();
        assert_eq!(bytes[11], FLAG_REFILL | FLAG_SEALED);
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        assert_ne!(
            key.check(&h.link_id),
            SealKey::new([6; 32]).check(&h.link_id)
        );
        let mut recs = vec![0u8; 2 * RECORD_LEN];
        encode_record(&mut recs[..RECORD_LEN], &uuid_v4([1; 16]), &[9; 32], 0);
        encode_record(&mut recs[RECORD_LEN..], &uuid_v4([2; 16]), &[9; 32], 1);
        let clear = recs.clone();
        key.apply_records(&h.link_id, &mut recs);
        assert_ne!(recs[KEY_AT..KEY_AT + 32], clear[KEY_AT..KEY_AT + 32]);
        assert_ne!(
            recs[KEY_AT..KEY_AT + 32],
            recs[RECORD_LEN + KEY_AT..RECORD_LEN + KEY_AT + 32],
            "each key id has its own pad"
        );
        assert_eq!(recs[..KEY_AT], clear[..KEY_AT], "ids stay readable");
        key.apply_records(&h.link_id, &mut recs);
        assert_eq!(recs, clear);
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = header();
        let bytes = h.encode().unwrap();
        assert_eq!(&bytes[0..8], b"QSFSPOOL");
        assert_eq!(&bytes[8..10], &[0, 1]);
        assert_eq!(bytes[10], b'B');
        assert_eq!(bytes[11], 1);
        assert_eq!(bytes[28], 6);
        assert_eq!(&bytes[29..35], b"node-3");
        assert_eq!(&bytes[237..245], &1234u64.to_be_bytes());
        assert_eq!(Header::decode(&bytes).unwrap(), h);
    }

    #[test]
    fn damaged_header_refused() {
        let mut bytes = header().encode().unwrap();
        bytes[240] ^= 1;
        assert!(matches!(Header::decode(&bytes), Err(HeaderFault::Checksum)));
        let mut bytes = header().encode().unwrap();
        bytes[0] = b'X';
        assert!(matches!(Header::decode(&bytes), Err(HeaderFault::Magic)));
        let mut bytes = header().encode().unwrap();
        bytes[9] = 2;
        assert!(matches!(
            Header::decode(&bytes),
            Err(HeaderFault::Version(2))
        ));
    }

    #[test]
    fn name_limits() {
        let mut h = header();
        h.link = String::new();
        assert!(h.encode().is_err());
        h.link = "x".repeat(201);
        assert!(h.encode().is_err());
        h.link = "x".repeat(200);
        assert_eq!(Header::decode(&h.encode().unwrap()).unwrap(), h);
    }

    #[test]
    fn records() {
        let mut r = [0u8; RECORD_LEN];
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id.0[6] >> 4, 4);
        assert_eq!(id.0[8] >> 6, 2);
        encode_record(&mut r, &id, &[9; 32], 3);
        let m = decode_record(&r).unwrap();
        assert_eq!((m.id, m.used, m.dir), (id, false, Direction::BToA));
        r[STATE_AT] = STATE_USED;
        assert!(decode_record(&r).is_none(), "used with key bytes left");
        r[KEY_AT..KEY_AT + 32].fill(0);
        assert!(decode_record(&r).unwrap().used);
        r[49] = 7;
        assert!(decode_record(&r).is_none());
    }
}
