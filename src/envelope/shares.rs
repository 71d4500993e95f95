//! Shamir shares of `R` (threshold 3 of 4): encoding, split, recovery, interpolation.
//!
//! Format (PROTOCOL.md "Parameters"): `[ x: 1 byte ][ y: 32 bytes ]`, the byte
//! form of `blahaj`/`sharks`. `R1..R4` have `x = 1..4`; `x` alone says which
//! role a share can play, so every place that takes a share for a role checks
//! it ([`Share::check_role`]) before the share reaches recovery.

use std::fmt;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::EnvelopeError;
use super::gf256;
use super::{KEY_LEN, SHARE_LEN};

/// Shamir threshold of envelope v1.
const THRESHOLD: u8 = 3;

/// One 33-byte Shamir share: `x`, then 32 value bytes `y`.
///
/// Zeroized on drop; `Debug` prints only `x`, never the value bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Share {
    bytes: [u8; SHARE_LEN],
}

impl Share {
    /// Parses the 33-byte form. Any `x` is accepted here; roles are checked
    /// where a share is used ([`Share::check_role`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, EnvelopeError> {
        let arr: [u8; SHARE_LEN] = bytes.try_into().map_err(|_| EnvelopeError::ShareEncoding {
            what: "share",
            detail: format!("{} bytes", bytes.len()),
        })?;
        Ok(Share { bytes: arr })
    }

    /// Builds a share from its `x` and `y`.
    pub fn from_parts(x: u8, y: &[u8; KEY_LEN]) -> Share {
        let mut bytes = [0u8; SHARE_LEN];
        bytes[0] = x;
        bytes[1..].copy_from_slice(y);
        Share { bytes }
    }

    /// Parses the hex form of the 33 bytes (66 hex digits).
    pub fn from_hex(s: &str) -> Result<Share, EnvelopeError> {
        let bytes =
            Zeroizing::new(
                hex::decode(s.trim()).map_err(|e| EnvelopeError::ShareEncoding {
                    what: "share",
                    detail: format!("not hex: {e}"),
                })?,
            );
        Share::from_bytes(&bytes)
    }

    /// Hex of the 33 bytes. The string is secret key material: do not log it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The abscissa `x`.
    pub fn x(&self) -> u8 {
        self.bytes[0]
    }

    /// The 32 value bytes `y(S)`.
    pub fn y(&self) -> &[u8; KEY_LEN] {
        // Infallible: the array is 33 bytes, the tail is 32.
        self.bytes[1..].try_into().unwrap_or(&[0u8; KEY_LEN])
    }

    /// The 33-byte encoding.
    pub fn as_bytes(&self) -> &[u8; SHARE_LEN] {
        &self.bytes
    }

    /// Checks that this share can play `role`, which requires `x = expected`.
    pub fn check_role(&self, role: &'static str, expected: u8) -> Result<(), EnvelopeError> {
        if self.x() == expected {
            Ok(())
        } else {
            Err(EnvelopeError::WrongShareRole {
                role,
                expected,
                found: self.x(),
            })
        }
    }
}

impl PartialEq for Share {
    /// Constant time: shares are secrets.
    fn eq(&self, other: &Share) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for Share {}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Share {{ x: {}, y: <redacted> }}", self.x())
    }
}

/// Splits `secret` into the four shares `x = 1..4` of a random degree-2
/// polynomial per byte, using blahaj with a ChaCha20 stream seeded by
/// `coefficient_seed` (so the caller's random source decides everything).
pub fn split(secret: &[u8; KEY_LEN], coefficient_seed: [u8; 32]) -> [Share; 4] {
    let mut rng = ChaCha20Rng::from_seed(coefficient_seed);
    let mut out: [Share; 4] = std::array::from_fn(|_| Share {
        bytes: [0u8; SHARE_LEN],
    });
    let dealer = blahaj::Sharks(THRESHOLD).dealer_rng(secret, &mut rng);
    for (slot, share) in out.iter_mut().zip(dealer) {
        let encoded = Zeroizing::new(Vec::from(&share));
        for (d, s) in slot.bytes.iter_mut().zip(encoded.iter()) {
            *d = *s;
        }
    }
    out
}

/// Recovers the 32-byte secret from three shares with distinct `x` (blahaj).
pub fn recover(shares: [&Share; 3]) -> Result<Zeroizing<[u8; KEY_LEN]>, EnvelopeError> {
    let xs = [shares[0].x(), shares[1].x(), shares[2].x()];
    if xs[0] == xs[1] || xs[0] == xs[2] || xs[1] == xs[2] || xs.contains(&0) {
        return Err(EnvelopeError::NotEnoughShares {
            detail: format!(
                "shares with x = {}, {}, {} are not three distinct shares",
                xs[0], xs[1], xs[2]
            ),
        });
    }
    let mut parsed = Vec::with_capacity(3);
    for s in shares {
        let share =
            blahaj::Share::try_from(&s.bytes[..]).map_err(|e| EnvelopeError::ShareEncoding {
                what: "share",
                detail: e.to_string(),
            })?;
        parsed.push(share);
    }
    let secret = Zeroizing::new(blahaj::Sharks(THRESHOLD).recover(&parsed).map_err(|e| {
        EnvelopeError::NotEnoughShares {
            detail: e.to_string(),
        }
    })?);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    if secret.len() != KEY_LEN {
        return Err(EnvelopeError::ShareEncoding {
            what: "share",
            detail: format!("recovered {} bytes instead of {KEY_LEN}", secret.len()),
        });
    }
    out.copy_from_slice(&secret);
    Ok(out)
}

/// Evaluates at `x` the degree-2 polynomial through three shares (Lagrange
/// interpolation in GF(2^8), the field of blahaj). `x = 0` gives the secret;
/// `x = 1..4` regenerates a lost or corrupt share. Fails when two of the
/// shares have the same `x`.
pub fn interpolate_share(x: u8, shares: &[Share; 3]) -> Result<Share, EnvelopeError> {
    let xs = [shares[0].x(), shares[1].x(), shares[2].x()];
    let w = gf256::lagrange_weights(x, &xs).ok_or_else(|| EnvelopeError::NotEnoughShares {
        detail: format!(
            "shares with x = {}, {}, {} are not three distinct shares",
            xs[0], xs[1], xs[2]
        ),
    })?;
    let mut y = Zeroizing::new([0u8; KEY_LEN]);
    for (share, wi) in shares.iter().zip(w) {
        for (acc, v) in y.iter_mut().zip(share.y()) {
            *acc ^= gf256::mul(wi, *v);
        }
    }
    Ok(Share::from_parts(x, &y))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn secret() -> [u8; 32] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(5))
    }

    #[test]
    fn split_gives_x_1_to_4_and_recovers_from_any_three() {
        let s = split(&secret(), [42u8; 32]);
        for (i, sh) in s.iter().enumerate() {
            assert_eq!(sh.x() as usize, i + 1);
        }
        for skip in 0..4 {
            let pick: Vec<&Share> = (0..4).filter(|&i| i != skip).map(|i| &s[i]).collect();
            let r = recover([pick[0], pick[1], pick[2]]).unwrap();
            assert_eq!(*r, secret());
        }
    }

    #[test]
    fn split_is_deterministic_in_the_seed() {
        assert_eq!(split(&secret(), [1u8; 32]), split(&secret(), [1u8; 32]));
        assert_ne!(split(&secret(), [1u8; 32]), split(&secret(), [2u8; 32]));
    }

    #[test]
    fn interpolation_matches_blahaj() {
        for seed in 0..20u8 {
            let s = split(&secret(), [seed; 32]);
            let first3 = [s[0].clone(), s[1].clone(), s[2].clone()];
            assert_eq!(interpolate_share(4, &first3).unwrap(), s[3]);
            assert_eq!(interpolate_share(0, &first3).unwrap().y(), &secret());
            let other3 = [s[3].clone(), s[1].clone(), s[2].clone()];
            assert_eq!(interpolate_share(1, &other3).unwrap(), s[0]);
            let other3 = [s[0].clone(), s[2].clone(), s[3].clone()];
            assert_eq!(interpolate_share(2, &other3).unwrap(), s[1]);
        }
    }

    #[test]
    fn interpolation_rejects_duplicate_x() {
        let s = split(&secret(), [3u8; 32]);
        let dup = [s[0].clone(), s[0].clone(), s[2].clone()];
        assert!(matches!(
            interpolate_share(4, &dup),
            Err(EnvelopeError::NotEnoughShares { .. })
        ));
        assert!(recover([&s[0], &s[0], &s[1]]).is_err());
    }

    #[test]
    fn encoding_round_trips_and_rejects_bad_lengths() {
        let s = split(&secret(), [5u8; 32]);
        let h = s[1].to_hex();
        assert_eq!(h.len(), 66);
        assert_eq!(Share::from_hex(&h).unwrap(), s[1]);
        assert_eq!(Share::from_bytes(s[2].as_bytes()).unwrap(), s[2]);
        assert!(Share::from_bytes(&[1u8; 32]).is_err());
        assert!(Share::from_bytes(&[1u8; 34]).is_err());
        assert!(Share::from_hex("zz").is_err());
    }

    #[test]
    fn debug_hides_value_bytes() {
        let s = Share::from_parts(2, &[0xab; 32]);
        let d = format!("{s:?}");
        assert!(d.contains("x: 2"));
        assert!(!d.to_lowercase().contains("ab"));
    }

    #[test]
    fn role_check_names_role_and_values() {
        let s = Share::from_parts(2, &[0; 32]);
        let e = s.check_role("R3", 3).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("R3") && msg.contains("x = 2") && msg.contains("x = 3"),
            "{msg}"
        );
    }
}
