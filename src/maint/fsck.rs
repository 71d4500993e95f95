//! `qsfs fsck`: the namespace, the manifests, the keystore, the backup
//! records and the nodes' contents agree, and what a crash left over is
//! found (and with `--repair` removed). Metadata only: node listings and
//! shard headers are read, never chunk data (that is `qsfs scrub`).
//!
//! Safe beside a mount in the same process. A write runs: intent `+` ->
//! shards -> keys -> manifest and `B` -> name -> intent `-`; a deletion
//! unnames and queues in one batch, then destroys. So fsck reads in this
//! order: node listings, key and backup ids, intents, manifests, intents
//! again, names, queues. A piece seen on a node or in a store whose object
//! is neither in flight (at the first intent read) nor has a manifest (read
//! after it) was settled before fsck looked, and is an orphan; a manifest
//! not in flight at the second intent read and not named (read after it)
//! was named before and unnamed since (then it is queued), or never named.
//! Every repair re-checks its object just before it acts.
//!
//! Moving a shard (drain, rebalance) writes it to the new node before the
//! manifest switches: such moves should hold an intent on the object for
//! their duration so fsck leaves it alone.

mod classify;
mod report;

pub use report::{
    BrokenFile, FileProblem, FsckOptions, FsckReport, Leftover, NodeScan, Orphan, OrphanReason,
    OrphanShard, PendingDeletions, ShardFault, ShardProblem, StagingState,
};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use classify::{Placed, Plan, Snapshot};

use super::keys::KeyIssue;
use super::nodes::NotChecked;
use super::{Progress, ProgressFn};
use crate::ObjectId;
use crate::dispersal::{DispersalError, Manifest};
use crate::node::{Node, NodeErrorKind, ShardKey};
use crate::vault::{Vault, VaultError};

/// Objects destroyed per batch (one keystore and one store flush each).
const DESTROY_BATCH: usize = 256;

impl Vault {
    /// Checks that names, manifests, keys, backup records and node
    /// contents agree; with `opts.repair`, removes orphans, finishes
    /// pending deletions and records missing shards as repair debt. Names
    /// are never removed: files whose objects are damaged are reported.
    pub fn fsck(
        &self,
        opts: &FsckOptions,
        progress: ProgressFn<'_>,
    ) -> Result<FsckReport, VaultError> {
        progress(Progress::Phase {
            name: "fsck: list".into(),
            total: 0,
        });
        let snap = self.fsck_snapshot()?;
        let mut plan = classify::plan(&snap);
        let gc = self.namespace().gc_queue()?;
        let r2 = self.namespace().r2_cleanup_queue()?;
        let mut report = FsckReport {
            repair: opts.repair,
            nodes: snap
                .listings
                .iter()
                .map(|(node, l)| NodeScan {
                    node: node.clone(),
                    shards: l.as_ref().map(|l| l.shards.len() as u64).unwrap_or(0),
                    leftovers: l.as_ref().map(|l| l.leftovers.len() as u64).unwrap_or(0),
                    missing: 0,
                    not_checked: l.as_ref().err().cloned(),
                    next_step: l.as_ref().err().map(|why| why.next_step(self.root(), node)),
                    error: l.as_ref().err().map(ToString::to_string),
                })
                .collect(),
            objects: snap.manifests.len() as u64,
            named: snap.named.len() as u64,
            in_flight: self.intents().in_flight().len() as u64,
            pending: PendingDeletions {
                gc: gc.iter().map(ObjectId::to_hex).collect(),
                r2_cleanup: r2.iter().map(ObjectId::to_hex).collect(),
                finished: gc.is_empty() && r2.is_empty(),
            },
            staging: self.staging_state()?,
            ..Default::default()
        };
        report.shards = report.nodes.iter().map(|n| n.shards).sum();
        report.nodes_not_checked = report
            .nodes
            .iter()
            .filter(|n| n.not_checked.is_some())
            .count() as u64;

        let total: u64 = plan.placed.iter().map(|p| p.size).sum();
        progress(Progress::Phase {
            name: "fsck: shard headers".into(),
            total,
        });
        let mut faults = self.check_headers(&plan.placed, &snap.manifests, progress);
        faults.extend(plan.faults.iter().cloned());
        faults.extend(self.confirm_absent(&plan.absent, &snap.manifests));
        // An object replaced or deleted while fsck read it (a mount runs
        // beside) lost its shards with it: no damage.
        faults.retain(|(_, key, _)| match snap.manifests.get(&key.object) {
            Some(Ok(seen)) => self.unchanged(seen),
            _ => true,
        });
        faults.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        report.shard_problems = faults
            .iter()
            .map(|(node, key, fault)| ShardProblem {
                node: node.clone(),
                shard: key.to_string(),
                fault: fault.clone(),
                repaired: false,
            })
            .collect();
        for n in &mut report.nodes {
            n.missing = faults
                .iter()
                .filter(|(node, _, f)| *node == n.node && *f == ShardFault::Missing)
                .count() as u64;
        }
        report.broken_files = self.broken_files(&plan)?;
        // Likewise a file whose object was replaced or deleted meanwhile.
        report.broken_files.retain(|b| {
            match ObjectId::from_hex(&b.object).and_then(|id| snap.manifests.get(&id)) {
                Some(Ok(seen)) => self.unchanged(seen),
                _ => true,
            }
        });
        // A stray listed before its object was destroyed is gone by now.
        plan.strays.retain(|st| {
            !self
                .dispersal()
                .node(&st.node)
                .is_some_and(|node| gone(node.as_ref(), st.key))
        });
        self.fill_orphans(&mut report, &plan);

        if opts.repair {
            progress(Progress::Phase {
                name: "fsck: repair".into(),
                total: 0,
            });
            self.fsck_repair(&mut report, &plan, &snap, &faults);
        }
        report.clean = report.unresolved() == 0;
        Ok(report)
    }

    /// Reads everything in the order the module comment explains.
    fn fsck_snapshot(&self) -> Result<Snapshot, VaultError> {
        let listings = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .dispersal()
                .nodes()
                .iter()
                .map(|node| scope.spawn(move || self.check_listing(node)))
                .collect();
            self.dispersal()
                .nodes()
                .iter()
                .zip(handles)
                .map(|(node, h)| {
                    let listing = h.join().unwrap_or_else(|_| {
                        Err(NotChecked::Unreachable {
                            detail: "its listing thread panicked".into(),
                        })
                    });
                    (node.name().to_string(), listing)
                })
                .collect::<Vec<_>>()
        });
        let keys: BTreeSet<ObjectId> = self.keystore().ids()?.into_iter().collect();
        let backups = self
            .dispersal()
            .store()
            .backup_ids()
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut busy: HashSet<ObjectId> = self.intents().in_flight().into_iter().collect();
        let mut manifests = BTreeMap::new();
        for m in self.dispersal().store().manifests() {
            match m {
                Ok(m) => {
                    manifests.insert(m.id, Ok(m));
                }
                Err(DispersalError::Record { object, detail }) => {
                    manifests.insert(object, Err(detail));
                }
                Err(e) => return Err(e.into()),
            }
        }
        busy.extend(self.intents().in_flight());
        // Metadata snapshots are objects no name points at, by design; an
        // unregistered one (what a recovery read) is never an orphan.
        busy.extend(self.meta_ids()?);
        busy.extend(self.snapshot_ids_in(listings.iter().filter_map(|(_, l)| l.as_ref().ok())));
        let named = self.namespace().referenced_objects()?;
        busy.extend(self.namespace().gc_queue()?);
        busy.extend(self.namespace().r2_cleanup_queue()?);
        Ok(Snapshot {
            listings,
            keys,
            backups,
            manifests,
            named,
            busy,
            own_pid: std::process::id(),
        })
    }

    /// Reads the header of every shard at its proper place (in parallel
    /// over nodes) and compares it with the manifest.
    fn check_headers(
        &self,
        placed: &[Placed],
        manifests: &BTreeMap<ObjectId, Result<Manifest, String>>,
        progress: ProgressFn<'_>,
    ) -> Vec<(String, ShardKey, ShardFault)> {
        let mut by_node: HashMap<&str, Vec<&Placed>> = HashMap::new();
        for p in placed {
            by_node.entry(p.node.as_str()).or_default().push(p);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = by_node
                .into_iter()
                .filter_map(|(name, items)| {
                    let node = Arc::clone(self.dispersal().node(name)?);
                    Some(scope.spawn(move || {
                        let mut out = Vec::new();
                        for p in items {
                            let Some(Ok(m)) = manifests.get(&p.key.object) else {
                                continue;
                            };
                            if let Some(f) = header_fault(node.as_ref(), p.key, m) {
                                out.push((p.node.clone(), p.key, f));
                            }
                            progress(Progress::Advance { bytes: p.size });
                        }
                        out
                    }))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// Shards a manifest places on a node whose (older) listing lacks
    /// them: missing only if the manifest is unchanged and the node still
    /// does not have them.
    fn confirm_absent(
        &self,
        absent: &[(String, ShardKey)],
        manifests: &BTreeMap<ObjectId, Result<Manifest, String>>,
    ) -> Vec<(String, ShardKey, ShardFault)> {
        let mut out = Vec::new();
        for (name, key) in absent {
            let (Some(Ok(seen)), Some(node)) =
                (manifests.get(&key.object), self.dispersal().node(name))
            else {
                continue;
            };
            if !matches!(self.dispersal().store().manifest(&key.object), Ok(Some(now)) if now == *seen)
            {
                continue;
            }
            match node.read_header(*key) {
                Err(e) if e.is_not_found() => out.push((name.clone(), *key, ShardFault::Missing)),
                Err(e) => {
                    if let NodeErrorKind::Corrupt(detail) = e.kind {
                        out.push((name.clone(), *key, ShardFault::BadHeader { detail }));
                    }
                }
                Ok(_) => {}
            }
        }
        out
    }

    /// Files whose objects are damaged: a missing or undecodable manifest,
    /// too few shards, or key material missing or failing `B`.
    fn broken_files(&self, plan: &Plan) -> Result<Vec<BrokenFile>, VaultError> {
        let mut broken: BTreeMap<ObjectId, Vec<FileProblem>> = BTreeMap::new();
        for (id, problems) in &plan.broken {
            // The manifest may have been published after the scan.
            if problems == &[FileProblem::ManifestMissing]
                && self
                    .dispersal()
                    .store()
                    .manifest(id)
                    .ok()
                    .flatten()
                    .is_some()
            {
                continue;
            }
            // Shards written after the nodes were listed: counted again,
            // on the nodes, now.
            if matches!(problems.as_slice(), [FileProblem::TooFewShards { .. }])
                && self.enough_shards_now(id)
            {
                continue;
            }
            broken.insert(*id, problems.clone());
        }
        let (_, r2_here) = self.keystore().r2_location();
        for id in &plan.named_live {
            let issues = self.key_issues(id)?;
            for issue in issues {
                // A separate R2 store that is away is not damage.
                if !r2_here && issue == KeyIssue::R2Missing {
                    continue;
                }
                broken
                    .entry(*id)
                    .or_default()
                    .push(FileProblem::Key { issue });
            }
        }
        if broken.is_empty() {
            return Ok(Vec::new());
        }
        // Only what is still named now (a file may have been removed since).
        let named = self.namespace().referenced_objects()?;
        broken.retain(|id, _| named.contains(id));
        let paths = self.object_paths()?;
        Ok(broken
            .into_iter()
            .map(|(id, problems)| BrokenFile {
                path: paths.get(&id).cloned(),
                object: id.to_hex(),
                readable: readable(&problems),
                problems,
            })
            .collect())
    }

    /// Copies the plan's orphans into the report.
    fn fill_orphans(&self, report: &mut FsckReport, plan: &Plan) {
        let orphans = |ids: &[ObjectId]| -> Vec<Orphan> {
            ids.iter()
                .map(|id| Orphan {
                    object: id.to_hex(),
                    repaired: false,
                })
                .collect()
        };
        report.orphan_objects = orphans(&plan.orphan_objects);
        report.orphan_keys = orphans(&plan.orphan_keys);
        report.orphan_backups = orphans(&plan.orphan_backups);
        report.orphan_shards = plan
            .strays
            .iter()
            .map(|s| OrphanShard {
                node: s.node.clone(),
                shard: s.key.to_string(),
                reason: s.reason.clone(),
                repaired: false,
                note: s.keep.clone(),
            })
            .collect();
        report.leftovers = plan
            .temps
            .iter()
            .map(|t| Leftover {
                node: t.node.clone(),
                file: t.path.display().to_string(),
                repaired: false,
                note: None,
            })
            .collect();
    }

    /// Files and records in the staging folder. Only staged file data
    /// counts: the pieces `<ino>` and `<ino>.<piece>` (src/fs/staging.rs).
    /// The journal and stock folders, stdin spools of `qsfs put -` and
    /// anything else there are not files waiting to be sealed; counting
    /// them said "2 files in the staging folder" on a vault with nothing
    /// staged.
    fn staging_state(&self) -> Result<StagingState, VaultError> {
        let mut files: Vec<String> = std::fs::read_dir(self.staging())
            .map(|it| {
                it.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|name| staged_piece(name).is_some())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut kept_stdin: Vec<String> = std::fs::read_dir(self.staging())
            .map(|it| {
                it.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("failed-stdin-"))
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        kept_stdin.sort();
        let journals = std::fs::read_dir(self.staging().join("journal"))
            .map(|it| {
                it.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.parse::<u64>().is_ok())
                    })
                    .count() as u64
            })
            .unwrap_or(0);
        Ok(StagingState {
            pending_seals: self.namespace().all_staging()?.len() as u64 + journals,
            files,
            kept_stdin,
        })
    }

    /// The repairs, each re-checking its object first. Failures are
    /// recorded in the report, never fatal: one stuck node must not keep
    /// the rest from being cleaned.
    fn fsck_repair(
        &self,
        report: &mut FsckReport,
        plan: &Plan,
        snap: &Snapshot,
        faults: &[(String, ShardKey, ShardFault)],
    ) {
        // 1. Deletions queued by earlier runs.
        if !report.pending.finished {
            match self.collect_garbage() {
                Ok(_) => {
                    let left: HashSet<String> = self
                        .namespace()
                        .gc_queue()
                        .into_iter()
                        .chain(self.namespace().r2_cleanup_queue())
                        .flatten()
                        .map(|id| id.to_hex())
                        .collect();
                    report.pending.finished = report
                        .pending
                        .gc
                        .iter()
                        .chain(&report.pending.r2_cleanup)
                        .all(|id| !left.contains(id));
                }
                Err(e) => report
                    .errors
                    .push(format!("finishing queued deletions failed: {e}")),
            }
        }

        // 2. Orphan objects, whole: keys, B, shards (and temporary files),
        //    manifest.
        let destroyed = match self.destroy_orphans(&plan.destroy) {
            Ok(d) => d,
            Err(e) => {
                report
                    .errors
                    .push(format!("destroying orphan objects failed: {e}"));
                HashSet::new()
            }
        };
        for o in report
            .orphan_objects
            .iter_mut()
            .chain(report.orphan_keys.iter_mut())
            .chain(report.orphan_backups.iter_mut())
        {
            o.repaired = ObjectId::from_hex(&o.object).is_some_and(|id| destroyed.contains(&id));
        }

        // 3. Single shard files: of destroyed objects (check they went),
        //    and stale copies of live objects.
        for (entry, stray) in report.orphan_shards.iter_mut().zip(&plan.strays) {
            let Some(node) = self.dispersal().node(&stray.node) else {
                continue;
            };
            if destroyed.contains(&stray.key.object) {
                entry.repaired = gone(node.as_ref(), stray.key);
                if !entry.repaired {
                    entry.note = Some("its object was destroyed but this file stayed".into());
                }
                continue;
            }
            if stray.keep.is_some() || stray.reason == OrphanReason::NoManifest {
                continue;
            }
            let Some(Ok(seen)) = snap.manifests.get(&stray.key.object) else {
                continue;
            };
            if !self.unchanged(seen) {
                entry.note = Some("the object changed meanwhile; run fsck again".into());
                continue;
            }
            match node.delete(stray.key) {
                Ok(()) => entry.repaired = true,
                Err(e) => entry.note = Some(e.to_string()),
            }
        }

        // 4. Temporary files.
        for (entry, temp) in report.leftovers.iter_mut().zip(&plan.temps) {
            let folder = self.node_folder(&temp.node);
            let local = folder
                .as_ref()
                .is_some_and(|f| temp.path.starts_with(f.join("shards")));
            if local {
                if temp
                    .object
                    .is_some_and(|id| self.intents().in_flight().contains(&id))
                {
                    entry.note = Some("a write of its object started meanwhile".into());
                    continue;
                }
                match std::fs::remove_file(&temp.path) {
                    Ok(()) => entry.repaired = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => entry.repaired = true,
                    Err(e) => entry.note = Some(format!("cannot remove it: {e}")),
                }
            } else if temp.object.is_some_and(|id| destroyed.contains(&id)) {
                // Purged by id with its object.
                entry.repaired = true;
            } else {
                entry.note = Some(
                    "on a remote node and its object is live: remove it on the node's machine"
                        .into(),
                );
            }
        }

        // 5. Missing and damaged shards become repair debt.
        let mut masks: BTreeMap<ObjectId, u32> = BTreeMap::new();
        for (_, key, _) in faults {
            *masks.entry(key.object).or_default() |= 1 << key.index;
        }
        let mut recorded: HashSet<ObjectId> = HashSet::new();
        for (id, mask) in masks {
            let Some(Ok(seen)) = snap.manifests.get(&id) else {
                continue;
            };
            let mut new = seen.clone();
            new.missing |= mask;
            match self.dispersal().store().replace_manifest(seen, &new) {
                Ok(true) => {
                    recorded.insert(id);
                }
                // Deleted meanwhile: nothing left to record.
                Ok(false) if matches!(self.dispersal().store().manifest(&id), Ok(None)) => {
                    recorded.insert(id);
                }
                Ok(false) => report.errors.push(format!(
                    "object {id} changed while fsck ran; its shard problems were not recorded (run fsck again)"
                )),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        for (entry, (_, key, _)) in report.shard_problems.iter_mut().zip(faults) {
            entry.repaired = recorded.contains(&key.object);
        }
    }

    /// Destroys the orphan objects `ids` that are still orphans now (no
    /// name, no intent, not queued). Returns those destroyed.
    fn destroy_orphans(&self, ids: &BTreeSet<ObjectId>) -> Result<HashSet<ObjectId>, VaultError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let named = self.namespace().referenced_objects()?;
        let flight: HashSet<ObjectId> = self.intents().in_flight().into_iter().collect();
        let queued: HashSet<ObjectId> = self.namespace().gc_queue()?.into_iter().collect();
        let ids: Vec<ObjectId> = ids
            .iter()
            .filter(|id| !named.contains(id) && !flight.contains(id) && !queued.contains(id))
            .copied()
            .collect();
        let mut done = HashSet::new();
        for batch in ids.chunks(DESTROY_BATCH) {
            self.destroy_objects(batch)?;
            done.extend(batch.iter().copied());
        }
        Ok(done)
    }

    /// True if the object's shards on their nodes now (header reads) are
    /// at least `k`: an object finished between the listing and the
    /// manifest read has shards the listing did not see.
    fn enough_shards_now(&self, id: &ObjectId) -> bool {
        let Ok(Some(m)) = self.dispersal().store().manifest(id) else {
            return false;
        };
        let present = m
            .placement
            .iter()
            .enumerate()
            .filter(|(i, name)| {
                let key = ShardKey {
                    object: *id,
                    index: *i as u8,
                };
                self.dispersal()
                    .node(name)
                    .is_some_and(|node| header_fault(node.as_ref(), key, &m).is_none())
            })
            .count();
        present >= m.layout.k
    }

    /// True if the object's manifest is still `seen` and nothing holds it
    /// in flight (a write, a move, a destroy); scrub asks it too.
    pub(super) fn unchanged(&self, seen: &Manifest) -> bool {
        !self.intents().in_flight().contains(&seen.id)
            && matches!(self.dispersal().store().manifest(&seen.id), Ok(Some(now)) if now == *seen)
    }
}

/// What is wrong with the header of shard `key` (None: it matches `m`).
fn header_fault(node: &dyn Node, key: ShardKey, m: &Manifest) -> Option<ShardFault> {
    match node.read_header(key) {
        Ok(h) => {
            let l = &m.layout;
            let mut diffs = Vec::new();
            if (h.k as usize, h.n as usize) != (l.k, l.n) {
                diffs.push(format!("k/n {}/{} instead of {}/{}", h.k, h.n, l.k, l.n));
            }
            if h.chunk != l.chunk {
                diffs.push(format!("chunk {} instead of {}", h.chunk, l.chunk));
            }
            if h.stripes != l.stripes {
                diffs.push(format!("{} stripes instead of {}", h.stripes, l.stripes));
            }
            if h.object_len != l.object_len {
                diffs.push(format!(
                    "object length {} instead of {}",
                    h.object_len, l.object_len
                ));
            }
            if h.piece != m.piece {
                diffs.push(format!(
                    "key piece {} bytes instead of {}",
                    h.piece, m.piece
                ));
            }
            (!diffs.is_empty()).then(|| ShardFault::BadHeader {
                detail: format!("header disagrees with the manifest: {}", diffs.join(", ")),
            })
        }
        Err(e) if e.is_not_found() => Some(ShardFault::Missing),
        Err(e) => match e.kind {
            NodeErrorKind::Corrupt(detail) => Some(ShardFault::BadHeader { detail }),
            // An I/O error or an unreachable node is not a verdict.
            _ => None,
        },
    }
}

/// The inode and piece number of a staging file name: `<ino>` (piece 0)
/// or `<ino>.<piece>`, both decimal (src/fs/staging.rs names them). Strict
/// on purpose: `u64::from_str` would also take "+5", and "5.journal" or
/// "stock-1" must not pass for staged data.
fn staged_piece(name: &str) -> Option<(u64, u64)> {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match name.split_once('.') {
        None => Some((number(name)?, 0)),
        Some((ino, piece)) => Some((number(ino)?, number(piece)?)),
    }
}

/// True once shard `key` is no longer on `node`.
fn gone(node: &dyn Node, key: ShardKey) -> bool {
    matches!(node.read_header(key), Err(e) if e.is_not_found())
}

/// A file reads when its manifest is usable, `k` shards are there, and two
/// of `R1`, `R2`, `B` are sound (with `R3` from the object they fix the
/// key; PROTOCOL.md).
fn readable(problems: &[FileProblem]) -> bool {
    let mut bad_pieces = 0;
    let (mut r1, mut r2, mut b) = (false, false, false);
    for p in problems {
        match p {
            FileProblem::ManifestMissing
            | FileProblem::ManifestDamaged { .. }
            | FileProblem::TooFewShards { .. } => return false,
            FileProblem::Key { issue } => match issue {
                KeyIssue::R1Missing | KeyIssue::R1Corrupt => r1 = true,
                KeyIssue::R2Missing | KeyIssue::R2Corrupt => r2 = true,
                KeyIssue::BackupMissing | KeyIssue::BackupCorrupt => b = true,
                KeyIssue::ManifestMissing | KeyIssue::ManifestDamaged => return false,
            },
        }
    }
    for bad in [r1, r2, b] {
        if bad {
            bad_pieces += 1;
        }
    }
    bad_pieces <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_staged_pieces_count_as_staged_files() {
        assert_eq!(staged_piece("12"), Some((12, 0)));
        assert_eq!(staged_piece("12.3"), Some((12, 3)));
        for other in [
            "journal",
            "stock",
            "12.journal",
            "stock-1",
            "spool-00ff",
            ".stock.7.1.tmp",
            "+12",
            "12.",
            ".3",
            "12.3.4",
            "",
        ] {
            assert_eq!(staged_piece(other), None, "{other:?}");
        }
    }

    #[test]
    fn readability_needs_two_of_three_key_pieces() {
        let key = |issue| FileProblem::Key { issue };
        assert!(readable(&[key(KeyIssue::R1Missing)]));
        assert!(readable(&[key(KeyIssue::BackupCorrupt)]));
        assert!(!readable(&[
            key(KeyIssue::R1Missing),
            key(KeyIssue::R2Corrupt)
        ]));
        assert!(!readable(&[
            key(KeyIssue::R2Missing),
            key(KeyIssue::BackupMissing)
        ]));
        assert!(!readable(&[FileProblem::ManifestMissing]));
        assert!(!readable(&[FileProblem::TooFewShards { present: 1, k: 3 }]));
    }
}
