//! The write of one shard. A shard whose payload fits in one message goes
//! as one `Put` at its finish (one round trip). A larger one is streamed:
//! `Create`, then `Data` messages of up to [`MAX_DATA`] bytes on the same
//! channel, then `Finish`. Either way the answer is a token that waits in
//! the node's pending table for a commit.

use std::sync::Arc;

use super::pool::{Inner, Lease};
use crate::node::pending::PendingTable;
use std::sync::atomic::Ordering;

use super::rpc::Failure;
use crate::node::wire::msg::{DATA_TAG, PUT_TAG};
use crate::node::wire::{ErrorKind, MAX_DATA, Request, Response};
use crate::node::{
    HEADER_LEN, NodeError, NodeErrorKind, PendingShard, ShardHeader, ShardKey, ShardSink,
};

/// Starts a streamed write: the server accepts the `Create` before any
/// data goes.
pub(super) fn create_streamed(
    inner: &Arc<Inner>,
    pending: &Arc<PendingTable<ServerPending>>,
    header: &ShardHeader,
) -> Result<Box<dyn ShardSink>, NodeError> {
    let key = header.key;
    let req = Request::Create(*header).encode();
    let (lease, ()) = inner
        .lease_with(|l| {
            l.call(&req, |r| match r {
                Response::Ok => Some(()),
                _ => None,
            })
        })
        .map_err(|f| inner.err(f, "write shard", Some(key)))?;
    Ok(Box::new(RemoteSink::new(
        Arc::clone(inner),
        lease,
        key,
        Arc::clone(pending),
    )))
}

/// A small shard gathered in memory and sent as one `Put` at its finish.
pub(super) struct PutSink {
    inner: Arc<Inner>,
    header: ShardHeader,
    /// The `Put` message: its tag, the header, then the payload so far.
    msg: Vec<u8>,
    pending: Arc<PendingTable<ServerPending>>,
}

impl PutSink {
    pub(super) fn new(
        inner: Arc<Inner>,
        header: ShardHeader,
        pending: Arc<PendingTable<ServerPending>>,
    ) -> PutSink {
        let payload = usize::try_from(header.payload_len()).unwrap_or(MAX_DATA);
        let mut msg = Vec::with_capacity(1 + HEADER_LEN + payload.min(MAX_DATA));
        msg.push(PUT_TAG);
        msg.extend_from_slice(&header.encode());
        PutSink {
            inner,
            header,
            msg,
            pending,
        }
    }

    /// The same shard streamed, for a server from before `Put`.
    fn streamed(&self) -> Result<PendingShard, NodeError> {
        let mut sink = create_streamed(&self.inner, &self.pending, &self.header)?;
        sink.write(&self.msg[1 + HEADER_LEN..])?;
        sink.finish()
    }
}

impl ShardSink for PutSink {
    fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        // Not one byte past what the header announces (the server would
        // refuse the whole shard).
        let have = (self.msg.len() - 1 - HEADER_LEN) as u64;
        if have + data.len() as u64 > self.header.payload_len() {
            return Err(NodeError::new(
                &self.inner.name,
                "write shard",
                Some(self.header.key),
                NodeErrorKind::Protocol(format!(
                    "shard payload longer than its header's {} bytes",
                    self.header.payload_len()
                )),
            ));
        }
        self.msg.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<PendingShard, NodeError> {
        let key = self.header.key;
        let answer = self.inner.with_lease(|l| {
            l.call(&self.msg, |r| match r {
                Response::Pending(t) => Some(t),
                _ => None,
            })
        });
        let token = match answer {
            Ok(t) => t,
            Err(Failure::Remote(w)) if w.kind == ErrorKind::Protocol => {
                // The server closed that channel; this node's writes are
                // streamed from now on.
                self.inner.no_put.store(true, Ordering::Relaxed);
                tracing::info!(
                    "node {}: its server predates one-message shard writes; writing its shards streamed",
                    self.inner.name
                );
                return self.streamed();
            }
            Err(f) => return Err(self.inner.err(f, "write shard", Some(key))),
        };
        let write = ServerPending {
            inner: Arc::clone(&self.inner),
            key,
            token,
            done: false,
        };
        Ok(self.pending.issue(key, write))
    }
}

/// A shard being streamed to the server.
pub(super) struct RemoteSink {
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
    /// A write whose `Create` the server accepted on `lease`.
    pub(super) fn new(
        inner: Arc<Inner>,
        lease: Lease,
        key: ShardKey,
        pending: Arc<PendingTable<ServerPending>>,
    ) -> RemoteSink {
        let mut msg = Vec::with_capacity(MAX_DATA + 1);
        msg.push(DATA_TAG);
        RemoteSink {
            inner,
            lease: Some(lease),
            key,
            msg,
            pending,
        }
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        let lease = self.lease.as_mut().ok_or_else(|| {
            NodeError::new(
                &self.inner.name,
                "write shard",
                Some(self.key),
                NodeErrorKind::Offline("the write already failed".into()),
            )
        })?;
        lease.arm();
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
pub(super) struct ServerPending {
    pub(super) inner: Arc<Inner>,
    pub(super) key: ShardKey,
    pub(super) token: u64,
    /// Committed (or its commit answered): nothing to discard.
    pub(super) done: bool,
}

impl Drop for ServerPending {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: otherwise the server drops it when it expires.
            self.inner.discard(self.token);
        }
    }
}

impl Inner {
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
