//! Reading an object back: any `k` chunks per stripe whose hashes verify.
//!
//! Whole-object reads run one reader thread per chosen shard, each walking
//! its shard front to back (so reads are sequential on every node and run
//! ahead of the consumer); a chunk that is missing, short or fails its hash
//! retires that shard and a spare shard takes over from the same stripe.
//! Range reads fetch only the data chunks covering the range, and fall back
//! to a full-stripe decode when one of them is bad.

use std::io;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::manifest::Manifest;
use super::{Dispersal, DispersalError};
use crate::erasure::Codec;
use crate::node::{Node, ShardKey};

/// Shards found bad while reading, with the reason; reported to the user
/// and recorded as repair debt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// (shard index, node, reason) for every shard that failed.
    pub bad: Vec<(u8, String, String)>,
}

impl ReadReport {
    fn add(&mut self, shard: usize, node: &str, why: String) {
        if !self.bad.iter().any(|(i, _, _)| *i as usize == shard) {
            self.bad.push((shard as u8, node.to_string(), why));
        }
    }

    /// Bitmask of bad shards.
    pub fn mask(&self) -> u32 {
        self.bad.iter().fold(0, |m, (i, _, _)| m | (1 << i))
    }

    fn describe(&self) -> String {
        self.bad.iter().map(|(i, node, why)| format!("shard {i} on {node}: {why}")).collect::<Vec<_>>().join("; ")
    }
}

/// One object's shards, resolved to nodes.
pub(super) struct ObjectShards<'a> {
    pub manifest: &'a Manifest,
    pub nodes: Vec<Option<Arc<dyn Node>>>,
    pub codec: Arc<Codec>,
}

impl ObjectShards<'_> {
    fn node_name(&self, i: usize) -> &str {
        &self.manifest.placement[i]
    }

    /// Reads chunk `shard` of `stripe` and checks it against the manifest.
    pub fn fetch_chunk(&self, stripe: u64, shard: usize) -> Result<Vec<u8>, String> {
        let m = self.manifest;
        let node = self.nodes[shard].as_ref().ok_or_else(|| "node is not in the vault config".to_string())?;
        let mut buf = vec![0u8; m.layout.chunk as usize];
        let key = ShardKey { object: m.id, index: shard as u8 };
        node.read_at(key, m.layout.chunk_offset(stripe), &mut buf).map_err(|e| {
            if e.is_not_found() { "missing".to_string() } else { e.kind.to_string() }
        })?;
        if blake3::hash(&buf).as_bytes() != m.hash(stripe, shard) {
            return Err(format!("chunk of stripe {stripe} fails its hash (corrupt)"));
        }
        Ok(buf)
    }

    /// Shards in the order reads should try them: data shards first (no
    /// decoding needed), skipping those recorded missing.
    fn candidates(&self, bad: u32) -> Vec<usize> {
        let m = self.manifest;
        (0..m.layout.n).filter(|i| !m.is_missing(*i) && bad & (1 << i) == 0 && self.nodes[*i].is_some()).collect()
    }

    /// Rebuilds the data of `stripe` from whatever `k` chunks verify.
    pub fn fetch_stripe(&self, stripe: u64, report: &mut ReadReport) -> Result<Vec<u8>, DispersalError> {
        let l = &self.manifest.layout;
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; l.n];
        let mut have = 0;
        for i in self.candidates(report.mask()) {
            if have == l.k {
                break;
            }
            match self.fetch_chunk(stripe, i) {
                Ok(c) => {
                    chunks[i] = Some(c);
                    have += 1;
                }
                Err(why) => report.add(i, self.node_name(i), why),
            }
        }
        self.decode(stripe, chunks, report)
    }

    /// Every shard this read could not use: the ones it found bad, plus the
    /// ones it skipped because they are already recorded as missing (repair
    /// debt) or their node is not configured, so an "unreadable" error
    /// names all of them and not only the ones that failed just now.
    fn describe_unusable(&self, report: &ReadReport) -> String {
        let mut parts = Vec::new();
        if !report.bad.is_empty() {
            parts.push(report.describe());
        }
        for i in 0..self.manifest.layout.n {
            if report.bad.iter().any(|(j, _, _)| *j as usize == i) {
                continue;
            }
            if self.manifest.is_missing(i) {
                parts.push(format!("shard {i} on {}: recorded missing (repair debt)", self.node_name(i)));
            } else if self.nodes[i].is_none() {
                parts.push(format!("shard {i} on {}: node is not in the vault config", self.node_name(i)));
            }
        }
        parts.join("; ")
    }

    /// Joins the data chunks of a stripe, decoding if some are missing.
    fn decode(
        &self,
        stripe: u64,
        mut chunks: Vec<Option<Vec<u8>>>,
        report: &ReadReport,
    ) -> Result<Vec<u8>, DispersalError> {
        let l = &self.manifest.layout;
        let chunk = l.chunk as usize;
        let have = chunks.iter().filter(|c| c.is_some()).count();
        if have < l.k {
            return Err(DispersalError::Unreadable {
                object: self.manifest.id,
                stripe,
                have,
                k: l.k,
                detail: self.describe_unusable(report),
            });
        }
        if chunks[..l.k].iter().any(|c| c.is_none()) {
            let present: Vec<bool> = chunks.iter().map(|c| c.is_some()).collect();
            let mut bufs: Vec<Vec<u8>> = chunks.iter_mut().map(|c| c.take().unwrap_or_else(|| vec![0u8; chunk])).collect();
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            self.codec.reconstruct(&mut refs, &present, true)?;
            chunks = bufs.into_iter().map(Some).collect();
        }
        let (start, end) = l.stripe_range(stripe);
        let mut out = Vec::with_capacity(l.stripe_bytes() as usize);
        for c in chunks.into_iter().take(l.k).flatten() {
            out.extend_from_slice(&c);
        }
        out.truncate((end - start) as usize);
        Ok(out)
    }

    /// Reads `buf.len()` bytes of the object at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8], report: &mut ReadReport) -> Result<(), DispersalError> {
        let l = self.manifest.layout;
        let end = offset + buf.len() as u64;
        if end > l.object_len {
            return Err(DispersalError::Range { object: self.manifest.id, offset, len: buf.len() as u64 });
        }
        let mut pos = offset;
        while pos < end {
            let (stripe, first, _) = l.locate(pos);
            let (s_start, s_end) = l.stripe_range(stripe);
            let upto = end.min(s_end);
            let (_, last, _) = l.locate(upto - 1);
            // Try the covering data chunks alone; fall back to the stripe.
            let mut direct = Vec::with_capacity(last - first + 1);
            for i in first..=last {
                if report.mask() & (1 << i) != 0 || self.manifest.is_missing(i) {
                    break;
                }
                match self.fetch_chunk(stripe, i) {
                    Ok(c) => direct.push(c),
                    Err(why) => {
                        report.add(i, self.node_name(i), why);
                        break;
                    }
                }
            }
            let chunk = l.chunk as u64;
            let dst = &mut buf[(pos - offset) as usize..(upto - offset) as usize];
            if direct.len() == last - first + 1 {
                let base = s_start + first as u64 * chunk;
                let joined: Vec<u8> = direct.concat();
                dst.copy_from_slice(&joined[(pos - base) as usize..(upto - base) as usize]);
            } else {
                let data = self.fetch_stripe(stripe, report)?;
                dst.copy_from_slice(&data[(pos - s_start) as usize..(upto - s_start) as usize]);
            }
            pos = upto;
        }
        Ok(())
    }
}

type ChunkMsg = (u64, Result<Vec<u8>, String>);

/// Starts a thread that reads shard `i` from `from` onwards.
fn spawn_shard_reader<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    shards: &'env ObjectShards<'env>,
    shard: usize,
    from: u64,
) -> Receiver<ChunkMsg> {
    let (tx, rx) = bounded::<ChunkMsg>(4);
    scope.spawn(move || {
        for s in from..shards.manifest.layout.stripes {
            let r = shards.fetch_chunk(s, shard);
            let failed = r.is_err();
            if tx.send((s, r)).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Produces the object's bytes stripe by stripe into `out`.
pub(super) fn stream_object<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    shards: &'env ObjectShards<'env>,
    out: Sender<Result<Vec<u8>, DispersalError>>,
) -> ReadReport {
    let l = shards.manifest.layout;
    let mut report = ReadReport::default();
    let mut tried: u32 = 0;
    let mut active: Vec<(usize, Receiver<ChunkMsg>)> = Vec::new();
    let mut spare = shards.candidates(0).into_iter();
    for i in spare.by_ref().take(l.k) {
        tried |= 1 << i;
        active.push((i, spawn_shard_reader(scope, shards, i, 0)));
    }
    for stripe in 0..l.stripes {
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; l.n];
        let mut slot = 0;
        while slot < active.len() {
            let (i, rx) = &active[slot];
            let i = *i;
            let got = match rx.recv() {
                Ok((s, r)) if s == stripe => r,
                Ok((s, _)) => Err(format!("reader out of step (stripe {s}, wanted {stripe})")),
                Err(_) => Err("reader stopped".to_string()),
            };
            match got {
                Ok(c) => {
                    chunks[i] = Some(c);
                    slot += 1;
                }
                Err(why) => {
                    report.add(i, shards.node_name(i), why);
                    active.remove(slot);
                    if let Some(j) = spare.by_ref().find(|j| tried & (1 << j) == 0) {
                        tried |= 1 << j;
                        active.push((j, spawn_shard_reader(scope, shards, j, stripe)));
                    }
                }
            }
        }
        let data = shards.decode(stripe, chunks, &report);
        let failed = data.is_err();
        if out.send(data).is_err() || failed {
            break;
        }
    }
    report
}

/// The sealed object as a byte stream, fed by [`stream_object`].
pub struct ObjectStream {
    rx: Receiver<Result<Vec<u8>, DispersalError>>,
    cur: Vec<u8>,
    pos: usize,
    error: Option<String>,
}

impl ObjectStream {
    pub(super) fn new(rx: Receiver<Result<Vec<u8>, DispersalError>>) -> Self {
        ObjectStream { rx, cur: Vec::new(), pos: 0, error: None }
    }
}

impl io::Read for ObjectStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.error {
            return Err(io::Error::other(e.clone()));
        }
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.error = Some(e.to_string());
                    return Err(io::Error::other(e.to_string()));
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Dispersal {
    /// Reads the whole object as a stream; `consume` runs on the calling
    /// thread while reader threads fetch ahead. Returns what `consume`
    /// returned and the shards found bad (or the error that stopped the read).
    pub fn read_stream<T>(
        &self,
        manifest: &Manifest,
        consume: impl FnOnce(ObjectStream) -> T,
    ) -> Result<(T, ReadReport), DispersalError> {
        let shards = self.shards_of(manifest)?;
        let (tx, rx) = bounded(2);
        let (value, report) = std::thread::scope(|scope| {
            let shards = &shards;
            let producer = scope.spawn(move || stream_object(scope, shards, tx));
            let value = consume(ObjectStream::new(rx));
            let report = producer.join();
            (value, report)
        });
        let report = report.map_err(|_| DispersalError::Internal("object reader thread panicked".into()))?;
        Ok((value, report))
    }

    /// Reads `buf.len()` object bytes at `offset`, verifying every chunk.
    pub fn read_at(
        &self,
        manifest: &Manifest,
        offset: u64,
        buf: &mut [u8],
        report: &mut ReadReport,
    ) -> Result<(), DispersalError> {
        self.shards_of(manifest)?.read_at(offset, buf, report)
    }
}
