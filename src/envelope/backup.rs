//! The backup record `B` (105 bytes) that lets one lost local share be survived.
//!
//! Format (PROTOCOL.md "Seal", step 8):
//! `[ R4: 33 bytes (x = 4) ][ n2: u64 little endian ][ M14: 32 ][ M24: 32 ]`,
//! where `R'4 = R4 || u64le(n2)`, `M14 = mac("mac M14", y(R1), R'4)` and
//! `M24 = mac("mac M24", y(R2), R'4)`. `B` is kept by the erasure-coding
//! side, never on the nodes; `R4` in it is below the threshold on its own.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::derive::mac;
use super::error::EnvelopeError;
use super::shares::Share;
use super::{BACKUP_LEN, MAC_LEN, SHARE_LEN};

/// Length of `R'4 = R4 || u64le(n2)`.
const R4_PRIME_LEN: usize = SHARE_LEN + 8;

/// A parsed backup record `B`. Zeroized on drop; `Debug` redacts.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Backup {
    r4: Share,
    n2: u64,
    m14: [u8; MAC_LEN],
    m24: [u8; MAC_LEN],
}

impl Backup {
    /// Builds `B` at seal time from `R1`, `R2`, `R4` and the position `n2`.
    pub fn build(r1: &Share, r2: &Share, r4: &Share, n2: u64) -> Result<Backup, EnvelopeError> {
        r1.check_role("R1", 1)?;
        r2.check_role("R2", 2)?;
        r4.check_role("R4", 4)?;
        let r4p = r4_prime(r4, n2);
        Ok(Backup {
            r4: r4.clone(),
            n2,
            m14: mac("mac M14", r1.y(), &r4p[..]),
            m24: mac("mac M24", r2.y(), &r4p[..]),
        })
    }

    /// Parses the 105-byte form; `R4` must have `x = 4`.
    pub fn parse(bytes: &[u8]) -> Result<Backup, EnvelopeError> {
        if bytes.len() != BACKUP_LEN {
            return Err(EnvelopeError::BackupMalformed {
                detail: format!("{} bytes, a v1 backup record has {BACKUP_LEN}", bytes.len()),
            });
        }
        let r4 = Share::from_bytes(&bytes[..SHARE_LEN])?;
        if r4.x() != 4 {
            return Err(EnvelopeError::BackupMalformed {
                detail: format!("its share R4 has x = {}, expected x = 4", r4.x()),
            });
        }
        let mut n2b = [0u8; 8];
        n2b.copy_from_slice(&bytes[SHARE_LEN..R4_PRIME_LEN]);
        let n2 = u64::from_le_bytes(n2b);
        n2b.zeroize();
        let mut m14 = [0u8; MAC_LEN];
        m14.copy_from_slice(&bytes[R4_PRIME_LEN..R4_PRIME_LEN + MAC_LEN]);
        let mut m24 = [0u8; MAC_LEN];
        m24.copy_from_slice(&bytes[R4_PRIME_LEN + MAC_LEN..]);
        Ok(Backup { r4, n2, m14, m24 })
    }

    /// The 105-byte form. Secret (holds `R4` and `n2`): store, do not log.
    pub fn to_bytes(&self) -> [u8; BACKUP_LEN] {
        let mut out = [0u8; BACKUP_LEN];
        out[..SHARE_LEN].copy_from_slice(self.r4.as_bytes());
        out[SHARE_LEN..R4_PRIME_LEN].copy_from_slice(&self.n2.to_le_bytes());
        out[R4_PRIME_LEN..R4_PRIME_LEN + MAC_LEN].copy_from_slice(&self.m14);
        out[R4_PRIME_LEN + MAC_LEN..].copy_from_slice(&self.m24);
        out
    }

    /// Checks `B` against a local share: `M14` for `R1` (x = 1), `M24` for
    /// `R2` (x = 2), in constant time. A failure means `B` or the share is
    /// corrupt; when two shares are at hand, the one that verifies is good.
    pub fn verify(&self, share: &Share) -> Result<(), EnvelopeError> {
        let (label, expected, name, check) = match share.x() {
            1 => ("mac M14", &self.m14, "R1", "M14"),
            2 => ("mac M24", &self.m24, "R2", "M24"),
            x => {
                return Err(EnvelopeError::WrongShareRole {
                    role: "R1 or R2",
                    expected: 1,
                    found: x,
                });
            }
        };
        let r4p = r4_prime(&self.r4, self.n2);
        let got = Zeroizing::new(mac(label, share.y(), &r4p[..]));
        if bool::from(got.ct_eq(expected)) {
            Ok(())
        } else {
            Err(EnvelopeError::BackupRejected { share: name, check })
        }
    }

    /// `R4`.
    pub fn r4(&self) -> &Share {
        &self.r4
    }

    /// The position of `R3` in `E''`.
    pub fn n2(&self) -> u64 {
        self.n2
    }
}

/// `R'4 = R4 || u64le(n2)`.
fn r4_prime(r4: &Share, n2: u64) -> Zeroizing<[u8; R4_PRIME_LEN]> {
    let mut out = Zeroizing::new([0u8; R4_PRIME_LEN]);
    out[..SHARE_LEN].copy_from_slice(r4.as_bytes());
    out[SHARE_LEN..].copy_from_slice(&n2.to_le_bytes());
    out
}

impl PartialEq for Backup {
    /// Constant time over the whole encoding.
    fn eq(&self, other: &Backup) -> bool {
        let a = Zeroizing::new(self.to_bytes());
        let b = Zeroizing::new(other.to_bytes());
        a.ct_eq(&b[..]).into()
    }
}

impl Eq for Backup {}

impl fmt::Debug for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Backup { <redacted> }")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::shares::split;

    fn sample() -> ([Share; 4], Backup) {
        let s = split(&[7u8; 32], [8u8; 32]);
        let b = Backup::build(&s[0], &s[1], &s[3], 12_345).unwrap();
        (s, b)
    }

    #[test]
    fn round_trip_and_verify() {
        let (s, b) = sample();
        let bytes = b.to_bytes();
        let p = Backup::parse(&bytes).unwrap();
        assert_eq!(p, b);
        assert_eq!(p.n2(), 12_345);
        assert_eq!(p.r4(), &s[3]);
        p.verify(&s[0]).unwrap();
        p.verify(&s[1]).unwrap();
    }

    #[test]
    fn parse_rejects_bad_length_and_wrong_r4_x() {
        let (_, b) = sample();
        let bytes = b.to_bytes();
        for len in [0usize, 104, 106] {
            let mut v = bytes.to_vec();
            v.resize(len, 0);
            let e = Backup::parse(&v).unwrap_err();
            assert!(matches!(e, EnvelopeError::BackupMalformed { .. }), "{e}");
            assert!(e.to_string().contains("backup record B"));
        }
        let mut v = bytes;
        v[0] = 3;
        assert!(matches!(
            Backup::parse(&v),
            Err(EnvelopeError::BackupMalformed { .. })
        ));
    }

    #[test]
    fn verify_names_share_and_record() {
        let (s, b) = sample();
        let mut bytes = b.to_bytes();
        bytes[40] ^= 1; // inside n2
        let t = Backup::parse(&bytes).unwrap();
        let e = t.verify(&s[1]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("backup record B") && msg.contains("R2") && msg.contains("M24"),
            "{msg}"
        );
        assert!(matches!(
            t.verify(&s[0]),
            Err(EnvelopeError::BackupRejected { share: "R1", .. })
        ));
        // A corrupt share fails against a good B.
        let mut y = *s[0].y();
        y[5] ^= 0x40;
        assert!(b.verify(&Share::from_parts(1, &y)).is_err());
        // Shares other than R1/R2 cannot be checked.
        assert!(matches!(
            b.verify(&s[2]),
            Err(EnvelopeError::WrongShareRole { .. })
        ));
    }

    #[test]
    fn build_checks_roles() {
        let s = split(&[7u8; 32], [8u8; 32]);
        assert!(Backup::build(&s[1], &s[0], &s[3], 1).is_err());
        assert!(Backup::build(&s[0], &s[1], &s[2], 1).is_err());
    }
}
