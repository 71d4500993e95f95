//! `SealKeys`: the fresh key material of one seal (`K`, `R` and the shares `R1..R4` of `R`).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::KEY_LEN;
use super::error::EnvelopeError;
use super::shares::{self, Share};

/// `K`, `R` and `R1..R4` for one seal. Zeroized on drop; `Debug` redacts.
///
/// The randomness is injected: the caller draws `K`, `R` and the Shamir
/// coefficient seed from its random source (the QRNG pool, ARCHITECTURE.md),
/// so sealing itself is deterministic and testable against the vectors.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealKeys {
    k: [u8; KEY_LEN],
    r: [u8; KEY_LEN],
    shares: [Share; 4],
}

impl SealKeys {
    /// Takes given key material (for example from conformance vectors).
    ///
    /// Rejects shares whose `x` are not 1, 2, 3, 4 in that order, shares
    /// 1..3 that do not recover exactly `r`, and a share 4 that is not on the
    /// same polynomial: a seal with such input would produce an object or a
    /// backup record that cannot be opened.
    pub fn new(
        k: [u8; KEY_LEN],
        r: [u8; KEY_LEN],
        shares: [Share; 4],
    ) -> Result<SealKeys, EnvelopeError> {
        let keys = SealKeys { k, r, shares };
        for (i, s) in keys.shares.iter().enumerate() {
            let x = i as u8 + 1;
            if s.x() != x {
                return Err(EnvelopeError::InconsistentKeys {
                    detail: format!("share {} has x = {}, expected x = {x}", i + 1, s.x()),
                });
            }
        }
        let recovered = shares::recover([&keys.shares[0], &keys.shares[1], &keys.shares[2]])?;
        if !bool::from(recovered.ct_eq(&keys.r)) {
            return Err(EnvelopeError::InconsistentKeys {
                detail: "shares R1, R2, R3 do not recover R".to_string(),
            });
        }
        let first3 = [
            keys.shares[0].clone(),
            keys.shares[1].clone(),
            keys.shares[2].clone(),
        ];
        if shares::interpolate_share(4, &first3)? != keys.shares[3] {
            return Err(EnvelopeError::InconsistentKeys {
                detail: "share R4 is not on the polynomial of R1, R2, R3".to_string(),
            });
        }
        Ok(keys)
    }

    /// Splits `r` into `R1..R4` with coefficients drawn from a ChaCha20
    /// stream seeded by `coefficient_seed`.
    pub fn split(k: [u8; KEY_LEN], r: [u8; KEY_LEN], coefficient_seed: [u8; 32]) -> SealKeys {
        let shares = shares::split(&r, coefficient_seed);
        SealKeys { k, r, shares }
    }

    /// The data key `K`.
    pub fn k(&self) -> &[u8; KEY_LEN] {
        &self.k
    }

    /// The share secret `R`.
    pub fn r(&self) -> &[u8; KEY_LEN] {
        &self.r
    }

    /// `R1` (goes to the keystore).
    pub fn r1(&self) -> &Share {
        &self.shares[0]
    }

    /// `R2` (goes to the keystore, possibly a second one).
    pub fn r2(&self) -> &Share {
        &self.shares[1]
    }

    /// `R3` (embedded in `N`).
    pub fn r3(&self) -> &Share {
        &self.shares[2]
    }

    /// `R4` (goes into the backup record `B`).
    pub fn r4(&self) -> &Share {
        &self.shares[3]
    }
}

impl fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKeys { <redacted> }")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn split_then_new_accepts() {
        let a = SealKeys::split([1; 32], [2; 32], [3; 32]);
        let shares = [
            a.r1().clone(),
            a.r2().clone(),
            a.r3().clone(),
            a.r4().clone(),
        ];
        let b = SealKeys::new([1; 32], [2; 32], shares).unwrap();
        assert_eq!(b.r1(), a.r1());
        assert_eq!(b.k(), &[1; 32]);
    }

    #[test]
    fn new_rejects_wrong_order_wrong_r_and_off_polynomial_r4() {
        let a = SealKeys::split([1; 32], [2; 32], [3; 32]);
        let swapped = [
            a.r2().clone(),
            a.r1().clone(),
            a.r3().clone(),
            a.r4().clone(),
        ];
        assert!(matches!(
            SealKeys::new([1; 32], [2; 32], swapped),
            Err(EnvelopeError::InconsistentKeys { .. })
        ));
        let good = [
            a.r1().clone(),
            a.r2().clone(),
            a.r3().clone(),
            a.r4().clone(),
        ];
        assert!(matches!(
            SealKeys::new([1; 32], [9; 32], good),
            Err(EnvelopeError::InconsistentKeys { .. })
        ));
        let mut y = *a.r4().y();
        y[0] ^= 1;
        let bad4 = [
            a.r1().clone(),
            a.r2().clone(),
            a.r3().clone(),
            Share::from_parts(4, &y),
        ];
        assert!(matches!(
            SealKeys::new([1; 32], [2; 32], bad4),
            Err(EnvelopeError::InconsistentKeys { .. })
        ));
    }

    #[test]
    fn debug_redacts() {
        let a = SealKeys::split([0xaa; 32], [0xbb; 32], [3; 32]);
        assert_eq!(format!("{a:?}"), "SealKeys { <redacted> }");
    }
}
