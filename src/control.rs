//! The control socket of a mounted vault: how the command line works on a
//! vault while it is mounted. The stores are single-process (the mount
//! holds the vault lock), so a command asks the mount process to do the
//! work on its open vault: `status`, `scrub`, `audit`, `fsck`, `keys`,
//! `node list`, `node drain` and `rebalance` as maintenance
//! (maint/mod.rs), and `ls`, `get`, `put`, `rm` and `mkdir` on the
//! mount's own namespace and open files (fs/live.rs), so that what the
//! mount shows and what the command reports agree.
//!
//! `VAULT/control.sock`, a Unix socket, mode 0600; only the user who runs
//! the mount (or root) may connect (checked with SO_PEERCRED).
//!
//! # Protocol, version 2
//! One JSON object per line, except that a `data` line is followed by
//! exactly that many raw bytes (at most [`MAX_CHUNK`]). The client's first
//! line names the operation; the server answers with any number of
//! `progress`, `alive` and `data` lines and ends with `done` or `error`:
//! ```text
//! client -> server  {"version":2,"op":"get","args":{"path":"/a/b","verify_first":true}}
//! server -> client  {"progress":{"event":"phase","name":"scrub","total":123}}
//!                   {"alive":null}                    (every 2 s while the operation runs)
//!                   {"data":65536} + 65536 bytes      (get: the file's content, in order)
//!                   {"done":{...report...}}  or  {"error":"what went wrong"}
//! ```
//! An operation that takes content (`put`) reads it after the first line,
//! item after item, each item's content in chunks:
//! ```text
//! client -> server  {"item":{"mode":420,"mtime":{"nanos":0,"secs":1},"path":"/a/b","stdin":false}}
//!                   {"data":65536} + 65536 bytes      (any number)
//!                   {"end":null}  or  {"abort":"why the client could not send all of it"}
//!                   ... more items ...
//!                   {"finish":null}
//! ```
//! What `args`, `item` and `done` hold for each operation is documented
//! with its structs (maint/mod.rs, maint/keys.rs, fs/live.rs). Content
//! moves in chunks both ways, so neither process ever holds a
//! whole file in memory (the mount spools what `put` sends into its
//! staging folder, as a command does with stdin). Chunks rather than
//! file descriptors passed with SCM_RIGHTS: the mount process then never
//! opens a file on the command's behalf (whose permissions and relative
//! paths are the command's), and the protocol stays one byte stream.
//!
//! A v2 client gives up when the server has said nothing for [`SILENCE`]
//! (a mount process that is stopped or stuck answers no heartbeat; one
//! that is busy sealing what was sent reads nothing for a while, but
//! beats). The server waits for content as long as the client lives (a
//! `qsfs put -` reads a pipe that may be slow); a client that dies closes
//! the connection.
//!
//! Version 1 (the first release) had no `alive`, `data` or upload lines
//! and only the maintenance operations. A v1 client is still served
//! (without heartbeats); a v1 server answers a v2 client with an error
//! naming both versions. The frozen lines of both are in the tests below.
//!
//! Maintenance runs one operation at a time; a second one waits for the
//! first. Reports (`status`, `node-list`) and the file operations do not
//! wait. A client that goes away does not stop a maintenance operation:
//! it finishes and its result is logged.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::maint::Progress;
use crate::sys::NoSigPipe;
use crate::vault::Vault;

/// Protocol version this build speaks.
pub const VERSION: u32 = 2;
/// Oldest protocol version this build still serves.
pub const OLDEST_VERSION: u32 = 1;
/// File name of the socket in the vault folder.
pub const SOCKET: &str = "control.sock";
/// Largest `data` chunk either side sends.
pub const MAX_CHUNK: usize = 1 << 20;
/// How often the server says it is alive while an operation runs (v2).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a client waits without a word from the server: fifteen
/// missed heartbeats mean the mount process is stopped or stuck, not
/// busy (a busy one still beats).
pub const SILENCE: Duration = Duration::from_secs(30);
/// How long connecting may take (connect(2) on a Unix socket blocks only
/// when the listener's backlog is full: a stuck process with many callers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for a progress or heartbeat line to leave: a
/// client that stops reading (suspended) must not stall a maintenance run.
const PROGRESS_WRITE: Duration = Duration::from_secs(10);
/// How long the server waits for a client to take a chunk of content: a
/// `qsfs get ... | less` may sit on a full pipe while someone reads.
const DATA_WRITE: Duration = Duration::from_secs(600);
/// Operations that do not wait for a running maintenance operation: the
/// reports only read, and the file operations must stay as quick as the
/// mount itself while a scrub runs for hours.
const UNQUEUED_OPS: &[&str] = &[
    "status",
    "node-list",
    "is-dir",
    "ls",
    "get",
    "put",
    "rm",
    "mkdir",
];

/// Control socket failures (client side).
#[derive(Debug, Error)]
pub enum ControlError {
    /// No mount process answers on the socket.
    #[error("no mounted qsfs answers on {0}")]
    NotMounted(PathBuf),
    /// The mount process accepted the connection but then said nothing.
    #[error(
        "the qsfs process serving the mount did not answer on {path} for {secs} s: it is stopped or stuck (see the vault's qsfs.log; `kill -CONT` it if it was stopped, or unmount with `qsfs umount MOUNTPOINT`)"
    )]
    Silent {
        /// The socket.
        path: PathBuf,
        /// Seconds waited.
        secs: u64,
    },
    /// Talking to the mount process failed.
    #[error("control socket {path}: {detail}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The mount process ran the operation and it failed.
    #[error("{0} (reported by the qsfs process serving the mount)")]
    Remote(String),
}

/// A session's failure to move content (server side).
#[derive(Debug, Error)]
pub enum SessionError {
    /// The client went away, stopped sending, or the socket failed.
    #[error("the command's connection failed: {0}")]
    Connection(#[from] std::io::Error),
    /// The client sent something the protocol does not allow here.
    #[error("protocol error from the command: {0}")]
    Protocol(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Call {
    version: u32,
    op: String,
    args: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Progress(Progress),
    /// Heartbeat (v2): the operation still runs.
    Alive(()),
    /// This many raw bytes follow the line (v2).
    Data(u64),
    Done(serde_json::Value),
    Error(String),
}

/// What a client sends after its first line, for operations that take
/// content (v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upload {
    /// An item begins; what it says is the operation's business.
    Item(serde_json::Value),
    /// This many raw bytes of the item follow the line.
    Data(u64),
    /// The item's content is complete.
    End(()),
    /// The client could not send all of the item (a read error on its
    /// side); what it sent is to be dropped.
    Abort(String),
    /// No more items.
    Finish(()),
}

/// Who runs the command at the other end (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
}

/// The server's end of one connection.
struct Wire {
    stream: UnixStream,
    /// A write failed, maybe halfway through a line: nothing more may be
    /// sent, or the client would read the rest as a new line.
    broken: bool,
}

/// One running operation as its handler sees it: progress and content to
/// the client, content from it.
pub struct Session<'a> {
    wire: &'a Mutex<Wire>,
    reader: Mutex<BufReader<UnixStream>>,
    peer: Peer,
    gone: AtomicBool,
}

impl Session<'_> {
    /// Who runs the command.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Sends a progress event. A client that left must not stop the run:
    /// failures are dropped (and nothing more is sent).
    pub fn progress(&self, p: Progress) {
        if !self.gone.load(Ordering::Relaxed) && send(self.wire, &Reply::Progress(p), None).is_err()
        {
            self.gone.store(true, Ordering::Relaxed);
        }
    }

    /// Sends a chunk of content (split into [`MAX_CHUNK`] pieces).
    pub fn send_data(&self, bytes: &[u8]) -> Result<(), SessionError> {
        for piece in bytes.chunks(MAX_CHUNK) {
            send(self.wire, &Reply::Data(piece.len() as u64), Some(piece))?;
        }
        Ok(())
    }

    /// Reads the client's next upload line; for `Data` its bytes replace
    /// what `buf` held.
    pub fn receive(&self, buf: &mut Vec<u8>) -> Result<Upload, SessionError> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(SessionError::Connection(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let msg: Upload = serde_json::from_str(&line)
            .map_err(|e| SessionError::Protocol(format!("undecodable line: {e}")))?;
        if let Upload::Data(n) = msg {
            if n > MAX_CHUNK as u64 {
                return Err(SessionError::Protocol(format!(
                    "a chunk of {n} bytes (at most {MAX_CHUNK})"
                )));
            }
            buf.clear();
            buf.resize(n as usize, 0);
            reader.read_exact(buf)?;
        }
        Ok(msg)
    }
}

/// Runs one operation on an open vault: the mount's dispatcher.
pub type Handler = dyn Fn(&Vault, &str, serde_json::Value, &Session) -> Result<serde_json::Value, String>
    + Send
    + Sync;

/// The socket path of the vault at `root`.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join(SOCKET)
}

/// A listening control socket; removes its file when dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts serving the control socket of `vault` (in the mount process).
pub fn serve(vault: Arc<Vault>, handler: Arc<Handler>) -> std::io::Result<ControlServer> {
    let path = socket_path(vault.root());
    // A socket file left by a mount that died; the vault lock we hold
    // proves no live process owns it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = crate::sys::euid();
    let busy = Arc::new(Mutex::new(()));
    // Weak: the socket must not keep the vault open after the unmount (its
    // drop stops the links and cleans the node stock).
    let vault = Arc::downgrade(&vault);
    std::thread::Builder::new()
        .name("qsfs-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let Some(vault) = vault.upgrade() else { break };
                let handler = Arc::clone(&handler);
                let busy = Arc::clone(&busy);
                let _ = std::thread::Builder::new()
                    .name("qsfs-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &vault, &*handler, &busy, owner) {
                            tracing::warn!("control socket: {e}");
                        }
                    });
            }
        })?;
    Ok(ControlServer { path })
}

/// Sends one line, and `payload` right after it under the same lock (a
/// heartbeat must never land between a `data` line and its bytes).
fn send(wire: &Mutex<Wire>, reply: &Reply, payload: Option<&[u8]>) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut w = wire
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if w.broken {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    }
    if payload.is_some() {
        w.stream.set_write_timeout(Some(DATA_WRITE))?;
    }
    let mut out = NoSigPipe(&w.stream);
    let mut r = out.write_all(&line);
    if r.is_ok()
        && let Some(p) = payload
    {
        r = out.write_all(p);
    }
    if payload.is_some() {
        let _ = w.stream.set_write_timeout(Some(PROGRESS_WRITE));
    }
    if r.is_err() {
        w.broken = true;
    }
    r
}

/// Sets a heartbeat's stop flag when dropped.
struct StopOnDrop<'a>(&'a (Mutex<bool>, Condvar));

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        *self
            .0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.0.1.notify_all();
    }
}

/// Says "alive" every [`HEARTBEAT`] until `stop` is set.
fn heartbeat(wire: &Mutex<Wire>, stop: &(Mutex<bool>, Condvar)) {
    let mut done = stop
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        done = stop
            .1
            .wait_timeout(done, HEARTBEAT)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        if *done || send(wire, &Reply::Alive(()), None).is_err() {
            return;
        }
    }
}

fn handle(
    conn: UnixStream,
    vault: &Vault,
    handler: &Handler,
    busy: &Mutex<()>,
    owner: u32,
) -> std::io::Result<()> {
    let peer = crate::sys::peer_cred(&conn);
    conn.set_write_timeout(Some(PROGRESS_WRITE))?;
    // A connection that never says what it wants must not hold a thread.
    conn.set_read_timeout(Some(SILENCE))?;
    let wire = Mutex::new(Wire {
        stream: conn.try_clone()?,
        broken: false,
    });
    let Some((uid, gid)) = peer.filter(|(uid, _)| *uid == owner || *uid == 0) else {
        return send(
            &wire,
            &Reply::Error(format!(
                "permission denied: only uid {owner} (who mounted the vault) or root may use its control socket"
            )),
            None,
        );
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let call: Call = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => return send(&wire, &Reply::Error(format!("bad request: {e}")), None),
    };
    if !(OLDEST_VERSION..=VERSION).contains(&call.version) {
        return send(
            &wire,
            &Reply::Error(format!(
                "control protocol version {} is not supported (this qsfs speaks {OLDEST_VERSION} to {VERSION}); use the same qsfs binary as the mount",
                call.version
            )),
            None,
        );
    }
    // From here the client may be as slow as its source (see the top).
    reader.get_ref().set_read_timeout(None)?;
    let session = Session {
        wire: &wire,
        reader: Mutex::new(reader),
        peer: Peer { uid, gid },
        gone: AtomicBool::new(false),
    };
    let unqueued = UNQUEUED_OPS.contains(&call.op.as_str());
    // Reports polled in a loop and file operations would fill the log;
    // maintenance is logged.
    if unqueued {
        tracing::debug!(op = %call.op, "control socket: running");
    } else {
        tracing::info!(op = %call.op, "control socket: running");
    }
    let stop = (Mutex::new(false), Condvar::new());
    let op = call.op.clone();
    let result = std::thread::scope(|scope| {
        // v1 clients do not know the heartbeat line.
        if call.version >= 2 {
            scope.spawn(|| heartbeat(&wire, &stop));
        }
        // The heartbeat stops when the operation ends, also by a panic
        // (else the client would hear "alive" for ever).
        let _stop = StopOnDrop(&stop);
        // Maintenance runs one at a time (the wait beats too).
        let _one_at_a_time = (!unqueued).then(|| {
            busy.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        handler(vault, &call.op, call.args, &session)
    });
    let reply = match result {
        Ok(v) => Reply::Done(v),
        Err(e) => {
            if unqueued {
                tracing::debug!(op = %op, "control socket: failed: {e}");
            } else {
                tracing::warn!(op = %op, "control socket: failed: {e}");
            }
            Reply::Error(e)
        }
    };
    send(&wire, &reply, None)
}

/// What a client receives besides the final answer.
#[derive(Debug)]
pub enum Event {
    /// A progress event.
    Progress(Progress),
    /// A chunk of content, now in the caller's buffer.
    Data,
    /// The operation finished with this report.
    Done(serde_json::Value),
}

/// A line from the server: a heartbeat, or something for the caller.
enum Line {
    Alive,
    Event(Event),
}

/// The receiving half of a client's connection.
struct Incoming {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    silence: Duration,
    /// Whether the server said anything yet on this connection.
    answered: bool,
}

impl Incoming {
    fn fail(&self, e: std::io::Error) -> ControlError {
        if !self.answered && gone_before_answering(&e) {
            return ControlError::NotMounted(self.path.clone());
        }
        failure(&self.path, self.silence, e)
    }

    /// The next line; a chunk of content replaces what `buf` held. The
    /// server's `error` is `Err(Remote)`.
    fn line(&mut self, buf: &mut Vec<u8>) -> Result<Line, ControlError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.fail(e))?;
        if n == 0 && !self.answered {
            // Closed before a word: a mount process that was dying as we
            // connected (kill -9). The caller opens the vault, whose lock
            // tells a dead mount from none and names the fix.
            return Err(ControlError::NotMounted(self.path.clone()));
        }
        self.answered = true;
        if n == 0 {
            return Err(ControlError::Io {
                path: self.path.clone(),
                detail: "the mount process closed the connection before answering (did it exit? see VAULT/qsfs.log)"
                    .into(),
            });
        }
        let reply: Reply = serde_json::from_str(&line).map_err(|e| ControlError::Io {
            path: self.path.clone(),
            detail: format!("undecodable reply: {e}"),
        })?;
        Ok(match reply {
            Reply::Alive(()) => Line::Alive,
            Reply::Progress(p) => Line::Event(Event::Progress(p)),
            Reply::Data(n) if n > MAX_CHUNK as u64 => {
                return Err(ControlError::Io {
                    path: self.path.clone(),
                    detail: format!("a chunk of {n} bytes (at most {MAX_CHUNK})"),
                });
            }
            Reply::Data(n) => {
                buf.clear();
                buf.resize(n as usize, 0);
                self.reader.read_exact(buf).map_err(|e| self.fail(e))?;
                Line::Event(Event::Data)
            }
            Reply::Done(v) => Line::Event(Event::Done(v)),
            Reply::Error(e) => return Err(ControlError::Remote(e)),
        })
    }

    /// Reads until the server's `error` line, if it sent one before it
    /// closed the connection (a refused version or user).
    fn last_word(&mut self) -> Option<ControlError> {
        let mut buf = Vec::new();
        loop {
            match self.line(&mut buf) {
                Ok(_) => continue,
                Err(e @ ControlError::Remote(_)) => return Some(e),
                Err(_) => return None,
            }
        }
    }
}

/// A connection the server dropped without answering: reset, a broken
/// pipe, or closed.
fn gone_before_answering(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
    )
}

/// A timed-out read or write is the server's silence.
fn failure(path: &Path, silence: Duration, e: std::io::Error) -> ControlError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ControlError::Silent {
            path: path.to_path_buf(),
            secs: silence.as_secs(),
        },
        _ => ControlError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    }
}

fn encode<T: Serialize>(path: &Path, msg: &T) -> Result<Vec<u8>, ControlError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| ControlError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// A command's connection to the mount process.
pub struct Client {
    stream: UnixStream,
    incoming: Incoming,
}

/// Connects to the mount process of the vault at `root`.
/// `Err(NotMounted)` when none answers (then open the vault directly:
/// the vault lock tells a live mount from a dead one).
pub fn connect(root: &Path) -> Result<Client, ControlError> {
    connect_with(root, SILENCE)
}

fn connect_with(root: &Path, silence: Duration) -> Result<Client, ControlError> {
    let path = socket_path(root);
    let stream = match connect_timeout(&path, CONNECT_TIMEOUT) {
        Ok(c) => c,
        // (A vault path on a dead FUSE mount fails with ENOTCONN: no
        // mount answers, and opening the vault then explains.)
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) || crate::sys::is_dead_mount_error(&e) =>
        {
            return Err(ControlError::NotMounted(path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(ControlError::Silent {
                path,
                secs: CONNECT_TIMEOUT.as_secs(),
            });
        }
        Err(e) => {
            return Err(ControlError::Io {
                path,
                detail: format!("cannot connect: {e}"),
            });
        }
    };
    let io = |e: std::io::Error| ControlError::Io {
        path: path.clone(),
        detail: e.to_string(),
    };
    stream.set_read_timeout(Some(silence)).map_err(io)?;
    stream.set_write_timeout(Some(silence)).map_err(io)?;
    let reader = BufReader::new(stream.try_clone().map_err(io)?);
    Ok(Client {
        stream,
        incoming: Incoming {
            path,
            reader,
            silence,
            answered: false,
        },
    })
}

/// connect(2) with a deadline, in a helper thread (std has none for Unix
/// sockets); a thread still blocked at the deadline ends with the process.
fn connect_timeout(path: &Path, limit: Duration) -> std::io::Result<UnixStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = path.to_path_buf();
    std::thread::Builder::new()
        .name("qsfs-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(&target));
        })?;
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

impl Client {
    /// Asks for operation `op` with `args`.
    pub fn start(&mut self, op: &str, args: serde_json::Value) -> Result<(), ControlError> {
        let call = Call {
            version: VERSION,
            op: op.to_string(),
            args,
        };
        let line = encode(&self.incoming.path, &call)?;
        if let Err(e) = NoSigPipe(&self.stream).write_all(&line) {
            return Err(self
                .incoming
                .last_word()
                .unwrap_or_else(|| self.incoming.fail(e)));
        }
        Ok(())
    }

    /// The next thing the server says (heartbeats are taken in passing);
    /// a chunk of content replaces what `buf` held. The server's `error`
    /// is `Err(Remote)`.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Event, ControlError> {
        loop {
            if let Line::Event(e) = self.incoming.line(buf)? {
                return Ok(e);
            }
        }
    }

    /// Turns the connection into one that sends content (after
    /// [`Client::start`]): a thread takes the server's lines as they come,
    /// so that sending may wait for a server that reads nothing for a
    /// while (it seals a group of files) as long as it beats.
    pub fn upload(self) -> Result<Uploader, ControlError> {
        let Client { stream, incoming } = self;
        let path = incoming.path.clone();
        let silence = incoming.silence;
        // Short, so a stalled send looks at the heartbeats often.
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| failure(&path, silence, e))?;
        let heard = Arc::new(Mutex::new(std::time::Instant::now()));
        let (tx, rx) = std::sync::mpsc::channel();
        let beat = Arc::clone(&heard);
        let mut incoming = incoming;
        std::thread::Builder::new()
            .name("qsfs-upload-replies".into())
            .spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let r = incoming.line(&mut buf);
                    *beat
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        std::time::Instant::now();
                    match r {
                        Ok(Line::Alive) => continue,
                        Ok(Line::Event(Event::Done(v))) => {
                            let _ = tx.send(Ok(v));
                            return;
                        }
                        Ok(Line::Event(_)) => {
                            let _ = tx.send(Err(ControlError::Io {
                                path: incoming.path.clone(),
                                detail:
                                    "the mount process answered an upload with progress or content"
                                        .into(),
                            }));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| failure(&path, silence, e))?;
        Ok(Uploader {
            path,
            stream,
            silence,
            heard,
            answer: rx,
        })
    }
}

/// A connection that sends content to the server (see [`Client::upload`]).
pub struct Uploader {
    path: PathBuf,
    stream: UnixStream,
    silence: Duration,
    /// When the server last said anything.
    heard: Arc<Mutex<std::time::Instant>>,
    answer: std::sync::mpsc::Receiver<Result<serde_json::Value, ControlError>>,
}

impl Uploader {
    /// The server's answer, once it has one.
    fn answered(&self) -> Option<Result<serde_json::Value, ControlError>> {
        self.answer.try_recv().ok()
    }

    /// Writes `bytes`, waiting for a server that does not read as long as
    /// it beats; a server that answered early (it failed) ends the send
    /// with its answer.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ControlError> {
        let mut at = 0;
        while at < bytes.len() {
            match NoSigPipe(&self.stream).write(&bytes[at..]) {
                Ok(0) => {
                    return Err(failure(
                        &self.path,
                        self.silence,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if let Some(answer) = self.answered() {
                        return Err(early(&self.path, answer));
                    }
                    let quiet = self
                        .heard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .elapsed();
                    if quiet > self.silence {
                        return Err(failure(&self.path, self.silence, e));
                    }
                }
                Err(e) => {
                    // It closed the connection: its last word says why.
                    return Err(match self.answer.recv_timeout(Duration::from_secs(5)) {
                        Ok(answer) => early(&self.path, answer),
                        Err(_) => failure(&self.path, self.silence, e),
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends an upload line (for content see [`Uploader::send_data`]).
    pub fn send(&mut self, msg: &Upload) -> Result<(), ControlError> {
        let line = encode(&self.path, msg)?;
        self.write(&line)
    }

    /// Sends a chunk of content (split into [`MAX_CHUNK`] pieces).
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<(), ControlError> {
        for piece in bytes.chunks(MAX_CHUNK) {
            let line = encode(&self.path, &Upload::Data(piece.len() as u64))?;
            self.write(&line)?;
            self.write(piece)?;
        }
        Ok(())
    }

    /// Says there are no more items and waits for the answer (as long as
    /// the server beats).
    pub fn finish(mut self) -> Result<serde_json::Value, ControlError> {
        self.send(&Upload::Finish(()))?;
        match self.answer.recv() {
            Ok(answer) => answer,
            Err(_) => Err(ControlError::Io {
                path: self.path,
                detail: "the connection's reader ended without an answer".into(),
            }),
        }
    }
}

/// An answer that came while content was still being sent: the server
/// gave up (its error), or it broke the protocol.
fn early(path: &Path, answer: Result<serde_json::Value, ControlError>) -> ControlError {
    match answer {
        Err(e) => e,
        Ok(_) => ControlError::Io {
            path: path.to_path_buf(),
            detail: "the mount process answered before all content was sent".into(),
        },
    }
}

/// Runs `op` on the mounted vault at `root` and returns its report;
/// progress events go to `progress`. `Err(NotMounted)` when no mount
/// process answers (then open the vault directly).
pub fn call(
    root: &Path,
    op: &str,
    args: serde_json::Value,
    progress: &dyn Fn(Progress),
) -> Result<serde_json::Value, ControlError> {
    let mut client = connect(root)?;
    client.start(op, args)?;
    let mut buf = Vec::new();
    loop {
        match client.next(&mut buf)? {
            Event::Progress(p) => progress(p),
            Event::Done(v) => return Ok(v),
            Event::Data => {
                return Err(ControlError::Io {
                    path: client.incoming.path,
                    detail: format!("the mount process sent content for {op}, which takes none"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Lines of the first release (v1): a v1 client still talks to this
    /// build, so its request must decode and the replies it understands
    /// must keep their shape.
    #[test]
    fn frozen_v1_lines() -> TestResult {
        let call: Call =
            serde_json::from_str(r#"{"version":1,"op":"scrub","args":{"repair":false}}"#)?;
        assert_eq!(
            (call.version, call.op.as_str(), call.args),
            (1, "scrub", json!({"repair": false}))
        );
        let progress = Reply::Progress(Progress::Phase {
            name: "scrub".into(),
            total: 123,
        });
        assert_eq!(
            serde_json::to_string(&progress)?,
            r#"{"progress":{"event":"phase","name":"scrub","total":123}}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Done(json!({"objects": 1})))?,
            r#"{"done":{"objects":1}}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Error("x".into()))?,
            r#"{"error":"x"}"#
        );
        Ok(())
    }

    /// The v2 lines as documented at the top of this file.
    #[test]
    fn frozen_v2_lines() -> TestResult {
        let call = Call {
            version: 2,
            op: "get".into(),
            args: json!({"path": "/a/b", "verify_first": true}),
        };
        assert_eq!(
            serde_json::to_string(&call)?,
            r#"{"version":2,"op":"get","args":{"path":"/a/b","verify_first":true}}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Alive(()))?,
            r#"{"alive":null}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::Data(65536))?,
            r#"{"data":65536}"#
        );
        for (msg, text) in [
            (Upload::Data(65536), r#"{"data":65536}"#),
            (Upload::End(()), r#"{"end":null}"#),
            (Upload::Abort("why".into()), r#"{"abort":"why"}"#),
            (Upload::Finish(()), r#"{"finish":null}"#),
            (
                Upload::Item(json!({"path": "/a/b", "mode": 420})),
                r#"{"item":{"mode":420,"path":"/a/b"}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&msg)?, text);
            assert_eq!(serde_json::from_str::<Upload>(text)?, msg);
        }
        Ok(())
    }

    fn test_vault() -> Result<(tempfile::TempDir, Arc<Vault>), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let v = crate::vault::direct_test_vault(&dir.path().join("v"))?;
        Ok((dir, Arc::new(v)))
    }

    /// Content goes both ways in chunks larger than one `data` line
    /// allows, an upload outlasts a server that reads nothing for longer
    /// than the client's silence limit as long as it beats, and errors
    /// arrive whole.
    #[test]
    fn content_streams_both_ways() -> TestResult {
        let (_dir, vault) = test_vault()?;
        let handler: Arc<Handler> = Arc::new(|_v, op, args, s: &Session| {
            let content = |n: u64| -> Vec<u8> { (0..n).map(|i| (i % 251) as u8).collect() };
            match op {
                "fail" => Err("it failed".into()),
                "send" => {
                    let n = args["bytes"].as_u64().unwrap_or(0);
                    s.send_data(&content(n)).map_err(|e| e.to_string())?;
                    Ok(json!({"uid": s.peer().uid}))
                }
                "sum" => {
                    if let Some(ms) = args["stall_ms"].as_u64() {
                        std::thread::sleep(Duration::from_millis(ms));
                    }
                    let mut buf = Vec::new();
                    let mut items = Vec::new();
                    let mut item: Option<blake3::Hasher> = None;
                    loop {
                        match s.receive(&mut buf).map_err(|e| e.to_string())? {
                            Upload::Item(_) => item = Some(blake3::Hasher::new()),
                            Upload::Data(_) => {
                                item.as_mut().ok_or("data outside an item")?.update(&buf);
                            }
                            Upload::End(()) => items.push(
                                item.take()
                                    .ok_or("end outside an item")?
                                    .finalize()
                                    .to_hex()
                                    .to_string(),
                            ),
                            Upload::Abort(why) => items.push(why),
                            Upload::Finish(()) => break,
                        }
                    }
                    Ok(json!(items))
                }
                _ => Err(format!("unknown {op}")),
            }
        });
        let _server = serve(Arc::clone(&vault), handler)?;
        let big: Vec<u8> = (0..(MAX_CHUNK as u64 * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();

        // Server to client.
        let mut c = connect(vault.root())?;
        c.start("send", json!({"bytes": big.len()}))?;
        let (mut got, mut buf) = (Vec::new(), Vec::new());
        let report = loop {
            match c.next(&mut buf)? {
                Event::Data => {
                    assert!(buf.len() <= MAX_CHUNK);
                    got.extend_from_slice(&buf);
                }
                Event::Done(v) => break v,
                Event::Progress(p) => panic!("unexpected progress {p:?}"),
            }
        };
        assert!(got == big, "the content differs");
        assert_eq!(report, json!({"uid": crate::sys::euid()}));

        // Client to server, to one that reads nothing for 5 s while the
        // client gives up after 3 s of silence: the heartbeats carry it.
        let mut c = connect_with(vault.root(), Duration::from_secs(3))?;
        c.start("sum", json!({"stall_ms": 5000}))?;
        let mut up = c.upload()?;
        up.send(&Upload::Item(json!({})))?;
        up.send_data(&big)?;
        up.send(&Upload::End(()))?;
        up.send(&Upload::Item(json!({})))?;
        up.send(&Upload::Abort("gone".into()))?;
        let report = up.finish()?;
        assert_eq!(
            report,
            json!([blake3::hash(&big).to_hex().to_string(), "gone"])
        );

        // An error, whole; also one that ends an upload early.
        assert!(matches!(
            call(vault.root(), "fail", json!(null), &|_| {}),
            Err(ControlError::Remote(e)) if e == "it failed"
        ));
        let mut c = connect(vault.root())?;
        c.start("fail", json!(null))?;
        let mut up = c.upload()?;
        let mut sent = Ok(());
        for _ in 0..64 {
            sent = up.send_data(&big);
            if sent.is_err() {
                break;
            }
        }
        let answer = match sent {
            Err(e) => Err(e),
            Ok(()) => up.finish(),
        };
        assert!(
            matches!(&answer, Err(ControlError::Remote(e)) if e == "it failed"),
            "{answer:?}"
        );

        // A v1 client: no heartbeat, the same answer.
        let mut raw = UnixStream::connect(socket_path(vault.root()))?;
        raw.write_all(b"{\"version\":1,\"op\":\"fail\",\"args\":null}\n")?;
        let mut answer = String::new();
        raw.read_to_string(&mut answer)?;
        assert_eq!(answer, "{\"error\":\"it failed\"}\n");
        // A version from the future is refused, naming both.
        let mut raw = UnixStream::connect(socket_path(vault.root()))?;
        raw.write_all(b"{\"version\":9,\"op\":\"fail\",\"args\":null}\n")?;
        let mut answer = String::new();
        raw.read_to_string(&mut answer)?;
        assert!(answer.contains("version 9 is not supported"), "{answer}");
        Ok(())
    }

    /// A listener that accepts and never answers (a stopped mount
    /// process) costs the client its silence limit, not a hang.
    #[test]
    fn silent_server_times_out() -> TestResult {
        let dir = tempfile::tempdir()?;
        let _listener = UnixListener::bind(socket_path(dir.path()))?;
        let started = std::time::Instant::now();
        let mut c = connect_with(dir.path(), Duration::from_millis(300))?;
        c.start("status", json!(null))?;
        let answer = c.next(&mut Vec::new());
        assert!(
            matches!(answer, Err(ControlError::Silent { .. })),
            "{answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // No socket file at all: not mounted.
        let other = tempfile::tempdir()?;
        assert!(matches!(
            connect(other.path()),
            Err(ControlError::NotMounted(_))
        ));
        // A socket file nobody listens on (a killed mount): not mounted
        // either; the vault lock then tells it apart.
        drop(_listener);
        assert!(matches!(
            connect(dir.path()),
            Err(ControlError::NotMounted(_))
        ));
        Ok(())
    }
}
