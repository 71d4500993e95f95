//! `qsfs rebalance`: spread shards evenly over the nodes after one was
//! added, drain the nodes marked draining, and separate shards of one
//! object that share a node. Every move is a verified transfer
//! (migrate.rs); the plan itself is pure ([`plan`]) and is checked against
//! the current manifest before each move, so concurrent writes, repairs
//! and deletes only make it skip a step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::drain::{DrainOptions, DrainReport};
use super::migrate::{MoveOutcome, ShardMove};
use super::{Progress, ProgressFn};
use crate::ObjectId;
use crate::node::{Node, NodeHealth};
use crate::vault::{Vault, VaultError};

/// What "even" means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalanceBy {
    /// Same number of shards per node, within one.
    #[default]
    Shards,
    /// Same number of bytes per node, within one shard's size.
    Bytes,
}

/// `qsfs rebalance`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RebalanceOptions {
    /// Count shards or bytes.
    pub by: BalanceBy,
    /// Stop after this many balancing moves (drains and duplicate fixes
    /// are not counted).
    pub max_moves: Option<u64>,
}

/// Shards and bytes on one node, per the manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// The node.
    pub node: String,
    /// Shards placed there.
    pub shards: u64,
    /// Their bytes (payload).
    pub bytes: u64,
}

/// What a rebalance did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RebalanceReport {
    /// Drains of nodes marked draining.
    pub drained: Vec<DrainReport>,
    /// Shards moved because their object had another shard on that node.
    pub duplicates_fixed: u64,
    /// Every move of the balancing and duplicate phases.
    pub moves: Vec<ShardMove>,
    /// Chunks copied after they verified (all phases).
    pub chunks_copied: u64,
    /// Chunks rebuilt from other shards (all phases).
    pub chunks_rebuilt: u64,
    /// Bytes written to targets (all phases).
    pub bytes_written: u64,
    /// Planned moves skipped because the object changed meanwhile.
    pub skipped: u64,
    /// Load per node before.
    pub before: Vec<NodeLoad>,
    /// Load per node after.
    pub after: Vec<NodeLoad>,
    /// What failed, with the file and the reason.
    pub failures: Vec<String>,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

impl RebalanceReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.drained.iter().all(DrainReport::ok)
    }

    fn add(&mut self, mv: ShardMove) {
        self.chunks_copied += mv.copied;
        self.chunks_rebuilt += mv.rebuilt;
        self.bytes_written += mv.bytes_written;
        self.moves.push(mv);
    }
}

/// Where one object's shards are, for planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The object.
    pub id: ObjectId,
    /// Node of shard `i`.
    pub placement: Vec<String>,
    /// Bytes of one shard.
    pub shard_bytes: u64,
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// Index into the holdings.
    pub object: usize,
    /// Shard index.
    pub index: usize,
    /// From this node.
    pub from: String,
    /// To this node.
    pub to: String,
}

/// Plans moves among the `eligible` nodes until the fullest and the
/// emptiest differ by at most one shard (or one shard's bytes), never
/// putting a shard on a node that already holds one of its object's. A move
/// goes from a fullest node to the emptiest that can take one of its shards,
/// and only when it narrows that pair's gap. Shards on other nodes stay.
pub fn plan(
    holdings: &[Holding],
    eligible: &[String],
    by: BalanceBy,
    max_moves: usize,
) -> Vec<PlannedMove> {
    let weight = |h: &Holding| match by {
        BalanceBy::Shards => 1u64,
        BalanceBy::Bytes => h.shard_bytes.max(1),
    };
    let mut placement: Vec<Vec<String>> = holdings.iter().map(|h| h.placement.clone()).collect();
    let mut load: BTreeMap<&str, u64> = eligible.iter().map(|e| (e.as_str(), 0)).collect();
    // Shards per node: (object, index).
    let mut on: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (o, h) in holdings.iter().enumerate() {
        for (i, p) in h.placement.iter().enumerate() {
            if let Some(l) = load.get_mut(p.as_str()) {
                *l += weight(h);
                on.entry(eligible_name(eligible, p))
                    .or_default()
                    .push((o, i));
            }
        }
    }
    let mut moves = Vec::new();
    'outer: while moves.len() < max_moves {
        let mut order: Vec<(&str, u64)> = load.iter().map(|(k, v)| (*k, *v)).collect();
        order.sort_by_key(|(name, l)| (*l, *name));
        for &(full, full_load) in order.iter().rev() {
            for &(empty, empty_load) in &order {
                if empty_load >= full_load {
                    break;
                }
                let gap = full_load - empty_load;
                let list = on.get(full).map(Vec::as_slice).unwrap_or(&[]);
                let found = list.iter().position(|&(o, _)| {
                    weight(&holdings[o]) < gap && !placement[o].iter().any(|p| p == empty)
                });
                if let Some(pos) = found {
                    let (o, i) = on
                        .get_mut(full)
                        .map(|v| v.swap_remove(pos))
                        .unwrap_or((0, 0));
                    let w = weight(&holdings[o]);
                    placement[o][i] = empty.to_string();
                    on.entry(empty).or_default().push((o, i));
                    if let Some(l) = load.get_mut(full) {
                        *l -= w;
                    }
                    if let Some(l) = load.get_mut(empty) {
                        *l += w;
                    }
                    moves.push(PlannedMove {
                        object: o,
                        index: i,
                        from: full.to_string(),
                        to: empty.to_string(),
                    });
                    continue 'outer;
                }
            }
        }
        break;
    }
    moves
}

/// The `&str` of `name` that lives in `eligible` (for map keys).
fn eligible_name<'a>(eligible: &'a [String], name: &str) -> &'a str {
    eligible
        .iter()
        .find(|e| *e == name)
        .map(String::as_str)
        .unwrap_or("")
}

impl Vault {
    /// Drains nodes marked draining, separates shards of one object that
    /// share a node, then evens out the load over the healthy nodes that
    /// are not draining. Safe while the vault is mounted and written.
    pub fn rebalance(
        &self,
        opts: &RebalanceOptions,
        progress: ProgressFn<'_>,
    ) -> Result<RebalanceReport, VaultError> {
        let start = Instant::now();
        let mut report = RebalanceReport {
            before: self.loads()?,
            ..Default::default()
        };
        // 1. Nodes marked draining.
        let draining: Vec<String> = self
            .dispersal()
            .nodes()
            .iter()
            .filter(|n| self.dispersal().is_draining(n.name()))
            .map(|n| n.name().to_string())
            .collect();
        for name in draining {
            match self.drain(&DrainOptions { node: name.clone() }, progress) {
                Ok(r) => report.drained.push(r),
                Err(e) => report.failures.push(format!("drain {name}: {e}")),
            }
        }
        let mut failed: Vec<(ObjectId, String)> = Vec::new();
        // 2. Two shards of one object on one node.
        let mut dups: Vec<(ObjectId, usize, u64)> = Vec::new();
        for m in self.dispersal().store().manifests() {
            let m = m?;
            for j in 0..m.layout.n {
                if m.placement[..j].contains(&m.placement[j]) {
                    dups.push((m.id, j, m.layout.shard_len()));
                }
            }
        }
        if !dups.is_empty() {
            progress(Progress::Phase {
                name: "separate shards".into(),
                total: dups.iter().map(|d| d.2).sum(),
            });
        }
        for (id, j, len) in dups {
            match self.separate(id, j) {
                Ok(Some(mv)) => {
                    report.duplicates_fixed += 1;
                    report.add(mv);
                }
                Ok(None) => report.skipped += 1,
                Err(why) => failed.push((id, why)),
            }
            progress(Progress::Advance { bytes: len });
        }
        // 3. Even out.
        let eligible: Vec<Arc<dyn Node>> = self
            .dispersal()
            .nodes()
            .iter()
            .filter(|n| !self.dispersal().is_draining(n.name()) && n.health() == NodeHealth::Ok)
            .cloned()
            .collect();
        let names: Vec<String> = eligible.iter().map(|n| n.name().to_string()).collect();
        let mut holdings = Vec::new();
        for m in self.dispersal().store().manifests() {
            let m = m?;
            holdings.push(Holding {
                id: m.id,
                placement: m.placement.clone(),
                shard_bytes: m.layout.shard_len(),
            });
        }
        let max = opts.max_moves.map_or(usize::MAX, |m| m as usize);
        let planned = plan(&holdings, &names, opts.by, max);
        if !planned.is_empty() {
            progress(Progress::Phase {
                name: "rebalance".into(),
                total: planned.iter().map(|p| holdings[p.object].shard_bytes).sum(),
            });
        }
        for p in &planned {
            let h = &holdings[p.object];
            let target = eligible.iter().find(|n| n.name() == p.to);
            match target.map(|t| self.move_planned(h.id, p, t)) {
                Some(Ok(Some(mv))) => report.add(mv),
                Some(Ok(None)) => report.skipped += 1,
                Some(Err(why)) => failed.push((h.id, why)),
                None => report.skipped += 1,
            }
            progress(Progress::Advance {
                bytes: h.shard_bytes,
            });
        }
        self.settle_moved(&report.moves);
        if !failed.is_empty() {
            let paths = self.object_paths().unwrap_or_default();
            report
                .failures
                .extend(failed.into_iter().map(|(id, why)| match paths.get(&id) {
                    Some(p) => format!("{p} (object {id}): {why}"),
                    None => format!("object {id}: {why}"),
                }));
        }
        report.after = self.loads()?;
        report.elapsed_secs = start.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Shards and bytes per configured node, per the manifests.
    fn loads(&self) -> Result<Vec<NodeLoad>, VaultError> {
        let mut per: HashMap<String, (u64, u64)> = HashMap::new();
        for m in self.dispersal().store().manifests() {
            let m = m?;
            for p in &m.placement {
                let e = per.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 += m.layout.shard_len();
            }
        }
        Ok(self
            .dispersal()
            .nodes()
            .iter()
            .map(|n| {
                let (shards, bytes) = per.get(n.name()).copied().unwrap_or_default();
                NodeLoad {
                    node: n.name().to_string(),
                    shards,
                    bytes,
                }
            })
            .collect())
    }

    /// Moves shard `j` of `id` to a node holding none of its shards, if it
    /// still shares its node with an earlier shard.
    fn separate(&self, id: ObjectId, j: usize) -> Result<Option<ShardMove>, String> {
        for _ in 0..8 {
            let m = match self.dispersal().store().manifest(&id) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            if !m.placement[..j].contains(&m.placement[j]) {
                return Ok(None);
            }
            let Some(target) = self.dispersal().spare_node(&m, &[]) else {
                return Err(format!(
                    "shards {j} and another share node {}, and no other healthy node is free to take one; \
                     add a node (qsfs node add) and rebalance again",
                    m.placement[j]
                ));
            };
            match self.move_shard(&m, j, &target) {
                Ok(MoveOutcome::Moved(mv)) => return Ok(Some(mv)),
                Ok(MoveOutcome::Stale) => continue,
                Ok(MoveOutcome::Gone) => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "shard {j} to {}: {e}; then run `qsfs rebalance` again",
                        target.name()
                    ));
                }
            }
        }
        Err(format!("kept changing while shard {j} was being moved"))
    }

    /// Carries out one planned move if the object is still as planned.
    fn move_planned(
        &self,
        id: ObjectId,
        p: &PlannedMove,
        target: &Arc<dyn Node>,
    ) -> Result<Option<ShardMove>, String> {
        let m = match self.dispersal().store().manifest(&id) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let as_planned = m.placement.get(p.index) == Some(&p.from)
            && !m.placement.contains(&p.to)
            && !self.dispersal().is_draining(&p.to);
        if !as_planned {
            return Ok(None);
        }
        match self.move_shard(&m, p.index, target) {
            Ok(MoveOutcome::Moved(mv)) => Ok(Some(mv)),
            Ok(MoveOutcome::Stale | MoveOutcome::Gone) => Ok(None),
            Err(e) => Err(format!(
                "shard {} to {}: {e}; then run `qsfs rebalance` again",
                p.index, p.to
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn holdings(objects: &[&[&str]]) -> Vec<Holding> {
        objects
            .iter()
            .enumerate()
            .map(|(o, p)| Holding {
                id: ObjectId([o as u8; 16]),
                placement: p.iter().map(std::string::ToString::to_string).collect(),
                shard_bytes: 100,
            })
            .collect()
    }

    fn apply(h: &mut [Holding], moves: &[PlannedMove]) {
        for m in moves {
            assert_eq!(h[m.object].placement[m.index], m.from);
            h[m.object].placement[m.index] = m.to.clone();
        }
    }

    fn counts(h: &[Holding], nodes: &[String]) -> Vec<u64> {
        nodes
            .iter()
            .map(|n| {
                h.iter()
                    .map(|x| x.placement.iter().filter(|p| *p == n).count() as u64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn new_node_gets_its_share_and_objects_stay_spread() {
        let nodes: Vec<String> = (0..6).map(|i| format!("node-{i}")).collect();
        let five = ["node-0", "node-1", "node-2", "node-3", "node-4"];
        let mut h = holdings(&[&five[..]; 12]);
        let moves = plan(&h, &nodes, BalanceBy::Shards, usize::MAX);
        apply(&mut h, &moves);
        let c = counts(&h, &nodes);
        assert_eq!(c.iter().sum::<u64>(), 60);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
        assert_eq!(moves.len(), 10, "only what is needed moves");
        for x in &h {
            let mut p = x.placement.clone();
            p.sort();
            p.dedup();
            assert_eq!(p.len(), 5, "two shards of one object on one node: {x:?}");
        }
    }

    #[test]
    fn balanced_stays_and_limits_hold() {
        let nodes: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
        let h = holdings(&[&["n0", "n1"], &["n1", "n2"], &["n2", "n0"]]);
        assert!(plan(&h, &nodes, BalanceBy::Shards, usize::MAX).is_empty());
        assert!(plan(&h, &nodes, BalanceBy::Bytes, usize::MAX).is_empty());
        let nodes: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
        let h = holdings(&[&["n0", "n1"], &["n0", "n1"], &["n0", "n1"]]);
        assert_eq!(plan(&h, &nodes, BalanceBy::Shards, 1).len(), 1);
        // Shards on a node outside the eligible set stay where they are.
        let two: Vec<String> = vec!["n2".into(), "n3".into()];
        assert!(plan(&h, &two, BalanceBy::Shards, usize::MAX).is_empty());
    }

    #[test]
    fn no_move_when_every_candidate_already_has_a_shard_there() {
        // Both objects have shards on both nodes: nothing can move.
        let nodes: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let h = holdings(&[&["a", "b", "c"], &["a", "b", "c"]]);
        assert!(plan(&h, &nodes, BalanceBy::Shards, usize::MAX).is_empty());
    }
}
