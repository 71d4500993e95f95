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
//! [`Disassembler`]: super::Disassembler

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::thread;

use crossbeam_channel::Receiver;
use thiserror::Error;

use super::TAG_LEN;
use super::backup::Backup;
use super::error::EnvelopeError;
use super::geometry::Geometry;

mod open;
mod seal;
#[cfg(test)]
mod tests;

pub use open::{open_stream, verify_stream};
pub use seal::seal_stream;

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
    #[error(
        "source ended early at byte {at} of {expected}: it was truncated or changed while being read"
    )]
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
        Batch {
            seq,
            first,
            count,
            data,
            tags: [[0u8; TAG_LEN]; BATCH_SEGS as usize],
        }
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
fn read_full<R: Read>(
    src: &mut R,
    buf: &mut [u8],
    at: u64,
    expected: u64,
) -> Result<(), StreamError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(StreamError::SourceEnded {
                    at: at + got as u64,
                    expected,
                });
            }
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
