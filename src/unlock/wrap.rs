//! AES-256-GCM for small secrets at rest: the vault key under an unlock
//! method, epoch keys under the vault key, key records under epoch keys.
//!
//! A wrapped secret is `nonce (12) || ciphertext || tag (16)`. Nonces are
//! random: each key wraps far fewer than 2^32 secrets (epochs rotate long
//! before), so a repeat is out of reach. The associated data binds each
//! wrapped secret to its place (vault, method, record kind and object), so
//! one cannot be moved to stand in for another.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// Bytes a wrapped secret adds to its secret.
pub const OVERHEAD: usize = NONCE + TAG;
const NONCE: usize = 12;
const TAG: usize = 16;

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always valid for AES-256-GCM.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 key length"))
}

/// Wraps `secret` under `key`. Fails only if the OS random source does.
pub fn wrap(key: &[u8; 32], aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce)?;
    Ok(wrap_with_nonce(key, nonce, aad, secret))
}

/// [`wrap`] with a given nonce (frozen examples and tests).
pub fn wrap_with_nonce(key: &[u8; 32], nonce: [u8; NONCE], aad: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + secret.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(secret);
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE..],
        )
        .expect("AES-GCM seals any length below 64 GiB");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens a wrapped secret; `None` if it was not made by `key` with `aad`
/// (wrong key, wrong place, or damaged bytes: GCM cannot tell them apart).
pub fn unwrap(key: &[u8; 32], aad: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if wrapped.len() < OVERHEAD {
        return None;
    }
    let nonce: [u8; NONCE] = wrapped[..NONCE].try_into().ok()?;
    let mut buf = Zeroizing::new(wrapped[NONCE..].to_vec());
    let len = cipher(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf[..],
        )
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_secrets_open_only_with_their_key_and_place() {
        let key = [7u8; 32];
        let w = wrap(&key, b"place", b"secret").unwrap();
        assert_eq!(w.len(), 6 + OVERHEAD);
        assert_eq!(&unwrap(&key, b"place", &w).unwrap()[..], b"secret");
        assert!(unwrap(&[8u8; 32], b"place", &w).is_none());
        assert!(unwrap(&key, b"elsewhere", &w).is_none());
        for i in 0..w.len() {
            let mut bad = w.clone();
            bad[i] ^= 1;
            assert!(unwrap(&key, b"place", &bad).is_none(), "byte {i}");
        }
        assert!(unwrap(&key, b"place", &w[..OVERHEAD - 1]).is_none());
        // Two wraps of one secret differ (fresh nonces).
        assert_ne!(w, wrap(&key, b"place", b"secret").unwrap());
    }
}
