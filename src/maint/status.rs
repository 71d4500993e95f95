//! `qsfs status`: what the vault holds, what it costs, and how its nodes,
//! keys and random source are doing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::entropy::SourceStatus;
use crate::node::NodeHealth;
use crate::sys::FsSpace;
use crate::vault::{Vault, VaultError};

/// One node in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Name.
    pub name: String,
    /// Folder or address.
    pub location: String,
    /// Health.
    pub health: NodeHealth,
    /// Shards the manifests place on this node (and believe present).
    pub shards_expected: u64,
    /// Shard files found on the node.
    pub shards_found: u64,
    /// Shards the manifests place on this node that it does not hold
    /// (gone, or the node cannot be listed): `qsfs scrub`'s "missing".
    /// Above 0 on a node that answers, its health reads "damaged" in
    /// `qsfs status` and `qsfs node list`.
    pub shards_missing: u64,
    /// Of the shards placed here, those recorded missing in their
    /// manifest (repair debt): never placed by a degraded write, or
    /// recorded missing by a read, `fsck --repair` or scrub.
    #[serde(default)]
    pub shards_unplaced: u64,
    /// Of the shards placed here and not recorded missing, those the
    /// node's listing lacks: what `qsfs fsck` lists as "missing" on this
    /// node. 0 on a node that was not checked.
    #[serde(default)]
    pub placed_missing: u64,
    /// Shards placed here (not recorded missing) on a node that could
    /// not be checked: neither held nor missing as far as anyone knows.
    #[serde(default)]
    pub placed_unchecked: u64,
    /// Why the node's shards could not be checked (the reason `qsfs fsck`
    /// gives too).
    #[serde(default)]
    pub not_checked: Option<super::nodes::NotChecked>,
    /// What to do about it, when not checked.
    #[serde(default)]
    pub next_step: Option<String>,
    /// Why the node counts as degraded: reads went around it lately
    /// (hedged reads), or it answered this status far slower than its
    /// peers. It still works; its data is not at risk.
    #[serde(default)]
    pub degraded: Option<String>,
    /// Bytes of those shard files.
    pub bytes: u64,
    /// Bytes of its packs that hold deleted shards, until a repack.
    #[serde(default)]
    pub dead_bytes: u64,
    /// Temporary files of interrupted writes.
    pub leftovers: u64,
    /// Capacity of its storage.
    pub space: Option<FsSpace>,
}

/// The whole status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Vault folder.
    pub vault: PathBuf,
    /// How each node is reached, and its link's keys.
    pub links: Vec<crate::vault::LinkStatus>,
    /// Vault id.
    pub vault_id: String,
    /// Data chunks per stripe.
    pub k: usize,
    /// Shards per object.
    pub n: usize,
    /// Shards that must be durable for a write.
    pub write_quorum: usize,
    /// Reed-Solomon backend in use.
    pub codec: String,
    /// Regular files.
    pub files: u64,
    /// Directories (the root included).
    pub directories: u64,
    /// Sealed objects.
    pub objects: u64,
    /// Apparent size of the files: the sum of their sizes, holes
    /// included (as `du --apparent-size`), each hard-linked file once.
    /// Not the objects' plaintext: a mount stores a partial rewrite as a
    /// new object laid over the old one, so objects overlap.
    pub logical_bytes: u64,
    /// Bytes the objects occupy on the nodes (headers included).
    pub stored_bytes: u64,
    /// stored / logical: what each byte of the files costs on the nodes
    /// (n/k and headers, plus any overwritten parts of objects that still
    /// serve the rest of their file; holes cost nothing).
    pub overhead: f64,
    /// Objects with missing or damaged shards (repair debt).
    pub degraded_objects: u64,
    /// Missing or damaged shards over all objects, as their manifests
    /// record them (repair debt); the same count as `shards_unplaced`.
    pub missing_shards: u64,
    /// Shards recorded missing in their manifests: never placed by a
    /// degraded write, or recorded missing by a read, `fsck --repair` or
    /// scrub. The catalogue knows about these.
    #[serde(default)]
    pub shards_unplaced: u64,
    /// Shards the manifests place on a node (and do not record missing)
    /// that the node, checked, does not hold: lost behind the catalogue's
    /// back. Over all nodes this is what `qsfs fsck` lists as missing;
    /// `fsck --repair` turns them into `shards_unplaced`.
    #[serde(default)]
    pub placed_missing: u64,
    /// Shards the manifests place on nodes that could not be checked
    /// (see each node's `not_checked`): `qsfs fsck` names those nodes
    /// "not checked" instead of counting their shards.
    #[serde(default)]
    pub placed_unchecked: u64,
    /// Objects waiting to be destroyed.
    pub pending_deletions: u64,
    /// The random source.
    pub random: SourceStatus,
    /// R1 store folder.
    pub keystore_r1: PathBuf,
    /// R2 store folder.
    pub keystore_r2: PathBuf,
    /// Whether the R2 store is reachable.
    pub keystore_r2_available: bool,
    /// How the vault key is unwrapped (empty: a vault from before unlock
    /// methods, its key records in clear).
    #[serde(default)]
    pub unlock: Vec<crate::unlock::MethodInfo>,
    /// Each key holder and whether it answers.
    #[serde(default)]
    pub holders: Vec<crate::unlock::HolderHealth>,
    /// Live epoch keys of the key records.
    #[serde(default)]
    pub epochs: u64,
    /// Deleted key records waiting for a shred pass.
    #[serde(default)]
    pub pending_shreds: u64,
    /// Generation of the last metadata snapshot on the nodes (0: none).
    #[serde(default)]
    pub meta_backup: u64,
    /// Journal entries on the nodes after that snapshot.
    #[serde(default)]
    pub meta_journal_entries: u64,
    /// Where new files' backup records B go: "client" or "nodes".
    #[serde(default)]
    pub backup_records: String,
    /// Per-node details.
    pub nodes: Vec<NodeStatus>,
    /// What the mount holds that is not sealed yet, when the status came
    /// from the process serving the mount (`qsfs status` on a mounted
    /// vault); none for a vault opened directly.
    #[serde(default)]
    pub mount: Option<MountStatus>,
}

/// Staged data of a live mount.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MountStatus {
    /// Files with changes not yet committed.
    pub staged_files: u64,
    /// Their staged (written, not yet sealed) bytes.
    pub staged_bytes: u64,
    /// Files whose last seal failed; the mount retries them in the
    /// background until the nodes take them.
    pub failing_files: u64,
}

impl Vault {
    /// Gathers the status (walks manifests and node folders).
    pub fn status(&self) -> Result<Status, VaultError> {
        let (files, directories, _) = self.namespace().counts()?;
        let logical = self.namespace().file_bytes()?;
        let (mut objects, mut stored, mut degraded, mut missing) = (0u64, 0u64, 0u64, 0u64);
        let mut expected: HashMap<String, u64> = HashMap::new();
        // Metadata snapshots are shards like any other, but no file's
        // object.
        let meta = self.meta_ids()?;
        for m in self.dispersal().store().manifests() {
            let m = m?;
            // They occupy the nodes, so their bytes count as stored.
            if !meta.contains(&m.id) {
                objects += 1;
            }
            stored += m.stored_bytes();
            if m.missing != 0 {
                degraded += 1;
                missing += m.missing.count_ones() as u64;
            }
            for (i, name) in m.placement.iter().enumerate() {
                if !m.is_missing(i) {
                    *expected.entry(name.clone()).or_default() += 1;
                }
            }
        }
        // One listing per node serves both the counts of what it holds and
        // the holdings (placed, held, lost), so the two cannot disagree.
        let mut listed: HashMap<String, (u64, u64, u64, u64)> = HashMap::new();
        let mut took: HashMap<String, Duration> = HashMap::new();
        let holdings = self.holdings_with(|node| {
            let start = Instant::now();
            let l = self.check_listing(node);
            took.insert(node.name().to_string(), start.elapsed());
            let l = l?;
            listed.insert(
                node.name().to_string(),
                (
                    l.shards.len() as u64,
                    l.shards.iter().map(|s| s.size).sum(),
                    l.leftovers.len() as u64,
                    l.dead_bytes,
                ),
            );
            Ok(l)
        })?;
        let nodes: Vec<NodeStatus> = self
            .dispersal()
            .nodes()
            .iter()
            .map(|node| {
                let (found, bytes, leftovers, dead_bytes) =
                    listed.remove(node.name()).unwrap_or((0, 0, 0, 0));
                let (h, not_checked) = holdings.get(node.name()).cloned().unwrap_or_default();
                let unchecked = if not_checked.is_some() {
                    h.placed - h.debt
                } else {
                    0
                };
                NodeStatus {
                    name: node.name().to_string(),
                    location: node.location(),
                    health: match (node.health(), &not_checked) {
                        (NodeHealth::Ok, Some(why)) => NodeHealth::Offline(why.to_string()),
                        (NodeHealth::Ok, None) => match node.probe_write() {
                            Ok(()) => NodeHealth::Ok,
                            Err(why) => NodeHealth::ReadOnly(why),
                        },
                        (other, _) => other,
                    },
                    shards_expected: expected.get(node.name()).copied().unwrap_or(0),
                    shards_found: found,
                    shards_missing: h.missing(),
                    shards_unplaced: h.debt,
                    placed_missing: h.lost,
                    placed_unchecked: unchecked,
                    next_step: not_checked
                        .as_ref()
                        .map(|why| why.next_step(self.root(), node.name())),
                    not_checked,
                    degraded: self
                        .dispersal()
                        .slow_nodes()
                        .describe(node.name())
                        .or_else(|| slower_than_peers(node.name(), &took)),
                    bytes,
                    dead_bytes,
                    leftovers,
                    space: node.space(),
                }
            })
            .collect();
        let (r2, r2_ok) = self.keystore().r2_location();
        Ok(Status {
            vault: self.root().to_path_buf(),
            links: self.links(),
            vault_id: self.config().vault_id.clone(),
            k: self.config().k,
            n: self.config().n,
            write_quorum: self.config().quorum(),
            codec: self
                .dispersal()
                .codec(self.config().k, self.config().n)?
                .backend()
                .name()
                .to_string(),
            files,
            directories,
            objects,
            logical_bytes: logical,
            stored_bytes: stored,
            overhead: if logical > 0 {
                stored as f64 / logical as f64
            } else {
                0.0
            },
            degraded_objects: degraded,
            missing_shards: missing,
            shards_unplaced: missing,
            placed_missing: nodes.iter().map(|n| n.placed_missing).sum(),
            placed_unchecked: nodes.iter().map(|n| n.placed_unchecked).sum(),
            pending_deletions: self.namespace().gc_queue()?.len() as u64,
            random: match self.random() {
                Ok(r) => r.describe(),
                // Status must work while the source is away; say why.
                Err(e) => SourceStatus {
                    kind: match &self.config().random {
                        crate::entropy::EntropyConfig::Os => "os",
                        crate::entropy::EntropyConfig::Device { .. } => "device",
                        crate::entropy::EntropyConfig::Pool { .. } => "pool",
                    }
                    .into(),
                    path: None,
                    remaining: None,
                    total: None,
                    note: Some(format!("UNAVAILABLE: {e}")),
                },
            },
            keystore_r1: self.keystore().r1_path().to_path_buf(),
            keystore_r2: r2,
            keystore_r2_available: r2_ok,
            unlock: self.unlock_methods()?,
            holders: crate::unlock::holder_health(self.root(), &self.config().vault_id)?,
            epochs: self
                .keystore()
                .epochs()
                .map_or(0, |e| e.live().len() as u64),
            pending_shreds: self.pending_shreds()?,
            meta_backup: self.last_meta_backup()?.map_or(0, |(_, g)| g),
            meta_journal_entries: self.meta_journal_entries()?,
            backup_records: match self.config().keystore.backup {
                crate::vault::BackupPlace::Client => "client".into(),
                crate::vault::BackupPlace::Nodes => "nodes".into(),
            },
            nodes,
            mount: None,
        })
    }
}

/// A node that answered far slower than its peers: at least
/// [`SLOW_ANSWER`] and [`SLOW_FACTOR`] times their median.
const SLOW_ANSWER: Duration = Duration::from_secs(1);
const SLOW_FACTOR: u32 = 5;

/// Why `node` counts as slow, from how long each node took to answer.
fn slower_than_peers(node: &str, took: &HashMap<String, Duration>) -> Option<String> {
    let mine = *took.get(node)?;
    let mut peers: Vec<Duration> = took
        .iter()
        .filter(|(n, _)| n.as_str() != node)
        .map(|(_, d)| *d)
        .collect();
    if peers.is_empty() {
        return None;
    }
    peers.sort();
    let median = peers[peers.len() / 2];
    (mine >= SLOW_ANSWER && mine >= median * SLOW_FACTOR).then(|| {
        format!(
            "slow: answered in {:.1} s, its peers in {:.2} s (median)",
            mine.as_secs_f32(),
            median.as_secs_f32()
        )
    })
}
