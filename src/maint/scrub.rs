//! `qsfs scrub`: read every chunk of every shard on its node, check it
//! against the manifest, find orphans, and with `repair` rebuild what is
//! bad, clear stale repair debt and remove orphans.
//!
//! Order, so the run is safe next to a mount's writes (the same process):
//! 1. list every node (orphan candidates, file sizes);
//! 2. read the intent log, then the manifests (orphans.rs explains why
//!    this order never mistakes a write in flight for an orphan);
//! 3. read the shards, one worker thread per node, one chunk in memory
//!    per worker (check.rs);
//! 4. per object: lost (some stripe has fewer than `k` good chunks: the
//!    object is reported with its file paths and left untouched), damaged
//!    (rebuilt with `place_shard`, then the manifest switched with
//!    compare-and-replace; fix.rs), stale debt (bits cleared), v1
//!    manifests (audit roots added);
//! 5. orphans: removed after a fresh look at the manifest and the log.
//!
//! Without `repair` nothing is written anywhere: not the nodes, not the
//! manifests (not even to record the damage found as repair debt).

mod check;
mod fix;
mod orphans;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Progress, ProgressFn};
use crate::ObjectId;
use crate::dispersal::{DispersalError, Manifest, PieceCheck};
use crate::node::{Listing, Node, NodeHealth, ShardKey};
use crate::vault::{Vault, VaultError};
use check::{BadStripes, Job, ShardCheck, ShardState};
use orphans::Orphan;

/// What `scrub` may do besides reading.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrubOptions {
    /// Rebuild bad and missing shards, clear stale repair debt, add audit
    /// roots to v1 manifests, remove orphans.
    pub repair: bool,
}

/// What is wrong with a shard or a file on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The shard file or its node is gone.
    Missing,
    /// The shard file is there but damaged (a chunk fails its hash, the
    /// file is short, the header is wrong).
    Corrupt,
    /// Recorded missing in the manifest (repair debt) but the shard is fine.
    Debt,
    /// A shard file no manifest places on this node.
    Orphan,
    /// A temporary file of a write that is not in flight.
    Leftover,
    /// The object's manifest record is unreadable.
    Manifest,
}

/// What scrub did about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Reported only (no `repair`).
    Found,
    /// Rebuilt, committed and the manifest switched to it.
    Repaired,
    /// The stale repair-debt record was cleared.
    Cleared,
    /// The orphan was deleted.
    Removed,
    /// Left in place on purpose (see the note); not damage.
    Kept,
    /// The object changed while scrub worked on it; a new scrub looks again.
    Skipped,
    /// Repair was tried and failed (see the note).
    Failed,
    /// The object cannot be rebuilt; nothing about it was changed.
    Lost,
}

impl FindingKind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::Corrupt => "corrupt",
            FindingKind::Debt => "debt",
            FindingKind::Orphan => "orphan",
            FindingKind::Leftover => "leftover",
            FindingKind::Manifest => "manifest",
        }
    }
}

impl Outcome {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::Repaired => "repaired",
            Outcome::Cleared => "cleared",
            Outcome::Removed => "removed",
            Outcome::Kept => "kept",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Lost => "lost",
        }
    }

    /// True when nothing is left to do about the finding.
    pub fn settled(self) -> bool {
        matches!(
            self,
            Outcome::Repaired | Outcome::Cleared | Outcome::Removed | Outcome::Kept
        )
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Object id (hex); empty for a leftover whose name does not parse.
    pub object: String,
    /// Shard index, if the finding is about one shard.
    pub shard: Option<u8>,
    /// Node the problem is on.
    pub node: String,
    /// What is wrong.
    pub kind: FindingKind,
    /// Details.
    pub detail: String,
    /// What scrub did.
    pub outcome: Outcome,
    /// Where a repaired shard now lives.
    pub repaired_on: Option<String>,
    /// How it was repaired, or why it was not.
    pub note: Option<String>,
}

/// An object that cannot be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostObject {
    /// Object id (hex).
    pub object: String,
    /// Vault paths of the files using it (empty: no file names it).
    pub paths: Vec<String>,
    /// Which stripe falls short.
    pub detail: String,
}

/// One node's row of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeScrub {
    /// Node name.
    pub name: String,
    /// "ok", or what is wrong with the node as a whole.
    pub health: String,
    /// Shards that verified.
    pub ok: u64,
    /// Shards missing.
    pub missing: u64,
    /// Shards damaged.
    pub corrupt: u64,
    /// Orphan shards and leftovers found.
    pub orphans: u64,
    /// Shards rebuilt onto this node.
    pub repaired: u64,
    /// Orphans removed from this node.
    pub removed: u64,
    /// Bytes read from this node.
    pub bytes_read: u64,
}

/// The result of a scrub.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Whether repair was asked for.
    pub repair: bool,
    /// Objects checked.
    pub objects: u64,
    /// Shards checked.
    pub shards: u64,
    /// Bytes read from the nodes.
    pub bytes_read: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// Shards missing.
    pub missing: u64,
    /// Shards damaged.
    pub corrupt: u64,
    /// Orphan shards and leftovers.
    pub orphans: u64,
    /// Shards recorded missing that are fine (stale repair debt).
    pub debt: u64,
    /// Shards rebuilt.
    pub repaired: u64,
    /// Orphans removed.
    pub orphans_removed: u64,
    /// Stale debt records cleared.
    pub debt_cleared: u64,
    /// Objects whose manifest had no audit roots (v1).
    pub without_roots: u64,
    /// v1 manifests that got their audit roots.
    pub roots_added: u64,
    /// Objects that cannot be rebuilt, with their files.
    pub lost: Vec<LostObject>,
    /// Per node.
    pub nodes: Vec<NodeScrub>,
    /// Every finding.
    pub findings: Vec<Finding>,
}

impl ScrubReport {
    /// True when nothing is wrong, or everything found was repaired.
    pub fn healthy(&self) -> bool {
        self.lost.is_empty() && self.findings.iter().all(|f| f.outcome.settled())
    }

    /// Findings still needing attention.
    pub fn unsettled(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.outcome.settled())
            .count()
    }

    fn row(&mut self, node: &str) -> &mut NodeScrub {
        if let Some(i) = self.nodes.iter().position(|r| r.name == node) {
            return &mut self.nodes[i];
        }
        self.nodes.push(NodeScrub {
            name: node.to_string(),
            health: "not in the vault config".into(),
            ..Default::default()
        });
        let last = self.nodes.len() - 1;
        &mut self.nodes[last]
    }
}

/// How a node looked when the scrub began.
struct NodeView {
    node: Arc<dyn Node>,
    /// None when usable; else why not.
    problem: Option<String>,
    /// What the problem makes the node, for short mentions ("offline",
    /// "read-only", "foreign", "not listable"); empty when usable.
    state: &'static str,
    listing: Option<Listing>,
    /// Shard sizes from the listing.
    sizes: HashMap<ShardKey, u64>,
    /// With repair: Ok when shards may be written there.
    writable: Result<(), String>,
}

fn health_problem(h: NodeHealth) -> (&'static str, Option<String>) {
    match h {
        NodeHealth::Ok => ("", None),
        NodeHealth::Offline(w) => ("offline", Some(format!("offline: {w}"))),
        NodeHealth::ReadOnly(w) => ("read-only", Some(format!("read-only: {w}"))),
        NodeHealth::Foreign(w) => ("foreign", Some(format!("foreign: {w}"))),
    }
}

impl Vault {
    /// Scrubs the vault (see the module docs); with `opts.repair` heals
    /// what can be healed. Safe next to a mount's reads and writes.
    pub fn scrub(
        &self,
        opts: &ScrubOptions,
        progress: ProgressFn<'_>,
    ) -> Result<ScrubReport, VaultError> {
        let started = Instant::now();
        let mut report = ScrubReport {
            repair: opts.repair,
            ..Default::default()
        };
        // 1. Every node listed first.
        let views: Vec<NodeView> = self
            .dispersal()
            .nodes()
            .iter()
            .map(|node| self.view(node, opts.repair))
            .collect();
        for v in &views {
            report.nodes.push(NodeScrub {
                name: v.node.name().to_string(),
                health: v.problem.clone().unwrap_or_else(|| "ok".into()),
                ..Default::default()
            });
        }
        // 2. Then the objects in flight, then the manifests. Metadata
        // snapshots (this vault's tag) are never orphans: an unregistered
        // one may be all a recovery has (backups replace them).
        let mut in_flight = self.intents().in_flight();
        in_flight.extend(self.snapshot_ids_in(views.iter().filter_map(|v| v.listing.as_ref())));
        let mut manifests = Vec::new();
        let mut unreadable = HashSet::new();
        for r in self.dispersal().store().manifests() {
            match r {
                Ok(m) => manifests.push(m),
                Err(DispersalError::Record { object, detail }) => {
                    unreadable.insert(object);
                    let f = Finding {
                        object: object.to_hex(),
                        shard: None,
                        node: String::new(),
                        kind: FindingKind::Manifest,
                        detail: format!("manifest record damaged: {detail}"),
                        outcome: Outcome::Found,
                        repaired_on: None,
                        note: Some(
                            "scrub cannot check or repair this object; its shards are kept".into(),
                        ),
                    };
                    note(progress, &f);
                    report.findings.push(f);
                }
                Err(e) => return Err(e.into()),
            }
        }
        report.objects = manifests.len() as u64;
        report.without_roots = manifests.iter().filter(|m| !m.has_roots()).count() as u64;

        // 3. Every shard read and checked.
        let mut checks = self.check_all(&manifests, &views, opts.repair, progress);
        report.shards = checks.iter().map(|c| c.len() as u64).sum();
        // 3b. In a vault that keeps B on the nodes, the key pieces after
        // the chunks are not covered by the chunk hashes: cross-check them.
        for (m, checks) in manifests.iter().zip(checks.iter_mut()) {
            self.check_key_pieces(m, checks, &mut report, progress);
        }
        let paths = if checks
            .iter()
            .zip(&manifests)
            .any(|(c, m)| c.iter().any(|c| c.state != ShardState::Ok) || m.missing != 0)
        {
            self.object_paths()?
        } else {
            HashMap::new()
        };

        // 4. Per object: verdict and repair.
        if opts.repair {
            let to_rebuild: u64 = manifests
                .iter()
                .zip(&checks)
                .map(|(m, c)| {
                    let bad = c.iter().filter(|c| c.state != ShardState::Ok).count() as u64;
                    bad * m.layout.shard_len()
                })
                .sum();
            if to_rebuild > 0 {
                progress(Progress::Phase {
                    name: "repair".into(),
                    total: to_rebuild,
                });
            }
        }
        for (m, checks) in manifests.iter().zip(&checks) {
            for c in checks {
                report.bytes_read += c.bytes_read;
                report.row(&m.placement[c.index]).bytes_read += c.bytes_read;
            }
            if checks.iter().any(|c| c.state != ShardState::Ok) && !self.unchanged(m) {
                // Replaced or deleted while scrub read it (a mount runs
                // beside): its shards went with it, which is no damage.
                continue;
            }
            self.judge(m, checks, opts, &views, &paths, &mut report, progress)?;
        }

        // 5. Orphans.
        let by_id: HashMap<ObjectId, &Manifest> = manifests.iter().map(|m| (m.id, m)).collect();
        for v in &views {
            let Some(listing) = &v.listing else { continue };
            let found = orphans::find(v.node.name(), listing, &by_id, &in_flight, &unreadable);
            for o in self.still_orphans(v, found) {
                let mut f = self.orphan_finding(v, &o);
                report.orphans += 1;
                report.row(v.node.name()).orphans += 1;
                if opts.repair {
                    self.remove_orphan(v, &o, &mut f);
                    if f.outcome == Outcome::Removed {
                        report.orphans_removed += 1;
                        report.row(v.node.name()).removed += 1;
                    }
                }
                note(progress, &f);
                report.findings.push(f);
            }
        }
        // 6. A node that answers but lacks shards, or holds damaged ones,
        // is not "ok" until they are rebuilt (the words `node list` and
        // `status` use too).
        for row in &mut report.nodes {
            if row.health != "ok" {
                continue;
            }
            let open = |kind| {
                report
                    .findings
                    .iter()
                    .filter(|f| f.node == row.name && f.kind == kind && !f.outcome.settled())
                    .count() as u64
            };
            let (missing, corrupt) = (open(FindingKind::Missing), open(FindingKind::Corrupt));
            if missing + corrupt > 0 {
                row.health = format!(
                    "{}: {}",
                    super::nodes::DAMAGED,
                    super::nodes::damage_detail(missing, corrupt)
                );
            }
        }
        report.elapsed_secs = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Health, listing and (with repair) writability of one node.
    fn view(&self, node: &Arc<dyn Node>, repair: bool) -> NodeView {
        let (mut state, mut problem) = health_problem(node.health());
        let listing = match node.list() {
            Ok(l) => Some(l),
            Err(e) => {
                if problem.is_none() {
                    state = "not listable";
                    problem = Some(format!("cannot list its shards: {e}"));
                }
                None
            }
        };
        let writable = match (&problem, repair) {
            (_, false) => Err("not checked".into()),
            (Some(p), true) => Err(p.clone()),
            (None, true) => node.probe_write(),
        };
        if let (None, Err(w)) = (&problem, &writable)
            && repair
        {
            state = "read-only";
            problem = Some(format!("read-only: {w}"));
        }
        let sizes = listing
            .as_ref()
            .map(|l| l.shards.iter().map(|s| (s.key, s.size)).collect())
            .unwrap_or_default();
        NodeView {
            node: Arc::clone(node),
            problem,
            state,
            listing,
            sizes,
            writable,
        }
    }

    /// Marks shards whose key piece (of `B`) is off the polynomial the
    /// others agree on as corrupt (repair regenerates the piece); reports
    /// pieces that disagree without a majority to name the damaged ones.
    fn check_key_pieces(
        &self,
        m: &Manifest,
        checks: &mut [ShardCheck],
        report: &mut ScrubReport,
        progress: ProgressFn<'_>,
    ) {
        match self.dispersal().check_pieces(m) {
            PieceCheck::Consistent => {}
            PieceCheck::Dissent(shards) => {
                for c in checks
                    .iter_mut()
                    .filter(|c| shards.contains(&c.index) && c.state == ShardState::Ok)
                {
                    c.state = ShardState::Corrupt(
                        "its key piece of the backup record B is off the polynomial the other \
                         pieces agree on"
                            .into(),
                    );
                    c.bad = BadStripes::Some(Vec::new());
                }
            }
            PieceCheck::Undecided(read, agree) => {
                if !self.unchanged(m) {
                    return;
                }
                // The keystore knows B (R1 and R2, with R3 from the
                // object): the pieces that do not rebuild it are the bad ones.
                match self.pieces_from_keystore(m) {
                    Ok(fixes) if !fixes.is_empty() => {
                        for (i, piece) in fixes {
                            if let Some(c) = checks.iter_mut().find(|c| c.index == i) {
                                if c.state == ShardState::Ok {
                                    c.state = ShardState::Corrupt(
                                        "its key piece of the backup record B is not a piece of \
                                         the B that R1 and R2 rebuild"
                                            .into(),
                                    );
                                    c.bad = BadStripes::Some(Vec::new());
                                }
                                c.piece = Some(piece);
                            }
                        }
                        return;
                    }
                    Ok(_) => return,
                    Err(why) => tracing::debug!("object {}: {why}", m.id),
                }
                let f = Finding {
                    object: m.id.to_hex(),
                    shard: None,
                    node: String::new(),
                    kind: FindingKind::Corrupt,
                    detail: format!(
                        "the {read} key pieces of its backup record B disagree (at most {agree} \
                         lie on one polynomial), so which are damaged cannot be told"
                    ),
                    outcome: Outcome::Found,
                    repaired_on: None,
                    note: Some(if read < m.layout.n {
                        "bring back the object's other nodes and scrub again; reads do not need B \
                         while R1 and R2 are in the keystore"
                            .into()
                    } else {
                        "R1 and R2 do not rebuild the object either (`qsfs keys verify` says why); \
                         reads need B only when one of them is lost"
                            .into()
                    }),
                };
                report.corrupt += 1;
                note(progress, &f);
                report.findings.push(f);
            }
        }
    }

    /// The shards of `m` whose key piece is not a piece of the `B` that
    /// R1 and R2 rebuild (after the whole object verifies under them),
    /// with the pieces they should hold.
    fn pieces_from_keystore(&self, m: &Manifest) -> Result<crate::dispersal::PieceFixes, String> {
        let mut warnings = Vec::new();
        let mut report = crate::dispersal::ReadReport::default();
        let rec = self.recover(m, &mut warnings, &mut report)?;
        let (r, _) = self
            .dispersal()
            .read_stream(m, |s| crate::envelope::verify_stream(s, &rec))
            .map_err(|e| e.to_string())?;
        r.map_err(|e| format!("the object does not verify with R1 and R2: {e}"))?;
        let b = rec.rebuild_backup().map_err(|e| e.to_string())?;
        self.dispersal().pieces_against(m, &b.to_bytes())
    }

    /// Checks every shard of every manifest, one worker thread per node.
    /// Returns the checks per manifest, by shard index.
    fn check_all(
        &self,
        manifests: &[Manifest],
        views: &[NodeView],
        repair: bool,
        progress: ProgressFn<'_>,
    ) -> Vec<Vec<ShardCheck>> {
        let total = manifests
            .iter()
            .map(|m| m.layout.n as u64 * m.layout.shard_len())
            .sum();
        progress(Progress::Phase {
            name: "scrub".into(),
            total,
        });
        let mut jobs: Vec<Vec<Job<'_>>> = views.iter().map(|_| Vec::new()).collect();
        let mut out: Vec<Vec<Option<ShardCheck>>> =
            manifests.iter().map(|m| vec![None; m.layout.n]).collect();
        for (oi, m) in manifests.iter().enumerate() {
            for (i, name) in m.placement.iter().enumerate() {
                match views.iter().position(|v| v.node.name() == name) {
                    Some(ni) => jobs[ni].push(Job {
                        manifest: m,
                        object: oi,
                        index: i,
                        listed_size: views[ni]
                            .sizes
                            .get(&ShardKey {
                                object: m.id,
                                index: i as u8,
                            })
                            .copied(),
                    }),
                    None => {
                        progress(Progress::Advance {
                            bytes: m.layout.shard_len(),
                        });
                        out[oi][i] = Some(ShardCheck::missing(
                            oi,
                            i,
                            format!("node {name} is not in the vault config"),
                        ));
                    }
                }
            }
        }
        let results: Vec<ShardCheck> = std::thread::scope(|scope| {
            let handles: Vec<_> = views
                .iter()
                .zip(&jobs)
                .filter(|(_, j)| !j.is_empty())
                .map(|(v, jobs)| {
                    scope.spawn(move || {
                        jobs.iter()
                            .map(|job| {
                                check::check_shard(
                                    v.node.as_ref(),
                                    job,
                                    v.problem.as_deref(),
                                    repair && !job.manifest.has_roots(),
                                    progress,
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for c in results {
            let (oi, i) = (c.object, c.index);
            out[oi][i] = Some(c);
        }
        out.into_iter()
            .enumerate()
            .map(|(oi, v)| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        // A worker that panicked left a hole: count the
                        // shard as unread rather than fine.
                        c.unwrap_or_else(|| {
                            ShardCheck::missing(oi, i, "internal error: not checked".into())
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Verdict on one object from its shard checks; repairs with `repair`.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        m: &Manifest,
        checks: &[ShardCheck],
        opts: &ScrubOptions,
        views: &[NodeView],
        paths: &HashMap<ObjectId, String>,
        report: &mut ScrubReport,
        progress: ProgressFn<'_>,
    ) -> Result<(), VaultError> {
        let bad: Vec<&ShardCheck> = checks
            .iter()
            .filter(|c| c.state != ShardState::Ok)
            .collect();
        let stale = checks
            .iter()
            .any(|c| c.state == ShardState::Ok && m.is_missing(c.index));
        let wants_roots = opts.repair && !m.has_roots();
        if bad.is_empty() && !stale && !wants_roots {
            for c in checks {
                report.row(&m.placement[c.index]).ok += 1;
            }
            return Ok(());
        }
        // A fresh look: an object deleted or moved while it was read is
        // not judged on what was read (the next scrub sees it as it is).
        let m = match self.dispersal().store().manifest(&m.id)? {
            Some(cur) if cur.placement == m.placement => cur,
            _ => return Ok(()),
        };
        for c in checks {
            let row = report.row(&m.placement[c.index]);
            match c.state {
                ShardState::Ok => row.ok += 1,
                ShardState::Missing(_) => row.missing += 1,
                ShardState::Corrupt(_) => row.corrupt += 1,
            }
        }
        let mut findings: Vec<Finding> = Vec::new();
        for c in checks {
            let (kind, detail) = match &c.state {
                ShardState::Missing(w) => (FindingKind::Missing, w.clone()),
                ShardState::Corrupt(w) => (FindingKind::Corrupt, w.clone()),
                ShardState::Ok if m.is_missing(c.index) => (
                    FindingKind::Debt,
                    "recorded missing (repair debt) but the shard verifies".to_string(),
                ),
                ShardState::Ok => continue,
            };
            match kind {
                FindingKind::Missing => report.missing += 1,
                FindingKind::Corrupt => report.corrupt += 1,
                _ => report.debt += 1,
            }
            findings.push(Finding {
                object: m.id.to_hex(),
                shard: Some(c.index as u8),
                node: m.placement[c.index].clone(),
                kind,
                detail,
                outcome: Outcome::Found,
                repaired_on: None,
                note: None,
            });
        }
        let bad_of: Vec<Option<&BadStripes>> = checks.iter().map(|c| Some(&c.bad)).collect();
        if let Some((stripe, have)) =
            check::first_short_stripe(m.layout.k, m.layout.n, m.layout.stripes, &bad_of)
        {
            let lost = LostObject {
                object: m.id.to_hex(),
                paths: paths.get(&m.id).cloned().into_iter().collect(),
                detail: format!(
                    "stripe {stripe} has {have} good chunks, {} are needed",
                    m.layout.k
                ),
            };
            progress(Progress::Note {
                text: format!(
                    "LOST: object {} ({}): {}; nothing about it was changed",
                    lost.object,
                    if lost.paths.is_empty() {
                        "no file uses it".to_string()
                    } else {
                        lost.paths.join(", ")
                    },
                    lost.detail
                ),
            });
            for f in &mut findings {
                if f.kind != FindingKind::Debt {
                    f.outcome = Outcome::Lost;
                }
            }
            report.lost.push(lost);
        } else if opts.repair {
            let fixed = self.fix_object(&m, checks, views, &mut findings, progress);
            report.roots_added += u64::from(fixed.roots_added);
        }
        for f in findings {
            match f.outcome {
                Outcome::Repaired => {
                    report.repaired += 1;
                    if let Some(on) = &f.repaired_on {
                        report.row(on).repaired += 1;
                    }
                }
                Outcome::Cleared => report.debt_cleared += 1,
                _ => {}
            }
            note(progress, &f);
            report.findings.push(f);
        }
        Ok(())
    }

    fn orphan_finding(&self, v: &NodeView, o: &Orphan) -> Finding {
        let (object, shard, kind, detail) = match o {
            Orphan::Shard { key, why } => (
                key.object.to_hex(),
                Some(key.index),
                FindingKind::Orphan,
                why.clone(),
            ),
            Orphan::Leftover { path, object, .. } => (
                object.map(|o| o.to_hex()).unwrap_or_default(),
                None,
                FindingKind::Leftover,
                format!(
                    "temporary file {} of a write that is not in progress",
                    path.display()
                ),
            ),
        };
        Finding {
            object,
            shard,
            node: v.node.name().to_string(),
            kind,
            detail,
            outcome: Outcome::Found,
            repaired_on: None,
            note: None,
        }
    }

    /// The orphans of `found` that a second listing of the node still has
    /// and that are not in flight now. Files of an object destroyed while
    /// scrub ran were listed before their manifest went, and are gone by
    /// now; they are not findings.
    fn still_orphans(&self, v: &NodeView, found: Vec<Orphan>) -> Vec<Orphan> {
        if found.is_empty() {
            return found;
        }
        // In flight before or after the fresh listing: a write that ended
        // while the node was listed was in the log at the first look.
        let mut flying = self.intents().in_flight();
        let Ok(now) = v.node.list() else {
            return found;
        };
        flying.extend(self.intents().in_flight());
        let shards: HashSet<ShardKey> = now.shards.iter().map(|s| s.key).collect();
        let leftovers: HashSet<&std::path::PathBuf> = now.leftovers.iter().collect();
        let store = self.dispersal().store();
        found
            .into_iter()
            .filter(|o| match o {
                // A manifest now placing it here: its write finished since
                // the first look.
                Orphan::Shard { key, .. } => {
                    let placed_here = matches!(
                        store.manifest(&key.object),
                        Ok(Some(m)) if m.placement.get(key.index as usize)
                            .is_some_and(|p| p == v.node.name())
                    );
                    shards.contains(key) && !flying.contains(&key.object) && !placed_here
                }
                Orphan::Leftover { path, object, .. } => {
                    leftovers.contains(path) && !object.is_some_and(|id| flying.contains(&id))
                }
            })
            .collect()
    }

    /// Deletes one orphan after a fresh look at the manifest and the log.
    fn remove_orphan(&self, v: &NodeView, o: &Orphan, f: &mut Finding) {
        let store = self.dispersal().store();
        let flying = |id: &ObjectId| self.intents().in_flight().contains(id);
        match o {
            Orphan::Shard { key, .. } => {
                let still = match store.manifest(&key.object) {
                    Ok(None) => !flying(&key.object),
                    Ok(Some(m)) => match m.placement.get(key.index as usize) {
                        // An index the object does not have.
                        None => !flying(&key.object),
                        Some(p) if p == v.node.name() => false,
                        // A stale copy goes only while the copy the
                        // manifest places elsewhere is really there (as
                        // fsck): if its repair failed, this may be the
                        // last copy.
                        Some(p) => {
                            !flying(&key.object)
                                && !m.is_missing(key.index as usize)
                                && self
                                    .dispersal()
                                    .node(p)
                                    .is_some_and(|n| n.read_header(*key).is_ok())
                        }
                    },
                    Err(_) => false,
                };
                if !still {
                    f.outcome = Outcome::Skipped;
                    f.note = Some(
                        "kept: it belongs to an object now, or the copy its manifest places elsewhere is not confirmed"
                            .into(),
                    );
                    return;
                }
                match v.node.delete(*key) {
                    Ok(()) => f.outcome = Outcome::Removed,
                    Err(e) => {
                        f.outcome = Outcome::Failed;
                        f.note = Some(e.to_string());
                    }
                }
            }
            Orphan::Leftover {
                object, removable, ..
            } => {
                let Some(id) = object.filter(|_| *removable) else {
                    f.outcome = Outcome::Kept;
                    f.note = Some(
                        "left in place: its object has a manifest (or its name does not parse), \
                         and removing the temporary file alone is not possible through the node \
                         interface; it holds no live data"
                            .into(),
                    );
                    return;
                };
                if !matches!(store.manifest(&id), Ok(None)) || flying(&id) {
                    f.outcome = Outcome::Skipped;
                    f.note = Some("changed meanwhile: its object is being written".into());
                    return;
                }
                match v.node.purge(id) {
                    Ok(_) => f.outcome = Outcome::Removed,
                    Err(e) => {
                        f.outcome = Outcome::Failed;
                        f.note = Some(e.to_string());
                    }
                }
            }
        }
    }
}

/// A progress note for a finding.
fn note(progress: ProgressFn<'_>, f: &Finding) {
    let shard = f.shard.map(|s| format!(" shard {s}")).unwrap_or_default();
    let node = if f.node.is_empty() {
        String::new()
    } else {
        format!("{}: ", f.node)
    };
    let mut text = format!(
        "{node}{}: object {}{shard}: {}",
        f.kind.as_str(),
        f.object,
        f.detail
    );
    if f.outcome != Outcome::Found {
        text.push_str(&format!(" -> {}", f.outcome.as_str()));
        if let Some(on) = &f.repaired_on {
            text.push_str(&format!(" on {on}"));
        }
        if let Some(n) = &f.note {
            text.push_str(&format!(" ({n})"));
        }
    }
    progress(Progress::Note { text });
}
