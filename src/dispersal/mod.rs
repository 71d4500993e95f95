//! The erasure-coding side (the paper's "EC server"): stripes a sealed
//! object, places its `n` shards on `n` distinct nodes chosen at random,
//! writes them in parallel, keeps the manifest and the backup record `B`,
//! and reads objects back from any `k` shards whose chunk hashes verify.
//!
//! A write is two-phase so many seals share one durability barrier:
//! [`Dispersal::write_object`] streams the shards out (invisible on the
//! nodes), [`Dispersal::sync`] commits a whole group per node and applies
//! the write quorum, [`Dispersal::publish`] records manifests and `B`.

mod ecstore;
mod manifest;
mod placement;
mod read;
mod write;

pub use ecstore::EcStore;
pub use manifest::{MANIFEST_VERSION, Manifest};
pub use read::{ObjectStream, ReadReport};
pub use write::ObjectWriter;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::ObjectId;
use crate::erasure::{Codec, ErasureError, StripeLayout};
use crate::node::{Node, NodeError, PendingShard, ShardHeader, ShardKey};
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
    #[error("object {object}: damaged record in the manifest store: {detail}")]
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
    #[error("the vault has {have} nodes but objects need {need} (n); add nodes or lower n in qsfs.toml")]
    NotEnoughNodes {
        /// Nodes configured.
        have: usize,
        /// Shards per object.
        need: usize,
    },
    /// Too few shards became durable.
    #[error(
        "only {written} of {n} shards of object {object} were written (write quorum {quorum}): {detail}"
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
        /// Per-node failures.
        detail: String,
    },
    /// Fewer than `k` verified chunks of a stripe.
    #[error(
        "object {object}: stripe {stripe} has only {have} of the {k} verified chunks needed ({detail})"
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
    /// The data source of a write failed.
    #[error("{0}")]
    Source(std::io::Error),
    /// A bug or a panicked worker.
    #[error("internal error: {0}")]
    Internal(String),
}

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
    pending: Vec<Option<Box<dyn PendingShard>>>,
    failures: Vec<String>,
}

impl std::fmt::Debug for WrittenObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrittenObject").field("id", &self.manifest.id).field("failures", &self.failures).finish()
    }
}

/// The erasure-coding side of a vault.
pub struct Dispersal {
    config: DispersalConfig,
    nodes: Vec<Arc<dyn Node>>,
    store: EcStore,
    codecs: Mutex<HashMap<(usize, usize), Arc<Codec>>>,
}

impl std::fmt::Debug for Dispersal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispersal").field("config", &self.config).field("nodes", &self.nodes.len()).finish()
    }
}

impl Dispersal {
    /// The EC side over `nodes` with manifests in `store`.
    pub fn new(config: DispersalConfig, nodes: Vec<Arc<dyn Node>>, store: EcStore) -> Result<Dispersal, DispersalError> {
        Codec::new(config.k, config.n)?;
        if nodes.len() < config.n {
            return Err(DispersalError::NotEnoughNodes { have: nodes.len(), need: config.n });
        }
        Ok(Dispersal { config, nodes, store, codecs: Mutex::new(HashMap::new()) })
    }

    /// Settings.
    pub fn config(&self) -> &DispersalConfig {
        &self.config
    }

    /// The nodes, in config order.
    pub fn nodes(&self) -> &[Arc<dyn Node>] {
        &self.nodes
    }

    /// The manifest and backup store.
    pub fn store(&self) -> &EcStore {
        &self.store
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// A codec for `k`/`n` (objects keep the parameters they were sealed with).
    pub fn codec(&self, k: usize, n: usize) -> Result<Arc<Codec>, DispersalError> {
        let mut codecs = self.codecs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = codecs.get(&(k, n)) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Codec::new(k, n)?);
        codecs.insert((k, n), Arc::clone(&c));
        Ok(c)
    }

    /// The manifest of `id`.
    pub fn manifest(&self, id: &ObjectId) -> Result<Manifest, DispersalError> {
        self.store.manifest(id)?.ok_or(DispersalError::NoManifest(*id))
    }

    fn shards_of<'a>(&self, manifest: &'a Manifest) -> Result<read::ObjectShards<'a>, DispersalError> {
        Ok(read::ObjectShards {
            manifest,
            nodes: manifest.placement.iter().map(|name| self.node(name).cloned()).collect(),
            codec: self.codec(manifest.layout.k, manifest.layout.n)?,
        })
    }

    /// Streams a new object of `object_len` bytes to the nodes. `fill`
    /// writes exactly that many bytes into the [`ObjectWriter`]. Nothing is
    /// visible on the nodes until [`Dispersal::sync`].
    pub fn write_object<T>(
        &self,
        object_len: u64,
        plain_len: u64,
        fill: impl FnOnce(&mut ObjectWriter<'_>) -> Result<T, DispersalError>,
    ) -> Result<(T, WrittenObject), DispersalError> {
        let cfg = self.config;
        let layout = StripeLayout::plan(cfg.k, cfg.n, object_len, cfg.max_chunk)?;
        let codec = self.codec(cfg.k, cfg.n)?;
        let id = ObjectId::random().map_err(DispersalError::Source)?;
        let chosen = placement::choose(&self.nodes, cfg.n);
        let (value, outcomes) = std::thread::scope(|scope| {
            let mut senders = Vec::with_capacity(cfg.n);
            let mut handles = Vec::with_capacity(cfg.n);
            for (i, node) in chosen.iter().enumerate() {
                let (tx, rx) = crossbeam_channel::bounded(write::QUEUE);
                senders.push(tx);
                let header = ShardHeader::new(id, i as u8, &layout);
                let node: &dyn Node = node.as_ref();
                handles.push(scope.spawn(move || write::shard_writer(node, header, rx)));
            }
            let mut writer = ObjectWriter::new(layout, &codec, senders);
            let value = match fill(&mut writer) {
                Ok(v) => writer.finish().map(|_| v).map_err(DispersalError::Source),
                // The writer holds the channels: drop it so the shard
                // threads see the end of input and can be joined.
                Err(e) => {
                    drop(writer);
                    Err(e)
                }
            };
            let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
            (value, outcomes)
        });
        // On a failed fill the outcomes drop here, discarding the temp shards.
        let value = value?;
        let mut hashes = vec![[0u8; 32]; layout.stripes as usize * cfg.n];
        let mut pending = Vec::with_capacity(cfg.n);
        let mut failures = Vec::new();
        let mut missing = 0u32;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let outcome = outcome.map_err(|_| DispersalError::Internal(format!("writer of shard {i} panicked")))?;
            if outcome.hashes.len() as u64 != layout.stripes {
                return Err(DispersalError::Internal(format!("shard {i} hashed {} stripes", outcome.hashes.len())));
            }
            for (s, h) in outcome.hashes.into_iter().enumerate() {
                hashes[s * cfg.n + i] = h;
            }
            match outcome.result {
                Ok(p) => pending.push(Some(p)),
                Err(e) => {
                    failures.push(e.to_string());
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
        };
        Ok((value, WrittenObject { manifest, pending, failures }))
    }

    /// Commits the shards of `objects` in one group per node (parallel over
    /// nodes) and applies the write quorum. An object below quorum gets an
    /// error and its shards are removed again.
    pub fn sync(&self, objects: &mut [&mut WrittenObject]) -> Vec<Result<(), DispersalError>> {
        let mut by_node: HashMap<String, Vec<(usize, usize, Box<dyn PendingShard>)>> = HashMap::new();
        for (o, obj) in objects.iter_mut().enumerate() {
            for (i, p) in obj.pending.iter_mut().enumerate() {
                if let Some(p) = p.take() {
                    by_node.entry(obj.manifest.placement[i].clone()).or_default().push((o, i, p));
                }
            }
        }
        let results: Vec<(Vec<(usize, usize)>, Vec<Result<(), NodeError>>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_node
                .into_iter()
                .map(|(name, items)| {
                    let node = self.node(&name).cloned();
                    scope.spawn(move || {
                        let idx: Vec<(usize, usize)> = items.iter().map(|(o, i, _)| (*o, *i)).collect();
                        let shards: Vec<Box<dyn PendingShard>> = items.into_iter().map(|(_, _, p)| p).collect();
                        let res = match node {
                            Some(node) => node.commit(shards),
                            None => idx
                                .iter()
                                .map(|_| {
                                    Err(NodeError::new(
                                        &name,
                                        "commit shard",
                                        None,
                                        crate::node::NodeErrorKind::Offline("node not configured".into()),
                                    ))
                                })
                                .collect(),
                        };
                        (idx, res)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .collect()
        });
        let mut committed = vec![0u32; objects.len()];
        for (idx, res) in results {
            for ((o, i), r) in idx.into_iter().zip(res) {
                match r {
                    Ok(()) => committed[o] |= 1 << i,
                    Err(e) => objects[o].failures.push(e.to_string()),
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
                    detail: obj.failures.join("; "),
                })
            })
            .collect()
    }

    /// Records manifests and backup records of committed objects, durably.
    pub fn publish(&self, items: &[(&Manifest, &[u8])]) -> Result<(), DispersalError> {
        self.store.publish(items)
    }

    /// Failures seen while writing an object (for the debt message).
    pub fn failures(obj: &WrittenObject) -> &[String] {
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
                && let Err(e) = node.delete(ShardKey { object: manifest.id, index: i as u8 })
            {
                errors.push(e);
            }
        }
        errors
    }

    /// Destroys objects: backup records first (with the local shares gone
    /// the shards are then undecryptable), then the shards, then the
    /// manifests. Returns the node errors of shards left behind as orphans.
    pub fn destroy_many(&self, ids: &[ObjectId]) -> Result<Vec<NodeError>, DispersalError> {
        self.store.remove_backups(ids)?;
        let mut errors = Vec::new();
        for id in ids {
            if let Some(m) = self.store.manifest(id)? {
                errors.extend(self.remove_shards(&m, u32::MAX));
            }
        }
        self.store.remove_manifests(ids)?;
        Ok(errors)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
