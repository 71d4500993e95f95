//! In-memory seal and open: whole `D` or `N` in a slice, segments spread over all cores.
//!
//! These write each segment straight into its final place (plaintext into
//! `N` and encrypted in place; ciphertext into the plaintext buffer and
//! decrypted in place), so a file costs one copy plus the cipher and `M`.
//! `open_bytes` verifies `M` over all of `E''` before it decrypts anything;
//! `M` itself is computed and checked by `MacTree` (`mac_tree.rs`), as for every other
//! seal and open.

use std::ops::Range;
use std::sync::OnceLock;
use std::thread;

use subtle::Choice;

use super::TAG_LEN;
use super::backup::Backup;
use super::cipher::SegmentCipher;
use super::error::EnvelopeError;
use super::geometry::Geometry;
use super::keys::SealKeys;
use super::mac_tree::MacTree;
use super::open::{BadShares, LocalShares, Recovered, recover_keys};
use super::seal::Sealer;

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
    // available_parallelism reads cgroup files on Linux: ask once.
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(16)
    });
    cores.min(segments as usize)
}

/// Splits `buf` into one region per run of segments (`runs` holds each
/// run's start offset in `buf`, ascending, the first at 0) and runs
/// `f(region, region_offset, segments)` on each: the last on the calling
/// thread, the others on scoped threads. Returns the earliest run's error.
fn for_each_region<F>(
    buf: &mut [u8],
    runs: Vec<(u64, Range<u64>)>,
    f: F,
) -> Result<(), EnvelopeError>
where
    F: Fn(&mut [u8], u64, Range<u64>) -> Result<(), EnvelopeError> + Sync,
{
    thread::scope(|s| {
        let mut rest = buf;
        let mut rest_base = 0u64;
        let mut handles = Vec::with_capacity(runs.len());
        let mut runs = runs.into_iter().peekable();
        let mut last = Ok(());
        while let Some((_, segs)) = runs.next() {
            let Some((next, _)) = runs.peek() else {
                last = f(rest, rest_base, segs);
                break;
            };
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut((next - rest_base) as usize);
            rest = tail;
            let (f, b) = (&f, rest_base);
            handles.push(s.spawn(move || f(mine, b, segs)));
            rest_base = *next;
        }
        let mut result = Ok(());
        for h in handles {
            let r = match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result.and(last)
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
    let len_n = usize::try_from(g.len_n()).map_err(|_| EnvelopeError::TooLarge {
        plain_len: d.len() as u64,
    })?;
    let mut n = vec![0u8; len_n];
    let len_e2 = g.len_e2() as usize;
    place_segments(
        g,
        sealer.cipher(),
        d,
        &mut n[..len_e2],
        threads_for(g.segments()),
    )?;
    // KR and R3, in their N order.
    let inserted = sealer.inserted_bytes();
    let mut at = 0usize;
    for r in g.inserted_in_n() {
        let len = (r.end - r.start) as usize;
        n[r.start as usize..r.end as usize].copy_from_slice(&inserted[at..at + len]);
        at += len;
    }
    let m = MacTree::new(keys.r(), g.len_e2()).whole(&n[..len_e2])?;
    n[len_e2..].copy_from_slice(&m[..]);
    Ok((n, sealer.backup()))
}

/// Encrypts every segment of `d` into its place in `e2` (= `E''`), on
/// `threads` threads; leaves the bytes of KR and R3 alone.
fn place_segments(
    g: &Geometry,
    cipher: &SegmentCipher,
    d: &[u8],
    e2: &mut [u8],
    threads: usize,
) -> Result<(), EnvelopeError> {
    let regions = runs(g.segments(), threads, |i| {
        g.segment_span_in_n(i).first().map_or(0, |r| r.start)
    });
    for_each_region(e2, regions, |region, base, segs| {
        seal_run(g, cipher, d, region, base, segs)
    })
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
                region[(r.start - base) as usize..(r.end - base) as usize]
                    .copy_from_slice(&scratch[at..at + len]);
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
pub fn open_bytes(
    n: &[u8],
    local: &LocalShares,
    backup: Option<&Backup>,
) -> Result<Opened, EnvelopeError> {
    let mut src: &[u8] = n;
    let rec = recover_keys(&mut src, n.len() as u64, local, backup)?;
    let g = rec.geometry();
    let len_e2 = g.len_e2() as usize;
    let plain_len = usize::try_from(g.plain_len()).map_err(|_| EnvelopeError::TooLarge {
        plain_len: g.plain_len(),
    })?;
    let mut plaintext = vec![0u8; plain_len];
    let tree = MacTree::new(rec.r(), g.len_e2());
    let m = if threads_for(g.segments()) == 1 {
        gather_ciphertext(g, n, &mut plaintext);
        tree.whole(&n[..len_e2])?
    } else {
        thread::scope(|s| {
            let mac_thread = s.spawn(|| tree.whole(&n[..len_e2]));
            gather_ciphertext(g, n, &mut plaintext);
            match mac_thread.join() {
                Ok(m) => m,
                Err(p) => std::panic::resume_unwind(p),
            }
        })?
    };
    // KR and R3 came from this same slice: they are the key material in use.
    MacTree::check(&m, &n[len_e2..], Choice::from(1))?;
    decrypt_segments(
        g,
        &rec.cipher(),
        n,
        &mut plaintext,
        threads_for(g.segments()),
    )?;
    let bad = rec.bad_shares();
    Ok(Opened {
        plaintext,
        bad,
        recovered: rec,
    })
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

/// Authenticates and decrypts, in place, every gathered segment in
/// `plaintext` on `threads` threads (tags are read from `N`).
fn decrypt_segments(
    g: &Geometry,
    cipher: &SegmentCipher,
    n: &[u8],
    plaintext: &mut [u8],
    threads: usize,
) -> Result<(), EnvelopeError> {
    let regions = runs(g.segments(), threads, |i| g.segment_span_in_plain(i).start);
    for_each_region(plaintext, regions, |region, base, segs| {
        open_run(g, cipher, n, region, base, segs)
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
pub(super) mod tests {
    use super::*;
    use crate::envelope::SEG;

    /// `E''` by the book: encrypt segment after segment, then splice KR and R3.
    pub(in crate::envelope) fn reference(
        g: &Geometry,
        cipher: &SegmentCipher,
        d: &[u8],
        kr: &[u8],
        r3: &[u8],
    ) -> Vec<u8> {
        let mut e = Vec::new();
        for i in 0..g.segments() {
            let p = g.segment_span_in_plain(i);
            let mut seg = d[p.start as usize..p.end as usize].to_vec();
            let tag = cipher
                .encrypt_segment(i, i + 1 == g.segments(), &mut seg)
                .unwrap();
            e.extend_from_slice(&seg);
            e.extend_from_slice(&tag);
        }
        e.splice(g.n1() as usize..g.n1() as usize, kr.iter().copied());
        e.splice(g.n2() as usize..g.n2() as usize, r3.iter().copied());
        e
    }

    #[test]
    fn regions_and_split_segments_at_every_boundary() {
        let cipher = SegmentCipher::new(&[8u8; 32]);
        let kr = [0xaau8; 32];
        let r3 = [0x33u8; 33];
        let plain_len = 3 * SEG + 100;
        let d: Vec<u8> = (0..plain_len).map(|i| (i * 7 + i / 300) as u8).collect();
        let le = plain_len + 4 * 16;
        for (n1, n2) in crate::envelope::geometry::test_insertion_points(le) {
            let g = Geometry::new(plain_len, n1, n2).unwrap();
            let want = reference(&g, &cipher, &d, &kr, &r3);
            for threads in [1, 2, 3, 4] {
                let mut e2 = vec![0u8; g.len_e2() as usize];
                for r in g.inserted_in_n() {
                    e2[r.start as usize..r.end as usize].fill(0xee);
                }
                place_segments(&g, &cipher, &d, &mut e2, threads).unwrap();
                let mut at = 0usize;
                let ins = g.interleave(&kr, &r3);
                for r in g.inserted_in_n() {
                    // place_segments left the inserted bytes alone.
                    assert!(
                        e2[r.start as usize..r.end as usize]
                            .iter()
                            .all(|&b| b == 0xee)
                    );
                    let len = (r.end - r.start) as usize;
                    e2[r.start as usize..r.end as usize].copy_from_slice(&ins[at..at + len]);
                    at += len;
                }
                assert!(e2 == want, "n1 {n1} n2 {n2} threads {threads}");
                let mut n = e2.clone();
                n.extend_from_slice(&[0u8; 32]);
                let mut out = vec![0u8; plain_len as usize];
                gather_ciphertext(&g, &n, &mut out);
                decrypt_segments(&g, &cipher, &n, &mut out, threads).unwrap();
                assert!(out == d, "open n1 {n1} n2 {n2} threads {threads}");
            }
        }
    }

    #[test]
    fn a_bad_tag_fails_the_right_segment() {
        let cipher = SegmentCipher::new(&[8u8; 32]);
        let plain_len = 5 * SEG;
        let d = vec![1u8; plain_len as usize];
        let g = Geometry::new(plain_len, 3, 7).unwrap();
        let mut n = vec![0u8; g.len_n() as usize];
        place_segments(&g, &cipher, &d, &mut n[..g.len_e2() as usize], 2).unwrap();
        let tag_of_3 = g.e_to_n(g.segment_span_in_e(3).end - 1) as usize;
        n[tag_of_3] ^= 1;
        let mut out = vec![0u8; plain_len as usize];
        gather_ciphertext(&g, &n, &mut out);
        let e = decrypt_segments(&g, &cipher, &n, &mut out, 2).unwrap_err();
        assert!(matches!(e, EnvelopeError::SegmentAuth { index: 3 }), "{e}");
    }
}
