//! A storage node reached over the network: the client side of the node
//! protocol (`node/wire`, byte layout there).
//!
//! Each operation borrows a channel from a small pool (one request in
//! flight per channel, so parallel transfers use several), opening one
//! when none is idle: connect with a timeout, build the channel with the
//! configured [`Transport`] (the QKD-keyed link, or plaintext for tests),
//! then a hello that checks the server serves this vault's node of that
//! name. Every socket read and write has a timeout, so a dead or hung node
//! costs a timeout, never a hang. A channel that failed is dropped and the
//! next operation connects again; after a *timeout* the node is treated as
//! down for [`RemoteOptions::retry_after`] (operations fail at once with
//! the reason), so a hung node does not cost a full timeout per chunk.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::header::{ShardHeader, ShardKey};
use super::pending::PendingTable;
use super::transport::Transport;
use super::wire::{ErrorKind, MAX_DATA, MAX_TOKENS, Request, Response, VERSION, WireError};
use super::{
    HealthCheck, Listing, Node, NodeError, NodeErrorKind, NodeHealth, PendingShard, Prover,
    ShardSink, ShardStore,
};
use crate::ObjectId;
use crate::node::wire::msg::DATA_TAG;
use crate::qkd::{Channel, ChannelError};

/// How long a health answer stays valid.
const HEALTH_TTL: Duration = Duration::from_secs(1);

/// Connection settings of a remote node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for any one read or write on a connection.
    pub io_timeout: Duration,
    /// Idle channels kept open for the next operations.
    pub max_idle: usize,
    /// Most channels open at once (more callers wait for one).
    pub max_channels: usize,
    /// After a timeout, operations fail at once for this long.
    pub retry_after: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(30),
            max_idle: 4,
            max_channels: 16,
            retry_after: Duration::from_secs(10),
        }
    }
}

/// A node served by `qsfs node serve` at an address.
pub struct RemoteNode {
    inner: Arc<Inner>,
    /// Finished writes waiting for their commit: the server's tokens.
    pending: Arc<PendingTable<ServerPending>>,
}

impl std::fmt::Debug for RemoteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteNode")
            .field("name", &self.inner.name)
            .field("address", &self.inner.address)
            .finish()
    }
}

struct Inner {
    name: String,
    address: String,
    vault_id: String,
    transport: Transport,
    opts: RemoteOptions,
    /// Shown instead of the address (an in-process node's folder).
    shown: Option<String>,
    pool: Mutex<Pool>,
    freed: Condvar,
    health: Mutex<Option<(Instant, NodeHealth)>>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Box<dyn Channel>>,
    open: usize,
    /// Set after a timeout: when, and why.
    down: Option<(Instant, String)>,
}

/// Why an exchange failed.
#[derive(Debug, Clone)]
enum Failure {
    /// The connection failed (its channel is gone).
    Transport { detail: String, timeout: bool },
    /// The node answered with an error (the channel is fine).
    Remote(WireError),
}

impl RemoteNode {
    /// A node named `name` of vault `vault_id`, served at `address`
    /// (`host:port`), reached through `transport`. Nothing is connected
    /// until the first operation.
    pub fn new(
        name: &str,
        address: &str,
        vault_id: &str,
        transport: Transport,
        opts: RemoteOptions,
    ) -> RemoteNode {
        RemoteNode {
            inner: Arc::new(Inner {
                name: name.to_string(),
                address: address.to_string(),
                vault_id: vault_id.to_string(),
                transport,
                opts,
                shown: None,
                pool: Mutex::new(Pool::default()),
                freed: Condvar::new(),
                health: Mutex::new(None),
            }),
            pending: PendingTable::new(),
        }
    }

    /// Shows `location` (e.g. the folder of a node served in-process)
    /// in messages and status instead of the address. Call before use.
    pub fn shown_as(mut self, location: String) -> RemoteNode {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shown = Some(location);
        }
        self
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Size of a shard file on the node, header included.
    pub fn stat(&self, key: ShardKey) -> Result<u64, NodeError> {
        let req = Request::Stat(key).encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Size(n) => Some(n),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "stat shard", Some(key)))
    }
}

impl Inner {
    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, f: Failure, op: &'static str, shard: Option<ShardKey>) -> NodeError {
        match f {
            Failure::Transport { detail, timeout } => {
                let why = format!("{}: {detail}", self.address);
                let kind = if timeout {
                    NodeErrorKind::Timeout(why)
                } else {
                    NodeErrorKind::Offline(why)
                };
                NodeError::new(&self.name, op, shard, kind)
            }
            Failure::Remote(w) => w.into_node(&self.name, op, shard),
        }
    }

    /// A channel: an idle one, or a new connection.
    fn lease(self: &Arc<Self>) -> Result<Lease, Failure> {
        let deadline = Instant::now() + self.opts.io_timeout;
        let mut pool = self.lock_pool();
        loop {
            if let Some((at, why)) = &pool.down {
                if at.elapsed() < self.opts.retry_after {
                    return Err(Failure::Transport {
                        detail: format!(
                            "{why} (not retried for {} s)",
                            self.opts.retry_after.as_secs()
                        ),
                        timeout: false,
                    });
                }
                pool.down = None;
            }
            if let Some(chan) = pool.idle.pop() {
                return Ok(Lease {
                    inner: Arc::clone(self),
                    chan: Some(chan),
                    reused: true,
                });
            }
            if pool.open < self.opts.max_channels {
                pool.open += 1;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::Transport {
                    detail: format!(
                        "all {} connections to the node stayed busy for {} s",
                        self.opts.max_channels,
                        self.opts.io_timeout.as_secs()
                    ),
                    timeout: false,
                });
            }
            pool = self
                .freed
                .wait_timeout(pool, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        drop(pool);
        match self.connect() {
            Ok(chan) => Ok(Lease {
                inner: Arc::clone(self),
                chan: Some(chan),
                reused: false,
            }),
            Err(f) => {
                self.closed(&f);
                Err(f)
            }
        }
    }

    /// Bookkeeping of a channel that is gone.
    fn closed(&self, f: &Failure) {
        let mut pool = self.lock_pool();
        pool.open = pool.open.saturating_sub(1);
        if let Failure::Transport {
            detail,
            timeout: true,
        } = f
        {
            pool.down = Some((Instant::now(), detail.clone()));
        }
        drop(pool);
        self.freed.notify_one();
        if let Failure::Transport { detail, .. } = f {
            *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Some((
                Instant::now(),
                NodeHealth::Offline(format!("{}: {detail}", self.address)),
            ));
        }
    }

    /// Connects, builds the channel and says hello.
    fn connect(&self) -> Result<Box<dyn Channel>, Failure> {
        let transport_err = |detail: String, timeout: bool| Failure::Transport { detail, timeout };
        let addrs: Vec<_> = self
            .address
            .to_socket_addrs()
            .map_err(|e| transport_err(format!("cannot resolve the address: {e}"), false))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => {
                let timeout = is_timeout(&e);
                let detail = if timeout {
                    format!(
                        "no connection within {} s (connect timed out)",
                        self.opts.connect_timeout.as_secs_f32()
                    )
                } else {
                    format!("cannot connect: {e}")
                };
                return Err(transport_err(detail, timeout));
            }
            (None, None) => {
                return Err(transport_err(
                    "the address resolves to nothing".into(),
                    false,
                ));
            }
        };
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(self.opts.io_timeout)))
            .and_then(|()| stream.set_write_timeout(Some(self.opts.io_timeout)));
        if let Err(e) = setup {
            return Err(transport_err(
                format!("cannot set up the connection: {e}"),
                false,
            ));
        }
        let mut chan = (self.transport)(stream).map_err(|e| self.channel_failure(&e))?;
        let hello = Request::Hello {
            version: VERSION,
            vault_id: self.vault_id.clone(),
            node: self.name.clone(),
        }
        .encode();
        chan.send(&hello).map_err(|e| self.channel_failure(&e))?;
        let answer = chan.recv().map_err(|e| self.channel_failure(&e))?;
        match Response::decode(&answer) {
            Ok(Response::HelloOk {
                vault_id,
                node,
                adopted,
                ..
            }) => {
                if vault_id != self.vault_id || node != self.name {
                    return Err(Failure::Remote(WireError::new(
                        ErrorKind::Foreign,
                        format!("the node server answers as node {node} of vault {vault_id}"),
                    )));
                }
                if adopted {
                    tracing::info!(
                        "{} at {}: the node server took its empty folder into use for this vault",
                        self.name,
                        self.address
                    );
                }
                Ok(chan)
            }
            Ok(Response::Error(e)) => Err(Failure::Remote(e)),
            Ok(other) => Err(transport_err(
                format!("unexpected answer to hello: {:?}", tag_of(&other)),
                false,
            )),
            Err(e) => Err(transport_err(
                format!("undecodable answer to hello: {e}"),
                false,
            )),
        }
    }

    fn channel_failure(&self, e: &ChannelError) -> Failure {
        let (detail, timeout) = match e {
            ChannelError::Io { source, detail, .. } if is_timeout(source) => (
                format!(
                    "no answer within {} s ({detail} timed out); the node server is slow or hung",
                    self.opts.io_timeout.as_secs_f32()
                ),
                true,
            ),
            ChannelError::Io { detail, source, .. } => (format!("{detail}: {source}"), false),
            ChannelError::Closed { .. } => ("the node server closed the connection".into(), false),
            ChannelError::Refused { detail, .. } => {
                (format!("the link refused a frame: {detail}"), false)
            }
            ChannelError::Key(k) => (k.to_string(), false),
        };
        Failure::Transport { detail, timeout }
    }

    /// Runs `f` on a channel and keeps the channel (a write stream); a
    /// stale idle channel (the server restarted) is replaced once.
    fn lease_with<T>(
        self: &Arc<Self>,
        mut f: impl FnMut(&mut Lease) -> Result<T, Failure>,
    ) -> Result<(Lease, T), Failure> {
        let mut lease = self.lease()?;
        match f(&mut lease) {
            Ok(v) => Ok((lease, v)),
            Err(Failure::Transport { timeout: false, .. }) if lease.reused => {
                drop(lease);
                // Its siblings are likely stale too.
                {
                    let mut pool = self.lock_pool();
                    let stale = std::mem::take(&mut pool.idle);
                    pool.open = pool.open.saturating_sub(stale.len());
                }
                self.freed.notify_all();
                let mut lease = self.lease()?;
                let v = f(&mut lease)?;
                Ok((lease, v))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one exchange `f` and gives the channel back.
    fn with_lease<T>(
        self: &Arc<Self>,
        f: impl FnMut(&mut Lease) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (lease, v) = self.lease_with(f)?;
        lease.done();
        Ok(v)
    }

    fn discard(self: &Arc<Self>, token: u64) {
        let req = Request::Discard(vec![token]).encode();
        let _ = self.with_lease(|l| {
            l.call(&req, |r| match r {
                Response::Ok => Some(()),
                _ => None,
            })
        });
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The variant name of a response, for messages.
fn tag_of(r: &Response<'_>) -> &'static str {
    match r {
        Response::Ok => "ok",
        Response::Error(_) => "error",
        Response::HelloOk { .. } => "hello",
        Response::Health(_) => "health",
        Response::Space(_) => "space",
        Response::Pending(_) => "pending",
        Response::Committed(_) => "committed",
        Response::Data(_) => "data",
        Response::Header(_) => "header",
        Response::Purged(_) => "purged",
        Response::ListPage { .. } => "list page",
        Response::Size(_) => "size",
        Response::Proof(_) => "proof",
        Response::Holdings(..) => "holdings",
    }
}

/// A channel borrowed from the pool. Dropped without [`Lease::done`] (an
/// interrupted write), the connection is closed, which tells the server
/// to drop what it was receiving.
struct Lease {
    inner: Arc<Inner>,
    chan: Option<Box<dyn Channel>>,
    reused: bool,
}

impl Lease {
    fn fail(&mut self, f: Failure) -> Failure {
        if self.chan.take().is_some() {
            self.inner.closed(&f);
        }
        f
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), Failure> {
        let Some(chan) = self.chan.as_mut() else {
            return Err(Failure::Transport {
                detail: "connection already closed".into(),
                timeout: false,
            });
        };
        match chan.send(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                let f = self.inner.channel_failure(&e);
                Err(self.fail(f))
            }
        }
    }

    /// Reads one response and hands it to `f`; an error response is a
    /// `Remote` failure, anything `f` does not expect ends the connection.
    fn reply<T>(&mut self, f: impl FnOnce(Response<'_>) -> Option<T>) -> Result<T, Failure> {
        let Some(chan) = self.chan.as_mut() else {
            return Err(Failure::Transport {
                detail: "connection already closed".into(),
                timeout: false,
            });
        };
        let msg = match chan.recv() {
            Ok(m) => m,
            Err(e) => {
                let f = self.inner.channel_failure(&e);
                return Err(self.fail(f));
            }
        };
        let unexpected = match Response::decode(&msg) {
            Ok(Response::Error(e)) => return Err(Failure::Remote(e)),
            Ok(r) => {
                let tag = tag_of(&r);
                match f(r) {
                    Some(v) => return Ok(v),
                    None => format!("unexpected {tag} answer from the node server"),
                }
            }
            Err(e) => format!("undecodable answer from the node server: {e}"),
        };
        Err(self.fail(Failure::Transport {
            detail: unexpected,
            timeout: false,
        }))
    }

    fn call<T>(
        &mut self,
        req: &[u8],
        f: impl FnOnce(Response<'_>) -> Option<T>,
    ) -> Result<T, Failure> {
        self.send(req)?;
        self.reply(f)
    }

    /// Gives the channel back to the pool.
    fn done(mut self) {
        if let Some(chan) = self.chan.take() {
            let mut pool = self.inner.lock_pool();
            if pool.idle.len() < self.inner.opts.max_idle {
                pool.idle.push(chan);
            } else {
                pool.open = pool.open.saturating_sub(1);
            }
            drop(pool);
            self.inner.freed.notify_one();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.chan.take().is_some() {
            let mut pool = self.inner.lock_pool();
            pool.open = pool.open.saturating_sub(1);
            drop(pool);
            self.inner.freed.notify_one();
        }
    }
}

impl Node for RemoteNode {
    fn location(&self) -> String {
        self.inner
            .shown
            .clone()
            .unwrap_or_else(|| self.inner.address.clone())
    }
}

impl HealthCheck for RemoteNode {
    fn health(&self) -> NodeHealth {
        let inner = &self.inner;
        {
            let cache = inner.health.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, h)) = cache.as_ref()
                && at.elapsed() < HEALTH_TTL
            {
                return h.clone();
            }
        }
        let req = Request::Health.encode();
        let h = match inner.with_lease(|l| {
            l.call(&req, |r| match r {
                Response::Health(h) => Some(h),
                _ => None,
            })
        }) {
            Ok(h) => h,
            Err(Failure::Remote(w)) if w.kind == ErrorKind::Foreign => {
                NodeHealth::Foreign(format!("{}: {w}", inner.address))
            }
            Err(Failure::Remote(w)) => NodeHealth::Offline(format!("{}: {w}", inner.address)),
            Err(Failure::Transport { detail, .. }) => {
                NodeHealth::Offline(format!("{}: {detail}", inner.address))
            }
        };
        *inner.health.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), h.clone()));
        h
    }

    fn probe_write(&self) -> Result<(), String> {
        let req = Request::ProbeWrite.encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Ok => Some(()),
                    _ => None,
                })
            })
            .map_err(|f| match f {
                Failure::Remote(w) => w.message,
                Failure::Transport { detail, .. } => format!("{}: {detail}", self.inner.address),
            })
    }

    fn space(&self) -> Option<crate::sys::FsSpace> {
        let req = Request::Space.encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Space(s) => Some(s),
                    _ => None,
                })
            })
            .ok()
            .flatten()
    }
}

impl ShardStore for RemoteNode {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn create(&self, header: &ShardHeader) -> Result<Box<dyn ShardSink>, NodeError> {
        let key = header.key;
        let req = Request::Create(*header).encode();
        let (lease, ()) = self
            .inner
            .lease_with(|l| {
                l.call(&req, |r| match r {
                    Response::Ok => Some(()),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "write shard", Some(key)))?;
        let mut msg = Vec::with_capacity(MAX_DATA + 1);
        msg.push(DATA_TAG);
        Ok(Box::new(RemoteSink {
            inner: Arc::clone(&self.inner),
            lease: Some(lease),
            key,
            msg,
            pending: Arc::clone(&self.pending),
        }))
    }

    fn commit(&self, shards: Vec<PendingShard>) -> Vec<Result<(), NodeError>> {
        let inner = &self.inner;
        let mut results: Vec<Option<Result<(), NodeError>>> = Vec::with_capacity(shards.len());
        let mut ours: Vec<(usize, ServerPending)> = Vec::new();
        for (i, p) in shards.into_iter().enumerate() {
            let key = p.key();
            match self.pending.claim(p) {
                Ok(w) => {
                    ours.push((i, w));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(NodeError::new(
                    &inner.name,
                    "commit shard",
                    Some(key),
                    e.into(),
                )))),
            }
        }
        for group in ours.chunks_mut(MAX_TOKENS) {
            let tokens: Vec<u64> = group.iter().map(|(_, p)| p.token).collect();
            let req = Request::Commit(tokens.clone()).encode();
            // A stale idle channel is replaced and the commit sent again:
            // tokens are single-use, so a commit the node did carry out
            // cannot happen twice (the second answers "unknown token").
            let answer = inner.with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Committed(v) if v.len() == tokens.len() => Some(v),
                    _ => None,
                })
            });
            match answer {
                Ok(per_shard) => {
                    for ((i, p), r) in group.iter_mut().zip(per_shard) {
                        p.done = true;
                        results[*i] =
                            Some(r.map_err(|w| {
                                w.into_node(&inner.name, "commit shard", Some(p.key))
                            }));
                    }
                }
                Err(f) => {
                    for (i, p) in group.iter() {
                        results[*i] = Some(Err(inner.err(f.clone(), "commit shard", Some(p.key))));
                    }
                }
            }
        }
        drop(ours);
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(NodeError::new(
                        &inner.name,
                        "commit shard",
                        None,
                        NodeErrorKind::Offline("no result".into()),
                    ))
                })
            })
            .collect()
    }

    fn read_at(&self, key: ShardKey, offset: u64, buf: &mut [u8]) -> Result<(), NodeError> {
        self.inner
            .with_lease(|l| {
                let mut done = 0usize;
                while done < buf.len() {
                    let len = (buf.len() - done).min(MAX_DATA);
                    let req = Request::ReadAt {
                        key,
                        offset: offset + done as u64,
                        len: len as u32,
                    }
                    .encode();
                    let piece = &mut buf[done..done + len];
                    l.call(&req, |r| match r {
                        Response::Data(d) if d.len() == piece.len() => {
                            piece.copy_from_slice(d);
                            Some(())
                        }
                        _ => None,
                    })?;
                    done += len;
                }
                Ok(())
            })
            .map_err(|f| {
                let e = self.inner.err(f, "read shard", Some(key));
                if e.is_not_found() {
                    // As in a folder node: a shard not found may mean the
                    // node's folder is gone; the next health check asks
                    // (the server's cache was dropped by the same miss).
                    *self.inner.health.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                e
            })
    }

    fn read_header(&self, key: ShardKey) -> Result<ShardHeader, NodeError> {
        let req = Request::ReadHeader(key).encode();
        let h = self
            .inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Header(h) => Some(h),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "read shard header", Some(key)))?;
        if h.key != key {
            return Err(self.inner.err(
                Failure::Remote(WireError::new(
                    ErrorKind::Corrupt,
                    format!("file holds shard {} instead", h.key),
                )),
                "read shard header",
                Some(key),
            ));
        }
        Ok(h)
    }

    fn delete(&self, key: ShardKey) -> Result<(), NodeError> {
        let req = Request::Delete(key).encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Ok => Some(()),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "delete shard", Some(key)))
    }

    fn purge(&self, object: ObjectId) -> Result<usize, NodeError> {
        let req = Request::Purge(object).encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Purged(n) => Some(n as usize),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "purge shards", None))
    }

    fn list(&self) -> Result<Listing, NodeError> {
        let req = Request::List.encode();
        self.inner
            .with_lease(|l| {
                let mut listing = Listing::default();
                l.send(&req)?;
                loop {
                    let last = l.reply(|r| match r {
                        Response::ListPage {
                            last,
                            shards,
                            leftovers,
                        } => {
                            listing.shards.extend(shards);
                            listing
                                .leftovers
                                .extend(leftovers.into_iter().map(Into::into));
                            Some(last)
                        }
                        _ => None,
                    })?;
                    if last {
                        return Ok(listing);
                    }
                }
            })
            .map_err(|f| self.inner.err(f, "list shards", None))
    }
}

impl Prover for RemoteNode {
    fn prove(
        &self,
        key: ShardKey,
        challenge: &crate::node::Challenge,
    ) -> Result<crate::node::PossessionProof, NodeError> {
        let req = Request::Prove(key, challenge.clone()).encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Proof(p) => Some(p),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "prove possession", Some(key)))
    }

    fn holdings(&self, nonce: &[u8; 32]) -> Result<crate::node::Holdings, NodeError> {
        let req = Request::Holdings(*nonce).encode();
        self.inner
            .with_lease(|l| {
                l.call(&req, |r| match r {
                    Response::Holdings(count, root) => Some(crate::node::Holdings { count, root }),
                    _ => None,
                })
            })
            .map_err(|f| self.inner.err(f, "compute holdings root", None))
    }
}

/// A shard being streamed to the server.
struct RemoteSink {
    inner: Arc<Inner>,
    /// Gone after a failure or at finish.
    lease: Option<Lease>,
    key: ShardKey,
    /// The next `Data` message: its tag, then up to [`MAX_DATA`] bytes.
    msg: Vec<u8>,
    /// Where the finished write waits for its commit.
    pending: Arc<PendingTable<ServerPending>>,
}

impl RemoteSink {
    fn flush(&mut self) -> Result<(), NodeError> {
        let lease = self.lease.as_mut().ok_or_else(|| {
            NodeError::new(
                &self.inner.name,
                "write shard",
                Some(self.key),
                NodeErrorKind::Offline("the write already failed".into()),
            )
        })?;
        let sent = lease.send(&self.msg);
        self.msg.truncate(1);
        if let Err(f) = sent {
            self.lease = None;
            return Err(self.inner.err(f, "write shard", Some(self.key)));
        }
        Ok(())
    }
}

impl ShardSink for RemoteSink {
    fn write(&mut self, mut data: &[u8]) -> Result<(), NodeError> {
        if self.lease.is_none() {
            return Err(NodeError::new(
                &self.inner.name,
                "write shard",
                Some(self.key),
                NodeErrorKind::Offline("the write already failed".into()),
            ));
        }
        while !data.is_empty() {
            let room = MAX_DATA + 1 - self.msg.len();
            let n = room.min(data.len());
            self.msg.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.msg.len() == MAX_DATA + 1 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<PendingShard, NodeError> {
        if self.msg.len() > 1 {
            self.flush()?;
        }
        let key = self.key;
        let mut lease = self.lease.take().ok_or_else(|| {
            NodeError::new(
                &self.inner.name,
                "write shard",
                Some(key),
                NodeErrorKind::Offline("the write already failed".into()),
            )
        })?;
        let token = lease
            .call(&Request::Finish.encode(), |r| match r {
                Response::Pending(t) => Some(t),
                _ => None,
            })
            .map_err(|f| self.inner.err(f, "write shard", Some(key)));
        // A refused finish leaves the channel in step: keep it.
        if lease.chan.is_some() {
            lease.done();
        }
        let write = ServerPending {
            inner: Arc::clone(&self.inner),
            key,
            token: token?,
            done: false,
        };
        Ok(self.pending.issue(key, write))
    }
}

/// A shard finished on the server, named by the server's token, in its
/// node's pending table until the commit takes it. Dropped uncommitted
/// (discarded, or with its node) it asks the server to discard the write.
struct ServerPending {
    inner: Arc<Inner>,
    key: ShardKey,
    token: u64,
    /// Committed (or its commit answered): nothing to discard.
    done: bool,
}

impl Drop for ServerPending {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: otherwise the server drops it when it expires.
            self.inner.discard(self.token);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;
    use crate::node::server::{ServeOptions, Server, StopHandle};
    use crate::node::transport::plain_transport;
    use std::net::TcpListener;
    use std::path::Path;

    const VAULT: &str = "0123456789abcdef0123456789abcdef";

    struct Running {
        stop: StopHandle,
        thread: Option<std::thread::JoinHandle<()>>,
        addr: String,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.stop();
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    fn serve_on(dir: &Path, listen: &str) -> Running {
        std::fs::create_dir_all(dir).unwrap();
        let server = Server::bind(
            ServeOptions::new(dir, listen),
            plain_transport("test server"),
        )
        .unwrap();
        let addr = server.local_addr().to_string();
        let stop = server.stop_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Running { stop, thread, addr }
    }

    fn serve(dir: &Path) -> Running {
        serve_on(dir, "127.0.0.1:0")
    }

    /// Short timeouts, for the tests of timeouts only: elsewhere a slow
    /// fsync on a loaded machine must not read as a dead node.
    fn fast() -> RemoteOptions {
        RemoteOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_millis(400),
            retry_after: Duration::from_secs(60),
            ..RemoteOptions::default()
        }
    }

    fn remote(name: &str, addr: &str, vault: &str) -> RemoteNode {
        RemoteNode::new(
            name,
            addr,
            vault,
            plain_transport(name),
            RemoteOptions::default(),
        )
    }

    fn remote_fast(name: &str, addr: &str) -> RemoteNode {
        RemoteNode::new(name, addr, VAULT, plain_transport(name), fast())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Writes shard `index` of `object` with a payload of about `len` bytes.
    fn write(n: &RemoteNode, object: ObjectId, index: u8, len: usize) -> (PendingShard, Vec<u8>) {
        let layout = StripeLayout::plan(2, 3, (len * 2) as u64, 1 << 20).unwrap();
        let header = ShardHeader::new(object, index, &layout);
        let payload = pattern(header.payload_len() as usize, index);
        let mut sink = n.create(&header).unwrap();
        for piece in payload.chunks(700_001) {
            sink.write(piece).unwrap();
        }
        (sink.finish().unwrap(), payload)
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(5), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn shards_round_trip_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("node-0");
        let srv = serve(&folder);
        let n = remote("node-0", &srv.addr, VAULT);
        // The empty folder became this vault's node on the first hello.
        assert_eq!(n.health(), NodeHealth::Ok);
        assert_eq!(
            crate::node::DirNode::marker_at(&folder),
            Some((VAULT.to_string(), "node-0".to_string()))
        );
        assert!(n.space().is_some());
        n.probe_write().unwrap();
        assert_eq!(n.location(), srv.addr);

        let id = ObjectId([0x42; 16]);
        let (pending, payload) = write(&n, id, 1, 3 << 20);
        let key = pending.key();
        assert!(n.read_header(key).unwrap_err().is_not_found());
        assert_eq!(n.list().unwrap().leftovers.len(), 1);
        for r in n.commit(vec![pending]) {
            r.unwrap();
        }
        assert_eq!(n.read_header(key).unwrap().key, key);
        let mut all = vec![0u8; payload.len()];
        n.read_at(key, 0, &mut all).unwrap();
        assert!(all == payload);
        let mut mid = vec![0u8; 1_500_000];
        n.read_at(key, 12345, &mut mid).unwrap();
        assert!(mid[..] == payload[12345..12345 + mid.len()]);
        let mut past = vec![0u8; 10];
        let e = n
            .read_at(key, payload.len() as u64 - 5, &mut past)
            .unwrap_err();
        assert!(matches!(e.kind, NodeErrorKind::Corrupt(_)), "{e}");
        assert!(e.to_string().starts_with("node-0: read shard"), "{e}");
        assert_eq!(n.stat(key).unwrap(), payload.len() as u64 + 64);
        let l = n.list().unwrap();
        assert_eq!(l.shards.len(), 1);
        assert!(l.leftovers.is_empty());

        // A dropped pending shard and an abandoned write leave nothing.
        let (p, _) = write(&n, id, 2, 1000);
        drop(p);
        assert!(n.list().unwrap().leftovers.is_empty());
        let layout = StripeLayout::plan(2, 3, 4 << 20, 1 << 20).unwrap();
        let mut sink = n.create(&ShardHeader::new(id, 0, &layout)).unwrap();
        sink.write(&[1u8; 5000]).unwrap();
        drop(sink);
        wait_until("abandoned write cleaned up", || {
            n.list().unwrap().leftovers.is_empty()
        });

        // Many shards commit as one group, in parallel writes.
        let other = ObjectId([0x43; 16]);
        let pendings: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3u8)
                .map(|i| {
                    let n = &n;
                    s.spawn(move || write(n, other, i, 10_000).0)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(n.commit(pendings).iter().all(|r| r.is_ok()));
        assert_eq!(n.list().unwrap().shards.len(), 4);
        assert_eq!(n.purge(other).unwrap(), 3);
        n.delete(key).unwrap();
        n.delete(key).unwrap();
        assert!(n.read_header(key).unwrap_err().is_not_found());
        assert!(n.list().unwrap().shards.is_empty());
        drop(srv);
    }

    /// A pending shard is its own node instance's: another client of the
    /// same server refuses it, typed, and the write is discarded there.
    #[test]
    fn another_clients_pending_shard_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let srv = serve(&dir.path().join("n"));
        let a = remote("node-0", &srv.addr, VAULT);
        let b = remote("node-0", &srv.addr, VAULT);
        let (p, _) = write(&a, ObjectId([0x44; 16]), 0, 1000);
        let key = p.key();
        let r = b.commit(vec![p]);
        assert_eq!(r.len(), 1);
        let e = r.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(e.kind, NodeErrorKind::NotIssued(_)), "{e}");
        assert!(a.read_header(key).unwrap_err().is_not_found());
        let l = b.list().unwrap();
        assert!(l.shards.is_empty() && l.leftovers.is_empty());
    }

    #[test]
    fn a_node_of_another_vault_or_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let srv = serve(&dir.path().join("n"));
        assert_eq!(remote("node-0", &srv.addr, VAULT).health(), NodeHealth::Ok);
        let stranger = remote("node-0", &srv.addr, &"f".repeat(32));
        match stranger.health() {
            NodeHealth::Foreign(why) => assert!(why.contains("not of vault"), "{why}"),
            other => panic!("{other:?}"),
        }
        let layout = StripeLayout::plan(2, 3, 100, 1 << 20).unwrap();
        let e = stranger
            .create(&ShardHeader::new(ObjectId([1; 16]), 0, &layout))
            .err()
            .unwrap();
        assert!(e.to_string().contains(VAULT), "{e}");
        match remote("node-1", &srv.addr, VAULT).health() {
            NodeHealth::Foreign(why) => assert!(why.contains("is node-0 of this vault"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dead_and_hung_servers_cost_a_timeout() {
        // Nothing listens: refused at once.
        let gone = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap().to_string();
        drop(gone);
        let n = remote_fast("node-0", &addr);
        match n.health() {
            NodeHealth::Offline(why) => assert!(why.contains(&addr), "{why}"),
            other => panic!("{other:?}"),
        }
        // Accepts (the kernel does) but never answers: one timeout, then
        // fast failures until the retry delay (a minute here) has passed.
        let hung = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = hung.local_addr().unwrap().to_string();
        let n = remote_fast("node-0", &addr);
        let start = Instant::now();
        match n.health() {
            NodeHealth::Offline(why) => assert!(why.contains("no answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(3));
        let start = Instant::now();
        let mut buf = [0u8; 4];
        let key = ShardKey {
            object: ObjectId([1; 16]),
            index: 0,
        };
        let e = n.read_at(key, 0, &mut buf).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.to_string().contains("not retried"), "{e}");
        drop(hung);
    }

    #[test]
    fn reconnects_after_a_server_restart() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("n");
        let srv = serve(&folder);
        let addr = srv.addr.clone();
        let n = remote("node-0", &addr, VAULT);
        let (p, payload) = write(&n, ObjectId([9; 16]), 0, 5000);
        let key = p.key();
        assert!(n.commit(vec![p]).iter().all(|r| r.is_ok()));
        drop(srv);
        // The pooled channel is dead now; the next operation reconnects.
        let _srv = serve_on(&folder, &addr);
        let mut buf = vec![0u8; payload.len()];
        n.read_at(key, 0, &mut buf).unwrap();
        assert!(buf == payload);
    }
}
