//! Streaming an object out as shards: fill a stripe, encode its parity,
//! hand chunk `i` to the writer thread of shard `i`, which hashes it and
//! writes it to its node. All `n` nodes are written in parallel; memory is
//! a few stripes no matter how large the object is.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::erasure::{Codec, StripeLayout};
use crate::node::{Node, NodeError, PendingShard, ShardHeader};

/// Stripes queued per shard writer before the producer waits.
pub(super) const QUEUE: usize = 4;

/// Receives the bytes of one object and cuts them into encoded stripes.
pub struct ObjectWriter<'a> {
    layout: StripeLayout,
    codec: &'a Codec,
    stripe: Vec<u8>,
    filled: usize,
    written: u64,
    sent: u64,
    senders: Vec<Sender<Arc<Vec<u8>>>>,
    /// Stripes handed to the writers, oldest first; a buffer whose writers
    /// are all done with it is reused instead of faulting in fresh pages.
    in_flight: VecDeque<Arc<Vec<u8>>>,
}

impl<'a> ObjectWriter<'a> {
    pub(super) fn new(
        layout: StripeLayout,
        codec: &'a Codec,
        senders: Vec<Sender<Arc<Vec<u8>>>>,
    ) -> Self {
        let stripe = vec![0u8; layout.n * layout.chunk as usize];
        ObjectWriter {
            layout,
            codec,
            stripe,
            filled: 0,
            written: 0,
            sent: 0,
            senders,
            in_flight: VecDeque::new(),
        }
    }

    /// Object bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn emit(&mut self) -> io::Result<()> {
        let chunk = self.layout.chunk as usize;
        let k = self.layout.k;
        let next = self
            .recycle()
            .unwrap_or_else(|| vec![0u8; self.layout.n * chunk]);
        let mut full = std::mem::replace(&mut self.stripe, next);
        {
            let (data, parity) = full.split_at_mut(k * chunk);
            let data: Vec<&[u8]> = data.chunks(chunk).collect();
            let mut parity: Vec<&mut [u8]> = parity.chunks_mut(chunk).collect();
            self.codec
                .encode(&data, &mut parity)
                .map_err(io::Error::other)?;
        }
        let full = Arc::new(full);
        for tx in &self.senders {
            // A writer thread never leaves before its channel closes, so a
            // failed send can only mean it panicked; its shard then counts
            // as not written.
            let _ = tx.send(Arc::clone(&full));
        }
        if self.in_flight.len() > QUEUE + 2 {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(full);
        self.filled = 0;
        self.sent += 1;
        Ok(())
    }

    /// The oldest sent stripe buffer, if every writer has finished with it.
    /// Its data part is overwritten by the next stripe (the last stripe
    /// zeroes its own padding) and encoding overwrites the parity part.
    fn recycle(&mut self) -> Option<Vec<u8>> {
        if self.sent + 1 >= self.layout.stripes {
            return None;
        }
        let oldest = self.in_flight.front()?;
        if Arc::strong_count(oldest) != 1 {
            return None;
        }
        self.in_flight
            .pop_front()
            .and_then(|a| Arc::try_unwrap(a).ok())
    }

    /// Pads and sends the last stripe; checks the length matched the plan.
    pub(super) fn finish(mut self) -> io::Result<()> {
        if self.written != self.layout.object_len {
            return Err(io::Error::other(format!(
                "object stream ended after {} of {} bytes",
                self.written, self.layout.object_len
            )));
        }
        if self.filled > 0 || self.sent < self.layout.stripes {
            let data_len = self.layout.k * self.layout.chunk as usize;
            self.stripe[self.filled..data_len].fill(0);
            self.emit()?;
        }
        self.senders.clear();
        Ok(())
    }
}

impl io::Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.layout.object_len {
            return Err(io::Error::other(format!(
                "object stream longer than planned ({} bytes)",
                self.layout.object_len
            )));
        }
        let data_len = self.layout.k * self.layout.chunk as usize;
        let mut rest = buf;
        while !rest.is_empty() {
            let n = rest.len().min(data_len - self.filled);
            self.stripe[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
            self.filled += n;
            self.written += n as u64;
            rest = &rest[n..];
            if self.filled == data_len {
                self.emit()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one shard writer thread produced.
pub(super) struct ShardOutcome {
    pub hashes: Vec<[u8; 32]>,
    /// RMHT root of the shard's payload (rmht.rs).
    pub root: [u8; 32],
    pub result: Result<PendingShard, NodeError>,
}

/// Body of the writer thread of shard `index`: hash every chunk (the
/// manifest needs all hashes, even of a shard whose node failed, so a later
/// repair can verify what it rebuilds) and write it to the node, then the
/// shard's key piece if it has one (not hashed: see `node::header`).
pub(super) fn shard_writer(
    node: &dyn Node,
    header: ShardHeader,
    rx: Receiver<Arc<Vec<u8>>>,
    piece: Option<&[u8]>,
) -> ShardOutcome {
    let index = header.key.index as usize;
    let chunk = header.chunk as usize;
    let mut hashes = Vec::with_capacity(header.stripes as usize);
    let mut tree = crate::rmht::Builder::new(crate::rmht::BLOCK);
    let mut sink = node.create(&header);
    for stripe in rx {
        let c = &stripe[index * chunk..(index + 1) * chunk];
        hashes.push(*blake3::hash(c).as_bytes());
        tree.update(c);
        if let Ok(s) = sink.as_mut()
            && let Err(e) = s.write(c)
        {
            sink = Err(e);
        }
    }
    if let (Ok(s), Some(p)) = (sink.as_mut(), piece)
        && let Err(e) = s.write(p)
    {
        sink = Err(e);
    }
    ShardOutcome {
        hashes,
        root: tree.finish().0,
        result: sink.and_then(super::super::node::ShardSink::finish),
    }
}

/// Every shard of a whole object held in memory: shard `i` is chunk `i` of
/// each stripe, back to back (the last stripe zero-padded).
pub(super) fn encode_all(
    layout: &StripeLayout,
    codec: &Codec,
    object: &[u8],
) -> io::Result<Vec<Vec<u8>>> {
    let chunk = layout.chunk as usize;
    let k = layout.k;
    let mut shards = vec![Vec::with_capacity(layout.shard_len() as usize); layout.n];
    let mut stripe = vec![0u8; layout.n * chunk];
    for s in 0..layout.stripes {
        let (start, end) = layout.stripe_range(s);
        let data_len = k * chunk;
        stripe[..data_len].fill(0);
        stripe[..(end - start) as usize].copy_from_slice(&object[start as usize..end as usize]);
        {
            let (data, parity) = stripe.split_at_mut(data_len);
            let data: Vec<&[u8]> = data.chunks(chunk).collect();
            let mut parity: Vec<&mut [u8]> = parity.chunks_mut(chunk).collect();
            codec.encode(&data, &mut parity).map_err(io::Error::other)?;
        }
        for (i, c) in stripe.chunks(chunk).enumerate() {
            shards[i].extend_from_slice(c);
        }
    }
    Ok(shards)
}
