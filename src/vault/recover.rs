//! `qsfs recover`: a vault rebuilt on a new machine from its node folders
//! or node servers and an unlock method alone (see metabackup.rs for what
//! the nodes keep).
//!
//! A node server is reached over a QKD-keyed link from a key pool the
//! user installs for the new machine (the old machine's end of the link
//! was lost with it); over that link the server tells whose node it is,
//! so the user needs no vault id. The pool is taken into the new vault,
//! sealed, like `qsfs node add --keypool`.
//!
//! The newest snapshot is found by listing the node folders for ids
//! carrying the vault's snapshot tag, read from the shard headers (any `k`
//! shards; no manifest is needed, and the AEAD tag checks every byte), and
//! unlocked with the `unlock.toml` it carries. The journal entries written
//! after it are replayed in order, up to the first one missing. The
//! stores, the epoch table, `unlock.toml` and `qsfs.toml` (with the node
//! folders given) are written into the new vault folder, `qsfs.toml` last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::metabackup::{self, Section};
use super::{VaultError, io_err};
use crate::erasure::{Codec, StripeLayout};
use crate::node::transport::{Transport, plain_transport, qkd_transport};
use crate::node::{DirNode, Node, RemoteNode, RemoteOptions, ShardKey};
use crate::qkd::End;
use crate::qkd::link::LinkConfig;
use crate::qkd::pool::{PoolFile, SealKey};
use crate::store::{Db, OpenMode};
use crate::unlock::Unlock;
use std::sync::Arc;
use zeroize::Zeroizing;

/// One node of the lost vault, as `qsfs recover` is given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverNode {
    /// A node folder.
    Folder(PathBuf),
    /// A node server over a QKD-keyed link: `pool` is this machine's end
    /// (A) of a pool pair whose other end the server uses.
    Linked {
        /// host:port.
        address: String,
        /// The key pool file.
        pool: PathBuf,
    },
    /// A node server without link encryption (`--insecure-plaintext`):
    /// it does not tell whose node it is, so the vault id and the node's
    /// name are given.
    Plaintext {
        /// host:port.
        address: String,
        /// The vault's id.
        vault_id: String,
        /// The node's name in the vault.
        node: String,
    },
}

impl RecoverNode {
    fn shown(&self) -> String {
        match self {
            RecoverNode::Folder(p) => p.display().to_string(),
            RecoverNode::Linked { address, .. } | RecoverNode::Plaintext { address, .. } => {
                address.clone()
            }
        }
    }
}

/// What `qsfs recover` is given.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// The vault's nodes (at least `k` of them).
    pub nodes: Vec<RecoverNode>,
    /// What to unlock the vault key with.
    pub unlock: Unlock,
}

/// What `qsfs recover` rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The vault's id.
    pub vault_id: String,
    /// The snapshot used.
    pub generation: u64,
    /// The journal entries replayed after it.
    pub journal_entries: u64,
    /// The nodes it was read from, by node name: folder or address.
    pub nodes: Vec<(String, String)>,
    /// Key pools taken into the new vault: (the file given, the vault's
    /// sealed copy). The file given still holds its unused keys in clear.
    pub imported_pools: Vec<(PathBuf, PathBuf)>,
}

/// One node opened for recovery.
struct Found {
    name: String,
    spec: RecoverNode,
    node: Arc<dyn Node>,
}

/// Opens a node given to `qsfs recover`: its vault id and name, and the
/// node itself.
fn open_node(spec: &RecoverNode) -> Result<(String, Found), VaultError> {
    let remote = |address: &str, vault: &str, name: &str, transport: Transport| -> Arc<dyn Node> {
        Arc::new(RemoteNode::new(
            name,
            address,
            vault,
            transport,
            RemoteOptions::default(),
        ))
    };
    let (vid, name, node) = match spec {
        RecoverNode::Folder(dir) => {
            if !dir.is_dir() {
                return Err(bad(format!("node folder {} does not exist", dir.display())));
            }
            let Some((vid, name)) = DirNode::marker_at(dir) else {
                return Err(bad(format!(
                    "{} is not a qsfs node folder (it has no qsfs-node marker); give the folders the vault's nodes used",
                    dir.display()
                )));
            };
            let node: Arc<dyn Node> = Arc::new(DirNode::new(&name, dir, &vid));
            (vid, name, node)
        }
        RecoverNode::Linked { address, pool } => {
            let opened = PoolFile::open(pool).map_err(|e| bad(format!("node {address}: {e}")))?;
            if opened.end() != End::A {
                return Err(bad(format!(
                    "node {address}: {} is end B of its link (the node server's file); give end A, the --out file of `qsfs keypool gen`",
                    pool.display()
                )));
            }
            let lc = LinkConfig::for_pool(&opened);
            let keys: Arc<dyn crate::qkd::KeySource> = Arc::new(opened);
            let transport = qkd_transport(keys, End::A, lc);
            let (vid, name) =
                RemoteNode::identify(address, Arc::clone(&transport), RemoteOptions::default())
                    .map_err(|e| {
                        bad(format!(
                            "node server {address} does not say whose node it is: {e}; check the address and that it serves with the other end of {}",
                            pool.display()
                        ))
                    })?;
            let node = remote(address, &vid, &name, transport);
            (vid, name, node)
        }
        RecoverNode::Plaintext {
            address,
            vault_id,
            node,
        } => {
            let transport = plain_transport(node);
            (
                vault_id.clone(),
                node.clone(),
                remote(address, vault_id, node, transport),
            )
        }
    };
    Ok((
        vid,
        Found {
            name,
            spec: spec.clone(),
            node,
        },
    ))
}

fn bad(detail: String) -> VaultError {
    VaultError::Config {
        file: PathBuf::from("qsfs recover"),
        detail,
    }
}

/// Rebuilds the vault at `root` (a new or empty folder) from its nodes.
pub fn recover(root: &Path, opts: &RecoverOptions) -> Result<Recovered, VaultError> {
    if root.exists()
        && std::fs::read_dir(root)
            .map_err(io_err(format!("read {}", root.display())))?
            .next()
            .is_some()
    {
        return Err(VaultError::Exists(root.to_path_buf()));
    }
    // The nodes, by the names their markers (or servers) give.
    let mut vault_id: Option<String> = None;
    let mut nodes: Vec<Found> = Vec::new();
    for spec in &opts.nodes {
        let spec = match spec {
            RecoverNode::Folder(dir) => RecoverNode::Folder(
                std::path::absolute(dir).map_err(io_err(format!("resolve {}", dir.display())))?,
            ),
            RecoverNode::Linked { address, pool } => RecoverNode::Linked {
                address: address.clone(),
                pool: std::path::absolute(pool)
                    .map_err(io_err(format!("resolve {}", pool.display())))?,
            },
            other => other.clone(),
        };
        if let RecoverNode::Linked { pool, .. } = &spec
            && let Some(twin) = nodes
                .iter()
                .find(|f| matches!(&f.spec, RecoverNode::Linked { pool: p, .. } if p == pool))
        {
            return Err(bad(format!(
                "the key pool {} is given twice (for {} and {}); each link has its own pool pair",
                pool.display(),
                twin.spec.shown(),
                spec.shown()
            )));
        }
        let (vid, found) = open_node(&spec)?;
        match &vault_id {
            Some(v) if *v != vid => {
                return Err(bad(format!(
                    "{} belongs to vault {vid}, the other nodes to vault {v}; give the nodes of one vault",
                    spec.shown()
                )));
            }
            _ => vault_id = Some(vid.clone()),
        }
        if let Some(twin) = nodes.iter().find(|f| f.name == found.name) {
            return Err(bad(format!(
                "{} and {} are both node {}; give each node once",
                twin.spec.shown(),
                spec.shown(),
                found.name
            )));
        }
        nodes.push(found);
    }
    let vault_id = vault_id.ok_or_else(|| bad("give the vault's nodes with --node".into()))?;

    // Every snapshot shard the folders hold, by generation.
    let mut found: BTreeMap<u64, Vec<(usize, ShardKey)>> = BTreeMap::new();
    // Journal entries by (base generation low bits, seq).
    let mut entries: BTreeMap<(u32, u32), Vec<(usize, ShardKey)>> = BTreeMap::new();
    for (i, f) in nodes.iter().enumerate() {
        let listing = f.node.list().map_err(|e| {
            bad(format!(
                "cannot list node {} at {}: {e}",
                f.name,
                f.spec.shown()
            ))
        })?;
        for s in listing.shards {
            if let Some(g) = metabackup::generation_of(&vault_id, &s.key.object) {
                found.entry(g).or_default().push((i, s.key));
            } else if let Some(at) = metabackup::journal_of(&vault_id, &s.key.object) {
                entries.entry(at).or_default().push((i, s.key));
            }
        }
    }
    let mut last_err = format!(
        "no metadata snapshot of vault {vault_id} in the node folders given; qsfs writes one while the vault is mounted, at unmount and on `qsfs backup`, so the vault was never backed up, or these are not its nodes"
    );
    for (generation, shards) in found.iter().rev() {
        match read_snapshot(&nodes, shards) {
            Ok(object) => {
                let journal: Vec<&Vec<(usize, ShardKey)>> = entries
                    .range((*generation as u32, 1)..=(*generation as u32, u32::MAX))
                    .map(|(_, shards)| shards)
                    .collect();
                match restore(
                    root,
                    &vault_id,
                    (*generation, &object),
                    &journal,
                    &nodes,
                    &opts.unlock,
                )
                .and_then(|(recovered, config, seal)| {
                    // The links' pools are free once the nodes are closed.
                    drop(std::mem::take(&mut nodes));
                    commit(root, recovered, config, seal.as_ref())
                })
                .inspect_err(|_| clear(root))
                {
                    Ok(r) => {
                        settle(root, &opts.unlock, *generation);
                        return Ok(r);
                    }
                    // A wrong passphrase or a missing key file: say so at once.
                    Err(e @ VaultError::Unlock(_)) => return Err(e),
                    Err(e) => last_err = format!("snapshot {generation}: {e}"),
                }
            }
            Err(e) => last_err = format!("snapshot {generation}: {e}"),
        }
    }
    Err(bad(last_err))
}

/// The last steps of a recovery: remote links' pools taken into the new
/// vault (sealed when it has a key), then `qsfs.toml`, which makes the
/// folder a vault.
fn commit(
    root: &Path,
    mut r: Recovered,
    mut config: super::Config,
    seal: Option<&SealKey>,
) -> Result<Recovered, VaultError> {
    let root = root
        .canonicalize()
        .map_err(io_err(format!("resolve {}", root.display())))?;
    for n in &mut config.nodes {
        let Some(given) = n.keypool.clone().filter(|_| n.kind == "remote") else {
            continue;
        };
        let Some(seal) = seal else { continue };
        let rel = super::links::import_pool(&root, &n.name, &given, seal)
            .map_err(|d| bad(format!("node {}: {d}", n.name)))?;
        r.imported_pools.push((given, root.join(&rel)));
        n.keypool = Some(rel);
    }
    let file = root.join("qsfs.toml");
    let tmp = root.join(".qsfs.toml.tmp");
    std::fs::write(&tmp, config.to_toml()?).map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("sync {}", tmp.display())))?;
    std::fs::rename(&tmp, &file).map_err(io_err(format!("write {}", file.display())))?;
    crate::sys::fsync_dir(&root).map_err(io_err(format!("sync {}", root.display())))?;
    Ok(r)
}

/// Empties the new vault folder after a failed attempt, so it can be
/// tried again (it was new or empty before).
fn clear(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The bytes of a snapshot object from any `k` of its shards.
fn read_snapshot(nodes: &[Found], shards: &[(usize, ShardKey)]) -> Result<Vec<u8>, String> {
    let mut header = None;
    let mut chunks: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for (i, key) in shards {
        let node = &nodes[*i].node;
        let Ok(h) = node.read_header(*key) else {
            continue;
        };
        if header.as_ref().is_some_and(|x: &crate::node::ShardHeader| {
            (x.k, x.n, x.chunk, x.stripes, x.object_len)
                != (h.k, h.n, h.chunk, h.stripes, h.object_len)
        }) {
            continue;
        }
        let mut buf = vec![0u8; h.chunks_len() as usize];
        if node.read_at(*key, 0, &mut buf).is_ok() {
            chunks.insert(key.index, buf);
            header.get_or_insert(h);
        }
    }
    let h = header.ok_or("no shard of it could be read")?;
    let (k, n) = (h.k as usize, h.n as usize);
    if chunks.len() < k {
        return Err(format!(
            "only {} of the {k} shards needed could be read; give at least {k} of the vault's nodes with --node",
            chunks.len()
        ));
    }
    let layout = StripeLayout {
        k,
        n,
        chunk: h.chunk,
        object_len: h.object_len,
        stripes: h.stripes,
    };
    let codec = Codec::new(k, n).map_err(|e| e.to_string())?;
    let chunk = h.chunk as usize;
    let mut out = Vec::with_capacity(h.object_len as usize);
    for s in 0..h.stripes as usize {
        let mut bufs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                chunks.get(&(i as u8)).map_or_else(
                    || vec![0u8; chunk],
                    |c| c[s * chunk..(s + 1) * chunk].to_vec(),
                )
            })
            .collect();
        let present: Vec<bool> = (0..n).map(|i| chunks.contains_key(&(i as u8))).collect();
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
        codec
            .reconstruct(&mut refs, &present, true)
            .map_err(|e| e.to_string())?;
        let (start, end) = layout.stripe_range(s as u64);
        let mut left = (end - start) as usize;
        for b in bufs.iter().take(k) {
            let take = left.min(chunk);
            out.extend_from_slice(&b[..take]);
            left -= take;
        }
    }
    Ok(out)
}

fn restore(
    root: &Path,
    vault_id: &str,
    (generation, object): (u64, &[u8]),
    journal: &[&Vec<(usize, ShardKey)>],
    nodes: &[Found],
    how: &Unlock,
) -> Result<(Recovered, super::Config, Option<SealKey>), VaultError> {
    let sealed = metabackup::parse(object)
        .ok_or_else(|| bad("it is not a metadata snapshot of a format this qsfs reads".into()))?;
    if sealed.generation != generation {
        return Err(bad(format!(
            "its header says snapshot {}, its id {generation}",
            sealed.generation
        )));
    }
    if sealed.vault_id != vault_id {
        return Err(bad(format!("it belongs to vault {}", sealed.vault_id)));
    }
    std::fs::create_dir_all(root).map_err(io_err(format!("create {}", root.display())))?;
    let root = root
        .canonicalize()
        .map_err(io_err(format!("resolve {}", root.display())))?;
    crate::perms::make_private(&root)
        .map_err(io_err(format!("set permissions of {}", root.display())))?;
    let unlock_path = root.join(crate::unlock::UNLOCK_FILE);
    std::fs::write(&unlock_path, sealed.unlock_toml)
        .map_err(io_err(format!("write {}", unlock_path.display())))?;
    crate::perms::make_private(&unlock_path).map_err(io_err(format!(
        "set permissions of {}",
        unlock_path.display()
    )))?;
    let vk = crate::unlock::open(&root, vault_id, how)?
        .ok_or_else(|| bad("the snapshot carries no unlock methods".into()))?;
    let seal = super::links::seal_for(&root, vault_id, Some(&vk));
    let sections = sealed.open(&vk).ok_or_else(|| {
        bad("it does not open under the vault key (damaged on every node read)".into())
    })?;
    let section = |s: Section| {
        sections
            .get(&s)
            .ok_or_else(|| bad(format!("its {s:?} section is missing")))
    };
    // qsfs.toml: the node folders as given now, links made afresh.
    let text = std::str::from_utf8(section(Section::Config)?)
        .map_err(|_| bad("its qsfs.toml is not text".into()))?;
    let mut config = super::Config::parse(text, Path::new("qsfs.toml (from the snapshot)"))?;
    let by_name: BTreeMap<&str, &RecoverNode> =
        nodes.iter().map(|f| (f.name.as_str(), &f.spec)).collect();
    let mut missing = Vec::new();
    for n in &mut config.nodes {
        match by_name.get(n.name.as_str()) {
            Some(RecoverNode::Folder(p)) => {
                n.kind = "dir".into();
                n.path = Some(p.clone());
                n.address = None;
            }
            Some(_) => {}
            None => missing.push(n.name.clone()),
        }
    }
    if config.nodes.len() - missing.len() < config.k {
        return Err(bad(format!(
            "fewer than k = {} of the vault's node folders were given (missing: {}); give at least k",
            config.k,
            missing.join(", ")
        )));
    }
    // Nodes not given point at a folder that does not exist: they read as
    // offline, and nothing is ever written to wherever they used to be
    // (that disk may serve another vault now). `qsfs node adopt` takes a
    // replacement into use.
    for n in config
        .nodes
        .iter_mut()
        .filter(|n| missing.contains(&n.name))
    {
        n.kind = "dir".into();
        n.path = Some(root.join("lost-nodes").join(&n.name));
        n.address = None;
    }
    config.keystore.r2_path = None;
    for sub in ["keys", "meta", "staging"] {
        crate::perms::create_private_dir_all(&root.join(sub))
            .map_err(io_err(format!("create {}/{sub}", root.display())))?;
    }
    for n in config
        .nodes
        .iter_mut()
        .filter(|n| n.node_keypool.is_some() || n.keypool.is_some())
    {
        let local = n.node_keypool.is_some();
        if local {
            super::links::create_pair(&root, &n.name, super::links::INITIAL_KEYS, seal.as_ref())
                .map_err(|detail| {
                    bad(format!(
                        "node {}: cannot make its link's key pools: {detail}",
                        n.name
                    ))
                })?;
        } else {
            // A remote node's link pool is not in the snapshot: reach the
            // folder directly until a pool is set up again.
            n.keypool = None;
        }
    }
    // Node servers given: reached as given (their pools are taken in by
    // `commit`, once the links recovery used are closed).
    for n in &mut config.nodes {
        let (address, pool, plaintext) = match by_name.get(n.name.as_str()) {
            Some(RecoverNode::Linked { address, pool }) => (address, Some(pool.clone()), false),
            Some(RecoverNode::Plaintext { address, .. }) => (address, None, true),
            _ => continue,
        };
        n.kind = "remote".into();
        n.address = Some(address.clone());
        n.path = None;
        n.keypool = pool;
        n.node_keypool = None;
        n.kme = None;
        n.insecure_plaintext = plaintext;
    }
    // The stores as the snapshot has them, then each journal entry's
    // changes in order, then the epoch table as the last one left it.
    let ns = Db::open_vault_store(
        &root.join("meta/ns"),
        "namespace",
        vault_id,
        OpenMode::Create,
    )?;
    let ec = Db::open_vault_store(
        &root.join("meta/ec"),
        "manifest and backup-record",
        vault_id,
        OpenMode::Create,
    )?;
    let keys = Db::open_vault_store(
        &root.join("keys"),
        "keystore (R1)",
        vault_id,
        OpenMode::Create,
    )?;
    let db_of = |s: Section| match s {
        Section::Namespace => Some(&ns),
        Section::Ec => Some(&ec),
        Section::R1 | Section::R2 => Some(&keys),
        Section::Config | Section::Epochs => None,
    };
    for (p, bytes) in &sections {
        let Some(db) = db_of(*p) else { continue };
        for (k, v) in metabackup::records(bytes)
            .ok_or_else(|| bad(format!("its {p:?} section is damaged")))?
        {
            db.insert(k, v)?;
        }
    }
    let mut slot = Zeroizing::new(section(Section::Epochs)?.to_vec());
    let mut replayed = 0u64;
    for shards in journal {
        let seq = replayed + 1;
        let applied = read_snapshot(nodes, shards).and_then(|object| {
            let entry = metabackup::parse_entry(&object)
                .filter(|e| e.base == generation && e.seq == seq && e.vault_id == vault_id)
                .ok_or("not the entry expected there")?;
            let opened = entry
                .open(&vk)
                .ok_or("it does not open under the vault key")?;
            // Every section decoded before any is applied: an entry is
            // replayed whole or not at all.
            let mut decoded = Vec::new();
            for (p, bytes) in &opened {
                if let Some(db) = db_of(*p) {
                    decoded.push((
                        db,
                        metabackup::changes(bytes).ok_or("a section is damaged")?,
                    ));
                }
            }
            for (db, changes) in decoded {
                for (k, v) in changes {
                    match v {
                        Some(v) => db.insert(k, v),
                        None => db.remove(k),
                    }
                    .map_err(|e| e.to_string())?;
                }
            }
            if let Some(epochs) = opened.get(&Section::Epochs) {
                slot = epochs.clone();
            }
            Ok::<(), String>(())
        });
        if let Err(e) = applied {
            // Entries after a gap are not used: each changes the state the
            // one before left. Recovery is then as fresh as this point.
            tracing::warn!(
                "journal entry {seq} after snapshot {generation}: {e}; recovered up to entry {replayed}"
            );
            break;
        }
        replayed = seq;
    }
    for db in [&ns, &ec, &keys] {
        db.flush_durable()?;
    }
    drop((ns, ec, keys));
    for i in 0..2 {
        let p = root.join(format!("meta/epochs.{i}"));
        std::fs::write(&p, &slot[..]).map_err(io_err(format!("write {}", p.display())))?;
        crate::perms::make_private(&p)
            .map_err(io_err(format!("set permissions of {}", p.display())))?;
    }
    Ok((
        Recovered {
            vault_id: vault_id.into(),
            generation,
            journal_entries: replayed,
            nodes: nodes
                .iter()
                .map(|f| (f.name.clone(), f.spec.shown()))
                .collect(),
            imported_pools: Vec::new(),
        },
        config,
        seal,
    ))
}

/// Writes the recovered vault's first snapshot (after every one found) and
/// removes the old ones from the node folders, which its manifests no
/// longer know. Failures are warnings: the vault is recovered, and its
/// next command or mount backs it up again.
fn settle(root: &Path, how: &Unlock, newest: u64) {
    let opened = super::Vault::open(
        root,
        &super::OpenOptions {
            unlock: how.clone(),
            ..Default::default()
        },
    );
    let vault = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("the recovered vault does not open yet ({e})");
            return;
        }
    };
    if let Err(e) = vault.backup_metadata_after(newest) {
        tracing::warn!(
            "the recovered vault could not be backed up to its nodes yet ({e}); its next command or mount does it"
        );
        return;
    }
    // Every node the vault reaches, given or not (a folder still at its
    // old place is one of them): snapshots other than the new one go.
    let keep = vault.meta_ids().unwrap_or_default();
    for node in vault.dispersal().nodes() {
        let Ok(listing) = node.list() else { continue };
        let stale: std::collections::BTreeSet<_> = listing
            .shards
            .iter()
            .map(|s| s.key.object)
            .filter(|id| {
                metabackup::is_backup_id(&vault.config().vault_id, id) && !keep.contains(id)
            })
            .collect();
        for id in stale {
            let _ = node.purge(id);
        }
    }
}
