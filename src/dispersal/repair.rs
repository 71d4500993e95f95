//! Placing one shard anew: the primitive under scrub repair and node
//! drain. A shard is written to its target node stripe by stripe; each
//! chunk is copied from the shard's current node when it verifies against
//! the manifest (a verified transfer) and otherwise rebuilt from `k` other
//! verified chunks of its stripe. The finished shard's RMHT root must equal
//! the manifest's before it is committed (the receiver's check of seed
//! 002), so a bad source can never become a bad copy. The manifest is not
//! touched here: callers switch it with [`EcStore::replace_manifest`]
//! (ecstore.rs) and only then delete the old shard.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::manifest::Manifest;
use super::{Dispersal, DispersalError};
use crate::node::{Node, NodeError, ShardKey};

/// How a shard was placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    /// Chunks copied from the shard's own node after they verified.
    pub copied: u64,
    /// Chunks rebuilt from the other shards (source bad or away).
    pub rebuilt: u64,
    /// Bytes read from nodes.
    pub bytes_read: u64,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// RMHT root of what was written.
    pub root: [u8; 32],
}

impl Dispersal {
    /// Writes shard `index` of `manifest` to `target` and commits it
    /// there. With `copy`, chunks come from the shard's current node when
    /// they verify; without (the node is gone or the shard known bad), every
    /// chunk is rebuilt. Fails if a stripe has fewer than `k` good chunks
    /// or the written shard does not match the manifest's root.
    pub fn place_shard(
        &self,
        manifest: &Manifest,
        index: usize,
        target: &Arc<dyn Node>,
        copy: bool,
    ) -> Result<Placed, DispersalError> {
        self.place_shard_with_piece(manifest, index, target, copy, None)
    }

    /// [`Dispersal::place_shard`] with the key piece given (one rebuilt
    /// from the true `B` when the pieces on the nodes cannot outvote the
    /// damaged ones).
    pub fn place_shard_with_piece(
        &self,
        manifest: &Manifest,
        index: usize,
        target: &Arc<dyn Node>,
        copy: bool,
        piece: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Placed, DispersalError> {
        let shards = self.shards_of(manifest, None)?;
        let layout = &manifest.layout;
        let chunk = layout.chunk as usize;
        // The key piece first: without it the shard cannot be placed,
        // and nothing should be written for nothing.
        let piece = match piece {
            _ if manifest.piece == 0 => None,
            Some(p) => Some(p),
            None => Some(self.piece_for(manifest, index, copy)?),
        };
        let header = manifest.shard_header(index as u8);
        let mut sink = target.create(&header)?;
        let mut tree = crate::rmht::Builder::new(if manifest.has_roots() {
            manifest.block
        } else {
            crate::rmht::BLOCK
        });
        let mut placed = Placed::default();
        // Once the source fails as a whole (gone), stop asking it.
        let mut source_ok = copy;
        let mut others_bad = 0u32;
        let (mut unusable, mut first_why) = (0u64, String::new());
        for s in 0..layout.stripes {
            let mut got = None;
            if source_ok {
                match shards.fetch_chunk(s, index) {
                    Ok(c) => {
                        placed.copied += 1;
                        placed.bytes_read += chunk as u64;
                        got = Some(c);
                    }
                    Err(f) => {
                        // One log line per shard, not per stripe: a
                        // damaged shard of a big object has thousands.
                        if unusable == 0 {
                            first_why = f.why;
                        }
                        unusable += 1;
                        if f.gone {
                            source_ok = false;
                        }
                    }
                }
            }
            let c = match got {
                Some(c) => c,
                None => {
                    let (c, read) = self.rebuild_chunk(&shards, s, index, &mut others_bad)?;
                    placed.rebuilt += 1;
                    placed.bytes_read += read;
                    c
                }
            };
            tree.update(&c);
            sink.write(&c)?;
            placed.bytes_written += chunk as u64;
        }
        if unusable > 0 {
            tracing::info!(
                object = %manifest.id,
                "shard {index} on {}: {} of {} chunks rebuilt from the other shards (its own copy: {first_why})",
                manifest.placement[index],
                placed.rebuilt,
                layout.stripes,
            );
        }
        let (root, _) = tree.finish();
        if manifest.has_roots() && root != manifest.roots[index] {
            return Err(DispersalError::RootMismatch {
                object: manifest.id,
                index,
                node: target.name().to_string(),
            });
        }
        placed.root = root;
        if let Some(p) = &piece {
            sink.write(p)?;
            placed.bytes_written += p.len() as u64;
        }
        let pending = sink.finish()?;
        match target.commit(vec![pending]).pop() {
            Some(Ok(())) => Ok(placed),
            Some(Err(e)) => Err(e.into()),
            None => Err(DispersalError::Internal(format!(
                "{}: commit returned no result",
                target.name()
            ))),
        }
    }

    /// Chunk `index` of `stripe` rebuilt from `k` other verified chunks.
    /// Returns the chunk and the bytes read. `bad` collects shards found
    /// gone so later stripes skip them.
    fn rebuild_chunk(
        &self,
        shards: &super::read::ObjectShards<'_>,
        stripe: u64,
        index: usize,
        bad: &mut u32,
    ) -> Result<(Vec<u8>, u64), DispersalError> {
        let m = shards.manifest;
        let l = &m.layout;
        let chunk = l.chunk as usize;
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; l.n];
        let mut have = 0;
        let mut why = Vec::new();
        // Shards recorded present first, then the ones recorded missing
        // (their damage may be local).
        let order = (0..l.n)
            .filter(|&i| !m.is_missing(i))
            .chain((0..l.n).filter(|&i| m.is_missing(i)));
        for i in order {
            if have == l.k {
                break;
            }
            if i == index || *bad & (1 << i) != 0 || shards.nodes[i].is_none() {
                continue;
            }
            match shards.fetch_chunk(stripe, i) {
                Ok(c) => {
                    chunks[i] = Some(c);
                    have += 1;
                }
                Err(f) => {
                    if f.gone {
                        *bad |= 1 << i;
                    }
                    why.push(format!("shard {i} on {}: {}", m.placement[i], f.why));
                }
            }
        }
        if have < l.k {
            return Err(DispersalError::Unreadable {
                object: m.id,
                stripe,
                have,
                k: l.k,
                detail: why.join("; "),
            });
        }
        let present: Vec<bool> = chunks.iter().map(std::option::Option::is_some).collect();
        let mut bufs: Vec<Vec<u8>> = chunks
            .into_iter()
            .map(|c| c.unwrap_or_else(|| vec![0u8; chunk]))
            .collect();
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
        shards.codec.reconstruct(&mut refs, &present, false)?;
        let c = std::mem::take(&mut bufs[index]);
        if blake3::hash(&c).as_bytes() != m.hash(stripe, index) {
            return Err(DispersalError::Internal(format!(
                "object {}: chunk {index} of stripe {stripe} rebuilt from parity does not match its hash",
                m.id
            )));
        }
        Ok((c, (l.k * chunk) as u64))
    }

    /// Deletes shard `index` of object `id` from `node` (after the manifest
    /// stopped pointing there).
    pub fn delete_shard(
        &self,
        node: &dyn Node,
        id: crate::ObjectId,
        index: usize,
    ) -> Result<(), NodeError> {
        node.delete(ShardKey {
            object: id,
            index: index as u8,
        })
    }
}
