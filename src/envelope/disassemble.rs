//! `Disassembler`: the inverse of the assembler, `N` in, `E` out, with `M` checked at the end.
//!
//! PROTOCOL.md "Open" steps 5-6, streaming: every byte of `E''` goes into
//! `M` (hashed and checked by `MacTree`, `mac_tree.rs`); `KR` and `R3` are dropped from
//! the output (and compared with the copies key recovery read, so `M`
//! vouches for exactly the key material in use); the last 32 bytes are `M`.

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::EnvelopeError;
use super::mac_tree::{MacStream, MacTree};
use super::open::Recovered;
use super::{KEY_LEN, MAC_LEN, SHARE_LEN};

/// Streams `N` into `E` and checks `M`.
pub struct Disassembler {
    mac: MacStream,
    /// KR and R3 as key recovery read them.
    expected: Zeroizing<[u8; KEY_LEN + SHARE_LEN]>,
    /// KR and R3 as they came through the stream.
    seen: Zeroizing<[u8; KEY_LEN + SHARE_LEN]>,
    seen_len: usize,
    skips: Vec<Range<u64>>,
    next_skip: usize,
    pos_n: u64,
    len_e2: u64,
    len_n: u64,
    m: [u8; MAC_LEN],
}

impl Disassembler {
    /// A disassembler for the object `rec` was recovered from.
    pub fn new(rec: &Recovered) -> Disassembler {
        let g = rec.geometry();
        Disassembler {
            mac: MacTree::new(rec.r(), g.len_e2()).stream(),
            expected: Zeroizing::new(*rec.inserted()),
            seen: Zeroizing::new([0u8; KEY_LEN + SHARE_LEN]),
            seen_len: 0,
            skips: g.inserted_in_n(),
            next_skip: 0,
            pos_n: 0,
            len_e2: g.len_e2(),
            len_n: g.len_n(),
            m: [0u8; MAC_LEN],
        }
    }

    /// Takes the next bytes of `N` (any split) and writes the bytes of `E`
    /// they hold to `out`. Fails if more than `len(N)` bytes arrive.
    pub fn push<W: Write + ?Sized>(&mut self, mut n: &[u8], out: &mut W) -> io::Result<()> {
        if self.pos_n + n.len() as u64 > self.len_n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "sealed object source delivered {} bytes, more than its length {}",
                    self.pos_n + n.len() as u64,
                    self.len_n
                ),
            ));
        }
        while !n.is_empty() {
            if self.pos_n >= self.len_e2 {
                // M: the last 32 bytes.
                let at = (self.pos_n - self.len_e2) as usize;
                self.m[at..at + n.len()].copy_from_slice(n);
                self.pos_n += n.len() as u64;
                return Ok(());
            }
            let take;
            match self.skips.get(self.next_skip) {
                Some(s) if self.pos_n >= s.start => {
                    take = (s.end - self.pos_n).min(n.len() as u64) as usize;
                    self.seen[self.seen_len..self.seen_len + take].copy_from_slice(&n[..take]);
                    self.seen_len += take;
                    if self.pos_n + take as u64 == s.end {
                        self.next_skip += 1;
                    }
                }
                next => {
                    let end = next.map_or(self.len_e2, |s| s.start);
                    take = (end - self.pos_n).min(n.len() as u64) as usize;
                    out.write_all(&n[..take])?;
                }
            }
            self.mac.update(&n[..take]);
            self.pos_n += take as u64;
            n = &n[take..];
        }
        Ok(())
    }

    /// The `mac_only` mode: takes bytes of `N` and only feeds the `M` check
    /// (for verify-before-decrypt and scrub).
    pub fn push_mac_only(&mut self, n: &[u8]) -> io::Result<()> {
        self.push(n, &mut io::sink())
    }

    /// Bytes of `N` taken so far.
    pub fn position(&self) -> u64 {
        self.pos_n
    }

    /// Checks that all of `N` arrived and that `M` (and the inserted key
    /// material) match, in constant time.
    pub fn finish(self) -> Result<(), EnvelopeError> {
        if self.pos_n != self.len_n {
            return Err(EnvelopeError::Layout {
                detail: format!(
                    "the sealed object stream ended after {} of {} bytes; fetch it again",
                    self.pos_n, self.len_n
                ),
            });
        }
        let m = self.mac.finish()?;
        MacTree::check(&m, &self.m, self.seen.ct_eq(&self.expected[..]))
    }
}

impl fmt::Debug for Disassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disassembler")
            .field("pos_n", &self.pos_n)
            .field("len_n", &self.len_n)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::bytes::seal_bytes;
    use crate::envelope::keys::SealKeys;
    use crate::envelope::open::{LocalShares, recover_keys};
    use crate::envelope::seal::Sealer;

    /// E of a sealed object, computed independently of the disassembler.
    fn e_of(n: &[u8], rec: &Recovered) -> Vec<u8> {
        let g = rec.geometry();
        let mut e = Vec::new();
        for r in g.e_range_to_n(0..g.len_e()) {
            e.extend_from_slice(&n[r.start as usize..r.end as usize]);
        }
        e
    }

    #[test]
    fn any_split_gives_e_and_passes_m() {
        for len in [0usize, 1, 100, 70_000] {
            let keys = SealKeys::split([len as u8; 32], [2; 32], [3; 32]);
            let d: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (n, _) = seal_bytes(&d, &keys).unwrap();
            let mut src: &[u8] = &n;
            let l = LocalShares::both(keys.r1().clone(), keys.r2().clone());
            let rec = recover_keys(&mut src, n.len() as u64, &l, None).unwrap();
            let want = e_of(&n, &rec);
            assert_eq!(
                want.len() as u64,
                Sealer::new(len as u64, &keys).unwrap().geometry().len_e()
            );
            for split in [1usize, 5, 33, 4096, usize::MAX] {
                let mut d = Disassembler::new(&rec);
                let mut out = Vec::new();
                for piece in n.chunks(split.min(n.len())) {
                    d.push(piece, &mut out).unwrap();
                }
                d.finish().unwrap();
                assert_eq!(out, want, "len {len} split {split}");
            }
            let mut d = Disassembler::new(&rec);
            d.push_mac_only(&n).unwrap();
            d.finish().unwrap();
        }
    }

    #[test]
    fn tampering_anywhere_fails_m_and_short_input_fails() {
        let keys = SealKeys::split([1; 32], [2; 32], [3; 32]);
        let (n, _) = seal_bytes(&[7u8; 300], &keys).unwrap();
        let l = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let mut src: &[u8] = &n;
        let rec = recover_keys(&mut src, n.len() as u64, &l, None).unwrap();
        for i in 0..n.len() {
            let mut t = n.clone();
            t[i] ^= 0x01;
            let mut d = Disassembler::new(&rec);
            d.push_mac_only(&t).unwrap();
            assert!(
                matches!(d.finish(), Err(EnvelopeError::MacMismatch)),
                "byte {i}"
            );
        }
        let mut d = Disassembler::new(&rec);
        d.push_mac_only(&n[..n.len() - 1]).unwrap();
        assert!(matches!(d.finish(), Err(EnvelopeError::Layout { .. })));
        let mut d = Disassembler::new(&rec);
        let mut longer = n.clone();
        longer.push(0);
        assert!(d.push_mac_only(&longer).is_err());
    }
}
