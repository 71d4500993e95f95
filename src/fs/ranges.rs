//! Byte ranges of a file: which bytes are dirty (written, not yet sealed),
//! and how new extents lay over old ones. Pure code.

use crate::namespace::Extent;

/// A set of byte ranges `[start, end)`, kept sorted, disjoint and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Builds a set from ranges in any order.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> RangeSet {
        let mut s = RangeSet::new();
        for (a, b) in ranges {
            s.insert(a, b);
        }
        s
    }

    /// True when no byte is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Bytes in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }

    /// Adds `[start, end)`.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b < s {
                out.push((a, b));
            } else if a > e {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.ranges = out;
    }

    /// Removes `[start, end)`.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for &(a, b) in &self.ranges {
            if b <= start || a >= end {
                out.push((a, b));
                continue;
            }
            if a < start {
                out.push((a, start));
            }
            if b > end {
                out.push((end, b));
            }
        }
        self.ranges = out;
    }

    /// Removes every range of `other`.
    pub fn subtract(&mut self, other: &RangeSet) {
        for &(a, b) in &other.ranges {
            self.remove(a, b);
        }
    }

    /// Splits `[start, end)` into consecutive pieces, each marked with
    /// whether it lies in the set.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        let mut pos = start;
        for &(a, b) in &self.ranges {
            if b <= pos {
                continue;
            }
            if a >= end {
                break;
            }
            if a > pos {
                out.push((pos, a, false));
            }
            let stop = b.min(end);
            out.push((a.max(pos), stop, true));
            pos = stop;
        }
        if pos < end {
            out.push((pos, end, false));
        }
        out
    }
}

/// The extents of a file after `new` extents are laid over `base`: where
/// they overlap, `new` wins and `base` pieces are cut (keeping the right
/// object offsets). Both inputs sorted and non-overlapping; so is the result.
pub fn overlay(base: &[Extent], new: &[Extent]) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::with_capacity(base.len() + new.len());
    for e in base {
        let mut pieces = vec![*e];
        for n in new {
            let (ns, ne) = (n.offset, n.offset + n.len);
            let mut next = Vec::with_capacity(pieces.len() + 1);
            for p in pieces {
                let (ps, pe) = (p.offset, p.offset + p.len);
                if pe <= ns || ps >= ne {
                    next.push(p);
                    continue;
                }
                if ps < ns {
                    next.push(Extent { len: ns - ps, ..p });
                }
                if pe > ne {
                    next.push(Extent {
                        offset: ne,
                        len: pe - ne,
                        object_offset: p.object_offset + (ne - ps),
                        ..p
                    });
                }
            }
            pieces = next;
        }
        out.extend(pieces);
    }
    out.extend(new.iter().copied());
    out.sort_by_key(|e| e.offset);
    out
}

/// The extents of a file with the bytes of `holes` cut out (they read as
/// zeros afterwards): pieces inside a hole go, pieces across one are split
/// keeping the right object offsets.
pub fn cut(extents: &[Extent], holes: &RangeSet) -> Vec<Extent> {
    if holes.is_empty() {
        return extents.to_vec();
    }
    let mut out = Vec::with_capacity(extents.len() + holes.ranges().len());
    for e in extents {
        let end = e.offset + e.len;
        for (a, b, in_hole) in holes.pieces(e.offset, end) {
            if !in_hole {
                out.push(Extent {
                    offset: a,
                    len: b - a,
                    object_offset: e.object_offset + (a - e.offset),
                    ..*e
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectId;
    use proptest::prelude::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut s = RangeSet::from_ranges([(10, 20), (30, 40), (20, 25)]);
        assert_eq!(s.ranges(), &[(10, 25), (30, 40)]);
        s.insert(5, 31);
        assert_eq!(s.ranges(), &[(5, 40)]);
        s.remove(10, 12);
        s.remove(39, 100);
        assert_eq!(s.ranges(), &[(5, 10), (12, 39)]);
        assert_eq!(
            s.pieces(0, 50),
            vec![
                (0, 5, false),
                (5, 10, true),
                (10, 12, false),
                (12, 39, true),
                (39, 50, false)
            ]
        );
        assert_eq!(s.pieces(6, 8), vec![(6, 8, true)]);
        assert_eq!(s.len(), 32);
    }

    fn ext(offset: u64, len: u64, id: u8, object_offset: u64) -> Extent {
        Extent {
            offset,
            len,
            object: ObjectId([id; 16]),
            object_offset,
        }
    }

    #[test]
    fn overlay_cuts_old_extents() {
        let base = vec![ext(0, 100, 1, 0), ext(200, 50, 2, 10)];
        let new = vec![ext(40, 20, 3, 0), ext(220, 100, 4, 0)];
        assert_eq!(
            overlay(&base, &new),
            vec![
                ext(0, 40, 1, 0),
                ext(40, 20, 3, 0),
                ext(60, 40, 1, 60),
                ext(200, 20, 2, 10),
                ext(220, 100, 4, 0)
            ]
        );
    }

    /// Model: a byte map of which (object, object offset) serves each byte.
    fn model(extents: &[Extent], size: u64) -> Vec<Option<(u8, u64)>> {
        let mut m = vec![None; size as usize];
        for e in extents {
            for i in 0..e.len {
                m[(e.offset + i) as usize] = Some((e.object.0[0], e.object_offset + i));
            }
        }
        m
    }

    #[test]
    fn cut_splits_and_drops_pieces() {
        let base = vec![ext(0, 100, 1, 0), ext(200, 50, 2, 10)];
        let holes = RangeSet::from_ranges([(20, 30), (90, 210), (240, u64::MAX)]);
        assert_eq!(
            cut(&base, &holes),
            vec![ext(0, 20, 1, 0), ext(30, 60, 1, 30), ext(210, 30, 2, 20)]
        );
        assert_eq!(cut(&base, &RangeSet::new()), base);
    }

    proptest! {
        #[test]
        fn overlay_matches_a_byte_model(
            base in proptest::collection::vec((0u64..200, 1u64..40), 0..6),
            new in proptest::collection::vec((0u64..200, 1u64..40), 0..6),
        ) {
            // Make each list sorted and disjoint.
            let norm = |v: Vec<(u64, u64)>, first_id: u8| {
                let set = RangeSet::from_ranges(v.into_iter().map(|(a, l)| (a, a + l)));
                set.ranges().iter().enumerate().map(|(i, &(a, b))| ext(a, b - a, first_id + i as u8, 1000 * i as u64)).collect::<Vec<_>>()
            };
            let base = norm(base, 1);
            let new = norm(new, 100);
            let got = overlay(&base, &new);
            let mut want = model(&base, 300);
            for (i, v) in model(&new, 300).into_iter().enumerate() {
                if v.is_some() { want[i] = v; }
            }
            prop_assert_eq!(model(&got, 300), want);
            for w in got.windows(2) {
                prop_assert!(w[0].offset + w[0].len <= w[1].offset);
            }
        }

        #[test]
        fn range_set_matches_a_bit_model(ops in proptest::collection::vec((any::<bool>(), 0u64..100, 0u64..30), 0..30)) {
            let mut s = RangeSet::new();
            let mut bits = vec![false; 130];
            for (add, a, l) in ops {
                if add { s.insert(a, a + l) } else { s.remove(a, a + l) }
                for b in &mut bits[a as usize..(a + l) as usize] { *b = add; }
            }
            let mut from_set = vec![false; 130];
            for &(a, b) in s.ranges() {
                for x in &mut from_set[a as usize..b as usize] { *x = true; }
            }
            prop_assert_eq!(from_set, bits);
            for w in s.ranges().windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
        }
    }
}
