//! The QKD-keyed links from this vault to its nodes.
//!
//! A remote node is reached over TCP through a link keyed from a pool file
//! or a KME. A directory node with `keypool` and `node_keypool` is reached
//! the same way, with the node's end running inside this process: a node
//! server on a loopback port serves the folder, and the vault talks to it
//! through the very same link and protocol code as to a remote node (the
//! paper's point-to-point QKD links to each node). Its pair of pools is a
//! simulated QKD link and is refilled at the configured key rate, as a QKD
//! link keeps producing key; pools from QKD equipment are never refilled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::config::{Config, NodeConfig};
use crate::node::conn::LocalDialer;
use crate::node::server::{Server, StopHandle};
use crate::node::transport::{Transport, plain_transport, qkd_transport};
use crate::node::{Node, RemoteNode, RemoteOptions};
use crate::qkd::link::LinkConfig;
use crate::qkd::pool::{PoolFile, RefillConfig, Refiller, SealKey};
use crate::qkd::{ChannelError, End, KeyCounts, KeyError, KeySource};

/// Key rate of a simulated in-process link unless `[links] key_rate_bps`
/// says otherwise: 1 Mbit/s (a lab QKD link) so a busy default vault
/// never waits for key; the paper's metropolitan network made 49.5 kbit/s.
pub const DEFAULT_KEY_RATE_BPS: u64 = 1_000_000;
/// A simulated link stops refilling at this many unused keys.
pub const REFILL_MAX_LEFT: u64 = 65_536;
/// Keys a new simulated link starts with (`qsfs init`).
pub const INITIAL_KEYS: u64 = 8_192;
/// `qsfs status` warns below this fraction of keys left.
pub const LOW_FRACTION: f64 = 0.10;

/// How a node is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// A local folder, read and written directly.
    Direct,
    /// A local folder behind an in-process QKD-keyed link.
    InProcess,
    /// A node server, keys from a pool file.
    PoolFile,
    /// A node server, keys from an ETSI GS QKD 014 KME.
    Kme,
    /// A node server without link encryption.
    Plaintext,
}

/// The key that seals this vault's link pools (`links/`): derived from the
/// vault key, so the pools are behind the same unlock as the key records.
pub fn seal_key(key: &crate::unlock::VaultKey) -> SealKey {
    SealKey::new(*key.derive("qsfs 2026-12 link pool seal v1"))
}

/// The seal key of a vault's link pools: none for a vault without a key
/// or with its key in clear (`--unlock none`; its pools stay clear and are
/// sealed under the new key at the first open after `qsfs unlock add`).
pub fn seal_for(
    root: &Path,
    vault_id: &str,
    key: Option<&crate::unlock::VaultKey>,
) -> Option<SealKey> {
    let key = key?;
    match crate::unlock::has_clear_key(root, vault_id) {
        Ok(false) => Some(seal_key(key)),
        Ok(true) => None,
        Err(e) => {
            tracing::warn!("cannot read the unlock methods ({e}); link pools stay as they are");
            None
        }
    }
}

/// The pool files of `config`'s links that live inside the vault folder
/// (the ones a copy of the folder would carry). Pools elsewhere (a remote
/// link's pool the user keeps with the QKD equipment) are left alone.
fn pools_in_vault(root: &Path, config: &Config) -> Vec<PathBuf> {
    config
        .nodes
        .iter()
        .flat_map(|n| [&n.keypool, &n.node_keypool])
        .flatten()
        .map(|p| root.join(p))
        .filter(|p| p.starts_with(root) && p.exists())
        .collect()
}

/// Seals every clear pool of the vault's links under `seal` (a vault made
/// before pools were sealed, or one that just got its first unlock
/// method), finishing any sealing a crash interrupted. A pool that cannot
/// be sealed now stays clear and usable, with a warning; the next open
/// retries. Call under the vault lock, before the links are built.
pub fn seal_pools(root: &Path, config: &Config, seal: &SealKey) {
    for p in pools_in_vault(root, config) {
        match crate::qkd::pool::seal_file(&p, seal) {
            Ok(true) => tracing::info!(
                "sealed the link key pool {} under the vault key",
                p.display()
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "could not seal the link key pool {} yet ({e}); it stays in clear until the next open",
                p.display()
            ),
        }
    }
}

/// One node's link, for `qsfs status`.
#[derive(Clone)]
pub struct LinkInfo {
    /// The node.
    pub node: String,
    /// How it is reached.
    pub kind: LinkKind,
    /// Its key source (none for direct and plaintext nodes).
    pub keys: Option<Arc<dyn KeySource>>,
    /// The same source when it is a pool file (per-direction counts).
    pub pool: Option<Arc<PoolFile>>,
    /// Why the link cannot work, if it cannot.
    pub broken: Option<String>,
}

impl LinkInfo {
    fn new(node: &str, kind: LinkKind) -> LinkInfo {
        LinkInfo {
            node: node.to_string(),
            kind,
            keys: None,
            pool: None,
            broken: None,
        }
    }
}

/// A link's state, for `qsfs status`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkStatus {
    /// The node.
    pub node: String,
    /// How it is reached.
    pub kind: LinkKind,
    /// Pool file or KME.
    pub source: Option<String>,
    /// Keys left and used (none when they cannot be read).
    pub counts: Option<KeyCounts>,
    /// True when qsfs refills it (a simulated link).
    pub refills: bool,
    /// True when under 10% of its keys are left.
    pub low: bool,
    /// For a pool: true when its keys are sealed under the vault key,
    /// false when they are in clear (a pool kept outside the vault folder,
    /// or a vault without an unlock method).
    #[serde(default)]
    pub sealed: Option<bool>,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// The links of an open vault: refill threads and in-process node servers
/// run until it is dropped.
#[derive(Default)]
pub struct Links {
    infos: Vec<LinkInfo>,
    refillers: Vec<Refiller>,
    servers: Vec<(StopHandle, std::thread::JoinHandle<()>)>,
}

impl Links {
    /// The state of every link.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.infos
            .iter()
            .map(|i| {
                let (counts, problem) = match (&i.keys, &i.broken) {
                    (_, Some(b)) => (None, Some(b.clone())),
                    (Some(k), None) => match k.counts() {
                        Ok(c) => (Some(c), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                    (None, None) => (None, None),
                };
                // A pool runs dry one direction at a time.
                let low = match &i.pool {
                    Some(p) => p.low(LOW_FRACTION),
                    None => counts.is_some_and(|c| {
                        c.total > 0 && (c.left as f64) < LOW_FRACTION * c.total as f64
                    }),
                };
                LinkStatus {
                    node: i.node.clone(),
                    kind: i.kind,
                    source: i.keys.as_ref().map(|k| k.describe()),
                    counts,
                    refills: i.keys.as_ref().is_some_and(|k| k.refills()),
                    low,
                    problem,
                    sealed: i.pool.as_ref().map(|p| p.is_sealed()),
                }
            })
            .collect()
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for (stop, _) in &self.servers {
            stop.stop();
        }
        for (_, t) in self.servers.drain(..) {
            let _ = t.join();
        }
        for r in self.refillers.drain(..) {
            r.stop();
        }
    }
}

/// Link settings of the vault's config.
fn link_config(config: &Config, base: LinkConfig) -> LinkConfig {
    let mut c = base;
    if let Some(ms) = config.links.rekey_ms {
        c.rekey_interval = Duration::from_millis(ms);
    }
    if let Some(mib) = config.links.rekey_mib {
        c.rekey_bytes = mib << 20;
    }
    c
}

/// Node timeouts of an entry.
fn remote_options(n: &NodeConfig) -> RemoteOptions {
    let mut opts = RemoteOptions::default();
    if let Some(ms) = n.connect_timeout_ms {
        opts.connect_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = n.io_timeout_ms {
        opts.io_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = n.request_timeout_ms {
        opts.request_timeout = Duration::from_millis(ms);
    }
    opts
}

/// A transport whose every connection fails with `why` (a link that
/// cannot be set up: the node shows as offline with the reason).
fn broken_transport(link: &str, source: &str, why: String) -> Transport {
    let (link, source) = (link.to_string(), source.to_string());
    Arc::new(move |_stream| {
        Err(ChannelError::Key(KeyError::Source {
            link: link.clone(),
            source_name: source.clone(),
            detail: why.clone(),
        }))
    })
}

/// The nodes of a config and their links; `seal` opens sealed pools.
pub fn build(root: &Path, config: &Config, seal: Option<&SealKey>) -> (Vec<Arc<dyn Node>>, Links) {
    let mut links = Links::default();
    let mut nodes: Vec<Arc<dyn Node>> = Vec::new();
    for n in &config.nodes {
        match n.kind.as_str() {
            "dir" => {
                let Some(path) = config.node_path(root, n) else {
                    continue;
                };
                match (&n.keypool, &n.node_keypool) {
                    (Some(a), Some(b)) => {
                        nodes.push(in_process(root, config, n, &path, (a, b), seal, &mut links));
                    }
                    _ => {
                        links.infos.push(LinkInfo::new(&n.name, LinkKind::Direct));
                        nodes.push(Arc::new(crate::node::DirNode::new(
                            &n.name,
                            &path,
                            &config.vault_id,
                        )));
                    }
                }
            }
            "remote" => {
                let Some(address) = n.address.as_deref() else {
                    continue;
                };
                let (transport, info) = remote_transport(root, config, n, seal);
                links.infos.push(info);
                nodes.push(Arc::new(RemoteNode::new(
                    &n.name,
                    address,
                    &config.vault_id,
                    transport,
                    remote_options(n),
                )));
            }
            _ => {}
        }
    }
    (nodes, links)
}

/// The transport to a remote node and its link's description.
fn remote_transport(
    root: &Path,
    config: &Config,
    n: &NodeConfig,
    seal: Option<&SealKey>,
) -> (Transport, LinkInfo) {
    let mut info = LinkInfo::new(&n.name, LinkKind::Plaintext);
    if n.insecure_plaintext {
        return (plain_transport(&n.name), info);
    }
    if let Some(kme) = &n.kme {
        info.kind = LinkKind::Kme;
        return match kme.source(&n.name, End::A, root) {
            Ok(src) => {
                let keys: Arc<dyn KeySource> = Arc::new(src);
                info.keys = Some(Arc::clone(&keys));
                let lc = link_config(config, LinkConfig::new(&n.name));
                (qkd_transport(keys, End::A, lc), info)
            }
            Err(e) => {
                let why = e.to_string();
                info.broken = Some(why.clone());
                (broken_transport(&n.name, &kme.url, why), info)
            }
        };
    }
    info.kind = LinkKind::PoolFile;
    let Some(pool) = &n.keypool else {
        let why = "no keypool, kme or insecure_plaintext setting".to_string();
        info.broken = Some(why.clone());
        return (broken_transport(&n.name, "qsfs.toml", why), info);
    };
    let path = root.join(pool);
    match open_pool(&path, End::A, seal) {
        Ok(pool) => {
            let lc = link_config(config, LinkConfig::for_pool(&pool));
            let pool = Arc::new(pool);
            info.pool = Some(Arc::clone(&pool));
            let keys: Arc<dyn KeySource> = pool;
            info.keys = Some(Arc::clone(&keys));
            (qkd_transport(keys, End::A, lc), info)
        }
        Err(why) => {
            info.broken = Some(why.clone());
            (
                broken_transport(&n.name, &path.display().to_string(), why),
                info,
            )
        }
    }
}

/// Opens `path` as end `end` of a link.
fn open_pool(path: &Path, end: End, seal: Option<&SealKey>) -> Result<PoolFile, String> {
    let pool = match seal {
        Some(k) => PoolFile::open_sealed(path, k),
        None => PoolFile::open(path),
    }
    .map_err(|e| e.to_string())?;
    if pool.end() != end {
        return Err(format!(
            "{} is the key pool of end {:?} of its link; this side needs end {end:?} (swapped files?)",
            path.display(),
            pool.end()
        ));
    }
    Ok(pool)
}

/// A directory node behind an in-process link: a node server reached
/// through socket pairs, and through the link like a remote node.
fn in_process(
    root: &Path,
    config: &Config,
    n: &NodeConfig,
    folder: &Path,
    (a_rel, b_rel): (&PathBuf, &PathBuf),
    seal: Option<&SealKey>,
    links: &mut Links,
) -> Arc<dyn Node> {
    let shown = format!("{} (in-process QKD link)", folder.display());
    let (a_path, b_path) = (root.join(a_rel), root.join(b_rel));
    let mut info = LinkInfo::new(&n.name, LinkKind::InProcess);
    let mut set_up = || -> Result<(Arc<PoolFile>, Arc<PoolFile>, LocalDialer), String> {
        let a = Arc::new(open_pool(&a_path, End::A, seal)?);
        let b = Arc::new(open_pool(&b_path, End::B, seal)?);
        // Both ends are in this process (see PoolFile::in_process_receiver).
        // The sending batch stays the default: every process that opens
        // the vault wastes what it reserved and did not use, and a bigger
        // batch emptied the pools of a run of many short commands.
        a.in_process_receiver();
        b.in_process_receiver();
        if a.link_id() != b.link_id() {
            return Err(format!(
                "{} and {} are not the two ends of one link",
                a_path.display(),
                b_path.display()
            ));
        }
        let lc = link_config(config, LinkConfig::for_pool(&a));
        let server_transport = qkd_transport(Arc::clone(&b) as Arc<dyn KeySource>, End::B, lc);
        let dir_node = Arc::new(crate::node::DirNode::new(&n.name, folder, &config.vault_id));
        // No port: only this process can connect (other local users
        // could otherwise tie up the server with silent connections).
        let (server, dialer) =
            Server::bind_local(dir_node, &config.vault_id, &n.name, server_transport);
        let stop = server.stop_handle();
        let thread = std::thread::Builder::new()
            .name(format!("node {}", n.name))
            .spawn(move || server.run())
            .map_err(|e| format!("cannot start the node thread: {e}"))?;
        links.servers.push((stop, thread));
        Ok((a, b, dialer))
    };
    match set_up() {
        Ok((a, b, dialer)) => {
            if KeySource::refills(&*a) {
                let mut rc = RefillConfig::new(REFILL_MAX_LEFT);
                rc.key_rate_bps = config.links.key_rate_bps.unwrap_or(DEFAULT_KEY_RATE_BPS) as f64;
                match Refiller::start(
                    Arc::clone(&a),
                    Arc::clone(&b),
                    rc,
                    crate::qkd::pool::os_random,
                ) {
                    Ok(r) => links.refillers.push(r),
                    Err(e) => tracing::warn!("link {}: cannot refill its key pools: {e}", n.name),
                }
            }
            let lc = link_config(config, LinkConfig::for_pool(&a));
            info.pool = Some(Arc::clone(&a));
            let keys: Arc<dyn KeySource> = a;
            info.keys = Some(Arc::clone(&keys));
            links.infos.push(info);
            // Both ends of every connection are descriptors of this
            // process: a wide code (32 nodes) keeps few. Every channel
            // stays open once made: a channel closed for being one too
            // many idle was a new handshake and server thread moments
            // later (fsstress made 700 of them).
            let mut opts = remote_options(n);
            let wide = config.nodes.len().max(1);
            opts.max_channels = (32 / wide).clamp(1, opts.max_channels);
            opts.max_idle = opts.max_channels;
            let node = RemoteNode::local(
                &n.name,
                dialer,
                &config.vault_id,
                qkd_transport(keys, End::A, lc),
                opts,
            )
            .shown_as(shown);
            Arc::new(node)
        }
        Err(why) => {
            info.broken = Some(why.clone());
            links.infos.push(info);
            // Nothing listens on port 0: every operation fails with `why`.
            let node = RemoteNode::new(
                &n.name,
                "127.0.0.1:0",
                &config.vault_id,
                broken_transport(&n.name, &a_path.display().to_string(), why),
                remote_options(n),
            )
            .shown_as(shown);
            Arc::new(node)
        }
    }
}

/// Takes a remote link's pool (end A, from `qsfs keypool gen` or QKD
/// equipment) into the vault: a copy sealed under `seal` at
/// `links/<node>.a.pool`, so the vault folder carries no clear link key.
/// Returns the copy's path relative to `root`. The original stays where
/// it was; its owner removes it (it holds the same keys in clear).
pub fn import_pool(root: &Path, node: &str, src: &Path, seal: &SealKey) -> Result<PathBuf, String> {
    let pool = open_pool(src, End::A, None)?;
    drop(pool);
    let dir = root.join("links");
    crate::perms::create_private_dir_all(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let rel = PathBuf::from(format!("links/{node}.a.pool"));
    crate::qkd::pool::seal_copy(src, &root.join(&rel), seal).map_err(|e| e.to_string())?;
    Ok(rel)
}

/// Makes the key pool pair of a new in-process link (`qsfs init`):
/// `links/<node>.a.pool` (the vault's end) and `links/<node>.b.pool`,
/// sealed under `seal` when the vault has a key.
pub fn create_pair(
    root: &Path,
    node: &str,
    keys: u64,
    seal: Option<&SealKey>,
) -> Result<(PathBuf, PathBuf), String> {
    let dir = root.join("links");
    crate::perms::create_private_dir_all(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let a_rel = PathBuf::from(format!("links/{node}.a.pool"));
    let b_rel = PathBuf::from(format!("links/{node}.b.pool"));
    let opts = crate::qkd::pool::GenOptions {
        link: node,
        keys,
        a_path: &root.join(&a_rel),
        b_path: &root.join(&b_rel),
        refill: true,
    };
    crate::qkd::pool::generate_sealed(&opts, seal, crate::qkd::pool::os_random)
        .map_err(|e| e.to_string())?;
    Ok((a_rel, b_rel))
}
