//! Streaming open and verify: reader thread running the disassembler -> decrypting workers -> calling thread.

use std::io::{self, Read, Write};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{
    BATCH_SEGS, Batch, Pool, READ_CHUNK, Stop, StreamError, has_more, in_order, join, pool_size,
    read_full, settle,
};
use crate::envelope::TAG_LEN;
use crate::envelope::cipher::SegmentCipher;
use crate::envelope::disassemble::Disassembler;
use crate::envelope::error::EnvelopeError;
use crate::envelope::geometry::{Geometry, SEG_E};
use crate::envelope::open::Recovered;

/// Opens `N` read from `n_src` with keys from [`recover_keys`], writing the
/// plaintext to `sink` in order.
///
/// `n_src` must deliver exactly `len(N)` bytes. Every segment is
/// authenticated by its tag before it is written; `M` is checked when the
/// stream ends, so a mismatch is reported after the plaintext was written:
/// the caller discards it (temp file + rename). Use [`verify_stream`] first
/// for verify-before-decrypt.
///
/// [`recover_keys`]: crate::envelope::recover_keys
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
        let pool = Pool {
            free: free_rx,
            made: 0,
            size: pool,
        };
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
                sink.write_all(&b.data[start..end - TAG_LEN])
                    .map_err(StreamError::Sink)?;
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
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes of E than segments",
            ));
        }
        let count = BATCH_SEGS.min(segments - self.next_first);
        let start = self.geometry.segment_span_in_e(self.next_first).start;
        let end = self
            .geometry
            .segment_span_in_e(self.next_first + count - 1)
            .end;
        let need = (end - start) as usize;
        let Ok(mut data) = self.pool.take((BATCH_SEGS * SEG_E) as usize) else {
            self.cancelled = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "calling thread stopped",
            ));
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
    let mut cut = Cutter {
        geometry,
        pool,
        work,
        cur: None,
        next_first: 0,
        seq: 0,
        cancelled: false,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut got = 0u64;
    while got < len_n {
        let want = (len_n - got).min(READ_CHUNK as u64) as usize;
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(StreamError::SourceEnded {
                    at: got,
                    expected: len_n,
                }
                .into());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Source(e).into()),
        };
        if let Err(e) = dis.push(&buf[..n], &mut cut) {
            return Err(if cut.cancelled {
                Stop::Cancelled
            } else {
                StreamError::Source(e).into()
            });
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
        dis.push_mac_only(&buf[..want])
            .map_err(StreamError::Source)?;
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
