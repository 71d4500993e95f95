//! The node server: serves one folder (a [`DirNode`]) over the node
//! protocol, a thread per connection, up to a bound.
//!
//! The folder is a node folder of some vault (its `qsfs-node` marker says
//! which), or empty: then the first hello takes it into use for the vault
//! and node name the client names, with the same adoption code as
//! `qsfs node adopt` ([`DirNode::adopt_empty`]). A folder with other files
//! and no marker is refused at start. Every later hello must name the same
//! vault and node, so a node server of another vault is refused.
//!
//! Finished, uncommitted shards live in a table shared by all connections
//! (a commit may arrive on another channel than the write) and expire
//! after [`ServeOptions::pending_ttl`]; dropping one removes its temporary
//! file. A failure on a connection (a bad message, a reset, a timeout)
//! ends only that connection.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use thiserror::Error;

use super::admission::{Admission, Limits, Ticket};
use super::conn::{Closer, Conn, LocalDialer};
use super::transport::Transport;
use super::wire::{ErrorKind, Request, Response, VERSION, WireError};
use super::{DirNode, HealthCheck, PendingShard, Prover, ShardHeader, ShardSink, ShardStore};
use crate::qkd::{Channel, ChannelError};

/// Most uncommitted shards held at once.
const MAX_PENDING: usize = 1 << 16;
/// A list page is cut at about this many bytes.
const PAGE_BYTES: usize = 512 * 1024;

/// How a node server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The node folder.
    pub dir: PathBuf,
    /// Address to listen on (`127.0.0.1:7103`, `0.0.0.0:0`, ...).
    pub listen: String,
    /// Authenticated connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Connections still in their handshake, from everyone: kept apart
    /// from `max_connections`, so strangers cannot use up the places the
    /// vault's own connections need.
    pub max_handshakes: usize,
    /// Connections still in their handshake, from one address.
    pub max_handshakes_per_source: usize,
    /// A connection must finish its link and node hello within this, even
    /// if it keeps sending a byte now and then.
    pub handshake_timeout: Duration,
    /// How long a finished shard waits for its commit before it is dropped.
    pub pending_ttl: Duration,
    /// A connection with no message for this long is closed.
    pub idle_timeout: Duration,
    /// A response that cannot be written for this long ends the connection.
    pub write_timeout: Duration,
    /// Tell the folder's vault and node name to a client that asks (an
    /// empty hello): only over a QKD-keyed link, whose keys already prove
    /// the client is the vault's end. `qsfs recover` asks this way.
    pub identify: bool,
}

impl ServeOptions {
    /// Defaults for serving `dir` on `listen`.
    pub fn new(dir: &Path, listen: &str) -> ServeOptions {
        ServeOptions {
            dir: dir.to_path_buf(),
            listen: listen.to_string(),
            max_connections: 64,
            max_handshakes: 16,
            max_handshakes_per_source: 4,
            handshake_timeout: Duration::from_secs(5),
            pending_ttl: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(60),
            identify: false,
        }
    }
}

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The folder cannot be served.
    #[error("cannot serve {dir}: {detail}")]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Why, and what to do.
        detail: String,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// Whose node the folder is.
#[derive(Debug, Clone)]
struct Identity {
    vault: String,
    node: String,
}

/// Finished shards waiting for a commit, by token.
struct PendingTable {
    next: u64,
    map: HashMap<u64, (Instant, PendingShard)>,
}

/// What all connections share.
struct State {
    dir: PathBuf,
    node: Mutex<Option<(Identity, Arc<DirNode>)>>,
    pending: Mutex<PendingTable>,
    ttl: Duration,
    identify: bool,
}

/// Where connections come from.
enum Listener {
    /// A TCP port.
    Tcp(TcpListener, SocketAddr),
    /// Socket pairs from this process only ([`LocalDialer`]).
    Local(Receiver<UnixStream>),
}

/// A bound node server, ready to run.
pub struct Server {
    state: Arc<State>,
    listener: Listener,
    transport: Transport,
    opts: ServeOptions,
    stop: Arc<AtomicBool>,
    /// Wakes a local listener's accept loop.
    wake: Option<Sender<UnixStream>>,
}

/// Stops a running [`Server`] from another thread (a signal handler).
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    wake: Wake,
}

#[derive(Debug, Clone)]
enum Wake {
    Tcp(SocketAddr),
    Local(Sender<UnixStream>),
}

impl StopHandle {
    /// Asks the server to stop: it accepts nothing more, lets requests in
    /// progress finish, closes every connection and returns from `run`.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        match &self.wake {
            Wake::Tcp(addr) => {
                let _ = TcpStream::connect_timeout(&wake_addr(*addr), Duration::from_secs(1));
            }
            Wake::Local(tx) => {
                if let Ok((a, _b)) = UnixStream::pair() {
                    let _ = tx.send(a);
                }
            }
        }
    }
}

/// The address to connect to for reaching a listener bound to `addr`
/// (a wildcard address is reached on loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

impl Server {
    /// Checks the folder and binds the address; `transport` turns each
    /// accepted connection into a channel.
    pub fn bind(opts: ServeOptions, transport: Transport) -> Result<Server, ServeError> {
        let node = open_folder(&opts.dir)?;
        let listener = TcpListener::bind(&opts.listen).map_err(|source| ServeError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
        Ok(Self::with(
            opts,
            transport,
            node,
            Listener::Tcp(listener, addr),
            None,
        ))
    }

    /// Serves `node` (already configured as node `name` of vault
    /// `vault_id`) to this process only, without looking at or adopting
    /// its folder: the node end of an in-process link, where a missing or
    /// foreign folder must show as exactly that on every operation, and
    /// never be recreated. It has no address: connections come from the
    /// returned dialer, so no other process or local user can reach it.
    pub fn bind_local(
        node: Arc<DirNode>,
        vault_id: &str,
        name: &str,
        transport: Transport,
    ) -> (Server, LocalDialer) {
        let opts = ServeOptions::new(node.root(), "in-process");
        let id = Identity {
            vault: vault_id.to_string(),
            node: name.to_string(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let server = Self::with(
            opts,
            transport,
            Some((id, node)),
            Listener::Local(rx),
            Some(tx.clone()),
        );
        (server, LocalDialer(tx))
    }

    fn with(
        opts: ServeOptions,
        transport: Transport,
        node: Option<(Identity, Arc<DirNode>)>,
        listener: Listener,
        wake: Option<Sender<UnixStream>>,
    ) -> Server {
        match &node {
            Some((id, _)) => tracing::info!(
                "serving {} as node {} of vault {}",
                opts.dir.display(),
                id.node,
                id.vault
            ),
            None => tracing::info!(
                "serving {}: empty, it becomes a node of the first vault that connects",
                opts.dir.display()
            ),
        }
        Server {
            state: Arc::new(State {
                dir: opts.dir.clone(),
                node: Mutex::new(node),
                pending: Mutex::new(PendingTable {
                    next: 1,
                    map: HashMap::new(),
                }),
                ttl: opts.pending_ttl,
                identify: opts.identify,
            }),
            listener,
            transport,
            opts,
            stop: Arc::new(AtomicBool::new(false)),
            wake,
        }
    }

    /// The address actually bound (a port of 0 is resolved); none for an
    /// in-process server.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(_, addr) => Some(*addr),
            Listener::Local(_) => None,
        }
    }

    /// A handle that stops [`Server::run`].
    pub fn stop_handle(&self) -> StopHandle {
        let wake = match (&self.listener, &self.wake) {
            (Listener::Tcp(_, addr), _) => Wake::Tcp(*addr),
            (Listener::Local(_), Some(tx)) => Wake::Local(tx.clone()),
            (Listener::Local(_), None) => Wake::Local(crossbeam_channel::unbounded().0),
        };
        StopHandle {
            stop: Arc::clone(&self.stop),
            wake,
        }
    }

    /// The next connection; `None` once a local listener has no dialers.
    fn accept(&self) -> Option<std::io::Result<Conn>> {
        let (read, write) = (self.opts.handshake_timeout, self.opts.write_timeout);
        match &self.listener {
            Listener::Tcp(l, _) => Some(
                l.accept()
                    .and_then(|(stream, _)| Conn::tcp(stream, read, write)),
            ),
            Listener::Local(rx) => rx.recv().ok().map(|s| Conn::local(s, read, write)),
        }
    }

    /// Serves until stopped; returns after every connection has ended.
    pub fn run(self) {
        let conns: Arc<Mutex<HashMap<u64, Closer>>> = Arc::default();
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let ids = AtomicU64::new(0);
        let admission = Admission::new(Limits {
            authenticated: self.opts.max_connections,
            handshaking: self.opts.max_handshakes,
            handshaking_per_source: self.opts.max_handshakes_per_source,
        });
        while let Some(incoming) = self.accept() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let conn = match incoming {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            threads.retain(|t| !t.is_finished());
            let peer = conn.peer_name();
            let ticket = match admission.admit(conn.peer_ip()) {
                Ok(t) => t,
                Err(why) => {
                    admission.refused(&peer, &why);
                    continue;
                }
            };
            let id = ids.fetch_add(1, Ordering::Relaxed);
            if let Ok(closer) = conn.closer() {
                conns
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id, closer);
            }
            let state = Arc::clone(&self.state);
            let transport = Arc::clone(&self.transport);
            let conns2 = Arc::clone(&conns);
            let admission2 = Arc::clone(&admission);
            let (handshake, idle) = (self.opts.handshake_timeout, self.opts.idle_timeout);
            let spawned = std::thread::Builder::new()
                .name(format!("node-conn-{id}"))
                .spawn(move || {
                    tracing::debug!("connection {id} from {peer}");
                    let mut conn = conn;
                    // The link's hello and the node hello must both be
                    // done by then, however slowly the peer drips bytes.
                    let deadline = conn.deadline();
                    deadline.set(Instant::now() + handshake);
                    conn.set_read_timeout(idle);
                    let mut gate = Gate {
                        ticket,
                        deadline,
                        admission: &admission2,
                        peer: &peer,
                    };
                    match transport(conn) {
                        Ok(chan) => match serve_connection(&state, chan, &mut gate) {
                            Ok(()) => tracing::debug!("connection {id} from {peer} closed"),
                            Err(ConnEnd::Turned) => {}
                            Err(e) if !gate.ticket.is_authenticated() => {
                                gate.refuse(&e.to_string());
                            }
                            Err(e) => tracing::info!("connection {id} from {peer} ended: {e}"),
                        },
                        // A stranger's failed handshake is logged (at a
                        // limited rate) as a refusal, not once per try.
                        Err(e) => gate.refuse(&e.to_string()),
                    }
                    conns2
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&id);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::warn!("cannot start a connection thread: {e}"),
            }
        }
        // Requests in progress finish; the next read of every connection
        // sees the end of the stream.
        for c in conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            c.close_read();
        }
        for t in threads {
            let _ = t.join();
        }
        // Uncommitted shards are dropped: their temporary files go.
        self.state
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .clear();
        match self.local_addr() {
            Some(addr) => tracing::info!("node server on {addr} stopped"),
            None => tracing::info!(
                "in-process node server for {} stopped",
                self.opts.dir.display()
            ),
        }
    }
}

/// A connection's way past admission: its place, the handshake deadline,
/// and where refusals are logged.
struct Gate<'a> {
    ticket: Ticket,
    deadline: super::conn::Deadline,
    admission: &'a Admission,
    peer: &'a str,
}

impl Gate<'_> {
    /// The node hello checked out: the peer holds the link's keys (a
    /// QKD-keyed link opened its frames). The connection takes a place
    /// among the authenticated ones and loses its handshake deadline.
    fn pass(&mut self) -> Result<(), super::admission::Refusal> {
        self.ticket.authenticate()?;
        self.deadline.clear();
        Ok(())
    }

    fn refuse(&self, why: &str) {
        self.admission.refused(
            self.peer,
            &super::admission::Refusal::Handshake(why.to_owned()),
        );
    }
}

/// Checks the folder at start: a node folder, an empty folder (created if
/// missing) or a refusal.
fn open_folder(dir: &Path) -> Result<Option<(Identity, Arc<DirNode>)>, ServeError> {
    let fail = |detail: String| ServeError::Folder {
        dir: dir.to_path_buf(),
        detail,
    };
    // Never made here: a missing folder is as likely the mount point of a
    // disk that is not mounted, and serving it would fill the wrong disk.
    if !dir.exists() {
        return Err(fail(
            "it does not exist; create it (or mount its disk) first".into(),
        ));
    }
    if !dir.is_dir() {
        return Err(fail("not a folder".into()));
    }
    if let Some((vault, node)) = DirNode::marker_at(dir) {
        let n = Arc::new(DirNode::new(&node, dir, &vault));
        return Ok(Some((Identity { vault, node }, n)));
    }
    let others = std::fs::read_dir(dir)
        .map_err(|e| fail(format!("cannot read it: {e}")))?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name() != "lost+found")
        .count();
    if others > 0 {
        return Err(fail(
            "it holds files but no qsfs node marker; serve an empty folder or a qsfs node folder"
                .into(),
        ));
    }
    Ok(None)
}

/// Why a connection ended early.
#[derive(Debug, Error)]
enum ConnEnd {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("{0}")]
    Refused(String),
    /// Turned away after its hello for want of room (already logged).
    #[error("turned away")]
    Turned,
}

fn send(chan: &mut dyn Channel, resp: &Response<'_>) -> Result<(), ConnEnd> {
    Ok(chan.send(&resp.encode())?)
}

/// Answers a protocol violation and ends the connection.
fn violation(chan: &mut dyn Channel, detail: String) -> ConnEnd {
    let _ = chan.send(&Response::Error(WireError::protocol(detail.clone())).encode());
    ConnEnd::Refused(detail)
}

fn node_err(e: &crate::node::NodeError) -> Response<'static> {
    Response::Error(WireError::from_node(e))
}

fn serve_connection(
    state: &State,
    mut chan: Box<dyn Channel>,
    gate: &mut Gate<'_>,
) -> Result<(), ConnEnd> {
    let chan = chan.as_mut();
    let first = chan.recv()?;
    let node = match Request::decode(&first) {
        Ok(Request::Hello { version, .. }) if version != VERSION => {
            return Err(violation(
                chan,
                format!(
                    "the client speaks node protocol v{version}, this node server v{VERSION}; \
                     run the same qsfs version on both sides"
                ),
            ));
        }
        Ok(Request::Hello { vault_id, .. }) if vault_id.is_empty() => {
            let answer = match state.identity() {
                Some(id) if state.identify => Response::HelloOk {
                    version: VERSION,
                    vault_id: id.vault,
                    node: id.node,
                    adopted: false,
                },
                Some(_) => Response::Error(WireError::new(
                    ErrorKind::Foreign,
                    "this node server tells whose node it is only over a QKD-keyed link; \
                     give the vault id and node name"
                        .to_string(),
                )),
                None => Response::Error(WireError::new(
                    ErrorKind::Foreign,
                    format!(
                        "the node server's folder {} is empty: it is no vault's node yet",
                        state.dir.display()
                    ),
                )),
            };
            send(chan, &answer)?;
            return Err(ConnEnd::Turned);
        }
        Ok(Request::Hello { vault_id, node, .. }) => match state.hello(&vault_id, &node) {
            Ok((id, n, adopted)) => {
                if let Err(why) = gate.pass() {
                    gate.admission.refused(gate.peer, &why);
                    let _ = chan.send(
                        &Response::Error(WireError::new(
                            ErrorKind::Offline,
                            format!("the node server is busy: {why}; retry later"),
                        ))
                        .encode(),
                    );
                    return Err(ConnEnd::Turned);
                }
                send(
                    chan,
                    &Response::HelloOk {
                        version: VERSION,
                        vault_id: id.vault,
                        node: id.node,
                        adopted,
                    },
                )?;
                n
            }
            Err(e) => {
                send(chan, &Response::Error(e.clone()))?;
                return Err(ConnEnd::Refused(e.message));
            }
        },
        Ok(_) => return Err(violation(chan, "the first message must be a hello".into())),
        Err(e) => return Err(violation(chan, e.to_string())),
    };
    loop {
        let msg = match chan.recv() {
            Ok(m) => m,
            Err(ChannelError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let req = match Request::decode(&msg) {
            Ok(r) => r,
            Err(e) => return Err(violation(chan, e.to_string())),
        };
        match req {
            Request::Create(header) => match node.create(&header) {
                Ok(sink) => {
                    send(chan, &Response::Ok)?;
                    receive_shard(state, chan, sink, header.payload_len())?;
                }
                Err(e) => send(chan, &node_err(&e))?,
            },
            Request::Put(header, data) => send(chan, &put_shard(state, &node, &header, data))?,
            Request::Hello { .. } | Request::Data(_) | Request::Finish => {
                return Err(violation(
                    chan,
                    "unexpected message: hello, data and finish only come first or inside a write"
                        .into(),
                ));
            }
            other => state.answer(&node, chan, other)?,
        }
    }
}

/// A whole shard written from one `Put`: the answer is its token, as a
/// streamed write's `Finish` would give.
fn put_shard(
    state: &State,
    node: &DirNode,
    header: &ShardHeader,
    data: &[u8],
) -> Response<'static> {
    let payload_len = header.payload_len();
    if data.len() as u64 != payload_len {
        return Response::Error(WireError::new(
            ErrorKind::Corrupt,
            format!(
                "a put of {} bytes for a shard whose header announces {payload_len}",
                data.len()
            ),
        ));
    }
    let written = node.create(header).and_then(|mut sink| {
        sink.write(data)?;
        sink.finish()
    });
    match written {
        Ok(p) => match state.add_pending(p) {
            Ok(token) => Response::Pending(token),
            Err(e) => Response::Error(e),
        },
        Err(e) => node_err(&e),
    }
}

/// The data and finish of a write; a failed write still reads up to the
/// finish, so the channel stays in step.
fn receive_shard(
    state: &State,
    chan: &mut dyn Channel,
    sink: Box<dyn ShardSink>,
    payload_len: u64,
) -> Result<(), ConnEnd> {
    let mut sink = Some(sink);
    let mut failed: Option<WireError> = None;
    let mut received = 0u64;
    loop {
        let msg = chan.recv()?;
        match Request::decode(&msg) {
            Ok(Request::Data(d)) => {
                received += d.len() as u64;
                if received > payload_len && failed.is_none() {
                    // Not one byte past what the header announces.
                    failed = Some(WireError::new(
                        ErrorKind::Corrupt,
                        format!("more data than the header announces ({payload_len} bytes)"),
                    ));
                    sink = None;
                }
                if let Some(s) = sink.as_mut()
                    && let Err(e) = s.write(d)
                {
                    failed = Some(WireError::from_node(&e));
                    sink = None;
                }
            }
            Ok(Request::Finish) => {
                let resp = match (failed, sink) {
                    (Some(e), _) => Response::Error(e),
                    (None, Some(s)) => match s.finish() {
                        Ok(p) => match state.add_pending(p) {
                            Ok(token) => Response::Pending(token),
                            Err(e) => Response::Error(e),
                        },
                        Err(e) => node_err(&e),
                    },
                    (None, None) => Response::Error(WireError::protocol("write without a sink")),
                };
                return send(chan, &resp);
            }
            Ok(_) => {
                return Err(violation(
                    chan,
                    "only data or finish may follow a create".into(),
                ));
            }
            Err(e) => return Err(violation(chan, e.to_string())),
        }
    }
}

impl State {
    /// Checks (or, for an empty folder, takes) the identity a client names.
    /// Whose node the folder is, if anyone's yet.
    fn identity(&self) -> Option<Identity> {
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    fn hello(&self, vault: &str, node: &str) -> Result<(Identity, Arc<DirNode>, bool), WireError> {
        let mut slot = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((id, n)) = slot.as_ref() {
            if id.vault != vault {
                // Which vault the folder belongs to is for the server's
                // log only: any client may say hello.
                tracing::warn!(
                    "refused a client of vault {vault}: {} is node {} of vault {}",
                    self.dir.display(),
                    id.node,
                    id.vault
                );
                return Err(WireError::new(
                    ErrorKind::Foreign,
                    format!(
                        "this node server's folder belongs to another vault, not to vault {vault}; \
                         point {node} at this vault's node server, or serve an empty folder"
                    ),
                ));
            }
            if id.node != node {
                return Err(WireError::new(
                    ErrorKind::Foreign,
                    format!(
                        "the node server's folder {} is {} of this vault, not {node}; \
                         check the node addresses in qsfs.toml",
                        self.dir.display(),
                        id.node
                    ),
                ));
            }
            return Ok((id.clone(), Arc::clone(n), false));
        }
        if vault.len() != 32 || !vault.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WireError::protocol(format!(
                "vault id {vault:?} is not 32 hex digits"
            )));
        }
        if node.is_empty()
            || node.len() > 200
            || node.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(WireError::protocol(format!(
                "node name {node:?} is not valid"
            )));
        }
        let n = Arc::new(DirNode::new(node, &self.dir, vault));
        n.adopt_empty()
            .map_err(|e| WireError::new(ErrorKind::Offline, e.to_string()))?;
        tracing::info!(
            "took {} into use as node {node} of vault {vault}",
            self.dir.display()
        );
        let id = Identity {
            vault: vault.to_string(),
            node: node.to_string(),
        };
        *slot = Some((id.clone(), Arc::clone(&n)));
        Ok((id, n, true))
    }

    fn add_pending(&self, p: PendingShard) -> Result<u64, WireError> {
        let mut t = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ttl = self.ttl;
        t.map.retain(|_, (at, _)| at.elapsed() < ttl);
        if t.map.len() >= MAX_PENDING {
            return Err(WireError::new(
                ErrorKind::Io,
                format!("{MAX_PENDING} shards wait for a commit already; commit or discard first"),
            ));
        }
        let token = t.next;
        t.next += 1;
        t.map.insert(token, (Instant::now(), p));
        Ok(token)
    }

    fn take_pending(&self, tokens: &[u64]) -> Vec<Option<PendingShard>> {
        let mut t = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .iter()
            .map(|k| t.map.remove(k).map(|(_, p)| p))
            .collect()
    }

    /// Answers one plain request.
    fn answer(
        &self,
        node: &DirNode,
        chan: &mut dyn Channel,
        req: Request<'_>,
    ) -> Result<(), ConnEnd> {
        let resp = match req {
            Request::Health => Response::Health(node.health()),
            Request::Space => Response::Space(node.space()),
            Request::ProbeWrite => match node.probe_write() {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error(WireError::new(ErrorKind::Io, e)),
            },
            Request::Commit(tokens) => {
                let found = self.take_pending(&tokens);
                let mut order = Vec::with_capacity(found.len());
                let mut group = Vec::new();
                for (token, p) in tokens.iter().zip(found) {
                    match p {
                        Some(p) => {
                            order.push(Ok(group.len()));
                            group.push(p);
                        }
                        None => order.push(Err(WireError::new(
                            ErrorKind::Offline,
                            format!(
                                "pending shard {token} is unknown to the node server: it was \
                                 committed already, discarded, or waited longer than {:?}",
                                self.ttl
                            ),
                        ))),
                    }
                }
                let mut results: Vec<Option<Result<(), crate::node::NodeError>>> =
                    node.commit(group).into_iter().map(Some).collect();
                Response::Committed(
                    order
                        .into_iter()
                        .map(|o| match o {
                            Ok(i) => match results.get_mut(i).and_then(Option::take) {
                                Some(Ok(())) => Ok(()),
                                Some(Err(e)) => Err(WireError::from_node(&e)),
                                None => Err(WireError::new(
                                    ErrorKind::Io,
                                    "the node returned no result for this shard",
                                )),
                            },
                            Err(e) => Err(e),
                        })
                        .collect(),
                )
            }
            Request::Discard(tokens) => {
                drop(self.take_pending(&tokens));
                Response::Ok
            }
            Request::ReadAt { key, offset, len } => {
                let mut buf = vec![0u8; len as usize];
                match node.read_at(key, offset, &mut buf) {
                    Ok(()) => return send(chan, &Response::Data(&buf)),
                    Err(e) => node_err(&e),
                }
            }
            Request::ReadHeader(key) => match node.read_header(key) {
                Ok(h) => Response::Header(h),
                Err(e) => node_err(&e),
            },
            Request::Delete(key) => match node.delete(key) {
                Ok(()) => Response::Ok,
                Err(e) => node_err(&e),
            },
            Request::Purge(object) => match node.purge(object) {
                Ok(n) => Response::Purged(n as u64),
                Err(e) => node_err(&e),
            },
            Request::Stat(key) => match node.shard_size(key) {
                Ok(Some(size)) => Response::Size(size),
                Ok(None) => Response::Error(WireError::new(ErrorKind::NotFound, "shard not found")),
                Err(e) => Response::Error(WireError::io(&e)),
            },
            Request::List => return send_listing(node, chan),
            Request::Prove(key, challenge) => {
                if let Err(d) = crate::node::proof::check_challenge(&challenge) {
                    Response::Error(WireError::protocol(format!("bad challenge: {d}")))
                } else {
                    match node.prove(key, &challenge) {
                        Ok(p) => Response::Proof(p),
                        Err(e) => node_err(&e),
                    }
                }
            }
            Request::Holdings(nonce) => match node.holdings(&nonce) {
                Ok(h) => Response::Holdings(h.count, h.root),
                Err(e) => node_err(&e),
            },
            Request::Hello { .. }
            | Request::Create(_)
            | Request::Data(_)
            | Request::Finish
            | Request::Put(..) => Response::Error(WireError::protocol("not a plain request")),
        };
        send(chan, &resp)
    }
}

/// Sends a listing as pages of about [`PAGE_BYTES`].
fn send_listing(node: &DirNode, chan: &mut dyn Channel) -> Result<(), ConnEnd> {
    let listing = match node.list() {
        Ok(l) => l,
        Err(e) => return send(chan, &node_err(&e)),
    };
    let mut shards = listing.shards.into_iter().peekable();
    let mut leftovers = listing
        .leftovers
        .into_iter()
        .map(|p| p.display().to_string())
        .peekable();
    loop {
        let mut page_shards = Vec::new();
        let mut page_left = Vec::new();
        let mut bytes = 0;
        while bytes < PAGE_BYTES {
            if let Some(s) = shards.next() {
                page_shards.push(s);
                bytes += 25;
            } else if let Some(l) = leftovers.next() {
                bytes += 4 + l.len();
                page_left.push(l);
            } else {
                break;
            }
        }
        let last = shards.peek().is_none() && leftovers.peek().is_none();
        send(
            chan,
            &Response::ListPage {
                last,
                shards: page_shards,
                leftovers: page_left,
            },
        )?;
        if last {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ObjectId;
    use crate::erasure::StripeLayout;
    use crate::node::ShardHeader;
    use crate::node::{plain::PlainChannel, transport::plain_transport};

    const VAULT: &str = "0123456789abcdef0123456789abcdef";

    fn client(addr: SocketAddr) -> PlainChannel<TcpStream> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        PlainChannel::new(s, "test")
    }

    fn ask(c: &mut PlainChannel<TcpStream>, req: &Request<'_>) -> Vec<u8> {
        c.send(&req.encode()).unwrap();
        c.recv().unwrap()
    }

    fn hello(c: &mut PlainChannel<TcpStream>, version: u16) -> Vec<u8> {
        ask(
            c,
            &Request::Hello {
                version,
                vault_id: VAULT.into(),
                node: "node-0".into(),
            },
        )
    }

    fn error_of(msg: &[u8]) -> WireError {
        match Response::decode(msg).unwrap() {
            Response::Error(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn violations_end_only_their_connection() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("n")).unwrap();
        let server = Server::bind(
            ServeOptions::new(&dir.path().join("n"), "127.0.0.1:0"),
            plain_transport("t"),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let t = std::thread::spawn(move || server.run());

        // Another protocol version: a clear refusal.
        let mut c = client(addr);
        let e = error_of(&hello(&mut c, 9));
        assert!(
            e.message.contains("v9") && e.kind == ErrorKind::Protocol,
            "{e:?}"
        );
        assert!(matches!(c.recv(), Err(ChannelError::Closed { .. })));
        // Anything before the hello.
        let mut c = client(addr);
        let e = error_of(&ask(&mut c, &Request::Health));
        assert!(e.message.contains("hello"), "{e:?}");

        // A healthy connection is untouched by the others' failures.
        let mut good = client(addr);
        assert!(matches!(
            Response::decode(&hello(&mut good, VERSION)).unwrap(),
            Response::HelloOk { adopted: true, .. }
        ));
        let mut bad = client(addr);
        hello(&mut bad, VERSION);
        let e = error_of(&ask(&mut bad, &Request::Finish));
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(matches!(bad.recv(), Err(ChannelError::Closed { .. })));
        assert_eq!(
            Response::decode(&ask(&mut good, &Request::Health)).unwrap(),
            Response::Health(crate::node::NodeHealth::Ok)
        );

        // More data than the header announces is refused at the finish.
        let layout = StripeLayout::plan(2, 3, 20, 4096).unwrap();
        let header = ShardHeader::new(ObjectId([1; 16]), 0, &layout);
        assert_eq!(
            Response::decode(&ask(&mut good, &Request::Create(header))).unwrap(),
            Response::Ok
        );
        let too_much = vec![0u8; header.payload_len() as usize + 1];
        good.send(&Request::Data(&too_much).encode()).unwrap();
        let e = error_of(&ask(&mut good, &Request::Finish));
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
        // Unknown tokens are per-shard errors, not connection errors.
        match Response::decode(&ask(&mut good, &Request::Commit(vec![77]))).unwrap() {
            Response::Committed(r) => assert!(r[0].as_ref().unwrap_err().message.contains("77")),
            other => panic!("{other:?}"),
        }
        stop.stop();
        t.join().unwrap();
    }

    /// Whether the server closed `s` (end of stream or reset) within `within`.
    fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        use std::io::Read;
        s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        }
    }

    /// Security finding: a connection that never finished its handshake
    /// held a place for the 600 s idle timeout, and counted against the
    /// places of the vault's own connections.
    #[test]
    fn strangers_get_a_handshake_deadline_and_their_own_small_cap() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("n")).unwrap();
        let mut opts = ServeOptions::new(&dir.path().join("n"), "127.0.0.1:0");
        opts.max_connections = 2;
        opts.max_handshakes = 3;
        opts.max_handshakes_per_source = 2;
        opts.handshake_timeout = Duration::from_millis(1500);
        let server = Server::bind(opts, plain_transport("t")).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let t = std::thread::spawn(move || server.run());

        // The vault's connection, authenticated before the flood.
        let mut good = client(addr);
        assert!(matches!(
            Response::decode(&hello(&mut good, VERSION)).unwrap(),
            Response::HelloOk { .. }
        ));
        // Two silent strangers from 127.0.0.1 fill that address's cap: a
        // third is closed at once.
        let start = Instant::now();
        let mut s1 = TcpStream::connect(addr).unwrap();
        let mut s2 = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut s3 = TcpStream::connect(addr).unwrap();
        assert!(closed_within(&mut s3, Duration::from_millis(800)));
        // A stranger who drips a byte every 200 ms is still cut off at
        // the handshake deadline, not at the idle timeout.
        let mut drip = s2.try_clone().unwrap();
        let dripper = std::thread::spawn(move || {
            for _ in 0..40 {
                if drip.write_all(&[0]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        assert!(closed_within(&mut s1, Duration::from_secs(4)));
        assert!(closed_within(&mut s2, Duration::from_secs(4)));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(4), "{took:?}");
        dripper.join().unwrap();
        // The vault's connection never noticed.
        assert_eq!(
            Response::decode(&ask(&mut good, &Request::Health)).unwrap(),
            Response::Health(crate::node::NodeHealth::Ok)
        );
        // Places freed, a new vault connection gets in; the authenticated
        // pool (2) is what bounds those.
        let mut second = client(addr);
        assert!(matches!(
            Response::decode(&hello(&mut second, VERSION)).unwrap(),
            Response::HelloOk { .. }
        ));
        let mut third = client(addr);
        let e = error_of(&hello(&mut third, VERSION));
        assert!(e.message.contains("busy"), "{e:?}");
        stop.stop();
        t.join().unwrap();
    }

    /// A client of another vault is refused without learning which vault
    /// the folder belongs to.
    #[test]
    fn a_foreign_hello_does_not_reveal_the_nodes_vault() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("n")).unwrap();
        let server = Server::bind(
            ServeOptions::new(&dir.path().join("n"), "127.0.0.1:0"),
            plain_transport("t"),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let t = std::thread::spawn(move || server.run());
        let mut c = client(addr);
        assert!(matches!(
            Response::decode(&hello(&mut c, VERSION)).unwrap(),
            Response::HelloOk { adopted: true, .. }
        ));
        let other = "fedcba9876543210fedcba9876543210";
        let mut c = client(addr);
        let e = error_of(&ask(
            &mut c,
            &Request::Hello {
                version: VERSION,
                vault_id: other.into(),
                node: "node-0".into(),
            },
        ));
        assert_eq!(e.kind, ErrorKind::Foreign, "{e:?}");
        assert!(e.message.contains(other), "{e:?}");
        assert!(!e.message.contains(VAULT), "{e:?}");
        stop.stop();
        t.join().unwrap();
    }

    /// A node server on a fresh folder `dir`, over plain framing, and a
    /// client that has said hello.
    fn plain_server_and_client(
        dir: &Path,
    ) -> (StopHandle, JoinHandle<()>, PlainChannel<TcpStream>) {
        std::fs::create_dir(dir).unwrap();
        let server =
            Server::bind(ServeOptions::new(dir, "127.0.0.1:0"), plain_transport("t")).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let t = std::thread::spawn(move || server.run());
        let mut c = client(addr);
        hello(&mut c, VERSION);
        (stop, t, c)
    }

    /// A proof request with a block size outside 512..=8192 is answered
    /// with a protocol error before any tree is built.
    #[test]
    fn a_proof_request_with_a_bad_block_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, t, mut c) = plain_server_and_client(&dir.path().join("n"));
        let layout = StripeLayout::plan(2, 3, 20_000, 4096).unwrap();
        let header = ShardHeader::new(ObjectId([1; 16]), 0, &layout);
        let key = crate::node::ShardKey {
            object: ObjectId([1; 16]),
            index: 0,
        };
        assert_eq!(
            Response::decode(&ask(&mut c, &Request::Create(header))).unwrap(),
            Response::Ok
        );
        let data = vec![7u8; header.payload_len() as usize];
        c.send(&Request::Data(&data).encode()).unwrap();
        let token = match Response::decode(&ask(&mut c, &Request::Finish)).unwrap() {
            Response::Pending(t) => t,
            other => panic!("{other:?}"),
        };
        match Response::decode(&ask(&mut c, &Request::Commit(vec![token]))).unwrap() {
            Response::Committed(r) => r[0].as_ref().unwrap(),
            other => panic!("{other:?}"),
        };
        let prove = |c: &mut PlainChannel<TcpStream>, block| {
            let challenge = crate::node::Challenge {
                nonce: [3; 32],
                block,
                indices: vec![0],
            };
            match Response::decode(&ask(c, &Request::Prove(key, challenge))).unwrap() {
                Response::Proof(_) => Ok(()),
                Response::Error(e) => Err(e),
                other => panic!("block {block}: {other:?}"),
            }
        };
        for bad in [1u32, 16384] {
            let e = prove(&mut c, bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Protocol, "{e:?}");
            assert!(e.message.contains("block size"), "{e:?}");
        }
        prove(&mut c, 4096).unwrap();
        stop.stop();
        t.join().unwrap();
    }

    /// A shard in one `Put` lands as a streamed one does; a `Put` whose
    /// payload is not what its header announces is refused, and the
    /// channel stays in step for the next request.
    #[test]
    fn a_put_writes_a_whole_shard_and_a_short_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, t, mut c) = plain_server_and_client(&dir.path().join("n"));
        let layout = StripeLayout::plan(2, 3, 20_000, 4096).unwrap();
        let header = ShardHeader::new(ObjectId([2; 16]), 1, &layout);
        let data: Vec<u8> = (0..header.payload_len()).map(|i| i as u8).collect();
        let e = error_of(&ask(&mut c, &Request::Put(header, &data[1..])));
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e:?}");
        let token = match Response::decode(&ask(&mut c, &Request::Put(header, &data))).unwrap() {
            Response::Pending(t) => t,
            other => panic!("{other:?}"),
        };
        match Response::decode(&ask(&mut c, &Request::Commit(vec![token]))).unwrap() {
            Response::Committed(r) => r[0].as_ref().unwrap(),
            other => panic!("{other:?}"),
        };
        let read = Request::ReadAt {
            key: header.key,
            offset: 0,
            len: data.len() as u32,
        };
        match Response::decode(&ask(&mut c, &read)).unwrap() {
            Response::Data(d) => assert_eq!(d, &data[..]),
            other => panic!("{other:?}"),
        }
        stop.stop();
        t.join().unwrap();
    }
}
