//! `M = mac("mac M", R, E'')`: the one place it is computed and checked, from `E''` whole,
//! front to back, or in chunk-aligned pieces taken in any order.
//!
//! `M` is a BLAKE3 keyed hash, and BLAKE3 is a binary tree over 1 KiB chunks
//! (section 2.1 of the BLAKE3 paper): a node over `c > 1` chunks has a left
//! child over the largest power of two of chunks below `c`, and a right child
//! over the rest. Any node can be hashed on its own (its "chaining value",
//! through `blake3::hazmat`) and two siblings merged into their parent, which
//! gives the same root as hashing `E''` front to back. That is what lets a
//! random-access reader verify `M` from segments visited in any order
//! without keeping their bytes: it hashes the nodes its piece covers, keeps
//! only their 32-byte chaining values, merges siblings as soon as both are
//! there, and compares the root with `M` once every chunk was seen.
//!
//! Three ways in, all computing the same `M`:
//! - [`MacTree::whole`]: all of `E''` in one slice (in-memory seal and open);
//! - [`MacTree::stream`]: `E''` front to back in pieces of any size (the
//!   assembler and disassembler of the streaming seal and open);
//! - [`MacTree::hash_piece`] then [`MacTree::insert`]: chunk-aligned pieces
//!   in any order (the [`ObjectReader`]); the hashing needs no lock, only the
//!   insertion touches the shared [`MacParts`].
//!
//! And one way out for an open: [`MacTree::check`], the only comparison
//! with the `M` stored in `N`.
//!
//! [`ObjectReader`]: super::ObjectReader

use std::collections::BTreeMap;
use std::fmt;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use super::derive::derive;
use super::error::EnvelopeError;
use super::{KEY_LEN, MAC_LEN};

/// Bytes per BLAKE3 chunk, the leaf of the tree.
pub const CHUNK: u64 = blake3::CHUNK_LEN as u64;

/// The key and tree shape of `M` for one object (`R` and `len(E'')`).
pub struct MacTree {
    /// `derive("mac M", R)`, the BLAKE3 key of `M`.
    key: Zeroizing<[u8; KEY_LEN]>,
    len_e2: u64,
    /// Chunks of `E''` (at least 1: `E''` is never empty).
    chunks: u64,
}

/// A node of the tree: the chunks `start..end` of `E''`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    start: u64,
    end: u64,
}

impl Node {
    fn len(self) -> u64 {
        self.end - self.start
    }

    fn contains(self, other: Node) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The two children, or `None` for a single chunk.
    fn children(self) -> Option<(Node, Node)> {
        let len = self.len();
        if len < 2 {
            return None;
        }
        // The largest power of two strictly below `len` (BLAKE3's left subtree).
        let left = 1u64 << (63 - (len - 1).leading_zeros());
        let mid = self.start + left;
        Some((
            Node {
                start: self.start,
                end: mid,
            },
            Node {
                start: mid,
                end: self.end,
            },
        ))
    }
}

/// What hashing a node gave: the root hash itself (the node is all of
/// `E''`), or the chaining value of an inner node.
#[derive(Clone)]
enum Digest {
    Root([u8; MAC_LEN]),
    Cv(ChainingValue),
}

/// Hashed nodes of one piece of `E''`, ready for [`MacTree::insert`].
pub struct HashedPiece {
    nodes: Vec<(Node, Digest)>,
}

impl fmt::Debug for HashedPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashedPiece")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// The nodes of `M`'s tree hashed so far, siblings merged as they meet.
///
/// Memory: 32 bytes per node kept. A front-to-back walk keeps about
/// `log2(chunks)` nodes; any order ends with one root.
#[derive(Default)]
pub struct MacParts {
    /// Disjoint nodes by first chunk: `start -> (end, chaining value)`.
    nodes: BTreeMap<u64, (u64, ChainingValue)>,
    /// The root hash, once all of `E''` came in one piece.
    root: Option<[u8; MAC_LEN]>,
    /// Chunks covered by `nodes` (or all, with `root`).
    covered: u64,
}

impl fmt::Debug for MacParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacParts")
            .field("nodes", &self.nodes.len())
            .field("covered", &self.covered)
            .finish()
    }
}

impl MacTree {
    /// The tree of `M` for an object with share secret `R` and `len(E'') = len_e2`.
    pub fn new(r: &[u8; KEY_LEN], len_e2: u64) -> MacTree {
        MacTree {
            key: Zeroizing::new(derive("mac M", r)),
            len_e2,
            chunks: len_e2.div_ceil(CHUNK).max(1),
        }
    }

    fn root_node(&self) -> Node {
        Node {
            start: 0,
            end: self.chunks,
        }
    }

    fn mode(&self) -> Mode<'_> {
        Mode::KeyedHash(&self.key)
    }

    /// The bytes of `E''` that node `n` covers.
    fn byte_range(&self, n: Node) -> std::ops::Range<u64> {
        n.start * CHUNK..(n.end * CHUNK).min(self.len_e2)
    }

    /// `M` of all of `E''` at once (one BLAKE3 pass, all SIMD lanes busy).
    pub fn whole(&self, e2: &[u8]) -> Result<Zeroizing<[u8; MAC_LEN]>, EnvelopeError> {
        if e2.len() as u64 != self.len_e2 {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "M is over all {} bytes of E'', but {} were given",
                    self.len_e2,
                    e2.len()
                ),
            });
        }
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(e2);
        let m = Zeroizing::new(*h.finalize().as_bytes());
        h.reset();
        Ok(m)
    }

    /// A front-to-back hasher of `E''`: the root node hashed in pieces.
    pub fn stream(&self) -> MacStream {
        MacStream {
            hasher: blake3::Hasher::new_keyed(&self.key),
            fed: 0,
            len_e2: self.len_e2,
        }
    }

    /// Hashes the piece `E''[start..start + bytes.len()]`, which must start
    /// on a chunk boundary and end on one (or at the end of `E''`): the
    /// largest tree nodes inside it, each in one BLAKE3 call. Needs no
    /// shared state, so callers hash outside their lock. An empty piece is
    /// fine and adds nothing.
    pub fn hash_piece(&self, start: u64, bytes: &[u8]) -> Result<HashedPiece, EnvelopeError> {
        let end = start.checked_add(bytes.len() as u64);
        let aligned = |x: u64| x.is_multiple_of(CHUNK) || x == self.len_e2;
        match end {
            Some(end) if aligned(start) && aligned(end) && end <= self.len_e2 => {}
            _ => {
                return Err(EnvelopeError::Layout {
                    detail: format!(
                        "a piece of E'' for M at {start} of {} bytes does not start and end on \
                         {CHUNK}-byte chunk boundaries inside the {} bytes of E''",
                        bytes.len(),
                        self.len_e2
                    ),
                });
            }
        }
        let mut nodes = Vec::with_capacity(16);
        if bytes.is_empty() {
            return Ok(HashedPiece { nodes });
        }
        let want = Node {
            start: start / CHUNK,
            end: (start + bytes.len() as u64).div_ceil(CHUNK),
        };
        let mut stack = Vec::with_capacity(64);
        stack.push(self.root_node());
        while let Some(n) = stack.pop() {
            if n.end <= want.start || n.start >= want.end {
                continue;
            }
            if want.contains(n) {
                let r = self.byte_range(n);
                let piece = &bytes[(r.start - start) as usize..(r.end - start) as usize];
                nodes.push((n, self.hash_node(n, piece)));
                continue;
            }
            if let Some((l, r)) = n.children() {
                // Right first, so nodes come out left to right.
                stack.push(r);
                stack.push(l);
            }
        }
        Ok(HashedPiece { nodes })
    }

    /// Hashes node `n` from its bytes: the root hash for the root, else
    /// its chaining value (BLAKE3 requires the distinction).
    fn hash_node(&self, n: Node, bytes: &[u8]) -> Digest {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        let d = if n == self.root_node() {
            h.update(bytes);
            Digest::Root(*h.finalize().as_bytes())
        } else {
            // A node of the tree starts on its own size boundary and holds no
            // more than that size, so hazmat's offset rules hold.
            h.set_input_offset(n.start * CHUNK);
            h.update(bytes);
            Digest::Cv(h.finalize_non_root())
        };
        h.reset();
        d
    }

    /// The ancestors of node `n` from the root down, each with the
    /// sibling of the node under it (merging a node with that sibling gives
    /// the ancestor), in a fixed array: the tree is at most 64 levels deep.
    /// Returns the array and how many entries are used; none for the root.
    fn path_down(&self, n: Node) -> ([(Node, Node); 64], usize) {
        let mut path = [(n, n); 64];
        let mut len = 0;
        let mut cur = self.root_node();
        while cur != n && len < path.len() {
            let Some((l, r)) = cur.children() else {
                break;
            };
            let (next, sib) = if n.start < r.start { (l, r) } else { (r, l) };
            path[len] = (cur, sib);
            len += 1;
            cur = next;
        }
        (path, len)
    }

    /// Adds a hashed piece to `parts`, merging every pair of siblings that
    /// is complete (below the root, which [`MacTree::root`] makes). Nodes
    /// already covered (the same piece hashed twice by racing readers) are
    /// skipped; a node that covers nodes already there replaces them.
    pub fn insert(&self, parts: &mut MacParts, piece: HashedPiece) {
        for (n, d) in piece.nodes {
            match d {
                Digest::Root(m) => {
                    parts.nodes.clear();
                    parts.root = Some(m);
                    parts.covered = self.chunks;
                }
                Digest::Cv(cv) => self.insert_node(parts, n, cv),
            }
        }
    }

    fn insert_node(&self, parts: &mut MacParts, mut n: Node, mut cv: ChainingValue) {
        if parts.root.is_some() {
            return;
        }
        // Tree nodes nest or are disjoint: an earlier node may contain `n`
        // (skip it), or `n` may contain later ones (they are replaced).
        if let Some((&s, &(e, _))) = parts.nodes.range(..=n.start).next_back()
            && (Node { start: s, end: e }).contains(n)
        {
            return;
        }
        let inside: Vec<u64> = parts.nodes.range(n.start..n.end).map(|(&s, _)| s).collect();
        for s in inside {
            if let Some((e, _)) = parts.nodes.remove(&s) {
                parts.covered -= e - s;
            }
        }
        let (path, len) = self.path_down(n);
        for &(parent, sib) in path[..len].iter().rev() {
            if parent == self.root_node() {
                break;
            }
            match parts.nodes.get(&sib.start) {
                Some(&(e, sib_cv)) if e == sib.end => {
                    parts.nodes.remove(&sib.start);
                    parts.covered -= sib.len();
                    cv = if sib.start < n.start {
                        merge_subtrees_non_root(&sib_cv, &cv, self.mode())
                    } else {
                        merge_subtrees_non_root(&cv, &sib_cv, self.mode())
                    };
                    n = parent;
                }
                _ => break,
            }
        }
        parts.covered += n.len();
        parts.nodes.insert(n.start, (n.end, cv));
    }

    /// True once every chunk of `E''` is in `parts`.
    #[cfg(test)]
    pub fn is_complete(&self, parts: &MacParts) -> bool {
        parts.covered == self.chunks
    }

    /// `M` from `parts`, once they cover all of `E''`.
    pub fn root(&self, parts: &MacParts) -> Option<Zeroizing<[u8; MAC_LEN]>> {
        if let Some(m) = parts.root {
            return Some(Zeroizing::new(m));
        }
        let (l, r) = self.root_node().children()?;
        let left = parts.nodes.get(&l.start).filter(|(e, _)| *e == l.end)?;
        let right = parts.nodes.get(&r.start).filter(|(e, _)| *e == r.end)?;
        Some(Zeroizing::new(
            *merge_subtrees_root(&left.1, &right.1, self.mode()).as_bytes(),
        ))
    }

    /// Compares the computed `M` with the `stored` one from `N`, in constant
    /// time, together with `key_material_ok` (the `KR` and `R3` bytes that
    /// went into `M` are the ones the keys were recovered from, so `M`
    /// vouches for exactly the key material in use). The only place an open
    /// decides `M`.
    pub fn check(
        computed: &[u8; MAC_LEN],
        stored: &[u8],
        key_material_ok: Choice,
    ) -> Result<(), EnvelopeError> {
        if bool::from(computed.ct_eq(stored) & key_material_ok) {
            Ok(())
        } else {
            Err(EnvelopeError::MacMismatch)
        }
    }
}

impl fmt::Debug for MacTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacTree")
            .field("len_e2", &self.len_e2)
            .finish_non_exhaustive()
    }
}

/// `M` over `E''` fed front to back in pieces of any size.
///
/// Large pieces matter for speed: BLAKE3 hashes several chunks of one
/// `update` in parallel SIMD lanes.
pub struct MacStream {
    hasher: blake3::Hasher,
    fed: u64,
    len_e2: u64,
}

impl MacStream {
    /// Appends the next bytes of `E''`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.fed += bytes.len() as u64;
    }

    /// `M`, once exactly `len(E'')` bytes came.
    pub fn finish(&self) -> Result<Zeroizing<[u8; MAC_LEN]>, EnvelopeError> {
        if self.fed != self.len_e2 {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "M is over the {} bytes of E'', but {} came",
                    self.len_e2, self.fed
                ),
            });
        }
        Ok(Zeroizing::new(*self.hasher.finalize().as_bytes()))
    }
}

impl Drop for MacStream {
    fn drop(&mut self) {
        // The state is keyed by a secret; blake3 has no zeroize, so reset it
        // to forget the absorbed input.
        self.hasher.reset();
    }
}

impl fmt::Debug for MacStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacStream")
            .field("fed", &self.fed)
            .field("len_e2", &self.len_e2)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::derive::mac;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 10) as u8)
            .collect()
    }

    /// Cuts `0..len` at the chunk boundaries `cuts` (in chunks), in that order.
    fn pieces(len: u64, mut cuts: Vec<u64>) -> Vec<(u64, u64)> {
        let chunks = len.div_ceil(CHUNK).max(1);
        cuts.retain(|&c| c > 0 && c < chunks);
        cuts.push(0);
        cuts.push(chunks);
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2)
            .map(|w| (w[0] * CHUNK, (w[1] * CHUNK).min(len)))
            .collect()
    }

    fn m_from_pieces(t: &MacTree, e2: &[u8], order: &[(u64, u64)]) -> Option<[u8; 32]> {
        let mut parts = MacParts::default();
        for &(a, b) in order {
            assert!(!t.is_complete(&parts) || a == b);
            let p = t.hash_piece(a, &e2[a as usize..b as usize]).unwrap();
            t.insert(&mut parts, p);
        }
        assert!(t.is_complete(&parts));
        // Siblings merged: at most the root's two children are left.
        assert!(parts.nodes.len() <= 2, "{parts:?}");
        t.root(&parts).map(|m| *m)
    }

    #[test]
    fn every_way_in_gives_the_protocol_mac() {
        let r = [4u8; 32];
        for len in [
            1u64, 81, 1023, 1024, 1025, 2048, 3000, 4096, 65_617, 200_000,
        ] {
            let e2 = bytes(len as usize, 9);
            let t = MacTree::new(&r, len);
            let want = mac("mac M", &r, &e2);
            assert_eq!(*t.whole(&e2).unwrap(), want, "whole {len}");
            let mut s = t.stream();
            for p in e2.chunks(777) {
                s.update(p);
            }
            assert_eq!(*s.finish().unwrap(), want, "stream {len}");
            let chunks = len.div_ceil(CHUNK);
            let every: Vec<u64> = (0..chunks).collect();
            let mut order = pieces(len, every);
            assert_eq!(m_from_pieces(&t, &e2, &order), Some(want), "chunks {len}");
            order.reverse();
            assert_eq!(m_from_pieces(&t, &e2, &order), Some(want), "reversed {len}");
            assert_eq!(
                m_from_pieces(&t, &e2, &[(0, len)]),
                Some(want),
                "one piece {len}"
            );
        }
    }

    #[test]
    fn misaligned_pieces_are_errors_not_panics() {
        let t = MacTree::new(&[1u8; 32], 5000);
        let e2 = bytes(5000, 1);
        assert!(t.hash_piece(1, &e2[1..1024]).is_err());
        assert!(t.hash_piece(0, &e2[..1000]).is_err());
        assert!(t.hash_piece(4096, &[0u8; 905]).is_err());
        assert!(t.hash_piece(u64::MAX - 1023, &[0u8; 2048]).is_err());
        assert!(t.hash_piece(4096, &e2[4096..]).is_ok());
        assert!(t.hash_piece(5000, &[]).is_ok());
        assert!(t.whole(&e2[..4999]).is_err());
        let mut s = t.stream();
        s.update(&e2[..10]);
        assert!(s.finish().is_err());
    }

    #[test]
    fn duplicates_and_covering_pieces_are_harmless() {
        let len = 40_000u64;
        let e2 = bytes(len as usize, 3);
        let r = [8u8; 32];
        let t = MacTree::new(&r, len);
        let want = mac("mac M", &r, &e2);
        let mut parts = MacParts::default();
        for (a, b) in [(3, 9), (3, 9), (4, 5), (0, 3), (9, 40), (0, 40)] {
            let (a, b) = (a * CHUNK, (b * CHUNK).min(len));
            let p = t.hash_piece(a, &e2[a as usize..b as usize]).unwrap();
            t.insert(&mut parts, p);
        }
        assert_eq!(t.root(&parts).map(|m| *m), Some(want));
    }

    #[test]
    fn check_compares_m_and_key_material() {
        let m = [5u8; 32];
        MacTree::check(&m, &m, Choice::from(1)).unwrap();
        let mut bad = m;
        bad[31] ^= 1;
        assert!(matches!(
            MacTree::check(&m, &bad, Choice::from(1)),
            Err(EnvelopeError::MacMismatch)
        ));
        assert!(matches!(
            MacTree::check(&m, &m, Choice::from(0)),
            Err(EnvelopeError::MacMismatch)
        ));
        assert!(matches!(
            MacTree::check(&m, &m[..31], Choice::from(1)),
            Err(EnvelopeError::MacMismatch)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Any cut of E'' at chunk boundaries, inserted in any order, gives
        /// the MAC of E'' front to back; an incomplete set gives none.
        #[test]
        fn any_cut_in_any_order(
            len in 1u64..300_000,
            cuts in proptest::collection::vec(0u64..300, 0..40),
            order_seed: u64,
            r: [u8; 32],
        ) {
            let e2 = bytes(len as usize, order_seed as u8);
            let t = MacTree::new(&r, len);
            let want = mac("mac M", &r, &e2);
            let mut order = pieces(len, cuts);
            // Fisher-Yates with a xorshift from the seed.
            let mut s = order_seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(m_from_pieces(&t, &e2, &order), Some(want));
            if order.len() > 1 {
                let mut parts = MacParts::default();
                for &(a, b) in &order[1..] {
                    t.insert(&mut parts, t.hash_piece(a, &e2[a as usize..b as usize]).unwrap());
                }
                prop_assert!(!t.is_complete(&parts));
                prop_assert!(t.root(&parts).is_none());
            }
        }
    }
}
