//! Storage nodes: where shard files live.
//!
//! A node stores and serves shard files and nothing else: never plaintext,
//! names or keys. The [`Node`] trait is the seam between the erasure-coding
//! side and storage, small on purpose (create, commit, read, delete, list),
//! so a directory, a remote node server or an object store can sit behind it.
//! Writing is two-phase so many shards can share one durability barrier:
//! [`ShardStore::create`] streams a shard that stays invisible, then
//! [`ShardStore::commit`] makes a whole group of them durable and visible at
//! once. Between the two the caller holds a [`PendingShard`], a token the
//! node issued (pending.rs).
//!
//! ```text
//! header.rs     the 64-byte shard header (format first, pure encode/decode)
//! dir.rs        a folder node: shard files, two-phase writes, listing
//! packfmt.rs    the pack format: many small shards in one file (pure)
//! packs.rs      a folder node's packs: appends, commits, index, repack
//! pending.rs    pending shards: tokens a node issues and takes back
//! treefile.rs   saved proof trees next to shards (audits)
//! proof.rs      proof-of-possession challenges and proofs (pure)
//! wire/         the node protocol: a pure codec of requests and responses
//! conn.rs       a connection (TCP, or an in-process socket pair) with a deadline
//! transport.rs  how a connection becomes a channel (QKD link or plain)
//! plain.rs      unencrypted framing, only for --insecure-plaintext and tests
//! remote/       the client: a node server reached over a channel
//! server.rs     the node server: serves a folder node to remote vaults
//! admission.rs  who the server lets in: handshake caps, rate-limited refusals
//! ```

mod admission;
pub mod conn;
mod dir;
mod header;
mod packfmt;
mod packs;
mod pending;
pub mod plain;
pub mod proof;
mod remote;
pub mod server;
pub mod transport;
pub(crate) mod treefile;
pub mod wire;

pub use dir::DirNode;
pub use header::{HEADER_LEN, MAX_PIECE, ShardHeader, ShardKey};
pub use pending::{NotIssued, PendingShard, PendingToken};
pub use proof::{Challenge, Holdings, PossessionProof, ProvenBlock};
pub use remote::{RemoteNode, RemoteOptions};

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong on a node.
#[derive(Debug, Error)]
pub enum NodeErrorKind {
    /// The shard is not on the node.
    #[error("shard not found")]
    NotFound,
    /// The node cannot be used at all (unreachable, refused, its folder
    /// gone).
    #[error("node offline: {0}")]
    Offline(String),
    /// A remote node did not answer in time; kept apart from `Offline`
    /// because a slow node is retried later, a refused one is not.
    #[error("node offline: {0}")]
    Timeout(String),
    /// The node's storage belongs to another vault or node: writing there
    /// would mix vaults, so it is never used.
    #[error("node offline: {0}")]
    Foreign(String),
    /// The node server broke the protocol (or is of another version).
    #[error("node protocol error: {0}")]
    Protocol(String),
    /// The shard exists but is not what it should be.
    #[error("shard damaged: {0}")]
    Corrupt(String),
    /// An I/O error from the node's storage.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A pending shard was brought to a node that did not write it: a bug
    /// of the caller, refused so one node never publishes another's write.
    #[error("{0}")]
    NotIssued(#[from] NotIssued),
}

/// A node operation failed; says which node, what, which shard and,
/// for a folder node, which file or folder.
#[derive(Debug, Error)]
#[error("{node}: {op} {shard}failed: {kind}{}", at(.path))]
pub struct NodeError {
    /// Node name.
    pub node: String,
    /// Operation ("write shard", "read shard", ...).
    pub op: &'static str,
    /// Shard concerned, formatted with a trailing space, or empty.
    pub shard: String,
    /// The file or folder the operation failed on, when the node is a
    /// folder here (a remote node's paths are on its own machine).
    pub path: Option<PathBuf>,
    /// The cause.
    #[source]
    pub kind: NodeErrorKind,
}

fn at(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" (at {})", p.display()))
        .unwrap_or_default()
}

impl NodeError {
    /// Builds an error for `op` on `shard` of `node`.
    pub fn new(
        node: &str,
        op: &'static str,
        shard: Option<ShardKey>,
        kind: NodeErrorKind,
    ) -> NodeError {
        NodeError {
            node: node.to_string(),
            op,
            shard: shard.map(|s| format!("{s} ")).unwrap_or_default(),
            path: None,
            kind,
        }
    }

    /// The same error, naming the file or folder it happened on.
    pub fn at(mut self, path: &std::path::Path) -> NodeError {
        self.path = Some(path.to_path_buf());
        self
    }

    /// What fixes a storage failure, by its cause: the sentence a report
    /// that shows this error adds (the caller then says what to run
    /// again: a scrub, a drain).
    pub fn next_step(&self) -> &'static str {
        match &self.kind {
            NodeErrorKind::NotFound => {
                "the shard is gone; `qsfs scrub --repair` rebuilds it from the other shards"
            }
            NodeErrorKind::Corrupt(_) => {
                "the shard is damaged; `qsfs scrub --repair` rebuilds it from the other shards"
            }
            NodeErrorKind::Offline(_) | NodeErrorKind::Timeout(_) => {
                "bring the node back (mount its disk, start its node server, check the network)"
            }
            NodeErrorKind::Foreign(_) => {
                "point the node at this vault's own folder (`qsfs node` lists where each node is)"
            }
            NodeErrorKind::Protocol(_) => {
                "run the same qsfs version on the vault and the node server"
            }
            NodeErrorKind::NotIssued(_) => {
                "write the object again; this is a qsfs bug, please report it"
            }
            NodeErrorKind::Io(e) => match io_errno(e) {
                Some(libc::ENOSPC | libc::EDQUOT) => {
                    "free space on the node's disk, or add a node (`qsfs node add`)"
                }
                Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
                    "make the node's folder writable by the user running qsfs"
                }
                _ => "check the node's disk (dmesg, free space, permissions)",
            },
        }
    }

    /// The OS error number behind a storage failure, if there is one
    /// (see [`io_errno`]).
    pub fn errno(&self) -> Option<i32> {
        match &self.kind {
            NodeErrorKind::Io(e) => io_errno(e),
            _ => None,
        }
    }

    /// True if the node's storage is full (ENOSPC) or over quota
    /// (EDQUOT): the one storage failure a user can fix by freeing space,
    /// so it reaches the application as such rather than as EIO.
    pub fn is_storage_full(&self) -> bool {
        matches!(self.errno(), Some(libc::ENOSPC | libc::EDQUOT))
    }

    /// True if the shard simply is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, NodeErrorKind::NotFound)
    }
}

impl NodeErrorKind {
    /// Why the node could not be used at all, for the callers that treat
    /// every such failure alike (a scrub or audit skips the node instead of
    /// judging its shards); `None` for failures of a shard or the disk.
    pub fn unreachable(&self) -> Option<String> {
        match self {
            NodeErrorKind::Offline(why)
            | NodeErrorKind::Timeout(why)
            | NodeErrorKind::Foreign(why) => Some(why.clone()),
            NodeErrorKind::Protocol(why) => Some(format!("node protocol error: {why}")),
            NodeErrorKind::NotFound
            | NodeErrorKind::Corrupt(_)
            | NodeErrorKind::Io(_)
            | NodeErrorKind::NotIssued(_) => None,
        }
    }
}

/// The OS error number of an I/O error: its raw errno, or for errors made
/// without one (by std or by our own code) the errno their kind stands
/// for, so a full disk is recognised however the error was built.
pub fn io_errno(e: &std::io::Error) -> Option<i32> {
    use std::io::ErrorKind as K;
    e.raw_os_error().or(match e.kind() {
        K::StorageFull => Some(libc::ENOSPC),
        K::QuotaExceeded => Some(libc::EDQUOT),
        K::ReadOnlyFilesystem => Some(libc::EROFS),
        _ => None,
    })
}

/// The per-node failures of one object's write, in the order they
/// happened; each keeps its node, operation, shard and typed cause.
#[derive(Debug, Default)]
pub struct NodeFailures(pub Vec<NodeError>);

impl NodeFailures {
    /// The failures.
    pub fn iter(&self) -> std::slice::Iter<'_, NodeError> {
        self.0.iter()
    }

    /// True if nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// ENOSPC or EDQUOT if a node ran out of space (ENOSPC wins: a quota
    /// is only reported when no disk was simply full).
    pub fn storage_full(&self) -> Option<i32> {
        let full: Vec<i32> = self
            .iter()
            .filter(|e| e.is_storage_full())
            .filter_map(NodeError::errno)
            .collect();
        if full.contains(&libc::ENOSPC) {
            Some(libc::ENOSPC)
        } else {
            full.first().copied()
        }
    }
}

impl std::fmt::Display for NodeFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How a node looks from here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum NodeHealth {
    /// Usable.
    Ok,
    /// Not reachable or its folder is gone.
    Offline(String),
    /// Readable but refuses writes.
    ReadOnly(String),
    /// Holds something that is not this vault's node.
    Foreign(String),
}

/// A shard entry found on a node by [`ShardStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShard {
    /// The shard.
    pub key: ShardKey,
    /// Its size on the node, header included.
    pub size: u64,
}

/// Result of [`ShardStore::list`]: shards, plus leftovers of interrupted writes.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Committed shard files.
    pub shards: Vec<StoredShard>,
    /// Temporary files of writes that never committed.
    pub leftovers: Vec<PathBuf>,
    /// Bytes of packs that hold removed or never committed shards, until a
    /// repack reclaims them (folder nodes that pack; 0 elsewhere).
    pub dead_bytes: u64,
}

/// A storage node: a place that keeps shards ([`ShardStore`]), can be
/// looked at ([`HealthCheck`]) and audited ([`Prover`]). The concerns are
/// separate traits so code that only needs one can say so; everything that
/// holds nodes holds them as `Arc<dyn Node>`.
pub trait Node: ShardStore + HealthCheck + Prover {
    /// Where it is (a folder, an address), for messages and status.
    fn location(&self) -> String;
}

/// The data side of a node: shards written in two phases, read, listed
/// and removed.
pub trait ShardStore: Send + Sync {
    /// Name from the vault config (`node-0`, ...). Here rather than on
    /// [`Node`] because every error a store returns names it, and so do
    /// the default proofs built from its reads.
    fn name(&self) -> &str;
    /// Starts writing a shard; it stays invisible until committed.
    fn create(&self, header: &ShardHeader) -> Result<Box<dyn ShardSink>, NodeError>;
    /// Makes finished shards durable and visible (one barrier for the
    /// group). Returns one result per shard, in order; a shard this node
    /// did not issue fails with [`NodeErrorKind::NotIssued`].
    fn commit(&self, shards: Vec<PendingShard>) -> Vec<Result<(), NodeError>>;
    /// Reads `buf.len()` bytes of a shard's payload at `offset` (payload
    /// offsets start after the header). Short shards are an error.
    fn read_at(&self, key: ShardKey, offset: u64, buf: &mut [u8]) -> Result<(), NodeError>;
    /// Reads and checks a shard's header.
    fn read_header(&self, key: ShardKey) -> Result<ShardHeader, NodeError>;
    /// Removes a shard; a shard that is already gone is not an error.
    fn delete(&self, key: ShardKey) -> Result<(), NodeError>;
    /// Removes every shard and every temporary shard file of `object`
    /// (whatever its index), durably; for cleanups that have no manifest
    /// to say where the shards went. Returns how many files went.
    fn purge(&self, object: crate::ObjectId) -> Result<usize, NodeError>;
    /// Lists what the node holds.
    fn list(&self) -> Result<Listing, NodeError>;
}

/// The health a check found, if it was found within `ttl` (nodes keep
/// their last check, for a mount checks before every shard it writes).
pub(crate) fn fresh_health(
    last: Option<&(std::time::Instant, NodeHealth)>,
    ttl: std::time::Duration,
) -> Option<NodeHealth> {
    last.filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, h)| h.clone())
}

/// How usable a node is, for status and for skipping a node before a
/// write rather than failing in the middle of one.
pub trait HealthCheck: Send + Sync {
    /// Current health.
    fn health(&self) -> NodeHealth;
    /// The health a recent check found, while it is still fresh; None
    /// when asking would mean a check (I/O). Lets a writer skip the
    /// thread it would otherwise start per node to check them at once.
    fn cached_health(&self) -> Option<NodeHealth> {
        None
    }
    /// Tries a tiny write (for status and health checks, not the write
    /// path): catches read-only mounts and immutable folders that look
    /// fine until a shard write fails.
    fn probe_write(&self) -> Result<(), String> {
        Ok(())
    }
    /// Capacity of the node's storage, if it can tell.
    fn space(&self) -> Option<crate::sys::FsSpace>;
}

/// Answers audits. The defaults read through the store; a node that can
/// compute proofs where the data is (a node server, a folder with saved
/// trees) overrides them.
pub trait Prover: ShardStore {
    /// Answers an audit challenge for one shard: the challenged blocks
    /// and their authentication paths in the tree over what the node
    /// holds (proof.rs).
    fn prove(&self, key: ShardKey, challenge: &Challenge) -> Result<PossessionProof, NodeError> {
        proof::prove_by_reading(self, key, challenge)
    }
    /// A root over every shard the node holds (the deletion check).
    fn holdings(&self, nonce: &[u8; 32]) -> Result<Holdings, NodeError> {
        proof::holdings_by_listing(self, nonce)
    }
}

/// A shard being written.
pub trait ShardSink: Send {
    /// Appends payload bytes (the header was written by `create`).
    fn write(&mut self, data: &[u8]) -> Result<(), NodeError>;
    /// Ends the write; the shard waits for [`ShardStore::commit`] on the
    /// node that issued it.
    fn finish(self: Box<Self>) -> Result<PendingShard, NodeError>;
}
