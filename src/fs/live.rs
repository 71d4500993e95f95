//! The command line's file commands (`ls`, `get`, `put`, `rm`, `mkdir`) on
//! a mounted vault: the control socket (control.rs) hands them to the
//! mount process, which runs them on its own namespace and open-file
//! table, so that what a command reports and what the mount shows agree,
//! and tells the kernel what changed behind its back (its cached entries,
//! attributes and pages).
//!
//! - `ls` shows the size and times of a file that is open or still being
//!   sealed as the mount does (from its state, not the last commit).
//! - `get` holds the file open while it reads, as a reader in the mount
//!   would: a file with unsealed writes (closed with its seal on its way,
//!   or open for writing) is read from its state, staged bytes included;
//!   any other is read and verified as the command does without a mount
//!   (with `verify_first`, the whole object before the first byte).
//! - `put` receives each file in chunks into a spool in the staging
//!   folder (never a whole file in memory), then seals and commits it as
//!   `qsfs put` does, 64 files per group commit. The new version then
//!   takes the name in one step, as a new inode, like a rename over the
//!   old file: a process that has the old file open in the mount keeps
//!   reading the old version, and the kernel looks the name up afresh. A
//!   replaced file keeps its mode, owner and extended attributes, and its
//!   times say now, as without a mount; other hard links to it keep the
//!   old version.
//! - `rm` unlinks as unlink(2) in the mount does: a file open there stays
//!   readable through its handles and is destroyed at its last close.
//! - `mkdir` makes folders owned by whoever ran the command.
//!
//! Arguments and results are the structs below, as JSON.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::FsCore;
use super::files::OpenFile;
use crate::ObjectId;
use crate::control::{MAX_CHUNK, Peer, Session, SessionError, Upload};
use crate::namespace::{Inode, Kind, NamespaceError, Time, VaultPath};
use crate::vault::{ListEntry, PutSource, Received, SealedObject, Spool, VaultError};

/// The control socket operations served here.
pub const OPS: &[&str] = &["is-dir", "ls", "get", "put", "rm", "mkdir"];

/// Files sealed per group commit, as `qsfs put` groups them without a
/// mount (one durability barrier per group).
const GROUP_FILES: usize = 64;
/// Bytes spooled before a group is sealed, however few its files: what
/// waits in the staging folder stays bounded too.
const GROUP_BYTES: u64 = 256 << 20;

/// A vault path on the wire: a string when it is UTF-8 (always for paths
/// typed on the command line), else its bytes (names `put -r` found on
/// disk), so every name a vault can hold travels unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WirePath {
    /// A UTF-8 path.
    Text(String),
    /// Any other path, as bytes.
    Bytes(Vec<u8>),
}

impl WirePath {
    /// The wire form of `path`.
    pub fn of(path: &VaultPath) -> WirePath {
        let mut bytes = Vec::new();
        for c in path.components() {
            bytes.push(b'/');
            bytes.extend_from_slice(c);
        }
        if bytes.is_empty() {
            bytes.push(b'/');
        }
        match String::from_utf8(bytes) {
            Ok(s) => WirePath::Text(s),
            Err(e) => WirePath::Bytes(e.into_bytes()),
        }
    }

    /// The vault path it names.
    pub fn parse(&self) -> Result<VaultPath, NamespaceError> {
        match self {
            WirePath::Text(s) => VaultPath::parse(s),
            WirePath::Bytes(b) => VaultPath::parse_bytes(b),
        }
    }
}

/// Arguments of `is-dir` and `ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathArgs {
    /// The vault path.
    pub path: WirePath,
}

/// The answer of `is-dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsDir {
    /// True when the path is a folder (false also when it does not exist).
    pub dir: bool,
}

/// Arguments of `get`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetArgs {
    /// The vault file.
    pub path: WirePath,
    /// Authenticate the whole object before sending its first byte (the
    /// command writes to a sink it cannot take back, such as stdout).
    pub verify_first: bool,
}

/// The answer of `get`, after its content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetDone {
    /// Permission bits of the file (for the local copy).
    pub mode: u32,
}

/// Arguments of `mkdir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MkdirArgs {
    /// The folder.
    pub path: WirePath,
    /// Make missing parents; an existing folder is fine.
    pub parents: bool,
    /// Permission bits.
    pub mode: u32,
}

/// Arguments of `rm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RmArgs {
    /// The file or folder.
    pub path: WirePath,
    /// Remove a folder with everything in it.
    pub recursive: bool,
}

/// One file of a `put`: its upload item (the content follows in chunks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutItem {
    /// Where it goes in the vault.
    pub path: WirePath,
    /// Permission bits of the source.
    pub mode: u32,
    /// Modification time of the source.
    pub mtime: Time,
    /// The source is the command's stdin (kept in the staging folder if
    /// storing it fails: it cannot be sent again).
    pub stdin: bool,
}

/// The answer of `put`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PutDone {
    /// Per item, in order: why it was not stored (as `qsfs put` prints it),
    /// or null.
    pub errors: Vec<Option<String>>,
}

/// Why a file operation failed.
#[derive(Debug, Error)]
pub enum LiveError {
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The namespace refused.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The connection to the command failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Arguments that do not decode.
    #[error("bad arguments for {op}: {source}")]
    Args {
        /// The operation.
        op: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A change on a read-only mount.
    #[error("cannot change {0}: the vault is mounted read-only (-o ro)")]
    ReadOnly(String),
    /// Reading a file's state in the mount failed.
    #[error("cannot read {path} in the mount: {source}")]
    Read {
        /// The vault file.
        path: String,
        /// The error the mount would answer a read with.
        source: std::io::Error,
    },
    /// An operation this module does not serve.
    #[error("unknown file operation {0:?}")]
    Unknown(String),
}

/// An error as the command line prints it: its message, then each cause
/// it does not already say (as cli/mod.rs does), so that a command prints
/// the same through the mount as without it.
fn as_printed(e: &dyn std::error::Error) -> String {
    let mut shown = e.to_string();
    let mut said = shown.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !said.contains(&text) {
            shown.push_str("\n  caused by: ");
            shown.push_str(&text);
            said.push_str(&text);
        }
        cause = c.source();
    }
    shown
}

fn args<T: serde::de::DeserializeOwned>(op: &str, v: Value) -> Result<T, LiveError> {
    serde_json::from_value(v).map_err(|source| LiveError::Args {
        op: op.to_string(),
        source,
    })
}

fn answer<T: Serialize>(v: &T) -> Result<Value, LiveError> {
    serde_json::to_value(v).map_err(|e| VaultError::Internal(e.to_string()).into())
}

/// Runs file operation `op` for the command at the other end of `s`.
pub fn run(core: &FsCore, op: &str, a: Value, s: &Session) -> Result<Value, String> {
    let r = match op {
        "is-dir" => args(op, a).and_then(|a: PathArgs| is_dir(core, &a)),
        "ls" => args(op, a).and_then(|a: PathArgs| ls(core, &a)),
        "get" => args(op, a).and_then(|a: GetArgs| get(core, &a, s)),
        "put" => put(core, s),
        // `qsfs rm` prints each path's error by itself, without causes.
        "rm" => {
            return args(op, a)
                .and_then(|a: RmArgs| rm(core, &a))
                .map_err(|e| e.to_string());
        }
        "mkdir" => args(op, a).and_then(|a: MkdirArgs| mkdir(core, &a, s.peer())),
        other => Err(LiveError::Unknown(other.to_string())),
    };
    r.map_err(|e| as_printed(&e))
}

fn is_dir(core: &FsCore, a: &PathArgs) -> Result<Value, LiveError> {
    let path = a.path.parse()?;
    let dir = matches!(core.vault.namespace().resolve(&path), Ok((_, i)) if i.kind == Kind::Dir);
    answer(&IsDir { dir })
}

/// Size and times of a file the mount holds state for, as it shows them.
fn overlay(core: &FsCore, ino: u64, inode: &mut Inode) {
    if inode.kind != Kind::File {
        return;
    }
    if let Some(f) = core.file(ino) {
        let st = f.lock();
        inode.size = st.content.size();
        inode.mtime = st.mtime;
        inode.ctime = inode.ctime.max(st.ctime);
    }
}

fn ls(core: &FsCore, a: &PathArgs) -> Result<Value, LiveError> {
    let mut entries: Vec<ListEntry> = core.vault.list(&a.path.parse()?)?;
    for e in &mut entries {
        overlay(core, e.ino, &mut e.inode);
    }
    answer(&entries)
}

fn read_error(path: &str, e: fuser::Errno) -> LiveError {
    LiveError::Read {
        path: path.to_string(),
        source: std::io::Error::from_raw_os_error(e.code()),
    }
}

/// Sends what is written to it as `data` chunks.
struct Chunks<'a, 'b> {
    session: &'a Session<'b>,
    buf: Vec<u8>,
}

impl Chunks<'_, '_> {
    fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.session
                .send_data(&self.buf)
                .map_err(std::io::Error::other)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for Chunks<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(MAX_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Lets go of a file `get` held open, as release(2) in the mount does: the
/// last user of a file with unsealed writes hands it to the sealer (a
/// close meanwhile left its seal to this holder), an orphan goes.
fn unpin(core: &FsCore, f: &Arc<OpenFile>) {
    let last = {
        let mut st = f.lock();
        st.handles = st.handles.saturating_sub(1);
        st.handles == 0 && !st.orphan && st.content.unsealed() && st.retry.is_none()
    };
    if last {
        core.seal_later(f);
    }
    core.maybe_evict(f);
}

fn get(core: &FsCore, a: &GetArgs, s: &Session) -> Result<Value, LiveError> {
    let path = a.path.parse()?;
    let what = path.to_string();
    let ns = core.vault.namespace();
    let (ino, inode) = ns.resolve(&path)?;
    let mut sink = Chunks {
        session: s,
        buf: Vec::with_capacity(MAX_CHUNK),
    };
    if inode.kind != Kind::File {
        // Refused as without the mount (a folder, a symlink, a FIFO...).
        core.vault
            .read_inode(&inode, &what, &mut sink, a.verify_first)?;
        sink.send().map_err(|e| read_error_io(&what, e))?;
        return answer(&GetDone { mode: inode.mode });
    }
    // Held open while it is read: an unlink or a put meanwhile leaves
    // this version readable until the read is done.
    let f = core
        .with_live(ino, |f, st| {
            st.handles += 1;
            Ok(Arc::clone(f))
        })
        .map_err(|e| read_error(&what, e))?;
    let result = (|| -> Result<u32, LiveError> {
        if f.lock().settled() {
            let inode = ns.inode(ino)?;
            core.vault
                .read_inode(&inode, &what, &mut sink, a.verify_first)?;
            sink.send().map_err(|e| read_error_io(&what, e))?;
            return Ok(inode.mode);
        }
        // Unsealed writes: what a read in the mount returns now.
        let size = f.lock().content.size();
        let mut at = 0u64;
        while at < size {
            let want = (size - at).min(MAX_CHUNK as u64) as u32;
            let chunk = core
                .read_state(&f, at, want)
                .map_err(|e| read_error(&what, e))?;
            if chunk.is_empty() {
                break; // cut meanwhile
            }
            s.send_data(&chunk)?;
            at += chunk.len() as u64;
        }
        Ok(ns.inode(ino).map(|i| i.mode).unwrap_or(inode.mode))
    })();
    unpin(core, &f);
    answer(&GetDone { mode: result? })
}

fn read_error_io(path: &str, source: std::io::Error) -> LiveError {
    LiveError::Read {
        path: path.to_string(),
        source,
    }
}

fn writable(core: &FsCore, path: &VaultPath) -> Result<(), LiveError> {
    if core.read_only {
        return Err(LiveError::ReadOnly(path.to_string()));
    }
    Ok(())
}

fn mkdir(core: &FsCore, a: &MkdirArgs, peer: Peer) -> Result<Value, LiveError> {
    let path = a.path.parse()?;
    let ns = core.vault.namespace();
    if core.read_only {
        // `mkdir -p` of folders that all exist changes nothing.
        return match ns.resolve(&path) {
            Ok((_, i)) if i.kind == Kind::Dir && a.parents => Ok(Value::Null),
            _ => Err(LiveError::ReadOnly(path.to_string())),
        };
    }
    let created = core
        .vault
        .mkdir_as(&path, a.parents, a.mode, peer.uid, peer.gid)?;
    for sub in &created {
        if let Ok((parent, name)) = ns.resolve_parent(sub) {
            core.invalidate_entry(parent, name);
        }
    }
    Ok(Value::Null)
}

fn rm(core: &FsCore, a: &RmArgs) -> Result<Value, LiveError> {
    let path = a.path.parse()?;
    if path.is_root() {
        return Err(NamespaceError::InvalidPath {
            path: "/".into(),
            why: "the root cannot be removed",
        }
        .into());
    }
    writable(core, &path)?;
    let removed = remove_entry(core, &path, a.recursive);
    // Whatever was unlinked (even if a later entry failed) is made
    // durable and its objects destroyed, as without the mount; what is
    // still open in the mount goes at its last close.
    core.vault.namespace().flush_durable()?;
    core.vault.collect_garbage()?;
    Ok(Value::from(removed?))
}

fn remove_entry(core: &FsCore, path: &VaultPath, recursive: bool) -> Result<u64, LiveError> {
    let ns = core.vault.namespace();
    let (parent, name) = ns.resolve_parent(path)?;
    let (ino, kind) = ns
        .lookup(parent, name)?
        .ok_or_else(|| NamespaceError::NotFound(path.to_string()))?;
    let mut count = 0;
    if kind == Kind::Dir {
        if !recursive && !ns.readdir(ino)?.is_empty() {
            return Err(NamespaceError::NotEmpty(path.to_string()).into());
        }
        for e in ns.readdir(ino)? {
            count += remove_entry(core, &path.join(&e.name), true)?;
        }
    }
    let removed = ns.unlink(parent, name, kind == Kind::Dir, &path.to_string(), &|i| {
        core.in_use(i)
    })?;
    core.after_removal(removed);
    core.notify_deleted(parent, ino, name);
    Ok(count + 1)
}

/// A received file waiting for its group to be sealed.
struct Pending {
    /// Its place in the command's list.
    index: usize,
    /// Removes the spool once the group is done.
    _spool: Spool,
    received: Received,
    path: VaultPath,
    len: u64,
}

fn put(core: &FsCore, s: &Session) -> Result<Value, LiveError> {
    let peer = s.peer();
    let mut done = PutDone::default();
    let mut group: Vec<Pending> = Vec::new();
    let mut spooled = 0u64;
    let mut buf = Vec::new();
    loop {
        match s.receive(&mut buf)? {
            Upload::Item(header) => {
                let index = done.errors.len();
                done.errors.push(None);
                match receive_item(core, s, header, peer, index, &mut buf)? {
                    Ok(p) => {
                        spooled += p.len;
                        group.push(p);
                    }
                    Err(e) => done.errors[index] = Some(e),
                }
                if group.len() >= GROUP_FILES || spooled >= GROUP_BYTES {
                    store(core, &mut group, &mut done);
                    spooled = 0;
                }
            }
            Upload::Finish(()) => break,
            other => {
                return Err(SessionError::Protocol(format!("{other:?} outside an item")).into());
            }
        }
    }
    store(core, &mut group, &mut done);
    answer(&done)
}

/// Receives one item's content into a spool. `Err`: the connection failed
/// (the whole put stops); `Ok(Err(why))`: this item failed, and its
/// content was read to its end.
fn receive_item(
    core: &FsCore,
    s: &Session,
    header: Value,
    peer: Peer,
    index: usize,
    buf: &mut Vec<u8>,
) -> Result<Result<Pending, String>, LiveError> {
    let target = (|| -> Result<_, LiveError> {
        let item: PutItem = args("put", header)?;
        let path = item.path.parse()?;
        writable(core, &path)?;
        let (spool, file) = core.vault.new_spool()?;
        Ok((item, path, spool, file))
    })();
    let (mut target, mut failed) = match target {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut len = 0u64;
    loop {
        match s.receive(buf)? {
            Upload::Data(n) => {
                if let Some((_, _, spool, file)) = &mut target
                    && let Err(e) = file.write_all(buf)
                {
                    failed = Some(
                        VaultError::Io {
                            what: format!("write the spool {}", spool.path().display()),
                            source: e,
                        }
                        .to_string(),
                    );
                    target = None;
                }
                len += n;
            }
            Upload::End(()) => break,
            Upload::Abort(why) => {
                failed.get_or_insert(format!("the command could not send all of it: {why}"));
                target = None;
                break;
            }
            other => {
                return Err(SessionError::Protocol(format!("{other:?} inside an item")).into());
            }
        }
    }
    Ok(match (target, failed) {
        (Some((item, path, spool, _file)), None) => Ok(Pending {
            index,
            received: Received {
                spool: spool.path().to_path_buf(),
                mode: item.mode,
                mtime: item.mtime,
                uid: peer.uid,
                gid: peer.gid,
                stdin: item.stdin,
            },
            _spool: spool,
            path,
            len,
        }),
        (_, failed) => Err(failed.unwrap_or_else(|| "not received".into())),
    })
}

/// Seals, commits and names the files of `group` as `qsfs put` does.
fn store(core: &FsCore, group: &mut Vec<Pending>, done: &mut PutDone) {
    if group.is_empty() {
        return;
    }
    let items: Vec<(PutSource, VaultPath)> = group
        .iter()
        .map(|p| (PutSource::Received(p.received.clone()), p.path.clone()))
        .collect();
    let results = core
        .vault
        .put_many_with(&items, &|path, inode, obj, garbage| {
            link(core, path, inode, obj, garbage)
        });
    for (p, r) in group.iter().zip(results) {
        if let Err(e) = r {
            done.errors[p.index] = Some(e.to_string());
        }
    }
    group.clear();
}

/// Names a committed `put` file: a new inode takes the name in one step
/// (see the top of this file), and the kernel learns of it.
fn link(
    core: &FsCore,
    path: &VaultPath,
    mut inode: Inode,
    obj: Option<&SealedObject>,
    garbage: &mut Vec<ObjectId>,
) -> Result<u64, VaultError> {
    let ns = core.vault.namespace();
    let what = path.to_string();
    let (parent, name) = ns.resolve_parent(path)?;
    inode.extents = crate::vault::whole_extents(obj);
    let mut xattrs = Vec::new();
    if let Some((old, kind)) = ns.lookup(parent, name)? {
        if kind != Kind::File {
            return Err(NamespaceError::Exists(what).into());
        }
        // As `qsfs put` over a file without a mount: it keeps its mode,
        // owner and extended attributes (ACLs too), and its times say now.
        let o = ns.inode(old)?;
        (inode.mode, inode.uid, inode.gid) = (o.mode, o.uid, o.gid);
        (inode.crtime, inode.atime) = (o.crtime, o.atime);
        inode.mtime = Time::now();
        inode.ctime = inode.mtime;
        for x in ns.list_xattr(old)? {
            if let Ok(v) = ns.get_xattr(old, &x) {
                xattrs.push((x, v));
            }
        }
    }
    let xattrs: Vec<(&[u8], &[u8])> = xattrs
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let (ino, removed) =
        ns.create_replacing(parent, name, &inode, &xattrs, &what, &|i| core.in_use(i))?;
    garbage.extend(removed.objects.iter().copied());
    core.after_removal(removed);
    core.invalidate_entry(parent, name);
    Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The lines of the file operations as the control socket carries
    /// them (control.rs shows them): they must not drift.
    #[test]
    fn frozen_v2_file_lines() -> TestResult {
        let item = PutItem {
            path: WirePath::Text("/a/b".into()),
            mode: 0o644,
            mtime: Time { secs: 1, nanos: 0 },
            stdin: false,
        };
        let line = Upload::Item(serde_json::to_value(&item)?);
        let text =
            r#"{"item":{"mode":420,"mtime":{"nanos":0,"secs":1},"path":"/a/b","stdin":false}}"#;
        assert_eq!(serde_json::to_string(&line)?, text);
        let Upload::Item(v) = serde_json::from_str(text)? else {
            return Err("not an item".into());
        };
        let back: PutItem = serde_json::from_value(v)?;
        assert_eq!((back.path, back.mode, back.stdin), (item.path, 420, false));
        let get = GetArgs {
            path: WirePath::Text("/a/b".into()),
            verify_first: true,
        };
        assert_eq!(
            serde_json::to_value(&get)?.to_string(),
            r#"{"path":"/a/b","verify_first":true}"#
        );
        let done: PutDone = serde_json::from_str(r#"{"errors":[null,"x"]}"#)?;
        assert_eq!(done.errors, vec![None, Some("x".to_string())]);
        let d: GetDone = serde_json::from_str(r#"{"mode":420}"#)?;
        assert_eq!(d.mode, 0o644);
        Ok(())
    }

    #[test]
    fn wire_paths_round_trip() -> TestResult {
        for raw in [&b"/"[..], b"/a/b c", b"/\xff\xfe/x", "/ünï/日本".as_bytes()] {
            let p = VaultPath::parse_bytes(raw)?;
            let w = WirePath::of(&p);
            let text = serde_json::to_string(&w)?;
            let back: WirePath = serde_json::from_str(&text)?;
            assert_eq!(back.parse()?, p, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&WirePath::of(&VaultPath::parse("/a/b")?))?,
            r#""/a/b""#
        );
        assert_eq!(
            serde_json::to_string(&WirePath::of(&VaultPath::parse_bytes(b"/\xff")?))?,
            "[47,255]"
        );
        Ok(())
    }
}
