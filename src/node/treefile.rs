//! A directory node's saved audit trees: the leaf hashes of a shard's
//! rank-based Merkle tree (rmht.rs), kept in `NODE/trees/<ab>/<object>.<i>`
//! after the first audit of that shard, so later audits read the challenged
//! blocks and these hashes (32 bytes per 8 KiB block, 0.4%) instead of the
//! whole shard. A cache, not a record: it names the shard file it was built
//! from (inode, size, mtime) and is ignored when the file changed; losing it
//! costs one full read. It never hides damage: the blocks are read fresh
//! for every answer, and a block that no longer matches its saved leaf
//! fails its path check at the auditor.
//!
//! Format v1, integers little-endian:
//! ```text
//! [ 0.. 8] magic      b"QSFSTREE"
//! [ 8..10] version    u16 = 1
//! [10..14] block size u32
//! [14..22] inode      u64  of the shard file the leaves were built from
//! [22..30] size       u64  its length
//! [30..46] mtime      i128 nanoseconds
//! [46..54] leaves     u64
//! leaves x [32]       leaf hashes, in block order
//! [32]                BLAKE3 of everything above (torn or altered files are ignored)
//! ```

use std::path::Path;

use crate::rmht::Hash;

const MAGIC: &[u8; 8] = b"QSFSTREE";
const VERSION: u16 = 1;
const FIXED: usize = 54;

/// What a saved tree was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Block size.
    pub block: u32,
    /// Shard file identity: inode, size, mtime in ns.
    pub file: (u64, u64, i128),
}

/// Encodes a saved tree.
pub fn encode(built: &Built, leaves: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + leaves.len() * 32 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&built.block.to_le_bytes());
    out.extend_from_slice(&built.file.0.to_le_bytes());
    out.extend_from_slice(&built.file.1.to_le_bytes());
    out.extend_from_slice(&built.file.2.to_le_bytes());
    out.extend_from_slice(&(leaves.len() as u64).to_le_bytes());
    for l in leaves {
        out.extend_from_slice(l);
    }
    let check = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&check);
    out
}

/// The leaves of a saved tree if it was built from `want` and is intact.
pub fn decode(buf: &[u8], want: &Built) -> Option<Vec<Hash>> {
    if buf.len() < FIXED + 32 || &buf[..8] != MAGIC {
        return None;
    }
    let (body, check) = buf.split_at(buf.len() - 32);
    if blake3::hash(body).as_bytes() != check {
        return None;
    }
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap_or([0; 8]));
    let version = u16::from_le_bytes([body[8], body[9]]);
    let block = u32::from_le_bytes(body[10..14].try_into().unwrap_or([0; 4]));
    let mtime = i128::from_le_bytes(body[30..46].try_into().unwrap_or([0; 16]));
    let built = Built {
        block,
        file: (u64_at(14), u64_at(22), mtime),
    };
    let count = u64_at(46);
    if version != VERSION
        || built != *want
        || (body.len() - FIXED) as u64 != count.saturating_mul(32)
    {
        return None;
    }
    Some(
        body[FIXED..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0; 32]))
            .collect(),
    )
}

/// Reads the saved tree at `path` if it matches `want`.
pub fn load(path: &Path, want: &Built) -> Option<Vec<Hash>> {
    decode(&std::fs::read(path).ok()?, want)
}

/// Saves a tree at `path` (temp file + rename; no fsync: it is a cache).
pub fn save(path: &Path, built: &Built, leaves: &[Hash]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        crate::perms::create_private_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::perms::FILE_MODE)
        .open(&tmp)?
        .write_all(&encode(built, leaves))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let b = Built {
            block: 4096,
            file: (7, 64 + 8192, 123_456_789),
        };
        let leaves = vec![[1u8; 32], [2u8; 32]];
        let enc = encode(&b, &leaves);
        assert_eq!(decode(&enc, &b), Some(leaves.clone()));
        let other = Built {
            file: (7, 64 + 8192, 123_456_790),
            ..b
        };
        assert_eq!(decode(&enc, &other), None, "another file version");
        let mut bad = enc.clone();
        bad[60] ^= 1;
        assert_eq!(decode(&bad, &b), None, "altered");
        assert_eq!(decode(&enc[..enc.len() - 1], &b), None, "torn");
    }
}
