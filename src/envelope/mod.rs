//! The sealed-object envelope v1 (PROTOCOL.md): seal and open as streaming pure code.
//!
//! One file version `D` becomes
//! - `N` (stored erasure-coded on the nodes): the AES-256-GCM STREAM
//!   ciphertext `E` of `D` under a fresh key `K`, with `KR = K xor R` and the
//!   Shamir share `R3` of `R` inserted at key-derived positions, followed by
//!   a BLAKE3 MAC `M` under `R`;
//! - `B` (kept by the erasure-coding side): `R4`, the position of `R3`, and
//!   MACs binding it to `R1` and `R2`;
//! - `R1`, `R2` (kept in the local keystore).
//!
//! Any two of `{R1, R2}` or one of them plus `B` open `N`; `N` alone holds
//! `R3` and `KR`, below the threshold. The code is pure: bytes in, bytes out,
//! through `std::io::Write` sinks and the small [`ObjectSource`] trait.
//!
//! Map of the module: [`derive`](mod@derive) (labels, MACs, positions), [`shares`] and
//! `gf256` (Shamir), [`keys`] (seal input), [`backup`] (`B`), [`geometry`]
//! (lengths and coordinate maps), [`cipher`] (segments), [`seal`] (the
//! assembler), [`open`] (key recovery), [`disassemble`] (the inverse of the
//! assembler), [`stream`] (parallel drivers), [`bytes`] (in-memory calls),
//! [`reader`] (random-access open of any segment, in any order), and
//! `mac_tree`, the one place `M` is computed and checked: whole, front to
//! back, or from pieces in any order. [`pieces`] splits a small secret
//! (`B`, an unlock key) `t`-of-`n` for places that must not hold it whole.

pub mod backup;
pub mod bytes;
pub mod cipher;
pub mod derive;
pub mod disassemble;
pub mod error;
pub mod geometry;
mod gf256;
pub mod keys;
mod mac_tree;
pub mod open;
pub mod pieces;
pub mod reader;
pub mod seal;
pub mod shares;
pub mod source;
pub mod stream;

pub use backup::Backup;
pub use bytes::{Opened, open_bytes, seal_bytes};
pub use cipher::SegmentCipher;
pub use disassemble::Disassembler;
pub use error::EnvelopeError;
pub use geometry::Geometry;
pub use keys::SealKeys;
pub use open::{BadShares, LocalShares, Recovered, Recovery, recover_keys};
pub use reader::{MacStatus, ObjectReader};
pub use seal::{Assembler, Sealer};
pub use shares::{Share, interpolate_share};
pub use source::ObjectSource;
pub use stream::{Sealed, StreamError, open_stream, seal_stream, verify_stream};

/// Plaintext bytes per segment.
pub const SEG: u64 = 65_536;
/// GCM tag bytes per segment.
pub const TAG_LEN: usize = 16;
/// Bytes of `K`, `R` and `KR`.
pub const KEY_LEN: usize = 32;
/// Bytes of an encoded share (`x` then 32 value bytes).
pub const SHARE_LEN: usize = 33;
/// Bytes of `M`, `M14`, `M24`.
pub const MAC_LEN: usize = 32;
/// Bytes of the backup record `B`.
pub const BACKUP_LEN: usize = 105;
/// The smallest sealed object: one empty segment's tag, KR, R3 and M.
pub const MIN_SEALED_LEN: u64 = 16 + 32 + 33 + 32;

/// Segment count `s = max(1, ceil(L / SEG))` (an empty file is one empty segment).
pub fn segment_count(plain_len: u64) -> u64 {
    plain_len.div_ceil(SEG).max(1)
}

/// `len(N) = L + 16 s + 97` (saturating; sizes that large are rejected by [`Geometry::new`]).
pub fn sealed_len(plain_len: u64) -> u64 {
    plain_len
        .saturating_add(segment_count(plain_len).saturating_mul(TAG_LEN as u64))
        .saturating_add((KEY_LEN + SHARE_LEN + MAC_LEN) as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn counts_and_lengths() {
        assert_eq!(segment_count(0), 1);
        assert_eq!(segment_count(1), 1);
        assert_eq!(segment_count(SEG), 1);
        assert_eq!(segment_count(SEG + 1), 2);
        assert_eq!(sealed_len(0), 113);
        assert_eq!(sealed_len(1_048_581), 1_048_950);
        assert_eq!(MIN_SEALED_LEN, 113);
    }
}
