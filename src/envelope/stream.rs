//! Parallel streaming drivers: seal a `Read` into a `Write`, open one, or verify `M` only.
//!
//! Shape of both pipelines (bounded memory, output order preserved):
//! ```text
//! reader thread --batches of 16 segments--> `threads` workers (AES-GCM)
//!      ^                                          |
//!      +---- free buffers <---- calling thread <--+  (reorders, writes sink)
//! ```
//! A fixed pool of `threads + 4` batch buffers (about 1 MiB each) bounds
//! memory whatever the file size. On seal the calling thread runs the
//! [`Assembler`] (insertions and `M`) so the sink need not be `Send`; on open
//! the reader thread runs the [`Disassembler`] (so `M` is hashed while the
//! workers decrypt) and `M` is checked when the stream ends.
//!
//! [`Assembler`]: super::Assembler

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};
use thiserror::Error;

use super::backup::Backup;
use super::cipher::SegmentCipher;
use super::disassemble::Disassembler;
use super::error::EnvelopeError;
use super::geometry::{Geometry, SEG_E};
use super::keys::SealKeys;
use super::open::Recovered;
use super::seal::Sealer;
use super::{SEG, TAG_LEN};

/// Segments per batch handed to a worker.
const BATCH_SEGS: u64 = 16;
/// Read size of the open and verify readers.
const READ_CHUNK: usize = 256 * 1024;

/// What a streaming seal produced besides `N`.
#[derive(Debug)]
pub struct Sealed {
    /// The backup record `B`.
    pub backup: Backup,
    /// Lengths and insertion points of `N`.
    pub geometry: Geometry,
}

/// Why a streaming seal, open or verify failed, and on which side.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The envelope rejected the input or the object.
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    /// Reading the source failed.
    #[error("reading the source failed: {0}")]
    Source(#[source] io::Error),
    /// Writing the sink failed.
    #[error("writing the sink failed: {0}")]
    Sink(#[source] io::Error),
    /// The source delivered fewer bytes than announced.
    #[error("source ended early at byte {at} of {expected}: it was truncated or changed while being read")]
    SourceEnded {
        /// Bytes read before the end.
        at: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The source had more bytes than announced.
    #[error(
        "source grew during seal: it has more than the {expected} bytes announced; seal again \
         from a stable copy"
    )]
    SourceGrew {
        /// Bytes announced.
        expected: u64,
    },
}

impl StreamError {
    /// True for errors that mean the object was altered or the keys are wrong.
    pub fn is_integrity(&self) -> bool {
        matches!(self, StreamError::Envelope(e) if e.is_integrity())
    }
}

/// A run of up to 16 consecutive segments.
struct Batch {
    seq: u64,
    first: u64,
    count: u64,
    /// Seal: plaintext of the segments back to back. Open: `C || T` of each.
    data: Vec<u8>,
    /// Seal: the tags, filled by the worker.
    tags: [[u8; TAG_LEN]; BATCH_SEGS as usize],
}

impl Batch {
    fn new(seq: u64, first: u64, count: u64, data: Vec<u8>) -> Batch {
        Batch { seq, first, count, data, tags: [[0u8; TAG_LEN]; BATCH_SEGS as usize] }
    }
}

/// Why a reader thread stopped early.
enum Stop {
    /// The calling thread gave up (it has the real error).
    Cancelled,
    /// The reader's own failure.
    Failed(StreamError),
}

impl From<StreamError> for Stop {
    fn from(e: StreamError) -> Stop {
        Stop::Failed(e)
    }
}

/// Why the calling thread's loop ended early.
enum MainStop {
    Failed(StreamError),
    /// Workers are gone before all batches arrived: the reader failed.
    Disconnected,
}

/// Hands out batch buffers: new ones up to the pool size, then recycled ones.
struct Pool {
    free: Receiver<Vec<u8>>,
    made: usize,
    size: usize,
}

impl Pool {
    fn take(&mut self, cap: usize) -> Result<Vec<u8>, Stop> {
        if self.made < self.size {
            self.made += 1;
            return Ok(Vec::with_capacity(cap));
        }
        self.free.recv().map_err(|_| Stop::Cancelled)
    }
}

/// Receives finished batches and hands them to `f` in sequence order.
fn in_order(
    total: u64,
    done: Receiver<Result<Batch, EnvelopeError>>,
    mut f: impl FnMut(Batch) -> Result<(), StreamError>,
) -> Result<(), MainStop> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    while next < total {
        match done.recv() {
            Ok(Ok(b)) => {
                pending.insert(b.seq, b);
                while let Some(b) = pending.remove(&next) {
                    f(b).map_err(MainStop::Failed)?;
                    next += 1;
                }
            }
            Ok(Err(e)) => return Err(MainStop::Failed(e.into())),
            Err(_) => return Err(MainStop::Disconnected),
        }
    }
    Ok(())
}

/// Joins a reader thread, re-raising its panic.
fn join<T>(h: thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Puts the results of the calling thread and the reader together: a
/// reader failure explains everything downstream, so it wins.
fn settle(main: Result<(), MainStop>, reader: Result<(), Stop>) -> Result<(), StreamError> {
    match (main, reader) {
        (_, Err(Stop::Failed(e))) => Err(e),
        (Err(MainStop::Failed(e)), _) => Err(e),
        (Err(MainStop::Disconnected), _) => Err(StreamError::Source(io::Error::other(
            "worker threads stopped before all segments were processed",
        ))),
        (Ok(()), _) => Ok(()),
    }
}

/// Reads exactly `buf.len()` bytes; `at` is the offset of `buf` in the
/// source, for the error message.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8], at: u64, expected: u64) -> Result<(), StreamError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => return Err(StreamError::SourceEnded { at: at + got as u64, expected }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Source(e)),
        }
    }
    Ok(())
}

/// True if the source has at least one more byte.
fn has_more<R: Read>(src: &mut R) -> Result<bool, StreamError> {
    let mut probe = [0u8; 1];
    loop {
        match src.read(&mut probe) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Source(e)),
        }
    }
}

/// Number of batch buffers for `threads` workers.
fn pool_size(threads: usize) -> usize {
    threads + 4
}

/// Seals `plain_len` bytes read from `src`, writing `N` to `sink`.
///
/// `src` must deliver exactly `plain_len` bytes (fewer or more is an
/// error). `threads` workers encrypt; the calling thread writes `sink`. On
/// error, whatever reached `sink` must be discarded.
pub fn seal_stream<R: Read + Send, W: Write + ?Sized>(
    keys: &SealKeys,
    plain_len: u64,
    src: R,
    sink: &mut W,
    threads: usize,
) -> Result<Sealed, StreamError> {
    let sealer = Sealer::new(plain_len, keys)?;
    let geometry = sealer.geometry().clone();
    let segments = geometry.segments();
    let batches = segments.div_ceil(BATCH_SEGS);
    let threads = threads.max(1);
    let pool = pool_size(threads);
    let cipher = sealer.cipher();
    let mut asm = sealer.assembler();

    thread::scope(|s| {
        let (work_tx, work_rx) = bounded::<Batch>(pool);
        let (done_tx, done_rx) = bounded::<Result<Batch, EnvelopeError>>(pool);
        let (free_tx, free_rx) = bounded::<Vec<u8>>(pool);
        let pool = Pool { free: free_rx, made: 0, size: pool };
        let reader = s.spawn(move || read_plain(src, plain_len, segments, pool, work_tx));
        for _ in 0..threads {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || encrypt_worker(cipher, segments, rx, tx));
        }
        drop((work_rx, done_tx));

        let main = in_order(batches, done_rx, |b| {
            for j in 0..b.count as usize {
                let start = j * SEG as usize;
                let end = (start + SEG as usize).min(b.data.len());
                asm.push(&b.data[start..end], sink).map_err(StreamError::Sink)?;
                asm.push(&b.tags[j], sink).map_err(StreamError::Sink)?;
            }
            // The reader may have finished; a closed pool is fine.
            let _ = free_tx.send(b.data);
            Ok(())
        });
        drop(free_tx);
        settle(main, join(reader))
    })?;
    asm.finish(sink).map_err(StreamError::Sink)?;
    Ok(Sealed { backup: sealer.backup(), geometry })
}

/// Seal reader: cuts the source into batches of plaintext.
fn read_plain<R: Read>(
    mut src: R,
    plain_len: u64,
    segments: u64,
    mut pool: Pool,
    work: Sender<Batch>,
) -> Result<(), Stop> {
    let mut first = 0u64;
    let mut seq = 0u64;
    while first < segments {
        let count = BATCH_SEGS.min(segments - first);
        let at = first * SEG;
        let want = (count * SEG).min(plain_len - at) as usize;
        let mut data = pool.take((BATCH_SEGS * SEG) as usize)?;
        // Recycled buffers are already long enough; only new ones grow (once).
        data.resize(want, 0);
        read_full(&mut src, &mut data, at, plain_len)?;
        if first + count == segments && has_more(&mut src)? {
            return Err(StreamError::SourceGrew { expected: plain_len }.into());
        }
        work.send(Batch::new(seq, first, count, data)).map_err(|_| Stop::Cancelled)?;
        first += count;
        seq += 1;
    }
    Ok(())
}

/// Seal worker: encrypts each segment of a batch in place.
fn encrypt_worker(
    cipher: &SegmentCipher,
    segments: u64,
    work: Receiver<Batch>,
    done: Sender<Result<Batch, EnvelopeError>>,
) {
    for mut b in work {
        let mut res = Ok(());
        for j in 0..b.count as usize {
            let index = b.first + j as u64;
            let start = j * SEG as usize;
            let end = (start + SEG as usize).min(b.data.len());
            match cipher.encrypt_segment(index, index + 1 == segments, &mut b.data[start..end]) {
                Ok(tag) => b.tags[j] = tag,
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if done.send(res.map(|()| b)).is_err() {
            return;
        }
    }
}

/// Opens `N` read from `n_src` with keys from [`recover_keys`], writing the
/// plaintext to `sink` in order.
///
/// `n_src` must deliver exactly `len(N)` bytes. Every segment is
/// authenticated by its tag before it is written; `M` is checked when the
/// stream ends, so a mismatch is reported after the plaintext was written:
/// the caller discards it (temp file + rename). Use [`verify_stream`] first
/// for verify-before-decrypt.
///
/// [`recover_keys`]: super::recover_keys
pub fn open_stream<R: Read + Send, W: Write + ?Sized>(
    n_src: R,
    rec: &Recovered,
    sink: &mut W,
    threads: usize,
) -> Result<(), StreamError> {
    let geometry = rec.geometry().clone();
    let segments = geometry.segments();
    let batches = segments.div_ceil(BATCH_SEGS);
    let threads = threads.max(1);
    let pool = pool_size(threads);
    let cipher = rec.cipher();
    let cipher = &cipher;
    let dis = Disassembler::new(rec);

    thread::scope(|s| {
        let (work_tx, work_rx) = bounded::<Batch>(pool);
        let (done_tx, done_rx) = bounded::<Result<Batch, EnvelopeError>>(pool);
        let (free_tx, free_rx) = bounded::<Vec<u8>>(pool);
        let pool = Pool { free: free_rx, made: 0, size: pool };
        let g = geometry.clone();
        let reader = s.spawn(move || read_sealed(n_src, dis, g, pool, work_tx));
        for _ in 0..threads {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || decrypt_worker(cipher, segments, rx, tx));
        }
        drop((work_rx, done_tx));

        let main = in_order(batches, done_rx, |b| {
            for j in 0..b.count as usize {
                let start = j * SEG_E as usize;
                let end = (start + SEG_E as usize).min(b.data.len());
                sink.write_all(&b.data[start..end - TAG_LEN]).map_err(StreamError::Sink)?;
            }
            let _ = free_tx.send(b.data);
            Ok(())
        });
        drop(free_tx);
        settle(main, join(reader))
    })
}

/// Collects the bytes of `E` from the disassembler into batches of whole segments.
struct Cutter {
    geometry: Geometry,
    pool: Pool,
    work: Sender<Batch>,
    cur: Option<(Batch, usize)>,
    next_first: u64,
    seq: u64,
    cancelled: bool,
}

impl Write for Cutter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let len = buf.len();
        while !buf.is_empty() {
            let (mut batch, need) = match self.cur.take() {
                Some(c) => c,
                None => self.start_batch()?,
            };
            let take = (need - batch.data.len()).min(buf.len());
            batch.data.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if batch.data.len() == need {
                self.next_first += batch.count;
                if self.work.send(batch).is_err() {
                    self.cancelled = true;
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "workers stopped"));
                }
            } else {
                self.cur = Some((batch, need));
            }
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Cutter {
    /// Starts the next batch and says how many bytes of `E` it holds.
    fn start_batch(&mut self) -> io::Result<(Batch, usize)> {
        let segments = self.geometry.segments();
        if self.next_first >= segments {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "more bytes of E than segments"));
        }
        let count = BATCH_SEGS.min(segments - self.next_first);
        let start = self.geometry.segment_span_in_e(self.next_first).start;
        let end = self.geometry.segment_span_in_e(self.next_first + count - 1).end;
        let need = (end - start) as usize;
        let mut data = match self.pool.take((BATCH_SEGS * SEG_E) as usize) {
            Ok(d) => d,
            Err(_) => {
                self.cancelled = true;
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "calling thread stopped"));
            }
        };
        data.clear();
        let batch = Batch::new(self.seq, self.next_first, count, data);
        self.seq += 1;
        Ok((batch, need))
    }
}

/// Open reader: runs the disassembler over `N` and cuts `E` into batches.
fn read_sealed<R: Read>(
    mut src: R,
    mut dis: Disassembler,
    geometry: Geometry,
    pool: Pool,
    work: Sender<Batch>,
) -> Result<(), Stop> {
    let len_n = geometry.len_n();
    let mut cut = Cutter { geometry, pool, work, cur: None, next_first: 0, seq: 0, cancelled: false };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut got = 0u64;
    while got < len_n {
        let want = (len_n - got).min(READ_CHUNK as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => return Err(StreamError::SourceEnded { at: got, expected: len_n }.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Source(e).into()),
        };
        if let Err(e) = dis.push(&buf[..n], &mut cut) {
            return Err(if cut.cancelled { Stop::Cancelled } else { StreamError::Source(e).into() });
        }
        got += n as u64;
    }
    if has_more(&mut src)? {
        return Err(StreamError::from(EnvelopeError::Layout {
            detail: format!("the sealed object source has more than its {len_n} bytes"),
        })
        .into());
    }
    drop(cut);
    dis.finish().map_err(|e| Stop::Failed(e.into()))
}

/// Open worker: authenticates and decrypts each segment of a batch in place.
fn decrypt_worker(
    cipher: &SegmentCipher,
    segments: u64,
    work: Receiver<Batch>,
    done: Sender<Result<Batch, EnvelopeError>>,
) {
    for mut b in work {
        let mut res = Ok(());
        for j in 0..b.count as usize {
            let index = b.first + j as u64;
            let start = j * SEG_E as usize;
            let end = (start + SEG_E as usize).min(b.data.len());
            let (ct, tag) = b.data[start..end].split_at_mut(end - start - TAG_LEN);
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(tag);
            if let Err(e) = cipher.decrypt_segment(index, index + 1 == segments, ct, &t) {
                res = Err(e);
                break;
            }
        }
        if done.send(res.map(|()| b)).is_err() {
            return;
        }
    }
}

/// Checks `M` of `N` read from `n_src` (exactly `len(N)` bytes) without
/// decrypting anything: scrub, and verify-before-decrypt.
pub fn verify_stream<R: Read>(mut n_src: R, rec: &Recovered) -> Result<(), StreamError> {
    let len_n = rec.geometry().len_n();
    let mut dis = Disassembler::new(rec);
    let mut buf = vec![0u8; READ_CHUNK * 4];
    let mut got = 0u64;
    while got < len_n {
        let want = (len_n - got).min(buf.len() as u64) as usize;
        read_full(&mut n_src, &mut buf[..want], got, len_n)?;
        dis.push_mac_only(&buf[..want]).map_err(StreamError::Source)?;
        got += want as u64;
    }
    if has_more(&mut n_src)? {
        return Err(EnvelopeError::Layout {
            detail: format!("the sealed object source has more than its {len_n} bytes"),
        }
        .into());
    }
    Ok(dis.finish()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::bytes::seal_bytes;
    use crate::envelope::open::{recover_keys, LocalShares};
    use std::time::Instant;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    fn keys() -> SealKeys {
        SealKeys::split([1; 32], [2; 32], [3; 32])
    }

    fn recovered(n: &[u8], keys: &SealKeys) -> Recovered {
        let mut src: &[u8] = n;
        let local = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        recover_keys(&mut src, n.len() as u64, &local, None).unwrap()
    }

    /// A sink that fails after `left` bytes.
    struct FailingSink {
        left: usize,
    }

    impl Write for FailingSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.left {
                return Err(io::Error::other("disk full"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A source that fails after `left` bytes.
    struct FailingSource<'a> {
        data: &'a [u8],
        left: usize,
    }

    impl Read for FailingSource<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("node went away"));
            }
            let n = buf.len().min(self.left).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn many_threads_keep_order() {
        let d = data(40 * SEG as usize + 123);
        let k = keys();
        let (want, b) = seal_bytes(&d, &k).unwrap();
        for threads in [1, 3, 8] {
            let mut n = Vec::new();
            let sealed = seal_stream(&k, d.len() as u64, &d[..], &mut n, threads).unwrap();
            assert!(n == want);
            assert_eq!(sealed.backup, b);
            let mut out = Vec::new();
            open_stream(&n[..], &recovered(&n, &k), &mut out, threads).unwrap();
            assert!(out == d);
        }
    }

    #[test]
    fn seal_source_short_or_long_is_an_error() {
        let d = data(100_000);
        let e = seal_stream(&keys(), 100_001, &d[..], &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::SourceEnded { at: 100_000, expected: 100_001 }), "{e}");
        assert!(e.to_string().contains("source ended early at byte 100000 of 100001"));
        let e = seal_stream(&keys(), 99_999, &d[..], &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::SourceGrew { expected: 99_999 }), "{e}");
        let e = seal_stream(&keys(), 0, &d[..], &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::SourceGrew { .. }), "{e}");
        let src = FailingSource { data: &d, left: 70_000 };
        let e = seal_stream(&keys(), 100_000, src, &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::Source(_)), "{e}");
    }

    #[test]
    fn failing_sinks_stop_cleanly() {
        let d = data(3_000_000);
        let k = keys();
        for left in [0usize, 10, 1_500_000] {
            let e = seal_stream(&k, d.len() as u64, &d[..], &mut FailingSink { left }, 2).unwrap_err();
            assert!(matches!(e, StreamError::Sink(_)), "{e}");
            assert!(e.to_string().contains("writing the sink failed"));
        }
        let (n, _) = seal_bytes(&d, &k).unwrap();
        let rec = recovered(&n, &k);
        let e = open_stream(&n[..], &rec, &mut FailingSink { left: 1_000_000 }, 2).unwrap_err();
        assert!(matches!(e, StreamError::Sink(_)), "{e}");
    }

    #[test]
    fn open_stream_refuses_short_long_failing_and_tampered_sources() {
        let d = data(500_000);
        let k = keys();
        let (n, _) = seal_bytes(&d, &k).unwrap();
        let rec = recovered(&n, &k);
        let e = open_stream(&n[..n.len() - 1], &rec, &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::SourceEnded { .. }), "{e}");
        let mut longer = n.clone();
        longer.push(0);
        let e = open_stream(&longer[..], &rec, &mut Vec::new(), 2).unwrap_err();
        assert!(e.is_integrity(), "{e}");
        let e = verify_stream(&longer[..], &rec).unwrap_err();
        assert!(e.is_integrity(), "{e}");
        let src = FailingSource { data: &n, left: 300_000 };
        let e = open_stream(src, &rec, &mut Vec::new(), 2).unwrap_err();
        assert!(matches!(e, StreamError::Source(_)), "{e}");
        // A flipped ciphertext byte fails its segment (or M).
        let mut t = n.clone();
        let at = rec.geometry().e_to_n(3 * SEG_E + 5) as usize;
        t[at] ^= 4;
        let e = open_stream(&t[..], &rec, &mut Vec::new(), 2).unwrap_err();
        assert!(e.is_integrity(), "{e}");
        assert!(verify_stream(&t[..], &rec).unwrap_err().is_integrity());
        // A flipped M byte: all segments decrypt, then M fails.
        let mut t = n.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        let mut out = Vec::new();
        let e = open_stream(&t[..], &rec, &mut out, 2).unwrap_err();
        assert!(matches!(e, StreamError::Envelope(EnvelopeError::MacMismatch)), "{e}");
        verify_stream(&n[..], &rec).unwrap();
    }

    /// Throughput of the drivers on 100 MB in memory with 2 threads. "warm"
    /// reuses the output buffer, so it measures the envelope's own time;
    /// "fresh" includes the kernel's page faults for a new 100 MB buffer.
    /// Run with `cargo test --release --lib throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput_100mb() {
        let len = 100_000_000usize;
        let d = data(len);
        let k = keys();
        let mb = len as f64 / 1e6;
        let local = LocalShares::both(k.r1().clone(), k.r2().clone());
        let rate = |secs: f64| format!("{:.0} MB/s ({:.3} s)", mb / secs, secs);
        let mut n = Vec::with_capacity(crate::envelope::sealed_len(len as u64) as usize);
        let mut out = Vec::with_capacity(len);
        let mut best = [f64::MAX; 5];
        for round in 0..6 {
            let fresh = round == 0;
            n.clear();
            if fresh {
                n = Vec::with_capacity(n.capacity());
            }
            let t = Instant::now();
            seal_stream(&k, len as u64, &d[..], &mut n, 2).unwrap();
            let seal = t.elapsed().as_secs_f64();
            let rec = recovered(&n, &k);
            out.clear();
            if fresh {
                out = Vec::with_capacity(len);
            }
            let t = Instant::now();
            open_stream(&n[..], &rec, &mut out, 2).unwrap();
            let open = t.elapsed().as_secs_f64();
            assert!(out == d);
            let t = Instant::now();
            verify_stream(&n[..], &rec).unwrap();
            let verify = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let (nb, _) = seal_bytes(&d, &k).unwrap();
            let seal_b = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let o = crate::envelope::open_bytes(&nb, &local, None).unwrap();
            let open_b = t.elapsed().as_secs_f64();
            assert!(o.plaintext == d);
            if !fresh {
                for (b, t) in best.iter_mut().zip([seal, open, verify, seal_b, open_b]) {
                    *b = b.min(t);
                }
            }
            println!(
                "{} sink: seal_stream {}, open_stream {}, verify_stream {}; \
                 seal_bytes {}, open_bytes {} (these allocate their output)",
                if fresh { "fresh" } else { "warm " },
                rate(seal),
                rate(open),
                rate(verify),
                rate(seal_b),
                rate(open_b)
            );
        }
        println!(
            "best warm: seal_stream {}, open_stream {}, verify_stream {}, seal_bytes {}, open_bytes {}",
            rate(best[0]),
            rate(best[1]),
            rate(best[2]),
            rate(best[3]),
            rate(best[4])
        );
    }
}
