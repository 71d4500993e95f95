//! `qsfs audit`: proof of possession and the deletion check, per node.
//!
//! **What the possession audit proves.** Every shard written by this build
//! has a rank-based Merkle tree over its 8 KiB blocks (rmht.rs) whose root
//! is kept in the manifest, on the vault's side, never only on the node.
//! The auditor draws `S` blocks uniformly at random over all the blocks a
//! node should hold (with replacement, from the OS random generator), and
//! sends per shard a fresh random nonce and the block indices. The node
//! answers with those blocks and their authentication paths, computed
//! where the data is (a remote node server computes them on its machine,
//! so only the proof crosses the link). The auditor checks the nonce, the
//! leaf count, each block's length and each path against the root. A node
//! that passes held every challenged block, unaltered, at the moment it
//! answered (each audit draws fresh random blocks, so answers kept from
//! earlier audits cover only the blocks they held; the echoed nonce ties
//! an answer to its request), and hashes alone do not help (the blocks
//! themselves are checked).
//!
//! **The sampling bound.** A node that can no longer produce a fraction
//! `f` of its blocks passes one uniformly drawn sample with probability at
//! most `1 - f`, so it escapes `S` samples with probability at most
//! `(1 - f)^S` (reported for f = 1%, 5%, 10%; 1375 samples bring a 1% loss
//! below one in a million). That is exact for a node that kept the tree
//! hashes of what it discarded (the strongest cheater); a node that simply
//! lost or damaged bytes and rebuilds its tree from what it has fails every
//! challenged block of a damaged shard, so it is caught more often.
//!
//! **The deletion check** (seed 002's provable deletion). The node returns
//! a root over every shard it holds for the vault, salted with a fresh
//! nonce; the auditor computes the root over what the manifests place on
//! that node. Equal roots show that the node's store holds exactly those
//! shards at that moment: nothing deleted or migrated away is still in it.
//! When the roots differ, the node's listing names the differences. What
//! it cannot prove: a node can copy shards elsewhere (another disk, a
//! backup) and still answer with the root over the folder it serves. No
//! remote check can rule that out. qsfs's real guarantee for deleted files
//! is cryptographic: deleting a file destroys both key shares `R1`, `R2`
//! and the backup record `B`, so shards a node kept cannot be decrypted
//! (PROTOCOL.md), however many of them it kept.
//!
//! **Safe while mounted.** The audit only reads. The node's holdings are
//! taken before the manifests are read; every difference is re-checked
//! against the current manifest, the intent log and the node before it is
//! reported, so objects written, deleted, repaired or moved during the
//! audit are never reported as lost or kept. A node that is offline is
//! reported unreachable, never as having lost data.

mod deletion;
mod sample;
mod verify;

pub use deletion::{DeletionCheck, ShardDiff};
pub use sample::{escape_probability, samples_needed};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Progress, ProgressFn};
use crate::ObjectId;
use crate::dispersal::{DispersalError, Manifest};
use crate::node::proof::MAX_PROOF_BLOCKS;
use crate::node::{Challenge, Holdings, Node, NodeErrorKind, NodeHealth, ShardKey};
use crate::vault::{Vault, VaultError};
use sample::OsDraw;

/// Samples per node when none are given.
pub const DEFAULT_SAMPLES: u32 = 300;

/// Missing fractions the report gives escape odds for.
pub const DEFAULT_FRACTIONS: [f64; 3] = [0.01, 0.05, 0.10];

/// What to audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditOptions {
    /// Only this node (all nodes if `None`).
    pub node: Option<String>,
    /// Blocks challenged per node.
    pub samples: u32,
    /// Missing fractions to give escape odds for.
    pub fractions: Vec<f64>,
    /// Also run the deletion check.
    pub deletion_check: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            node: None,
            samples: DEFAULT_SAMPLES,
            fractions: DEFAULT_FRACTIONS.to_vec(),
            deletion_check: true,
        }
    }
}

/// The outcome for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every challenged block was proven (and the deletion check found no
    /// lost shard).
    Ok,
    /// Blocks or shards are lost or altered.
    Failed,
    /// The node could not be asked; nothing is known about its data.
    Unreachable,
}

impl Verdict {
    /// The words shown in the table.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "FAILED: lost or altered blocks",
            Verdict::Unreachable => "unreachable",
        }
    }
}

/// A shard whose challenged blocks failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailingShard {
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub index: u8,
    /// Samples on it that failed.
    pub blocks: u64,
    /// Why (the first reason seen).
    pub why: String,
}

/// Escape odds for one missing fraction.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct EscapeOdds {
    /// Fraction of its blocks a node cannot produce.
    pub missing_fraction: f64,
    /// Probability such a node passes this audit's samples.
    pub probability: f64,
}

/// One node's audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAudit {
    /// Node name.
    pub name: String,
    /// Folder or address.
    pub location: String,
    /// The outcome.
    pub verdict: Verdict,
    /// Why the node could not be asked.
    pub unreachable: Option<String>,
    /// Shards with audit roots the manifests place on it.
    pub shards: u64,
    /// Shards placed on it whose manifests have no audit roots yet.
    pub shards_without_roots: u64,
    /// Blocks in those shards (what the samples are drawn from).
    pub blocks: u64,
    /// Payload bytes in those shards.
    pub bytes_held: u64,
    /// Blocks challenged (samples, repeats counted).
    pub blocks_challenged: u64,
    /// Challenged blocks not proven.
    pub failed_blocks: u64,
    /// Shards with failed blocks.
    pub failing_shards: Vec<FailingShard>,
    /// Shards left out because their object was deleted, moved or
    /// repaired while it was being audited.
    pub changed_during_audit: u64,
    /// Bytes moved between auditor and node (challenges, proofs, the
    /// deletion check).
    pub bytes_moved: u64,
    /// Wall time of this node's audit.
    pub elapsed_ms: u64,
    /// Odds that a node missing each fraction of its blocks would have
    /// passed these samples.
    pub escape: Vec<EscapeOdds>,
    /// Samples a node would need to face for a 1% loss to escape with
    /// probability at most one in a million.
    pub samples_for_1e6_at_1pct: u64,
    /// The deletion check (None when skipped or the node is unreachable).
    pub deletion: Option<DeletionCheck>,
}

impl NodeAudit {
    /// True if the node holds shards it should not (deleted or moved).
    pub fn holds_extra(&self) -> bool {
        self.deletion.as_ref().is_some_and(|d| !d.extra.is_empty())
    }
}

/// Sums over the audited nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditTotals {
    /// Nodes audited.
    pub nodes: u64,
    /// Nodes that passed.
    pub nodes_ok: u64,
    /// Nodes with lost or altered data.
    pub nodes_failed: u64,
    /// Nodes that could not be asked.
    pub nodes_unreachable: u64,
    /// Nodes holding shards they should not.
    pub nodes_holding_extra: u64,
    /// Blocks challenged.
    pub blocks_challenged: u64,
    /// Blocks not proven.
    pub failed_blocks: u64,
    /// Bytes moved.
    pub bytes_moved: u64,
    /// Payload bytes the audited shards hold.
    pub bytes_held: u64,
    /// Wall time of the whole audit.
    pub elapsed_ms: u64,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    /// Per node, in config order.
    pub nodes: Vec<NodeAudit>,
    /// Objects (manifests) seen.
    pub objects: u64,
    /// Objects whose manifests carry no audit roots (sealed by an older
    /// build); their shards are not challenged.
    pub objects_without_roots: u64,
    /// Objects whose manifest could not be read (left out; see `qsfs fsck`).
    pub damaged_manifests: Vec<String>,
    /// Samples asked per node.
    pub samples: u32,
    /// Sums.
    pub totals: AuditTotals,
    /// What to do next, one line each.
    pub advice: Vec<String>,
}

impl AuditReport {
    /// True if some node lost data or holds shards it should not.
    pub fn found_problems(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.verdict == Verdict::Failed || n.holds_extra())
    }

    /// True if some node could not be audited.
    pub fn incomplete(&self) -> bool {
        self.nodes.iter().any(|n| {
            n.verdict == Verdict::Unreachable
                // Shards to prove but none could be challenged (objects
                // without audit roots): not a pass.
                || (n.shards + n.shards_without_roots > 0 && n.blocks_challenged == 0)
                // A deletion check that could not be finished.
                || n.deletion.as_ref().is_some_and(|d| d.error.is_some())
        })
    }
}

/// The vault's view the audit compares against, read after the nodes'
/// holdings were taken.
struct Snapshot {
    manifests: Vec<Manifest>,
    damaged: BTreeSet<ObjectId>,
}

/// Approximate wire size of a challenge (protocol op Prove).
fn challenge_bytes(c: &Challenge) -> u64 {
    1 + 17 + 32 + 4 + 4 + 8 * c.indices.len() as u64
}

/// Wire size of a holdings request and its answer.
const HOLDINGS_BYTES: u64 = 1 + 32 + 1 + 8 + 32;

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Vault {
    /// Audits the nodes (all, or `opts.node`): proof of possession of
    /// `opts.samples` random blocks per node, and the deletion check.
    /// Read-only and safe while the vault is mounted.
    pub fn audit(
        &self,
        opts: &AuditOptions,
        progress: ProgressFn<'_>,
    ) -> Result<AuditReport, VaultError> {
        let started = Instant::now();
        let nodes: Vec<Arc<dyn Node>> = match &opts.node {
            None => self.dispersal().nodes().to_vec(),
            Some(name) => match self.dispersal().node(name) {
                Some(n) => vec![Arc::clone(n)],
                None => {
                    let names: Vec<&str> =
                        self.dispersal().nodes().iter().map(|n| n.name()).collect();
                    return Err(VaultError::Config {
                        file: self.root().join("qsfs.toml"),
                        detail: format!(
                            "no node named {name:?}; the vault's nodes are {}",
                            names.join(", ")
                        ),
                    });
                }
            },
        };
        // 1. Health and holdings, before the manifests are read: a shard
        //    written meanwhile then shows up as expected-but-unlisted (and is
        //    re-checked), never as an unexplained extra.
        let pre: Vec<Pre> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|node| s.spawn(|| pre_check(node.as_ref(), opts.deletion_check)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Pre::unreachable("audit thread panicked".into()))
                })
                .collect()
        });
        let snap = self.snapshot()?;
        let with_roots = snap.manifests.iter().filter(|m| m.has_roots()).count() as u64;
        let reachable = pre.iter().filter(|p| p.unreachable.is_none()).count() as u64;
        progress(Progress::Phase {
            name: "audit".into(),
            total: reachable * opts.samples as u64 * crate::rmht::BLOCK as u64,
        });
        // 2. Per node, in parallel: challenges, then the deletion check.
        let audits: Vec<NodeAudit> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .zip(pre)
                .map(|(node, pre)| {
                    let snap = &snap;
                    s.spawn(move || self.audit_node(node.as_ref(), pre, snap, opts, progress))
                })
                .collect();
            handles
                .into_iter()
                .zip(&nodes)
                .map(|(h, node)| {
                    h.join().unwrap_or_else(|_| {
                        let mut a = empty_audit(node.as_ref(), opts);
                        a.verdict = Verdict::Unreachable;
                        a.unreachable = Some("audit thread panicked (a bug)".into());
                        a
                    })
                })
                .collect()
        });
        let mut totals = AuditTotals {
            nodes: audits.len() as u64,
            elapsed_ms: ms(started.elapsed()),
            ..Default::default()
        };
        for a in &audits {
            match a.verdict {
                Verdict::Ok => totals.nodes_ok += 1,
                Verdict::Failed => totals.nodes_failed += 1,
                Verdict::Unreachable => totals.nodes_unreachable += 1,
            }
            if a.holds_extra() {
                totals.nodes_holding_extra += 1;
            }
            totals.blocks_challenged += a.blocks_challenged;
            totals.failed_blocks += a.failed_blocks;
            totals.bytes_moved += a.bytes_moved;
            totals.bytes_held += a.bytes_held;
        }
        let objects = snap.manifests.len() as u64;
        let mut advice = Vec::new();
        if objects > with_roots {
            advice.push(format!(
                "{} objects have no audit roots (sealed by an older qsfs) and were not challenged; \
                 run `qsfs scrub --repair` to add audit roots",
                objects - with_roots
            ));
        }
        if totals.nodes_failed > 0 {
            advice.push(
                "lost or altered shards are rebuilt from the other nodes by `qsfs scrub --repair`"
                    .into(),
            );
        }
        if totals.nodes_holding_extra > 0 {
            advice.push(
                "a node holds shards of deleted or moved objects: without the destroyed keys they \
                 cannot be decrypted; `qsfs fsck --repair` removes them from a node you control"
                    .into(),
            );
        }
        if totals.nodes_unreachable > 0 {
            advice.push(
                "unreachable nodes were not audited: bring them back (mount the disk, start the \
                 node server) and audit again"
                    .into(),
            );
        }
        if !snap.damaged.is_empty() {
            advice.push(format!(
                "{} manifests could not be read and were left out; run `qsfs fsck`",
                snap.damaged.len()
            ));
        }
        Ok(AuditReport {
            nodes: audits,
            objects,
            objects_without_roots: objects - with_roots,
            damaged_manifests: snap
                .damaged
                .iter()
                .map(super::super::object_id::ObjectId::to_hex)
                .collect(),
            samples: opts.samples,
            totals,
            advice,
        })
    }

    /// Every manifest (damaged ones by id).
    fn snapshot(&self) -> Result<Snapshot, VaultError> {
        let mut manifests = Vec::new();
        let mut damaged = BTreeSet::new();
        for m in self.dispersal().store().manifests() {
            match m {
                Ok(m) => manifests.push(m),
                Err(DispersalError::Record { object, .. }) => {
                    damaged.insert(object);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Snapshot { manifests, damaged })
    }

    /// True if shard `index` of `m`'s object is still expected on `node`
    /// with the same content: its manifest is unchanged for that shard and
    /// the object is not being deleted (its `B` goes first). A failure on a
    /// shard that is no longer expected is a race, not a loss.
    fn still_expected(&self, m: &Manifest, index: usize, node: &str) -> bool {
        let Ok(Some(cur)) = self.dispersal().store().manifest(&m.id) else {
            return false;
        };
        let same = cur.placement.get(index).is_some_and(|p| p == node)
            && !cur.is_missing(index)
            && cur.roots.get(index) == m.roots.get(index)
            && cur.layout == m.layout;
        same && matches!(self.dispersal().store().backup(&m.id), Ok(Some(_)))
    }

    fn audit_node(
        &self,
        node: &dyn Node,
        pre: Pre,
        snap: &Snapshot,
        opts: &AuditOptions,
        progress: ProgressFn<'_>,
    ) -> NodeAudit {
        let started = Instant::now();
        let mut a = empty_audit(node, opts);
        let name = node.name();
        let mine: Vec<(&Manifest, usize)> = snap
            .manifests
            .iter()
            .flat_map(|m| m.shards_on(name).map(move |i| (m, i)))
            .collect();
        let audited: Vec<(&Manifest, usize)> = mine
            .iter()
            .copied()
            .filter(|(m, _)| m.has_roots())
            .collect();
        a.shards = audited.len() as u64;
        a.shards_without_roots = (mine.len() - audited.len()) as u64;
        a.blocks = audited.iter().map(|(m, _)| m.leaves()).sum();
        a.bytes_held = audited.iter().map(|(m, _)| m.layout.shard_len()).sum();
        a.bytes_moved = pre.bytes;
        if let Some(why) = pre.unreachable {
            a.verdict = Verdict::Unreachable;
            a.unreachable = Some(why);
            a.elapsed_ms = ms(pre.elapsed + started.elapsed());
            return a;
        }
        match self.challenge_node(node, &audited, opts, progress, &mut a) {
            Ok(()) => {}
            Err(why) => {
                // Blocks that already failed stay failed: going offline
                // mid-audit hides nothing.
                a.verdict = if a.failed_blocks > 0 {
                    Verdict::Failed
                } else {
                    Verdict::Unreachable
                };
                a.unreachable = Some(why);
                a.elapsed_ms = ms(pre.elapsed + started.elapsed());
                return a;
            }
        }
        a.escape = opts
            .fractions
            .iter()
            .map(|&f| EscapeOdds {
                missing_fraction: f,
                probability: escape_probability(f, a.blocks_challenged),
            })
            .collect();
        if let Some(h) = pre.holdings {
            let check = self.deletion_check(node, &h, &pre.nonce, snap, &mine);
            a.bytes_moved += check.bytes;
            a.deletion = Some(check.report);
        }
        let lost_shards = a
            .deletion
            .as_ref()
            .is_some_and(|d| !d.missing.is_empty() || !d.wrong_size.is_empty());
        a.verdict = if a.failed_blocks > 0 || lost_shards {
            Verdict::Failed
        } else {
            Verdict::Ok
        };
        a.elapsed_ms = ms(pre.elapsed + started.elapsed());
        a
    }

    /// Draws the samples and challenges `node` shard by shard, filling
    /// the counts of `a`. `Err` with the reason when the node went offline.
    fn challenge_node(
        &self,
        node: &dyn Node,
        audited: &[(&Manifest, usize)],
        opts: &AuditOptions,
        progress: ProgressFn<'_>,
        a: &mut NodeAudit,
    ) -> Result<(), String> {
        let name = node.name();
        let mut rng = OsDraw::new();
        let leaves: Vec<u64> = audited.iter().map(|(m, _)| m.leaves()).collect();
        let draws = sample::draw(&leaves, opts.samples, |n| rng.below(n))
            .map_err(|e| format!("cannot draw challenges: {e}"))?;
        for ((m, i), drawn) in audited.iter().zip(draws) {
            if drawn.is_empty() {
                continue;
            }
            let key = ShardKey {
                object: m.id,
                index: *i as u8,
            };
            // Each distinct block is asked once; repeats count as samples.
            let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
            for idx in drawn {
                *counts.entry(idx).or_default() += 1;
            }
            let want = verify::Expected {
                root: &m.roots[*i],
                leaves: m.leaves(),
                block: m.block,
                shard_len: m.layout.shard_len(),
            };
            let unique: Vec<u64> = counts.keys().copied().collect();
            let mut failed = 0u64;
            let mut first_why: Option<String> = None;
            let mut moved = 0u64;
            for part in unique.chunks(MAX_PROOF_BLOCKS) {
                let mut nonce = [0u8; 32];
                rng.fill(&mut nonce)
                    .map_err(|e| format!("cannot draw a nonce: {e}"))?;
                let c = Challenge {
                    nonce,
                    block: m.block,
                    indices: part.to_vec(),
                };
                moved += challenge_bytes(&c);
                let verdicts: Vec<Option<String>> = match node.prove(key, &c) {
                    Ok(p) => {
                        moved += p.wire_bytes();
                        verify::judge(&want, &c, &p)
                    }
                    Err(e) => match (&e.kind, e.kind.unreachable()) {
                        // A node server that answers the challenge with a
                        // protocol error is failing the audit, not away (a
                        // dropped link stays "unreachable": exit 2, never a
                        // pass).
                        (NodeErrorKind::Protocol(_), Some(why)) => {
                            vec![Some(format!("the node refused to prove: {why}")); part.len()]
                        }
                        (_, Some(why)) => {
                            a.bytes_moved += moved;
                            return Err(why);
                        }
                        (NodeErrorKind::NotFound, _) => {
                            vec![Some("shard not found on the node".into()); part.len()]
                        }
                        (other, _) => vec![Some(other.to_string()); part.len()],
                    },
                };
                let asked: u64 = part.iter().filter_map(|i| counts.get(i)).sum();
                progress(Progress::Advance {
                    bytes: asked * m.block as u64,
                });
                for (idx, v) in part.iter().zip(verdicts) {
                    if let Some(why) = v {
                        failed += counts.get(idx).copied().unwrap_or(1);
                        first_why.get_or_insert(why);
                    }
                }
            }
            a.bytes_moved += moved;
            let samples: u64 = counts.values().sum();
            if failed > 0 && !self.still_expected(m, *i, name) {
                // Deleted, moved or repaired while we asked: not the node's fault.
                a.changed_during_audit += 1;
                continue;
            }
            a.blocks_challenged += samples;
            if failed > 0 {
                a.failed_blocks += failed;
                let why = first_why.unwrap_or_default();
                progress(Progress::Note {
                    text: format!(
                        "{name}: shard {} of object {}: {failed} of {samples} challenged blocks failed: {why}",
                        i, m.id
                    ),
                });
                a.failing_shards.push(FailingShard {
                    object: m.id.to_hex(),
                    index: *i as u8,
                    blocks: failed,
                    why,
                });
            }
        }
        Ok(())
    }
}

/// A node's audit before any challenge: its name and the odds of zero samples.
fn empty_audit(node: &dyn Node, opts: &AuditOptions) -> NodeAudit {
    NodeAudit {
        name: node.name().to_string(),
        location: node.location(),
        verdict: Verdict::Ok,
        unreachable: None,
        shards: 0,
        shards_without_roots: 0,
        blocks: 0,
        bytes_held: 0,
        blocks_challenged: 0,
        failed_blocks: 0,
        failing_shards: Vec::new(),
        changed_during_audit: 0,
        bytes_moved: 0,
        elapsed_ms: 0,
        escape: opts
            .fractions
            .iter()
            .map(|&f| EscapeOdds {
                missing_fraction: f,
                probability: 1.0,
            })
            .collect(),
        samples_for_1e6_at_1pct: samples_needed(0.01, 1e-6),
        deletion: None,
    }
}

/// What was learned from a node before the manifests were read.
struct Pre {
    unreachable: Option<String>,
    holdings: Option<Holdings>,
    nonce: [u8; 32],
    bytes: u64,
    elapsed: Duration,
}

impl Pre {
    fn unreachable(why: String) -> Pre {
        Pre {
            unreachable: Some(why),
            holdings: None,
            nonce: [0; 32],
            bytes: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// Health, then (if asked) the holdings root under a fresh nonce.
fn pre_check(node: &dyn Node, deletion_check: bool) -> Pre {
    let started = Instant::now();
    let done = |mut p: Pre| {
        p.elapsed = started.elapsed();
        p
    };
    match node.health() {
        NodeHealth::Ok | NodeHealth::ReadOnly(_) => {}
        NodeHealth::Offline(why) | NodeHealth::Foreign(why) => {
            return done(Pre::unreachable(why));
        }
    }
    if !deletion_check {
        return done(Pre {
            unreachable: None,
            holdings: None,
            nonce: [0; 32],
            bytes: 0,
            elapsed: Duration::ZERO,
        });
    }
    let mut nonce = [0u8; 32];
    if let Err(e) = OsDraw::new().fill(&mut nonce) {
        return done(Pre::unreachable(format!("cannot draw a nonce: {e}")));
    }
    match node.holdings(&nonce) {
        Ok(h) => done(Pre {
            unreachable: None,
            holdings: Some(h),
            nonce,
            bytes: HOLDINGS_BYTES,
            elapsed: Duration::ZERO,
        }),
        Err(e) => match e.kind.unreachable() {
            Some(why) if !matches!(e.kind, NodeErrorKind::Protocol(_)) => {
                done(Pre::unreachable(why))
            }
            _ => done(Pre::unreachable(format!("cannot list what it holds: {e}"))),
        },
    }
}
