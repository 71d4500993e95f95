//! What `qsfs fsck` found and what it did about it. Plain data (serde):
//! it crosses a mounted vault's control socket as JSON and the command
//! line renders it.

use serde::{Deserialize, Serialize};

use crate::maint::keys::KeyIssue;
use crate::maint::nodes::NotChecked;

/// How to run fsck.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckOptions {
    /// Remove orphans, finish pending deletions and record repair debt for
    /// missing or damaged shards. Names are never removed.
    pub repair: bool,
}

/// One node as fsck saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeScan {
    /// Node name.
    pub node: String,
    /// Shard files listed.
    pub shards: u64,
    /// Temporary files listed.
    pub leftovers: u64,
    /// Shards the manifests place here (not recorded missing) that the
    /// node does not hold: its share of `shard_problems` that are
    /// "missing", what `qsfs status` counts as its `placed_missing`.
    #[serde(default)]
    pub missing: u64,
    /// Why its shards were not checked (a missing folder, one without the
    /// node marker, another vault's node, no answer); none when checked.
    #[serde(default)]
    pub not_checked: Option<NotChecked>,
    /// What to do about it, when not checked.
    #[serde(default)]
    pub next_step: Option<String>,
    /// `not_checked` as text (kept for scripts that read it).
    pub error: Option<String>,
}

/// Why a file cannot be read as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum FileProblem {
    /// The object has no manifest.
    ManifestMissing,
    /// The manifest record cannot be decoded.
    ManifestDamaged {
        /// The decoder's complaint.
        detail: String,
    },
    /// Fewer than `k` shards are on the nodes.
    TooFewShards {
        /// Shards found where the manifest places them, with the right size.
        present: u64,
        /// Shards a read needs.
        k: u64,
    },
    /// A key share or the backup record is missing or damaged.
    Key {
        /// Which.
        issue: KeyIssue,
    },
}

/// A file (a name) whose object is damaged. fsck never removes names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokenFile {
    /// Vault path (None: an unlinked file still open in a mount).
    pub path: Option<String>,
    /// The object (hex).
    pub object: String,
    /// What is wrong.
    pub problems: Vec<FileProblem>,
    /// True if the file can still be read (and healed: `qsfs keys repair`
    /// for key problems).
    pub readable: bool,
}

/// An object-level orphan: a manifest, key record or backup record that no
/// name points at and no write is using.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Orphan {
    /// The object (hex).
    pub object: String,
    /// Destroyed (keys, backup record, shards, manifest).
    pub repaired: bool,
}

/// Why a shard file is an orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrphanReason {
    /// Its object has no manifest (and no name, and no write in flight).
    NoManifest,
    /// The manifest places this shard index on another node (a stale copy).
    WrongNode,
    /// The object has no shard with this index.
    BadIndex,
}

/// A shard file that belongs nowhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrphanShard {
    /// Node holding it.
    pub node: String,
    /// `object/index`.
    pub shard: String,
    /// Why it is an orphan.
    pub reason: OrphanReason,
    /// Deleted.
    pub repaired: bool,
    /// Why it was kept, if it was.
    pub note: Option<String>,
}

/// A temporary file of a write that never committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leftover {
    /// Node holding it.
    pub node: String,
    /// The file, as the node names it.
    pub file: String,
    /// Deleted.
    pub repaired: bool,
    /// Why it was kept, if it was.
    pub note: Option<String>,
}

/// What is wrong with a shard the manifest places on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ShardFault {
    /// Not on its node.
    Missing,
    /// The file has the wrong length.
    WrongSize {
        /// Bytes on the node.
        size: u64,
        /// Bytes it should have.
        expected: u64,
    },
    /// The header is unreadable or describes another layout.
    BadHeader {
        /// What disagrees.
        detail: String,
    },
}

/// A missing or damaged shard of an object that has a manifest. fsck does
/// not rebuild shards (`qsfs scrub --repair` does); with `--repair` it
/// records them as repair debt in the manifest, so manifests and nodes
/// agree and reads skip them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardProblem {
    /// Node the manifest places it on.
    pub node: String,
    /// `object/index`.
    pub shard: String,
    /// What is wrong.
    pub fault: ShardFault,
    /// Recorded as repair debt.
    pub repaired: bool,
}

/// Deletions queued by earlier runs and not finished yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PendingDeletions {
    /// Objects in the deletion queue (hex).
    pub gc: Vec<String>,
    /// Deleted objects whose R2 share waits for its store (hex).
    pub r2_cleanup: Vec<String>,
    /// The queues were run and are empty now.
    pub finished: bool,
}

/// The staging folder (reported only: a mount's recovery seals or drops
/// what is there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StagingState {
    /// Files with unsealed writes: staging journals (`staging/journal/`)
    /// plus staging records older versions left in the namespace.
    pub pending_seals: u64,
    /// Staged file data in `VAULT/staging`: the files named `<ino>` or
    /// `<ino>.<piece>` (journals, stock files and spools are not listed).
    pub files: Vec<String>,
    /// Copies of standard input kept by a failed `qsfs put -`
    /// (`failed-stdin-*`, full paths): plaintext the user has to store
    /// again or delete.
    #[serde(default)]
    pub kept_stdin: Vec<String>,
}

/// Everything fsck found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FsckReport {
    /// Whether this was a `--repair` run.
    pub repair: bool,
    /// The nodes.
    pub nodes: Vec<NodeScan>,
    /// Manifests (objects on the erasure-coding side).
    pub objects: u64,
    /// Objects that names point at.
    pub named: u64,
    /// Shard files listed on all nodes.
    pub shards: u64,
    /// Nodes whose shards could not be checked (see each node's
    /// `not_checked`). Never clean while above 0: what was not looked at
    /// is not known to be fine.
    #[serde(default)]
    pub nodes_not_checked: u64,
    /// Objects left alone because a write or deletion holds them.
    pub in_flight: u64,
    /// Names pointing at damaged objects (never removed by fsck).
    pub broken_files: Vec<BrokenFile>,
    /// Manifests no name points at.
    pub orphan_objects: Vec<Orphan>,
    /// R1/R2 records with neither manifest nor name.
    pub orphan_keys: Vec<Orphan>,
    /// Backup records with neither manifest nor name.
    pub orphan_backups: Vec<Orphan>,
    /// Shard files that belong nowhere.
    pub orphan_shards: Vec<OrphanShard>,
    /// Temporary files of writes that never committed.
    pub leftovers: Vec<Leftover>,
    /// Missing or damaged shards of live objects.
    pub shard_problems: Vec<ShardProblem>,
    /// Unfinished deletions.
    pub pending: PendingDeletions,
    /// The staging folder.
    pub staging: StagingState,
    /// Repairs that failed.
    pub errors: Vec<String>,
    /// Nothing is wrong any more: nothing was found, or everything found
    /// was repaired.
    pub clean: bool,
}

impl FsckReport {
    /// Findings that are still wrong after this run.
    pub fn unresolved(&self) -> usize {
        let orphans = [
            &self.orphan_objects,
            &self.orphan_keys,
            &self.orphan_backups,
        ]
        .iter()
        .flat_map(|v| v.iter())
        .filter(|o| !o.repaired)
        .count();
        self.nodes
            .iter()
            .filter(|n| n.not_checked.is_some())
            .count()
            + self.broken_files.len()
            + orphans
            + self.orphan_shards.iter().filter(|o| !o.repaired).count()
            + self.leftovers.iter().filter(|o| !o.repaired).count()
            + self.shard_problems.iter().filter(|o| !o.repaired).count()
            + if self.pending.finished {
                0
            } else {
                self.pending.gc.len() + self.pending.r2_cleanup.len()
            }
            + self.errors.len()
    }

    /// Findings in total, repaired or not.
    pub fn found(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.not_checked.is_some())
            .count()
            + self.broken_files.len()
            + self.orphan_objects.len()
            + self.orphan_keys.len()
            + self.orphan_backups.len()
            + self.orphan_shards.len()
            + self.leftovers.len()
            + self.shard_problems.len()
            + self.pending.gc.len()
            + self.pending.r2_cleanup.len()
    }
}
