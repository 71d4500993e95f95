//! In-memory seal and open: whole `D` or `N` in a slice, segments spread over all cores.
//!
//! These write each segment straight into its final place (plaintext into
//! `N` and encrypted in place; ciphertext into the plaintext buffer and
//! decrypted in place), so a file costs one copy plus the cipher and `M`.
//! `open_bytes` verifies `M` over all of `E''` before it decrypts anything.

use std::ops::Range;
use std::thread;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::backup::Backup;
use super::cipher::SegmentCipher;
use super::derive::mac;
use super::error::EnvelopeError;
use super::geometry::Geometry;
use super::keys::SealKeys;
use super::open::{recover_keys, BadShares, LocalShares, Recovered};
use super::seal::Sealer;
use super::TAG_LEN;

/// Segments below which splitting the work over threads is not worth it.
const PARALLEL_MIN_SEGMENTS: u64 = 4;

/// A successful in-memory open.
pub struct Opened {
    /// The plaintext `D`.
    pub plaintext: Vec<u8>,
    /// Which local share (or `B`) was found bad and should be healed.
    pub bad: BadShares,
    /// The recovered keys, for healing ([`Recovered::regenerate`],
    /// [`Recovered::rebuild_backup`]); authenticated by `M`.
    pub recovered: Recovered,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("plaintext_len", &self.plaintext.len())
            .field("bad", &self.bad)
            .finish_non_exhaustive()
    }
}

/// How many threads the in-memory calls use for `segments` segments.
fn threads_for(segments: u64) -> usize {
    if segments < PARALLEL_MIN_SEGMENTS {
        return 1;
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    cores.min(segments as usize)
}

/// Splits `buf` (whose byte 0 is at absolute offset `base`) into one region
/// per run of segments, cutting at `cuts` (absolute offsets, ascending), and
/// runs `f(region, region_base, segments)` on each, in parallel.
fn for_each_region<F>(buf: &mut [u8], base: u64, runs: Vec<(u64, Range<u64>)>, f: F) -> Result<(), EnvelopeError>
where
    F: Fn(&mut [u8], u64, Range<u64>) -> Result<(), EnvelopeError> + Sync,
{
    if runs.len() <= 1 {
        return match runs.into_iter().next() {
            Some((_, segs)) => f(buf, base, segs),
            None => Ok(()),
        };
    }
    thread::scope(|s| {
        let mut rest = buf;
        let mut rest_base = base;
        let mut handles = Vec::with_capacity(runs.len());
        let mut runs = runs.into_iter().peekable();
        while let Some((start, segs)) = runs.next() {
            debug_assert_eq!(start, rest_base);
            let end = runs.peek().map_or(rest_base + rest.len() as u64, |(next, _)| *next);
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut((end - rest_base) as usize);
            rest = tail;
            let f = &f;
            let b = rest_base;
            handles.push(s.spawn(move || f(mine, b, segs)));
            rest_base = end;
        }
        let mut result = Ok(());
        for h in handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            };
            // Report the earliest failing run.
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Runs of segments for `threads` threads, each with the absolute offset
/// where its region starts (from `start_of(first segment)`).
fn runs(segments: u64, threads: usize, start_of: impl Fn(u64) -> u64) -> Vec<(u64, Range<u64>)> {
    let t = threads.max(1) as u64;
    (0..t)
        .map(|i| (segments * i / t)..(segments * (i + 1) / t))
        .filter(|r| !r.is_empty())
        .enumerate()
        .map(|(i, r)| (if i == 0 { 0 } else { start_of(r.start) }, r))
        .collect()
}

/// Seals `d` in memory: returns `N` and `B`.
pub fn seal_bytes(d: &[u8], keys: &SealKeys) -> Result<(Vec<u8>, Backup), EnvelopeError> {
    let sealer = Sealer::new(d.len() as u64, keys)?;
    let g = sealer.geometry();
    let len_n = usize::try_from(g.len_n()).map_err(|_| EnvelopeError::TooLarge { plain_len: d.len() as u64 })?;
    let mut n = vec![0u8; len_n];
    let len_e2 = g.len_e2() as usize;
    let cipher = sealer.cipher();
    let threads = threads_for(g.segments());
    let regions = runs(g.segments(), threads, |i| g.segment_span_in_n(i).first().map_or(0, |r| r.start));
    for_each_region(&mut n[..len_e2], 0, regions, |region, base, segs| {
        seal_run(g, cipher, d, region, base, segs)
    })?;
    // KR and R3, in their N order.
    let inserted = sealer.inserted_bytes();
    let mut at = 0usize;
    for r in g.inserted_in_n() {
        let len = (r.end - r.start) as usize;
        n[r.start as usize..r.end as usize].copy_from_slice(&inserted[at..at + len]);
        at += len;
    }
    let m = Zeroizing::new(mac("mac M", keys.r(), &n[..len_e2]));
    n[len_e2..].copy_from_slice(&m[..]);
    Ok((n, sealer.backup()))
}

/// Encrypts the segments `segs` of `d` into their places in `region` of `N`.
fn seal_run(
    g: &Geometry,
    cipher: &SegmentCipher,
    d: &[u8],
    region: &mut [u8],
    base: u64,
    segs: Range<u64>,
) -> Result<(), EnvelopeError> {
    let mut scratch = Vec::new();
    for i in segs {
        let plain = g.segment_span_in_plain(i);
        let p = &d[plain.start as usize..plain.end as usize];
        let last = i + 1 == g.segments();
        let pieces = g.segment_span_in_n(i);
        if let [one] = pieces.as_slice() {
            let slot = &mut region[(one.start - base) as usize..(one.end - base) as usize];
            let (ct, tag) = slot.split_at_mut(p.len());
            ct.copy_from_slice(p);
            tag.copy_from_slice(&cipher.encrypt_segment(i, last, ct)?);
        } else {
            // The segment is split by KR or R3: encrypt aside, then scatter.
            scratch.clear();
            scratch.extend_from_slice(p);
            let tag = cipher.encrypt_segment(i, last, &mut scratch)?;
            scratch.extend_from_slice(&tag);
            let mut at = 0usize;
            for r in pieces {
                let len = (r.end - r.start) as usize;
                region[(r.start - base) as usize..(r.end - base) as usize].copy_from_slice(&scratch[at..at + len]);
                at += len;
            }
        }
    }
    Ok(())
}

/// Opens `N` in memory: recovers the keys, verifies `M` over all of `E''`,
/// and only then decrypts. On any error no plaintext is returned.
///
/// While one thread computes `M`, the calling thread already gathers the
/// ciphertext into the output buffer (copying, not decrypting), so the
/// output's page faults overlap the MAC; decryption runs on all cores after
/// `M` matched.
pub fn open_bytes(n: &[u8], local: &LocalShares, backup: Option<&Backup>) -> Result<Opened, EnvelopeError> {
    let mut src: &[u8] = n;
    let rec = recover_keys(&mut src, n.len() as u64, local, backup)?;
    let g = rec.geometry();
    let len_e2 = g.len_e2() as usize;
    let plain_len = usize::try_from(g.plain_len()).map_err(|_| EnvelopeError::TooLarge { plain_len: g.plain_len() })?;
    let mut plaintext = vec![0u8; plain_len];
    let r = rec.r();
    let m = thread::scope(|s| {
        let mac_thread = s.spawn(|| Zeroizing::new(mac("mac M", r, &n[..len_e2])));
        gather_ciphertext(g, n, &mut plaintext);
        match mac_thread.join() {
            Ok(m) => m,
            Err(p) => std::panic::resume_unwind(p),
        }
    });
    if !bool::from(m.ct_eq(&n[len_e2..])) {
        return Err(EnvelopeError::MacMismatch);
    }
    let cipher = rec.cipher();
    let threads = threads_for(g.segments());
    let regions = runs(g.segments(), threads, |i| g.segment_span_in_plain(i).start);
    for_each_region(&mut plaintext, 0, regions, |region, base, segs| {
        open_run(g, &cipher, n, region, base, segs)
    })?;
    let bad = rec.bad_shares();
    Ok(Opened { plaintext, bad, recovered: rec })
}

/// The bytes of `E` that hold the ciphertext (without tag) of segment `i`.
fn ciphertext_span_in_e(g: &Geometry, i: u64) -> Range<u64> {
    let e = g.segment_span_in_e(i);
    e.start..e.end - TAG_LEN as u64
}

/// Copies every segment's ciphertext from `N` to its plaintext position.
fn gather_ciphertext(g: &Geometry, n: &[u8], out: &mut [u8]) {
    for i in 0..g.segments() {
        let plain = g.segment_span_in_plain(i);
        let mut at = plain.start as usize;
        for r in g.e_range_to_n(ciphertext_span_in_e(g, i)) {
            let len = (r.end - r.start) as usize;
            out[at..at + len].copy_from_slice(&n[r.start as usize..r.end as usize]);
            at += len;
        }
    }
}

/// Authenticates and decrypts, in place, the gathered segments `segs` in
/// `region` of the plaintext buffer (tags are read from `N`).
fn open_run(
    g: &Geometry,
    cipher: &SegmentCipher,
    n: &[u8],
    region: &mut [u8],
    base: u64,
    segs: Range<u64>,
) -> Result<(), EnvelopeError> {
    for i in segs {
        let plain = g.segment_span_in_plain(i);
        let out = &mut region[(plain.start - base) as usize..(plain.end - base) as usize];
        let e = g.segment_span_in_e(i);
        let mut tag = [0u8; TAG_LEN];
        let mut at = 0usize;
        for r in g.e_range_to_n(e.end - TAG_LEN as u64..e.end) {
            let len = (r.end - r.start) as usize;
            tag[at..at + len].copy_from_slice(&n[r.start as usize..r.end as usize]);
            at += len;
        }
        cipher.decrypt_segment(i, i + 1 == g.segments(), out, &tag)?;
    }
    Ok(())
}
