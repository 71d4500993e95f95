//! The namespace: inodes, directory entries and attributes, in sled.
//!
//! It is the same tree the mount shows and the CLI's `put`/`get`/`ls` use.
//! Keys (one table, so any change is one atomic batch):
//! ```text
//! c <name>                      counters (next inode number)
//! i <ino u64 BE>                inode record (see inode.rs)
//! d <parent u64 BE> <name>      entry: child ino u64 LE, kind u8
//! p <dir ino u64 BE>            parent of a directory (for rename loop checks)
//! x <ino u64 BE> <name>         extended attribute value
//! o <ino u64 BE>                orphan: unlinked while open, destroyed at last close
//! s <ino u64 BE>                staging record of a file with unsealed writes (fs/)
//! g <object id>                 object queued for deletion (gc), value: unix secs i64
//! r <object id>                 deleted object whose R2 share waits for its store
//! ```
//! Objects are never deleted in the same step that unlinks them: the
//! change queues them in `g` atomically, and the vault destroys them after
//! the namespace change is durable. A crash in between leaves the queue,
//! which the next open finishes; never a name pointing at a destroyed object.

mod inode;
mod ops;
mod path;
mod records;
mod xattr;

pub use inode::{Extent, Inode, Kind, Time};
pub use ops::{Removed, RenameFlags, truncate_extents};
pub use path::{VaultPath, display_name};
pub use records::JournalMark;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use thiserror::Error;

use crate::ObjectId;
use crate::store::{Batch, Db, OpenMode, StoreError};

/// Inode number of the root directory.
pub const ROOT: u64 = 1;
/// Longest name, as on ext4.
pub const NAME_MAX: usize = 255;

/// Namespace failures, naming the path concerned.
#[derive(Debug, Error)]
pub enum NamespaceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such file or directory.
    #[error("{0}: no such file or directory in the vault")]
    NotFound(String),
    /// A path component is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A directory where a file was expected.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// The name is taken.
    #[error("{0}: already exists")]
    Exists(String),
    /// A directory that still has entries.
    #[error("{0}: directory not empty")]
    NotEmpty(String),
    /// A name over 255 bytes.
    #[error("{0}: name longer than {NAME_MAX} bytes")]
    NameTooLong(String),
    /// A path that cannot name anything in the vault.
    #[error("{path}: invalid vault path: {why}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// An operation the filesystem does not allow (hard link to a folder).
    #[error("{0}: operation not permitted")]
    NotPermitted(String),
    /// An argument that makes no sense (moving a folder into itself).
    #[error("{0}: invalid argument")]
    Invalid(String),
    /// No such extended attribute.
    #[error("{0}: no such extended attribute")]
    NoXattr(String),
    /// A damaged record.
    #[error("namespace record of inode {ino} is damaged: {detail}")]
    Record {
        /// Inode number.
        ino: u64,
        /// What is wrong.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, NamespaceError>;

fn ikey(ino: u64) -> [u8; 9] {
    inokey(b'i', ino)
}

fn dkey(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.push(b'd');
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// `prefix` + inode number (big-endian, so keys sort by inode).
fn inokey(prefix: u8, ino: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&ino.to_be_bytes());
    k
}

fn idkey(prefix: u8, id: &ObjectId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

const NEXT_INO: &[u8] = b"cnext_ino";

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: Vec<u8>,
    /// Child inode.
    pub ino: u64,
    /// Child type.
    pub kind: Kind,
}

/// The namespace store.
pub struct Namespace {
    db: Db,
    /// Serialises read-modify-write changes; readers do not take it.
    write: Mutex<()>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("db", &self.db).finish()
    }
}

impl Namespace {
    /// The store itself (the metadata backup copies every record).
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Opens the namespace of vault `vault_id` at `path`, creating the root
    /// directory (owned by `uid`/`gid`) when the store is created.
    pub fn open(
        path: &Path,
        vault_id: &str,
        mode: OpenMode,
        uid: u32,
        gid: u32,
    ) -> Result<Namespace> {
        let ns = Namespace {
            db: Db::open_vault_store(path, "namespace", vault_id, mode)?,
            write: Mutex::new(()),
        };
        if ns.db.get(ikey(ROOT))?.is_none() {
            let mut b = Batch::new();
            b.insert(ikey(ROOT), Inode::new(Kind::Dir, 0o755, uid, gid).encode());
            b.insert(NEXT_INO, (ROOT + 1).to_le_bytes());
            ns.db.apply(b)?;
            ns.db.flush_durable()?;
        }
        Ok(ns)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every change so far durable.
    pub fn flush_durable(&self) -> Result<()> {
        Ok(self.db.flush_durable()?)
    }

    /// The link count of inode `ino` (None: it is gone), asked under the
    /// write lock: an unlink
    /// or rename that asks whether the inode is in use and then destroys
    /// it does both under that lock, so a caller that counted itself as a
    /// user first and then finds the inode here keeps it from being
    /// destroyed (the mount's open does that).
    pub fn links_now(&self, ino: u64) -> Result<Option<u32>> {
        let _g = self.lock();
        match self.db.get(ikey(ino))? {
            None => Ok(None),
            Some(v) => {
                Inode::decode(&v)
                    .map(|i| Some(i.nlink))
                    .map_err(|e| NamespaceError::Record {
                        ino,
                        detail: e.to_string(),
                    })
            }
        }
    }

    /// The inode `ino`.
    pub fn inode(&self, ino: u64) -> Result<Inode> {
        let v = self
            .db
            .get(ikey(ino))?
            .ok_or_else(|| NamespaceError::NotFound(format!("inode {ino}")))?;
        Inode::decode(&v).map_err(|e| NamespaceError::Record {
            ino,
            detail: e.to_string(),
        })
    }

    /// A path of each inode in `inos` that has one (a hard-linked file
    /// gets one of its names). Walks the whole tree: for messages about a
    /// few files, not for a hot path.
    pub fn paths_of(&self, inos: &HashSet<u64>) -> Result<std::collections::HashMap<u64, String>> {
        let mut out = std::collections::HashMap::new();
        let mut stack = vec![(ROOT, crate::VaultPath::root())];
        while let Some((ino, path)) = stack.pop() {
            if out.len() == inos.len() {
                break;
            }
            for e in self.readdir(ino)? {
                let p = path.join(&e.name);
                if inos.contains(&e.ino) {
                    out.entry(e.ino).or_insert_with(|| p.to_string());
                }
                if e.kind == Kind::Dir {
                    stack.push((e.ino, p));
                }
            }
        }
        Ok(out)
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Kind)>> {
        match self.db.get(dkey(parent, name))? {
            None => Ok(None),
            Some(v) => decode_entry(parent, &v).map(Some),
        }
    }

    /// Entries of directory `ino`, in name order.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let prefix = dkey(ino, b"");
        self.db
            .scan_prefix(&prefix)
            .map(|r| {
                let (k, v) = r?;
                let (child, kind) = decode_entry(ino, &v)?;
                Ok(DirEntry {
                    name: k[prefix.len()..].to_vec(),
                    ino: child,
                    kind,
                })
            })
            .collect()
    }

    /// Resolves a vault path to its inode.
    pub fn resolve(&self, path: &VaultPath) -> Result<(u64, Inode)> {
        let mut ino = ROOT;
        let mut node = self.inode(ROOT)?;
        for (i, name) in path.components().iter().enumerate() {
            if node.kind != Kind::Dir {
                return Err(NamespaceError::NotADirectory(path.prefix(i)));
            }
            match self.lookup(ino, name)? {
                Some((child, _)) => {
                    ino = child;
                    node = self.inode(child)?;
                }
                None => return Err(NamespaceError::NotFound(path.prefix(i + 1))),
            }
        }
        Ok((ino, node))
    }

    /// Resolves the parent directory of `path`; returns it and the last name.
    pub fn resolve_parent<'p>(&self, path: &'p VaultPath) -> Result<(u64, &'p [u8])> {
        let (parent, name) = path
            .split_last()
            .ok_or_else(|| NamespaceError::InvalidPath {
                path: path.to_string(),
                why: "the root has no parent",
            })?;
        let (ino, node) = self.resolve(&parent)?;
        if node.kind != Kind::Dir {
            return Err(NamespaceError::NotADirectory(parent.to_string()));
        }
        Ok((ino, name))
    }

    fn next_ino(&self, batch: &mut Batch) -> Result<u64> {
        let v = self.db.get(NEXT_INO)?.unwrap_or_default();
        let ino = u64::from_le_bytes(v.as_slice().try_into().unwrap_or((ROOT + 1).to_le_bytes()));
        batch.insert(NEXT_INO, (ino + 1).to_le_bytes());
        Ok(ino)
    }

    /// Every object some inode points at.
    pub fn referenced_objects(&self) -> Result<HashSet<ObjectId>> {
        let mut out = HashSet::new();
        for r in self.db.scan_prefix([b'i']) {
            let (k, v) = r?;
            let ino = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let node = Inode::decode(&v).map_err(|e| NamespaceError::Record {
                ino,
                detail: e.to_string(),
            })?;
            out.extend(node.extents.iter().map(|e| e.object));
        }
        Ok(out)
    }

    /// Apparent size of the vault's files: the sum of the sizes of the
    /// regular files that have a name (holes count as their size, as
    /// `du --apparent-size` counts them; a file with several hard links
    /// once). A walk over every inode.
    pub fn file_bytes(&self) -> Result<u64> {
        let mut sum = 0u64;
        for r in self.db.scan_prefix([b'i']) {
            let (k, v) = r?;
            if Kind::from_code(v.get(1).copied().unwrap_or(0)) != Some(Kind::File) {
                continue;
            }
            let ino = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let node = Inode::decode(&v).map_err(|e| NamespaceError::Record {
                ino,
                detail: e.to_string(),
            })?;
            // An unlinked file still open (an orphan) is on its way out.
            if node.nlink > 0 {
                sum = sum.saturating_add(node.size);
            }
        }
        Ok(sum)
    }

    /// Number of inodes of each kind: (files, directories, others).
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        let (mut f, mut d, mut o) = (0, 0, 0);
        for r in self.db.scan_prefix([b'i']) {
            let (_, v) = r?;
            match Kind::from_code(v.get(1).copied().unwrap_or(0)) {
                Some(Kind::File) => f += 1,
                Some(Kind::Dir) => d += 1,
                _ => o += 1,
            }
        }
        Ok((f, d, o))
    }
}

/// Checks that `name` can be a directory entry (ext4's rules: 1 to 255
/// bytes, no `/` or NUL, not `.` or `..`); `what` names it in errors.
pub fn check_name(name: &[u8], what: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(NamespaceError::NameTooLong(what.to_string()));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(NamespaceError::InvalidPath {
            path: what.to_string(),
            why: "not a valid file name",
        });
    }
    Ok(())
}

fn encode_entry(ino: u64, kind: Kind) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&ino.to_le_bytes());
    v[8] = kind.code();
    v
}

pub(crate) fn decode_entry(parent: u64, v: &[u8]) -> Result<(u64, Kind)> {
    let bad = || NamespaceError::Record {
        ino: parent,
        detail: "damaged directory entry".into(),
    };
    if v.len() != 9 {
        return Err(bad());
    }
    let ino = u64::from_le_bytes(v[..8].try_into().map_err(|_| bad())?);
    Ok((ino, Kind::from_code(v[8]).ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> VaultPath {
        VaultPath::parse(s).unwrap()
    }

    #[test]
    fn tree_operations() {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::open(dir.path(), "v", OpenMode::Create, 0, 0).unwrap();
        let a = ns
            .create(ROOT, b"a", &Inode::new(Kind::Dir, 0o755, 0, 0), "/a")
            .unwrap();
        assert_eq!(ns.inode(ROOT).unwrap().nlink, 3);
        let f = ns
            .create(a, b"f", &Inode::new(Kind::File, 0o644, 0, 0), "/a/f")
            .unwrap();
        assert!(matches!(
            ns.create(a, b"f", &Inode::new(Kind::File, 0o644, 0, 0), "/a/f"),
            Err(NamespaceError::Exists(_))
        ));
        assert_eq!(ns.resolve(&p("/a/f")).unwrap().0, f);
        assert!(
            matches!(ns.resolve(&p("/a/f/x")), Err(NamespaceError::NotADirectory(s)) if s == "/a/f")
        );
        assert!(matches!(ns.resolve(&p("/b")), Err(NamespaceError::NotFound(s)) if s == "/b"));
        let id = ObjectId([1; 16]);
        let old = ns
            .set_content(
                f,
                vec![Extent {
                    offset: 0,
                    len: 5,
                    object: id,
                    object_offset: 0,
                }],
                5,
                Time::now(),
                Time::now(),
                None,
            )
            .unwrap();
        assert!(old.is_empty());
        let id2 = ObjectId([2; 16]);
        let old = ns
            .set_content(
                f,
                vec![Extent {
                    offset: 0,
                    len: 6,
                    object: id2,
                    object_offset: 0,
                }],
                6,
                Time::now(),
                Time::now(),
                None,
            )
            .unwrap();
        assert_eq!(old, vec![id]);
        assert_eq!(ns.gc_queue().unwrap(), vec![id]);
        ns.gc_done(&[id]).unwrap();
        assert!(matches!(
            ns.remove(ROOT, b"a", true, "/a"),
            Err(NamespaceError::NotEmpty(_))
        ));
        assert!(matches!(
            ns.remove(a, b"f", true, "/a/f"),
            Err(NamespaceError::NotADirectory(_))
        ));
        assert_eq!(ns.remove(a, b"f", false, "/a/f").unwrap(), vec![id2]);
        assert_eq!(ns.gc_queue().unwrap(), vec![id2]);
        ns.remove(ROOT, b"a", true, "/a").unwrap();
        assert_eq!(ns.inode(ROOT).unwrap().nlink, 2);
        assert!(ns.readdir(ROOT).unwrap().is_empty());
        let long = vec![b'x'; 256];
        assert!(matches!(
            ns.create(ROOT, &long, &Inode::new(Kind::File, 0o644, 0, 0), "/x"),
            Err(NamespaceError::NameTooLong(_))
        ));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ns = Namespace::open(dir.path(), "v", OpenMode::Create, 0, 0).unwrap();
            ns.create(ROOT, b"keep", &Inode::new(Kind::File, 0o600, 5, 6), "/keep")
                .unwrap();
            ns.flush_durable().unwrap();
        }
        let ns = Namespace::open(dir.path(), "v", OpenMode::Existing, 0, 0).unwrap();
        let (_, i) = ns.resolve(&p("keep")).unwrap();
        assert_eq!((i.mode, i.uid, i.gid), (0o600, 5, 6));
        let e = ns.readdir(ROOT).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, b"keep");
    }
}
