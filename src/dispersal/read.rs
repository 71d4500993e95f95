//! Reading an object back: any `k` chunks per stripe whose hashes verify.
//!
//! Whole-object reads run one reader thread per chosen shard, each walking
//! its shard front to back (so reads are sequential on every node and run
//! ahead of the consumer). A chunk that is short or fails its hash is
//! replaced, for that stripe only, by a chunk of a spare shard: damage
//! scattered over several shards is tolerated as long as every stripe keeps
//! `k` good chunks. A shard whose file is gone, or that fails twice in a
//! row, is retired and a spare shard streams in its place. Shards already
//! recorded as missing are tried last, never skipped. Range reads fetch
//! only the data chunks covering the range, and fall back to a full-stripe
//! decode when one of them is bad.

use std::io;
use std::sync::Arc;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, bounded};

use super::manifest::Manifest;
use super::slow::SlowNodes;
use super::{Dispersal, DispersalError};
use crate::ObjectId;
use crate::erasure::Codec;
use crate::logsum::Cause;
use crate::node::{Node, NodeErrorKind, NodeHealth, ShardKey};

/// A shard a read could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadShard {
    /// Shard index.
    pub index: u8,
    /// Its node.
    pub node: String,
    /// The kind of failure (missing, damaged, node unreadable): what the
    /// log's summaries of repeated warnings count by.
    pub cause: Cause,
    /// What exactly failed.
    pub why: String,
}

/// Shards found bad while reading, with the reason; reported to the user
/// and recorded as repair debt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Every shard that failed, once.
    pub bad: Vec<BadShard>,
}

impl ReadReport {
    fn add(&mut self, shard: usize, node: &str, f: ChunkFault) {
        if f.slow {
            return;
        }
        self.push(BadShard {
            index: shard as u8,
            node: node.to_string(),
            cause: f.cause,
            why: f.why,
        });
    }

    /// Adds `b` unless its shard is already in the report.
    pub fn push(&mut self, b: BadShard) {
        if !self.bad.iter().any(|x| x.index == b.index) {
            self.bad.push(b);
        }
    }

    /// Bitmask of bad shards.
    pub fn mask(&self) -> u32 {
        self.bad.iter().fold(0, |m, b| m | (1 << b.index))
    }

    fn describe(&self) -> String {
        self.bad
            .iter()
            .map(|b| format!("shard {} on {}: {}", b.index, b.node, b.why))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Verified chunks (and decoded stripes, shard index 255) kept for range
/// reads: a mount reading 64 KiB segments would otherwise fetch and hash
/// the same 1 MiB chunk sixteen times.
pub type ChunkCache = crate::cache::ByteLru<(ObjectId, u64, u8), Vec<u8>>;

/// Shard index under which a decoded stripe is cached.
const STRIPE: u8 = u8::MAX;

/// One object's shards, resolved to nodes.
pub(super) struct ObjectShards<'a> {
    pub manifest: &'a Manifest,
    pub nodes: Vec<Option<Arc<dyn Node>>>,
    pub codec: Arc<Codec>,
    pub cache: Option<&'a ChunkCache>,
    pub slow: Arc<SlowNodes>,
    /// The manifest, owned, for fetch threads (made on first use).
    pub owned: std::sync::OnceLock<Arc<Manifest>>,
}

impl ObjectShards<'_> {
    fn node_name(&self, i: usize) -> &str {
        &self.manifest.placement[i]
    }

    /// Reads chunk `shard` of `stripe` and checks it against the manifest,
    /// hedged: the fetch runs on a thread of its own (a kept one,
    /// [`crate::workers`]), and if it is not
    /// back within [`SlowNodes::hedge_after`] the node is marked slow and
    /// the caller gets a `slow` fault, so it reads another shard instead
    /// of waiting out the node's request deadline.
    pub fn fetch_chunk(&self, stripe: u64, shard: usize) -> Result<Vec<u8>, ChunkFault> {
        let manifest = Arc::clone(self.owned.get_or_init(|| Arc::new(self.manifest.clone())));
        let node = self.nodes[shard].clone();
        let (tx, rx) = bounded(1);
        let started = Instant::now();
        let spawned = crate::workers::run("qsfs-fetch", move || {
            let _ = tx.send(fetch_chunk(&manifest, node.as_ref(), stripe, shard));
        });
        if spawned.is_err() {
            // No thread to spare: fetch here, unhedged.
            return fetch_chunk(self.manifest, self.nodes[shard].as_ref(), stripe, shard);
        }
        let wait = self.slow.hedge_after();
        match rx.recv_timeout(wait) {
            Ok(r) => {
                if r.is_ok() {
                    self.slow.note_fetch(started.elapsed());
                }
                r
            }
            Err(RecvTimeoutError::Timeout) => {
                let why = format!(
                    "its chunk of stripe {stripe} of object {} was not in after {:.1} s",
                    self.manifest.id,
                    wait.as_secs_f32()
                );
                self.slow.mark(self.node_name(shard), why.clone());
                Err(ChunkFault {
                    slow: true,
                    gone: false,
                    cause: Cause::NodeUnreadable,
                    why,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(ChunkFault {
                slow: false,
                gone: false,
                cause: Cause::NodeUnreadable,
                why: "the chunk reader stopped".to_string(),
            }),
        }
    }

    /// Whether shard `i`'s node was slow lately.
    fn is_slow(&self, i: usize) -> bool {
        self.slow.is_slow(self.node_name(i))
    }
}

/// Reads chunk `shard` of `stripe` from `node` and checks it against the
/// manifest; free of the object's other state, so a reader thread can own
/// what it needs and outlive the read that started it.
fn fetch_chunk(
    m: &Manifest,
    node: Option<&Arc<dyn Node>>,
    stripe: u64,
    shard: usize,
) -> Result<Vec<u8>, ChunkFault> {
    let node = node.ok_or_else(|| ChunkFault {
        slow: false,
        gone: true,
        cause: Cause::NodeUnreadable,
        why: "node is not in the vault config".to_string(),
    })?;
    let mut buf = vec![0u8; m.layout.chunk as usize];
    let key = ShardKey {
        object: m.id,
        index: shard as u8,
    };
    node.read_at(key, m.layout.chunk_offset(stripe), &mut buf)
        .map_err(|e| {
            // A node whose folder is gone (or unmarked, or whose server
            // is down) fails every read. What failed stays as it was
            // ("missing" for a shard file that is not there), but the
            // cause is the node, whose next step is to bring it back
            // or adopt a replacement, not a scrub (health is cached:
            // this costs nothing per read).
            let offline = !matches!(e.kind, NodeErrorKind::Corrupt(_))
                && matches!(node.health(), NodeHealth::Offline(_));
            if e.is_not_found() {
                ChunkFault {
                    slow: false,
                    gone: true,
                    cause: if offline {
                        Cause::NodeOffline
                    } else {
                        Cause::ShardMissing
                    },
                    why: "missing".to_string(),
                }
            } else {
                ChunkFault {
                    slow: false,
                    gone: false,
                    cause: match e.kind {
                        NodeErrorKind::Corrupt(_) => Cause::ShardCorrupt,
                        _ if offline => Cause::NodeOffline,
                        _ => Cause::NodeUnreadable,
                    },
                    why: e.kind.to_string(),
                }
            }
        })?;
    if blake3::hash(&buf).as_bytes() != m.hash(stripe, shard) {
        return Err(ChunkFault {
            slow: false,
            gone: false,
            cause: Cause::ShardCorrupt,
            why: format!("chunk of stripe {stripe} fails its hash (corrupt)"),
        });
    }
    Ok(buf)
}

impl ObjectShards<'_> {
    /// Every shard in the order reads should try it: data shards first (no
    /// decoding needed), then parity; shards on nodes found slow lately
    /// after those, and shards recorded missing last (their damage may be
    /// local to a few chunks); shards whose node is not configured are
    /// left out.
    fn candidates(&self) -> Vec<usize> {
        let m = self.manifest;
        let usable = |i: &usize| self.nodes[*i].is_some();
        let (good, recorded): (Vec<usize>, Vec<usize>) = (0..m.layout.n)
            .filter(usable)
            .partition(|i| !m.is_missing(*i));
        let (fast, slow): (Vec<usize>, Vec<usize>) =
            good.into_iter().partition(|i| !self.is_slow(*i));
        fast.into_iter().chain(slow).chain(recorded).collect()
    }

    /// Rebuilds the data of `stripe` from whatever `k` chunks verify,
    /// skipping shards in `skip` (known gone in this read).
    pub fn fetch_stripe(
        &self,
        stripe: u64,
        skip: u32,
        report: &mut ReadReport,
    ) -> Result<Vec<u8>, DispersalError> {
        let l = &self.manifest.layout;
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; l.n];
        let mut have = 0;
        for i in self.candidates() {
            if have == l.k {
                break;
            }
            if skip & (1 << i) != 0 {
                continue;
            }
            match self.fetch_chunk(stripe, i) {
                Ok(c) => {
                    chunks[i] = Some(c);
                    have += 1;
                }
                Err(f) => report.add(i, self.node_name(i), f),
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
            if report.bad.iter().any(|b| b.index as usize == i) {
                continue;
            }
            if self.manifest.is_missing(i) {
                parts.push(format!(
                    "shard {i} on {}: recorded missing (repair debt)",
                    self.node_name(i)
                ));
            } else if self.nodes[i].is_none() {
                parts.push(format!(
                    "shard {i} on {}: node is not in the vault config",
                    self.node_name(i)
                ));
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
        if chunks[..l.k].iter().any(std::option::Option::is_none) {
            let present: Vec<bool> = chunks.iter().map(std::option::Option::is_some).collect();
            let mut bufs: Vec<Vec<u8>> = chunks
                .iter_mut()
                .map(|c| c.take().unwrap_or_else(|| vec![0u8; chunk]))
                .collect();
            let mut refs: Vec<&mut [u8]> =
                bufs.iter_mut().map(std::vec::Vec::as_mut_slice).collect();
            self.codec.reconstruct(&mut refs, &present, true)?;
            // Rebuilt chunks must match the manifest too: a decoder fault
            // is then reported as such, not blamed on the object.
            for (i, b) in bufs.iter().enumerate().take(l.k) {
                if !present[i] && blake3::hash(b).as_bytes() != self.manifest.hash(stripe, i) {
                    return Err(DispersalError::Internal(format!(
                        "object {}: chunk {i} of stripe {stripe} rebuilt from parity does not match its hash",
                        self.manifest.id
                    )));
                }
            }
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

    /// `fetch_chunk` through the cache.
    fn cached_chunk(&self, stripe: u64, shard: usize) -> Result<Arc<Vec<u8>>, ChunkFault> {
        let key = (self.manifest.id, stripe, shard as u8);
        if let Some(c) = self.cache.and_then(|c| c.get(&key)) {
            return Ok(c);
        }
        let chunk = Arc::new(self.fetch_chunk(stripe, shard)?);
        if let Some(c) = self.cache {
            c.put(key, Arc::clone(&chunk), chunk.len());
        }
        Ok(chunk)
    }

    /// `fetch_stripe` through the cache.
    fn cached_stripe(
        &self,
        stripe: u64,
        skip: u32,
        report: &mut ReadReport,
    ) -> Result<Arc<Vec<u8>>, DispersalError> {
        let key = (self.manifest.id, stripe, STRIPE);
        if let Some(c) = self.cache.and_then(|c| c.get(&key)) {
            return Ok(c);
        }
        let data = Arc::new(self.fetch_stripe(stripe, skip, report)?);
        if let Some(c) = self.cache {
            c.put(key, Arc::clone(&data), data.len());
        }
        Ok(data)
    }

    /// Reads `buf.len()` bytes of the object at `offset`.
    pub fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        report: &mut ReadReport,
    ) -> Result<(), DispersalError> {
        let l = self.manifest.layout;
        let end = offset + buf.len() as u64;
        if end > l.object_len {
            return Err(DispersalError::Range {
                object: self.manifest.id,
                offset,
                len: buf.len() as u64,
            });
        }
        let chunk = l.chunk as u64;
        let mut gone = 0u32;
        let mut pos = offset;
        while pos < end {
            let (stripe, first, _) = l.locate(pos);
            let (s_start, s_end) = l.stripe_range(stripe);
            let upto = end.min(s_end);
            let (_, last, _) = l.locate(upto - 1);
            // Try the covering data chunks alone; fall back to the stripe.
            let mut direct = Vec::with_capacity(last - first + 1);
            for i in first..=last {
                if gone & (1 << i) != 0 || self.manifest.is_missing(i) || self.is_slow(i) {
                    break;
                }
                match self.cached_chunk(stripe, i) {
                    Ok(c) => direct.push(c),
                    Err(f) => {
                        if f.gone {
                            gone |= 1 << i;
                        }
                        report.add(i, self.node_name(i), f);
                        break;
                    }
                }
            }
            let dst = &mut buf[(pos - offset) as usize..(upto - offset) as usize];
            if direct.len() == last - first + 1 {
                // Copy piece by piece straight out of the chunks.
                let mut at = pos;
                let mut out = 0usize;
                for (j, c) in direct.iter().enumerate() {
                    let c_start = s_start + (first + j) as u64 * chunk;
                    let from = (at - c_start) as usize;
                    let n = ((c_start + chunk).min(upto) - at) as usize;
                    dst[out..out + n].copy_from_slice(&c[from..from + n]);
                    out += n;
                    at += n as u64;
                }
            } else {
                let data = self.cached_stripe(stripe, gone, report)?;
                dst.copy_from_slice(&data[(pos - s_start) as usize..(upto - s_start) as usize]);
            }
            pos = upto;
        }
        Ok(())
    }
}

/// Why one chunk could not be used.
#[derive(Debug, Clone)]
pub(super) struct ChunkFault {
    /// The node was too slow and the read went around it: not damage,
    /// never reported as a bad shard (nor recorded as repair debt).
    pub(super) slow: bool,
    /// The whole shard is unavailable (file or node gone), not just this chunk.
    pub(super) gone: bool,
    /// The kind of failure.
    pub(super) cause: Cause,
    pub(super) why: String,
}

type ChunkMsg = (u64, Result<Vec<u8>, ChunkFault>);

/// Starts a thread (a kept one, [`crate::workers`]) that reads shard `i`
/// from `from` onwards. It goes on
/// past a bad chunk (damage may be local) and stops when the shard is gone
/// or nobody listens. The thread owns what it reads with and is not
/// joined: a read that went around a slow node does not wait for it (the
/// node's request deadline ends the thread's last fetch).
fn spawn_shard_reader(shards: &ObjectShards<'_>, shard: usize, from: u64) -> Receiver<ChunkMsg> {
    let (tx, rx) = bounded::<ChunkMsg>(4);
    let manifest = Arc::clone(
        shards
            .owned
            .get_or_init(|| Arc::new(shards.manifest.clone())),
    );
    let node = shards.nodes[shard].clone();
    let spawned = crate::workers::run("qsfs-fetch", move || {
        for s in from..manifest.layout.stripes {
            let r = fetch_chunk(&manifest, node.as_ref(), s, shard);
            let gone = r.as_ref().is_err_and(|f| f.gone);
            if tx.send((s, r)).is_err() || gone {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        // The receiver sees a stopped reader; spares take its place.
        tracing::warn!("cannot start a reader thread for shard {shard}: {e}");
    }
    rx
}

/// Consecutive bad chunks after which a shard's stream is replaced.
const RETIRE_AFTER: u8 = 2;

/// A reader is hedged (a spare shard read instead) once it lags the first
/// good chunk of its stripe by this much at least...
const HEDGE_MIN: Duration = Duration::from_secs(1);
/// ...and by this many times what that first chunk took.
const HEDGE_FACTOR: u32 = 4;

/// Produces the object's bytes stripe by stripe into `out`.
///
/// Each stripe takes its chunks as they arrive. Once one good chunk is
/// in, the others get a clear margin ([`HEDGE_MIN`], or [`HEDGE_FACTOR`]
/// times what the first took); a reader still silent then is a slow node:
/// it is marked in [`SlowNodes`], its stream retired, and a spare shard
/// read in its place. Slowness is not damage and is not reported as such.
pub(super) fn stream_object(
    shards: &ObjectShards<'_>,
    out: Sender<Result<Vec<u8>, DispersalError>>,
) -> ReadReport {
    let l = shards.manifest.layout;
    let order = shards.candidates();
    let mut report = ReadReport::default();
    // Retired: no longer streamed. Gone: the shard file or node is not
    // there at all. A retired shard that is not gone is still tried, last,
    // as a stand-in for a single stripe.
    let mut retired: u32 = 0;
    let mut gone: u32 = 0;
    let mut streak = vec![0u8; l.n];
    let mut active: Vec<(usize, Receiver<ChunkMsg>)> = order
        .iter()
        .take(l.k)
        .map(|&i| (i, spawn_shard_reader(shards, i, 0)))
        .collect();
    for stripe in 0..l.stripes {
        let mut chunks: Vec<Option<Vec<u8>>> = vec![None; l.n];
        let mut tried: u32 = 0;
        let started = Instant::now();
        let mut first_good: Option<Instant> = None;
        let mut waiting: Vec<usize> = (0..active.len()).collect();
        for (i, _) in &active {
            tried |= 1 << *i;
        }
        while !waiting.is_empty() {
            let mut sel = Select::new();
            for &p in &waiting {
                sel.recv(&active[p].1);
            }
            let op = match first_good {
                None => sel.select(),
                Some(t) => {
                    let margin = HEDGE_MIN.max(t.duration_since(started) * HEDGE_FACTOR);
                    match sel.select_deadline(t + margin) {
                        Ok(op) => op,
                        Err(_) => {
                            for &p in &waiting {
                                let i = active[p].0;
                                retired |= 1 << i;
                                shards.slow.mark(
                                    shards.node_name(i),
                                    format!(
                                        "its chunk of stripe {stripe} of object {} was not in \
                                         {:.1} s after the first of its peers",
                                        shards.manifest.id,
                                        margin.as_secs_f32()
                                    ),
                                );
                            }
                            break;
                        }
                    }
                }
            };
            let at = op.index();
            let p = waiting.swap_remove(at);
            let i = active[p].0;
            let got = match op.recv(&active[p].1) {
                Ok((s, r)) if s == stripe => r,
                Ok((s, _)) => Err(ChunkFault {
                    slow: false,
                    gone: true,
                    cause: Cause::NodeUnreadable,
                    why: format!("reader out of step (stripe {s}, wanted {stripe})"),
                }),
                Err(_) => Err(ChunkFault {
                    slow: false,
                    gone: true,
                    cause: Cause::NodeUnreadable,
                    why: "reader stopped".to_string(),
                }),
            };
            match got {
                Ok(c) => {
                    chunks[i] = Some(c);
                    streak[i] = 0;
                    first_good.get_or_insert_with(Instant::now);
                }
                Err(f) => {
                    streak[i] += 1;
                    if f.gone {
                        gone |= 1 << i;
                    }
                    if f.gone || streak[i] >= RETIRE_AFTER {
                        retired |= 1 << i;
                    }
                    report.add(i, shards.node_name(i), f);
                }
            }
        }
        // Stand-ins for this stripe only, fetched directly: shards not
        // streamed first, then retired ones whose files are still there.
        let mut have = chunks.iter().filter(|c| c.is_some()).count();
        let was_retired = retired;
        let spares: Vec<usize> = order
            .iter()
            .filter(|j| was_retired & (1 << **j) == 0)
            .chain(order.iter().filter(|j| was_retired & (1 << **j) != 0))
            .copied()
            .collect();
        for j in spares {
            if have >= l.k {
                break;
            }
            if (tried | gone) & (1 << j) != 0 {
                continue;
            }
            tried |= 1 << j;
            match shards.fetch_chunk(stripe, j) {
                Ok(c) => {
                    chunks[j] = Some(c);
                    have += 1;
                }
                Err(f) => {
                    if f.gone {
                        gone |= 1 << j;
                        retired |= 1 << j;
                    }
                    report.add(j, shards.node_name(j), f);
                }
            }
        }
        // Retired streams give way to spare shards from the next stripe on.
        if stripe + 1 < l.stripes && active.iter().any(|(i, _)| retired & (1 << i) != 0) {
            active.retain(|(i, _)| retired & (1 << i) == 0);
            for &j in &order {
                if active.len() >= l.k {
                    break;
                }
                if retired & (1 << j) == 0 && !active.iter().any(|(i, _)| *i == j) {
                    active.push((j, spawn_shard_reader(shards, j, stripe + 1)));
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
        ObjectStream {
            rx,
            cur: Vec::new(),
            pos: 0,
            error: None,
        }
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
        let shards = self.shards_of(manifest, None)?;
        let (tx, rx) = bounded(2);
        let (value, report) = std::thread::scope(|scope| {
            let shards = &shards;
            let producer = scope.spawn(move || stream_object(shards, tx));
            let value = consume(ObjectStream::new(rx));
            let report = producer.join();
            (value, report)
        });
        let report =
            report.map_err(|_| DispersalError::Internal("object reader thread panicked".into()))?;
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
        self.shards_of(manifest, None)?.read_at(offset, buf, report)
    }

    /// [`Dispersal::read_at`] keeping verified chunks in `cache`.
    pub fn read_at_cached(
        &self,
        manifest: &Manifest,
        offset: u64,
        buf: &mut [u8],
        report: &mut ReadReport,
        cache: &ChunkCache,
    ) -> Result<(), DispersalError> {
        self.shards_of(manifest, Some(cache))?
            .read_at(offset, buf, report)
    }
}
