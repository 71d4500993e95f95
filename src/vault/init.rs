//! `qsfs init`: a new vault folder with its stores and node folders.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::config::{CONFIG_FORMAT, Config, DEFAULT_MAX_CHUNK, KeystoreConfig, NodeConfig};
use super::{VaultError, io_err};
use crate::dispersal::EcStore;
use crate::entropy::EntropyConfig;
use crate::keystore::{Epochs, Keystore};
use crate::namespace::Namespace;
use crate::node::DirNode;
use crate::store::OpenMode;
use crate::unlock::{NewMethod, VaultKey, default_key_file};
use std::sync::Arc;

/// Settings for a new vault.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Data chunks per stripe.
    pub k: usize,
    /// Shards per object.
    pub n: usize,
    /// Write quorum (default k + 1).
    pub write_quorum: Option<usize>,
    /// Node folders; `None` makes `n` folders inside the vault.
    pub nodes: Option<Vec<PathBuf>>,
    /// Random source.
    pub random: EntropyConfig,
    /// Separate folder for R2.
    pub r2_path: Option<PathBuf>,
    /// Where new objects' backup records `B` go.
    pub backup: super::config::BackupPlace,
    /// Largest chunk.
    pub max_chunk: u32,
    /// Reach the node folders directly instead of through in-process
    /// QKD-keyed links (`qsfs init --direct`).
    pub direct: bool,
    /// Node folders pack small shards (node/packs.rs): the default;
    /// `qsfs init --no-packs` keeps a file per shard.
    pub packs: bool,
    /// Keys each new link's pool pair starts with.
    pub link_keys: u64,
    /// The first unlock method; `None` makes a key file at
    /// [`crate::unlock::default_key_file`].
    pub unlock: Option<crate::unlock::NewMethod>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            k: 3,
            n: 5,
            write_quorum: None,
            nodes: None,
            random: EntropyConfig::Os,
            r2_path: None,
            backup: Default::default(),
            max_chunk: DEFAULT_MAX_CHUNK,
            direct: false,
            packs: true,
            link_keys: super::links::INITIAL_KEYS,
            unlock: None,
        }
    }
}

/// Creates a vault at `root`. Everything is checked before anything is
/// written; the folder must not exist or be empty.
pub fn init(root: &Path, opts: &InitOptions) -> Result<Config, VaultError> {
    if let Some(mount) = crate::sys::dead_mount(root) {
        return Err(VaultError::DeadMount {
            path: root.to_path_buf(),
            mount,
        });
    }
    if root.exists() {
        let mut entries = fs::read_dir(root).map_err(io_err(format!("read {}", root.display())))?;
        if entries.next().is_some() {
            return Err(VaultError::Exists(root.to_path_buf()));
        }
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| VaultError::Internal(format!("OS random source failed: {e}")))?;
    let mut nodes: Vec<NodeConfig> = match &opts.nodes {
        None => (0..opts.n)
            .map(|i| NodeConfig {
                name: format!("node-{i}"),
                kind: "dir".into(),
                path: Some(PathBuf::from(format!("nodes/node-{i}"))),
                ..Default::default()
            })
            .collect(),
        Some(dirs) => dirs
            .iter()
            .enumerate()
            .map(|(i, d)| -> Result<NodeConfig, VaultError> {
                Ok(NodeConfig {
                    name: format!("node-{i}"),
                    kind: "dir".into(),
                    path: Some(absolute(d)?),
                    ..Default::default()
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if !opts.direct {
        for n in &mut nodes {
            n.keypool = Some(PathBuf::from(format!("links/{}.a.pool", n.name)));
            n.node_keypool = Some(PathBuf::from(format!("links/{}.b.pool", n.name)));
        }
    }
    let config = Config {
        format: CONFIG_FORMAT,
        vault_id: hex::encode(id),
        k: opts.k,
        n: opts.n,
        write_quorum: opts.write_quorum,
        max_chunk: opts.max_chunk,
        random: match &opts.random {
            EntropyConfig::Device { path, timeout_ms } => EntropyConfig::Device {
                path: absolute(path)?,
                timeout_ms: *timeout_ms,
            },
            EntropyConfig::Pool { path } => EntropyConfig::Pool {
                path: absolute(path)?,
            },
            EntropyConfig::Os => EntropyConfig::Os,
        },
        keystore: KeystoreConfig {
            r2_path: opts.r2_path.as_deref().map(absolute).transpose()?,
            backup: opts.backup,
        },
        links: Default::default(),
        packs: opts.packs,
        nodes,
    };
    let file = root.join("qsfs.toml");
    config.check(&file).map_err(|e| match e {
        // Report bad options as options, not as a file the user never wrote.
        VaultError::Config { detail, .. } => VaultError::Config {
            file: PathBuf::from("qsfs init options"),
            detail,
        },
        other => other,
    })?;
    for node in &config.nodes {
        if let Some(p) = node.path.as_ref().filter(|p| p.is_absolute())
            && fs::read_dir(p).is_ok_and(|mut it| it.next().is_some())
        {
            return Err(VaultError::Config {
                file: PathBuf::from("qsfs init options"),
                detail: format!(
                    "node folder {} is not empty; give an empty or new folder",
                    p.display()
                ),
            });
        }
    }
    // The random source must work before a vault depends on it.
    crate::entropy::open_source(&config.random, Path::new("/"), None)?;

    fs::create_dir_all(root).map_err(io_err(format!("create {}", root.display())))?;
    let root = root
        .canonicalize()
        .map_err(io_err(format!("resolve {}", root.display())))?;
    // The vault holds key shares: only its owner may look inside.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("set permissions of {}", root.display())))?;
    for sub in ["keys", "meta", "staging"] {
        crate::perms::create_private_dir_all(&root.join(sub))
            .map_err(io_err(format!("create {}/{sub}", root.display())))?;
    }
    fs::set_permissions(root.join("staging"), fs::Permissions::from_mode(0o700))
        .map_err(io_err("set permissions of the staging folder"))?;
    for node in &config.nodes {
        if let Some(p) = config.node_path(&root, node) {
            DirNode::new(&node.name, &p, &config.vault_id)
                .initialize_packing(opts.packs)
                .map_err(|e| VaultError::Config {
                    file: file.clone(),
                    detail: e.to_string(),
                })?;
        }
    }
    let key = VaultKey::generate()?;
    // A key in clear (`--unlock none`) would seal nothing: pools stay clear.
    let seal = match &opts.unlock {
        Some(NewMethod::None) => None,
        _ => Some(super::links::seal_key(&key)),
    };
    for node in config.nodes.iter().filter(|n| n.node_keypool.is_some()) {
        super::links::create_pair(&root, &node.name, opts.link_keys, seal.as_ref()).map_err(
            |detail| VaultError::Config {
                file: file.clone(),
                detail: format!(
                    "node {}: cannot make its link's key pools: {detail}",
                    node.name
                ),
            },
        )?;
    }
    let r2 = config.keystore.r2_path.as_ref().map(|p| root.join(p));
    let id = config.vault_id.as_str();
    let method = match &opts.unlock {
        Some(m) => m.clone(),
        None => NewMethod::KeyFile(default_key_file(id).ok_or_else(|| VaultError::Config {
            file: PathBuf::from("qsfs init options"),
            detail: "neither XDG_CONFIG_HOME nor HOME is set, so there is no default place for the key file; give --key-file PATH or --unlock passphrase".into(),
        })?),
    };
    let epochs = Arc::new(Epochs::create(&root.join("meta"), id, &key)?);
    crate::unlock::create(&root, id, &key, &method)?;
    Keystore::open(
        &root.join("keys"),
        r2.as_deref(),
        id,
        OpenMode::Create,
        OpenMode::Create,
        Some(epochs),
    )?;
    Namespace::open(
        &root.join("meta/ns"),
        id,
        OpenMode::Create,
        super::current_uid(),
        super::current_gid(),
    )?;
    EcStore::open(&root.join("meta/ec"), id, OpenMode::Create)?;
    // qsfs.toml last: a folder without it is not a vault yet, so a failed
    // init never leaves something that looks usable.
    let tmp = root.join(".qsfs.toml.tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(format!("write {}", tmp.display())))?;
        f.write_all(config.to_toml()?.as_bytes())
            .map_err(io_err(format!("write {}", tmp.display())))?;
        f.sync_all()
            .map_err(io_err(format!("sync {}", tmp.display())))?;
    }
    fs::rename(&tmp, &file).map_err(io_err(format!("write {}", file.display())))?;
    crate::sys::fsync_dir(&root).map_err(io_err(format!("sync {}", root.display())))?;
    if let Some(parent) = root.parent() {
        let _ = crate::sys::fsync_dir(parent);
    }
    Ok(config)
}

fn absolute(p: &Path) -> Result<PathBuf, VaultError> {
    std::path::absolute(p).map_err(io_err(format!("resolve {}", p.display())))
}
