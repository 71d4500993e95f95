//! `ObjectReader`: opens any segment of a sealed object in any order, and checks `M` on the way.
//!
//! PROTOCOL.md "Random access into a sealed object". Each visit of a
//! segment reads one range of `N` (from an [`ObjectSource`], or handed in as
//! bytes by a caller that fetches and caches itself), checks the segment's
//! GCM tag and returns its plaintext. The same bytes also carry the
//! segment's share of `M`: `E''` is cut into one *MAC region* per segment,
//! on 16 KiB boundaries, so every byte of `E''` (KR and R3 included) lies
//! in exactly one region, and a visit hashes its region into the tree of
//! `M` (`MacTree`, `mac_tree.rs`). Once every segment was visited, in
//! whatever order, `M` is complete and compared with the stored one; the
//! visit that completes a failing `M` fails, and so does every later one.
//!
//! Regions and reads, with `B_i` the first byte of segment `i` in `N`
//! (`B_0 = 0`, `B_s = len(E'')`) and `up(x)` = `x` rounded up to 16 KiB
//! (at most `len(E'')`):
//! ```text
//! MAC region of i:  up(B_i) .. up(B_i+1)
//! read of i:        B_i .. up(B_i+1)        (the last segment: B_i .. len(N), M included)
//! ```
//! A read is the segment (and any KR or R3 right after it) plus less than
//! 16 KiB of the next segment (8 KiB on average), and nothing is kept
//! between visits but the tree's chaining values (32 bytes each, merged as
//! siblings meet).
//!
//! Why 16 KiB and not the 1 KiB BLAKE3 chunk: segments are 16 bytes longer
//! than 64 KiB, so their starts drift across chunk boundaries, and a region
//! cut at chunk boundaries splits into tree nodes of 1, 2, 4, ... chunks
//! that BLAKE3 hashes with few SIMD lanes busy. Regions on 16-chunk
//! boundaries are made of nodes of 16 chunks or more (all lanes of AVX-512,
//! twice AVX2's), which makes the walk cheaper than hashing the segments
//! front to back in one BLAKE3 state; the price is copying the part of the
//! next segment, cheaper than the hashing it saves.

use std::fmt;
use std::ops::Range;
use std::sync::Mutex;

use subtle::{Choice, ConstantTimeEq};

use super::cipher::SegmentCipher;
use super::error::EnvelopeError;
use super::geometry::Geometry;
use super::mac_tree::{CHUNK, HashedPiece, MacParts, MacTree};
use super::open::Recovered;
use super::source::ObjectSource;
use super::{MAC_LEN, TAG_LEN};

/// Alignment of MAC regions in `E''`: 16 BLAKE3 chunks (see the module doc).
const REGION_ALIGN: u64 = 16 * CHUNK;

/// How far the `M` check of an [`ObjectReader`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacStatus {
    /// Not every segment was visited yet.
    Pending {
        /// Segments whose MAC region is in.
        visited: u64,
        /// Segments of the object.
        segments: u64,
    },
    /// Every segment was visited and `M` matched.
    Verified,
    /// `M` did not match (or bytes of KR or R3 differed from the ones the
    /// keys came from): the object was modified, and every later visit fails.
    Failed,
}

/// Random-access reader of one sealed object, for keys from [`recover_keys`].
///
/// `&self` methods and `Sync`: one reader serves concurrent readers of the
/// object (decryption and hashing run outside its lock).
///
/// [`recover_keys`]: super::recover_keys
pub struct ObjectReader {
    rec: Recovered,
    cipher: SegmentCipher,
    tree: MacTree,
    /// Where KR and R3 sit in `N` (asked once, not per visit).
    inserted_in_n: Vec<Range<u64>>,
    walk: Mutex<Walk>,
}

/// The `M` walk: what was visited and hashed so far.
struct Walk {
    parts: MacParts,
    /// Visited segments, as sorted disjoint ranges (one for a front-to-back read).
    visited: Vec<Range<u64>>,
    visited_count: u64,
    /// `M` as read from `N` with the last segment.
    stored_m: Option<[u8; MAC_LEN]>,
    status: MacStatus,
}

impl Walk {
    fn has(&self, i: u64) -> bool {
        let at = self.visited.partition_point(|r| r.end <= i);
        self.visited.get(at).is_some_and(|r| r.contains(&i))
    }

    /// Records segment `i` as visited (it was not).
    fn add(&mut self, i: u64) {
        let at = self.visited.partition_point(|r| r.end < i);
        match self.visited.get_mut(at) {
            Some(r) if r.end == i => {
                r.end = i + 1;
                if let Some(next) = self.visited.get(at + 1)
                    && next.start == i + 1
                {
                    let end = next.end;
                    self.visited[at].end = end;
                    self.visited.remove(at + 1);
                }
            }
            Some(r) if r.start == i + 1 => r.start = i,
            _ => self.visited.insert(at, i..i + 1),
        }
        self.visited_count += 1;
    }
}

/// What a visit contributes to the walk, hashed outside the lock.
struct Contribution {
    piece: HashedPiece,
    stored_m: Option<[u8; MAC_LEN]>,
    key_material_ok: Choice,
}

impl ObjectReader {
    /// A reader for the object `rec` was recovered from.
    pub fn new(rec: Recovered) -> ObjectReader {
        let g = rec.geometry();
        let tree = MacTree::new(rec.r(), g.len_e2());
        let status = MacStatus::Pending {
            visited: 0,
            segments: g.segments(),
        };
        ObjectReader {
            cipher: rec.cipher(),
            tree,
            inserted_in_n: g.inserted_in_n(),
            walk: Mutex::new(Walk {
                parts: MacParts::default(),
                visited: Vec::new(),
                visited_count: 0,
                stored_m: None,
                status,
            }),
            rec,
        }
    }

    /// The recovered keys (for healing: see [`Recovered::regenerate`]).
    pub fn recovered(&self) -> &Recovered {
        &self.rec
    }

    /// Lengths and insertion points of the object.
    pub fn geometry(&self) -> &Geometry {
        self.rec.geometry()
    }

    fn walk(&self) -> std::sync::MutexGuard<'_, Walk> {
        // The walk's state stays consistent across a panic elsewhere.
        self.walk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How far the `M` check got.
    pub fn mac_status(&self) -> MacStatus {
        self.walk().status
    }

    /// True when a visit of segment `i` would still feed the `M` check:
    /// a caller that caches plaintext visits such a segment again rather
    /// than serving it from its cache, so a whole read always checks `M`.
    pub fn mac_wants(&self, i: u64) -> bool {
        let w = self.walk();
        matches!(w.status, MacStatus::Pending { .. }) && i < self.geometry().segments() && !w.has(i)
    }

    /// `B_i`: where segment `i` starts in `N` (0 for the first, `len(E'')`
    /// past the last), so that the `B_i` cut all of `E''`.
    fn bound(&self, i: u64) -> u64 {
        let g = self.geometry();
        if i == 0 {
            0
        } else if i >= g.segments() {
            g.len_e2()
        } else {
            // The first byte of the segment in `E`, mapped past KR and R3.
            g.e_to_n(g.segment_span_in_e(i).start)
        }
    }

    /// `x` rounded up to a region boundary, at most `len(E'')`.
    fn up(&self, x: u64) -> u64 {
        x.div_ceil(REGION_ALIGN)
            .saturating_mul(REGION_ALIGN)
            .min(self.geometry().len_e2())
    }

    /// The bytes of `E''` whose hashing is segment `i`'s share of `M`.
    fn mac_region(&self, i: u64) -> Range<u64> {
        self.up(self.bound(i))..self.up(self.bound(i + 1))
    }

    /// The bytes of `N` a visit of segment `i` reads: the segment, its MAC
    /// region, and for the last segment `M`.
    pub fn segment_read_range(&self, i: u64) -> Range<u64> {
        let g = self.geometry();
        let end = if i + 1 >= g.segments() {
            g.len_n()
        } else {
            self.up(self.bound(i + 1))
        };
        self.bound(i)..end
    }

    /// Reads segment `i` from `src` and opens it (see [`ObjectReader::open_segment_bytes`]).
    pub fn open_segment(
        &self,
        i: u64,
        src: &mut dyn ObjectSource,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let range = self.segment_read_range(i);
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        src.read_at(range.start, &mut buf)
            .map_err(|source| EnvelopeError::Read {
                offset: range.start,
                len: buf.len(),
                source,
            })?;
        self.open_segment_bytes(i, buf)
    }

    /// Opens segment `i` from `bytes`, the bytes of `N` at
    /// [`ObjectReader::segment_read_range`]: hashes its MAC region into the
    /// `M` walk (if not done yet), checks its GCM tag and returns its
    /// plaintext (decrypted in place in `bytes`, so usually without a copy).
    ///
    /// Fails with [`EnvelopeError::SegmentAuth`] for a bad tag (nothing of
    /// the segment is released), and with [`EnvelopeError::MacMismatch`]
    /// when this visit completes a failing `M` check or one failed before.
    pub fn open_segment_bytes(&self, i: u64, bytes: Vec<u8>) -> Result<Vec<u8>, EnvelopeError> {
        let g = self.geometry();
        if i >= g.segments() {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "segment {i} was asked for, but the object has {} segments",
                    g.segments()
                ),
            });
        }
        let range = self.segment_read_range(i);
        if bytes.len() as u64 != range.end - range.start {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "segment {i} needs the {} bytes of N at {}, but {} were given",
                    range.end - range.start,
                    range.start,
                    bytes.len()
                ),
            });
        }
        let wanted = {
            let w = self.walk();
            match w.status {
                MacStatus::Failed => return Err(EnvelopeError::MacMismatch),
                MacStatus::Verified => false,
                MacStatus::Pending { .. } => !w.has(i),
            }
        };
        let contribution = if wanted {
            Some(self.contribution(i, range.start, &bytes)?)
        } else {
            None
        };
        let plain = self.decrypt(i, range.start, bytes)?;
        if let Some(c) = contribution {
            self.record(i, c)?;
        }
        Ok(plain)
    }

    /// Hashes segment `i`'s MAC region out of `bytes` (which start at `base`
    /// in `N`), checks the KR and R3 bytes in it against the recovered
    /// ones, and picks up `M` if the segment is the last.
    fn contribution(&self, i: u64, base: u64, bytes: &[u8]) -> Result<Contribution, EnvelopeError> {
        let g = self.geometry();
        let region = self.mac_region(i);
        let piece = &bytes[(region.start - base) as usize..(region.end - base) as usize];
        let hashed = self.tree.hash_piece(region.start, piece)?;
        let mut key_material_ok = Choice::from(1);
        let inserted = self.rec.inserted();
        let mut at = 0u64;
        for r in &self.inserted_in_n {
            let (a, b) = (r.start.max(region.start), r.end.min(region.end));
            if a < b {
                let want = &inserted[(at + a - r.start) as usize..(at + b - r.start) as usize];
                let got = &bytes[(a - base) as usize..(b - base) as usize];
                key_material_ok &= want.ct_eq(got);
            }
            at += r.end - r.start;
        }
        let stored_m = if i + 1 == g.segments() {
            let m_at = (g.len_e2() - base) as usize;
            let mut m = [0u8; MAC_LEN];
            m.copy_from_slice(&bytes[m_at..m_at + MAC_LEN]);
            Some(m)
        } else {
            None
        };
        Ok(Contribution {
            piece: hashed,
            stored_m,
            key_material_ok,
        })
    }

    /// Adds a visit's contribution to the walk and, when it was the last
    /// missing one, checks `M`.
    fn record(&self, i: u64, c: Contribution) -> Result<(), EnvelopeError> {
        let segments = self.geometry().segments();
        let mut w = self.walk();
        match w.status {
            MacStatus::Failed => return Err(EnvelopeError::MacMismatch),
            MacStatus::Verified => return Ok(()),
            MacStatus::Pending { .. } if w.has(i) => return Ok(()),
            MacStatus::Pending { .. } => {}
        }
        if !bool::from(c.key_material_ok) {
            // KR or R3 read now differ from the ones the keys came from:
            // the object changed, or the source serves two versions.
            w.status = MacStatus::Failed;
            return Err(EnvelopeError::MacMismatch);
        }
        self.tree.insert(&mut w.parts, c.piece);
        if let Some(m) = c.stored_m {
            w.stored_m = Some(m);
        }
        w.add(i);
        if w.visited_count < segments {
            w.status = MacStatus::Pending {
                visited: w.visited_count,
                segments,
            };
            return Ok(());
        }
        let checked = match (self.tree.root(&w.parts), w.stored_m) {
            (Some(m), Some(stored)) => MacTree::check(&m, &stored, Choice::from(1)),
            // Every region is in, so the tree is complete; not reachable.
            _ => Err(EnvelopeError::Layout {
                detail: "every segment was visited but the M tree is incomplete".to_string(),
            }),
        };
        w.status = if checked.is_ok() {
            MacStatus::Verified
        } else {
            MacStatus::Failed
        };
        checked
    }

    /// Checks the tag of segment `i` in `bytes` (which start at `base` in
    /// `N`) and decrypts it, returning the plaintext.
    fn decrypt(&self, i: u64, base: u64, mut bytes: Vec<u8>) -> Result<Vec<u8>, EnvelopeError> {
        let g = self.geometry();
        let spans = g.segment_span_in_n(i);
        let last = i + 1 == g.segments();
        let mut seg = match spans.as_slice() {
            // The common case: decrypt where the bytes came in.
            [one] => {
                let (a, b) = ((one.start - base) as usize, (one.end - base) as usize);
                if a > 0 {
                    bytes.copy_within(a..b, 0);
                }
                bytes.truncate(b - a);
                bytes
            }
            // KR or R3 splits the segment: join its pieces.
            _ => {
                let mut joined =
                    Vec::with_capacity(spans.iter().map(|r| (r.end - r.start) as usize).sum());
                for r in &spans {
                    joined.extend_from_slice(
                        &bytes[(r.start - base) as usize..(r.end - base) as usize],
                    );
                }
                joined
            }
        };
        let Some(body_len) = seg.len().checked_sub(TAG_LEN) else {
            return Err(EnvelopeError::Layout {
                detail: format!("segment {i} is shorter than its tag"),
            });
        };
        let (body, tag) = seg.split_at_mut(body_len);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        self.cipher.decrypt_segment(i, last, body, &t)?;
        seg.truncate(body_len);
        Ok(seg)
    }

    /// Fills `out` with the plaintext at `offset`, visiting every segment
    /// the range touches (no cache: callers that read repeatedly keep
    /// their own, see the mount's reader).
    pub fn read_at(
        &self,
        src: &mut dyn ObjectSource,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), EnvelopeError> {
        let g = self.geometry();
        let end = offset.checked_add(out.len() as u64);
        let Some(end) = end.filter(|&e| e <= g.plain_len()) else {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "{} bytes at {offset} lie beyond the end of the file of {} bytes",
                    out.len(),
                    g.plain_len()
                ),
            });
        };
        for i in g.segments_for_plain(offset..end) {
            let seg = self.open_segment(i, src)?;
            let span = g.segment_span_in_plain(i);
            let (a, b) = (offset.max(span.start), end.min(span.end));
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&seg[(a - span.start) as usize..(b - span.start) as usize]);
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("geometry", self.geometry())
            .field("mac", &self.mac_status())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::SEG;
    use crate::envelope::bytes::seal_bytes;
    use crate::envelope::derive::mac;
    use crate::envelope::keys::SealKeys;
    use crate::envelope::open::{LocalShares, recover_keys};
    use crate::envelope::shares::Share;
    use proptest::prelude::*;

    fn fill(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    }

    /// A permutation of `0..n` from `seed`.
    fn shuffled(n: u64, seed: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        let mut s = seed | 1;
        for i in (1..v.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v.swap(i, (s % (i as u64 + 1)) as usize);
        }
        v
    }

    fn keys(seed: u8) -> SealKeys {
        SealKeys::split([seed; 32], [seed.wrapping_add(1); 32], [seed ^ 0x5a; 32])
    }

    fn reader_for(n: &[u8], keys: &SealKeys) -> ObjectReader {
        let mut src: &[u8] = n;
        let l = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        ObjectReader::new(recover_keys(&mut src, n.len() as u64, &l, None).unwrap())
    }

    /// `N` by the book for a hand-placed KR (at `n1` of E) and R3 (at `n2`
    /// of E'), with the reader that opens it.
    fn crafted(d: &[u8], n1: u64, n2: u64) -> (Vec<u8>, ObjectReader) {
        let (k, r) = ([0x4bu8; 32], [0x52u8; 32]);
        let kr = [0xaau8; 32];
        let r3 = Share::from_parts(3, &[0x33u8; 32]);
        let g = Geometry::new(d.len() as u64, n1, n2).unwrap();
        let cipher = SegmentCipher::new(&k);
        let mut e = crate::envelope::bytes::tests::reference(&g, &cipher, d, &kr, r3.as_bytes());
        let m = mac("mac M", &r, &e);
        e.extend_from_slice(&m);
        let rec = Recovered::crafted(k, r, g, &kr, &r3);
        (e, ObjectReader::new(rec))
    }

    /// Visits every segment in `order` and checks the plaintext and the
    /// walk: pending until the last visit, verified after it.
    fn read_all(r: &ObjectReader, n: &[u8], d: &[u8], order: &[u64]) {
        let g = r.geometry().clone();
        let mut src: &[u8] = n;
        for (k, &i) in order.iter().enumerate() {
            assert!(r.mac_wants(i));
            let seg = r.open_segment(i, &mut src).unwrap();
            let p = g.segment_span_in_plain(i);
            assert!(seg == d[p.start as usize..p.end as usize], "segment {i}");
            assert!(!r.mac_wants(i));
            if k + 1 < order.len() {
                assert_eq!(
                    r.mac_status(),
                    MacStatus::Pending {
                        visited: k as u64 + 1,
                        segments: g.segments()
                    }
                );
            }
        }
        assert_eq!(r.mac_status(), MacStatus::Verified);
        // Later visits serve plaintext without walking again.
        let seg = r.open_segment(order[0], &mut src).unwrap();
        assert_eq!(
            seg.len() as u64,
            g.segment_span_in_plain(order[0]).end - g.segment_span_in_plain(order[0]).start
        );
    }

    #[test]
    fn regions_cut_e2_into_chunks_and_reads_cover_them() {
        for (len, seed) in [
            (0usize, 1u8),
            (1, 2),
            (5000, 3),
            (3 * SEG as usize + 7, 4),
            (SEG as usize, 5),
        ] {
            let d = fill(len, seed as u64);
            let ks = keys(seed);
            let (n, _) = seal_bytes(&d, &ks).unwrap();
            let r = reader_for(&n, &ks);
            let g = r.geometry().clone();
            let mut next = 0;
            for i in 0..g.segments() {
                let region = r.mac_region(i);
                assert_eq!(region.start, next, "regions are contiguous");
                assert!(region.start.is_multiple_of(REGION_ALIGN) || region.start == g.len_e2());
                assert!(region.end.is_multiple_of(REGION_ALIGN) || region.end == g.len_e2());
                next = region.end;
                let read = r.segment_read_range(i);
                assert!(read.start <= region.start && region.end <= read.end);
                for s in g.segment_span_in_n(i) {
                    assert!(read.start <= s.start && s.end <= read.end);
                }
                // Less than a region's alignment of the next segment comes along.
                if i + 1 < g.segments() {
                    assert!(read.end - r.bound(i + 1) < REGION_ALIGN);
                }
            }
            assert_eq!(next, g.len_e2());
            assert_eq!(r.segment_read_range(g.segments() - 1).end, g.len_n());
        }
    }

    #[test]
    fn kr_and_r3_anywhere_in_any_order() {
        let plain_len = 3 * SEG + 100;
        let d = fill(plain_len as usize, 9);
        let le = plain_len + 4 * 16;
        let pairs = crate::envelope::geometry::test_insertion_points(le);
        for (c, (n1, n2)) in pairs.into_iter().enumerate() {
            for seed in [1u64, 2] {
                let (n, r) = crafted(&d, n1, n2);
                let order = shuffled(r.geometry().segments(), seed + c as u64 * 7 + n2);
                read_all(&r, &n, &d, &order);
            }
        }
    }

    #[test]
    fn read_at_serves_ranges_and_a_full_read_checks_m() {
        let len = 2 * SEG as usize + 333;
        let d = fill(len, 7);
        let ks = keys(7);
        let (n, _) = seal_bytes(&d, &ks).unwrap();
        let r = reader_for(&n, &ks);
        let mut src: &[u8] = &n;
        let mut out = vec![0u8; 1000];
        r.read_at(&mut src, SEG - 500, &mut out).unwrap();
        assert!(out == d[SEG as usize - 500..SEG as usize + 500]);
        assert!(matches!(
            r.mac_status(),
            MacStatus::Pending {
                visited: 2,
                segments: 3
            }
        ));
        let mut all = vec![0u8; len];
        r.read_at(&mut src, 0, &mut all).unwrap();
        assert!(all == d);
        assert_eq!(r.mac_status(), MacStatus::Verified);
        let mut past = [0u8; 2];
        assert!(matches!(
            r.read_at(&mut src, len as u64 - 1, &mut past),
            Err(EnvelopeError::Layout { .. })
        ));
        assert!(matches!(
            r.open_segment(3, &mut src),
            Err(EnvelopeError::Layout { .. })
        ));
        assert!(matches!(
            r.open_segment_bytes(0, vec![0u8; 10]),
            Err(EnvelopeError::Layout { .. })
        ));
    }

    #[test]
    fn a_failing_source_is_a_read_error() {
        let ks = keys(3);
        let (n, _) = seal_bytes(&fill(100_000, 3), &ks).unwrap();
        let r = reader_for(&n, &ks);
        let mut short: &[u8] = &n[..n.len() - 1];
        assert!(matches!(
            r.open_segment(1, &mut short),
            Err(EnvelopeError::Read { .. })
        ));
        assert!(matches!(
            r.mac_status(),
            MacStatus::Pending { visited: 0, .. }
        ));
    }

    /// What kind of byte of `N` position `p` is.
    enum Role {
        Segment(u64),
        Inserted,
        Mac,
    }

    fn role(g: &Geometry, p: u64) -> Role {
        if p >= g.len_e2() {
            return Role::Mac;
        }
        for i in 0..g.segments() {
            if g.segment_span_in_n(i).iter().any(|r| r.contains(&p)) {
                return Role::Segment(i);
            }
        }
        Role::Inserted
    }

    /// Flips byte `p` of `N` after the keys were recovered from the good
    /// object, reads every segment in `order`, and checks that the failure
    /// names what was tampered with.
    fn tamper_after_recovery(n: &[u8], ks: &SealKeys, p: u64, order: &[u64]) {
        let r = reader_for(n, ks);
        let g = r.geometry().clone();
        let mut t = n.to_vec();
        t[p as usize] ^= 0x20;
        let mut src: &[u8] = &t;
        let results: Vec<_> = order.iter().map(|&i| r.open_segment(i, &mut src)).collect();
        match role(&g, p) {
            Role::Segment(j) => {
                for (&i, res) in order.iter().zip(&results) {
                    if i == j {
                        assert!(
                            matches!(res, Err(EnvelopeError::SegmentAuth { index }) if *index == j),
                            "byte {p} in segment {j}: {res:?}"
                        );
                    } else {
                        assert!(res.is_ok(), "byte {p} in segment {j}, visit {i}: {res:?}");
                    }
                }
                // The walk cannot complete without segment j.
                assert!(matches!(r.mac_status(), MacStatus::Pending { .. }));
            }
            Role::Inserted | Role::Mac => {
                let first_bad = results.iter().position(std::result::Result::is_err);
                let Some(at) = first_bad else {
                    panic!("byte {p} (KR, R3 or M) tampered, but every visit passed");
                };
                for res in &results[at..] {
                    assert!(
                        matches!(res, Err(EnvelopeError::MacMismatch)),
                        "byte {p}: {res:?}"
                    );
                }
                if matches!(role(&g, p), Role::Mac) {
                    assert_eq!(
                        at + 1,
                        order.len(),
                        "M fails at the visit that completes it"
                    );
                }
                assert_eq!(r.mac_status(), MacStatus::Failed);
                assert!(!r.mac_wants(0));
            }
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_a_full_read_with_what_failed() {
        // One segment: every byte of N.
        let ks = keys(11);
        let (n, _) = seal_bytes(&fill(300, 11), &ks).unwrap();
        for p in 0..n.len() as u64 {
            tamper_after_recovery(&n, &ks, p, &[0]);
        }
        // Three segments: the KR, R3 and M bytes, both ends of every
        // segment and its tag, and a stride through the rest.
        let ks = keys(12);
        let (n, _) = seal_bytes(&fill(2 * SEG as usize + 4000, 12), &ks).unwrap();
        let g = reader_for(&n, &ks).geometry().clone();
        let mut ps: Vec<u64> = (0..n.len() as u64).step_by(4099).collect();
        ps.extend(
            g.inserted_in_n()
                .into_iter()
                .flat_map(|r| [r.start, r.end - 1]),
        );
        ps.extend(g.mac_in_n());
        for i in 0..g.segments() {
            for r in g.segment_span_in_n(i) {
                ps.extend([r.start, r.end - 1, r.end.saturating_sub(TAG_LEN as u64)]);
            }
        }
        for (k, &p) in ps.iter().enumerate() {
            tamper_after_recovery(&n, &ks, p, &shuffled(g.segments(), k as u64 + 1));
        }
    }

    #[test]
    fn tampered_key_material_fails_every_segment_or_recovery() {
        let ks = keys(13);
        let (n, _) = seal_bytes(&fill(SEG as usize + 10, 13), &ks).unwrap();
        let g = reader_for(&n, &ks).geometry().clone();
        let l = LocalShares::both(ks.r1().clone(), ks.r2().clone());
        for range in g.inserted_in_n() {
            for p in range {
                let mut t = n.clone();
                t[p as usize] ^= 0x01;
                let mut src: &[u8] = &t;
                let rec = match recover_keys(&mut src, t.len() as u64, &l, None) {
                    Ok(rec) => rec,
                    Err(e) => {
                        assert!(e.is_integrity(), "byte {p}: {e}");
                        continue;
                    }
                };
                let r = ObjectReader::new(rec);
                for i in 0..g.segments() {
                    let res = r.open_segment(i, &mut src);
                    assert!(
                        matches!(res, Err(EnvelopeError::SegmentAuth { index }) if index == i),
                        "byte {p}, segment {i}: {res:?}"
                    );
                }
            }
        }
    }

    /// Throughput of random-access opens from memory against the cost the
    /// mount's reader had before `ObjectReader` (each segment decrypted,
    /// `M` fed front to back in one BLAKE3 state). Run with
    /// `cargo test --release --lib reader_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn reader_throughput_100mb() {
        use crate::envelope::derive::MacHasher;
        use std::time::Instant;
        let len = 100 << 20;
        let d = fill(len, 1);
        let ks = keys(1);
        let (n, _) = seal_bytes(&d, &ks).unwrap();
        let mb = len as f64 / 1e6;
        let segs = reader_for(&n, &ks).geometry().segments();
        let mut best = [f64::MAX; 3];
        for _ in 0..10 {
            // Before: spans fetched, M walked front to back, then decrypted.
            let r = reader_for(&n, &ks);
            let g = r.geometry().clone();
            let t = Instant::now();
            let mut h = MacHasher::new("mac M", r.recovered().r());
            let mut at = 0u64;
            for i in 0..segs {
                let spans = g.segment_span_in_n(i);
                let (a, b) = (spans[0].start, spans[spans.len() - 1].end);
                h.update(&n[at as usize..b as usize]);
                at = b;
                let mut ct = n[a as usize..b as usize].to_vec();
                if spans.len() > 1 {
                    ct = spans
                        .iter()
                        .flat_map(|s| n[s.start as usize..s.end as usize].to_vec())
                        .collect();
                }
                let body = ct.len() - TAG_LEN;
                let (c, tag) = ct.split_at_mut(body);
                let tag: [u8; TAG_LEN] = tag.try_into().unwrap();
                r.cipher.decrypt_segment(i, i + 1 == segs, c, &tag).unwrap();
            }
            h.update(&n[at as usize..g.len_e2() as usize]);
            assert_eq!(&h.finalize()[..], &n[g.len_e2() as usize..]);
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            for (slot, order) in [(1, (0..segs).collect::<Vec<_>>()), (2, shuffled(segs, 5))] {
                let r = reader_for(&n, &ks);
                let t = Instant::now();
                for &i in &order {
                    let range = r.segment_read_range(i);
                    let bytes = n[range.start as usize..range.end as usize].to_vec();
                    r.open_segment_bytes(i, bytes).unwrap();
                }
                assert_eq!(r.mac_status(), MacStatus::Verified);
                best[slot] = best[slot].min(t.elapsed().as_secs_f64());
            }
        }
        let rate = |s: f64| format!("{:.0} MB/s ({:.3} s)", mb / s, s);
        println!("100 MiB, one thread, best of 10:");
        println!("  before (front-to-back M, decrypt): {}", rate(best[0]));
        println!("  ObjectReader, in order:             {}", rate(best[1]));
        println!("  ObjectReader, shuffled:             {}", rate(best[2]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Sealed objects of any length opened segment by segment in a
        /// random order (some twice): every plaintext right, M verified at
        /// the end, and a flipped M byte fails the visit that completes it.
        #[test]
        fn random_orders_open_and_verify(
            len in prop_oneof![
                0usize..300_000,
                (0usize..=4, -3i64..=3).prop_map(|(k, d)| (k as i64 * SEG as i64 + d).max(0) as usize),
            ],
            seed: u64,
            k: [u8; 32],
            rr: [u8; 32],
            cs: [u8; 32],
            again in proptest::collection::vec(0u64..5, 0..3),
            m_byte in 0usize..32,
        ) {
            let d = fill(len, seed);
            let ks = SealKeys::split(k, rr, cs);
            let (n, _) = seal_bytes(&d, &ks).unwrap();
            let r = reader_for(&n, &ks);
            let segs = r.geometry().segments();
            let mut order = shuffled(segs, seed);
            // Repeats in the middle are served and do not count twice.
            let at = (seed as usize) % order.len();
            let mut src: &[u8] = &n;
            for (k, &i) in order.iter().enumerate() {
                let seg = r.open_segment(i, &mut src).unwrap();
                let p = r.geometry().segment_span_in_plain(i);
                prop_assert!(seg == d[p.start as usize..p.end as usize]);
                if k == at {
                    for &a in again.iter().filter(|a| order[..=k].contains(a)) {
                        let seg = r.open_segment(a, &mut src).unwrap();
                        let p = r.geometry().segment_span_in_plain(a);
                        prop_assert!(seg == d[p.start as usize..p.end as usize]);
                    }
                }
                let want = if k + 1 == order.len() {
                    MacStatus::Verified
                } else {
                    MacStatus::Pending { visited: k as u64 + 1, segments: segs }
                };
                prop_assert_eq!(r.mac_status(), want);
            }

            let mut t = n.clone();
            let m_at = t.len() - MAC_LEN + m_byte;
            t[m_at] ^= 0x80;
            let r = reader_for(&t, &ks);
            order.rotate_left((seed % segs) as usize);
            let mut src: &[u8] = &t;
            for (k, &i) in order.iter().enumerate() {
                let res = r.open_segment(i, &mut src);
                if k + 1 == order.len() {
                    prop_assert!(matches!(res, Err(EnvelopeError::MacMismatch)));
                } else {
                    prop_assert!(res.is_ok());
                }
            }
            prop_assert_eq!(r.mac_status(), MacStatus::Failed);
            prop_assert!(matches!(r.open_segment(order[0], &mut src), Err(EnvelopeError::MacMismatch)));
        }
    }
}
