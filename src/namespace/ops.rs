//! Changes to the tree: create, unlink, rename, link, content and attribute
//! updates. Each is one atomic batch under the namespace's write lock, and
//! queues the objects it orphans for deletion in that same batch.

use std::collections::HashSet;

use super::{
    Batch, DirEntry, Extent, Inode, JournalMark, Kind, Namespace, NamespaceError, Result, Time,
    check_name, dkey, encode_entry, idkey, ikey, inokey,
};
use crate::ObjectId;

/// How a rename treats an existing target (`renameat2` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// `RENAME_NOREPLACE`: fail if the target exists.
    pub noreplace: bool,
    /// `RENAME_EXCHANGE`: swap source and target atomically.
    pub exchange: bool,
}

/// What an unlink or a rename over an existing name took away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Objects queued for deletion.
    pub objects: Vec<ObjectId>,
    /// An inode whose last link went while it is open: kept as an orphan
    /// until [`Namespace::release_orphan`].
    pub orphan: Option<u64>,
    /// An inode destroyed (its staging data, if any, can go).
    pub destroyed: Option<u64>,
}

/// The extents of a file cut to `size`: pieces past the end dropped, the
/// piece across it shortened.
pub fn truncate_extents(extents: &[Extent], size: u64) -> Vec<Extent> {
    extents
        .iter()
        .filter(|e| e.offset < size)
        .map(|e| Extent {
            len: e.len.min(size - e.offset),
            ..*e
        })
        .collect()
}

/// Objects of `old` that `new` no longer uses.
fn unused(old: &[Extent], new: &[Extent]) -> Vec<ObjectId> {
    let keep: HashSet<ObjectId> = new.iter().map(|e| e.object).collect();
    let mut gone: Vec<ObjectId> = old
        .iter()
        .map(|e| e.object)
        .filter(|id| !keep.contains(id))
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

pub(super) fn queue_gc(b: &mut Batch, ids: &[ObjectId]) {
    let now = Time::now().secs.to_le_bytes();
    for id in ids {
        b.insert(idkey(b'g', id), now);
    }
}

impl Namespace {
    /// Removes an inode and everything hanging off it (xattrs, staging
    /// record, orphan mark), queueing its objects for deletion.
    fn drop_inode(&self, b: &mut Batch, ino: u64, node: &Inode) -> Result<Vec<ObjectId>> {
        b.remove(ikey(ino));
        b.remove(inokey(b'p', ino));
        b.remove(inokey(b'o', ino));
        b.remove(inokey(b's', ino));
        b.remove(inokey(b'j', ino));
        for r in self.db.scan_prefix(inokey(b'x', ino)) {
            b.remove(r?.0);
        }
        let objects = unused(&node.extents, &[]);
        queue_gc(b, &objects);
        Ok(objects)
    }

    /// Creates `name` in directory `parent` with the given inode. A new
    /// directory bumps the parent's link count.
    pub fn create(&self, parent: u64, name: &[u8], inode: &Inode, what: &str) -> Result<u64> {
        self.create_with_xattrs(parent, name, inode, &[], what)
    }

    /// Like [`Namespace::create`], and the new inode carries `xattrs`
    /// from the start: an inherited ACL goes in with the inode, so no
    /// crash leaves the file without it.
    pub fn create_with_xattrs(
        &self,
        parent: u64,
        name: &[u8],
        inode: &Inode,
        xattrs: &[(&[u8], &[u8])],
        what: &str,
    ) -> Result<u64> {
        check_name(name, what)?;
        let _g = self.lock();
        let mut dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(NamespaceError::NotADirectory(what.to_string()));
        }
        if self.lookup(parent, name)?.is_some() {
            return Err(NamespaceError::Exists(what.to_string()));
        }
        let mut b = Batch::new();
        let ino = self.next_ino(&mut b)?;
        b.insert(ikey(ino), inode.encode());
        for (xname, value) in xattrs {
            b.insert(super::xattr::xkey(ino, xname), value);
        }
        b.insert(dkey(parent, name), encode_entry(ino, inode.kind));
        let now = Time::now();
        dir.mtime = now;
        dir.ctime = now;
        if inode.kind == Kind::Dir {
            dir.nlink += 1;
            b.insert(inokey(b'p', ino), parent.to_le_bytes());
        }
        b.insert(ikey(parent), dir.encode());
        self.db.apply(b)?;
        Ok(ino)
    }

    /// Creates file `name` in directory `parent` as a new inode (with
    /// `xattrs`), replacing the file the name pointed at in the same atomic
    /// step, as a rename over it would: the old inode loses that link, and
    /// stays as an orphan while `is_open` (a `qsfs put` through a mount
    /// over a file open there). A folder at the name is refused. Returns
    /// the new inode and what the replaced one left.
    #[allow(clippy::too_many_arguments)]
    pub fn create_replacing(
        &self,
        parent: u64,
        name: &[u8],
        inode: &Inode,
        xattrs: &[(&[u8], &[u8])],
        what: &str,
        is_open: &dyn Fn(u64) -> bool,
    ) -> Result<(u64, Removed)> {
        check_name(name, what)?;
        if inode.kind == Kind::Dir {
            return Err(NamespaceError::IsADirectory(what.to_string()));
        }
        let _g = self.lock();
        let mut dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(NamespaceError::NotADirectory(what.to_string()));
        }
        let now = Time::now();
        let mut b = Batch::new();
        let removed = match self.lookup(parent, name)? {
            Some((_, Kind::Dir)) => return Err(NamespaceError::IsADirectory(what.to_string())),
            Some((old, _)) => self.drop_link(&mut b, old, is_open, now)?,
            None => Removed::default(),
        };
        let ino = self.next_ino(&mut b)?;
        b.insert(ikey(ino), inode.encode());
        for (xname, value) in xattrs {
            b.insert(super::xattr::xkey(ino, xname), value);
        }
        b.insert(dkey(parent, name), encode_entry(ino, inode.kind));
        dir.mtime = now;
        dir.ctime = now;
        b.insert(ikey(parent), dir.encode());
        self.db.apply(b)?;
        Ok((ino, removed))
    }

    /// Removes entry `name` of `parent` (the CLI's rm: nothing is open).
    /// Returns the objects queued for deletion.
    pub fn remove(&self, parent: u64, name: &[u8], dir: bool, what: &str) -> Result<Vec<ObjectId>> {
        Ok(self.unlink(parent, name, dir, what, &|_| false)?.objects)
    }

    /// Removes entry `name` of `parent`. Directories must be empty and are
    /// only removed with `dir`; other kinds only without it. When the last
    /// link of a file goes while `is_open(ino)`, the inode stays as an
    /// orphan (readable through its open handles) until its last close.
    pub fn unlink(
        &self,
        parent: u64,
        name: &[u8],
        dir: bool,
        what: &str,
        is_open: &dyn Fn(u64) -> bool,
    ) -> Result<Removed> {
        let _g = self.lock();
        let (ino, kind) = self
            .lookup(parent, name)?
            .ok_or_else(|| NamespaceError::NotFound(what.to_string()))?;
        if dir && kind != Kind::Dir {
            return Err(NamespaceError::NotADirectory(what.to_string()));
        }
        if !dir && kind == Kind::Dir {
            return Err(NamespaceError::IsADirectory(what.to_string()));
        }
        if kind == Kind::Dir && self.db.scan_prefix(dkey(ino, b"")).next().is_some() {
            return Err(NamespaceError::NotEmpty(what.to_string()));
        }
        let mut parent_node = self.inode(parent)?;
        let now = Time::now();
        let mut b = Batch::new();
        b.remove(dkey(parent, name));
        if kind == Kind::Dir {
            parent_node.nlink = parent_node.nlink.saturating_sub(1);
        }
        let removed = self.drop_link(&mut b, ino, is_open, now)?;
        parent_node.mtime = now;
        parent_node.ctime = now;
        b.insert(ikey(parent), parent_node.encode());
        self.db.apply(b)?;
        Ok(removed)
    }

    /// One link of `ino` goes: the inode loses a link, becomes an orphan,
    /// or is destroyed.
    fn drop_link(
        &self,
        b: &mut Batch,
        ino: u64,
        is_open: &dyn Fn(u64) -> bool,
        now: Time,
    ) -> Result<Removed> {
        let mut node = self.inode(ino)?;
        let mut removed = Removed::default();
        if node.kind == Kind::Dir {
            removed.objects = self.drop_inode(b, ino, &node)?;
            removed.destroyed = Some(ino);
            return Ok(removed);
        }
        node.nlink = node.nlink.saturating_sub(1);
        node.ctime = now;
        if node.nlink > 0 {
            b.insert(ikey(ino), node.encode());
        } else if is_open(ino) {
            b.insert(ikey(ino), node.encode());
            b.insert(inokey(b'o', ino), []);
            removed.orphan = Some(ino);
        } else {
            removed.objects = self.drop_inode(b, ino, &node)?;
            removed.destroyed = Some(ino);
        }
        Ok(removed)
    }

    /// Destroys an orphan after its last close. Returns its objects.
    pub fn release_orphan(&self, ino: u64) -> Result<Vec<ObjectId>> {
        let _g = self.lock();
        let node = match self.inode(ino) {
            Ok(n) if n.nlink == 0 => n,
            // Linked again (or already gone): nothing to do.
            _ => return Ok(Vec::new()),
        };
        let mut b = Batch::new();
        let objects = self.drop_inode(&mut b, ino, &node)?;
        self.db.apply(b)?;
        Ok(objects)
    }

    /// Inodes left as orphans (by a process that died with them open).
    pub fn orphans(&self) -> Result<Vec<u64>> {
        self.db
            .scan_prefix([b'o'])
            .map(|r| {
                let (k, _) = r?;
                Ok(k.get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0))
            })
            .collect()
    }

    /// Parent of directory `ino` (None for the root or unknown).
    pub fn parent_of(&self, ino: u64) -> Result<Option<u64>> {
        Ok(self
            .db
            .get(inokey(b'p', ino))?
            .and_then(|v| v.as_slice().try_into().ok())
            .map(u64::from_le_bytes))
    }

    /// True if directory `ino` is `ancestor` or lies below it.
    fn is_within(&self, mut ino: u64, ancestor: u64) -> Result<bool> {
        let mut steps = 0;
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            match self.parent_of(ino)? {
                Some(p) if p != ino && steps < 4096 => {
                    ino = p;
                    steps += 1;
                }
                _ => return Ok(false),
            }
        }
    }

    /// Renames `parent/name` to `newparent/newname` with POSIX semantics
    /// (and `renameat2`'s `NOREPLACE`/`EXCHANGE`).
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: RenameFlags,
        what: &str,
        is_open: &dyn Fn(u64) -> bool,
    ) -> Result<Removed> {
        check_name(newname, what)?;
        let _g = self.lock();
        let (src, src_kind) = self
            .lookup(parent, name)?
            .ok_or_else(|| NamespaceError::NotFound(what.to_string()))?;
        let dst = self.lookup(newparent, newname)?;
        if flags.exchange && dst.is_none() {
            return Err(NamespaceError::NotFound(what.to_string()));
        }
        if flags.noreplace && dst.is_some() {
            return Err(NamespaceError::Exists(what.to_string()));
        }
        if parent == newparent && name == newname {
            return Ok(Removed::default());
        }
        // A folder cannot move below itself.
        if src_kind == Kind::Dir && self.is_within(newparent, src)? {
            return Err(NamespaceError::Invalid(what.to_string()));
        }
        if let Some((dino, dkind)) = dst
            && flags.exchange
            && dkind == Kind::Dir
            && self.is_within(parent, dino)?
        {
            return Err(NamespaceError::Invalid(what.to_string()));
        }
        let now = Time::now();
        let mut b = Batch::new();
        let mut removed = Removed::default();
        // Link counts of the two parents, applied at the end (they may be one).
        let mut delta_old: i64 = 0;
        let mut delta_new: i64 = 0;
        match dst {
            Some((dino, dkind)) if flags.exchange => {
                b.insert(dkey(parent, name), encode_entry(dino, dkind));
                b.insert(dkey(newparent, newname), encode_entry(src, src_kind));
                if src_kind == Kind::Dir {
                    b.insert(inokey(b'p', src), newparent.to_le_bytes());
                    delta_old -= 1;
                    delta_new += 1;
                }
                if dkind == Kind::Dir {
                    b.insert(inokey(b'p', dino), parent.to_le_bytes());
                    delta_new -= 1;
                    delta_old += 1;
                }
                self.touch_ctime(&mut b, dino, now)?;
            }
            Some((dino, _)) if dino == src => {
                // Two links of one inode: POSIX says do nothing.
                return Ok(Removed::default());
            }
            Some((dino, dkind)) => {
                match (src_kind == Kind::Dir, dkind == Kind::Dir) {
                    (true, false) => return Err(NamespaceError::NotADirectory(what.to_string())),
                    (false, true) => return Err(NamespaceError::IsADirectory(what.to_string())),
                    (true, true) if self.db.scan_prefix(dkey(dino, b"")).next().is_some() => {
                        return Err(NamespaceError::NotEmpty(what.to_string()));
                    }
                    _ => {}
                }
                if dkind == Kind::Dir {
                    delta_new -= 1;
                }
                removed = self.drop_link(&mut b, dino, is_open, now)?;
                self.move_entry(
                    &mut b,
                    parent,
                    name,
                    newparent,
                    newname,
                    src,
                    src_kind,
                    &mut delta_old,
                    &mut delta_new,
                );
            }
            None => {
                self.move_entry(
                    &mut b,
                    parent,
                    name,
                    newparent,
                    newname,
                    src,
                    src_kind,
                    &mut delta_old,
                    &mut delta_new,
                );
            }
        }
        self.touch_ctime(&mut b, src, now)?;
        let mut pnode = self.inode(parent)?;
        pnode.mtime = now;
        pnode.ctime = now;
        if parent == newparent {
            pnode.nlink = (i64::from(pnode.nlink) + delta_old + delta_new).max(1) as u32;
            b.insert(ikey(parent), pnode.encode());
        } else {
            pnode.nlink = (i64::from(pnode.nlink) + delta_old).max(1) as u32;
            b.insert(ikey(parent), pnode.encode());
            let mut np = self.inode(newparent)?;
            np.mtime = now;
            np.ctime = now;
            np.nlink = (i64::from(np.nlink) + delta_new).max(1) as u32;
            b.insert(ikey(newparent), np.encode());
        }
        self.db.apply(b)?;
        Ok(removed)
    }

    #[allow(clippy::too_many_arguments)]
    fn move_entry(
        &self,
        b: &mut Batch,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        src: u64,
        kind: Kind,
        delta_old: &mut i64,
        delta_new: &mut i64,
    ) {
        b.remove(dkey(parent, name));
        b.insert(dkey(newparent, newname), encode_entry(src, kind));
        if kind == Kind::Dir {
            b.insert(inokey(b'p', src), newparent.to_le_bytes());
            *delta_old -= 1;
            *delta_new += 1;
        }
    }

    fn touch_ctime(&self, b: &mut Batch, ino: u64, now: Time) -> Result<()> {
        let mut node = self.inode(ino)?;
        node.ctime = now;
        b.insert(ikey(ino), node.encode());
        Ok(())
    }

    /// Adds a hard link `newparent/newname` to file `ino`.
    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8], what: &str) -> Result<Inode> {
        check_name(newname, what)?;
        let _g = self.lock();
        let mut node = self.inode(ino)?;
        if node.kind == Kind::Dir {
            return Err(NamespaceError::NotPermitted(what.to_string()));
        }
        if self.lookup(newparent, newname)?.is_some() {
            return Err(NamespaceError::Exists(what.to_string()));
        }
        let now = Time::now();
        let mut b = Batch::new();
        node.nlink += 1;
        node.ctime = now;
        b.insert(ikey(ino), node.encode());
        b.remove(inokey(b'o', ino));
        b.insert(dkey(newparent, newname), encode_entry(ino, node.kind));
        let mut dir = self.inode(newparent)?;
        dir.mtime = now;
        dir.ctime = now;
        b.insert(ikey(newparent), dir.encode());
        self.db.apply(b)?;
        Ok(node)
    }

    /// Replaces the content of file `ino` (written at `mtime`, its inode
    /// changed at `ctime`, which never moves back); objects it no longer
    /// uses are queued for deletion in the same atomic step and returned.
    /// `mark` says how far into the file's staging journal the content
    /// reaches (records.rs), in the same step.
    pub fn set_content(
        &self,
        ino: u64,
        extents: Vec<Extent>,
        size: u64,
        mtime: Time,
        ctime: Time,
        mark: Option<JournalMark>,
    ) -> Result<Vec<ObjectId>> {
        let _g = self.lock();
        let mut node = self.inode(ino)?;
        let gone = unused(&node.extents, &extents);
        node.extents = extents;
        node.size = size;
        node.mtime = mtime;
        node.ctime = node.ctime.max(ctime);
        let mut b = Batch::new();
        b.insert(ikey(ino), node.encode());
        if let Some(m) = mark {
            b.insert(inokey(b'j', ino), m.encode());
        }
        queue_gc(&mut b, &gone);
        self.db.apply(b)?;
        Ok(gone)
    }

    /// Sets the size of file `ino` without sealing anything: growing adds
    /// a hole, shrinking cuts extents (objects no longer used are queued
    /// for deletion). Instant whatever the size.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<(Inode, Vec<ObjectId>)> {
        let _g = self.lock();
        let mut node = self.inode(ino)?;
        let extents = truncate_extents(&node.extents, size);
        let gone = unused(&node.extents, &extents);
        let now = Time::now();
        node.extents = extents;
        node.size = size;
        node.mtime = now;
        node.ctime = now;
        let mut b = Batch::new();
        b.insert(ikey(ino), node.encode());
        queue_gc(&mut b, &gone);
        self.db.apply(b)?;
        Ok((node, gone))
    }

    /// Writes back attributes of `ino` (content fields are kept as stored).
    pub fn set_attrs(&self, ino: u64, update: impl FnOnce(&mut Inode)) -> Result<Inode> {
        let _g = self.lock();
        let mut node = self.inode(ino)?;
        let (extents, size) = (node.extents.clone(), node.size);
        update(&mut node);
        node.extents = extents;
        node.size = size;
        self.db.insert(ikey(ino), node.encode())?;
        Ok(node)
    }

    /// Every entry of directory `ino` plus "." and "..", for readdir.
    pub fn listing(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let parent = self.parent_of(ino)?.unwrap_or(ino);
        let mut out = vec![
            DirEntry {
                name: b".".to_vec(),
                ino,
                kind: Kind::Dir,
            },
            DirEntry {
                name: b"..".to_vec(),
                ino: parent,
                kind: Kind::Dir,
            },
        ];
        out.extend(self.readdir(ino)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ROOT;
    use super::*;
    use crate::store::OpenMode;

    fn ns() -> (tempfile::TempDir, Namespace) {
        let dir = tempfile::tempdir().unwrap();
        let ns = Namespace::open(dir.path(), "v", OpenMode::Create, 0, 0).unwrap();
        (dir, ns)
    }

    fn file(ns: &Namespace, parent: u64, name: &str, id: u8) -> u64 {
        let mut i = Inode::new(Kind::File, 0o644, 0, 0);
        i.size = 10;
        i.extents = vec![Extent {
            offset: 0,
            len: 10,
            object: ObjectId([id; 16]),
            object_offset: 0,
        }];
        ns.create(parent, name.as_bytes(), &i, name).unwrap()
    }

    fn dir(ns: &Namespace, parent: u64, name: &str) -> u64 {
        ns.create(
            parent,
            name.as_bytes(),
            &Inode::new(Kind::Dir, 0o755, 0, 0),
            name,
        )
        .unwrap()
    }

    const CLOSED: &dyn Fn(u64) -> bool = &|_| false;

    #[test]
    fn create_replacing_keeps_an_open_file_as_orphan() -> Result<()> {
        let (_d, ns) = ns();
        let a = dir(&ns, ROOT, "a");
        let old = file(&ns, a, "f", 1);
        let mut new = Inode::new(Kind::File, 0o600, 0, 0);
        new.size = 3;
        // Over an open file: the old inode stays as an orphan, its object
        // is not queued yet.
        let x: &[(&[u8], &[u8])] = &[(b"user.k", b"v")];
        let (ino, r) = ns.create_replacing(a, b"f", &new, x, "/a/f", &|i| i == old)?;
        assert_ne!(ino, old);
        assert_eq!(ns.lookup(a, b"f")?, Some((ino, Kind::File)));
        assert_eq!(ns.inode(ino)?.size, 3);
        assert_eq!(ns.get_xattr(ino, b"user.k")?, b"v");
        assert_eq!((r.orphan, r.destroyed), (Some(old), None));
        assert!(r.objects.is_empty());
        assert_eq!(ns.orphans()?, vec![old]);
        assert_eq!(ns.inode(old)?.nlink, 0);
        // Over a closed file: destroyed at once (it had no object). A new name
        // just appears; a folder is refused.
        let (again, r) = ns.create_replacing(a, b"f", &new, &[], "/a/f", CLOSED)?;
        assert_eq!((r.destroyed, r.objects.len()), (Some(ino), 0));
        let (_, r) = ns.create_replacing(a, b"g", &new, &[], "/a/g", CLOSED)?;
        assert_eq!(r, Removed::default());
        assert_eq!(ns.lookup(a, b"f")?, Some((again, Kind::File)));
        dir(&ns, a, "d");
        assert!(matches!(
            ns.create_replacing(a, b"d", &new, &[], "/a/d", CLOSED),
            Err(NamespaceError::IsADirectory(_))
        ));
        Ok(())
    }

    #[test]
    fn rename_over_files_and_dirs() {
        let (_d, ns) = ns();
        let a = dir(&ns, ROOT, "a");
        let b = dir(&ns, ROOT, "b");
        let f = file(&ns, a, "f", 1);
        let g = file(&ns, b, "g", 2);
        // Over an existing file: its object is queued, its inode gone.
        let r = ns
            .rename(a, b"f", b, b"g", RenameFlags::default(), "/b/g", CLOSED)
            .unwrap();
        assert_eq!(r.objects, vec![ObjectId([2; 16])]);
        assert_eq!(r.destroyed, Some(g));
        assert_eq!(ns.lookup(b, b"g").unwrap(), Some((f, Kind::File)));
        assert!(ns.lookup(a, b"f").unwrap().is_none());
        // NOREPLACE refuses, EXCHANGE swaps a file and a folder across parents.
        let h = file(&ns, a, "h", 3);
        let flags = RenameFlags {
            noreplace: true,
            exchange: false,
        };
        assert!(matches!(
            ns.rename(a, b"h", b, b"g", flags, "x", CLOSED),
            Err(NamespaceError::Exists(_))
        ));
        let c = dir(&ns, b, "c");
        let flags = RenameFlags {
            noreplace: false,
            exchange: true,
        };
        ns.rename(a, b"h", b, b"c", flags, "x", CLOSED).unwrap();
        assert_eq!(ns.lookup(a, b"h").unwrap(), Some((c, Kind::Dir)));
        assert_eq!(ns.lookup(b, b"c").unwrap(), Some((h, Kind::File)));
        assert_eq!(ns.parent_of(c).unwrap(), Some(a));
        assert_eq!(
            (ns.inode(a).unwrap().nlink, ns.inode(b).unwrap().nlink),
            (3, 2)
        );
        // A folder cannot move into itself; a folder only over an empty folder.
        assert!(matches!(
            ns.rename(ROOT, b"a", c, b"x", RenameFlags::default(), "x", CLOSED),
            Err(NamespaceError::Invalid(_))
        ));
        let e = dir(&ns, ROOT, "e");
        file(&ns, e, "inside", 4);
        assert!(matches!(
            ns.rename(ROOT, b"b", ROOT, b"e", RenameFlags::default(), "x", CLOSED),
            Err(NamespaceError::NotEmpty(_))
        ));
        assert!(matches!(
            ns.rename(ROOT, b"b", b, b"g", RenameFlags::default(), "x", CLOSED),
            Err(NamespaceError::Invalid(_))
        ));
        assert!(matches!(
            ns.rename(ROOT, b"a", b, b"g", RenameFlags::default(), "x", CLOSED),
            Err(NamespaceError::NotADirectory(_))
        ));
        // Moving an empty folder over an empty folder fixes link counts.
        let before = ns.inode(ROOT).unwrap().nlink;
        let z = dir(&ns, ROOT, "z");
        let r = ns
            .rename(ROOT, b"z", a, b"h", RenameFlags::default(), "x", CLOSED)
            .unwrap();
        assert_eq!(r.destroyed, Some(c));
        assert_eq!(ns.inode(ROOT).unwrap().nlink, before);
        assert_eq!(ns.inode(a).unwrap().nlink, 3);
        assert_eq!(ns.parent_of(z).unwrap(), Some(a));
    }

    #[test]
    fn hard_links_and_orphans() {
        let (_d, ns) = ns();
        let f = file(&ns, ROOT, "f", 1);
        assert_eq!(ns.link(f, ROOT, b"g", "/g").unwrap().nlink, 2);
        let d = dir(&ns, ROOT, "d");
        assert!(matches!(
            ns.link(d, ROOT, b"dd", "/dd"),
            Err(NamespaceError::NotPermitted(_))
        ));
        let r = ns.unlink(ROOT, b"f", false, "/f", CLOSED).unwrap();
        assert_eq!(r, Removed::default());
        assert_eq!(ns.inode(f).unwrap().nlink, 1);
        // The last link goes while open: an orphan, destroyed at release.
        let r = ns.unlink(ROOT, b"g", false, "/g", &|ino| ino == f).unwrap();
        assert_eq!(r.orphan, Some(f));
        assert_eq!(ns.orphans().unwrap(), vec![f]);
        assert_eq!(ns.inode(f).unwrap().nlink, 0);
        assert_eq!(ns.release_orphan(f).unwrap(), vec![ObjectId([1; 16])]);
        assert!(ns.orphans().unwrap().is_empty());
        assert!(ns.inode(f).is_err());
        assert_eq!(ns.gc_queue().unwrap(), vec![ObjectId([1; 16])]);
    }

    #[test]
    fn truncate_and_partial_content() {
        let (_d, ns) = ns();
        let f = file(&ns, ROOT, "f", 1);
        let ext = vec![
            Extent {
                offset: 0,
                len: 5,
                object: ObjectId([1; 16]),
                object_offset: 0,
            },
            Extent {
                offset: 5,
                len: 3,
                object: ObjectId([2; 16]),
                object_offset: 0,
            },
            Extent {
                offset: 8,
                len: 2,
                object: ObjectId([1; 16]),
                object_offset: 8,
            },
        ];
        assert!(
            ns.set_content(f, ext, 10, Time::now(), Time::now(), None)
                .unwrap()
                .is_empty()
        );
        let (node, gone) = ns.truncate(f, 6).unwrap();
        assert_eq!(node.extents.len(), 2);
        assert_eq!(node.extents[1].len, 1);
        assert!(gone.is_empty(), "object 1 is still used");
        let (node, gone) = ns.truncate(f, 1 << 50).unwrap();
        assert_eq!((node.size, node.extents.len()), (1 << 50, 2));
        assert!(gone.is_empty());
        let (_, gone) = ns.truncate(f, 4).unwrap();
        assert_eq!(gone, vec![ObjectId([2; 16])]);
    }
}
