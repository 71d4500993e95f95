//! The streamed write of one shard: `Create` (sent by the node), then
//! `Data` messages of up to [`MAX_DATA`] bytes on the same channel, then
//! `Finish`, whose token waits in the node's pending table for a commit.

use std::sync::Arc;

use super::pool::{Inner, Lease};
use crate::node::pending::PendingTable;
use crate::node::wire::msg::DATA_TAG;
use crate::node::wire::{MAX_DATA, Request, Response};
use crate::node::{NodeError, NodeErrorKind, PendingShard, ShardKey, ShardSink};

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
