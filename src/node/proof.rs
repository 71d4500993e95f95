//! What a node answers to an audit: proof of possession of challenged
//! blocks of a shard (rmht.rs), and a root over everything it holds for
//! the vault (the deletion check of seed 002).
//!
//! The prover computes both from the bytes it actually has. A directory
//! node is proved by the vault process reading the folder; a remote node
//! computes the proof on its own machine and only the proof crosses the
//! link, so an audit moves a few blocks, not the shard.

use super::{NodeError, NodeErrorKind, ShardKey, ShardStore, StoredShard};
use crate::rmht::{self, Hash};

/// Most blocks one challenge may ask of one shard (one message).
pub const MAX_PROOF_BLOCKS: usize = 64;
/// Smallest block size a prover accepts (a tree costs 32 bytes per block).
pub const MIN_PROOF_BLOCK: u32 = 512;
/// Largest block size a prover accepts.
pub const MAX_PROOF_BLOCK: u32 = 8192;

/// A challenge for one shard: a fresh nonce and the blocks wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Fresh random bytes, echoed in the proof so an old answer cannot be
    /// replayed for a new challenge.
    pub nonce: [u8; 32],
    /// Block size of the shard's tree (from the manifest).
    pub block: u32,
    /// Leaf indices wanted.
    pub indices: Vec<u64>,
}

/// One challenged block with its authentication path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenBlock {
    /// Leaf index.
    pub index: u64,
    /// The block as the node holds it.
    pub data: Vec<u8>,
    /// Sibling hashes from the leaf up (rmht.rs).
    pub path: Vec<Hash>,
}

/// A node's answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PossessionProof {
    /// The challenge's nonce.
    pub nonce: [u8; 32],
    /// Leaves of the tree the node built over what it holds.
    pub leaves: u64,
    /// One per challenged index, in the order asked.
    pub blocks: Vec<ProvenBlock>,
}

impl PossessionProof {
    /// Bytes this proof moves over a link (its wire size, about).
    pub fn wire_bytes(&self) -> u64 {
        40 + self
            .blocks
            .iter()
            .map(|b| 13 + b.data.len() as u64 + 32 * b.path.len() as u64)
            .sum::<u64>()
    }
}

/// A node's summary of what it holds: how many shards and a root over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Shard files held.
    pub count: u64,
    /// RMHT root over the held shards (see [`holdings_root`]).
    pub root: Hash,
}

/// The root over a set of shards for the deletion check: one leaf per
/// shard, `leaf(nonce || object || index || size)`, in (object, index)
/// order. The auditor computes the same over what the node should hold.
pub fn holdings_root(nonce: &[u8; 32], shards: &mut [StoredShard]) -> Holdings {
    shards.sort_by_key(|s| s.key);
    let mut b = rmht::Builder::new(1);
    for s in shards.iter() {
        let mut leaf = Vec::with_capacity(32 + 16 + 1 + 8);
        leaf.extend_from_slice(nonce);
        leaf.extend_from_slice(s.key.object.as_bytes());
        leaf.push(s.key.index);
        leaf.extend_from_slice(&s.size.to_le_bytes());
        b.push(rmht::leaf(&leaf));
    }
    let (root, _) = b.finish();
    Holdings {
        count: shards.len() as u64,
        root,
    }
}

/// Why a prover (or the client about to send) refuses a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The audit block size is outside what a prover builds trees for: a
    /// tiny block makes the node build a tree 32 bytes per block, many
    /// times the shard's size (a block of 1 is 32x), so it is refused
    /// before any tree is built.
    #[error(
        "audit block size {block} is outside {MIN_PROOF_BLOCK}..={MAX_PROOF_BLOCK} \
         (the manifest's `block` setting); rebuild the roots with `qsfs scrub --repair`"
    )]
    BlockSize {
        /// The block size asked.
        block: u32,
    },
    /// No block, or more than one message carries.
    #[error("{asked} blocks asked (1..={MAX_PROOF_BLOCKS})")]
    Blocks {
        /// Blocks asked.
        asked: usize,
    },
}

/// Checks an audit block size against [`MIN_PROOF_BLOCK`]..=[`MAX_PROOF_BLOCK`].
pub fn check_block(block: u32) -> Result<(), ChallengeError> {
    if (MIN_PROOF_BLOCK..=MAX_PROOF_BLOCK).contains(&block) {
        Ok(())
    } else {
        Err(ChallengeError::BlockSize { block })
    }
}

/// Checks a challenge's shape; the reason if a prover must refuse it.
pub fn check_challenge(c: &Challenge) -> Result<(), ChallengeError> {
    check_block(c.block)?;
    if c.indices.is_empty() || c.indices.len() > MAX_PROOF_BLOCKS {
        return Err(ChallengeError::Blocks {
            asked: c.indices.len(),
        });
    }
    Ok(())
}

/// Proves possession by reading the shard through `node` (the default of
/// [`Prover::prove`]): reads the whole payload once, builds its tree and
/// answers from it.
pub fn prove_by_reading<N: ShardStore + ?Sized>(
    node: &N,
    key: ShardKey,
    c: &Challenge,
) -> Result<PossessionProof, NodeError> {
    prove_with(node, key, c, None, None)
}

/// Recently built trees of one prover, so the several challenges of one
/// audit (a message carries at most [`MAX_PROOF_BLOCKS`] blocks) read a
/// shard once, not once per message. Keyed by the shard file's identity
/// (inode, size, mtime): a replaced or rewritten file misses. A cached tree
/// never hides damage: the blocks themselves are read fresh for every
/// answer, and a block that changed no longer matches its leaf.
#[derive(Debug, Default)]
pub struct TreeCache {
    trees: std::sync::Mutex<std::collections::VecDeque<(TreeId, std::sync::Arc<rmht::Tree>)>>,
}

/// What a cached tree was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeId {
    /// The shard.
    pub key: ShardKey,
    /// Block size of the tree.
    pub block: u32,
    /// Shard file identity: inode, size, mtime in ns.
    pub file: (u64, u64, i128),
}

/// Trees kept per prover.
const CACHED_TREES: usize = 8;

impl TreeCache {
    /// The cached tree built from `id`, if any.
    pub fn get(&self, id: &TreeId) -> Option<std::sync::Arc<rmht::Tree>> {
        let t = self
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.iter()
            .find(|(k, _)| k == id)
            .map(|(_, t)| std::sync::Arc::clone(t))
    }

    /// Keeps a tree built from `id`.
    pub fn put(&self, id: TreeId, tree: std::sync::Arc<rmht::Tree>) {
        let mut t = self
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.retain(|(k, _)| k.key != id.key);
        if t.len() >= CACHED_TREES {
            t.pop_front();
        }
        t.push_back((id, tree));
    }
}

/// Proves possession of the blocks `c` asks of shard `key`, building the
/// shard's tree by reading it (or taking it from `cache` when `file`, the
/// shard file's identity, matches a cached tree).
pub fn prove_with<N: ShardStore + ?Sized>(
    node: &N,
    key: ShardKey,
    c: &Challenge,
    cache: Option<&TreeCache>,
    file: Option<(u64, u64, i128)>,
) -> Result<PossessionProof, NodeError> {
    let bad = |d: String| {
        NodeError::new(
            node.name(),
            "prove possession",
            Some(key),
            NodeErrorKind::Corrupt(d),
        )
    };
    check_challenge(c).map_err(|d| {
        NodeError::new(
            node.name(),
            "prove possession",
            Some(key),
            NodeErrorKind::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, d)),
        )
    })?;
    let header = node.read_header(key)?;
    // The key piece after the chunks is not in the audit trees.
    let len = header.chunks_len();
    let block = c.block as u64;
    let id = file.map(|file| TreeId {
        key,
        block: c.block,
        file,
    });
    let cached = match (cache, id.as_ref()) {
        (Some(cache), Some(id)) => cache.get(id),
        _ => None,
    };
    let tree = match cached {
        Some(t) => t,
        None => {
            let t = std::sync::Arc::new(build_tree(node, key, len, c.block)?);
            if let (Some(cache), Some(id)) = (cache, id) {
                cache.put(id, std::sync::Arc::clone(&t));
            }
            t
        }
    };
    let leaves = tree.leaves();
    let mut blocks = Vec::with_capacity(c.indices.len());
    for &i in &c.indices {
        if i >= leaves {
            return Err(bad(format!(
                "block {i} asked of a shard with {leaves} blocks"
            )));
        }
        let start = i * block;
        let n = block.min(len.saturating_sub(start)) as usize;
        let mut data = vec![0u8; n];
        if n > 0 {
            node.read_at(key, start, &mut data)?;
        }
        blocks.push(ProvenBlock {
            index: i,
            data,
            path: tree.path(i),
        });
    }
    Ok(PossessionProof {
        nonce: c.nonce,
        leaves,
        blocks,
    })
}

/// The tree over the `len` payload bytes of shard `key`, read through
/// `node` about 1 MiB at a time.
fn build_tree<N: ShardStore + ?Sized>(
    node: &N,
    key: ShardKey,
    len: u64,
    block: u32,
) -> Result<rmht::Tree, NodeError> {
    let block = block as u64;
    // The length comes from a header on the node's disk: grow with what
    // is really read, never allocate ahead from it.
    let mut hashes = Vec::with_capacity(rmht::leaf_count(len, block as u32).min(1 << 16) as usize);
    let per_read = ((1u64 << 20) / block * block).max(block);
    let mut buf = vec![0u8; per_read as usize];
    let mut off = 0u64;
    while off < len {
        let n = per_read.min(len - off) as usize;
        node.read_at(key, off, &mut buf[..n])?;
        hashes.extend(buf[..n].chunks(block as usize).map(rmht::leaf));
        off += n as u64;
    }
    Ok(rmht::Tree::from_leaves(hashes))
}

/// The holdings of `node` from its listing (the default of
/// [`Prover::holdings`]).
pub fn holdings_by_listing<N: ShardStore + ?Sized>(
    node: &N,
    nonce: &[u8; 32],
) -> Result<Holdings, NodeError> {
    let mut listing = node.list()?;
    Ok(holdings_root(nonce, &mut listing.shards))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectId;

    #[test]
    fn holdings_depend_on_every_shard_and_the_nonce() {
        let s = |o: u8, i: u8, size: u64| StoredShard {
            key: ShardKey {
                object: ObjectId([o; 16]),
                index: i,
            },
            size,
        };
        let n = [1u8; 32];
        let a = holdings_root(&n, &mut [s(1, 0, 100), s(2, 3, 100)]);
        let b = holdings_root(&n, &mut [s(2, 3, 100), s(1, 0, 100)]);
        assert_eq!(a, b, "order does not matter");
        assert_ne!(a, holdings_root(&n, &mut [s(1, 0, 100)]));
        assert_ne!(a, holdings_root(&n, &mut [s(1, 0, 100), s(2, 3, 99)]));
        assert_ne!(
            a,
            holdings_root(&[2; 32], &mut [s(1, 0, 100), s(2, 3, 100)])
        );
        assert_eq!(holdings_root(&n, &mut []).count, 0);
    }

    #[test]
    fn block_sizes_outside_512_to_8192_are_refused() {
        let c = |block| Challenge {
            nonce: [0; 32],
            block,
            indices: vec![0],
        };
        for bad in [0, 1, 511, 8193, 16384] {
            let e = check_challenge(&c(bad)).unwrap_err();
            assert_eq!(e, ChallengeError::BlockSize { block: bad });
            assert!(e.to_string().contains("`block` setting"), "{e}");
        }
        for good in [512, 4096, 8192] {
            check_challenge(&c(good)).unwrap();
        }
    }
}
