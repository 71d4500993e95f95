//! A storage node that is a local folder (a disk, an NFS share, a synced
//! cloud folder).
//!
//! Layout of a node folder:
//! ```text
//! NODE/qsfs-node                      marker: "qsfs-node 1\nvault <id>\nnode <name>\n"
//! NODE/shards/<ab>/<object hex>.<i>   shard i of an object, fanned out on
//!                                     the first two hex digits of its id
//! NODE/shards/<ab>/.<object hex>.<i>.<tag>.tmp   a write not yet committed
//! NODE/packs/<seq>.pack               small shards, many to a file (packs.rs);
//!                                     a node with this folder packs shards
//!                                     of up to PACK_MAX_SHARD bytes
//! ```
//! A shard is written to a temporary name in its final folder, fsynced,
//! renamed, and the folder fsynced, so a shard file under its final name is
//! always complete. A missing node folder, or one without the marker, is
//! treated as an offline disk and never written to: an empty folder is just
//! as likely the mount point of a disk that is not mounted (writing there
//! would silently fill the wrong disk). A replaced disk is taken into use
//! explicitly with `qsfs node adopt`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::header::{HEADER_LEN, ShardHeader, ShardKey};
use super::pending::PendingTable;
use super::{
    HealthCheck, Listing, Node, NodeError, NodeErrorKind, NodeHealth, PendingShard, Prover,
    ShardSink, ShardStore, StoredShard,
};
use crate::ObjectId;

const MARKER: &str = "qsfs-node";
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Shards up to this many bytes (header and key piece included) go into
/// packs on a node that packs. Why 1 MiB: a shard file costs a create, a
/// rename and a folder sync (about 0.3 ms here), a tenth of the time to
/// write 1 MiB; below that the per-file cost dominates, above it a repack
/// would copy more than it saves.
pub const PACK_MAX_SHARD: u64 = 1 << 20;

/// A node backed by a local folder.
#[derive(Debug)]
pub struct DirNode {
    name: String,
    root: PathBuf,
    vault_id: String,
    sync_fd: std::sync::Mutex<Option<File>>,
    /// Last health check: a mount checks before every shard it writes, and
    /// the check reads the marker file.
    health_cache: std::sync::Mutex<Option<(std::time::Instant, NodeHealth)>>,
    /// Empty files made ahead for shard writes (`NODE/stock/`).
    stock: crate::stock::Stock,
    /// Trees of recently audited shards (proof.rs).
    trees: super::proof::TreeCache,
    /// Finished writes waiting for their commit, by the token handed out.
    pending: Arc<PendingTable<DirPending>>,
    /// Small shards, many to a file (`NODE/packs/`).
    packs: Arc<super::packs::Packs>,
    /// Whether new small shards go into packs: the node folder has a
    /// `packs` folder (made by `qsfs init --packs`), looked at once.
    packing: std::sync::OnceLock<bool>,
}

/// Empty files a node keeps ready for shard writes.
const STOCK_FILES: usize = 16;

/// How long a health check stays valid.
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Shards in one commit from which a single `syncfs` replaces per-file fsyncs.
const SYNCFS_GROUP: usize = 4;
/// Writeback of a shard being streamed starts every this many bytes, so the
/// commit does not wait for the whole object at once.
const WRITEBACK_EVERY: u64 = 8 << 20;

impl DirNode {
    /// A handle on the node folder `root`; nothing is touched until used.
    pub fn new(name: &str, root: &Path, vault_id: &str) -> DirNode {
        DirNode {
            name: name.to_string(),
            root: root.to_path_buf(),
            vault_id: vault_id.to_string(),
            sync_fd: std::sync::Mutex::new(None),
            health_cache: std::sync::Mutex::new(None),
            stock: crate::stock::Stock::guarded(
                &root.join("stock"),
                Some(&root.join(MARKER)),
                crate::perms::FILE_MODE,
                STOCK_FILES,
            ),
            trees: Default::default(),
            pending: PendingTable::new(),
            packs: Arc::new(super::packs::Packs::new(&root.join("packs"))),
            packing: std::sync::OnceLock::new(),
        }
    }

    /// Creates the node folder and its marker, and the packs folder when
    /// the vault packs small shards.
    pub fn initialize_packing(&self, packs: bool) -> Result<(), NodeError> {
        self.initialize()?;
        if packs { self.enable_packs() } else { Ok(()) }
    }

    /// Makes the node pack small shards from now on (`qsfs init --packs`).
    pub fn enable_packs(&self) -> Result<(), NodeError> {
        let dir = self.root.join("packs");
        match crate::perms::create_private_dir(&dir) {
            Ok(()) => crate::sys::fsync_dir(&self.root).map_err(|e| {
                self.err("make the packs folder", None, NodeErrorKind::Io(e))
                    .at(&self.root)
            }),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self
                .err("make the packs folder", None, NodeErrorKind::Io(e))
                .at(&dir)),
        }
    }

    fn packs_small_shards(&self) -> bool {
        *self
            .packing
            .get_or_init(|| self.root.join("packs").is_dir())
    }

    /// Space use of the node's packs.
    pub fn pack_stats(&self) -> std::io::Result<super::packs::PackStats> {
        self.packs.stats()
    }

    /// Size of a stored shard, header included; None if the node does not hold it.
    pub fn shard_size(&self, key: ShardKey) -> std::io::Result<Option<u64>> {
        if let Some((loc, _)) = self.packs.find(key)? {
            return Ok(Some(u64::from(loc.len)));
        }
        match fs::metadata(self.shard_path(key)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Drops the cached health, so the next check looks at the folder.
    fn forget_health(&self) {
        *self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn pack_err(&self, op: &'static str, key: Option<ShardKey>, e: std::io::Error) -> NodeError {
        self.err(op, key, Self::io_kind(e))
            .at(&self.root.join("packs"))
    }

    /// Creates the node folder and its marker (at `qsfs init`).
    pub fn initialize(&self) -> Result<(), NodeError> {
        let err = |e| {
            self.err("initialize node folder", None, NodeErrorKind::Io(e))
                .at(&self.root)
        };
        if let Some(parent) = self.root.parent() {
            fs::create_dir_all(parent).map_err(err)?;
        }
        match crate::perms::create_private_dir(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if fs::read_dir(&self.root).map_err(err)?.next().is_some()
                    && self.read_marker().is_none()
                {
                    return Err(self.err(
                        "initialize node folder",
                        None,
                        NodeErrorKind::Offline(format!(
                            "{} is not empty and is not a qsfs node; choose an empty folder",
                            self.root.display()
                        )),
                    ));
                }
            }
            Err(e) => return Err(err(e)),
        }
        self.adopt()
    }

    /// Writes the marker and the shards folder into an empty node folder.
    fn adopt(&self) -> Result<(), NodeError> {
        let err = |e| {
            self.err("write node marker", None, NodeErrorKind::Io(e))
                .at(&self.root.join(MARKER))
        };
        // Shards are owner-only: the folder, its folders and files.
        crate::perms::make_private(&self.root).map_err(err)?;
        self.make_shard_folders()?;
        let tmp = self.root.join(".qsfs-node.tmp");
        let body = format!("{MARKER} 1\nvault {}\nnode {}\n", self.vault_id, self.name);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::perms::FILE_MODE)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(body.as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, self.root.join(MARKER)).map_err(err)?;
        crate::sys::fsync_dir(&self.root).map_err(err)?;
        *self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        Ok(())
    }

    /// Makes `shards/` and all 256 fan-out folders that are not there,
    /// durably, with one folder fsync each for `shards/` and the node
    /// folder: creating them on demand would cost a folder fsync per new
    /// folder in the write path. The node folder itself must exist.
    fn make_shard_folders(&self) -> Result<(), NodeError> {
        let shards = self.root.join("shards");
        let fail = |e, path: &Path| {
            self.err("make the shard folders", None, NodeErrorKind::Io(e))
                .at(path)
        };
        let made_shards = match crate::perms::create_private_dir(&shards) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(fail(e, &shards)),
        };
        for b in 0..=255u8 {
            let fan = shards.join(format!("{b:02x}"));
            match crate::perms::create_private_dir(&fan) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(e, &fan)),
            }
        }
        crate::sys::fsync_dir(&shards).map_err(|e| fail(e, &shards))?;
        if made_shards {
            crate::sys::fsync_dir(&self.root).map_err(|e| fail(e, &self.root))?;
        }
        Ok(())
    }

    /// Makes the shard folders again when a write finds its fan-out folder
    /// gone (`shards/` or `shards/<ab>/` removed by hand, or lost with a
    /// restore): the shards that were in them are repair debt, and new
    /// shards, scrub's rebuilds included, must still land. Only a folder
    /// that holds this very node's marker, read fresh here and not from
    /// the health cache, is touched: a bare mount point of a disk that is
    /// not mounted never gets folders made in it.
    fn restore_shard_folders(&self) -> Result<(), NodeError> {
        let ours = self
            .read_marker()
            .is_some_and(|(vault, node)| vault == self.vault_id && node == self.name);
        if !ours {
            *self
                .health_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return Err(self.err(
                "write shard",
                None,
                NodeErrorKind::Offline(format!(
                    "{} lost its qsfs node marker while in use; if its disk was unmounted, mount it again",
                    self.root.display()
                )),
            ));
        }
        let had_shards = self.root.join("shards").is_dir();
        self.make_shard_folders()?;
        if !had_shards {
            tracing::warn!(
                "{}: its shards folder {} was gone (the node marker is there); made it again. \
                 Shards that were in it are rebuilt by `qsfs scrub --repair`",
                self.name,
                self.root.join("shards").display()
            );
        }
        Ok(())
    }

    fn read_marker(&self) -> Option<(String, String)> {
        Self::marker_at(&self.root)
    }

    /// The (vault id, node name) in the marker of the node folder `root`,
    /// if it has one (a node server learns whose node it is from it).
    pub fn marker_at(root: &Path) -> Option<(String, String)> {
        let text = fs::read_to_string(root.join(MARKER)).ok()?;
        let mut vault = None;
        let mut node = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("vault ") {
                vault = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("node ") {
                node = Some(v.trim().to_string());
            }
        }
        Some((vault?, node?))
    }

    /// The node folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn err(&self, op: &'static str, shard: Option<ShardKey>, kind: NodeErrorKind) -> NodeError {
        NodeError::new(&self.name, op, shard, kind)
    }

    fn fan_dir(&self, object: &ObjectId) -> PathBuf {
        self.root.join("shards").join(&object.to_hex()[..2])
    }

    /// Path of a committed shard file.
    pub fn shard_path(&self, key: ShardKey) -> PathBuf {
        self.fan_dir(&key.object)
            .join(format!("{}.{}", key.object, key.index))
    }

    /// Saved audit tree of a shard (treefile.rs).
    fn tree_path(&self, key: ShardKey) -> PathBuf {
        self.root
            .join("trees")
            .join(&key.object.to_hex()[..2])
            .join(format!("{}.{}", key.object, key.index))
    }

    /// Makes sure the folder is ours before a write.
    fn ready_for_write(&self) -> Result<(), NodeError> {
        match self.health() {
            NodeHealth::Ok => Ok(()),
            NodeHealth::Offline(why) | NodeHealth::Foreign(why) | NodeHealth::ReadOnly(why) => {
                Err(self.err("write shard", None, NodeErrorKind::Offline(why)))
            }
        }
    }

    /// Looks at the folder and its marker (no caching).
    fn check_health(&self) -> NodeHealth {
        match fs::metadata(&self.root) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return NodeHealth::Offline(format!(
                    "folder {} does not exist",
                    self.root.display()
                ));
            }
            Err(e) => return NodeHealth::Offline(format!("folder {}: {e}", self.root.display())),
            Ok(m) if !m.is_dir() => {
                return NodeHealth::Offline(format!("{} is not a folder", self.root.display()));
            }
            Ok(_) => {}
        }
        match self.read_marker() {
            Some((vault, _)) if vault != self.vault_id => NodeHealth::Foreign(format!(
                "{} belongs to another vault ({vault})",
                self.root.display()
            )),
            Some((_, node)) if node != self.name => NodeHealth::Foreign(format!(
                "{} is {node} of this vault, not {}; check the node paths in qsfs.toml",
                self.root.display(),
                self.name
            )),
            Some(_) => NodeHealth::Ok,
            None => match fs::read_dir(&self.root).map(std::iter::Iterator::count) {
                Ok(0) => NodeHealth::Offline(format!(
                    "{} is empty (no qsfs node marker): if a disk belongs there, mount it; if it is a \
                     replaced disk, take it into use with `qsfs node adopt VAULT {}`",
                    self.root.display(),
                    self.name
                )),
                Ok(_) => NodeHealth::Foreign(format!(
                    "{} holds files but no qsfs node marker; if it is this node with its marker lost, \
                     restore the marker or move the files away and run `qsfs node adopt VAULT {}`",
                    self.root.display(),
                    self.name
                )),
                Err(e) => NodeHealth::Offline(format!("folder {}: {e}", self.root.display())),
            },
        }
    }

    /// Takes an empty folder (a `lost+found` of a fresh filesystem is
    /// fine) into use as this node: `qsfs node adopt`. A folder that is
    /// already this node is left as it is.
    pub fn adopt_empty(&self) -> Result<(), NodeError> {
        let fail = |why: String| self.err("adopt node folder", None, NodeErrorKind::Offline(why));
        if self.health() == NodeHealth::Ok {
            return Ok(());
        }
        if let Some((vault, node)) = self.read_marker() {
            return Err(fail(format!(
                "{} is already node {node} of vault {vault}",
                self.root.display()
            )));
        }
        let entries = fs::read_dir(&self.root)
            .map_err(|e| fail(format!("cannot read {}: {e}", self.root.display())))?
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_name() != "lost+found")
            .count();
        if entries > 0 {
            return Err(fail(format!(
                "{} is not empty; adopt only an empty folder",
                self.root.display()
            )));
        }
        self.adopt()
    }

    /// One barrier for everything on the node's filesystem. The descriptor
    /// is opened before the first shard is written, so writeback errors of
    /// our shards are reported by it (syncfs reports errors seen since the
    /// descriptor was opened).
    fn syncfs(&self) -> std::io::Result<()> {
        let guard = self
            .sync_fd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_ref() {
            Some(fd) => crate::sys::syncfs(fd),
            None => crate::sys::syncfs(&File::open(&self.root)?),
        }
    }

    fn fail_all(
        &self,
        items: &mut [Result<DirPending, NodeError>],
        op: &'static str,
        e: &std::io::Error,
    ) {
        for item in items.iter_mut() {
            if let Ok(p) = item {
                *item = Err(self.err(
                    op,
                    Some(p.key),
                    NodeErrorKind::Io(std::io::Error::new(e.kind(), e.to_string())),
                ));
            }
        }
    }

    fn io_kind(e: std::io::Error) -> NodeErrorKind {
        if e.kind() == ErrorKind::NotFound {
            NodeErrorKind::NotFound
        } else {
            NodeErrorKind::Io(e)
        }
    }
}

impl Node for DirNode {
    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

impl HealthCheck for DirNode {
    fn cached_health(&self) -> Option<NodeHealth> {
        let cache = self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        super::fresh_health(cache.as_ref(), HEALTH_TTL)
    }

    fn health(&self) -> NodeHealth {
        // Held across the check: callers at once wait for one check.
        let mut cache = self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = super::fresh_health(cache.as_ref(), HEALTH_TTL) {
            return h;
        }
        let h = self.check_health();
        *cache = Some((std::time::Instant::now(), h.clone()));
        h
    }

    fn probe_write(&self) -> Result<(), String> {
        let probe = self
            .root
            .join(format!(".qsfs-probe-{}", std::process::id()));
        let result = File::create(&probe).and_then(|mut f| f.write_all(b"probe"));
        let _ = fs::remove_file(&probe);
        result.map_err(|e| format!("{} refuses writes: {e}", self.root.display()))
    }

    fn space(&self) -> Option<crate::sys::FsSpace> {
        crate::sys::fs_space(&self.root).ok()
    }
}

impl ShardStore for DirNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, header: &ShardHeader) -> Result<Box<dyn ShardSink>, NodeError> {
        self.ready_for_write()?;
        {
            let mut fd = self
                .sync_fd
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fd.is_none() {
                *fd = File::open(&self.root).ok();
            }
        }
        let key = header.key;
        if header.file_len() <= PACK_MAX_SHARD && self.packs_small_shards() {
            let mut buf = Vec::with_capacity(header.file_len() as usize);
            buf.extend_from_slice(&header.encode());
            return Ok(Box::new(PackSink {
                node: self.name.clone(),
                key,
                buf,
                expected: header.file_len(),
                packs: Arc::clone(&self.packs),
                pending: Arc::clone(&self.pending),
                root: self.root.clone(),
                dst: self.shard_path(key),
            }));
        }
        let io = |e, at: &Path| {
            self.err("write shard", Some(key), NodeErrorKind::Io(e))
                .at(at)
        };
        let dir = self.fan_dir(&key.object);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = dir.join(format!(".{}.{}.{tag}.tmp", key.object, key.index));
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::perms::FILE_MODE)
                .open(&tmp)
        };
        // A file from the stock, renamed to the temporary name (the
        // temporary names are unique, so the rename replaces nothing).
        let stocked = self.stock.take().and_then(|p| {
            let file =
                fs::rename(&p, &tmp).and_then(|()| OpenOptions::new().write(true).open(&tmp));
            if file.is_err() {
                let _ = fs::remove_file(&p);
                let _ = fs::remove_file(&tmp);
            }
            file.ok()
        });
        let file = match stocked.map(Ok).unwrap_or_else(open) {
            Ok(f) => f,
            // Fan-out folders are made at adoption; ones removed since
            // are made again, durably, before a shard in them counts.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.restore_shard_folders()?;
                open().map_err(|e| io(e, &tmp))?
            }
            Err(e) => return Err(io(e, &tmp)),
        };
        let mut sink = DirSink {
            node: self.name.clone(),
            key,
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            tmp: Some(tmp),
            dst: self.shard_path(key),
            dir,
            written: 0,
            expected: header.file_len(),
            pending: Arc::clone(&self.pending),
        };

        sink.put(&header.encode())?;
        Ok(Box::new(sink))
    }

    fn commit(&self, shards: Vec<PendingShard>) -> Vec<Result<(), NodeError>> {
        let mut items: Vec<Result<DirPending, NodeError>> = shards
            .into_iter()
            .map(|p| {
                let key = p.key();
                self.pending
                    .claim(p)
                    .map_err(|e| self.err("commit shard", Some(key), e.into()))
            })
            .collect();
        self.commit_packed(&mut items);
        // A big group shares one filesystem barrier instead of an fsync per
        // shard file and per fan-out folder; a small one stays precise (a
        // syncfs would also flush unrelated dirty data on that disk).
        let grouped = items.iter().flatten().filter(|p| !p.done).count() >= SYNCFS_GROUP;
        // 1. The data, durable under the temporary names.
        if grouped {
            if let Err(e) = self.syncfs() {
                self.fail_all(&mut items, "sync shards", &e);
            }
        } else {
            for item in &mut items {
                if let Ok(p) = item
                    && !p.done
                    && let Err(e) = p.sync()
                {
                    *item = Err(self
                        .err("sync shard", Some(p.key), NodeErrorKind::Io(e))
                        .at(&p.dst));
                }
            }
        }
        // 2. Final names: a shard file under its final name is complete.
        for item in &mut items {
            if let Ok(p) = item
                && !p.done
                && let Err(e) = p.publish()
            {
                *item = Err(self
                    .err("publish shard", Some(p.key), NodeErrorKind::Io(e))
                    .at(&p.dst));
            }
        }
        // 3. The renames, durable.
        if grouped {
            if let Err(e) = self.syncfs() {
                self.fail_all(&mut items, "sync shard folders", &e);
            }
        } else {
            let mut dirs: Vec<PathBuf> = items
                .iter()
                .flatten()
                .filter(|p| !p.done)
                .map(|p| p.dir.clone())
                .collect();
            dirs.sort();
            dirs.dedup();
            for d in &dirs {
                if let Err(e) = crate::sys::fsync_dir(d) {
                    for item in &mut items {
                        if let Ok(p) = item
                            && !p.done
                            && p.dir == *d
                        {
                            *item = Err(self
                                .err(
                                    "sync shard folder",
                                    Some(p.key),
                                    NodeErrorKind::Io(std::io::Error::new(e.kind(), e.to_string())),
                                )
                                .at(d));
                        }
                    }
                }
            }
        }
        // A shard file now stands for a shard a pack also held (rewritten
        // by a repair): the packed copy goes.
        for item in &mut items {
            if let Ok(p) = item
                && !p.done
                && let Err(e) = self.packs.remove(p.key)
            {
                *item = Err(self.pack_err("commit shard", Some(p.key), e));
            }
        }
        items.into_iter().map(|item| item.map(|_| ())).collect()
    }

    fn read_at(&self, key: ShardKey, offset: u64, buf: &mut [u8]) -> Result<(), NodeError> {
        if let Some((loc, file)) = self.packs.find(key).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                // The pack went with its folder, maybe: as for a missing
                // shard file below, the next health check must look.
                self.forget_health();
            }
            self.pack_err("read shard", Some(key), e)
        })? {
            let payload = u64::from(loc.len).saturating_sub(HEADER_LEN as u64);
            if offset + buf.len() as u64 > payload {
                return Err(self.err(
                    "read shard",
                    Some(key),
                    NodeErrorKind::Corrupt(format!(
                        "truncated: {} bytes at payload offset {offset} are past the end",
                        buf.len()
                    )),
                ));
            }
            return file
                .read_exact_at(buf, loc.body() + HEADER_LEN as u64 + offset)
                .map_err(|e| self.pack_err("read shard", Some(key), e));
        }
        let path = self.shard_path(key);
        let err = |kind| self.err("read shard", Some(key), kind).at(&path);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                // A shard file that is not there may mean the whole folder
                // went (a disk pulled): the next health check must look,
                // not answer "ok" from the cache, so the reader can tell a
                // lost shard from an offline node.
                self.forget_health();
            }
            err(Self::io_kind(e))
        })?;
        file.read_exact_at(buf, HEADER_LEN as u64 + offset)
            .map_err(|e| {
                if e.kind() == ErrorKind::UnexpectedEof {
                    err(NodeErrorKind::Corrupt(format!(
                        "truncated: {} bytes at payload offset {offset} are past the end",
                        buf.len()
                    )))
                } else {
                    err(NodeErrorKind::Io(e))
                }
            })
    }

    fn read_header(&self, key: ShardKey) -> Result<ShardHeader, NodeError> {
        if let Some((loc, file)) = self
            .packs
            .find(key)
            .map_err(|e| self.pack_err("read shard header", Some(key), e))?
        {
            let mut buf = [0u8; HEADER_LEN];
            file.read_exact_at(&mut buf, loc.body())
                .map_err(|e| self.pack_err("read shard header", Some(key), e))?;
            let header = ShardHeader::decode(&buf).map_err(|e| {
                self.err(
                    "read shard header",
                    Some(key),
                    NodeErrorKind::Corrupt(e.to_string()),
                )
            })?;
            if header.key != key {
                return Err(self.err(
                    "read shard header",
                    Some(key),
                    NodeErrorKind::Corrupt(format!(
                        "its pack record holds shard {} instead",
                        header.key
                    )),
                ));
            }
            return Ok(header);
        }
        let path = self.shard_path(key);
        let err = |kind| self.err("read shard header", Some(key), kind).at(&path);
        let file = File::open(&path).map_err(|e| err(Self::io_kind(e)))?;
        let mut buf = [0u8; HEADER_LEN];
        file.read_exact_at(&mut buf, 0).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                err(NodeErrorKind::Corrupt(
                    "file shorter than its header".into(),
                ))
            } else {
                err(NodeErrorKind::Io(e))
            }
        })?;
        let header =
            ShardHeader::decode(&buf).map_err(|e| err(NodeErrorKind::Corrupt(e.to_string())))?;
        if header.key != key {
            return Err(err(NodeErrorKind::Corrupt(format!(
                "file holds shard {} instead",
                header.key
            ))));
        }
        Ok(header)
    }

    fn delete(&self, key: ShardKey) -> Result<(), NodeError> {
        self.packs
            .remove(key)
            .map_err(|e| self.pack_err("delete shard", Some(key), e))?;
        // The saved audit tree goes too (a cache: failures do not matter).
        let _ = fs::remove_file(self.tree_path(key));
        let path = self.shard_path(key);
        // Into the stock, for the next shard write: a read opens, reads and
        // closes, and every read is checked against the manifest's chunk
        // hashes, so a read racing this sees an error, never wrong bytes.
        match self.stock.recycle(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self
                .err("delete shard", Some(key), NodeErrorKind::Io(e))
                .at(&path)),
        }
    }

    fn purge(&self, object: ObjectId) -> Result<usize, NodeError> {
        let packed = self
            .packs
            .remove_object(object)
            .map_err(|e| self.pack_err("purge shards", None, e))?;
        Ok(packed + self.purge_files(object)?)
    }

    fn list(&self) -> Result<Listing, NodeError> {
        let mut listing = self.list_files()?;
        let packed = self
            .packs
            .list()
            .map_err(|e| self.pack_err("list shards", None, e))?;
        listing.dead_bytes = self
            .packs
            .stats()
            .map_err(|e| self.pack_err("list shards", None, e))?
            .dead;
        if !packed.is_empty() {
            listing.shards.extend(
                packed
                    .into_iter()
                    .map(|(key, size)| StoredShard { key, size }),
            );
            listing.shards.sort_by_key(|s| s.key);
            listing.shards.dedup_by_key(|s| s.key);
        }
        Ok(listing)
    }
}

impl DirNode {
    /// Commits the packed shards among `items` (one commit record and one
    /// barrier per pack), leaving shard files to the caller.
    fn commit_packed(&self, items: &mut [Result<DirPending, NodeError>]) {
        let packed: Vec<(ShardKey, super::packs::Loc)> = items
            .iter()
            .flatten()
            .filter_map(|p| p.packed.map(|l| (p.key, l)))
            .collect();
        if packed.is_empty() {
            return;
        }
        let result = self.packs.commit(&packed);
        for item in items.iter_mut() {
            let Ok(p) = item else { continue };
            if p.packed.is_none() {
                continue;
            }
            match &result {
                Ok(()) => {
                    // Committed: nothing to discard any more, and a shard
                    // file of the same shard (an older copy) goes.
                    p.packed = None;
                    p.done = true;
                    let _ = fs::remove_file(self.tree_path(p.key));
                    let _ = fs::remove_file(&p.dst);
                }
                Err(e) => {
                    *item = Err(self.pack_err(
                        "commit shard",
                        Some(p.key),
                        std::io::Error::new(e.kind(), e.to_string()),
                    ));
                }
            }
        }
    }

    fn purge_files(&self, object: ObjectId) -> Result<usize, NodeError> {
        let dir = self.fan_dir(&object);
        let err = |e: std::io::Error| self.err("purge shards", None, Self::io_kind(e)).at(&dir);
        let hex = object.to_hex();
        let (plain, hidden) = (format!("{hex}."), format!(".{hex}."));
        // Saved audit trees (a cache: failures do not matter), found by
        // listing their fan folder: trying every index was 32 failed
        // unlinks per object and node.
        let trees = self.root.join("trees").join(&hex[..2]);
        if let Ok(entries) = fs::read_dir(&trees) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&plain) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let entries = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(err(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&plain) || name.starts_with(&hidden) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(err(e)),
                }
            }
        }
        if removed > 0 {
            crate::sys::fsync_dir(&dir).map_err(err)?;
        }
        Ok(removed)
    }

    fn list_files(&self) -> Result<Listing, NodeError> {
        let shards = self.root.join("shards");
        let err = |e: std::io::Error| self.err("list shards", None, Self::io_kind(e)).at(&shards);
        let mut listing = Listing::default();
        let fans = match fs::read_dir(&shards) {
            Ok(it) => it,
            Err(e) if e.kind() == ErrorKind::NotFound && self.root.is_dir() => return Ok(listing),
            Err(e) => return Err(err(e)),
        };
        for fan in fans {
            let fan = fan.map_err(err)?;
            if !fan.file_type().map_err(err)?.is_dir() {
                continue;
            }
            // A shard removed between the two reads (a delete beside the
            // listing, as scrub, fsck and audits run beside a mount) is
            // simply not listed.
            let entries = match fs::read_dir(fan.path()) {
                Ok(it) => it,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            };
            for entry in entries {
                let entry = entry.map_err(err)?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    listing.leftovers.push(entry.path());
                    continue;
                }
                let Some((hex, idx)) = name.split_once('.') else {
                    continue;
                };
                let (Some(object), Ok(index)) = (ObjectId::from_hex(hex), idx.parse::<u8>()) else {
                    continue;
                };
                let size = match entry.metadata() {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(err(e)),
                };
                listing.shards.push(StoredShard {
                    key: ShardKey { object, index },
                    size,
                });
            }
        }
        listing.shards.sort_by_key(|s| s.key);
        Ok(listing)
    }
}

impl Prover for DirNode {
    fn prove(
        &self,
        key: ShardKey,
        challenge: &super::Challenge,
    ) -> Result<super::PossessionProof, NodeError> {
        use super::proof::TreeId;
        use super::treefile::{self, Built};
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::metadata(self.shard_path(key)).ok().map(|m| {
            (
                m.ino(),
                m.size(),
                m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            )
        });
        let Some(file) = file else {
            return super::proof::prove_with(self, key, challenge, None, None);
        };
        let id = TreeId {
            key,
            block: challenge.block,
            file,
        };
        let built = Built {
            block: challenge.block,
            file,
        };
        let saved = self.tree_path(key);
        let had = self.trees.get(&id).is_some();
        if !had
            && super::proof::check_challenge(challenge).is_ok()
            && let Some(leaves) = treefile::load(&saved, &built)
        {
            self.trees.put(
                id,
                std::sync::Arc::new(crate::rmht::Tree::from_leaves(leaves)),
            );
        }
        let loaded = self.trees.get(&id).is_some();
        let proof = super::proof::prove_with(self, key, challenge, Some(&self.trees), Some(file))?;
        if !loaded
            && let Some(tree) = self.trees.get(&id)
            && let Err(e) = treefile::save(&saved, &built, tree.leaf_hashes())
        {
            tracing::debug!("{}: cannot save the audit tree of {key}: {e}", self.name);
        }
        Ok(proof)
    }
}

struct DirSink {
    node: String,
    key: ShardKey,
    out: Option<BufWriter<File>>,
    tmp: Option<PathBuf>,
    dst: PathBuf,
    dir: PathBuf,
    written: u64,
    expected: u64,
    pending: Arc<PendingTable<DirPending>>,
}

impl DirSink {
    fn put(&mut self, data: &[u8]) -> Result<(), NodeError> {
        let out = self.out.as_mut().ok_or_else(|| {
            NodeError::new(
                &self.node,
                "write shard",
                Some(self.key),
                NodeErrorKind::Offline("sink closed".into()),
            )
        })?;
        out.write_all(data).map_err(|e| {
            NodeError::new(
                &self.node,
                "write shard",
                Some(self.key),
                NodeErrorKind::Io(e),
            )
        })?;
        let before = self.written;
        self.written += data.len() as u64;
        if before / WRITEBACK_EVERY != self.written / WRITEBACK_EVERY {
            let end = self.written / WRITEBACK_EVERY * WRITEBACK_EVERY;
            crate::sys::start_writeback_range(
                out.get_ref(),
                end - WRITEBACK_EVERY,
                WRITEBACK_EVERY,
            );
        }
        Ok(())
    }
}

impl ShardSink for DirSink {
    fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        self.put(data)
    }

    fn finish(mut self: Box<Self>) -> Result<PendingShard, NodeError> {
        let err = |kind| NodeError::new(&self.node, "write shard", Some(self.key), kind);
        if self.written != self.expected {
            return Err(err(NodeErrorKind::Corrupt(format!(
                "wrote {} bytes, expected {}",
                self.written, self.expected
            ))));
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| err(NodeErrorKind::Offline("sink closed".into())))?;
        let file = out
            .into_inner()
            .map_err(|e| err(NodeErrorKind::Io(e.into_error())))?;
        // Writeback of a big shard can start now; the commit waits for it.
        if self.written >= WRITEBACK_EVERY {
            let _ = crate::sys::start_writeback(&file);
        }
        drop(file);
        let write = DirPending {
            key: self.key,
            tmp: self.tmp.take(),
            dst: self.dst.clone(),
            dir: self.dir.clone(),
            packed: None,
            packs: None,
            done: false,
        };
        Ok(self.pending.issue(self.key, write))
    }
}

impl Drop for DirSink {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// A finished shard, in its node's pending table until the commit takes
/// it; dropped there (discarded, expired with its node) it removes its
/// temporary file. It holds no open file: a group of 64 objects with
/// n = 32 would otherwise pin 2048 descriptors until the commit.
struct DirPending {
    key: ShardKey,
    tmp: Option<PathBuf>,
    dst: PathBuf,
    dir: PathBuf,
    /// A write into a pack: its record, until committed or discarded.
    packed: Option<super::packs::Loc>,
    packs: Option<Arc<super::packs::Packs>>,
    /// Committed into its pack: the shard-file steps of a commit skip it.
    done: bool,
}

impl DirPending {
    fn sync(&self) -> std::io::Result<()> {
        match &self.tmp {
            Some(tmp) => File::open(tmp)?.sync_all(),
            None => Ok(()),
        }
    }

    fn publish(&mut self) -> std::io::Result<()> {
        if let Some(tmp) = &self.tmp {
            fs::rename(tmp, &self.dst)?;
            self.tmp = None;
        }
        Ok(())
    }
}

impl Drop for DirPending {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
        if let (Some(loc), Some(packs)) = (self.packed.take(), &self.packs) {
            packs.discard(loc);
        }
    }
}

/// A small shard on its way into a pack: held in memory, appended whole
/// at finish (so a failed write leaves no partial record).
struct PackSink {
    node: String,
    key: ShardKey,
    buf: Vec<u8>,
    expected: u64,
    packs: Arc<super::packs::Packs>,
    pending: Arc<PendingTable<DirPending>>,
    root: PathBuf,
    /// Where a shard file of the same shard would be (removed at commit).
    dst: PathBuf,
}

impl ShardSink for PackSink {
    fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        if self.buf.len() as u64 + data.len() as u64 > self.expected {
            return Err(NodeError::new(
                &self.node,
                "write shard",
                Some(self.key),
                NodeErrorKind::Corrupt(format!(
                    "more than the {} bytes its header announced",
                    self.expected
                )),
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<PendingShard, NodeError> {
        let err = |kind| NodeError::new(&self.node, "write shard", Some(self.key), kind);
        if self.buf.len() as u64 != self.expected {
            return Err(err(NodeErrorKind::Corrupt(format!(
                "wrote {} bytes, expected {}",
                self.buf.len(),
                self.expected
            ))));
        }
        let loc = self
            .packs
            .append_shard(&self.buf)
            .map_err(|e| err(DirNode::io_kind(e)).at(&self.root.join("packs")))?;
        let write = DirPending {
            key: self.key,
            tmp: None,
            dst: self.dst.clone(),
            dir: PathBuf::new(),
            packed: Some(loc),
            packs: Some(Arc::clone(&self.packs)),
            done: false,
        };
        Ok(self.pending.issue(self.key, write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;

    fn node(dir: &Path, name: &str) -> DirNode {
        let n = DirNode::new(name, &dir.join(name), "vault-1");
        n.initialize().unwrap();
        n
    }

    fn write_shard(n: &DirNode, object: ObjectId, index: u8, payload: &[u8]) -> PendingShard {
        let layout = StripeLayout::plan(2, 3, (payload.len() * 2) as u64, 1 << 20).unwrap();
        let header = ShardHeader::new(object, index, &layout);
        let mut sink = n.create(&header).unwrap();
        sink.write(payload).unwrap();
        sink.finish().unwrap()
    }

    #[test]
    fn a_packing_node_keeps_small_shards_in_packs_and_big_ones_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path(), "node-0");
        n.enable_packs().unwrap();
        let n = DirNode::new("node-0", &dir.path().join("node-0"), "vault-1");
        let small = write_shard(&n, ObjectId([1; 16]), 0, &[7u8; 100]);
        let big = write_shard(
            &n,
            ObjectId([2; 16]),
            1,
            &vec![9u8; PACK_MAX_SHARD as usize],
        );
        let dropped = write_shard(&n, ObjectId([3; 16]), 2, &[5u8; 10]);
        let (ks, kb, kd) = (small.key(), big.key(), dropped.key());
        drop(dropped);
        assert!(
            n.read_header(ks).unwrap_err().is_not_found(),
            "visible before its commit"
        );
        for r in n.commit(vec![small, big]) {
            r.unwrap();
        }
        assert!(!n.shard_path(ks).exists(), "the small shard is not a file");
        assert!(n.shard_path(kb).exists(), "the big shard is a file");
        let mut buf = [0u8; 10];
        n.read_at(ks, 90, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 10]);
        let mut past = [0u8; 11];
        assert!(matches!(
            n.read_at(ks, 90, &mut past).unwrap_err().kind,
            NodeErrorKind::Corrupt(_)
        ));
        assert_eq!(n.read_header(ks).unwrap().key, ks);
        assert_eq!(n.shard_size(ks).unwrap(), Some(164));
        let keys: Vec<_> = n.list().unwrap().shards.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![ks, kb]);
        // Another process sees the same (the index is rebuilt from the packs).
        let again = DirNode::new("node-0", &dir.path().join("node-0"), "vault-1");
        let keys: Vec<_> = again.list().unwrap().shards.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![ks, kb]);
        assert!(again.read_header(kd).unwrap_err().is_not_found());
        assert!(
            again.pack_stats().unwrap().dead > 0,
            "the dropped write is dead space"
        );
        n.delete(ks).unwrap();
        n.delete(ks).unwrap();
        assert!(n.read_header(ks).unwrap_err().is_not_found());
        assert_eq!(n.purge(ObjectId([2; 16])).unwrap(), 1);
        assert!(n.list().unwrap().shards.is_empty());
        // Purges are durable, and deletions reach the next opener.
        let again = DirNode::new("node-0", &dir.path().join("node-0"), "vault-1");
        assert!(again.list().unwrap().shards.is_empty());
    }

    #[test]
    fn a_shard_file_rewritten_into_a_pack_goes() {
        let dir = tempfile::tempdir().unwrap();
        let files = node(dir.path(), "node-0");
        let id = ObjectId([4; 16]);
        let p = write_shard(&files, id, 0, &[1u8; 50]);
        let key = p.key();
        files.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        assert!(files.shard_path(key).exists());
        // The node packs from now on; a repair writes the shard again.
        files.enable_packs().unwrap();
        let n = DirNode::new("node-0", &dir.path().join("node-0"), "vault-1");
        let p = write_shard(&n, id, 0, &[2u8; 50]);
        n.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        assert!(
            !n.shard_path(key).exists(),
            "the older shard file is still there"
        );
        let mut buf = [0u8; 50];
        n.read_at(key, 0, &mut buf).unwrap();
        assert_eq!(buf, [2u8; 50]);
        assert_eq!(n.list().unwrap().shards.len(), 1);
    }

    #[test]
    fn write_commit_read_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path(), "node-0");
        let id = ObjectId([0x5a; 16]);
        let pending = write_shard(&n, id, 1, &[7u8; 100]);
        let key = pending.key();
        // Invisible before the commit.
        assert!(n.read_header(key).unwrap_err().is_not_found());
        assert_eq!(n.list().unwrap().leftovers.len(), 1);
        for r in n.commit(vec![pending]) {
            r.unwrap();
        }
        assert_eq!(n.read_header(key).unwrap().key, key);
        let mut buf = [0u8; 10];
        n.read_at(key, 90, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 10]);
        let mut past = [0u8; 11];
        assert!(matches!(
            n.read_at(key, 90, &mut past).unwrap_err().kind,
            NodeErrorKind::Corrupt(_)
        ));
        let listing = n.list().unwrap();
        assert_eq!(listing.shards, vec![StoredShard { key, size: 164 }]);
        assert!(listing.leftovers.is_empty());
        n.delete(key).unwrap();
        n.delete(key).unwrap();
        assert!(n.list().unwrap().shards.is_empty());
    }

    #[test]
    fn dropped_pending_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path(), "node-0");
        drop(write_shard(&n, ObjectId([1; 16]), 0, &[1u8; 10]));
        let l = n.list().unwrap();
        assert!(l.shards.is_empty() && l.leftovers.is_empty());
    }

    /// A shard written through one node is refused by another, typed, and
    /// its temporary file does not stay behind on either.
    #[test]
    fn another_nodes_pending_shard_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = node(dir.path(), "node-0");
        let b = node(dir.path(), "node-1");
        let p = write_shard(&a, ObjectId([4; 16]), 0, &[1u8; 10]);
        let key = p.key();
        let r = b.commit(vec![p]);
        assert_eq!(r.len(), 1);
        let e = r.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(e.kind, NodeErrorKind::NotIssued(_)), "{e}");
        assert!(a.read_header(key).unwrap_err().is_not_found());
        assert!(b.read_header(key).unwrap_err().is_not_found());
        for n in [&a, &b] {
            let l = n.list().unwrap();
            assert!(l.shards.is_empty() && l.leftovers.is_empty());
        }
    }

    /// A node folder whose marker is there but whose `shards/` (or one
    /// fan-out folder) was removed takes writes again: the folders are
    /// made anew. Without the marker nothing is made, even while the
    /// health check is still cached as fine.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn lost_shard_folders_are_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path(), "node-0");
        let a = ObjectId([0xab; 16]);
        let p = write_shard(&n, a, 0, &[1u8; 10]);
        n.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        fs::remove_dir_all(dir.path().join("node-0/shards")).unwrap();
        assert_eq!(n.health(), NodeHealth::Ok, "the marker is still there");
        assert!(n.list().unwrap().shards.is_empty());
        assert!(
            n.read_header(ShardKey {
                object: a,
                index: 0
            })
            .unwrap_err()
            .is_not_found()
        );
        let p = write_shard(&n, a, 1, &[2u8; 10]);
        n.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        let fans = fs::read_dir(dir.path().join("node-0/shards"))
            .unwrap()
            .count();
        assert_eq!(fans, 256, "every fan-out folder is made again");
        assert_eq!(n.list().unwrap().shards.len(), 1);
        // One fan-out folder gone.
        fs::remove_dir_all(dir.path().join("node-0/shards/ab")).unwrap();
        let p = write_shard(&n, a, 2, &[3u8; 10]);
        n.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        let key = ShardKey {
            object: a,
            index: 2,
        };
        assert_eq!(n.read_header(key).unwrap().key, key);
        // The marker gone (a disk unmounted under a cached "ok"): no
        // folder is made, the write fails as offline.
        fs::remove_dir_all(dir.path().join("node-0/shards")).unwrap();
        fs::remove_file(dir.path().join("node-0").join(MARKER)).unwrap();
        let layout = StripeLayout::plan(2, 3, 20, 1 << 20).unwrap();
        let Err(e) = n.create(&ShardHeader::new(a, 3, &layout)) else {
            panic!("a write into a folder without marker succeeded");
        };
        assert!(matches!(e.kind, NodeErrorKind::Offline(_)), "{e}");
        assert!(!dir.path().join("node-0/shards").exists());
    }

    #[test]
    fn health_states() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path(), "node-0");
        assert_eq!(n.health(), NodeHealth::Ok);
        // Missing folder: offline, and never recreated by a write.
        let gone = DirNode::new("node-9", &dir.path().join("gone"), "vault-1");
        assert!(matches!(gone.health(), NodeHealth::Offline(_)));
        let layout = StripeLayout::plan(2, 3, 10, 1 << 20).unwrap();
        assert!(
            gone.create(&ShardHeader::new(ObjectId([2; 16]), 0, &layout))
                .is_err()
        );
        assert!(!dir.path().join("gone").exists());
        // Same folder configured under another name or vault.
        let swapped = DirNode::new("node-1", &dir.path().join("node-0"), "vault-1");
        assert!(matches!(swapped.health(), NodeHealth::Foreign(_)));
        let other = DirNode::new("node-0", &dir.path().join("node-0"), "vault-2");
        assert!(matches!(other.health(), NodeHealth::Foreign(_)));
        // An emptied folder (or an unmounted disk's mount point) is never
        // written to by itself; adopting it is explicit.
        fs::remove_dir_all(dir.path().join("node-0")).unwrap();
        fs::create_dir(dir.path().join("node-0")).unwrap();
        // (A fresh handle: health is cached for a second.)
        let n = DirNode::new("node-0", &dir.path().join("node-0"), "vault-1");
        assert!(matches!(n.health(), NodeHealth::Offline(why) if why.contains("node adopt")));
        let layout = StripeLayout::plan(2, 3, 10, 1 << 20).unwrap();
        assert!(
            n.create(&ShardHeader::new(ObjectId([3; 16]), 0, &layout))
                .is_err()
        );
        assert!(!dir.path().join("node-0").join(MARKER).exists());
        fs::create_dir(dir.path().join("node-0/lost+found")).unwrap();
        n.adopt_empty().unwrap();
        assert_eq!(n.health(), NodeHealth::Ok);
        let p = write_shard(&n, ObjectId([3; 16]), 0, &[1u8; 10]);
        n.commit(vec![p]).into_iter().for_each(|r| r.unwrap());
        // A folder with other files is refused.
        let busy = DirNode::new("node-5", &dir.path().join("busy"), "vault-1");
        fs::create_dir(dir.path().join("busy")).unwrap();
        fs::write(dir.path().join("busy/photo.jpg"), b"x").unwrap();
        assert!(busy.adopt_empty().is_err());
    }
}
