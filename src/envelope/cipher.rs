//! The STREAM segment cipher: AES-256-GCM per segment with nonce `0^7 || u32be(i) || last`.
//!
//! PROTOCOL.md "Seal" step 4. The 7-byte nonce prefix is zero because `K` is
//! fresh for every sealed object; the last-segment flag stops truncation at a
//! segment boundary, and the index stops reordering.
//!
//! The AES-GCM is ring's: on this machine it seals and opens at about
//! 2.5 GB/s against 0.8 GB/s for the `aes-gcm` crate, whose GHASH has no
//! carry-less-multiply fast path here (docs/BENCHMARKS.md, issue 14). The
//! bytes are standard AES-256-GCM either way; a test checks them against the
//! `aes-gcm` crate, and the envelope vectors of an independent
//! implementation keep passing.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::error::EnvelopeError;
use super::{KEY_LEN, TAG_LEN};

/// AES-256-GCM under one object's `K`. `&self` methods and `Sync`, so one
/// cipher serves all worker threads.
pub struct SegmentCipher {
    aead: LessSafeKey,
}

/// The nonce of segment `index`: 7 zero bytes, `u32be(index)`, then 1 for the last segment.
fn nonce(index: u64, last: bool) -> Result<[u8; 12], EnvelopeError> {
    let i = u32::try_from(index).map_err(|_| EnvelopeError::TooLarge {
        plain_len: index.saturating_mul(super::SEG),
    })?;
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = u8::from(last);
    Ok(n)
}

impl SegmentCipher {
    /// A cipher for key `K`.
    pub fn new(k: &[u8; KEY_LEN]) -> SegmentCipher {
        // ring refuses only a key of the wrong length, which the type rules out.
        let key = UnboundKey::new(&AES_256_GCM, k).expect("a 32-byte AES-256 key");
        SegmentCipher {
            aead: LessSafeKey::new(key),
        }
    }

    /// Encrypts segment `index` in place and returns its tag. Fails for an
    /// index above `u32::MAX` (a file over 256 TiB).
    pub fn encrypt_segment(
        &self,
        index: u64,
        last: bool,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], EnvelopeError> {
        let n = Nonce::assume_unique_for_key(nonce(index, last)?);
        let plain_len = data.len() as u64;
        let too_large = || EnvelopeError::TooLarge { plain_len };
        let tag = self
            .aead
            .seal_in_place_separate_tag(n, Aad::empty(), data)
            .map_err(|_| too_large())?;
        tag.as_ref().try_into().map_err(|_| too_large())
    }

    /// Decrypts segment `index` in place after checking its tag. On a tag
    /// failure the contents of `data` are unspecified (ring may have
    /// decrypted part of it): callers discard the buffer with the error.
    pub fn decrypt_segment(
        &self,
        index: u64,
        last: bool,
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), EnvelopeError> {
        let n = Nonce::assume_unique_for_key(nonce(index, last)?);
        self.aead
            .open_in_place_separate_tag(n, Aad::empty(), Tag::from(*tag), data, 0..)
            .map(|_| ())
            .map_err(|_| EnvelopeError::SegmentAuth { index })
    }
}

impl fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SegmentCipher { <redacted> }")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn assert_sync<T: Sync + Send>() {}

    #[test]
    fn cipher_is_sync() {
        assert_sync::<SegmentCipher>();
    }

    #[test]
    fn round_trip_and_flags_matter() {
        let c = SegmentCipher::new(&[4u8; 32]);
        let mut d = b"hello segment".to_vec();
        let tag = c.encrypt_segment(7, false, &mut d).unwrap();
        assert_ne!(&d[..], b"hello segment");
        assert!(matches!(
            c.decrypt_segment(7, true, &mut d.clone(), &tag),
            Err(EnvelopeError::SegmentAuth { index: 7 })
        ));
        assert!(c.decrypt_segment(8, false, &mut d.clone(), &tag).is_err());
        c.decrypt_segment(7, false, &mut d, &tag).unwrap();
        assert_eq!(&d[..], b"hello segment");
    }

    /// ring's bytes are the `aes-gcm` crate's: the segment format does not
    /// depend on which implementation sealed it.
    #[test]
    fn matches_the_aes_gcm_crate() {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let key = [9u8; 32];
        let c = SegmentCipher::new(&key);
        let other = aes_gcm::Aes256Gcm::new(&aes_gcm::Key::<aes_gcm::Aes256Gcm>::from(key));
        for (index, last, len) in [
            (0u64, false, 0usize),
            (3, true, 17),
            (70_000, false, 65_536),
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut ours = plain.clone();
            let tag = c.encrypt_segment(index, last, &mut ours).unwrap();
            let mut theirs = plain.clone();
            let t = other
                .encrypt_inout_detached(
                    &aes_gcm::Nonce::from(nonce(index, last).unwrap()),
                    &[],
                    (&mut theirs[..]).into(),
                )
                .unwrap();
            assert_eq!(ours, theirs, "segment {index}");
            assert_eq!(&tag[..], t.as_slice(), "tag of segment {index}");
        }
    }

    #[test]
    fn nonce_layout() {
        let n = nonce(0x0102_0304, true).unwrap();
        assert_eq!(&n[..], &[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 1]);
        assert!(nonce(u64::from(u32::MAX), false).is_ok());
        assert!(matches!(
            nonce(1 << 32, false),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }
}
