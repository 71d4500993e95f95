//! Judging a node's answer to one challenge against the root kept in the
//! manifest. Pure code: the auditor trusts only the manifest (root, leaf
//! count, block size, shard length) and its own nonce, never anything the
//! node says about itself.

use crate::node::{Challenge, PossessionProof};
use crate::rmht::{self, Hash};

/// What the auditor knows about one shard (all from the manifest).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// RMHT root of the shard's payload.
    pub root: &'a Hash,
    /// Leaves of its tree.
    pub leaves: u64,
    /// Bytes per leaf.
    pub block: u32,
    /// Payload length of the shard.
    pub shard_len: u64,
}

impl Expected<'_> {
    /// Length block `index` must have (the last one may be short).
    pub fn block_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(self.block as u64);
        (self.shard_len.saturating_sub(start)).min(self.block as u64)
    }
}

/// The verdict on each challenged index, in challenge order: `None` if
/// the block is proven, else why not. A proof whose shape is wrong (other
/// nonce, other leaf count, wrong number of blocks) fails every block:
/// nothing in it can be trusted.
pub fn judge(want: &Expected<'_>, c: &Challenge, p: &PossessionProof) -> Vec<Option<String>> {
    let whole = if p.nonce != c.nonce {
        Some("the proof does not echo the challenge's nonce (a replayed or foreign answer)".into())
    } else if p.leaves != want.leaves {
        Some(format!(
            "the node's tree has {} blocks, the manifest {} (shard length differs)",
            p.leaves, want.leaves
        ))
    } else if p.blocks.len() != c.indices.len() {
        Some(format!(
            "{} blocks answered for {} asked",
            p.blocks.len(),
            c.indices.len()
        ))
    } else {
        None
    };
    if let Some(why) = whole {
        return vec![Some(why); c.indices.len()];
    }
    c.indices
        .iter()
        .zip(&p.blocks)
        .map(|(&idx, b)| {
            if b.index != idx {
                return Some(format!("block {} answered where {idx} was asked", b.index));
            }
            let len = want.block_len(idx);
            if b.data.len() as u64 != len {
                return Some(format!(
                    "block {idx} has {} bytes, {len} expected",
                    b.data.len()
                ));
            }
            if !rmht::verify(want.root, want.leaves, idx, &b.data, &b.path) {
                return Some(format!(
                    "block {idx} does not match the manifest's root (lost or altered)"
                ));
            }
            None
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ProvenBlock;

    fn shard(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 97) as u8).collect()
    }

    fn prove(data: &[u8], block: u32, c: &Challenge) -> PossessionProof {
        let leaves: Vec<Hash> = if data.is_empty() {
            vec![rmht::leaf(&[])]
        } else {
            data.chunks(block as usize).map(rmht::leaf).collect()
        };
        let tree = rmht::Tree::from_leaves(leaves);
        PossessionProof {
            nonce: c.nonce,
            leaves: tree.leaves(),
            blocks: c
                .indices
                .iter()
                .map(|&i| ProvenBlock {
                    index: i,
                    data: data
                        .chunks(block as usize)
                        .nth(i as usize)
                        .unwrap_or(&[])
                        .to_vec(),
                    path: tree.path(i),
                })
                .collect(),
        }
    }

    #[test]
    fn honest_proofs_pass_and_every_kind_of_lie_fails() {
        let block = 64u32;
        let data = shard(64 * 9 + 10); // 10 leaves, the last 10 bytes
        let mut b = rmht::Builder::new(block);
        b.update(&data);
        let (root, leaves) = b.finish();
        let want = Expected {
            root: &root,
            leaves,
            block,
            shard_len: data.len() as u64,
        };
        assert_eq!(want.block_len(9), 10);
        assert_eq!(want.block_len(3), 64);
        let c = Challenge {
            nonce: [7; 32],
            block,
            indices: vec![0, 9, 4, 4],
        };
        let p = prove(&data, block, &c);
        assert!(
            judge(&want, &c, &p)
                .iter()
                .all(std::option::Option::is_none)
        );

        // Replay under another nonce: everything fails.
        let mut other = c.clone();
        other.nonce = [8; 32];
        assert!(
            judge(&want, &other, &p)
                .iter()
                .all(std::option::Option::is_some)
        );

        // One block altered: only that one fails (the others' paths
        // come from the honest tree here).
        let mut bad = p.clone();
        bad.blocks[2].data[5] ^= 1;
        let v = judge(&want, &c, &bad);
        assert!(v[0].is_none() && v[1].is_none() && v[2].is_some() && v[3].is_none());

        // A node that altered data and rebuilt its tree: every path fails.
        let mut altered = data.clone();
        altered[64 * 6] ^= 1;
        let v = judge(&want, &c, &prove(&altered, block, &c));
        assert!(v.iter().all(std::option::Option::is_some), "{v:?}");

        // Truncated shard: leaf count differs.
        let short = &data[..64 * 8];
        let c2 = Challenge {
            indices: vec![1],
            ..c.clone()
        };
        assert!(judge(&want, &c2, &prove(short, block, &c2))[0].is_some());

        // Wrong count, wrong index, wrong length.
        let mut fewer = p.clone();
        fewer.blocks.pop();
        assert!(
            judge(&want, &c, &fewer)
                .iter()
                .all(std::option::Option::is_some)
        );
        let mut swapped = p.clone();
        swapped.blocks[0].index = 1;
        assert!(judge(&want, &c, &swapped)[0].is_some());
        let mut padded = p.clone();
        padded.blocks[1].data.push(0);
        assert!(judge(&want, &c, &padded)[1].is_some());
    }
}
