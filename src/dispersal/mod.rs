//! The erasure-coding side (the paper's "EC server"): stripes a sealed
//! object, places its `n` shards on `n` distinct nodes chosen at random,
//! writes them in parallel, keeps the manifest and the backup record `B`,
//! and reads objects back from any `k` shards whose chunk hashes verify.
//!
//! A write is two-phase so many seals share one durability barrier:
//! [`Dispersal::write_object`] streams the shards out (invisible on the
//! nodes), [`Dispersal::sync`] commits a whole group per node and applies
//! the write quorum, [`Dispersal::publish`] records manifests and `B`
//! (or, in a vault that keeps `B` on the nodes, a marker: keypieces.rs).

mod ecstore;
mod keypieces;
mod manifest;
mod placement;
mod read;
mod repair;
mod slow;
mod write;

pub use ecstore::{CLEAR_BACKUP, DISPERSED_BACKUP, EcStore, clear_backup};
pub use keypieces::{PieceCheck, PieceFixes, PiecesError};
pub use manifest::Manifest;
pub use read::{ChunkCache, ReadReport};
pub use slow::SlowNodes;
pub use write::ObjectWriter;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::ObjectId;
use crate::erasure::{Codec, ErasureError, StripeLayout};
use crate::node::{Node, NodeError, NodeFailures, PendingShard, ShardHeader, ShardKey};
use crate::store::StoreError;

/// Erasure-coding side failures.
#[derive(Debug, Error)]
pub enum DispersalError {
    /// The manifest/backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Erasure parameters or decoding failed.
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    /// A manifest or backup record is damaged.
    #[error(
        "object {object}: damaged record in the manifest store: {detail}; the file using it cannot be read (restore the vault's meta folder from a backup, or remove that file)"
    )]
    Record {
        /// The object.
        object: ObjectId,
        /// What is wrong.
        detail: String,
    },
    /// No manifest for an object.
    #[error("object {0}: no manifest (the object was never committed or has been deleted)")]
    NoManifest(ObjectId),
    /// Fewer configured nodes than shards per object.
    #[error(
        "the vault has {have} nodes but objects need {need} (n); add nodes or lower n in qsfs.toml"
    )]
    NotEnoughNodes {
        /// Nodes configured.
        have: usize,
        /// Shards per object.
        need: usize,
    },
    /// Too few shards became durable.
    #[error(
        "only {written} of {n} shards of object {object} were written (write quorum {quorum}): {failures}"
    )]
    BelowQuorum {
        /// The object.
        object: ObjectId,
        /// Shards durable.
        written: usize,
        /// Shards per object.
        n: usize,
        /// Shards required.
        quorum: usize,
        /// Per-node failures, typed: a full node disk must reach the
        /// application as ENOSPC, not as text.
        failures: NodeFailures,
    },
    /// Fewer than `k` verified chunks of a stripe.
    #[error(
        "object {object}: stripe {stripe} has only {have} of the {k} verified chunks needed ({detail}); \
         bring the nodes named back (`qsfs status` lists them) and read again, or run `qsfs scrub`"
    )]
    Unreadable {
        /// The object.
        object: ObjectId,
        /// Stripe that failed.
        stripe: u64,
        /// Good chunks found.
        have: usize,
        /// Chunks needed.
        k: usize,
        /// Which shards failed and why.
        detail: String,
    },
    /// A range outside the object.
    #[error("object {object}: range {offset}+{len} is past its end")]
    Range {
        /// The object.
        object: ObjectId,
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// A node failed while a shard was placed there (scrub's repair, a
    /// drain or a rebalance): the node error names the node, the shard,
    /// the path and the cause.
    #[error("{source}; {}", source.next_step())]
    Node {
        /// What the node said.
        #[from]
        source: NodeError,
    },
    /// A shard written for a repair or a move did not hash to the audit
    /// root its manifest keeps, so it was not committed.
    #[error(
        "object {object}: shard {index} written to {node} does not match the manifest's audit root, so it was not \
         committed; the chunks it was built from may be damaged: run `qsfs scrub` to find them"
    )]
    RootMismatch {
        /// The object.
        object: ObjectId,
        /// Shard index.
        index: usize,
        /// The node written to.
        node: String,
    },
    /// The data source of a write failed.
    #[error("{0}")]
    Source(std::io::Error),
    /// A bug or a panicked worker.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One node's group commit: the (object, shard index) pairs it committed
/// and one result per pair, in order.
type NodeCommit = (Vec<(usize, usize)>, Vec<Result<(), NodeError>>);

/// Erasure and placement settings of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispersalConfig {
    /// Data chunks per stripe.
    pub k: usize,
    /// Shards per object.
    pub n: usize,
    /// Shards that must be durable for a write to succeed.
    pub write_quorum: usize,
    /// Largest chunk size in bytes.
    pub max_chunk: u32,
}

/// An object whose shards are written but not yet committed.
pub struct WrittenObject {
    /// Its manifest (the missing mask is final after [`Dispersal::sync`]).
    pub manifest: Manifest,
    pending: Vec<Option<PendingShard>>,
    failures: NodeFailures,
}

impl std::fmt::Debug for WrittenObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrittenObject")
            .field("id", &self.manifest.id)
            .field("failures", &self.failures)
            .finish()
    }
}

/// The erasure-coding side of a vault.
pub struct Dispersal {
    config: DispersalConfig,
    nodes: Vec<Arc<dyn Node>>,
    store: EcStore,
    codecs: Mutex<HashMap<(usize, usize), Arc<Codec>>>,
    /// Nodes being drained: no new shards go there.
    draining: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Nodes reads found slow lately (hedged reads went around them).
    slow: Arc<SlowNodes>,
}

impl std::fmt::Debug for Dispersal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispersal")
            .field("config", &self.config)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Dispersal {
    /// The EC side over `nodes` with manifests in `store`.
    pub fn new(
        config: DispersalConfig,
        nodes: Vec<Arc<dyn Node>>,
        store: EcStore,
    ) -> Result<Dispersal, DispersalError> {
        Codec::new(config.k, config.n)?;
        if nodes.len() < config.n {
            return Err(DispersalError::NotEnoughNodes {
                have: nodes.len(),
                need: config.n,
            });
        }
        Ok(Dispersal {
            config,
            nodes,
            store,
            codecs: Mutex::new(HashMap::new()),
            draining: Default::default(),
            slow: Arc::default(),
        })
    }

    /// Settings.
    pub fn config(&self) -> &DispersalConfig {
        &self.config
    }

    /// The nodes, in config order.
    pub fn nodes(&self) -> &[Arc<dyn Node>] {
        &self.nodes
    }

    /// The nodes reads found slow lately.
    pub fn slow_nodes(&self) -> &SlowNodes {
        &self.slow
    }

    /// The manifest and backup store.
    pub fn store(&self) -> &EcStore {
        &self.store
    }

    /// Marks node `name` as draining (no new shards) or not.
    pub fn set_draining(&self, name: &str, on: bool) {
        let mut d = self
            .draining
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            d.insert(name.to_string());
        } else {
            d.remove(name);
        }
    }

    /// True if node `name` is being drained.
    pub fn is_draining(&self, name: &str) -> bool {
        self.draining
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
    }

    /// Nodes new shards may go to: every configured node but the draining
    /// ones (those too when too few others are left, so writes go on).
    fn placeable(&self) -> Vec<Arc<dyn Node>> {
        let d = self
            .draining
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut keep, rest): (Vec<_>, Vec<_>) = self
            .nodes
            .iter()
            .cloned()
            .partition(|n| !d.contains(n.name()));
        if keep.len() < self.config.n {
            keep.extend(rest);
        }
        keep
    }

    /// A healthy node, not draining, that holds no shard of `manifest`'s
    /// object (placement lists every shard's node, missing ones too), and
    /// is not in `exclude`; picked at random. Where a shard goes when its
    /// node is gone or drained.
    pub fn spare_node(&self, manifest: &Manifest, exclude: &[&str]) -> Option<Arc<dyn Node>> {
        let candidates: Vec<Arc<dyn Node>> = self
            .nodes
            .iter()
            .filter(|n| {
                !manifest.placement.iter().any(|p| p == n.name())
                    && !exclude.contains(&n.name())
                    && !self.is_draining(n.name())
                    && n.health() == crate::node::NodeHealth::Ok
            })
            .cloned()
            .collect();
        placement::choose(&candidates, 1).pop()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// A codec for `k`/`n` (objects keep the parameters they were sealed with).
    pub fn codec(&self, k: usize, n: usize) -> Result<Arc<Codec>, DispersalError> {
        let mut codecs = self
            .codecs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = codecs.get(&(k, n)) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Codec::new(k, n)?);
        codecs.insert((k, n), Arc::clone(&c));
        Ok(c)
    }

    /// The manifest of `id`.
    pub fn manifest(&self, id: &ObjectId) -> Result<Manifest, DispersalError> {
        self.store
            .manifest(id)?
            .ok_or(DispersalError::NoManifest(*id))
    }

    fn shards_of<'a>(
        &self,
        manifest: &'a Manifest,
        cache: Option<&'a ChunkCache>,
    ) -> Result<read::ObjectShards<'a>, DispersalError> {
        Ok(read::ObjectShards {
            manifest,
            nodes: manifest
                .placement
                .iter()
                .map(|name| self.node(name).cloned())
                .collect(),
            codec: self.codec(manifest.layout.k, manifest.layout.n)?,
            cache,
            slow: Arc::clone(&self.slow),
            owned: std::sync::OnceLock::new(),
        })
    }

    /// Streams a new object of `object_len` bytes to the nodes. `fill`
    /// writes exactly that many bytes into the [`ObjectWriter`]. Nothing is
    /// visible on the nodes until [`Dispersal::sync`]. `pieces` is empty,
    /// or holds one key piece per shard, written after shard `i`'s chunks
    /// (see `node::header`).
    pub fn write_object<T>(
        &self,
        id: ObjectId,
        object_len: u64,
        plain_len: u64,
        pieces: &[Zeroizing<Vec<u8>>],
        fill: impl FnOnce(&mut ObjectWriter<'_>) -> Result<T, DispersalError>,
    ) -> Result<(T, WrittenObject), DispersalError> {
        let cfg = self.config;
        let piece = piece_len(pieces, cfg.n)?;
        let layout = StripeLayout::plan(cfg.k, cfg.n, object_len, cfg.max_chunk)?;
        let codec = self.codec(cfg.k, cfg.n)?;
        let chosen = placement::choose(&self.placeable(), cfg.n);
        // Shard writers run on kept threads (workers.rs): spawning n threads
        // per object cost more than sealing a small file.
        let (done_tx, done_rx) = crossbeam_channel::bounded(cfg.n);
        let mut senders = Vec::with_capacity(cfg.n);
        let mut started = 0usize;
        for (i, node) in chosen.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(write::QUEUE);
            let header = ShardHeader::new(id, i as u8, &layout).with_piece(piece);
            let node = Arc::clone(node);
            let piece = pieces.get(i).map(|p| Zeroizing::new(p.to_vec()));
            let done = done_tx.clone();
            let job = move || {
                let piece = piece.as_ref().map(|p| &p[..]);
                let outcome = write::shard_writer(node.as_ref(), header, rx, piece);
                let _ = done.send((i, outcome));
            };
            if crate::workers::run("qsfs-shard-write", job).is_ok() {
                started += 1;
            }
            senders.push(tx);
        }
        drop(done_tx);
        let value = if started < chosen.len() {
            Err(DispersalError::Internal(format!(
                "object {id}: could not start its shard writer threads"
            )))
        } else {
            // The writer drops at the end of this block with the channels,
            // so the shard writers see the end of input.
            let mut writer = ObjectWriter::new(layout, &codec, senders);
            match fill(&mut writer) {
                Ok(v) => writer.finish().map(|()| v).map_err(DispersalError::Source),
                Err(e) => Err(e),
            }
        };
        let mut outcomes: Vec<Option<write::ShardOutcome>> = (0..cfg.n).map(|_| None).collect();
        for (i, outcome) in &done_rx {
            outcomes[i] = Some(outcome);
        }
        // On a failed fill the outcomes drop here, discarding the temp shards.
        let value = value?;
        let mut hashes = vec![[0u8; 32]; layout.stripes as usize * cfg.n];
        let mut roots = vec![[0u8; 32]; cfg.n];
        let mut pending = Vec::with_capacity(cfg.n);
        let mut failures = NodeFailures::default();
        let mut missing = 0u32;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            // A writer that panicked is a bug: without its chunk hashes the
            // manifest would be incomplete, so the object fails as a whole
            // (its other shards are discarded with `outcomes`).
            let outcome = match outcome {
                Some(o) if o.hashes.len() as u64 == layout.stripes => o,
                bad => {
                    let why = match bad {
                        Some(o) => {
                            format!("hashed {} of {} stripes", o.hashes.len(), layout.stripes)
                        }
                        None => "its writer thread panicked".to_string(),
                    };
                    tracing::error!(object = %id, "shard {i} not written: {why}");
                    return Err(DispersalError::Internal(format!(
                        "shard {i} of object {id}: {why}"
                    )));
                }
            };
            for (s, h) in outcome.hashes.into_iter().enumerate() {
                hashes[s * cfg.n + i] = h;
            }
            roots[i] = outcome.root;
            match outcome.result {
                Ok(p) => pending.push(Some(p)),
                Err(e) => {
                    failures.0.push(e);
                    missing |= 1 << i;
                    pending.push(None);
                }
            }
        }
        let manifest = Manifest {
            id,
            layout,
            plain_len,
            created: now_secs(),
            placement: chosen.iter().map(|n| n.name().to_string()).collect(),
            missing,
            hashes,
            block: crate::rmht::BLOCK,
            roots,
            piece,
        };
        Ok((
            value,
            WrittenObject {
                manifest,
                pending,
                failures,
            },
        ))
    }

    /// Like [`Dispersal::write_object`] for an object held in memory, all
    /// in the calling thread: no thread is started, which is what a small
    /// file wants (a tar of thousands of them would otherwise pay for
    /// thousands of thread starts).
    pub fn write_object_inline(
        &self,
        id: ObjectId,
        object: &[u8],
        plain_len: u64,
        pieces: &[Zeroizing<Vec<u8>>],
    ) -> Result<WrittenObject, DispersalError> {
        let cfg = self.config;
        let piece = piece_len(pieces, cfg.n)?;
        let layout = StripeLayout::plan(cfg.k, cfg.n, object.len() as u64, cfg.max_chunk)?;
        let codec = self.codec(cfg.k, cfg.n)?;
        let chosen = placement::choose(&self.placeable(), cfg.n);
        let shards = write::encode_all(&layout, &codec, object).map_err(DispersalError::Source)?;
        let chunk = layout.chunk as usize;
        let mut hashes = vec![[0u8; 32]; layout.stripes as usize * cfg.n];
        let mut roots = vec![[0u8; 32]; cfg.n];
        let mut pending = Vec::with_capacity(cfg.n);
        let mut failures = NodeFailures::default();
        let mut missing = 0u32;
        for (i, (node, shard)) in chosen.iter().zip(&shards).enumerate() {
            for (s, c) in shard.chunks(chunk).enumerate() {
                hashes[s * cfg.n + i] = *blake3::hash(c).as_bytes();
            }
            let mut tree = crate::rmht::Builder::new(crate::rmht::BLOCK);
            tree.update(shard);
            roots[i] = tree.finish().0;
            let header = ShardHeader::new(id, i as u8, &layout).with_piece(piece);
            let result = node.create(&header).and_then(|mut sink| {
                sink.write(shard)?;
                if let Some(p) = pieces.get(i) {
                    sink.write(p)?;
                }
                sink.finish()
            });
            match result {
                Ok(p) => pending.push(Some(p)),
                Err(e) => {
                    failures.0.push(e);
                    missing |= 1 << i;
                    pending.push(None);
                }
            }
        }
        let manifest = Manifest {
            id,
            layout,
            plain_len,
            created: now_secs(),
            placement: chosen.iter().map(|n| n.name().to_string()).collect(),
            missing,
            hashes,
            block: crate::rmht::BLOCK,
            roots,
            piece,
        };
        Ok(WrittenObject {
            manifest,
            pending,
            failures,
        })
    }

    /// Commits the shards of `objects` in one group per node (parallel over
    /// nodes) and applies the write quorum. An object below quorum gets an
    /// error and its shards are removed again.
    pub fn sync(&self, objects: &mut [&mut WrittenObject]) -> Vec<Result<(), DispersalError>> {
        let mut by_node: HashMap<String, Vec<(usize, usize, PendingShard)>> = HashMap::new();
        for (o, obj) in objects.iter_mut().enumerate() {
            for (i, p) in obj.pending.iter_mut().enumerate() {
                if let Some(p) = p.take() {
                    by_node
                        .entry(obj.manifest.placement[i].clone())
                        .or_default()
                        .push((o, i, p));
                }
            }
        }
        // Per node: which (object, shard) it committed, and its results.
        let results: Vec<NodeCommit> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_node
                .into_iter()
                .map(|(name, items)| {
                    let node = self.node(&name).cloned();
                    scope.spawn(move || {
                        let idx: Vec<(usize, usize)> =
                            items.iter().map(|(o, i, _)| (*o, *i)).collect();
                        let shards: Vec<PendingShard> =
                            items.into_iter().map(|(_, _, p)| p).collect();
                        let res = match node {
                            Some(node) => node.commit(shards),
                            None => idx
                                .iter()
                                .map(|_| {
                                    Err(NodeError::new(
                                        &name,
                                        "commit shard",
                                        None,
                                        crate::node::NodeErrorKind::Offline(
                                            "node not configured".into(),
                                        ),
                                    ))
                                })
                                .collect(),
                        };
                        (idx, res)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut committed = vec![0u32; objects.len()];
        for (idx, res) in results {
            for ((o, i), r) in idx.into_iter().zip(res) {
                match r {
                    Ok(()) => committed[o] |= 1 << i,
                    Err(e) => objects[o].failures.0.push(e),
                }
            }
        }
        objects
            .iter_mut()
            .zip(committed)
            .map(|(obj, ok)| {
                let n = obj.manifest.layout.n;
                obj.manifest.missing = ((1u64 << n) - 1) as u32 & !ok;
                let written = ok.count_ones() as usize;
                if written >= self.config.write_quorum.min(n) {
                    return Ok(());
                }
                self.remove_shards(&obj.manifest, ok);
                Err(DispersalError::BelowQuorum {
                    object: obj.manifest.id,
                    written,
                    n,
                    quorum: self.config.write_quorum,
                    failures: std::mem::take(&mut obj.failures),
                })
            })
            .collect()
    }

    /// Records manifests and backup records of committed objects, durably.
    pub fn publish(&self, items: &[(&Manifest, &[u8])]) -> Result<(), DispersalError> {
        self.store.publish(items)
    }

    /// Failures seen while writing an object (for the debt message).
    pub fn failures(obj: &WrittenObject) -> &NodeFailures {
        &obj.failures
    }

    /// Deletes the shards in `mask` of an object from their nodes
    /// (best effort: an unreachable node keeps an orphan that fsck finds).
    pub fn remove_shards(&self, manifest: &Manifest, mask: u32) -> Vec<NodeError> {
        let mut errors = Vec::new();
        for (i, name) in manifest.placement.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            if let Some(node) = self.node(name)
                && let Err(e) = node.delete(ShardKey {
                    object: manifest.id,
                    index: i as u8,
                })
            {
                errors.push(e);
            }
        }
        errors
    }

    /// Destroys objects: backup records first (with the local shares gone
    /// the shards are then undecryptable), then the shards, then the
    /// manifests. An object whose manifest is missing or damaged has its
    /// shards found by id on every node. Returns the node errors of shards
    /// left behind as orphans.
    pub fn destroy_many(&self, ids: &[ObjectId]) -> Result<Vec<NodeError>, DispersalError> {
        self.store.remove_backups(ids)?;
        let work: Vec<(ObjectId, Option<Manifest>)> = ids
            .iter()
            .map(|id| match self.store.manifest(id) {
                Ok(m) => (*id, m),
                Err(e) => {
                    tracing::warn!("{e}; removing its shards by id from every node");
                    (*id, None)
                }
            })
            .collect();
        // The nodes work in parallel, each through the whole list: a remove
        // is a round trip on a remote node, and the nodes one after another
        // made cleaning up a busy mount's replaced files cost more than
        // writing them.
        let errors = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|node| scope.spawn(|| clean_node(node.as_ref(), &work)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        self.store.remove_manifests(ids)?;
        Ok(errors)
    }
}

/// Removes from `node` the shards of `work` its manifests place there.
/// Where a write may have left a temporary file (the manifest records the
/// shard on this node as missing) or nothing says where the shards went
/// (no manifest), every file of the object goes (a purge). A copy a drain
/// or rebalance was writing elsewhere is its own to remove
/// (`settle_moved`), or an orphan for fsck. Errors are returned for shards
/// that stay behind; a purge that only looked for leftovers of a known
/// object fails quietly.
fn clean_node(node: &dyn Node, work: &[(ObjectId, Option<Manifest>)]) -> Vec<NodeError> {
    let mut errors = Vec::new();
    for (id, manifest) in work {
        let mut leftovers = manifest.is_none();
        if let Some(m) = manifest {
            for (i, name) in m.placement.iter().enumerate() {
                if name != node.name() {
                    continue;
                }
                leftovers |= m.is_missing(i);
                let key = ShardKey {
                    object: *id,
                    index: i as u8,
                };
                if let Err(e) = node.delete(key) {
                    errors.push(e);
                }
            }
        }
        if !leftovers || node.health() != crate::node::NodeHealth::Ok {
            continue;
        }
        if let Err(e) = node.purge(*id)
            && manifest.is_none()
        {
            errors.push(e);
        }
    }
    errors
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The key-piece length of one object: 0 without pieces, else every one of
/// the `n` pieces must have the same, announceable length.
fn piece_len(pieces: &[Zeroizing<Vec<u8>>], n: usize) -> Result<u32, DispersalError> {
    let Some(first) = pieces.first() else {
        return Ok(0);
    };
    let len = u32::try_from(first.len()).unwrap_or(u32::MAX);
    if pieces.len() != n
        || pieces.iter().any(|p| p.len() != first.len())
        || len == 0
        || len > crate::node::MAX_PIECE
    {
        return Err(DispersalError::Internal(format!(
            "{} key pieces of {} bytes for {n} shards",
            pieces.len(),
            first.len()
        )));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::DirNode;
    use std::io::{Read, Write};

    fn setup(dir: &std::path::Path, k: usize, n: usize, max_chunk: u32) -> Dispersal {
        let nodes: Vec<Arc<dyn Node>> = (0..n)
            .map(|i| {
                let node = DirNode::new(&format!("node-{i}"), &dir.join(format!("node-{i}")), "v");
                node.initialize().unwrap();
                Arc::new(node) as Arc<dyn Node>
            })
            .collect();
        let store = EcStore::open(&dir.join("ec"), "v", crate::store::OpenMode::Create).unwrap();
        Dispersal::new(
            DispersalConfig {
                k,
                n,
                write_quorum: k + 1,
                max_chunk,
            },
            nodes,
            store,
        )
        .unwrap()
    }

    fn put(ec: &Dispersal, data: &[u8]) -> Manifest {
        let ((), mut obj) = ec
            .write_object(
                ObjectId::random().unwrap(),
                data.len() as u64,
                data.len() as u64,
                &[],
                |w| {
                    // Uneven pieces cross stripe boundaries at odd places.
                    for piece in data.chunks(777) {
                        w.write_all(piece).map_err(DispersalError::Source)?;
                    }
                    Ok(())
                },
            )
            .unwrap();
        let results = ec.sync(&mut [&mut obj]);
        results.into_iter().for_each(|r| r.unwrap());
        ec.publish(&[(&obj.manifest, &[0u8; 105][..])]).unwrap();
        obj.manifest
    }

    fn read_all(ec: &Dispersal, m: &Manifest) -> (Vec<u8>, ReadReport) {
        let (data, report) = ec
            .read_stream(m, |mut s| {
                let mut v = Vec::new();
                s.read_to_end(&mut v).map(|_| v)
            })
            .unwrap();
        (data.unwrap(), report)
    }

    #[test]
    fn many_stripes_round_trip_and_survive_lost_shards() {
        let dir = tempfile::tempdir().unwrap();
        let ec = setup(dir.path(), 3, 5, 4096);
        let data: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
        let m = put(&ec, &data);
        assert!(m.layout.stripes > 10);
        assert_eq!(m.missing, 0);
        assert_eq!(read_all(&ec, &m).0, data);
        // Lose two shards (one data, one parity): still readable, reported.
        for i in [1u8, 4] {
            let node = ec.node(&m.placement[i as usize]).unwrap();
            node.delete(ShardKey {
                object: m.id,
                index: i,
            })
            .unwrap();
        }
        let (back, report) = read_all(&ec, &m);
        assert_eq!(back, data);
        // Shard 1 was needed and found missing; spare shard 3 stood in, so
        // the missing parity shard 4 was never touched.
        assert_eq!(report.mask(), 0b10);
        // Range reads across stripe and chunk boundaries read around them too.
        for (off, len) in [(0u64, 10usize), (4090, 20), (12_280, 9000), (199_990, 13)] {
            let mut buf = vec![0u8; len];
            let mut rep = ReadReport::default();
            ec.read_at(&m, off, &mut buf, &mut rep).unwrap();
            assert_eq!(buf, data[off as usize..off as usize + len]);
        }
        // A third loss is one too many: a clear error, not wrong bytes.
        ec.node(&m.placement[0])
            .unwrap()
            .delete(ShardKey {
                object: m.id,
                index: 0,
            })
            .unwrap();
        let (r, _) = ec
            .read_stream(&m, |mut s| s.read_to_end(&mut Vec::new()))
            .unwrap();
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains("stripe 0") && err.contains("2 of the 3"),
            "{err}"
        );
    }

    #[test]
    fn below_quorum_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ec = setup(dir.path(), 3, 5, 4096);
        std::fs::remove_dir_all(dir.path().join("node-1")).unwrap();
        std::fs::remove_dir_all(dir.path().join("node-3")).unwrap();
        let data = vec![7u8; 10_000];
        let ((), mut obj) = ec
            .write_object(
                ObjectId::random().unwrap(),
                data.len() as u64,
                data.len() as u64,
                &[],
                |w| w.write_all(&data).map_err(DispersalError::Source),
            )
            .unwrap();
        let err = ec
            .sync(&mut [&mut obj])
            .pop()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only 3 of 5") && err.contains("node-1") && err.contains("node-3"),
            "{err}"
        );
        for i in [0, 2, 4] {
            assert!(ec.nodes()[i].list().unwrap().shards.is_empty());
        }
    }

    /// statfs's running sum of stored bytes stays equal to a walk of the
    /// manifests through publish, replace and destroy.
    #[test]
    fn stored_total_follows_every_manifest_change() {
        let dir = tempfile::tempdir().expect("a temp folder");
        let ec = setup(dir.path(), 3, 5, 4096);
        let walk = |ec: &Dispersal| -> u64 {
            ec.store()
                .manifests()
                .map(|m| m.expect("a readable manifest").stored_bytes())
                .sum()
        };
        assert_eq!(ec.store().stored_total().expect("the sum"), 0);
        let a = put(&ec, &[1u8; 50_000]);
        assert_eq!(
            ec.store().stored_total().expect("the sum"),
            a.stored_bytes()
        );
        let b = put(&ec, &[2u8; 123_457]);
        let both = ec.store().stored_total().expect("the sum");
        assert_eq!(both, walk(&ec));
        assert_eq!(both, a.stored_bytes() + b.stored_bytes());
        // A shard recorded missing no longer counts.
        let mut degraded = b.clone();
        degraded.missing = 0b1;
        assert!(
            ec.store()
                .replace_manifest(&b, &degraded)
                .expect("a replace")
        );
        assert_eq!(ec.store().stored_total().expect("the sum"), walk(&ec));
        assert!(ec.store().stored_total().expect("the sum") < both);
        ec.destroy_many(&[a.id]).expect("a destroy");
        assert_eq!(ec.store().stored_total().expect("the sum"), walk(&ec));
        assert_eq!(
            ec.store().stored_total().expect("the sum"),
            degraded.stored_bytes()
        );
    }
}
