//! The deletion check of seed 002: does a node hold exactly the shards
//! the manifests place on it? The node answers with one root over all it
//! holds (salted with a fresh nonce, so it must be computed now); the
//! auditor computes the same root over what the node should hold. Only
//! when they differ is the node's listing fetched, to name the
//! differences, and each one is re-checked against the current manifest,
//! the intent log and the node itself, so objects written, deleted or
//! moved during the check are never reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Snapshot;
use crate::dispersal::Manifest;
use crate::node::proof::holdings_root;
use crate::node::{HEADER_LEN, Holdings, Node, NodeErrorKind, ShardKey, StoredShard};
use crate::vault::Vault;

/// One shard that differs between the node and the manifests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardDiff {
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub index: u8,
    /// Size on the node (header included), if it has the shard.
    pub size: Option<u64>,
    /// Size the manifest implies, if the shard belongs there.
    pub expected_size: Option<u64>,
    /// What the difference means.
    pub why: String,
}

/// Result of the deletion check on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionCheck {
    /// Shards the manifests place on the node (recorded present).
    pub expected_shards: u64,
    /// Shards the node says it holds.
    pub held_shards: u64,
    /// The node's root equals the root over what it should hold.
    pub root_matches: bool,
    /// No difference is left after re-checking (the node holds what it
    /// should, objects in flight aside).
    pub holds_exactly_expected: bool,
    /// Shards the node holds and should not (deleted or moved away).
    pub extra: Vec<ShardDiff>,
    /// Shards the node should hold and does not.
    pub missing: Vec<ShardDiff>,
    /// Shards held with another size than the manifest implies.
    pub wrong_size: Vec<ShardDiff>,
    /// Differences explained by work in progress (objects being written,
    /// deleted, moved or repaired) or by recorded repair debt.
    pub ignored: u64,
    /// Why the differences could not be listed, if so.
    pub error: Option<String>,
}

/// A deletion check and the bytes it moved.
pub(super) struct Checked {
    pub report: DeletionCheck,
    pub bytes: u64,
}

/// Bytes of one listing entry and of a header read on the wire (about).
const LIST_ENTRY_BYTES: u64 = 26;
const HEADER_READ_BYTES: u64 = 20 + HEADER_LEN as u64;

impl Vault {
    /// Compares `held` (taken before `snap` was read) with the shards
    /// `mine` the manifests place on `node`.
    pub(super) fn deletion_check(
        &self,
        node: &dyn Node,
        held: &Holdings,
        nonce: &[u8; 32],
        snap: &Snapshot,
        mine: &[(&Manifest, usize)],
    ) -> Checked {
        let name = node.name();
        let shard_size = |m: &Manifest| m.shard_file_len();
        let mut expected: Vec<StoredShard> = mine
            .iter()
            .map(|(m, i)| StoredShard {
                key: ShardKey {
                    object: m.id,
                    index: *i as u8,
                },
                size: shard_size(m),
            })
            .collect();
        let want = holdings_root(nonce, &mut expected);
        let mut report = DeletionCheck {
            expected_shards: want.count,
            held_shards: held.count,
            root_matches: want == *held,
            holds_exactly_expected: want == *held,
            extra: Vec::new(),
            missing: Vec::new(),
            wrong_size: Vec::new(),
            ignored: 0,
            error: None,
        };
        let mut bytes = 0u64;
        if report.root_matches {
            return Checked { report, bytes };
        }
        let listing = match node.list() {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(format!(
                    "the roots differ but the shards cannot be listed: {e}"
                ));
                return Checked { report, bytes };
            }
        };
        bytes += 8 + LIST_ENTRY_BYTES * listing.shards.len() as u64;
        // Read after the listing: an object whose seal started before it
        // was listed is in this set until its manifest is published.
        let in_flight = self.intents().in_flight();
        let on_node: BTreeMap<ShardKey, u64> =
            listing.shards.iter().map(|s| (s.key, s.size)).collect();
        let should: BTreeMap<ShardKey, (&Manifest, usize)> = mine
            .iter()
            .map(|&(m, i)| {
                (
                    ShardKey {
                        object: m.id,
                        index: i as u8,
                    },
                    (m, i),
                )
            })
            .collect();
        for (&key, &size) in &on_node {
            match should.get(&key) {
                Some(&(m, i)) if size != shard_size(m) => {
                    if self.still_expected(m, i, name) {
                        report.wrong_size.push(ShardDiff {
                            object: key.object.to_hex(),
                            index: key.index,
                            size: Some(size),
                            expected_size: Some(shard_size(m)),
                            why: "held with the wrong size (truncated or altered)".into(),
                        });
                    } else {
                        report.ignored += 1;
                    }
                }
                Some(_) => {}
                None => {
                    if snap.damaged.contains(&key.object) || in_flight.contains(&key.object) {
                        report.ignored += 1;
                        continue;
                    }
                    let why = match self.dispersal().store().manifest(&key.object) {
                        // Placed here now (written meanwhile), or recorded
                        // missing on this node (repair debt, scrub's job).
                        Ok(Some(cur))
                            if cur.placement.get(key.index as usize).map(String::as_str)
                                == Some(name) =>
                        {
                            report.ignored += 1;
                            continue;
                        }
                        Ok(Some(cur)) => match cur.placement.get(key.index as usize) {
                            Some(other) => format!(
                                "shard {} of this object belongs on {other} now (moved away, not deleted here)",
                                key.index
                            ),
                            None => format!("the object has no shard {}", key.index),
                        },
                        Ok(None) => "its object was deleted (no manifest)".to_string(),
                        Err(_) => {
                            report.ignored += 1;
                            continue;
                        }
                    };
                    // Still there now? A delete or move may have finished
                    // since the listing.
                    bytes += HEADER_READ_BYTES;
                    match node.read_header(key) {
                        Err(e) if matches!(e.kind, NodeErrorKind::NotFound) => {
                            report.ignored += 1;
                        }
                        _ => report.extra.push(ShardDiff {
                            object: key.object.to_hex(),
                            index: key.index,
                            size: Some(size),
                            expected_size: None,
                            why,
                        }),
                    }
                }
            }
        }
        for (&key, &(m, i)) in &should {
            if on_node.contains_key(&key) {
                continue;
            }
            if !self.still_expected(m, i, name) {
                report.ignored += 1;
                continue;
            }
            bytes += HEADER_READ_BYTES;
            match node.read_header(key) {
                // Written after the listing (a repair put it back).
                Ok(_) => report.ignored += 1,
                Err(e) => report.missing.push(ShardDiff {
                    object: key.object.to_hex(),
                    index: key.index,
                    size: None,
                    expected_size: Some(shard_size(m)),
                    why: if e.is_not_found() {
                        "not on the node".into()
                    } else {
                        e.kind.to_string()
                    },
                }),
            }
        }
        report.holds_exactly_expected =
            report.extra.is_empty() && report.missing.is_empty() && report.wrong_size.is_empty();
        Checked { report, bytes }
    }
}
