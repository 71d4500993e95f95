//! File operations of the CLI on vault paths: put, get, ls, rm, mkdir.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Fate, Namer, PublishError, ReadOutcome, SealedObject, Vault, VaultError, io_err};
use crate::ObjectId;
use crate::namespace::{Extent, Inode, Kind, NamespaceError, Time, VaultPath, display_name};

/// Where `put` reads from.
#[derive(Debug, Clone)]
pub enum PutSource {
    /// A local file.
    File(PathBuf),
    /// Standard input (spooled to the staging folder first: the seal needs
    /// the length up front).
    Stdin,
    /// Content another process sent and this one spooled (a `qsfs put`
    /// through a mounted vault's control socket), with what the command
    /// found about its source.
    Received(Received),
}

/// A file a command sent to the mount process, spooled in the staging
/// folder ([`Vault::spool`]).
#[derive(Debug, Clone)]
pub struct Received {
    /// The spool file (the caller removes it; a failed stdin spool is
    /// renamed and kept, as for [`PutSource::Stdin`]).
    pub spool: PathBuf,
    /// Permission bits of the source.
    pub mode: u32,
    /// Modification time of the source.
    pub mtime: Time,
    /// Owner of a new file (who ran the command).
    pub uid: u32,
    /// Group of a new file.
    pub gid: u32,
    /// The source was the command's standard input.
    pub stdin: bool,
}

/// A local file opened for `put`, with what `put` keeps of it. The
/// command line opens sources this way also when a mount stores them, so
/// its errors read the same.
#[derive(Debug)]
pub struct LocalSource {
    /// The open file.
    pub file: File,
    /// Its length.
    pub len: u64,
    /// Its permission bits.
    pub mode: u32,
    /// Its modification time.
    pub mtime: Time,
}

impl LocalSource {
    /// Opens `p`, which must be a regular file.
    pub fn open(p: &Path) -> Result<LocalSource, VaultError> {
        let file = File::open(p).map_err(io_err(format!("open {}", p.display())))?;
        let meta = file
            .metadata()
            .map_err(io_err(format!("stat {}", p.display())))?;
        if !meta.is_file() {
            return Err(VaultError::Io {
                what: format!("read {}", p.display()),
                source: std::io::Error::other("not a regular file"),
            });
        }
        Ok(LocalSource {
            file,
            len: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            mtime: Time {
                secs: meta.mtime(),
                nanos: meta.mtime_nsec() as u32,
            },
        })
    }
}

/// Makes the name of a `put` file point at its committed object (or at
/// none, for an empty file), collecting objects of replaced versions in
/// the vector. The mount brings its own (fs/live.rs), which keeps its open
/// files and the kernel's caches right.
pub type Linker<'a> = dyn Fn(&VaultPath, Inode, Option<&SealedObject>, &mut Vec<ObjectId>) -> Result<u64, VaultError>
    + 'a;

/// `put`'s naming step: each sealed item's path is linked to its object
/// by the caller's [`Linker`], which also says what inode it names.
struct PutNames<'a, 'l> {
    items: &'a [(PutSource, VaultPath)],
    /// Per sealed item: its place in `items`, its new inode, its spool.
    sealed: &'a [(usize, Inode, Option<Spool>)],
    link: &'a Linker<'l>,
    /// The inode each sealed item was linked to.
    inos: Vec<u64>,
}

impl Namer for PutNames<'_, '_> {
    type Error = VaultError;

    fn name(
        &mut self,
        item: usize,
        objs: &[SealedObject],
        replaced: &mut Vec<ObjectId>,
    ) -> Result<Fate, VaultError> {
        let (i, inode, _) = &self.sealed[item];
        self.inos[item] = (self.link)(&self.items[*i].1, inode.clone(), objs.first(), replaced)?;
        Ok(Fate::Named)
    }
}

/// One line of `qsfs ls`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListEntry {
    /// Entry name (lossy UTF-8).
    pub name: String,
    /// Inode number.
    pub ino: u64,
    /// Attributes.
    pub inode: Inode,
}

/// Objects sealed per group commit in `put_many`.
const BATCH: usize = 64;

impl Vault {
    /// Stores each local source at its vault path, sealing them one after
    /// another and committing them in groups (one barrier per group). The
    /// parent folders must exist; an existing file is replaced (its old
    /// version is destroyed only after the new one is durable). Returns one
    /// result per item.
    pub fn put_many(&self, items: &[(PutSource, VaultPath)]) -> Vec<Result<u64, VaultError>> {
        self.put_many_with(items, &|path, inode, obj, garbage| {
            self.link_content(path, inode, obj, garbage)
        })
    }

    /// [`Vault::put_many`] with the naming step done by `link`.
    pub fn put_many_with(
        &self,
        items: &[(PutSource, VaultPath)],
        link: &Linker,
    ) -> Vec<Result<u64, VaultError>> {
        let mut results: Vec<Option<Result<u64, VaultError>>> =
            (0..items.len()).map(|_| None).collect();
        for group in (0..items.len()).collect::<Vec<_>>().chunks(BATCH) {
            let mut sealed = Vec::new();
            let mut objs = Vec::new();
            for &i in group {
                match self.prepare(&items[i].0, &items[i].1) {
                    Ok((obj, inode, spool)) => {
                        objs.push(obj.into_iter().collect());
                        sealed.push((i, inode, spool));
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let mut names = PutNames {
                items,
                sealed: &sealed,
                link,
                inos: vec![0; sealed.len()],
            };
            let done = self.publish(objs, &mut names);
            let inos = names.inos;
            for (((i, _, spool), outcome), ino) in sealed.into_iter().zip(done.items).zip(inos) {
                let what = items[i].1.to_string();
                results[i] = Some(match outcome {
                    Ok(_) => Ok(ino),
                    Err(PublishError::Commit(e)) => Err(keep_spool(
                        VaultError::Seal {
                            path: what.clone(),
                            source: Box::new(e),
                        },
                        spool,
                        &what,
                    )),
                    Err(PublishError::Name(e)) => Err(keep_spool(e, spool, &what)),
                    // The path shows either version after a restart, so
                    // the spool is not kept.
                    Err(PublishError::NotDurable(e)) => Err(VaultError::Seal {
                        path: what,
                        source: Box::new(VaultError::NotDurable(e)),
                    }),
                });
            }
            if let Some(Err(e)) = done.gc {
                tracing::warn!(
                    "old versions could not be destroyed yet ({e}); the next qsfs command retries"
                );
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(VaultError::Internal("item skipped".into()))))
            .collect()
    }

    /// Stores one source at `path`.
    pub fn put(&self, src: &PutSource, path: &VaultPath) -> Result<u64, VaultError> {
        let items = [(src.clone(), path.clone())];
        self.put_many(&items)
            .pop()
            .unwrap_or_else(|| Err(VaultError::Internal("no result".into())))
    }

    /// Checks the target, seals the source. Empty files need no object.
    fn prepare(
        &self,
        src: &PutSource,
        path: &VaultPath,
    ) -> Result<(Option<SealedObject>, Inode, Option<Spool>), VaultError> {
        let what = path.to_string();
        let (parent, name) = self.ns.resolve_parent(path)?;
        crate::namespace::check_name(name, &what)?;
        if let Some((_, kind)) = self.ns.lookup(parent, name)?
            && kind != Kind::File
        {
            return Err(if kind == Kind::Dir {
                NamespaceError::IsADirectory(what).into()
            } else {
                NamespaceError::Exists(what).into()
            });
        }
        let mut inode = Inode::new(
            Kind::File,
            0o644,
            super::current_uid(),
            super::current_gid(),
        );
        let (file, len, spool) = match src {
            PutSource::File(p) => {
                let local = LocalSource::open(p)?;
                inode.mode = local.mode;
                inode.mtime = local.mtime;
                (local.file, local.len, None)
            }
            PutSource::Stdin => {
                let spool = self.spool(&mut std::io::stdin().lock(), "read standard input")?;
                let f = File::open(&spool.0).map_err(io_err("reopen the stdin spool"))?;
                let len = f.metadata().map_err(io_err("stat the stdin spool"))?.len();
                (f, len, Some(spool))
            }
            PutSource::Received(r) => {
                let f = File::open(&r.spool)
                    .map_err(io_err(format!("reopen the spool {}", r.spool.display())))?;
                let len = f
                    .metadata()
                    .map_err(io_err(format!("stat the spool {}", r.spool.display())))?
                    .len();
                inode.mode = r.mode & 0o7777;
                inode.mtime = r.mtime;
                inode.uid = r.uid;
                inode.gid = r.gid;
                // Only what came from stdin is kept when storing it fails
                // (the command cannot send it again).
                (f, len, r.stdin.then(|| Spool(r.spool.clone())))
            }
        };
        inode.size = len;
        if len == 0 {
            return Ok((None, inode, spool));
        }
        match self.seal(file, len, &what) {
            Ok(obj) => Ok((Some(obj), inode, spool)),
            Err(e) => Err(keep_spool(e, spool, &what)),
        }
    }

    /// Copies `src` into a new 0600 file in the staging folder (removed
    /// when the returned guard drops, and by the next open of the vault
    /// if this process dies first); `what` names the reading in errors.
    pub fn spool(&self, src: &mut dyn Read, what: &str) -> Result<Spool, VaultError> {
        let (spool, mut f) = self.new_spool()?;
        std::io::copy(src, &mut f).map_err(io_err(what))?;
        Ok(spool)
    }

    /// A new, empty 0600 spool file in the staging folder, open for
    /// writing (see [`Vault::spool`]).
    pub fn new_spool(&self) -> Result<(Spool, File), VaultError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| VaultError::Internal(e.to_string()))?;
        let path = self.staging().join(format!("spool-{}", hex::encode(id)));
        let spool = Spool(path.clone());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        Ok((spool, f))
    }

    /// Points `path` at the committed object (or at no object for an empty
    /// file), creating the file or replacing its content.
    fn link_content(
        &self,
        path: &VaultPath,
        mut inode: Inode,
        obj: Option<&SealedObject>,
        garbage: &mut Vec<ObjectId>,
    ) -> Result<u64, VaultError> {
        let extents = whole_extents(obj);
        let (parent, name) = self.ns.resolve_parent(path)?;
        let size = inode.size;
        match self.ns.lookup(parent, name)? {
            Some((ino, Kind::File)) => {
                garbage.extend(self.ns.set_content(
                    ino,
                    extents,
                    size,
                    Time::now(),
                    Time::now(),
                    None,
                )?);
                Ok(ino)
            }
            Some(_) => Err(NamespaceError::Exists(path.to_string()).into()),
            None => {
                inode.extents = extents;
                Ok(self.ns.create(parent, name, &inode, &path.to_string())?)
            }
        }
    }

    /// Writes the content of file `path` to `sink`: holes as zeros, each
    /// extent decrypted and verified.
    pub fn read_file(
        &self,
        path: &VaultPath,
        sink: &mut dyn Write,
        verify_first: bool,
    ) -> Result<ReadOutcome, VaultError> {
        let (_, inode) = self.ns.resolve(path)?;
        self.read_inode(&inode, &path.to_string(), sink, verify_first)
    }

    /// [`Vault::read_file`] of a file's inode as resolved (`what` names it).
    pub fn read_inode(
        &self,
        inode: &Inode,
        what: &str,
        sink: &mut dyn Write,
        verify_first: bool,
    ) -> Result<ReadOutcome, VaultError> {
        let what = what.to_string();
        match inode.kind {
            Kind::File => {}
            Kind::Dir => return Err(NamespaceError::IsADirectory(what).into()),
            _ => {
                return Err(VaultError::Io {
                    what: format!("read {what}"),
                    source: std::io::Error::other("not a regular file"),
                });
            }
        }
        let mut outcome = ReadOutcome::default();
        let mut pos = 0u64;
        for e in &inode.extents {
            write_zeros(sink, e.offset - pos.min(e.offset)).map_err(io_err("write the output"))?;
            // An extent may use part of its object (after a partial
            // rewrite or a truncate in the mount): the whole object is still
            // decrypted and verified, only the window reaches the output.
            let mut window = Window {
                out: &mut *sink,
                skip: e.object_offset,
                take: e.len,
            };
            self.open_object(&e.object, &mut window, verify_first, &what, &mut outcome)?;
            if window.take > 0 {
                return Err(VaultError::Read {
                    path: what,
                    object: e.object,
                    detail: format!(
                        "the object is {} bytes shorter than its extent",
                        window.take
                    ),
                });
            }
            pos = e.offset + e.len;
        }
        write_zeros(sink, inode.size.saturating_sub(pos)).map_err(io_err("write the output"))?;
        Ok(outcome)
    }

    /// Reads file `path` into the local file `dest`. A regular file (or a
    /// new name) is written through a temporary file renamed into place
    /// only when everything verified; a symlink is followed; anything else
    /// (a FIFO, a device such as /dev/null) is written in place, after the
    /// whole object verified, like stdout.
    pub fn get_to_file(&self, path: &VaultPath, dest: &Path) -> Result<ReadOutcome, VaultError> {
        let mut outcome = ReadOutcome::default();
        write_local::<VaultError>(dest, |out, verify_first| {
            outcome = self.read_file(path, out, verify_first)?;
            let (_, inode) = self.ns.resolve(path)?;
            Ok(inode.mode)
        })?;
        Ok(outcome)
    }

    /// Entries of the folder at `path` (or the single entry of a file).
    pub fn list(&self, path: &VaultPath) -> Result<Vec<ListEntry>, VaultError> {
        let (ino, inode) = self.ns.resolve(path)?;
        if inode.kind != Kind::Dir {
            let name = path
                .components()
                .last()
                .map(|n| display_name(n))
                .unwrap_or_else(|| "/".into());
            return Ok(vec![ListEntry { name, ino, inode }]);
        }
        self.ns
            .readdir(ino)?
            .into_iter()
            .map(|e| {
                Ok(ListEntry {
                    name: display_name(&e.name),
                    ino: e.ino,
                    inode: self.ns.inode(e.ino)?,
                })
            })
            .collect()
    }

    /// Creates a folder (and with `parents` its missing parents; an existing
    /// folder is then fine).
    pub fn mkdir(&self, path: &VaultPath, parents: bool, mode: u32) -> Result<(), VaultError> {
        self.mkdir_as(
            path,
            parents,
            mode,
            super::current_uid(),
            super::current_gid(),
        )
        .map(|_| ())
    }

    /// [`Vault::mkdir`] for the user `uid`/`gid` (who ran the command, when
    /// a mount does it). Returns the folders it created.
    pub fn mkdir_as(
        &self,
        path: &VaultPath,
        parents: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<VaultPath>, VaultError> {
        let mut created = Vec::new();
        if path.is_root() {
            return if parents {
                Ok(created)
            } else {
                Err(NamespaceError::Exists("/".into()).into())
            };
        }
        let steps: Vec<usize> = if parents {
            (1..=path.components().len()).collect()
        } else {
            vec![path.components().len()]
        };
        for n in steps {
            let sub = path.first(n);
            let (parent, name) = self.ns.resolve_parent(&sub)?;
            match self.ns.lookup(parent, name)? {
                Some((_, Kind::Dir)) if parents => continue,
                Some(_) => return Err(NamespaceError::Exists(sub.to_string()).into()),
                None => {
                    let node = Inode::new(Kind::Dir, mode, uid, gid);
                    self.ns.create(parent, name, &node, &sub.to_string())?;
                    created.push(sub);
                }
            }
        }
        self.ns.flush_durable()?;
        Ok(created)
    }

    /// Removes a file, or with `recursive` a whole tree; destroys the
    /// objects, keys and backup records of everything removed. Returns the
    /// number of entries removed.
    pub fn remove(&self, path: &VaultPath, recursive: bool) -> Result<u64, VaultError> {
        if path.is_root() {
            return Err(NamespaceError::InvalidPath {
                path: "/".into(),
                why: "the root cannot be removed",
            }
            .into());
        }
        let removed = self.remove_entry(path, recursive);
        // Whatever was unlinked (even if a later entry failed) is made
        // durable and its objects destroyed.
        self.ns.flush_durable()?;
        self.collect_garbage()?;
        removed
    }

    fn remove_entry(&self, path: &VaultPath, recursive: bool) -> Result<u64, VaultError> {
        let (parent, name) = self.ns.resolve_parent(path)?;
        let (ino, kind) = self
            .ns
            .lookup(parent, name)?
            .ok_or_else(|| NamespaceError::NotFound(path.to_string()))?;
        let mut count = 0;
        if kind == Kind::Dir {
            if !recursive && !self.ns.readdir(ino)?.is_empty() {
                return Err(NamespaceError::NotEmpty(path.to_string()).into());
            }
            for e in self.ns.readdir(ino)? {
                count += self.remove_entry(&path.join(&e.name), true)?;
            }
        }
        self.ns
            .remove(parent, name, kind == Kind::Dir, &path.to_string())?;
        Ok(count + 1)
    }
}

/// A spool file in the staging folder (stdin, or content a command sent
/// to the mount), overwritten and removed when dropped: it holds
/// plaintext (src/wipe.rs).
pub struct Spool(PathBuf);

impl Spool {
    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty()
            && let Err(e) = crate::wipe::wipe_and_remove(&self.0, None)
        {
            tracing::warn!(
                "cannot overwrite the spool {} before removing it ({e}); the next open of the vault tries again",
                self.0.display()
            );
        }
    }
}

/// Stdin cannot be read twice: when storing what came from it fails, the
/// spooled copy is kept and the error says where.
fn keep_spool(e: VaultError, spool: Option<Spool>, what: &str) -> VaultError {
    let Some(mut spool) = spool else { return e };
    let kept = spool.0.with_file_name(format!(
        "failed-stdin-{}",
        spool
            .0
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches("spool-").to_string())
            .unwrap_or_default()
    ));
    if std::fs::rename(&spool.0, &kept).is_err() {
        return e;
    }
    spool.0 = PathBuf::new();
    VaultError::Seal {
        path: what.to_string(),
        source: Box::new(VaultError::SpoolKept {
            source: Box::new(e),
            kept,
        }),
    }
}

/// Passes `take` bytes after skipping `skip`, and swallows the rest.
struct Window<'a> {
    out: &'a mut dyn Write,
    skip: u64,
    take: u64,
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        let skip = self.skip.min(rest.len() as u64) as usize;
        self.skip -= skip as u64;
        rest = &rest[skip..];
        let take = self.take.min(rest.len() as u64) as usize;
        self.out.write_all(&rest[..take])?;
        self.take -= take as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn write_zeros(sink: &mut dyn Write, mut n: u64) -> std::io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        sink.write_all(&zeros[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Writes a vault file to the local file `dest` as `qsfs get` does:
/// `fill` writes the content into the sink it is given and returns the
/// file's permission bits; its flag says whether the whole object must be
/// authenticated before the first byte is written: always true, so `get`
/// never releases a byte of an object whose M does not verify. A regular
/// file (or a new name) is written through a temporary file renamed into
/// place only when `fill` succeeded; a symlink
/// is followed; anything else (a FIFO, a device such as /dev/null) is
/// written in place. Shared by the vault opened here and by a mount that
/// sends the content (cli/live.rs).
pub fn write_local<E: From<VaultError>>(
    dest: &Path,
    fill: impl FnOnce(&mut dyn Write, bool) -> Result<u32, E>,
) -> Result<(), E> {
    let mut target = dest.to_path_buf();
    if std::fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink()) {
        target = match std::fs::canonicalize(dest) {
            Ok(t) => t,
            // A dangling link: create its target, as cp does.
            Err(_) => {
                let link = std::fs::read_link(dest)
                    .map_err(io_err(format!("read link {}", dest.display())))?;
                dest.parent().unwrap_or(Path::new(".")).join(link)
            }
        };
    }
    if let Ok(m) = std::fs::metadata(&target)
        && !m.is_file()
    {
        if m.is_dir() {
            return Err(VaultError::Io {
                what: format!("write {}", target.display()),
                source: std::io::Error::other("it is a folder"),
            }
            .into());
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .map_err(io_err(format!("open {}", target.display())))?;
        fill(&mut out, true)?;
        return Ok(());
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".qsfs-get-")
        .tempfile_in(&dir)
        .map_err(io_err(format!(
            "create a temporary file in {}",
            dir.display()
        )))?;
    let mode = {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        // Verified first here too: no plaintext byte reaches the disk (not
        // even the temporary file) before the object's M verified.
        let mode = fill(&mut out, true)?;
        out.flush()
            .map_err(io_err(format!("write {}", target.display())))?;
        mode
    };
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode & 0o777));
    tmp.persist(&target).map_err(|e| VaultError::Io {
        what: format!("write {}", target.display()),
        source: e.error,
    })?;
    Ok(())
}

/// The extents of a file whose whole content is `obj` (none for an empty
/// file): what `put` and the mount's live `put` give a new version.
pub(crate) fn whole_extents(obj: Option<&SealedObject>) -> Vec<Extent> {
    obj.map(|o| {
        vec![Extent {
            offset: 0,
            len: o.plain_len(),
            object: o.id(),
            object_offset: 0,
        }]
    })
    .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `get` asks for the whole object to be authenticated (M) before its
    /// first byte, whatever the destination; a failed fill leaves neither
    /// the name nor a temporary file holding plaintext.
    #[test]
    fn get_asks_for_m_before_the_first_byte_and_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        let existing = dir.path().join("existing");
        std::fs::write(&existing, b"old").unwrap();
        for dest in [new.as_path(), existing.as_path(), Path::new("/dev/null")] {
            let mut asked = None;
            write_local::<VaultError>(dest, |out, verify_first| {
                asked = Some(verify_first);
                out.write_all(b"x").unwrap();
                Ok(0o600)
            })
            .unwrap();
            assert_eq!(asked, Some(true), "{}", dest.display());
        }
        let failed = dir.path().join("failed");
        let r = write_local::<VaultError>(&failed, |out, _| {
            out.write_all(b"plaintext").unwrap();
            Err(VaultError::Io {
                what: "open".into(),
                source: std::io::Error::other("M does not verify"),
            })
        });
        assert!(r.is_err());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["existing", "new"], "{left:?}");
    }
}
