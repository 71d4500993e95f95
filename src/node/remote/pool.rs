//! The connections of one remote node: a small pool of channels, each
//! opened with a connect timeout, the configured transport and a hello,
//! reused while it works, dropped when it fails. After a *timeout* the
//! node counts as down for [`RemoteOptions::retry_after`], so a hung node
//! costs one timeout, not one per chunk.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::rpc::{Failure, tag_of};
use crate::node::NodeHealth;
use crate::node::conn::{Conn, Deadline, LocalDialer};
use crate::node::transport::Transport;
use crate::node::wire::{ErrorKind, Request, Response, VERSION, WireError};
use crate::qkd::Channel;

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
    /// Longest time for one whole request and its answer (a shard read,
    /// a data chunk of a write), however the node paces its bytes.
    pub request_timeout: Duration,
    /// Longest time for a whole listing of the node.
    pub list_timeout: Duration,
    /// Most entries (shards and leftovers) a listing may hold: a node
    /// that sends more is misbehaving, not big.
    pub max_list_entries: usize,
    /// Most bytes of leftover names a listing may hold.
    pub max_list_bytes: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(30),
            max_idle: 4,
            max_channels: 16,
            retry_after: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            list_timeout: Duration::from_secs(300),
            // About 130 MB of shard entries.
            max_list_entries: 4 << 20,
            max_list_bytes: 64 << 20,
        }
    }
}

/// How a node is reached.
#[derive(Debug, Clone)]
pub(super) enum Dial {
    /// TCP to an address (`host:port`).
    Tcp,
    /// A node served in this process.
    Local(LocalDialer),
}

/// A channel and the deadline of its connection.
pub(super) struct Pooled {
    pub(super) chan: Box<dyn Channel>,
    pub(super) deadline: Deadline,
}

pub(super) struct Inner {
    pub(super) name: String,
    pub(super) address: String,
    dial: Dial,
    vault_id: String,
    transport: Transport,
    pub(super) opts: RemoteOptions,
    /// Shown instead of the address (an in-process node's folder).
    pub(super) shown: Option<String>,
    pool: Mutex<Pool>,
    freed: Condvar,
    pub(super) health: Mutex<Option<(Instant, NodeHealth)>>,
    /// The server answered a `Put` with a protocol error (a server from
    /// before `Put`): its shards are written streamed.
    pub(super) no_put: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Pooled>,
    open: usize,
    /// Set after a timeout: when, and why.
    down: Option<(Instant, String)>,
}

impl Inner {
    /// The connection state of node `name` of vault `vault_id` at
    /// `address`; nothing is connected until the first lease.
    pub(super) fn new(
        name: &str,
        address: &str,
        dial: Dial,
        vault_id: &str,
        transport: Transport,
        opts: RemoteOptions,
    ) -> Inner {
        Inner {
            name: name.to_string(),
            address: address.to_string(),
            dial,
            vault_id: vault_id.to_string(),
            transport,
            opts,
            shown: None,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            health: Mutex::new(None),
            no_put: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    pub(super) fn closed(&self, f: &Failure) {
        let why = match f {
            Failure::Transport { detail, .. } => Some(detail.clone()),
            Failure::Misbehaving(detail) => Some(format!("misbehaving: {detail}")),
            Failure::Remote(_) => None,
        };
        let mut pool = self.lock_pool();
        pool.open = pool.open.saturating_sub(1);
        // A node that hung or misbehaved is left alone for a while.
        if let (Failure::Transport { timeout: true, .. } | Failure::Misbehaving(_), Some(why)) =
            (f, &why)
        {
            pool.down = Some((Instant::now(), why.clone()));
        }
        drop(pool);
        self.freed.notify_one();
        if let Some(why) = why {
            *self
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((
                Instant::now(),
                NodeHealth::Offline(format!("{}: {why}", self.address)),
            ));
        }
    }

    /// Opens the connection: TCP with a timeout, or an in-process pair.
    fn open_conn(&self) -> Result<Conn, Failure> {
        let transport_err = |detail: String, timeout: bool| Failure::Transport { detail, timeout };
        let (io, dialer) = (self.opts.io_timeout, &self.dial);
        if let Dial::Local(d) = dialer {
            return d
                .dial()
                .and_then(|s| Conn::local(s, io, io))
                .map_err(|e| transport_err(format!("cannot connect: {e}"), false));
        }
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
        Conn::tcp(stream, io, io)
            .map_err(|e| transport_err(format!("cannot set up the connection: {e}"), false))
    }

    /// Asks the server whose node its folder is (an empty hello, answered
    /// only over a keyed link); the connection is closed after.
    pub(super) fn identify(&self) -> Result<(String, String), Failure> {
        let stream = self.open_conn()?;
        stream
            .deadline()
            .set(Instant::now() + self.opts.request_timeout);
        let mut chan = (self.transport)(stream).map_err(|e| self.channel_failure(&e))?;
        let hello = Request::Hello {
            version: VERSION,
            vault_id: String::new(),
            node: String::new(),
        }
        .encode();
        chan.send(&hello).map_err(|e| self.channel_failure(&e))?;
        let answer = chan.recv().map_err(|e| self.channel_failure(&e))?;
        match Response::decode(&answer) {
            Ok(Response::HelloOk { vault_id, node, .. }) => Ok((vault_id, node)),
            Ok(Response::Error(e)) => Err(Failure::Remote(e)),
            Ok(other) => Err(Failure::Misbehaving(format!(
                "unexpected answer to hello: {:?}",
                tag_of(&other)
            ))),
            Err(e) => Err(Failure::Misbehaving(format!(
                "undecodable answer to hello: {e}"
            ))),
        }
    }

    /// Connects, builds the channel and says hello, all within one
    /// request deadline.
    fn connect(&self) -> Result<Pooled, Failure> {
        let transport_err = |detail: String, timeout: bool| Failure::Transport { detail, timeout };
        let stream = self.open_conn()?;
        let deadline = stream.deadline();
        deadline.set(Instant::now() + self.opts.request_timeout);
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
                deadline.clear();
                Ok(Pooled { chan, deadline })
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
    /// Runs `f` on a channel and keeps the channel (a write stream); a
    /// stale idle channel (the server restarted) is replaced once.
    pub(super) fn lease_with<T>(
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
    pub(super) fn with_lease<T>(
        self: &Arc<Self>,
        f: impl FnMut(&mut Lease) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let (lease, v) = self.lease_with(f)?;
        lease.done();
        Ok(v)
    }
}

pub(super) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A channel borrowed from the pool. Dropped without [`Lease::done`] (an
/// interrupted write), the connection is closed, which tells the server
/// to drop what it was receiving.
pub(super) struct Lease {
    pub(super) inner: Arc<Inner>,
    pub(super) chan: Option<Pooled>,
    reused: bool,
}
impl Lease {
    pub(super) fn fail(&mut self, f: Failure) -> Failure {
        if self.chan.take().is_some() {
            self.inner.closed(&f);
        }
        f
    }

    /// Gives the channel back to the pool.
    pub(super) fn done(mut self) {
        if let Some(chan) = self.chan.take() {
            chan.deadline.clear();
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{VAULT, remote, remote_fast, serve, serve_on, write};
    use crate::ObjectId;
    use crate::node::{HealthCheck, NodeHealth, ShardKey, ShardStore};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

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
        assert!(n.commit(vec![p]).iter().all(std::result::Result::is_ok));
        drop(srv);
        // The pooled channel is dead now; the next operation reconnects.
        let _srv = serve_on(&folder, &addr);
        let mut buf = vec![0u8; payload.len()];
        n.read_at(key, 0, &mut buf).unwrap();
        assert!(buf == payload);
    }
}
