//! `qsfs.toml`: the vault's settings, parsed strictly and checked with
//! errors that name the file and the setting.
//!
//! ```toml
//! format = 1                 # config format version
//! vault_id = "…"             # 32 hex digits, written into every node marker
//! k = 3                      # data chunks per stripe
//! n = 5                      # shards per object (one per node)
//! write_quorum = 4           # shards that must be durable (default k + 1)
//! max_chunk = 1048576        # largest chunk in bytes
//!
//! [random]                   # where keys come from: "os" | "device" | "pool"
//! source = "os"
//!
//! [keystore]
//! # r2_path = "/media/usb/qsfs-r2"   # keep R2 on a second disk
//! # backup = "nodes"   # keep each backup record B off this machine: a
//! #                    # k-of-n Shamir piece of it beside every shard
//! #                    # (set at init; "client", the default, keeps B here)
//!
//! [links]                    # QKD-keyed links (all optional)
//! key_rate_bps = 1000000     # simulated links refill at this key rate
//! rekey_ms = 10              # a sender changes keys this often ...
//! rekey_mib = 64             # ... and after this much traffic
//!
//! [[node]]                   # one table per node; relative paths are
//! name = "node-0"            # relative to the vault folder
//! kind = "dir"
//! path = "nodes/node-0"
//! keypool = "links/node-0.a.pool"       # with node_keypool: reached through
//! node_keypool = "links/node-0.b.pool"  # an in-process QKD-keyed link
//!
//! [[node]]                   # a node server (`qsfs node serve`)
//! name = "node-3"
//! kind = "remote"            # may be left out when `address` is given
//! address = "10.0.0.3:7103"
//! keypool = "keys/node-3.pool"   # the link's key pool, or a KME:
//! # kme = { url = "https://kme:8443", sae_id = "vault", peer_sae_id = "node-3",
//! #         cert = "vault.pem", key = "vault-key.pem", ca = "ca.pem" }
//! # insecure_plaintext = true    # no link encryption (tests, trusted LAN)
//! # connect_timeout_ms = 3000
//! # io_timeout_ms = 30000
//! # request_timeout_ms = 15000  # a whole request, however slowly answered
//! # draining = true              # set by `qsfs node drain`: no new shards
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::VaultError;
use crate::entropy::EntropyConfig;
use crate::erasure::MAX_SHARDS;

/// Config format version written by this build.
pub const CONFIG_FORMAT: u32 = 1;
/// Default largest chunk: 1 MiB.
pub const DEFAULT_MAX_CHUNK: u32 = 1 << 20;
/// Largest stripe (max_chunk x n): a few stripes are in memory at a time.
const MAX_STRIPE_BYTES: u64 = 256 << 20;

/// The parsed `qsfs.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version.
    pub format: u32,
    /// Random identifier of the vault.
    pub vault_id: String,
    /// Data chunks per stripe.
    pub k: usize,
    /// Shards per object.
    pub n: usize,
    /// Shards that must be durable for a write to succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quorum: Option<usize>,
    /// Largest chunk in bytes.
    #[serde(default = "default_max_chunk")]
    pub max_chunk: u32,
    /// Random source for keys.
    #[serde(default)]
    pub random: EntropyConfig,
    /// Keystore placement.
    #[serde(default)]
    pub keystore: KeystoreConfig,
    /// QKD-keyed link settings.
    #[serde(default, skip_serializing_if = "LinksConfig::is_default")]
    pub links: LinksConfig,
    /// Folder nodes pack small shards (`qsfs init --packs`): folders added
    /// or adopted later get a `packs` folder too. Written only when on, so
    /// a qsfs that cannot read packs refuses the vault by name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub packs: bool,
    /// Storage nodes.
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeConfig>,
}

/// How the QKD-keyed links behave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksConfig {
    /// Key rate of the simulated links, bits per second (default
    /// 1,000,000; the paper's metropolitan QKD network made 49,500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rate_bps: Option<u64>,
    /// A sender takes a fresh key at least this often, in ms (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_ms: Option<u64>,
    /// ... and after this many MiB under one key (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_mib: Option<u64>,
}

impl LinksConfig {
    fn is_default(&self) -> bool {
        *self == LinksConfig::default()
    }
}

pub use crate::qkd::etsi014::KmeConfig;

fn default_max_chunk() -> u32 {
    DEFAULT_MAX_CHUNK
}

/// Where the shares live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreConfig {
    /// A separate folder for R2 (another disk, a removable drive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2_path: Option<PathBuf>,
    /// Where new objects' backup records `B` go.
    #[serde(default, skip_serializing_if = "BackupPlace::is_client")]
    pub backup: BackupPlace,
}

/// Where the backup records `B` of new objects are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupPlace {
    /// In the client's (sealed) keystore, beside R1 and R2.
    #[default]
    Client,
    /// Off the client: `B` is split `k`-of-`n` (Shamir) and piece `i` is
    /// written after the chunks of shard `i`, so any `k` nodes rebuild it
    /// and fewer than `k` learn nothing of it.
    Nodes,
}

impl BackupPlace {
    fn is_client(&self) -> bool {
        *self == BackupPlace::Client
    }
}

/// One storage node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique name; manifests refer to nodes by it.
    pub name: String,
    /// Node type: `dir` for a local folder, `remote` for a node server.
    /// Left out, it follows from `address` (remote) or `path` (dir).
    #[serde(default)]
    pub kind: String,
    /// Folder of a `dir` node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `host:port` of a `remote` node's server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Key pool file of the QKD-keyed link to the node (the vault's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypool: Option<PathBuf>,
    /// The node end's key pool of a `dir` node reached through an
    /// in-process link (the node end runs inside the qsfs process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_keypool: Option<PathBuf>,
    /// A KME instead of a key pool file, for a `remote` node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kme: Option<KmeConfig>,
    /// Reach a `remote` node without link encryption (its server runs
    /// with `--insecure-plaintext`): tests and trusted networks only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
    /// Longest wait for a connection to a `remote` node (default 3000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait for one read or write to a `remote` node (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_timeout_ms: Option<u64>,
    /// Longest time for one whole request to a `remote` node, however it
    /// paces its bytes (default 15000); a read then uses another shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Being drained (`qsfs node drain`): no new shards go there, and
    /// `qsfs node drain` or `qsfs rebalance` move its shards away.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

impl Config {
    /// Effective write quorum.
    pub fn quorum(&self) -> usize {
        self.write_quorum.unwrap_or((self.k + 1).min(self.n))
    }

    /// Parses and checks the text of `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Config, VaultError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| VaultError::Config {
            file: file.to_path_buf(),
            detail: e.to_string().trim_end().to_string(),
        })?;
        for node in &mut cfg.nodes {
            if node.kind.is_empty() {
                node.kind = if node.address.is_some() {
                    "remote"
                } else {
                    "dir"
                }
                .into();
            }
        }
        cfg.check(file)?;
        Ok(cfg)
    }

    /// Reads `qsfs.toml` of the vault at `root`.
    pub fn load(root: &Path) -> Result<Config, VaultError> {
        let file = root.join("qsfs.toml");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            if crate::sys::is_dead_mount_error(&e)
                && let Some(mount) = crate::sys::dead_mount(root)
            {
                return VaultError::DeadMount {
                    path: root.to_path_buf(),
                    mount,
                };
            }
            if e.kind() == std::io::ErrorKind::NotFound {
                if root.exists() {
                    VaultError::NotAVault(root.to_path_buf())
                } else {
                    VaultError::NoVault(root.to_path_buf())
                }
            } else {
                VaultError::Io {
                    what: format!("read {}", file.display()),
                    source: e,
                }
            }
        })?;
        Self::parse(&text, &file)
    }

    /// Checks the settings; the error names the file and the setting.
    pub fn check(&self, file: &Path) -> Result<(), VaultError> {
        let bad = |detail: String| {
            Err(VaultError::Config {
                file: file.to_path_buf(),
                detail,
            })
        };
        if self.format != CONFIG_FORMAT {
            return bad(format!(
                "format = {} is not supported by this qsfs (it reads format {CONFIG_FORMAT})",
                self.format
            ));
        }
        if self.vault_id.len() != 32 || !self.vault_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "vault_id = {:?} must be 32 hex digits",
                self.vault_id
            ));
        }
        if self.k == 0 || self.k >= self.n || self.n > MAX_SHARDS {
            return bad(format!(
                "k = {}, n = {}: need 1 <= k < n <= {MAX_SHARDS} (k shards of n rebuild a file)",
                self.k, self.n
            ));
        }
        let q = self.quorum();
        if q < self.k || q > self.n {
            return bad(format!(
                "write_quorum = {q} must be between k = {} and n = {}",
                self.k, self.n
            ));
        }
        if self.max_chunk < 4096 || self.max_chunk > (64 << 20) {
            return bad(format!(
                "max_chunk = {} must be between 4096 and {}",
                self.max_chunk,
                64 << 20
            ));
        }
        if u64::from(self.max_chunk) * self.n as u64 > MAX_STRIPE_BYTES {
            return bad(format!(
                "max_chunk = {} with n = {} makes stripes of {} MiB; keep max_chunk x n under {} MiB",
                self.max_chunk,
                self.n,
                (u64::from(self.max_chunk) * self.n as u64) >> 20,
                MAX_STRIPE_BYTES >> 20
            ));
        }
        if self.nodes.len() < self.n {
            return bad(format!(
                "{} [[node]] entries, but n = {} needs at least {} (each shard of a file goes to a different node)",
                self.nodes.len(),
                self.n,
                self.n
            ));
        }
        let l = &self.links;
        for (what, v, max) in [
            ("key_rate_bps", l.key_rate_bps, 10_000_000_000),
            ("rekey_ms", l.rekey_ms, 3_600_000),
            ("rekey_mib", l.rekey_mib, 1 << 20),
        ] {
            if let Some(v) = v
                && !(1..=max).contains(&v)
            {
                return bad(format!("[links] {what} = {v} is out of range (1 to {max})"));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty() || node.name.contains(char::is_whitespace) {
                return bad(format!(
                    "node #{}: name {:?} must be non-empty without spaces",
                    i + 1,
                    node.name
                ));
            }
            if self.nodes[..i].iter().any(|o| o.name == node.name) {
                return bad(format!("node name {:?} is used twice", node.name));
            }
            match node.kind.as_str() {
                "dir" => {
                    let Some(path) = &node.path else {
                        return bad(format!("node {:?}: kind = \"dir\" needs a path", node.name));
                    };
                    if node.keypool.is_some() != node.node_keypool.is_some() {
                        return bad(format!(
                            "node {:?}: an in-process link needs both keypool (the vault's end) and \
                             node_keypool (the node's end); remove both to reach the folder directly",
                            node.name
                        ));
                    }
                    if node.kme.is_some() {
                        return bad(format!(
                            "node {:?}: kme is for remote nodes; a dir node's in-process link uses \
                             keypool and node_keypool",
                            node.name
                        ));
                    }
                    if let Some(other) = self.nodes[..i]
                        .iter()
                        .find(|o| o.path.as_ref() == Some(path))
                    {
                        return bad(format!(
                            "nodes {:?} and {:?} have the same path {}; every node needs its own folder",
                            other.name,
                            node.name,
                            path.display()
                        ));
                    }
                }
                "remote" => {
                    let Some(address) = &node.address else {
                        return bad(format!(
                            "node {:?}: kind = \"remote\" needs an address (host:port of its `qsfs node serve`)",
                            node.name
                        ));
                    };
                    if !address.contains(':') {
                        return bad(format!(
                            "node {:?}: address {address:?} needs a port (host:port)",
                            node.name
                        ));
                    }
                    if node.keypool.is_none() && node.kme.is_none() && !node.insecure_plaintext {
                        return bad(format!(
                            "node {:?}: a remote node needs keypool = \"FILE\" (the key pool of its link), \
                             kme = {{ ... }} (an ETSI 014 key manager), or insecure_plaintext = true to send \
                             shards unencrypted",
                            node.name
                        ));
                    }
                    if node.insecure_plaintext && (node.keypool.is_some() || node.kme.is_some()) {
                        return bad(format!(
                            "node {:?}: insecure_plaintext = true next to a key source would send \
                             shards in clear; remove insecure_plaintext (or the key source)",
                            node.name
                        ));
                    }
                    if node.keypool.is_some() && node.kme.is_some() {
                        return bad(format!(
                            "node {:?}: give keypool or kme, not both",
                            node.name
                        ));
                    }
                    if let Some(other) = self.nodes[..i]
                        .iter()
                        .find(|o| o.address.as_ref() == Some(address))
                    {
                        return bad(format!(
                            "nodes {:?} and {:?} have the same address {address}; every node needs its own server",
                            other.name, node.name
                        ));
                    }
                    for (what, v) in [
                        ("connect_timeout_ms", node.connect_timeout_ms),
                        ("io_timeout_ms", node.io_timeout_ms),
                        ("request_timeout_ms", node.request_timeout_ms),
                    ] {
                        if v == Some(0) {
                            return bad(format!("node {:?}: {what} must be above 0", node.name));
                        }
                    }
                }
                other => {
                    return bad(format!(
                        "node {:?}: unknown kind {other:?} (known: \"dir\", \"remote\")",
                        node.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The TOML text of this config, with a header comment.
    pub fn to_toml(&self) -> Result<String, VaultError> {
        let body = toml::to_string_pretty(self)
            .map_err(|e| VaultError::Internal(format!("cannot encode qsfs.toml: {e}")))?;
        Ok(format!(
            "# qsfs vault configuration. Shards of every file go to n of the nodes below;\n\
             # any k of them rebuild it. See README.md (\"Vault layout\") for every setting.\n{body}"
        ))
    }

    /// A node's folder, resolved against the vault folder.
    pub fn node_path(&self, root: &Path, node: &NodeConfig) -> Option<PathBuf> {
        node.path.as_ref().map(|p| root.join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            format: 1,
            vault_id: "0123456789abcdef0123456789abcdef".into(),
            k: 3,
            n: 5,
            write_quorum: None,
            max_chunk: DEFAULT_MAX_CHUNK,
            random: EntropyConfig::Os,
            keystore: KeystoreConfig::default(),
            links: LinksConfig::default(),
            packs: false,
            nodes: (0..5)
                .map(|i| NodeConfig {
                    name: format!("node-{i}"),
                    kind: "dir".into(),
                    path: Some(format!("nodes/node-{i}").into()),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_defaults() {
        let c = sample();
        let text = c.to_toml().unwrap();
        let back = Config::parse(&text, Path::new("qsfs.toml")).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.quorum(), 4);
    }

    #[test]
    fn errors_name_the_setting() {
        let f = Path::new("/v/qsfs.toml");
        let mut c = sample();
        c.k = 5;
        let e = c.check(f).unwrap_err().to_string();
        assert!(e.contains("/v/qsfs.toml") && e.contains("k = 5"), "{e}");
        let mut c = sample();
        c.nodes.pop();
        assert!(c.check(f).unwrap_err().to_string().contains("n = 5"));
        let e = Config::parse("k = 3\nbogus = 1\n", f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/v/qsfs.toml"), "{e}");
        let mut c = sample();
        c.nodes[1].name = "node-0".into();
        assert!(c.check(f).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn remote_nodes() {
        let f = Path::new("/v/qsfs.toml");
        let mut text = sample().to_toml().unwrap();
        text.push_str(
            "\n[[node]]\nname = \"node-5\"\naddress = \"127.0.0.1:7105\"\nkeypool = \"keys/node-5.pool\"\n\
             \n[[node]]\nname = \"node-6\"\nkind = \"remote\"\naddress = \"h:1\"\ninsecure_plaintext = true\nio_timeout_ms = 500\n",
        );
        let c = Config::parse(&text, f).unwrap();
        assert_eq!(c.nodes[5].kind, "remote");
        assert_eq!(c.nodes[0].kind, "dir");
        assert!(c.nodes[6].insecure_plaintext && c.nodes[6].io_timeout_ms == Some(500));
        // Written back and read again: the same.
        assert_eq!(Config::parse(&c.to_toml().unwrap(), f).unwrap(), c);
        let mut bad = c.clone();
        bad.nodes[5].keypool = None;
        assert!(bad.check(f).unwrap_err().to_string().contains("keypool"));
        let mut bad = c.clone();
        bad.nodes[6].address = Some("127.0.0.1:7105".into());
        assert!(
            bad.check(f)
                .unwrap_err()
                .to_string()
                .contains("same address")
        );
        let mut bad = c;
        bad.nodes[6].address = None;
        assert!(
            bad.check(f)
                .unwrap_err()
                .to_string()
                .contains("needs an address")
        );
    }
}
