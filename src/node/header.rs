//! The versioned header at the front of every shard file, so a node's
//! contents describe themselves without the vault's manifests.
//!
//! Format v1 and v2, 64 bytes, integers little-endian:
//! ```text
//! [ 0.. 8] magic      b"QSFSSHRD"
//! [ 8..10] version    u16 = 1, or 2 when a key piece follows the payload
//! [10..12] header_len u16 = 64
//! [12..28] object id  16 bytes
//! [28]     shard index u8 (0..n; below k: data, from k: parity)
//! [29]     k          u8
//! [30]     n          u8
//! [31]     flags      u8 = 0
//! [32..36] chunk size u32
//! [36..44] stripes    u64
//! [44..52] object len u64 (bytes of the sealed object N)
//! [52..56] piece len  u32: v2, bytes of the key piece; v1, zero
//! [56..64] check      first 8 bytes of BLAKE3(bytes 0..56)
//! ```
//! The payload follows: chunk `index` of stripe 0, of stripe 1, ... each
//! `chunk size` bytes, then (v2) the key piece: this shard's Shamir piece
//! of the object's backup record `B` (`x || y`, `x = index + 1`; see
//! `envelope::pieces`), for vaults that keep `B` on the nodes. The file is
//! `64 + stripes * chunk size + piece len` bytes. A node treats the piece
//! as payload bytes like any other; only the chunks are hashed into the
//! manifest and the audit trees.
//!
//! v1 is still written for shards without a piece, so a vault that does
//! not keep `B` on the nodes writes the same bytes as before.

use crate::ObjectId;
use crate::codec::{DecodeError, Reader, Writer};
use crate::erasure::StripeLayout;

/// Magic bytes of a shard file.
pub const MAGIC: &[u8; 8] = b"QSFSSHRD";
/// Shard header format version of shards without a key piece.
pub const VERSION: u16 = 1;
/// Shard header format version of shards carrying a key piece.
pub const VERSION_PIECE: u16 = 2;
/// Largest key piece a header may announce (a piece of `B` is 106 bytes).
pub const MAX_PIECE: u32 = 4096;
/// Length of a v1 header.
pub const HEADER_LEN: usize = 64;

/// Identifies one shard: an object and the shard's index in its stripes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    /// The object.
    pub object: ObjectId,
    /// Index of the shard (0..n).
    pub index: u8,
}

impl std::fmt::Display for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.object, self.index)
    }
}

/// Decoded shard header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    /// Which shard this is.
    pub key: ShardKey,
    /// Data chunks per stripe.
    pub k: u8,
    /// Chunks per stripe.
    pub n: u8,
    /// Bytes per chunk.
    pub chunk: u32,
    /// Stripes in the object.
    pub stripes: u64,
    /// Length of the sealed object.
    pub object_len: u64,
    /// Bytes of the key piece after the chunks (0: none, a v1 header).
    pub piece: u32,
}

impl ShardHeader {
    /// The header of shard `index` of an object with `layout`.
    pub fn new(object: ObjectId, index: u8, layout: &StripeLayout) -> ShardHeader {
        ShardHeader {
            key: ShardKey { object, index },
            k: layout.k as u8,
            n: layout.n as u8,
            chunk: layout.chunk,
            stripes: layout.stripes,
            object_len: layout.object_len,
            piece: 0,
        }
    }

    /// The same header announcing a key piece of `len` bytes.
    pub fn with_piece(mut self, len: u32) -> ShardHeader {
        self.piece = len;
        self
    }

    /// Bytes of the chunks (what the manifest's hashes and the audit trees
    /// cover).
    pub fn chunks_len(&self) -> u64 {
        self.stripes.saturating_mul(self.chunk as u64)
    }

    /// Payload bytes after the header: the chunks, then the key piece.
    pub fn payload_len(&self) -> u64 {
        self.chunks_len().saturating_add(u64::from(self.piece))
    }

    /// Total file length.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_len()
    }

    /// Encodes the 64-byte header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut w = Writer::with_capacity(HEADER_LEN);
        let version = if self.piece == 0 {
            VERSION
        } else {
            VERSION_PIECE
        };
        w.bytes(MAGIC)
            .u16(version)
            .u16(HEADER_LEN as u16)
            .bytes(self.key.object.as_bytes())
            .u8(self.key.index)
            .u8(self.k)
            .u8(self.n)
            .u8(0)
            .u32(self.chunk)
            .u64(self.stripes)
            .u64(self.object_len)
            .u32(self.piece);
        let mut out = [0u8; HEADER_LEN];
        let body = w.finish();
        out[..56].copy_from_slice(&body);
        let check = blake3::hash(&out[..56]);
        out[56..].copy_from_slice(&check.as_bytes()[..8]);
        out
    }

    /// Decodes and checks a header.
    pub fn decode(buf: &[u8]) -> Result<ShardHeader, DecodeError> {
        let mut r = Reader::new("shard header", buf);
        let magic: [u8; 8] = r.array()?;
        if &magic != MAGIC {
            return Err(r.invalid("magic", "not a qsfs shard file"));
        }
        let version = r.u16()?;
        if version != VERSION && version != VERSION_PIECE {
            return Err(DecodeError::Version {
                what: "shard header",
                found: version.into(),
                supported: VERSION_PIECE.into(),
            });
        }
        let header_len = r.u16()?;
        if header_len as usize != HEADER_LEN || buf.len() < HEADER_LEN {
            return Err(r.invalid(
                "header_len",
                format!("{header_len} (expected {HEADER_LEN})"),
            ));
        }
        let check = blake3::hash(&buf[..56]);
        if check.as_bytes()[..8] != buf[56..64] {
            return Err(r.invalid("check", "header checksum mismatch (header damaged)"));
        }
        let object = ObjectId(r.array()?);
        let index = r.u8()?;
        let k = r.u8()?;
        let n = r.u8()?;
        let _flags = r.u8()?;
        let chunk = r.u32()?;
        let stripes = r.u64()?;
        let object_len = r.u64()?;
        let piece = match r.u32()? {
            _ if version == VERSION => 0,
            p @ 1..=MAX_PIECE => p,
            p => {
                return Err(r.invalid(
                    "piece len",
                    format!("{p} (a v2 header announces 1..={MAX_PIECE} bytes)"),
                ));
            }
        };
        if k == 0 || k >= n || index >= n || chunk == 0 {
            return Err(r.invalid(
                "k/n/index",
                format!("k={k} n={n} index={index} chunk={chunk}"),
            ));
        }
        Ok(ShardHeader {
            key: ShardKey { object, index },
            k,
            n,
            chunk,
            stripes,
            object_len,
            piece,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let layout = StripeLayout::plan(3, 5, 5000, 1024).unwrap();
        let h = ShardHeader::new(ObjectId([9; 16]), 4, &layout);
        let bytes = h.encode();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(ShardHeader::decode(&bytes).unwrap(), h);
        assert_eq!(h.file_len(), 64 + layout.shard_len());
        for bit in [0usize, 100, 300, 511] {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(ShardHeader::decode(&bad).is_err(), "bit {bit}");
        }
        assert!(ShardHeader::decode(&bytes[..40]).is_err());
        let p = h.with_piece(106);
        let bytes = p.encode();
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), VERSION_PIECE);
        assert_eq!(ShardHeader::decode(&bytes).unwrap(), p);
        assert_eq!(p.payload_len(), layout.shard_len() + 106);
        assert_eq!(p.chunks_len(), layout.shard_len());
    }

    /// A header written by v1 must still decode (frozen bytes).
    #[test]
    fn frozen_v1_header_decodes() {
        let layout = StripeLayout::plan(3, 5, 1137, 1 << 20).unwrap();
        let h = ShardHeader::new(ObjectId([0xab; 16]), 2, &layout);
        let frozen = hex::decode(FROZEN_V1).unwrap();
        assert_eq!(ShardHeader::decode(&frozen).unwrap(), h);
        assert_eq!(hex::encode(h.encode()), FROZEN_V1);
    }

    const FROZEN_V1: &str = "515346535348524401004000abababababababababababababababab020305007b010000010000000000000071040000000000000000000036f6c93d98bc50ec";
}
