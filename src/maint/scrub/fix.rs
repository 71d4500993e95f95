//! Repairing one object that scrub found damaged (and that is not lost).
//!
//! Per bad shard: pick a target (its own node when that node is usable,
//! else a spare node that holds no shard of the object), write the shard
//! there with `place_shard` (verified chunks copied, the rest rebuilt;
//! checked against the audit root before commit), then switch the manifest
//! with compare-and-replace. Only after the switch is an old copy on
//! another node deleted. When the manifest changed meanwhile (a mount
//! recorded debt, a drain moved a shard, the file was deleted) the new
//! shard is deleted again unless the current manifest places that very
//! shard on that very node (then it is a correct copy: an object's chunk
//! hashes never change), and the object is left for the next scrub.
//! Last, one more compare-and-replace clears stale debt bits and adds
//! audit roots to v1 manifests.

use std::sync::Arc;

use super::check::{ShardCheck, ShardState};
use super::{Finding, FindingKind, NodeView, Outcome};
use crate::dispersal::Manifest;
use crate::maint::{Progress, ProgressFn};
use crate::node::Node;
use crate::vault::Vault;

/// What fixing an object changed beyond its findings.
#[derive(Debug, Default)]
pub struct Fixed {
    /// The v1 manifest got its audit roots.
    pub roots_added: bool,
}

impl Vault {
    /// Repairs the shards behind `findings` (missing, corrupt, debt) of
    /// object `m`, updating each finding's outcome.
    pub(super) fn fix_object(
        &self,
        m: &Manifest,
        checks: &[ShardCheck],
        views: &[NodeView],
        findings: &mut [Finding],
        progress: ProgressFn<'_>,
    ) -> Fixed {
        let store = self.dispersal().store();
        // Concurrent scrubs and fscks leave an object under repair alone.
        let _busy = match self.intents().hold(m.id) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(
                    "intent log: {e}; repairing object {} without holding it",
                    m.id
                );
                None
            }
        };
        let mut cur = m.clone();
        let mut roots: Vec<Option<[u8; 32]>> = checks.iter().map(|c| c.root).collect();
        let mut stale = false;
        for f in findings.iter_mut() {
            if !matches!(f.kind, FindingKind::Missing | FindingKind::Corrupt) {
                continue;
            }
            let Some(i) = f.shard.map(usize::from) else {
                continue;
            };
            if stale {
                f.outcome = Outcome::Skipped;
                f.note = Some("the object changed meanwhile; run scrub again".into());
                continue;
            }
            let target = match self.repair_target(&cur, i, views) {
                Ok(t) => t,
                Err(why) => {
                    f.outcome = Outcome::Failed;
                    f.note = Some(why);
                    continue;
                }
            };
            let copy = matches!(checks[i].state, ShardState::Corrupt(_));
            let placed = match self.dispersal().place_shard_with_piece(
                &cur,
                i,
                &target,
                copy,
                checks[i].piece.clone(),
            ) {
                Ok(p) => {
                    progress(Progress::Advance {
                        bytes: p.bytes_written,
                    });
                    p
                }
                Err(e) => {
                    f.outcome = Outcome::Failed;
                    f.note = Some(format!(
                        "rebuilding it on {} failed: {e}; then run `qsfs scrub --repair` again",
                        target.name()
                    ));
                    continue;
                }
            };
            let home = cur.placement[i].clone();
            let mut new = cur.clone();
            new.placement[i] = target.name().to_string();
            new.missing &= !(1u32 << i);
            match store.replace_manifest(&cur, &new) {
                Ok(true) => {
                    cur = new;
                    roots[i] = Some(placed.root);
                    f.outcome = Outcome::Repaired;
                    f.repaired_on = Some(target.name().to_string());
                    let mut note = format!(
                        "{} chunks copied, {} rebuilt from the other shards",
                        placed.copied, placed.rebuilt
                    );
                    if home != target.name()
                        && let Some(old) = self.dispersal().node(&home)
                        && let Err(e) = self.dispersal().delete_shard(old.as_ref(), m.id, i)
                    {
                        note.push_str(&format!(
                            "; the old copy stays on {home} until a later scrub removes it ({e})"
                        ));
                    }
                    f.note = Some(note);
                }
                Ok(false) => {
                    stale = true;
                    self.undo_placement(m, i, &target);
                    f.outcome = Outcome::Skipped;
                    f.note = Some("skipped: changed meanwhile; run scrub again".into());
                }
                Err(e) => {
                    stale = true;
                    self.undo_placement(m, i, &target);
                    f.outcome = Outcome::Failed;
                    f.note = Some(format!("the manifest could not be updated: {e}"));
                }
            }
            progress(Progress::Note {
                text: format!(
                    "object {} shard {i}: {}{}",
                    m.id,
                    f.outcome.as_str(),
                    f.note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
            });
        }
        let mut fixed = Fixed::default();
        if stale {
            for f in findings.iter_mut().filter(|f| f.kind == FindingKind::Debt) {
                f.outcome = Outcome::Skipped;
                f.note = Some("the object changed meanwhile; run scrub again".into());
            }
            return fixed;
        }
        // Stale debt and audit roots, in one switch.
        let mut new = cur.clone();
        let mut debt = Vec::new();
        for (idx, f) in findings.iter().enumerate() {
            if f.kind == FindingKind::Debt
                && let Some(i) = f.shard
            {
                new.missing &= !(1u32 << i);
                debt.push(idx);
            }
        }
        let add_roots = !cur.has_roots() && roots.iter().all(Option::is_some);
        if add_roots {
            new.block = crate::rmht::BLOCK;
            new.roots = roots.iter().map(|r| r.unwrap_or_default()).collect();
        }
        if new == cur {
            return fixed;
        }
        let (outcome, note) = match store.replace_manifest(&cur, &new) {
            Ok(true) => {
                fixed.roots_added = add_roots;
                (Outcome::Cleared, None)
            }
            Ok(false) => (
                Outcome::Skipped,
                Some("skipped: changed meanwhile; run scrub again".to_string()),
            ),
            Err(e) => (
                Outcome::Failed,
                Some(format!("the manifest could not be updated: {e}")),
            ),
        };
        for idx in debt {
            findings[idx].outcome = outcome;
            findings[idx].note = note.clone();
        }
        fixed
    }

    /// Where shard `i` of `m` is rebuilt: its own node when that is
    /// usable and not being drained, else a spare node (one holding no
    /// shard of the object) that takes writes. Never an unadopted empty
    /// or missing folder: that may be the mount point of a disk that is
    /// not mounted.
    fn repair_target(
        &self,
        m: &Manifest,
        i: usize,
        views: &[NodeView],
    ) -> Result<Arc<dyn Node>, String> {
        let home = &m.placement[i];
        let view = |name: &str| views.iter().find(|v| v.node.name() == name);
        let home_why = match view(home) {
            Some(_) if self.dispersal().is_draining(home) => format!("{home} is being drained"),
            Some(v) => match (&v.writable, &v.problem) {
                (Ok(()), _) => return Ok(Arc::clone(&v.node)),
                (Err(_), Some(_)) => format!("{home} is {}", v.state),
                (Err(w), None) => format!("{home} refuses writes ({w})"),
            },
            None => format!("{home} is not in the vault config"),
        };
        let mut exclude: Vec<String> = Vec::new();
        loop {
            let ex: Vec<&str> = exclude.iter().map(String::as_str).collect();
            match self.dispersal().spare_node(m, &ex) {
                Some(n) if view(n.name()).is_some_and(|v| v.writable.is_ok()) => return Ok(n),
                Some(n) => exclude.push(n.name().to_string()),
                None => {
                    return Err(format!(
                        "not repaired: {home_why} and every other usable node holds a shard of \
                         this object; bring {home} back, take a replacement folder into use with \
                         `qsfs node adopt VAULT {home}`, or add a node, then run `qsfs scrub \
                         --repair` again"
                    ));
                }
            }
        }
    }

    /// Removes a shard placed for a repair whose manifest switch failed,
    /// unless the current manifest places that shard on that node.
    fn undo_placement(&self, m: &Manifest, i: usize, target: &Arc<dyn Node>) {
        // When the store cannot say, keep it: an orphan is harmless, a
        // deleted live shard is not.
        let keep = match self.dispersal().store().manifest(&m.id) {
            Ok(Some(cur)) => cur.placement.get(i).map(String::as_str) == Some(target.name()),
            Ok(None) => false,
            Err(_) => true,
        };
        if !keep && let Err(e) = self.dispersal().delete_shard(target.as_ref(), m.id, i) {
            tracing::warn!("{e}; the shard stays as an orphan until a later scrub");
        }
    }
}
