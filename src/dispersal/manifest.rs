//! The manifest of one sealed object: stripe layout, shard placement and
//! one BLAKE3 hash per chunk. Kept by the erasure-coding side only; nodes
//! never see it, so a node cannot forge a chunk that verifies.
//!
//! Format v2 and v3, integers little-endian (v1 is the same without the
//! audit fields; it is still read, and `scrub --repair` adds the roots):
//! ```text
//! u8        version = 2
//! [16]      object id
//! u8 k, u8 n
//! u32       chunk size
//! u64       object length (bytes of N)
//! u64       stripes
//! u64       plaintext length (for accounting)
//! i64       created, unix seconds
//! u32       missing: bit i set = shard i is not (known to be) on its node
//! n times   node name of shard i (u32 length + UTF-8)
//! stripes * n times  [32] BLAKE3 of chunk i of stripe s (stripe-major)
//! u32       audit block size (bytes per leaf of the shard trees)
//! n times   [32] RMHT root of shard i's chunks (rmht.rs), for audits
//! u32       v3 only: bytes of the key piece after each shard's chunks
//! ```
//! v3 is written only for objects whose shards carry a key piece (a piece
//! of `B`, see `node::header`); every other manifest stays v2, byte for
//! byte.

use crate::ObjectId;
use crate::codec::{DecodeError, Reader, Writer};
use crate::erasure::StripeLayout;

/// Manifest format version written for objects without key pieces.
pub const MANIFEST_VERSION: u8 = 2;
/// Manifest format version written for objects whose shards carry a key
/// piece.
pub const MANIFEST_VERSION_PIECE: u8 = 3;

/// What the erasure-coding side knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The object.
    pub id: ObjectId,
    /// Stripe geometry.
    pub layout: StripeLayout,
    /// Plaintext bytes the object carries.
    pub plain_len: u64,
    /// When it was sealed (unix seconds).
    pub created: i64,
    /// Node holding shard `i`.
    pub placement: Vec<String>,
    /// Bit `i` set: shard `i` is missing or damaged (repair debt).
    pub missing: u32,
    /// Chunk hashes, `hashes[s * n + i]` for chunk `i` of stripe `s`.
    pub hashes: Vec<[u8; 32]>,
    /// Block size of the shard trees (0: no roots, a v1 manifest).
    pub block: u32,
    /// RMHT root of each shard's chunks (empty for a v1 manifest).
    pub roots: Vec<[u8; 32]>,
    /// Bytes of the key piece after each shard's chunks (0: none).
    pub piece: u32,
}

impl Manifest {
    /// Hash of chunk `shard` of stripe `stripe`.
    pub fn hash(&self, stripe: u64, shard: usize) -> &[u8; 32] {
        &self.hashes[stripe as usize * self.layout.n + shard]
    }

    /// Number of shards recorded as present.
    pub fn present(&self) -> usize {
        self.layout.n - self.missing.count_ones() as usize
    }

    /// True if shard `i` is recorded missing.
    pub fn is_missing(&self, i: usize) -> bool {
        self.missing & (1 << i) != 0
    }

    /// True if the manifest carries audit roots an audit can use: a block
    /// size outside what provers accept (512..=8192, see
    /// `node::proof::check_block`) counts as no roots, so the audit never
    /// sends it and `scrub --repair` rebuilds the roots.
    pub fn has_roots(&self) -> bool {
        crate::node::proof::check_block(self.block).is_ok() && self.roots.len() == self.layout.n
    }

    /// Leaves of each shard's tree.
    pub fn leaves(&self) -> u64 {
        crate::rmht::leaf_count(self.layout.shard_len(), self.block.max(1))
    }

    /// The shard indices placed on node `name` and recorded present.
    pub fn shards_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = usize> + 'a {
        (0..self.layout.n).filter(move |&i| self.placement[i] == name && !self.is_missing(i))
    }

    /// Length of each of its shard files (header, chunks, key piece).
    pub fn shard_file_len(&self) -> u64 {
        crate::node::HEADER_LEN as u64 + self.layout.shard_len() + u64::from(self.piece)
    }

    /// The header of shard `index` of this object.
    pub fn shard_header(&self, index: u8) -> crate::node::ShardHeader {
        crate::node::ShardHeader::new(self.id, index, &self.layout).with_piece(self.piece)
    }

    /// Bytes the object occupies on the nodes (headers included).
    pub fn stored_bytes(&self) -> u64 {
        self.present() as u64 * self.shard_file_len()
    }

    /// Encodes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.hashes.len() * 32 + self.placement.len() * 12);
        let version = if self.piece == 0 {
            MANIFEST_VERSION
        } else {
            MANIFEST_VERSION_PIECE
        };
        w.u8(version)
            .bytes(self.id.as_bytes())
            .u8(self.layout.k as u8)
            .u8(self.layout.n as u8)
            .u32(self.layout.chunk)
            .u64(self.layout.object_len)
            .u64(self.layout.stripes)
            .u64(self.plain_len)
            .i64(self.created)
            .u32(self.missing);
        for name in &self.placement {
            w.blob(name.as_bytes());
        }
        for h in &self.hashes {
            w.bytes(h);
        }
        w.u32(self.block);
        for i in 0..self.layout.n {
            w.bytes(self.roots.get(i).unwrap_or(&[0u8; 32]));
        }
        if self.piece != 0 {
            w.u32(self.piece);
        }
        w.finish()
    }

    /// Decodes and checks a manifest.
    pub fn decode(buf: &[u8]) -> Result<Manifest, DecodeError> {
        let mut r = Reader::new("manifest", buf);
        let version = r.u8()?;
        if !(1..=MANIFEST_VERSION_PIECE).contains(&version) {
            return Err(DecodeError::Version {
                what: "manifest",
                found: version.into(),
                supported: MANIFEST_VERSION_PIECE.into(),
            });
        }
        let id = ObjectId(r.array()?);
        let k = r.u8()? as usize;
        let n = r.u8()? as usize;
        let chunk = r.u32()?;
        let object_len = r.u64()?;
        let stripes = r.u64()?;
        let plain_len = r.u64()?;
        let created = r.i64()?;
        let missing = r.u32()?;
        if k == 0 || k >= n || n > crate::erasure::MAX_SHARDS || chunk == 0 {
            return Err(r.invalid("k/n/chunk", format!("k={k} n={n} chunk={chunk}")));
        }
        let layout = StripeLayout {
            k,
            n,
            chunk,
            object_len,
            stripes,
        };
        let stripe_bytes = chunk as u64 * k as u64;
        let fits = stripes >= 1
            && stripes
                .checked_mul(stripe_bytes)
                .is_some_and(|cap| cap >= object_len)
            && (stripes - 1) * stripe_bytes < object_len.max(1);
        if !fits {
            return Err(r.invalid(
                "stripes",
                format!("{stripes} stripes do not fit {object_len} bytes"),
            ));
        }
        let mut placement = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.blob()?;
            placement.push(
                String::from_utf8(name.to_vec())
                    .map_err(|_| r.invalid("placement", "node name is not UTF-8"))?,
            );
        }
        let count = (stripes as usize)
            .checked_mul(n)
            .ok_or_else(|| r.invalid("stripes", "too many"))?;
        let tail = match version {
            1 => 0,
            2 => 4 + n * 32,
            _ => 8 + n * 32,
        };
        if r.remaining() != count * 32 + tail {
            return Err(r.invalid(
                "hashes",
                format!("{} bytes for {count} chunk hashes", r.remaining()),
            ));
        }
        let mut hashes = Vec::with_capacity(count);
        for _ in 0..count {
            hashes.push(r.array()?);
        }
        let (block, roots) = if version >= 2 {
            let block = r.u32()?;
            let mut roots = Vec::with_capacity(n);
            for _ in 0..n {
                roots.push(r.array()?);
            }
            if block == 0 {
                (0, Vec::new())
            } else {
                (block, roots)
            }
        } else {
            (0, Vec::new())
        };
        let piece = if version == MANIFEST_VERSION_PIECE {
            match r.u32()? {
                p @ 1..=crate::node::MAX_PIECE => p,
                p => return Err(r.invalid("piece", format!("{p} bytes"))),
            }
        } else {
            0
        };
        r.finish()?;
        Ok(Manifest {
            id,
            layout,
            plain_len,
            created,
            placement,
            missing,
            hashes,
            block,
            roots,
            piece,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let layout = StripeLayout::plan(3, 5, 10_000, 1024).unwrap();
        Manifest {
            id: ObjectId([4; 16]),
            layout,
            plain_len: 9_903,
            created: 1_700_000_000,
            placement: (0..5).map(|i| format!("node-{i}")).collect(),
            missing: 0b10010,
            hashes: (0..layout.stripes * 5).map(|i| [i as u8; 32]).collect(),
            block: 4096,
            roots: (0..5).map(|i| [100 + i as u8; 32]).collect(),
            piece: 0,
        }
    }

    #[test]
    fn piece_manifests_are_v3_and_others_stay_v2() {
        let m = sample();
        assert_eq!(m.encode()[0], MANIFEST_VERSION);
        let p = Manifest {
            piece: 106,
            ..sample()
        };
        let bytes = p.encode();
        assert_eq!(bytes[0], MANIFEST_VERSION_PIECE);
        assert_eq!(bytes.len(), m.encode().len() + 4);
        assert_eq!(Manifest::decode(&bytes).unwrap(), p);
        assert_eq!(p.shard_file_len(), m.shard_file_len() + 106);
        assert_eq!(p.shard_header(2).payload_len(), m.layout.shard_len() + 106);
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let d = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.present(), 3);
        assert!(d.is_missing(1) && d.is_missing(4) && !d.is_missing(0));
        assert_eq!(d.hash(2, 3), &[13u8; 32]);
    }

    #[test]
    fn damage_is_reported() {
        let enc = sample().encode();
        assert!(Manifest::decode(&enc[..enc.len() - 1]).is_err());
        let mut v4 = enc.clone();
        v4[0] = 4;
        assert!(matches!(
            Manifest::decode(&v4),
            Err(DecodeError::Version { found: 4, .. })
        ));
        // A v2 body labelled v3 lacks the piece length.
        let mut v3 = enc.clone();
        v3[0] = 3;
        assert!(Manifest::decode(&v3).is_err());
    }

    #[test]
    fn a_block_size_outside_512_to_8192_counts_as_no_roots() {
        let mut m = sample();
        assert!(m.has_roots());
        for bad in [1, 511, 8193, 16384] {
            m.block = bad;
            assert!(!m.has_roots(), "block {bad}");
        }
    }

    #[test]
    fn version_1_is_read_without_roots() {
        let m = sample();
        let mut v1 = m.encode();
        v1.truncate(v1.len() - 4 - 5 * 32);
        v1[0] = 1;
        let d = Manifest::decode(&v1).unwrap();
        assert!(!d.has_roots());
        assert_eq!(d.hashes, m.hashes);
    }
}
