//! The STREAM segment cipher: AES-256-GCM per segment with nonce `0^7 || u32be(i) || last`.
//!
//! PROTOCOL.md "Seal" step 4. The 7-byte nonce prefix is zero because `K` is
//! fresh for every sealed object; the last-segment flag stops truncation at a
//! segment boundary, and the index stops reordering.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};

use super::error::EnvelopeError;
use super::{KEY_LEN, TAG_LEN};

/// AES-256-GCM under one object's `K`. `&self` methods and `Sync`, so one
/// cipher serves all worker threads.
#[derive(Clone)]
pub struct SegmentCipher {
    aead: Aes256Gcm,
}

/// The nonce of segment `index`: 7 zero bytes, `u32be(index)`, then 1 for the last segment.
fn nonce(
    index: u64,
    last: bool,
) -> Result<Nonce<<Aes256Gcm as aes_gcm::AeadCore>::NonceSize>, EnvelopeError> {
    let i = u32::try_from(index).map_err(|_| EnvelopeError::TooLarge {
        plain_len: index.saturating_mul(super::SEG),
    })?;
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = u8::from(last);
    Ok(Nonce::from(n))
}

impl SegmentCipher {
    /// A cipher for key `K` (the AES key schedule is zeroized on drop).
    pub fn new(k: &[u8; KEY_LEN]) -> SegmentCipher {
        let key = Key::<Aes256Gcm>::from(*k);
        SegmentCipher {
            aead: Aes256Gcm::new(&key),
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
        let n = nonce(index, last)?;
        let tag = self
            .aead
            .encrypt_inout_detached(&n, &[], data.into())
            .map_err(|_| EnvelopeError::TooLarge {
                plain_len: data.len() as u64,
            })?;
        Ok(tag.into())
    }

    /// Decrypts segment `index` in place after checking its tag. On a tag
    /// failure `data` is left as it was (still ciphertext).
    pub fn decrypt_segment(
        &self,
        index: u64,
        last: bool,
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), EnvelopeError> {
        let n = nonce(index, last)?;
        let t = Tag::from(*tag);
        self.aead
            .decrypt_inout_detached(&n, &[], data.into(), &t)
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
        let ct = d.clone();
        assert!(matches!(
            c.decrypt_segment(7, true, &mut d, &tag),
            Err(EnvelopeError::SegmentAuth { index: 7 })
        ));
        assert_eq!(d, ct, "failed decrypt must not touch the buffer");
        assert!(c.decrypt_segment(8, false, &mut d, &tag).is_err());
        c.decrypt_segment(7, false, &mut d, &tag).unwrap();
        assert_eq!(&d[..], b"hello segment");
    }

    #[test]
    fn nonce_layout() {
        let n = nonce(0x0102_0304, true).unwrap();
        assert_eq!(n.as_slice(), &[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 1]);
        assert!(nonce(u64::from(u32::MAX), false).is_ok());
        assert!(matches!(
            nonce(1 << 32, false),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }
}
