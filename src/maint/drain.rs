//! `qsfs node drain`: move every shard off a node by verified transfer
//! (migrate.rs), then ask the node what it still holds (the deletion check
//! of seed 002).
//!
//! The node is marked draining first (in memory and in `qsfs.toml`), so new
//! writes stop choosing it. Writes that chose it just before may still
//! publish afterwards, so passes repeat until one finds no manifest placing
//! a shard there and no object in flight with a shard file there.
//!
//! What the deletion check proves: the node computed a root over the shard
//! files it keeps for this vault, with a fresh nonce, and it equals the
//! root over what it should keep (nothing, apart from objects still being
//! written). It cannot prove the node kept no copy elsewhere; qsfs's real
//! guarantee against kept copies is that a shard alone, or any `n` of them,
//! is undecryptable once a file's `R1`, `R2` and `B` are destroyed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::migrate::{MoveOutcome, ShardMove};
use super::{Progress, ProgressFn};
use crate::ObjectId;
use crate::node::{Listing, ShardKey, StoredShard, proof::holdings_root};
use crate::vault::{Vault, VaultError};

/// Most passes over the manifests in one drain.
const MAX_PASSES: u32 = 16;
/// Longest wait for objects in flight with a shard file on the node.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(60);
/// Attempts per shard when its object keeps changing underneath.
const MOVE_ATTEMPTS: usize = 8;

/// `qsfs node drain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainOptions {
    /// The node to empty.
    pub node: String,
}

/// What a node still holds after it was emptied, checked by a root over
/// its holdings (see the module comment for what that proves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionCheck {
    /// The node.
    pub node: String,
    /// Shard files the node says it holds for the vault.
    pub held: u64,
    /// Shard files it should hold (objects in flight, failed moves).
    pub expected: u64,
    /// The node's root over its holdings equals the root over `expected`.
    pub matches: bool,
    /// Shards of objects still being written (`object.index`).
    pub in_flight: Vec<String>,
    /// Shards the manifests still place there (their move failed).
    pub still_placed: Vec<String>,
    /// Shards found there that should not be (`object.index`).
    pub leftovers: Vec<String>,
    /// Unreferenced shards removed before the check (sources whose
    /// deletion had failed, orphans of interrupted writes).
    pub stale_removed: u64,
    /// Why the node could not be asked, if it could not.
    pub error: Option<String>,
}

impl DeletionCheck {
    /// The node holds nothing for the vault, and says so.
    pub fn empty(&self) -> bool {
        self.error.is_none() && self.matches && self.held == 0
    }

    /// The node holds exactly what it should (nothing but objects in flight).
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.matches && self.still_placed.is_empty()
    }
}

/// What a drain did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrainReport {
    /// The node drained.
    pub node: String,
    /// Passes over the manifests.
    pub passes: u32,
    /// Shards moved off the node.
    pub shards_moved: u64,
    /// Chunks copied after they verified.
    pub chunks_copied: u64,
    /// Chunks rebuilt from other shards (bad or unreadable at the source).
    pub chunks_rebuilt: u64,
    /// Bytes read from nodes.
    pub bytes_read: u64,
    /// Bytes written to the targets.
    pub bytes_written: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// Every shard moved.
    pub moves: Vec<ShardMove>,
    /// Shards that could not be moved, with the file and the reason.
    pub failures: Vec<String>,
    /// The node's holdings afterwards.
    pub deletion: DeletionCheck,
}

impl DrainReport {
    /// True when every shard moved and the node holds nothing it should not.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.deletion.clean()
    }

    pub(super) fn add(&mut self, mv: ShardMove) {
        self.shards_moved += 1;
        self.chunks_copied += mv.copied;
        self.chunks_rebuilt += mv.rebuilt;
        self.bytes_read += mv.bytes_read;
        self.bytes_written += mv.bytes_written;
        self.moves.push(mv);
    }
}

/// `object.index` of a shard, as reports show it.
fn shard_name(key: &ShardKey) -> String {
    format!("{}.{}", key.object, key.index)
}

/// Objects named by a node's listing: its shard files and the temporary
/// files of writes not yet committed (`.<object>.<i>.<tag>.tmp`).
fn listed_objects(listing: &Listing) -> BTreeSet<ObjectId> {
    let mut out: BTreeSet<ObjectId> = listing.shards.iter().map(|s| s.key.object).collect();
    for p in &listing.leftovers {
        if let Some(id) = p
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.trim_start_matches('.').split('.').next())
            .and_then(ObjectId::from_hex)
        {
            out.insert(id);
        }
    }
    out
}

impl Vault {
    /// Moves every shard off node `opts.node` and checks that it holds
    /// nothing afterwards. Safe while the vault is mounted and written.
    pub fn drain(
        &self,
        opts: &DrainOptions,
        progress: ProgressFn<'_>,
    ) -> Result<DrainReport, VaultError> {
        let start = Instant::now();
        let name = opts.node.as_str();
        let Some(node) = self.dispersal().node(name).cloned() else {
            return Err(self.unknown_node(name));
        };
        let n = self.config().n;
        let others = self
            .dispersal()
            .nodes()
            .iter()
            .filter(|o| o.name() != name && !self.dispersal().is_draining(o.name()))
            .count();
        if others < n {
            return Err(VaultError::Config {
                file: self.root().join("qsfs.toml"),
                detail: format!(
                    "cannot drain {name}: {others} other nodes would be left, but every file needs n = {n} \
                     different nodes; add a node first: qsfs node add {} NAME --dir PATH",
                    self.root().display()
                ),
            });
        }
        self.dispersal().set_draining(name, true);
        super::nodes::edit_config(self.root(), |c| {
            if let Some(e) = c.nodes.iter_mut().find(|e| e.name == name) {
                e.draining = true;
            }
            Ok(())
        })?;
        let mut report = DrainReport {
            node: name.to_string(),
            ..Default::default()
        };
        let mut failed: BTreeMap<(ObjectId, usize), String> = BTreeMap::new();
        let waiting_since = Instant::now();
        while report.passes < MAX_PASSES {
            let work = self.placed_on(name)?;
            if work.is_empty() {
                // Writes that chose this node before it was flagged may
                // still publish: wait for objects in flight with files here.
                let flight = self.intents().in_flight();
                let busy = node
                    .list()
                    .map(|l| listed_objects(&l).iter().any(|o| flight.contains(o)))
                    .unwrap_or(false);
                if busy && waiting_since.elapsed() < IN_FLIGHT_WAIT {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                break;
            }
            report.passes += 1;
            let total: u64 = work.iter().map(|w| w.2).sum();
            progress(Progress::Phase {
                name: format!("drain {name}"),
                total,
            });
            let mut progressed = false;
            for (id, index, len) in work {
                match self.drain_one(id, index, name) {
                    Ok(moved) => {
                        progressed = true;
                        failed.remove(&(id, index));
                        if let Some(mv) = moved {
                            if let Some(why) = &mv.source_left {
                                progress(Progress::Note {
                                    text: format!(
                                        "shard {}.{} moved to {}, but {name} kept its copy ({why}); removed at the end",
                                        mv.object, mv.index, mv.to
                                    ),
                                });
                            }
                            report.add(mv);
                        }
                    }
                    Err(why) => {
                        progress(Progress::Note { text: why.clone() });
                        failed.insert((id, index), why);
                    }
                }
                progress(Progress::Advance { bytes: len });
            }
            if !progressed {
                break;
            }
        }
        self.settle_moved(&report.moves);
        if !failed.is_empty() {
            let paths = self.object_paths().unwrap_or_default();
            report.failures = failed
                .into_iter()
                .map(|((id, i), why)| match paths.get(&id) {
                    Some(p) => format!("{p} (object {id}, shard {i}): {why}"),
                    None => format!("object {id}, shard {i}: {why}"),
                })
                .collect();
        }
        let stale_removed = self.remove_stale(name);
        report.deletion = self.check_drained(name)?;
        report.deletion.stale_removed = stale_removed;
        report.elapsed_secs = start.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The error for a node name not in the config.
    pub(super) fn unknown_node(&self, name: &str) -> VaultError {
        VaultError::Config {
            file: self.root().join("qsfs.toml"),
            detail: format!(
                "no node named {name:?} (nodes: {})",
                self.dispersal()
                    .nodes()
                    .iter()
                    .map(|n| n.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// (object, shard index, shard bytes) of every shard the manifests
    /// place on `name`, present or recorded missing.
    fn placed_on(&self, name: &str) -> Result<Vec<(ObjectId, usize, u64)>, VaultError> {
        let mut out = Vec::new();
        for m in self.dispersal().store().manifests() {
            let m = m?;
            for (i, p) in m.placement.iter().enumerate() {
                if p == name {
                    out.push((m.id, i, m.layout.shard_len()));
                }
            }
        }
        Ok(out)
    }

    /// Moves shard `index` of `id` off `name` to a spare node, re-reading
    /// the manifest when it changed meanwhile. `Ok(None)`: nothing to do
    /// any more (the object was deleted, or the shard is elsewhere now).
    fn drain_one(
        &self,
        id: ObjectId,
        index: usize,
        name: &str,
    ) -> Result<Option<ShardMove>, String> {
        for _ in 0..MOVE_ATTEMPTS {
            let m = match self.dispersal().store().manifest(&id) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            if m.placement.get(index).map(String::as_str) != Some(name) {
                return Ok(None);
            }
            let Some(target) = self.dispersal().spare_node(&m, &[]) else {
                return Err(format!(
                    "no node can take shard {index} of object {id}: every other healthy node that is not \
                     draining already holds one of its shards; add a node (qsfs node add) and drain again"
                ));
            };
            match self.move_shard(&m, index, &target) {
                Ok(MoveOutcome::Moved(mv)) => return Ok(Some(mv)),
                Ok(MoveOutcome::Stale) => continue,
                Ok(MoveOutcome::Gone) => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "shard {index} to {}: {e}; then drain {name} again",
                        target.name()
                    ));
                }
            }
        }
        Err(format!(
            "object {id} kept changing while shard {index} was being moved; drain again"
        ))
    }

    /// Removes shard files on `name` that nothing refers to: no manifest
    /// places them there and their object is not in flight. Returns how
    /// many went. The node is listed before intents and manifests are read,
    /// so a write that starts meanwhile is never mistaken for garbage.
    fn remove_stale(&self, name: &str) -> u64 {
        let Some(node) = self.dispersal().node(name) else {
            return 0;
        };
        let Ok(listing) = node.list() else {
            return 0;
        };
        let flight = self.intents().in_flight();
        let mut removed = 0;
        for s in &listing.shards {
            if flight.contains(&s.key.object) {
                continue;
            }
            let placed_here = match self.dispersal().store().manifest(&s.key.object) {
                Ok(Some(m)) => {
                    m.placement.get(s.key.index as usize).map(String::as_str) == Some(name)
                }
                Ok(None) => false,
                // A damaged manifest: leave its shards to fsck.
                Err(_) => true,
            };
            if !placed_here {
                match node.delete(s.key) {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        removed
    }

    /// The deletion check of a drained node: the node's root over what it
    /// holds, under a fresh nonce, against the root over what it should
    /// hold (shards of objects in flight, and shards the manifests still
    /// place there because their move failed).
    pub fn check_drained(&self, name: &str) -> Result<DeletionCheck, VaultError> {
        let Some(node) = self.dispersal().node(name) else {
            return Err(self.unknown_node(name));
        };
        let mut check = DeletionCheck {
            node: name.to_string(),
            ..Default::default()
        };
        // List first, then intents, then manifests (see remove_stale).
        let listing = match node.list() {
            Ok(l) => l,
            Err(e) => {
                check.error = Some(e.to_string());
                return Ok(check);
            }
        };
        let flight = self.intents().in_flight();
        let mut expected: Vec<StoredShard> = Vec::new();
        for s in &listing.shards {
            if flight.contains(&s.key.object) {
                check.in_flight.push(shard_name(&s.key));
                expected.push(s.clone());
            } else if match self.dispersal().store().manifest(&s.key.object) {
                Ok(m) => m.is_some_and(|m| {
                    m.placement.get(s.key.index as usize).map(String::as_str) == Some(name)
                }),
                // A damaged manifest: its shards stay, counted as placed.
                Err(_) => true,
            } {
                check.still_placed.push(shard_name(&s.key));
                expected.push(s.clone());
            }
        }
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)
            .map_err(|e| VaultError::Internal(format!("OS random source failed: {e}")))?;
        let held = match node.holdings(&nonce) {
            Ok(h) => h,
            Err(e) => {
                check.error = Some(e.to_string());
                return Ok(check);
            }
        };
        let keys: BTreeSet<ShardKey> = expected.iter().map(|s| s.key).collect();
        let want = holdings_root(&nonce, &mut expected);
        check.held = held.count;
        check.expected = want.count;
        check.matches = held == want;
        if !check.matches {
            // Name what is there that should not be (a fresh listing: the
            // holdings were computed after the first one).
            let now = node.list().map(|l| l.shards).unwrap_or(listing.shards);
            check.leftovers = now
                .iter()
                .filter(|s| !keys.contains(&s.key))
                .map(|s| shard_name(&s.key))
                .collect();
        }
        Ok(check)
    }
}
