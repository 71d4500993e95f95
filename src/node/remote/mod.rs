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
//!
//! ```text
//! mod.rs    RemoteNode: the node traits, one request each
//! pool.rs   the channels: connect, hello, reuse, the down-after-timeout rule
//! rpc.rs    one exchange on a channel, and what its failure means
//! sink.rs   the streamed shard write and its pending token
//! ```

mod pool;
mod rpc;
mod sink;

use std::sync::Arc;
use std::time::{Duration, Instant};

use self::pool::{Dial, Inner};
use self::rpc::Failure;
use self::sink::{PutSink, ServerPending};
use super::conn::LocalDialer;
use super::header::{ShardHeader, ShardKey};
use super::pending::PendingTable;
use super::transport::Transport;
use super::wire::{ErrorKind, MAX_DATA, MAX_TOKENS, Request, Response, WireError};
use super::{
    HealthCheck, Listing, Node, NodeError, NodeErrorKind, NodeHealth, PendingShard, Prover,
    ShardSink, ShardStore,
};
use crate::ObjectId;

pub use self::pool::RemoteOptions;

/// How long a health answer stays valid.
const HEALTH_TTL: Duration = Duration::from_secs(1);

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
            inner: Arc::new(Inner::new(
                name,
                address,
                Dial::Tcp,
                vault_id,
                transport,
                opts,
            )),
            pending: PendingTable::new(),
        }
    }

    /// A node named `name` served inside this process, reached through
    /// `dialer` (socket pairs: no address anybody else could reach).
    pub fn local(
        name: &str,
        dialer: LocalDialer,
        vault_id: &str,
        transport: Transport,
        opts: RemoteOptions,
    ) -> RemoteNode {
        RemoteNode {
            inner: Arc::new(Inner::new(
                name,
                "in-process",
                Dial::Local(dialer),
                vault_id,
                transport,
                opts,
            )),
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

    /// Asks the node server at `address` whose node it is: (vault id, node
    /// name). Answered only over a QKD-keyed link (`transport`), whose keys
    /// prove this end is the vault's; `qsfs recover` starts from it.
    pub fn identify(
        address: &str,
        transport: Transport,
        opts: RemoteOptions,
    ) -> Result<(String, String), NodeError> {
        let inner = Inner::new("(unknown node)", address, Dial::Tcp, "", transport, opts);
        inner
            .identify()
            .map_err(|f| inner.err(f, "ask whose node it is", None))
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

impl Node for RemoteNode {
    fn location(&self) -> String {
        self.inner
            .shown
            .clone()
            .unwrap_or_else(|| self.inner.address.clone())
    }
}

impl HealthCheck for RemoteNode {
    fn cached_health(&self) -> Option<NodeHealth> {
        let cache = self
            .inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::node::fresh_health(cache.as_ref(), HEALTH_TTL)
    }

    fn health(&self) -> NodeHealth {
        let inner = &self.inner;
        if let Some(h) = self.cached_health() {
            return h;
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
            Err(Failure::Misbehaving(detail)) => {
                NodeHealth::Offline(format!("{}: misbehaving: {detail}", inner.address))
            }
        };
        *inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), h.clone()));
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
                Failure::Transport { detail, .. } | Failure::Misbehaving(detail) => {
                    format!("{}: {detail}", self.inner.address)
                }
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
        if header.payload_len() <= MAX_DATA as u64
            && !self.inner.no_put.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(Box::new(PutSink::new(
                Arc::clone(&self.inner),
                *header,
                Arc::clone(&self.pending),
            )));
        }
        sink::create_streamed(&self.inner, &self.pending, header)
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
                    *self
                        .inner
                        .health
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
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

    /// The node's listing, in pages, within caps: a node that sends more
    /// entries or bytes than [`RemoteOptions::max_list_entries`] and
    /// [`RemoteOptions::max_list_bytes`], or takes longer than
    /// [`RemoteOptions::list_timeout`], is reported as misbehaving instead
    /// of filling this process's memory.
    fn list(&self) -> Result<Listing, NodeError> {
        let req = Request::List.encode();
        let opts = self.inner.opts;
        self.inner
            .with_lease(|l| {
                let mut listing = Listing::default();
                let mut entries = 0usize;
                let mut bytes = 0usize;
                l.deadline_in(opts.list_timeout);
                l.send(&req)?;
                loop {
                    let page = l.reply(|r| match r {
                        Response::ListPage {
                            last,
                            shards,
                            leftovers,
                        } => Some((last, shards, leftovers)),
                        _ => None,
                    })?;
                    let (last, shards, leftovers) = page;
                    entries += shards.len() + leftovers.len();
                    bytes += leftovers.iter().map(String::len).sum::<usize>();
                    // An empty page that is not the last one carries
                    // nothing: it counts as an entry, so pages are capped.
                    if !last && shards.is_empty() && leftovers.is_empty() {
                        entries += 1;
                    }
                    if entries > opts.max_list_entries || bytes > opts.max_list_bytes {
                        // The channel is mid-listing: it cannot be reused.
                        return Err(l.fail(Failure::Misbehaving(format!(
                            "its listing passed {} entries or {} MiB of names (at most {} \
                             and {} MiB); the listing was abandoned",
                            entries,
                            bytes >> 20,
                            opts.max_list_entries,
                            opts.max_list_bytes >> 20
                        ))));
                    }
                    listing.shards.extend(shards);
                    listing
                        .leftovers
                        .extend(leftovers.into_iter().map(Into::into));
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
        // Refused here too, so a bad block size never reaches the wire.
        crate::node::proof::check_challenge(challenge).map_err(|d| {
            NodeError::new(
                &self.inner.name,
                "prove possession",
                Some(key),
                NodeErrorKind::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, d)),
            )
        })?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;
    use crate::node::server::{ServeOptions, Server, StopHandle};
    use crate::node::transport::plain_transport;
    use std::path::Path;

    pub(super) const VAULT: &str = "0123456789abcdef0123456789abcdef";

    pub(super) struct Running {
        stop: StopHandle,
        thread: Option<std::thread::JoinHandle<()>>,
        pub(super) addr: String,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.stop();
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    pub(super) fn serve_on(dir: &Path, listen: &str) -> Running {
        std::fs::create_dir_all(dir).unwrap();
        let server = Server::bind(
            ServeOptions::new(dir, listen),
            plain_transport("test server"),
        )
        .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let stop = server.stop_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Running { stop, thread, addr }
    }

    pub(super) fn serve(dir: &Path) -> Running {
        serve_on(dir, "127.0.0.1:0")
    }

    /// Short timeouts, for the tests of timeouts only: elsewhere a slow
    /// fsync on a loaded machine must not read as a dead node.
    pub(super) fn fast() -> RemoteOptions {
        RemoteOptions {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_millis(400),
            retry_after: Duration::from_secs(60),
            ..RemoteOptions::default()
        }
    }

    pub(super) fn remote(name: &str, addr: &str, vault: &str) -> RemoteNode {
        RemoteNode::new(
            name,
            addr,
            vault,
            plain_transport(name),
            RemoteOptions::default(),
        )
    }

    pub(super) fn remote_fast(name: &str, addr: &str) -> RemoteNode {
        RemoteNode::new(name, addr, VAULT, plain_transport(name), fast())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Writes shard `index` of `object` with a payload of about `len` bytes.
    pub(super) fn write(
        n: &RemoteNode,
        object: ObjectId,
        index: u8,
        len: usize,
    ) -> (PendingShard, Vec<u8>) {
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
        assert!(n.commit(pendings).iter().all(std::result::Result::is_ok));
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
            NodeHealth::Foreign(why) => assert!(
                why.contains("belongs to another vault") && !why.contains(VAULT),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        let layout = StripeLayout::plan(2, 3, 100, 1 << 20).unwrap();
        // A small shard goes as one `Put` at its finish, so that is where
        // the refusal comes.
        let header = ShardHeader::new(ObjectId([1; 16]), 0, &layout);
        let e = stranger
            .create(&header)
            .and_then(|mut s| {
                s.write(&vec![0; header.payload_len() as usize])?;
                s.finish()
            })
            .err()
            .unwrap();
        // The stranger learns that the folder is another vault's, never which.
        assert!(e.to_string().contains("belongs to another vault"), "{e}");
        assert!(!e.to_string().contains(VAULT), "{e}");
        match remote("node-1", &srv.addr, VAULT).health() {
            NodeHealth::Foreign(why) => assert!(why.contains("is node-0 of this vault"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
