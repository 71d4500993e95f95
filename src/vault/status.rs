//! `qsfs status`: what the vault holds, what it costs, and how its nodes,
//! keys and random source are doing.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Vault, VaultError};
use crate::entropy::SourceStatus;
use crate::node::NodeHealth;
use crate::sys::FsSpace;

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
    /// Bytes of those shard files.
    pub bytes: u64,
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
    pub links: Vec<super::LinkStatus>,
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
    /// Missing or damaged shards over all objects.
    pub missing_shards: u64,
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
        let (files, directories, _) = self.ns.counts()?;
        let logical = self.ns.file_bytes()?;
        let (mut objects, mut stored, mut degraded, mut missing) = (0u64, 0u64, 0u64, 0u64);
        let mut expected: HashMap<String, u64> = HashMap::new();
        for m in self.ec.store().manifests() {
            let m = m?;
            objects += 1;
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
        let mut listed: HashMap<String, Result<(u64, u64, u64), String>> = HashMap::new();
        let holdings = self.holdings_with(|node| {
            let l = node.list().map_err(|e| e.to_string());
            listed.insert(
                node.name().to_string(),
                l.as_ref()
                    .map(|l| {
                        (
                            l.shards.len() as u64,
                            l.shards.iter().map(|s| s.size).sum(),
                            l.leftovers.len() as u64,
                        )
                    })
                    .map_err(Clone::clone),
            );
            l
        })?;
        let nodes = self
            .ec
            .nodes()
            .iter()
            .map(|node| {
                let (found, bytes, leftovers, list_error) = match listed.remove(node.name()) {
                    Some(Ok((f, b, l))) => (f, b, l, None),
                    Some(Err(e)) => (0, 0, 0, Some(e)),
                    None => (0, 0, 0, Some("not listed".to_string())),
                };
                let missing = holdings
                    .get(node.name())
                    .map(|(h, _)| h.missing())
                    .unwrap_or(0);
                NodeStatus {
                    name: node.name().to_string(),
                    location: node.location(),
                    health: match (node.health(), list_error) {
                        (NodeHealth::Ok, Some(e)) => {
                            NodeHealth::Offline(format!("cannot list its shards: {e}"))
                        }
                        (NodeHealth::Ok, None) => match node.probe_write() {
                            Ok(()) => NodeHealth::Ok,
                            Err(why) => NodeHealth::ReadOnly(why),
                        },
                        (other, _) => other,
                    },
                    shards_expected: expected.get(node.name()).copied().unwrap_or(0),
                    shards_found: found,
                    shards_missing: missing,
                    bytes,
                    leftovers,
                    space: node.space(),
                }
            })
            .collect();
        let (r2, r2_ok) = self.keys.r2_location();
        Ok(Status {
            vault: self.root.clone(),
            links: self.links(),
            vault_id: self.config.vault_id.clone(),
            k: self.config.k,
            n: self.config.n,
            write_quorum: self.config.quorum(),
            codec: self
                .ec
                .codec(self.config.k, self.config.n)?
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
            pending_deletions: self.ns.gc_queue()?.len() as u64,
            random: match self.random() {
                Ok(r) => r.describe(),
                // Status must work while the source is away; say why.
                Err(e) => SourceStatus {
                    kind: match &self.config.random {
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
            keystore_r1: self.keys.r1_path().to_path_buf(),
            keystore_r2: r2,
            keystore_r2_available: r2_ok,
            nodes,
            mount: None,
        })
    }
}
