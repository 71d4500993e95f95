//! Tests of the streaming drivers: order, error paths, and an ignored throughput check.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use super::*;
use crate::envelope::bytes::seal_bytes;
use crate::envelope::geometry::SEG_E;
use crate::envelope::keys::SealKeys;
use crate::envelope::open::Recovered;
use crate::envelope::open::{LocalShares, recover_keys};
use crate::envelope::{EnvelopeError, SEG};
use std::io::{Read, Write};
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
    assert!(
        matches!(
            e,
            StreamError::SourceEnded {
                at: 100_000,
                expected: 100_001
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("source ended early at byte 100000 of 100001")
    );
    let e = seal_stream(&keys(), 99_999, &d[..], &mut Vec::new(), 2).unwrap_err();
    assert!(
        matches!(e, StreamError::SourceGrew { expected: 99_999 }),
        "{e}"
    );
    let e = seal_stream(&keys(), 0, &d[..], &mut Vec::new(), 2).unwrap_err();
    assert!(matches!(e, StreamError::SourceGrew { .. }), "{e}");
    let src = FailingSource {
        data: &d,
        left: 70_000,
    };
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
    let src = FailingSource {
        data: &n,
        left: 300_000,
    };
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
    assert!(
        matches!(e, StreamError::Envelope(EnvelopeError::MacMismatch)),
        "{e}"
    );
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
