//! Sealing: `Sealer` computes the layout of one object, `Assembler` turns `E` into `N`.
//!
//! PROTOCOL.md "Seal" steps 5-8. The segment encryption itself (step 4) is
//! done by the caller with [`Sealer::cipher`], in parallel if it likes (see
//! `stream`); the assembler only needs the bytes of `E` in order, in pieces
//! of any size, and inserts `KR` and `R3` while it computes `M`.

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;

use zeroize::Zeroizing;

use super::backup::Backup;
use super::cipher::SegmentCipher;
use super::derive::pos;
use super::error::EnvelopeError;
use super::geometry::Geometry;
use super::keys::SealKeys;
use super::mac_tree::{MacStream, MacTree};
use super::{KEY_LEN, SHARE_LEN};

/// The layout, backup record and cipher of one seal.
pub struct Sealer {
    geometry: Geometry,
    backup: Backup,
    cipher: SegmentCipher,
    /// KR and R3 in the order they appear in `E''`.
    inserted: Zeroizing<[u8; KEY_LEN + SHARE_LEN]>,
    /// The tree of `M` (key and shape), for assemblers.
    mac: MacTree,
}

/// `n2 = pos("n2", y(R1) xor y(R2), len(E'))`.
fn position_n2(probe: &Geometry, keys: &SealKeys) -> u64 {
    let r12 = xor32(keys.r1().y(), keys.r2().y());
    pos("n2", &r12[..], probe.len_e1())
}

/// The backup record `B` that sealing `plain_len` bytes with `keys` makes,
/// known before the first byte is sealed (a vault that disperses `B` over
/// the nodes needs it before the shards are written).
pub fn backup_for(plain_len: u64, keys: &SealKeys) -> Result<Backup, EnvelopeError> {
    let probe = Geometry::new(plain_len, 0, 0)?;
    Backup::build(keys.r1(), keys.r2(), keys.r4(), position_n2(&probe, keys))
}

impl Sealer {
    /// Prepares sealing `plain_len` bytes with `keys`: `n1 = pos("n1", R,
    /// len(E))`, `n2 = pos("n2", y(R1) xor y(R2), len(E'))`, and `B`.
    pub fn new(plain_len: u64, keys: &SealKeys) -> Result<Sealer, EnvelopeError> {
        let probe = Geometry::new(plain_len, 0, 0)?;
        let n1 = pos("n1", keys.r(), probe.len_e());
        let n2 = position_n2(&probe, keys);
        let geometry = Geometry::new(plain_len, n1, n2)?;
        let backup = Backup::build(keys.r1(), keys.r2(), keys.r4(), n2)?;
        let kr = xor32(keys.k(), keys.r());
        let inserted = Zeroizing::new(geometry.interleave(&kr, keys.r3().as_bytes()));
        let mac = MacTree::new(keys.r(), geometry.len_e2());
        Ok(Sealer {
            geometry,
            backup,
            cipher: SegmentCipher::new(keys.k()),
            inserted,
            mac,
        })
    }

    /// The backup record `B` of this object.
    pub fn backup(&self) -> Backup {
        self.backup.clone()
    }

    /// Lengths and insertion points.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The segment cipher under `K`.
    pub fn cipher(&self) -> &SegmentCipher {
        &self.cipher
    }

    /// KR and R3 in the order they appear in `E''` (for writers that place
    /// segments directly, like `seal_bytes`).
    pub(crate) fn inserted_bytes(&self) -> Zeroizing<[u8; KEY_LEN + SHARE_LEN]> {
        self.inserted.clone()
    }

    /// A fresh assembler that turns `E` into `N`.
    pub fn assembler(&self) -> Assembler {
        Assembler {
            mac: self.mac.stream(),
            inserted: self.inserted.clone(),
            skips: self.geometry.inserted_in_n(),
            next_skip: 0,
            inserted_used: 0,
            pos_n: 0,
            e_seen: 0,
            len_e: self.geometry.len_e(),
            len_e2: self.geometry.len_e2(),
        }
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

/// Byte-wise xor of two 32-byte strings.
pub(crate) fn xor32(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

/// Writes `N` from the bytes of `E`: copies `E` through, inserting `KR` and
/// `R3` where the geometry says, and appends `M` at [`Assembler::finish`].
pub struct Assembler {
    mac: MacStream,
    inserted: Zeroizing<[u8; KEY_LEN + SHARE_LEN]>,
    /// Ranges of `N` holding inserted bytes, sorted and merged.
    skips: Vec<Range<u64>>,
    next_skip: usize,
    /// Inserted bytes already written.
    inserted_used: usize,
    /// Bytes of `N` written so far.
    pos_n: u64,
    /// Bytes of `E` taken so far.
    e_seen: u64,
    len_e: u64,
    len_e2: u64,
}

impl Assembler {
    /// Takes the next bytes of `E` (any split) and writes the corresponding
    /// bytes of `N` to `out`. Fails if more than `len(E)` bytes arrive.
    pub fn push<W: Write + ?Sized>(&mut self, mut e: &[u8], out: &mut W) -> io::Result<()> {
        if self.e_seen + e.len() as u64 > self.len_e {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "assembler got {} bytes of E but the sealed object holds {}: the source \
                     delivered more than it announced",
                    self.e_seen + e.len() as u64,
                    self.len_e
                ),
            ));
        }
        while !e.is_empty() {
            self.emit_due_inserts(out)?;
            let limit = match self.skips.get(self.next_skip) {
                Some(s) => (s.start - self.pos_n).min(e.len() as u64) as usize,
                None => e.len(),
            };
            let (now, rest) = e.split_at(limit);
            self.mac.update(now);
            out.write_all(now)?;
            self.pos_n += now.len() as u64;
            self.e_seen += now.len() as u64;
            e = rest;
        }
        Ok(())
    }

    /// Writes any inserted bytes that are due at the current position.
    fn emit_due_inserts<W: Write + ?Sized>(&mut self, out: &mut W) -> io::Result<()> {
        while let Some(s) = self.skips.get(self.next_skip) {
            if s.start != self.pos_n {
                break;
            }
            let n = (s.end - s.start) as usize;
            let bytes = &self.inserted[self.inserted_used..self.inserted_used + n];
            self.mac.update(bytes);
            out.write_all(bytes)?;
            self.inserted_used += n;
            self.pos_n = s.end;
            self.next_skip += 1;
        }
        Ok(())
    }

    /// Writes inserted bytes that sit at the very end of `E''`, then `M`.
    /// Fails if fewer than `len(E)` bytes were pushed.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> io::Result<()> {
        self.emit_due_inserts(out)?;
        if self.e_seen != self.len_e || self.pos_n != self.len_e2 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "assembler finished after {} of {} bytes of E: the sealed object would be \
                     incomplete",
                    self.e_seen, self.len_e
                ),
            ));
        }
        let m = self
            .mac
            .finish()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        out.write_all(&m[..])
    }
}

impl fmt::Debug for Assembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembler")
            .field("e_seen", &self.e_seen)
            .field("len_e", &self.len_e)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::derive::mac;

    /// Naive reference: build N by literally splicing, per PROTOCOL.md.
    fn reference(e: &[u8], n1: usize, n2: usize, kr: &[u8], r3: &[u8], r: &[u8]) -> Vec<u8> {
        let mut e1 = e.to_vec();
        e1.splice(n1..n1, kr.iter().copied());
        let mut e2 = e1;
        e2.splice(n2..n2, r3.iter().copied());
        let m = mac("mac M", r, &e2);
        e2.extend_from_slice(&m);
        e2
    }

    /// An assembler with chosen n1, n2 (bypassing the key-derived positions).
    fn crafted(
        plain_len: u64,
        n1: u64,
        n2: u64,
        kr: &[u8; 32],
        r3: &[u8; 33],
        r: &[u8; 32],
    ) -> Assembler {
        let g = Geometry::new(plain_len, n1, n2).unwrap();
        Assembler {
            mac: MacTree::new(r, g.len_e2()).stream(),
            inserted: Zeroizing::new(g.interleave(kr, r3)),
            skips: g.inserted_in_n(),
            next_skip: 0,
            inserted_used: 0,
            pos_n: 0,
            e_seen: 0,
            len_e: g.len_e(),
            len_e2: g.len_e2(),
        }
    }

    #[test]
    fn every_insertion_edge_matches_the_reference() {
        let kr: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
        let r3: [u8; 33] = std::array::from_fn(|i| 0x30 + i as u8);
        let r = [0x11u8; 32];
        for plain_len in [0u64, 1, 5, 40] {
            let le = plain_len + 16;
            let e: Vec<u8> = (0..le).map(|i| i as u8).collect();
            let mut cases = vec![];
            for n1 in [0, 1, le / 2, le - 1, le] {
                // n2: before, at, inside, at end of, and after KR; end of E'.
                for n2 in [
                    0,
                    n1.saturating_sub(1),
                    n1,
                    n1 + 1,
                    n1 + 16,
                    n1 + 31,
                    n1 + 32,
                    n1 + 33,
                    le + 32,
                ] {
                    if n2 <= le + 32 {
                        cases.push((n1, n2));
                    }
                }
            }
            for (n1, n2) in cases {
                let want = reference(&e, n1 as usize, n2 as usize, &kr, &r3, &r);
                for split in [1usize, 3, 7, 1000] {
                    let mut a = crafted(plain_len, n1, n2, &kr, &r3, &r);
                    let mut out = Vec::new();
                    for piece in e.chunks(split) {
                        a.push(piece, &mut out).unwrap();
                    }
                    a.push(&[], &mut out).unwrap();
                    a.finish(&mut out).unwrap();
                    assert_eq!(out, want, "L {plain_len} n1 {n1} n2 {n2} split {split}");
                }
            }
        }
    }

    #[test]
    fn too_many_or_too_few_bytes_are_errors() {
        let keys = SealKeys::split([1; 32], [2; 32], [3; 32]);
        let s = Sealer::new(3, &keys).unwrap();
        let mut a = s.assembler();
        let mut out = Vec::new();
        assert!(a.push(&[0u8; 20], &mut out).is_err());
        a.push(&[0u8; 18], &mut out).unwrap();
        assert!(a.finish(&mut out).is_err());
    }

    #[test]
    fn sealer_positions_follow_the_protocol() {
        let keys = SealKeys::split([1; 32], [2; 32], [3; 32]);
        let s = Sealer::new(1000, &keys).unwrap();
        let g = s.geometry();
        assert_eq!(g.len_e(), 1016);
        assert_eq!(g.n1(), pos("n1", keys.r(), 1016));
        let r12 = xor32(keys.r1().y(), keys.r2().y());
        assert_eq!(g.n2(), pos("n2", &r12[..], 1048));
        assert_eq!(s.backup().n2(), g.n2());
        assert_eq!(backup_for(1000, &keys).unwrap(), s.backup());
        s.backup().verify(keys.r1()).unwrap();
    }
}
