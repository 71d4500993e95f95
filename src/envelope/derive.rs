//! Key derivation, MACs and positions: PROTOCOL.md "Notation" (`derive`, `mac`, `pos`).
//!
//! All three rest on BLAKE3 `derive_key` with the context string
//! `"qsfs v1 " + label`, so every use of a key is domain-separated by its label
//! and a future v2 can change the prefix.

use zeroize::Zeroize;

/// Builds the BLAKE3 context string for `label` (`"qsfs v1 " + label`).
fn context(label: &str) -> String {
    format!("qsfs v1 {label}")
}

/// `derive(label, key)`: BLAKE3 `derive_key` with context `"qsfs v1 " + label`.
pub fn derive(label: &str, key: &[u8]) -> [u8; 32] {
    blake3::derive_key(&context(label), key)
}

/// `mac(label, key, msg)`: BLAKE3 keyed hash of `msg` under `derive(label, key)`.
pub fn mac(label: &str, key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut hasher = MacHasher::new(label, key);
    hasher.update(msg);
    hasher.finalize()
}

/// `pos(label, key, m)`: `u64le(derive(label, key)[0..8]) mod (m + 1)`, a
/// position in `0..=m`.
pub fn pos(label: &str, key: &[u8], m: u64) -> u64 {
    let mut d = derive(label, key);
    let mut head = [0u8; 8];
    head.copy_from_slice(&d[..8]);
    let mut v = u64::from_le_bytes(head);
    head.zeroize();
    d.zeroize();
    // m + 1 overflows only for m = u64::MAX, where "mod 2^64" is the identity.
    let p = match m.checked_add(1) {
        Some(modulus) => v % modulus,
        None => v,
    };
    v.zeroize();
    p
}

/// Streaming form of [`mac`], for a message that arrives in pieces. (`M`
/// itself is computed only by the envelope's `MacTree`, which can also
/// take `E''` out of order.)
///
/// Feeding large slices matters for speed: BLAKE3 hashes several 1 KiB chunks
/// of one `update` call in parallel SIMD lanes.
#[derive(Clone)]
pub struct MacHasher {
    hasher: blake3::Hasher,
}

impl MacHasher {
    /// Starts `mac(label, key, ..)`.
    pub fn new(label: &str, key: &[u8]) -> MacHasher {
        let mut k = derive(label, key);
        let hasher = blake3::Hasher::new_keyed(&k);
        k.zeroize();
        MacHasher { hasher }
    }

    /// Appends message bytes.
    pub fn update(&mut self, msg: &[u8]) {
        self.hasher.update(msg);
    }

    /// The 32-byte MAC of everything fed so far.
    pub fn finalize(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }
}

impl Drop for MacHasher {
    fn drop(&mut self) {
        // The hasher's state is keyed by a secret; blake3 has no zeroize, so
        // reset it to forget the absorbed input (the key words stay, but they
        // are a one-way function of R).
        self.hasher.reset();
    }
}

impl std::fmt::Debug for MacHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacHasher { .. }")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn mac_is_keyed_hash_under_derived_key() {
        let key = [7u8; 32];
        let dk = blake3::derive_key("qsfs v1 mac M", &key);
        let want = blake3::keyed_hash(&dk, b"hello");
        assert_eq!(mac("mac M", &key, b"hello"), *want.as_bytes());
    }

    #[test]
    fn streaming_mac_equals_one_shot() {
        let key = [9u8; 32];
        let msg: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = MacHasher::new("mac M", &key);
        for piece in msg.chunks(333) {
            h.update(piece);
        }
        assert_eq!(h.finalize(), mac("mac M", &key, &msg));
    }

    #[test]
    fn pos_stays_in_range() {
        for m in [0u64, 1, 2, 31, 65_551, u64::MAX] {
            let p = pos("n1", &[3u8; 32], m);
            assert!(m == u64::MAX || p <= m);
        }
        assert_eq!(pos("n1", &[3u8; 32], 0), 0);
    }

    #[test]
    fn labels_separate_domains() {
        assert_ne!(derive("n1", &[1u8; 32]), derive("n2", &[1u8; 32]));
    }
}
