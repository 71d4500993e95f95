//! The vault's nodes over time: `qsfs node list`, `qsfs node add` and
//! `qsfs node remove`, and the one writer of `qsfs.toml` after `init`.
//!
//! Adding and removing change `qsfs.toml` and take effect the next time the
//! vault opens; they consume the open [`Vault`] (whose lock keeps other qsfs
//! processes out meanwhile) so nothing keeps using the old node list.
//! Moving shards off a node is drain.rs; spreading them out is rebalance.rs.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::node::{DirNode, Listing, Node, NodeHealth, ShardKey};
use crate::vault::config::{Config, NodeConfig};
use crate::vault::{Vault, VaultError, io_err};

/// Serialises edits of `qsfs.toml` within this process (a drain from a
/// mount's control socket next to another one).
static CONFIG_EDIT: Mutex<()> = Mutex::new(());

/// One node in `qsfs node list`. Its counts are those of `qsfs scrub`:
/// `shards` is scrub's "ok" plus "corrupt" (held, but only reading them
/// tells good from bad), `missing` is scrub's "missing".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Name from qsfs.toml.
    pub name: String,
    /// `dir` or `remote`.
    pub kind: String,
    /// Folder or address.
    pub location: String,
    /// `ok`, `damaged` (it answers but lacks shards the manifests place
    /// there), `offline`, `read-only` or `foreign`.
    pub health: String,
    /// Why it is not ok, and what to do.
    pub problem: Option<String>,
    /// Being drained: no new shards go there.
    pub draining: bool,
    /// Shards the manifests place on it.
    pub placed: u64,
    /// Of those, the shard files the node holds (its listing has them).
    pub shards: u64,
    /// Of those, the ones it does not hold (gone, or the node cannot be
    /// listed): reads go around them, `qsfs scrub --repair` rebuilds them.
    pub missing: u64,
    /// Of the placed shards, the ones recorded missing in their manifest
    /// (repair debt, whether or not the file is there).
    pub debt: u64,
    /// Bytes of the held shards (headers included).
    pub bytes: u64,
    /// Free bytes of its storage, when it can tell.
    pub free_bytes: Option<u64>,
    /// Size of its storage, when it can tell.
    pub total_bytes: Option<u64>,
}

/// The health word of a node that answers but lacks shards the manifests
/// place on it, or holds damaged ones: one word for `scrub`, `node list`
/// and `status`.
pub const DAMAGED: &str = "damaged";

/// "3 shards missing", "2 shards corrupt", "3 shards missing, 2 corrupt".
pub fn damage_detail(missing: u64, corrupt: u64) -> String {
    match (missing, corrupt) {
        (m, 0) => format!("{m} {} missing", plural(m, "shard")),
        (0, c) => format!("{c} {} corrupt", plural(c, "shard")),
        (m, c) => format!("{m} {} missing, {c} corrupt", plural(m, "shard")),
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Why a node's shards could not be checked: its listing would be no
/// verdict. Typed so that `fsck`, `status` and their JSON say which case it
/// is and give the right next step, instead of passing on whatever error
/// text the listing produced (for a missing folder that read "shard not
/// found", which sent users looking for a shard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum NotChecked {
    /// The node's folder does not exist (a lost disk, a deleted folder).
    #[error("its folder {} is missing", .path.display())]
    FolderMissing {
        /// The folder qsfs.toml names.
        path: PathBuf,
    },
    /// The folder is there but holds no qsfs node marker: the mount point
    /// of a disk that is not mounted, or a new empty disk. Listing it
    /// would call every shard missing when the disk is merely away.
    #[error("its folder {} has no qsfs node marker (a disk not mounted there, or a new empty one)", .path.display())]
    NoMarker {
        /// The folder qsfs.toml names.
        path: PathBuf,
    },
    /// The folder or server belongs to another vault or node.
    #[error("it is not this vault's node: {detail}")]
    Foreign {
        /// What it is instead.
        detail: String,
    },
    /// The node did not answer, or its listing failed.
    #[error("it could not be reached or listed: {detail}")]
    Unreachable {
        /// The node's or the link's error.
        detail: String,
    },
}

impl NotChecked {
    /// What to do about it, naming the vault and node so it can be run as
    /// it stands. Adopting or removing a node needs the vault unmounted
    /// (both take the vault lock the mount holds), hence the `qsfs umount`.
    pub fn next_step(&self, vault: &Path, node: &str) -> String {
        let v = vault.display();
        match self {
            NotChecked::FolderMissing { path } => format!(
                "restore the folder {} (mount its disk, or bring back its contents); if it is lost for \
                 good, make an empty folder there (the new disk's mount point) and, after `qsfs \
                 umount MOUNTPOINT` if the vault is mounted, run `qsfs node adopt {v} {node}`, then `qsfs scrub {v} \
                 --repair` rebuilds its shards; or add a node and run `qsfs node remove {v} {node} \
                 --force`",
                path.display()
            ),
            NotChecked::NoMarker { path } => format!(
                "if a disk belongs at {}, mount it; if it is a replaced, empty disk, run (after `qsfs \
                 umount MOUNTPOINT` if the vault is mounted) `qsfs node adopt {v} {node}`, then `qsfs scrub {v} \
                 --repair`",
                path.display()
            ),
            NotChecked::Foreign { .. } => format!(
                "check the path or address of {node} in {}",
                vault.join("qsfs.toml").display()
            ),
            NotChecked::Unreachable { .. } => format!(
                "bring {node} back (mount its disk, start its node server, check the network), then \
                 run the check again"
            ),
        }
    }
}

/// What the manifests place on one node and what of it the node holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Holding {
    /// Shards placed there.
    pub placed: u64,
    /// Of those, held (in the node's listing).
    pub held: u64,
    /// Bytes of the held ones, headers included.
    pub held_bytes: u64,
    /// Of the placed ones, recorded missing in their manifest.
    pub debt: u64,
    /// Of the placed ones not recorded missing, those the node's listing
    /// lacks: lost without the manifests knowing, what `qsfs fsck` lists
    /// as "missing". Counted only on a node that was checked.
    pub lost: u64,
}

impl Holding {
    /// Placed but not held.
    pub fn missing(&self) -> u64 {
        self.placed - self.held
    }
}

/// `qsfs node add`: a folder or a node server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddNodeOptions {
    /// Its name (unique in the vault).
    pub name: String,
    /// A folder for a `dir` node (created if missing; must be empty).
    pub dir: Option<PathBuf>,
    /// `host:port` of a `qsfs node serve` for a `remote` node.
    pub address: Option<String>,
    /// Key pool file of the link to a remote node (the vault's end A).
    pub keypool: Option<PathBuf>,
    /// Reach the remote node without link encryption.
    pub insecure_plaintext: bool,
}

/// What `qsfs node add` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddNodeReport {
    /// The new node.
    pub name: String,
    /// `dir` or `remote`.
    pub kind: String,
    /// Folder or address.
    pub location: String,
    /// Key pool pair made for its in-process link, if one was made.
    pub link_pools: Option<(PathBuf, PathBuf)>,
    /// A remote link's pool taken into the vault sealed: (the original,
    /// the vault's copy). The original still holds the keys in clear.
    pub imported_pool: Option<(PathBuf, PathBuf)>,
}

/// `qsfs node remove`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemoveNodeOptions {
    /// The node.
    pub name: String,
    /// Remove it although manifests still place shards there: those shards
    /// become repair debt (`qsfs scrub --repair` rebuilds them elsewhere).
    pub force: bool,
}

/// What `qsfs node remove` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveNodeReport {
    /// The node removed from qsfs.toml.
    pub name: String,
    /// Its folder, left in place (delete it by hand once it is not needed).
    pub folder: Option<PathBuf>,
    /// Shards it still held that became repair debt (with --force).
    pub shards_abandoned: u64,
    /// Objects that lost a shard that way.
    pub objects_degraded: u64,
}

fn config_err(root: &Path, detail: String) -> VaultError {
    VaultError::Config {
        file: root.join("qsfs.toml"),
        detail,
    }
}

/// Writes `cfg` as the vault's `qsfs.toml` atomically: temporary file,
/// fsync, rename, fsync of the folder. A crash leaves the old or the new
/// file, never a torn one.
pub(super) fn save_config(root: &Path, cfg: &Config) -> Result<(), VaultError> {
    let file = root.join("qsfs.toml");
    cfg.check(&file)?;
    let text = cfg.to_toml()?;
    let tmp = root.join(".qsfs.toml.tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).map_err(io_err(format!("write {}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .map_err(io_err(format!("write {}", tmp.display())))?;
        f.sync_all()
            .map_err(io_err(format!("sync {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &file).map_err(io_err(format!("replace {}", file.display())))?;
    crate::sys::fsync_dir(root).map_err(io_err(format!("sync {}", root.display())))
}

/// Loads `qsfs.toml`, lets `edit` change it, and saves it atomically.
pub(super) fn edit_config<T>(
    root: &Path,
    edit: impl FnOnce(&mut Config) -> Result<T, VaultError>,
) -> Result<T, VaultError> {
    let _guard = CONFIG_EDIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cfg = Config::load(root)?;
    let value = edit(&mut cfg)?;
    save_config(root, &cfg)?;
    Ok(value)
}

/// Health as a word and a reason.
pub(super) fn health_words(h: &NodeHealth) -> (&'static str, Option<String>) {
    match h {
        NodeHealth::Ok => ("ok", None),
        NodeHealth::Offline(w) => ("offline", Some(w.clone())),
        NodeHealth::ReadOnly(w) => ("read-only", Some(w.clone())),
        NodeHealth::Foreign(w) => ("foreign", Some(w.clone())),
    }
}

impl Vault {
    /// Per node: what the manifests place there, how much of it the node
    /// holds by its listing, and why it could not be listed if it could
    /// not (then nothing counts as held). The manifests are read first and a shard
    /// the listing lacks is counted missing only if its current manifest
    /// still places it there, so an object deleted or moved meanwhile is
    /// not mistaken for damage (objects written meanwhile are not counted).
    pub(super) fn holdings(
        &self,
    ) -> Result<HashMap<String, (Holding, Option<NotChecked>)>, VaultError> {
        self.holdings_with(|node| self.check_listing(node))
    }

    /// [`Vault::holdings`] with the listings from `list` (called once per
    /// node, after the manifests were read).
    pub(super) fn holdings_with(
        &self,
        mut list: impl FnMut(&Arc<dyn Node>) -> Result<Listing, NotChecked>,
    ) -> Result<HashMap<String, (Holding, Option<NotChecked>)>, VaultError> {
        let mut placed: HashMap<String, Vec<(ShardKey, u64, bool)>> = HashMap::new();
        for m in self.dispersal().store().manifests() {
            // A damaged record must not hide every node's state (scrub and
            // fsck name it).
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            let shard_bytes = m.shard_file_len();
            for (i, name) in m.placement.iter().enumerate() {
                let key = ShardKey {
                    object: m.id,
                    index: i as u8,
                };
                placed
                    .entry(name.clone())
                    .or_default()
                    .push((key, shard_bytes, m.is_missing(i)));
            }
        }
        let mut out = HashMap::new();
        for node in self.dispersal().nodes() {
            let (listed, why): (HashSet<ShardKey>, Option<NotChecked>) = match list(node) {
                Ok(l) => (l.shards.into_iter().map(|s| s.key).collect(), None),
                Err(e) => (HashSet::new(), Some(e)),
            };
            let mut h = Holding::default();
            for (key, bytes, debt) in placed.get(node.name()).into_iter().flatten() {
                let held = listed.contains(key);
                if !held && why.is_none() {
                    let still = match self.dispersal().store().manifest(&key.object) {
                        Ok(Some(cur)) => {
                            cur.placement.get(key.index as usize).map(String::as_str)
                                == Some(node.name())
                        }
                        Ok(None) => false,
                        Err(_) => true,
                    };
                    if !still {
                        continue;
                    }
                }
                if held {
                    h.held += 1;
                    h.held_bytes += bytes;
                }
                h.placed += 1;
                h.debt += u64::from(*debt);
                if !held && !debt && why.is_none() {
                    h.lost += 1;
                }
            }
            out.insert(node.name().to_string(), (h, why));
        }
        Ok(out)
    }

    /// Lists `node`, or says why its listing would be no verdict. One rule
    /// for `fsck` and `status`, so both leave the same nodes unchecked: a
    /// missing folder, a folder without the node marker (an empty folder
    /// lists as "nothing held" although its disk may just not be mounted),
    /// another vault's node, or a node that does not answer.
    pub(super) fn check_listing(&self, node: &Arc<dyn Node>) -> Result<Listing, NotChecked> {
        let folder = self.node_folder(node.name());
        let missing = |f: &Option<PathBuf>| {
            f.as_ref()
                .filter(|p| matches!(std::fs::metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound))
                .map(|p| NotChecked::FolderMissing { path: p.clone() })
        };
        if let Some(why) = missing(&folder) {
            return Err(why);
        }
        match node.health() {
            NodeHealth::Ok | NodeHealth::ReadOnly(_) => {}
            NodeHealth::Foreign(detail) => return Err(NotChecked::Foreign { detail }),
            NodeHealth::Offline(detail) => {
                return Err(match &folder {
                    Some(path) if path.is_dir() && DirNode::marker_at(path).is_none() => {
                        NotChecked::NoMarker { path: path.clone() }
                    }
                    _ => missing(&folder).unwrap_or(NotChecked::Unreachable { detail }),
                });
            }
        }
        node.list().map_err(|e| {
            // The folder may have gone between the health check and the
            // listing.
            missing(&folder).unwrap_or(NotChecked::Unreachable {
                detail: e.to_string(),
            })
        })
    }

    /// Every configured node with its health and what the manifests place
    /// there, counted as `qsfs scrub` counts it.
    pub fn node_list(&self) -> Result<Vec<NodeInfo>, VaultError> {
        let holdings = self.holdings()?;
        Ok(self
            .dispersal()
            .nodes()
            .iter()
            .map(|node| {
                let kind = self
                    .config()
                    .nodes
                    .iter()
                    .find(|c| c.name == node.name())
                    .map(|c| c.kind.clone())
                    .unwrap_or_default();
                let (h, list_error) = holdings.get(node.name()).cloned().unwrap_or_default();
                let (mut health, mut problem) = health_words(&node.health());
                if health == "ok" {
                    if let Some(e) = list_error {
                        (health, problem) = ("offline", Some(format!("not checked: {e}")));
                    } else if h.missing() > 0 {
                        (health, problem) = (
                            DAMAGED,
                            Some(format!(
                                "{} of the {} shards placed here are missing; reads go around them; run \
                                 `qsfs scrub --repair`",
                                h.missing(),
                                h.placed
                            )),
                        );
                    }
                }
                let space = node.space();
                NodeInfo {
                    name: node.name().to_string(),
                    kind,
                    location: node.location(),
                    health: health.to_string(),
                    problem,
                    draining: self.dispersal().is_draining(node.name()),
                    placed: h.placed,
                    shards: h.held,
                    missing: h.missing(),
                    debt: h.debt,
                    bytes: h.held_bytes,
                    free_bytes: space.map(|s| s.available),
                    total_bytes: space.map(|s| s.total),
                }
            })
            .collect())
    }

    /// Adds a node to `qsfs.toml` (`qsfs node add`). A `dir` node's folder
    /// is created and marked as this vault's node; in a vault whose folders
    /// sit behind in-process QKD-keyed links (the default, unlike `init
    /// --direct`) it gets its own link and key pool pair like the others.
    /// Takes effect when the vault is next opened, hence `self` by value.
    pub fn add_node(self, opts: &AddNodeOptions) -> Result<AddNodeReport, VaultError> {
        let root = self.root().to_path_buf();
        let bad = |detail: String| VaultError::Config {
            file: PathBuf::from("qsfs node add options"),
            detail,
        };
        let cfg = Config::load(&root)?;
        if cfg.nodes.iter().any(|n| n.name == opts.name) {
            return Err(bad(format!(
                "a node named {:?} is already in {}; choose another name",
                opts.name,
                root.join("qsfs.toml").display()
            )));
        }
        let mut entry = NodeConfig {
            name: opts.name.clone(),
            ..Default::default()
        };
        let mut link_pools = None;
        let mut imported_pool = None;
        match (&opts.dir, &opts.address) {
            (Some(dir), None) => {
                if opts.keypool.is_some() || opts.insecure_plaintext {
                    return Err(bad(
                        "--keypool and --insecure-plaintext are for remote nodes (--address); a \
                         --dir node gets an in-process link like the vault's other folders"
                            .into(),
                    ));
                }
                let path = std::path::absolute(dir)
                    .map_err(io_err(format!("resolve {}", dir.display())))?;
                entry.kind = "dir".into();
                entry.path = Some(path.clone());
                let mut trial = cfg.clone();
                trial.nodes.push(entry.clone());
                trial.check(&root.join("qsfs.toml"))?;
                if let Some((vault, node)) = DirNode::marker_at(&path)
                    && (vault != cfg.vault_id || node != opts.name)
                {
                    return Err(bad(format!(
                        "{} is already node {node} of vault {vault}; give an empty or new folder",
                        path.display()
                    )));
                }
                DirNode::new(&opts.name, &path, &cfg.vault_id)
                    .initialize_packing(cfg.packs)
                    .map_err(|e| bad(e.to_string()))?;
                let linked = cfg
                    .nodes
                    .iter()
                    .any(|n| n.kind == "dir" && n.node_keypool.is_some());
                if linked {
                    let seal = self.link_seal();
                    let (a, b) = crate::vault::links::create_pair(
                        &root,
                        &opts.name,
                        crate::vault::links::INITIAL_KEYS,
                        seal.as_ref(),
                    )
                    .map_err(|d| {
                        bad(format!(
                            "node {}: cannot make its link's key pools: {d}",
                            opts.name
                        ))
                    })?;
                    entry.keypool = Some(a.clone());
                    entry.node_keypool = Some(b.clone());
                    link_pools = Some((root.join(a), root.join(b)));
                }
            }
            (None, Some(address)) => {
                entry.kind = "remote".into();
                entry.address = Some(address.clone());
                entry.insecure_plaintext = opts.insecure_plaintext;
                if let Some(p) = &opts.keypool {
                    let p = std::path::absolute(p)
                        .map_err(io_err(format!("resolve {}", p.display())))?;
                    if !p.is_file() {
                        return Err(bad(format!(
                            "--keypool {}: no such file (make a pair with `qsfs keypool gen`)",
                            p.display()
                        )));
                    }
                    let seal = self.link_seal();
                    entry.keypool = Some(match &seal {
                        Some(seal) => {
                            let rel = crate::vault::links::import_pool(&root, &opts.name, &p, seal)
                                .map_err(|d| bad(format!("--keypool {}: {d}", p.display())))?;
                            imported_pool = Some((p.clone(), root.join(&rel)));
                            rel
                        }
                        None => p,
                    });
                }
            }
            _ => {
                return Err(bad(
                    "give --dir PATH (a folder) or --address HOST:PORT (a node server), not both"
                        .into(),
                ));
            }
        }
        let location = entry
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .or_else(|| entry.address.clone())
            .unwrap_or_default();
        let kind = entry.kind.clone();
        // Written while the vault (and its lock) is still open.
        edit_config(&root, |c| {
            c.nodes.push(entry);
            Ok(())
        })?;
        drop(self);
        Ok(AddNodeReport {
            name: opts.name.clone(),
            kind,
            location,
            link_pools,
            imported_pool,
        })
    }

    /// Removes a node from `qsfs.toml` (`qsfs node remove`). Refused while
    /// manifests still place shards there (drain it first), unless `force`:
    /// then those shards become repair debt, which is only allowed when
    /// every object concerned keeps `k` shards elsewhere (the refusal names
    /// the files that would be lost). The node folder stays on disk.
    pub fn remove_node(self, opts: &RemoveNodeOptions) -> Result<RemoveNodeReport, VaultError> {
        let name = opts.name.as_str();
        let root = self.root().to_path_buf();
        let cfg = Config::load(&root)?;
        let Some(entry) = cfg.nodes.iter().find(|n| n.name == name).cloned() else {
            return Err(config_err(
                &root,
                format!(
                    "no node named {name:?} (nodes: {})",
                    cfg.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if cfg.nodes.len() <= cfg.n {
            return Err(config_err(
                &root,
                format!(
                    "removing {name} would leave {} nodes, but n = {} needs at least {}; add a node first: \
                     qsfs node add {} NAME --dir PATH",
                    cfg.nodes.len() - 1,
                    cfg.n,
                    cfg.n,
                    root.display()
                ),
            ));
        }
        let mut held: Vec<crate::dispersal::Manifest> = Vec::new();
        for m in self.dispersal().store().manifests() {
            let m = m?;
            if m.placement.iter().any(|p| p == name) {
                held.push(m);
            }
        }
        let mut abandoned = 0u64;
        if !held.is_empty() {
            let shards: usize = held
                .iter()
                .map(|m| m.placement.iter().filter(|p| *p == name).count())
                .sum();
            if !opts.force {
                return Err(config_err(
                    &root,
                    format!(
                        "node {name} still holds {shards} shards of {} objects; drain it first: \
                         qsfs node drain {} {name} (or --force to give them up as repair debt)",
                        held.len(),
                        root.display()
                    ),
                ));
            }
            // Give up the shards only if every object keeps k elsewhere.
            let short: Vec<crate::ObjectId> = held
                .iter()
                .filter(|m| {
                    let elsewhere = (0..m.layout.n)
                        .filter(|&i| m.placement[i] != name && !m.is_missing(i))
                        .count();
                    elsewhere < m.layout.k
                })
                .map(|m| m.id)
                .collect();
            if !short.is_empty() {
                let paths = self.object_paths()?;
                let names: Vec<String> = short
                    .iter()
                    .map(|id| {
                        paths
                            .get(id)
                            .cloned()
                            .unwrap_or_else(|| format!("object {id}"))
                    })
                    .collect();
                return Err(config_err(
                    &root,
                    format!(
                        "removing {name} would lose {} files (fewer than k shards left elsewhere): {}; \
                         repair them first with `qsfs scrub --repair` or drain the node",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            for m in held {
                abandoned += self.abandon_shards(m, name)?;
            }
        }
        let objects_degraded = if abandoned > 0 {
            self.dispersal()
                .store()
                .manifests()
                .filter_map(Result::ok)
                .filter(|m| m.placement.iter().any(|p| p == name))
                .count() as u64
        } else {
            0
        };
        let folder = cfg.node_path(&root, &entry);
        let pools: Vec<PathBuf> = [&entry.keypool, &entry.node_keypool]
            .into_iter()
            .flatten()
            .map(|p| root.join(p))
            .collect();
        edit_config(&root, |c| {
            c.nodes.retain(|n| n.name != name);
            Ok(())
        })?;
        // The key pools in the vault's `links/` (an in-process link's pair,
        // a remote link's imported pool) served this node only; they go
        // once the vault (whose link threads use them) is closed. A pool
        // kept elsewhere is the user's.
        drop(self);
        let links_dir = root.join("links");
        for p in pools {
            if p.starts_with(&links_dir)
                && let Err(e) = std::fs::remove_file(&p)
            {
                tracing::warn!("cannot remove the key pool {}: {e}", p.display());
            }
        }
        Ok(RemoveNodeReport {
            name: name.to_string(),
            folder,
            shards_abandoned: abandoned,
            objects_degraded,
        })
    }

    /// Records every shard of `m`'s object on `name` as missing (repair
    /// debt), retrying when the manifest changes meanwhile. Returns how many
    /// shards were newly given up.
    fn abandon_shards(
        &self,
        mut m: crate::dispersal::Manifest,
        name: &str,
    ) -> Result<u64, VaultError> {
        for _ in 0..16 {
            let mut new = m.clone();
            let mut count = 0;
            for i in 0..m.layout.n {
                if m.placement[i] == name && !m.is_missing(i) {
                    new.missing |= 1 << i;
                    count += 1;
                }
            }
            if count == 0 || self.dispersal().store().replace_manifest(&m, &new)? {
                return Ok(count);
            }
            match self.dispersal().store().manifest(&m.id)? {
                Some(fresh) => m = fresh,
                None => return Ok(0),
            }
        }
        Err(VaultError::Internal(format!(
            "object {}: its manifest kept changing while node {name} was being removed; try again",
            m.id
        )))
    }
}
