//! The FUSE operations: each turns a kernel request into namespace,
//! staging, seal or read calls and the result into a reply or an errno.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::attr::{self, TTL};
use super::seal::SealHow;
use super::{Handle, Qsfs, errno};
use crate::namespace::{Inode, Kind, NAME_MAX, NamespaceError, RenameFlags, Time};

const GEN: Generation = Generation(0);

/// Xattrs a new inode is born with: (name, value).
type BornXattrs = Vec<(&'static [u8], Vec<u8>)>;

/// An inode about to be created and the xattrs it is born with (the ACLs
/// it inherits from its folder).
struct NewInode {
    inode: Inode,
    xattrs: BornXattrs,
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

fn show(name: &OsStr) -> String {
    name.to_string_lossy().into_owned()
}

impl Qsfs {
    fn ns(&self) -> &crate::namespace::Namespace {
        self.core.vault.namespace()
    }

    fn writable(&self) -> Result<(), Errno> {
        if self.core.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Attributes of `ino`; an open or staged file's size and mtime come
    /// from its state.
    fn attr_of(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inode = self.ns().inode(ino).map_err(|e| errno::ns(&e))?;
        let mut a = attr::to_attr(ino, &inode);
        if let Some(f) = self.core.file(ino) {
            let st = f.lock();
            a.size = st.content.size();
            a.mtime = attr::system_time(st.mtime);
            // A write changes the inode too; the namespace learns at the commit.
            a.ctime = a.ctime.max(attr::system_time(st.ctime));
            a.blocks = st.content.stored_bytes().div_ceil(u64::from(attr::BLOCK))
                * u64::from(attr::BLOCK / 512);
        }
        Ok(a)
    }

    /// A new inode for `req` under `parent`, as ext4 makes it: the group
    /// and, for folders, the set-group-id bit come from a set-group-id
    /// parent; the permission bits come from `mode` and either the
    /// parent's default ACL or, without one, `umask` (see [`Qsfs::perms`]).
    /// Symlinks have neither (pass umask 0).
    fn new_inode(
        &self,
        req: &Request,
        parent: u64,
        kind: Kind,
        mode: u32,
        umask: u32,
    ) -> Result<NewInode, Errno> {
        let dir = self.ns().inode(parent).map_err(|e| errno::ns(&e))?;
        let (mode, xattrs) = if kind == Kind::Symlink {
            (mode, Vec::new())
        } else {
            self.perms(parent, kind, mode, umask)?
        };
        let mut inode = Inode::new(kind, mode, req.uid(), req.gid());
        if dir.mode & libc::S_ISGID != 0 {
            inode.gid = dir.gid;
            if kind == Kind::Dir {
                inode.mode |= libc::S_ISGID;
            }
        }
        if kind != Kind::Dir
            && inode.mode & libc::S_ISGID != 0
            && req.uid() != 0
            && inode.gid != req.gid()
        {
            inode.mode &= !libc::S_ISGID;
        }
        Ok(NewInode { inode, xattrs })
    }

    /// Mode and ACL xattrs of a new inode, ext4's `posix_acl_create`: under
    /// a folder with a default ACL the umask is ignored, the mode's rwx
    /// bits are cut down by that ACL, the inode gets an access ACL (unless
    /// it says no more than the mode) and a new folder inherits the default
    /// ACL itself; without one the umask applies. With `FUSE_POSIX_ACL` the
    /// kernel leaves all of this to the filesystem, and with
    /// `FUSE_DONT_MASK` (see `init`) it sends `mode` with the umask not yet
    /// applied, so that a default ACL can override it.
    fn perms(
        &self,
        parent: u64,
        kind: Kind,
        mode: u32,
        umask: u32,
    ) -> Result<(u32, BornXattrs), Errno> {
        use super::acl;
        let default = match self.ns().get_xattr(parent, acl::DEFAULT) {
            Ok(v) => v,
            Err(NamespaceError::NoXattr(_)) => return Ok((mode & !(umask & 0o777), Vec::new())),
            Err(e) => return Err(errno::ns(&e)),
        };
        let Some(inherited) = acl::inherit(&default, mode) else {
            // The kernel checked it when it was set; a damaged record is
            // EIO, as ext4 answers an unreadable ACL.
            tracing::error!(
                "folder inode {parent}: its default ACL ({} bytes) is not a valid ACL; \
                 nothing can be created in it until it is reset (setfacl -k, then setfacl -d)",
                default.len()
            );
            return Err(Errno::EIO);
        };
        let mut xattrs = Vec::new();
        if let Some(access) = inherited.access {
            xattrs.push((acl::ACCESS, access));
        }
        if kind == Kind::Dir {
            xattrs.push((acl::DEFAULT, default));
        }
        Ok((inherited.mode, xattrs))
    }

    fn create_node(
        &self,
        parent: u64,
        name: &OsStr,
        new: &NewInode,
    ) -> Result<(u64, FileAttr), Errno> {
        self.writable()?;
        let xattrs: Vec<(&[u8], &[u8])> =
            new.xattrs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let ino = self
            .ns()
            .create_with_xattrs(parent, bytes(name), &new.inode, &xattrs, &show(name))
            .map_err(|e| errno::ns(&e))?;
        self.core.want_flush();
        Ok((ino, self.attr_of(ino)?))
    }

    /// An access ACL moves the mode bits with it, as on ext4; one that says
    /// no more than the mode is not kept (the mode says it all).
    fn set_access_acl(&self, ino: u64, value: &[u8], flags: i32) -> Result<(), Errno> {
        let acl = super::acl::parse(value).ok_or(Errno::EINVAL)?;
        ns_reply(self.ns().set_attrs(ino, |i| {
            i.mode = (i.mode & !0o777) | acl.perm;
            i.ctime = Time::now();
        }))?;
        const NAME: &[u8] = b"system.posix_acl_access";
        if acl.equivalent {
            match self.ns().remove_xattr(ino, NAME) {
                Ok(()) | Err(NamespaceError::NoXattr(_)) => Ok(()),
                Err(e) => Err(errno::ns(&e)),
            }
        } else {
            ns_reply(self.ns().set_xattr(ino, NAME, value, flags))
        }
    }

    fn handle(&self, fh: FileHandle) -> Option<Handle> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&fh.0)
            .copied()
    }

    /// relatime, as ext4 mounts by default: a read moves atime only when
    /// it is older than the last change or than a day.
    fn touch_atime(&self, ino: u64) {
        let Ok(inode) = self.ns().inode(ino) else {
            return;
        };
        let now = Time::now();
        if inode.atime <= inode.mtime
            || inode.atime <= inode.ctime
            || now.secs - inode.atime.secs > 86_400
        {
            let _ = self.ns().set_attrs(ino, |i| i.atime = now);
        }
    }

    /// Space of the vault for statfs, in usable bytes (what a file of
    /// that size costs once stored n/k times): (used, available). Used is
    /// what the vault's objects occupy on the nodes, scaled by k/n, so
    /// `df` shows about the bytes the vault stores (not what else shares
    /// the nodes' disks); available is what the nodes' free space holds,
    /// limited by the fullest disk. `df`'s size is their sum.
    fn capacity(&self) -> (u64, u64) {
        let cfg = self.core.vault.config();
        let nodes = self.core.vault.nodes();
        let mut by_fs: Vec<(u64, u64, u64)> = Vec::new(); // fsid, avail, nodes
        for node in nodes {
            if let Some(s) = node.space() {
                match by_fs.iter_mut().find(|g| g.0 == s.fsid) {
                    Some(g) => g.2 += 1,
                    None => by_fs.push((s.fsid, s.available, 1)),
                }
            }
        }
        let (k, n, count) = (cfg.k as u128, cfg.n as u128, nodes.len().max(1) as u128);
        let usable = |bytes: u64, m: u64| -> u64 {
            (u128::from(bytes) * k * count / (u128::from(m) * n)).min(u128::from(u64::MAX)) as u64
        };
        let avail = by_fs.iter().map(|g| usable(g.1, g.2)).min().unwrap_or(0);
        let stored = match self.core.vault.stored_total() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("statfs: cannot sum the stored bytes ({e}); df shows 0 used");
                0
            }
        };
        (usable(stored, count as u64), avail)
    }
}

/// Extended-attribute namespaces ext4 supports; others are EOPNOTSUPP.
/// The privilege bits a write, truncate or chown drops: set-user-id, and
/// set-group-id when the group may execute (without group execute it
/// marks mandatory locking and stays), as on ext4.
fn priv_bits(mode: u32) -> u32 {
    let (suid, sgid, gx) = (libc::S_ISUID, libc::S_ISGID, libc::S_IXGRP);
    let mut bits = mode & suid;
    if mode & (sgid | gx) == sgid | gx {
        bits |= sgid;
    }
    bits
}

impl Qsfs {
    /// The listing an opendir took for handle `fh`.
    fn dir_listing(&self, fh: FileHandle) -> Option<Arc<Vec<crate::namespace::DirEntry>>> {
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&fh.0)
            .cloned()
    }

    /// Drops the privileges of a file being written by a caller without
    /// CAP_FSETID: its set-id bits and its file capability.
    fn kill_privs(&self, ino: u64) -> Result<(), Errno> {
        let inode = ns_reply(self.ns().inode(ino))?;
        if inode.kind == Kind::Dir {
            return Ok(());
        }
        if priv_bits(inode.mode) != 0 {
            ns_reply(self.ns().set_attrs(ino, |i| {
                i.mode &= !priv_bits(i.mode);
                i.ctime = Time::now();
            }))?;
            self.core.want_flush();
            self.core.invalidate_attr(ino);
        }
        self.drop_capability(ino);
        Ok(())
    }

    /// Removes `security.capability`, if the file has one.
    fn drop_capability(&self, ino: u64) {
        if let Ok(v) = self.ns().get_xattr(ino, b"security.capability")
            && !v.is_empty()
            && self.ns().remove_xattr(ino, b"security.capability").is_ok()
        {
            self.core.want_flush();
        }
    }
}

fn known_xattr(name: &[u8]) -> Result<(), Errno> {
    const KNOWN: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];
    const ACL: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];
    if KNOWN
        .iter()
        .any(|p| name.starts_with(p) && name.len() > p.len())
        || ACL.contains(&name)
    {
        Ok(())
    } else {
        Err(Errno::EOPNOTSUPP)
    }
}

fn ns_reply<T>(r: Result<T, NamespaceError>) -> Result<T, Errno> {
    r.map_err(|e| {
        tracing::debug!("{e}");
        errno::ns(&e)
    })
}

impl Filesystem for Qsfs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        // `ls -l`, `find` and rsync then get the attributes with the names
        // instead of one lookup round trip per entry (the kernel chooses
        // per directory whether that pays).
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        // The kernel then checks POSIX ACLs as on ext4 and caches them;
        // qsfs stores them as xattrs, keeps the mode bits in step with an
        // access ACL and applies a folder's default ACL to new inodes
        // (`perms`). For that the kernel must send the create mode with
        // the umask not applied (FUSE_DONT_MASK): a default ACL replaces
        // the umask, and qsfs applies the umask itself where there is none.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL);
        if let Err(e) = config.add_capabilities(fuser::InitFlags::FUSE_DONT_MASK) {
            tracing::warn!(
                "kernel without FUSE_DONT_MASK ({e:?}): it applies the umask itself, also under folders with a default ACL"
            );
        }
        // qsfs clears set-user-id, set-group-id and file capabilities
        // itself (kill_privs); in return the kernel stops sending a
        // getxattr("security.capability") before every write, which
        // otherwise doubles the round trips of small writes.
        if let Err(e) = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2) {
            tracing::info!("kernel without killpriv v2 ({e:?})");
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if bytes(name).len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        let r = ns_reply(self.ns().lookup(parent.0, bytes(name)))
            .and_then(|found| found.ok_or(Errno::ENOENT))
            .and_then(|(ino, _)| self.attr_of(ino));
        match r {
            Ok(a) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = (|| -> Result<FileAttr, Errno> {
            self.writable()?;
            let ino = ino.0;
            let now = Time::now();
            let when = |t: TimeOrNow| match t {
                TimeOrNow::Now => now,
                TimeOrNow::SpecificTime(t) => attr::from_fuser(t),
            };
            if let Some(size) = size {
                let inode = ns_reply(self.ns().inode(ino))?;
                match inode.kind {
                    Kind::File => {}
                    Kind::Dir => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EINVAL),
                }
                let (f, idle) = self.core.with_live(ino, |f, st| {
                    self.core.set_size(st, ino, size)?;
                    Ok((Arc::clone(f), st.handles == 0))
                })?;
                // Nobody will close it: make the new size stick now.
                if idle {
                    self.core.seal_file(&f, SealHow::Close)?;
                    self.core.maybe_evict(&f);
                }
            }
            let new_mtime = mtime.map(when);
            // Any setattr is an inode change: chown(f, -1, -1) arrives with
            // no fields set and must still move ctime, as on ext4.
            // A chown, or a truncate by a caller without CAP_FSETID, drops
            // the privileges of a file (killpriv v2 leaves that to us).
            let kill = mode.is_none()
                && (uid.is_some() || gid.is_some() || (size.is_some() && req.uid() != 0));
            // An open or sealing file's state is locked across the inode
            // write, as the committer does: otherwise a seal committing
            // in between writes back the mtime it read before this one.
            let live = self.core.file(ino);
            let mut st = live.as_ref().map(|f| f.lock());
            ns_reply(self.ns().set_attrs(ino, |i| {
                if let Some(m) = mode {
                    i.mode = m & 0o7777;
                }
                if kill && i.kind != Kind::Dir {
                    i.mode &= !priv_bits(i.mode);
                }
                if let Some(u) = uid {
                    i.uid = u;
                }
                if let Some(g) = gid {
                    i.gid = g;
                }
                if let Some(t) = atime {
                    i.atime = when(t);
                }
                if let Some(t) = new_mtime {
                    i.mtime = t;
                }
                if let Some(t) = crtime {
                    i.crtime = attr::from_fuser(t);
                }
                i.ctime = ctime.map(attr::from_fuser).unwrap_or(now);
            }))?;
            if let (Some(t), Some(st)) = (new_mtime, st.as_mut()) {
                st.mtime = t;
            }
            drop(st);
            if kill {
                self.drop_capability(ino);
            }
            self.core.want_flush();
            self.attr_of(ino)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match ns_reply(self.ns().inode(ino.0)) {
            Ok(i) if i.kind == Kind::Symlink => reply.data(&i.target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let kind = attr::kind_of_mode(mode).ok_or(Errno::EINVAL)?;
            if kind == Kind::Dir {
                return Err(Errno::EPERM);
            }
            let mut new = self.new_inode(req, parent.0, kind, mode & 0o7777, umask)?;
            new.inode.rdev = rdev;
            self.create_node(parent.0, name, &new)
        })();
        match r {
            Ok((_, a)) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .new_inode(req, parent.0, Kind::Dir, mode & 0o7777, umask)
            .and_then(|new| self.create_node(parent.0, name, &new));
        match r {
            Ok((_, a)) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.writable().and_then(|()| {
            ns_reply(
                self.ns()
                    .unlink(parent.0, bytes(name), false, &show(name), &|ino| {
                        self.core.in_use(ino)
                    }),
            )
        });
        match r {
            Ok(removed) => {
                self.core.after_removal(removed);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.writable().and_then(|()| {
            ns_reply(
                self.ns()
                    .unlink(parent.0, bytes(name), true, &show(name), &|_| false),
            )
        });
        match r {
            Ok(removed) => {
                self.core.after_removal(removed);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .new_inode(req, parent.0, Kind::Symlink, 0o777, 0)
            .and_then(|mut new| {
                new.inode.target = target.as_os_str().as_bytes().to_vec();
                new.inode.size = new.inode.target.len() as u64;
                self.create_node(parent.0, link_name, &new)
            });
        match r {
            Ok((_, a)) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(fuser::RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let f = RenameFlags {
            noreplace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(fuser::RenameFlags::RENAME_EXCHANGE),
        };
        let r = self.writable().and_then(|()| {
            ns_reply(self.ns().rename(
                parent.0,
                bytes(name),
                newparent.0,
                bytes(newname),
                f,
                &show(newname),
                &|ino| self.core.in_use(ino),
            ))
        });
        match r {
            Ok(removed) => {
                self.core.after_removal(removed);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self
            .writable()
            .and_then(|()| {
                ns_reply(
                    self.ns()
                        .link(ino.0, newparent.0, bytes(newname), &show(newname)),
                )
            })
            .and_then(|_| {
                if let Some(f) = self.core.file(ino.0) {
                    f.lock().orphan = false;
                }
                self.core.want_flush();
                self.attr_of(ino.0)
            });
        match r {
            Ok(a) => reply.entry(&TTL, &a, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let write = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
            if write {
                self.writable()?;
            }
            let inode = ns_reply(self.ns().inode(ino.0))?;
            if inode.kind == Kind::Dir {
                return Err(Errno::EISDIR);
            }
            let refused = self.core.with_live(ino.0, |f, st| {
                // Counted before anything else, then checked: an unlink or
                // rename that destroyed the inode between its lookup and
                // here would leave this open reading destroyed objects. An
                // inode with no links is open only through a state that
                // knows it is an orphan: one loaded afresh is a file being
                // released (maybe_evict, then release_orphan).
                st.handles += 1;
                let code = match self.ns().links_now(ino.0) {
                    Ok(Some(n)) if n > 0 || st.orphan => None,
                    Ok(_) => Some(Errno::ENOENT),
                    Err(e) => Some(errno::ns(&e)),
                };
                let code = code.or_else(|| {
                    (write && flags.0 & libc::O_TRUNC != 0 && st.content.size() > 0)
                        .then(|| self.core.set_size(st, ino.0, 0).err())
                        .flatten()
                });
                Ok(code.map(|c| {
                    st.handles -= 1;
                    (Arc::clone(f), c)
                }))
            })?;
            if let Some((f, code)) = refused {
                self.core.maybe_evict(&f);
                return Err(code);
            }
            if !write {
                self.touch_atime(ino.0);
            }
            let fh = self.new_fh();
            let h = Handle {
                ino: ino.0,
                write,
                append: flags.0 & libc::O_APPEND != 0,
            };
            self.handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(fh, h);
            Ok(fh)
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self
            .core
            .file_or_load(ino.0)
            .and_then(|f| self.core.read_state(&f, offset, size));
        match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = (|| {
            self.writable()?;
            // Set only for callers without CAP_FSETID (killpriv v2).
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                self.kill_privs(ino.0)?;
            }
            let h = self
                .handle(fh)
                .filter(|h| h.ino == ino.0)
                .ok_or(Errno::EBADF)?;
            self.core.with_live(ino.0, |_, st| {
                let at = if h.append { st.content.size() } else { offset };
                self.core.write_into(st, ino.0, data, at)
            })?;
            Ok(data.len() as u32)
        })();
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.ok();
        };
        if !h.write {
            return reply.ok();
        }
        let r = self
            .core
            .file_or_load(ino.0)
            .and_then(|f| self.core.seal_file(&f, SealHow::Close))
            .and_then(|_| {
                // A new or touched file must survive the process being
                // killed once close(2) returned: its name and attributes
                // go to the OS (its bytes are journalled already).
                self.ns().flush_if_changed().map_err(|e| errno::ns(&e))
            });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&fh.0);
        if let Some(f) = self.core.file(ino.0) {
            let last = {
                let mut st = f.lock();
                st.handles = st.handles.saturating_sub(1);
                // A seal that failed at flush is the sealer's to retry:
                // sealing again here would only fail (and log) twice.
                st.handles == 0 && !st.orphan && st.content.unsealed() && st.retry.is_none()
            };
            // Writes that came after the last flush (through mmap).
            if last && let Err(e) = self.core.seal_file(&f, SealHow::Close) {
                tracing::error!(
                    "ino {}: seal at last close failed ({e:?}); the data stays staged",
                    ino.0
                );
            }
            self.core.maybe_evict(&f);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.core.file_or_load(ino.0).and_then(|f| {
            if let Some(ticket) = self.core.seal_file(&f, SealHow::Wait)? {
                self.core.wait_commit(&f, ticket)?;
            }
            self.ns().flush_durable().map_err(|e| errno::ns(&e))?;
            self.core.journal_now();
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = ns_reply(self.ns().inode(ino.0)).and_then(|i| {
            if i.kind != Kind::Dir {
                return Err(Errno::ENOTDIR);
            }
            ns_reply(self.ns().listing(ino.0))
        });
        match r {
            Ok(entries) => {
                let fh = self.new_fh();
                self.dirs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.dir_listing(fh) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(e.ino),
                (i + 1) as u64,
                attr::file_type(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(entries) = self.dir_listing(fh) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            // An entry removed since opendir is left out, as readdir of a
            // changing folder may.
            let Ok(a) = self.attr_of(e.ino) else {
                continue;
            };
            if reply.add(
                INodeNo(e.ino),
                (i + 1) as u64,
                OsStr::from_bytes(&e.name),
                &TTL,
                &a,
                GEN,
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.ns().flush_durable() {
            Ok(()) => {
                self.core.journal_now();
                reply.ok();
            }
            Err(e) => reply.error(errno::ns(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (used, avail) = self.capacity();
        let total = used.saturating_add(avail);
        let bsize = u64::from(attr::BLOCK);
        let files = self.ns().counts().map(|(f, d, o)| f + d + o).unwrap_or(0);
        let max_files = 1u64 << 32;
        reply.statfs(
            total / bsize,
            avail / bsize,
            avail / bsize,
            max_files,
            max_files.saturating_sub(files),
            attr::BLOCK,
            NAME_MAX as u32,
            attr::BLOCK,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let r = known_xattr(bytes(name))
            .and_then(|()| self.writable())
            .and_then(|()| {
                if bytes(name) == b"system.posix_acl_access" {
                    return self.set_access_acl(ino.0, value, flags);
                }
                ns_reply(self.ns().set_xattr(ino.0, bytes(name), value, flags))
            });
        match r {
            Ok(()) => {
                self.core.want_flush();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match known_xattr(bytes(name))
            .and_then(|()| ns_reply(self.ns().get_xattr(ino.0, bytes(name))))
        {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match ns_reply(self.ns().list_xattr(ino.0)) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(&n);
                    buf.push(0);
                }
                if size == 0 {
                    reply.size(buf.len() as u32);
                } else if buf.len() > size as usize {
                    reply.error(Errno::ERANGE);
                } else {
                    reply.data(&buf);
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = known_xattr(bytes(name))
            .and_then(|()| self.writable())
            .and_then(|()| ns_reply(self.ns().remove_xattr(ino.0, bytes(name))));
        match r {
            Ok(()) => {
                self.core.want_flush();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let inode = match ns_reply(self.ns().inode(ino.0)) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let want = mask.bits() as u32 & 0o7;
        if want & 0o2 != 0 && self.core.read_only {
            return reply.error(Errno::EROFS);
        }
        let ok = if req.uid() == 0 {
            // root may do anything but execute a file nobody may execute.
            want & 0o1 == 0 || inode.kind == Kind::Dir || inode.mode & 0o111 != 0
        } else {
            let bits = if req.uid() == inode.uid {
                (inode.mode >> 6) & 0o7
            } else if req.gid() == inode.gid {
                (inode.mode >> 3) & 0o7
            } else {
                inode.mode & 0o7
            };
            bits & want == want
        };
        if ok {
            reply.ok();
        } else {
            reply.error(Errno::EACCES);
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // qsfs stores no holes and reserves nothing: allocating means the
        // size grows (the new bytes read as zeros) unless KEEP_SIZE;
        // punching and zeroing cut the range from the file's content.
        // Collapsing or inserting ranges is not supported, as in gocryptfs.
        const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
        const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
        let known = KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE;
        if mode & !known != 0
            || (mode & PUNCH_HOLE != 0 && mode & (KEEP_SIZE | ZERO_RANGE) != KEEP_SIZE)
        {
            return reply.error(if mode & !known != 0 {
                Errno::EOPNOTSUPP
            } else {
                Errno::EINVAL
            });
        }
        let r = self.writable().and_then(|()| {
            // Under killpriv v2 the kernel sends no kill flag with a
            // fallocate and leaves the privileges to us. ext4 drops them as
            // for a write (file_modified): the set-id bits for a caller
            // without CAP_FSETID, taken here as anyone but root, and the
            // file capability for every caller.
            if req.uid() == 0 {
                self.drop_capability(ino.0);
            } else {
                self.kill_privs(ino.0)?;
            }
            self.core.with_live(ino.0, |_, st| {
                let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
                if mode & (PUNCH_HOLE | ZERO_RANGE) != 0 {
                    self.core.zero_range(st, ino.0, offset, end)?;
                }
                if mode & KEEP_SIZE == 0 && end > st.content.size() {
                    self.core.set_size(st, ino.0, end)?;
                }
                Ok(())
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let new = self.new_inode(req, parent.0, Kind::File, mode & 0o7777, umask)?;
            let (ino, a) = self.create_node(parent.0, name, &new)?;
            self.core.with_live(ino, |_, st| {
                st.handles += 1;
                Ok(())
            })?;
            let fh = self.new_fh();
            // A new file's existence must survive a kill once close(2)
            // returned, whatever its open mode: its flush records it.
            let h = Handle {
                ino,
                write: true,
                append: flags & libc::O_APPEND != 0,
            };
            self.handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(fh, h);
            Ok((fh, a))
        })();
        match r {
            Ok((fh, a)) => reply.created(&TTL, &a, GEN, FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}
