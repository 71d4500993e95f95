//! Lengths and coordinate maps of a sealed object: plaintext -> `E` -> `E'` -> `E''`/`N`.
//!
//! Layout (PROTOCOL.md "Seal" steps 4-7 and "Random access"):
//! ```text
//! E   = C_0 || T_0 || C_1 || T_1 || ...        segment i at i * (SEG + 16)
//! E'  = E[..n1]  || KR (32) || E[n1..]          e  -> e'  = e  + (e  >= n1 ? 32 : 0)
//! E'' = E'[..n2] || R3 (33) || E'[n2..]         e' -> e'' = e' + (e' >= n2 ? 33 : 0)
//! N   = E'' || M (32)                           N and E'' share coordinates
//! ```
//! A range that crosses an insertion point skips the inserted bytes, so a
//! range of `E` maps to at most three ranges of `N`.

use std::fmt;
use std::ops::Range;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::EnvelopeError;
use super::{KEY_LEN, MAC_LEN, MIN_SEALED_LEN, SEG, SHARE_LEN, TAG_LEN, segment_count};

/// Bytes of one full segment in `E` (ciphertext and tag).
pub const SEG_E: u64 = SEG + TAG_LEN as u64;
/// Largest segment count of v1 (segment indices are `u32`).
const MAX_SEGMENTS: u64 = 1 << 32;
/// Bytes `N` has beyond `E`: KR, R3 and M.
const OVERHEAD: u64 = (KEY_LEN + SHARE_LEN + MAC_LEN) as u64;

/// Lengths and insertion points of one sealed object.
///
/// `n1` and `n2` are derived from key material and are secret; `Debug`
/// prints only the lengths, and the struct is zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Geometry {
    plain_len: u64,
    segments: u64,
    len_e: u64,
    len_n: u64,
    n1: u64,
    n2: u64,
}

impl Geometry {
    /// Geometry of a plaintext of `plain_len` bytes with KR at `n1` of `E`
    /// and R3 at `n2` of `E'`.
    pub fn new(plain_len: u64, n1: u64, n2: u64) -> Result<Geometry, EnvelopeError> {
        let segments = segment_count(plain_len);
        if segments > MAX_SEGMENTS {
            return Err(EnvelopeError::TooLarge { plain_len });
        }
        let too_large = || EnvelopeError::TooLarge { plain_len };
        let len_e = plain_len
            .checked_add(segments * TAG_LEN as u64)
            .ok_or_else(too_large)?;
        let len_n = len_e.checked_add(OVERHEAD).ok_or_else(too_large)?;
        if n1 > len_e {
            return Err(EnvelopeError::Layout {
                detail: format!("n1 = {n1} lies beyond len(E) = {len_e}"),
            });
        }
        if n2 > len_e + KEY_LEN as u64 {
            return Err(EnvelopeError::Layout {
                detail: format!("n2 = {n2} lies beyond len(E') = {}", len_e + KEY_LEN as u64),
            });
        }
        Ok(Geometry {
            plain_len,
            segments,
            len_e,
            len_n,
            n1,
            n2,
        })
    }

    /// The plaintext length of a sealed object of `len_n` bytes. Fails for
    /// a truncated object and for lengths whose segment count does not fit
    /// (a last segment too short to hold its tag, or an empty one after a
    /// full one).
    pub fn plain_len_of_sealed(len_n: u64) -> Result<u64, EnvelopeError> {
        if len_n < MIN_SEALED_LEN {
            return Err(EnvelopeError::Truncated {
                len: len_n,
                min: MIN_SEALED_LEN,
            });
        }
        let len_e = len_n - OVERHEAD;
        let segments = len_e.div_ceil(SEG_E).max(1);
        let tags = segments * TAG_LEN as u64;
        let fits = len_e >= tags && segment_count(len_e - tags) == segments;
        if !fits || segments > MAX_SEGMENTS {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "a sealed object of {len_n} bytes has len(E) = {len_e}, which no segment \
                     count fits (its last segment is cut off or padded)"
                ),
            });
        }
        Ok(len_e - tags)
    }

    /// Plaintext length `L`.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// Segment count `s`.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// `len(E) = L + 16 s`.
    pub fn len_e(&self) -> u64 {
        self.len_e
    }

    /// `len(E') = len(E) + 32`.
    pub fn len_e1(&self) -> u64 {
        self.len_e + KEY_LEN as u64
    }

    /// `len(E'') = len(E) + 65`.
    pub fn len_e2(&self) -> u64 {
        self.len_e + (KEY_LEN + SHARE_LEN) as u64
    }

    /// `len(N) = len(E'') + 32`.
    pub fn len_n(&self) -> u64 {
        self.len_n
    }

    /// Position of KR in `E'`.
    pub fn n1(&self) -> u64 {
        self.n1
    }

    /// Position of R3 in `E''`.
    pub fn n2(&self) -> u64 {
        self.n2
    }

    /// Position in `E'` of byte `pos` of `E`.
    pub fn e_to_e1(&self, pos: u64) -> u64 {
        if pos >= self.n1 {
            pos.saturating_add(KEY_LEN as u64)
        } else {
            pos
        }
    }

    /// Position in `E''` (and `N`) of byte `pos` of `E'`.
    pub fn e1_to_e2(&self, pos: u64) -> u64 {
        if pos >= self.n2 {
            pos.saturating_add(SHARE_LEN as u64)
        } else {
            pos
        }
    }

    /// Position in `N` of byte `pos` of `E`.
    pub fn e_to_n(&self, pos: u64) -> u64 {
        self.e1_to_e2(self.e_to_e1(pos))
    }

    /// The ranges of `N` that hold the bytes `range` of `E'` (one or two).
    pub fn e1_range_to_n(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::with_capacity(2);
        split_at_insert(range, self.n2, SHARE_LEN as u64, &mut out);
        out
    }

    /// The ranges of `N` that hold the bytes `range` of `E` (one to three),
    /// in order, skipping KR and R3.
    pub fn e_range_to_n(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut e1 = Vec::with_capacity(2);
        split_at_insert(range, self.n1, KEY_LEN as u64, &mut e1);
        let mut out = Vec::with_capacity(3);
        for r in e1 {
            split_at_insert(r, self.n2, SHARE_LEN as u64, &mut out);
        }
        out
    }

    /// The bytes of `E` that hold segment `i` (`C_i || T_i`). Empty for `i >= s`.
    pub fn segment_span_in_e(&self, i: u64) -> Range<u64> {
        if i >= self.segments {
            return self.len_e..self.len_e;
        }
        let start = i * SEG_E;
        start..(start + SEG_E).min(self.len_e)
    }

    /// The ranges of `N` that hold segment `i`, in order (one to three).
    pub fn segment_span_in_n(&self, i: u64) -> Vec<Range<u64>> {
        self.e_range_to_n(self.segment_span_in_e(i))
    }

    /// The plaintext bytes of segment `i`.
    pub fn segment_span_in_plain(&self, i: u64) -> Range<u64> {
        let start = i.saturating_mul(SEG).min(self.plain_len);
        start..(start + SEG).min(self.plain_len)
    }

    /// The indices of the segments that cover the plaintext `range`.
    pub fn segments_for_plain(&self, range: Range<u64>) -> Range<u64> {
        if range.start >= range.end {
            return 0..0;
        }
        range.start / SEG..(range.end - 1) / SEG + 1
    }

    /// The ranges of `N` holding the ciphertext segments that cover the
    /// plaintext `range`, in order; ranges that cross KR or R3 skip them.
    /// Reading these and cutting the result at `SEG + 16` gives whole
    /// segments `C_i || T_i`, starting with segment
    /// `segments_for_plain(range).start`. Fails for a range beyond `L`.
    pub fn plain_range_to_n(&self, range: Range<u64>) -> Result<Vec<Range<u64>>, EnvelopeError> {
        if range.start > range.end || range.end > self.plain_len {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "plaintext range {}..{} is outside the file of {} bytes",
                    range.start, range.end, self.plain_len
                ),
            });
        }
        let segs = self.segments_for_plain(range);
        if segs.is_empty() {
            return Ok(Vec::new());
        }
        let e = self.segment_span_in_e(segs.start).start..self.segment_span_in_e(segs.end - 1).end;
        Ok(self.e_range_to_n(e))
    }

    /// Where R3 sits in `N`.
    pub fn r3_in_n(&self) -> Range<u64> {
        self.n2..self.n2 + SHARE_LEN as u64
    }

    /// Where KR sits in `N` (two pieces when R3 splits it).
    pub fn kr_in_n(&self) -> Vec<Range<u64>> {
        self.e1_range_to_n(self.n1..self.n1 + KEY_LEN as u64)
    }

    /// Where M sits in `N`.
    pub fn mac_in_n(&self) -> Range<u64> {
        self.len_e2()..self.len_n
    }

    /// The ranges of `N` holding KR and R3, sorted and merged (one or two).
    /// Their bytes, read in order, are [`Geometry::interleave`] of KR and R3.
    pub fn inserted_in_n(&self) -> Vec<Range<u64>> {
        let mut all = self.kr_in_n();
        all.push(self.r3_in_n());
        all.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(2);
        for r in all {
            match merged.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => merged.push(r),
            }
        }
        merged
    }

    /// The 65 inserted bytes in the order they appear in `E''`: R3 before
    /// KR when `n2 <= n1`, after it when `n2 >= n1 + 32`, inside it otherwise.
    pub fn interleave(
        &self,
        kr: &[u8; KEY_LEN],
        r3: &[u8; SHARE_LEN],
    ) -> [u8; KEY_LEN + SHARE_LEN] {
        let mut out = [0u8; KEY_LEN + SHARE_LEN];
        let cut = self.r3_offset_in_kr();
        out[..cut].copy_from_slice(&kr[..cut]);
        out[cut..cut + SHARE_LEN].copy_from_slice(r3);
        out[cut + SHARE_LEN..].copy_from_slice(&kr[cut..]);
        out
    }

    /// How many bytes of KR come before R3 in `E''` (0..=32).
    fn r3_offset_in_kr(&self) -> usize {
        // n2 <= n1 gives 0, n2 >= n1 + 32 gives 32; in between, n2 - n1.
        self.n2.saturating_sub(self.n1).min(KEY_LEN as u64) as usize
    }
}

/// Maps `range` across an insertion of `k` bytes at `p` (bytes at positions
/// `>= p` move up by `k`), appending one or two ranges to `out`.
fn split_at_insert(range: Range<u64>, p: u64, k: u64, out: &mut Vec<Range<u64>>) {
    if range.start >= range.end {
        return;
    }
    if range.end <= p {
        out.push(range);
    } else if range.start >= p {
        out.push(range.start.saturating_add(k)..range.end.saturating_add(k));
    } else {
        out.push(range.start..p);
        out.push(p.saturating_add(k)..range.end.saturating_add(k));
    }
}

impl fmt::Debug for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Geometry")
            .field("plain_len", &self.plain_len)
            .field("segments", &self.segments)
            .field("len_e", &self.len_e)
            .field("len_n", &self.len_n)
            .finish_non_exhaustive()
    }
}

/// Every (n1, n2) insertion pair the tests try for an `E` of `le` bytes:
/// KR at, just before and just after segment boundaries, at 0 and at the
/// end; R3 at, around and far from KR (n2 never past `le + 32`).
#[cfg(test)]
pub(crate) fn test_insertion_points(le: u64) -> Vec<(u64, u64)> {
    let mut points = vec![0, 1, le - 1, le];
    for b in [SEG_E, 2 * SEG_E, 3 * SEG_E] {
        points.extend([b - 17, b - 16, b - 1, b, b + 1]);
    }
    let mut pairs = Vec::new();
    for &n1 in &points {
        for n2 in [
            0,
            n1,
            n1 + 5,
            n1 + 32,
            n1 + 33,
            le + 32,
            SEG_E + 32,
            2 * SEG_E + 31,
        ] {
            if n2 <= le + 32 {
                pairs.push((n1, n2));
            }
        }
    }
    pairs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    /// Naive model: label every byte of N with the E position it holds
    /// (`None` for KR, R3 and M) by literally inserting markers.
    fn model(g: &Geometry) -> Vec<Option<u64>> {
        let mut v: Vec<Option<u64>> = (0..g.len_e()).map(Some).collect();
        let n1 = g.n1() as usize;
        v.splice(n1..n1, std::iter::repeat_n(None, 32));
        let n2 = g.n2() as usize;
        v.splice(n2..n2, std::iter::repeat_n(None, 33));
        v.extend(std::iter::repeat_n(None, 32));
        v
    }

    /// Ranges of N holding E bytes in `e`, from the model.
    fn model_ranges(m: &[Option<u64>], e: Range<u64>) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for (i, slot) in m.iter().enumerate() {
            if let Some(p) = slot
                && e.contains(p)
            {
                let i = i as u64;
                match out.last_mut() {
                    Some(last) if last.end == i => last.end = i + 1,
                    _ => out.push(i..i + 1),
                }
            }
        }
        out
    }

    /// A small xorshift for deterministic pseudo-random tests.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn lengths() {
        for (l, s) in [(0u64, 1u64), (1, 1), (SEG, 1), (SEG + 1, 2), (3 * SEG, 3)] {
            let g = Geometry::new(l, 0, 0).unwrap();
            assert_eq!(g.segments(), s);
            assert_eq!(g.len_e(), l + 16 * s);
            assert_eq!(g.len_n(), l + 16 * s + 97);
            assert_eq!(Geometry::plain_len_of_sealed(g.len_n()).unwrap(), l);
        }
    }

    #[test]
    fn sealed_lengths_that_fit_no_segment_count_are_rejected() {
        assert!(matches!(
            Geometry::plain_len_of_sealed(112),
            Err(EnvelopeError::Truncated { .. })
        ));
        // One full segment plus 1..=16 bytes cannot be a last segment.
        for extra in 1..=16u64 {
            let len_n = SEG_E + extra + OVERHEAD;
            assert!(matches!(
                Geometry::plain_len_of_sealed(len_n),
                Err(EnvelopeError::Layout { .. })
            ));
        }
        assert_eq!(
            Geometry::plain_len_of_sealed(SEG_E + 17 + OVERHEAD).unwrap(),
            SEG + 1
        );
    }

    #[test]
    fn positions_beyond_the_object_are_rejected() {
        assert!(Geometry::new(0, 17, 0).is_err());
        assert!(Geometry::new(0, 16, 49).is_err());
        assert!(Geometry::new(0, 16, 48).is_ok());
        assert!(matches!(
            Geometry::new(u64::MAX - 10, 0, 0),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(Geometry::new((1u64 << 32) * SEG, 0, 0).is_ok());
        assert!(matches!(
            Geometry::new((1u64 << 32) * SEG + 1, 0, 0),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn random_ranges_match_the_naive_model() {
        let mut st = 0x1234_5678_9abc_def1u64;
        for plain_len in [0u64, 1, 31, 100, SEG - 1, SEG, SEG + 1, 2 * SEG + 5] {
            let g0 = Geometry::new(plain_len, 0, 0).unwrap();
            let le = g0.len_e();
            let mut cases = vec![
                (0, 0),
                (le, le + 32),
                (0, 32),
                (le, 0),
                (5.min(le), 5.min(le) + 10),
            ];
            for _ in 0..12 {
                let n1 = rng(&mut st) % (le + 1);
                let n2 = rng(&mut st) % (le + 33);
                cases.push((n1, n2));
            }
            for (n1, n2) in cases {
                let g = Geometry::new(plain_len, n1, n2).unwrap();
                let m = model(&g);
                assert_eq!(m.len() as u64, g.len_n());
                for e in 0..le {
                    assert_eq!(m[g.e_to_n(e) as usize], Some(e));
                }
                for _ in 0..30 {
                    let a = rng(&mut st) % (le + 1);
                    let b = a + rng(&mut st) % (le - a + 1);
                    assert_eq!(
                        g.e_range_to_n(a..b),
                        model_ranges(&m, a..b),
                        "n1 {n1} n2 {n2} {a}..{b}"
                    );
                }
                for i in 0..g.segments() {
                    assert_eq!(
                        g.segment_span_in_n(i),
                        model_ranges(&m, g.segment_span_in_e(i))
                    );
                }
                // Inserted bytes = everything in E'' the model leaves unlabeled.
                let ins: usize = g
                    .inserted_in_n()
                    .iter()
                    .map(|r| (r.end - r.start) as usize)
                    .sum();
                assert_eq!(ins, 65);
                for r in g.inserted_in_n() {
                    assert!(r.clone().all(|i| m[i as usize].is_none()));
                }
                for _ in 0..10 {
                    let a = rng(&mut st) % (plain_len + 1);
                    let b = a + rng(&mut st) % (plain_len - a + 1);
                    let got = g.plain_range_to_n(a..b).unwrap();
                    let segs = g.segments_for_plain(a..b);
                    let want = if segs.is_empty() {
                        Vec::new()
                    } else {
                        let e0 = g.segment_span_in_e(segs.start).start;
                        let e1 = g.segment_span_in_e(segs.end - 1).end;
                        model_ranges(&m, e0..e1)
                    };
                    assert_eq!(got, want);
                    if a < b {
                        assert!(
                            segs.start * SEG <= a && b <= (segs.end * SEG).min(plain_len.max(1))
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn plain_range_beyond_file_is_an_error() {
        let g = Geometry::new(10, 3, 4).unwrap();
        assert!(g.plain_range_to_n(5..11).is_err());
        assert_eq!(g.plain_range_to_n(4..4).unwrap(), Vec::<Range<u64>>::new());
    }

    #[test]
    fn interleave_orders_r3_and_kr() {
        let kr = [0xaau8; 32];
        let r3 = [0x33u8; 33];
        // R3 before KR.
        let g = Geometry::new(100, 50, 50).unwrap();
        assert_eq!(&g.interleave(&kr, &r3)[..33], &r3[..]);
        // R3 after KR.
        let g = Geometry::new(100, 50, 82).unwrap();
        assert_eq!(&g.interleave(&kr, &r3)[32..], &r3[..]);
        assert_eq!(g.inserted_in_n(), vec![50..115]);
        // R3 inside KR.
        let g = Geometry::new(100, 50, 60).unwrap();
        let i = g.interleave(&kr, &r3);
        assert_eq!(&i[..10], &kr[..10]);
        assert_eq!(&i[10..43], &r3[..]);
        assert_eq!(g.kr_in_n(), vec![50..60, 93..115]);
        assert_eq!(g.inserted_in_n(), vec![50..115]);
        // Apart.
        let g = Geometry::new(100, 10, 90).unwrap();
        assert_eq!(g.inserted_in_n(), vec![10..42, 90..123]);
    }

    #[test]
    fn debug_hides_positions() {
        let g = Geometry::new(100, 12, 34).unwrap();
        let d = format!("{g:?}");
        assert!(!d.contains("n1") && !d.contains("n2"));
    }
}
