//! Streaming seal: reader thread -> encrypting workers -> calling thread running the assembler.

use std::io::{Read, Write};
use std::thread;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{
    BATCH_SEGS, Batch, Pool, Sealed, Stop, StreamError, has_more, in_order, join, pool_size,
    read_full, settle,
};
use crate::envelope::SEG;
use crate::envelope::cipher::SegmentCipher;
use crate::envelope::error::EnvelopeError;
use crate::envelope::keys::SealKeys;
use crate::envelope::seal::Sealer;

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
        let pool = Pool {
            free: free_rx,
            made: 0,
            size: pool,
        };
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
                asm.push(&b.data[start..end], sink)
                    .map_err(StreamError::Sink)?;
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
    Ok(Sealed {
        backup: sealer.backup(),
        geometry,
    })
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
            return Err(StreamError::SourceGrew {
                expected: plain_len,
            }
            .into());
        }
        work.send(Batch::new(seq, first, count, data))
            .map_err(|_| Stop::Cancelled)?;
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
