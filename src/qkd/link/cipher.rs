//! AES-256-GCM for link frames, through `ring`.
//!
//! Why not the `aes-gcm` crate the envelope uses: on this machine its GHASH
//! (no VPCLMULQDQ path) held a link to about 1 GB/s one way, below what
//! five nodes need; ring's assembly runs several times faster. The bytes
//! are standard AES-256-GCM either way (96-bit nonce, 128-bit tag), so the
//! frame format does not depend on the choice.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::frame::TAG_LEN;

/// One link key's cipher (ring wipes its key schedule when dropped).
pub(crate) struct FrameCipher(LessSafeKey);

impl FrameCipher {
    /// A cipher for a 256-bit key.
    pub(crate) fn new(key: &[u8; 32]) -> Option<FrameCipher> {
        UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(|k| FrameCipher(LessSafeKey::new(k)))
    }

    /// Encrypts `data` in place; returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Decrypts `data` in place; false if the tag does not match.
    pub(crate) fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: [u8; TAG_LEN],
    ) -> bool {
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                Tag::from(tag),
                data,
                0..,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{AeadInOut, KeyInit};

    /// Same bytes as the `aes-gcm` crate (the envelope's AES-256-GCM).
    #[test]
    fn matches_the_aes_gcm_crate() {
        let key = [7u8; 32];
        let nonce = [3u8; 12];
        let aad = b"header";
        let plain: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut ours = plain.clone();
        let tag = FrameCipher::new(&key)
            .unwrap()
            .seal(nonce, aad, &mut ours)
            .unwrap();
        let other = aes_gcm::Aes256Gcm::new(&aes_gcm::Key::<aes_gcm::Aes256Gcm>::from(key));
        let mut theirs = plain.clone();
        let t2 = other
            .encrypt_inout_detached(
                &aes_gcm::Nonce::from(nonce),
                aad,
                theirs.as_mut_slice().into(),
            )
            .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(&tag[..], &t2[..]);
        let c = FrameCipher::new(&key).unwrap();
        assert!(c.open(nonce, aad, &mut ours, tag));
        assert_eq!(ours, plain);
        let mut bad = theirs.clone();
        bad[5] ^= 1;
        assert!(!c.open(nonce, aad, &mut bad, tag));
    }
}
