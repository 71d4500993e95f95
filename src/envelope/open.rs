//! Key recovery for opening: which shares to trust, then `R3`, `R`, `n1`, `KR` and `K`.
//!
//! PROTOCOL.md "Open" steps 1-4 and 6, and "Open with one local share lost".
//! Only `R3` and `KR` are read from `N` (random access); `M` is *not*
//! checked here, because that needs all of `N`: the [`Disassembler`]
//! (and the drivers in `stream`/`bytes`) and the [`ObjectReader`] check it,
//! all through the one `MacTree`. Until then a [`Recovered`] is a
//! candidate: wrong shares or a tampered `N` show up as a failed `M` (or a
//! failed segment tag).
//!
//! [`Disassembler`]: super::Disassembler
//! [`ObjectReader`]: super::ObjectReader

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::backup::Backup;
use super::cipher::SegmentCipher;
use super::derive::pos;
use super::error::EnvelopeError;
use super::geometry::Geometry;
use super::seal::xor32;
use super::shares::{self, Share, interpolate_share};
use super::source::ObjectSource;
use super::{KEY_LEN, SHARE_LEN};

/// The local key shares of one object, as found in the keystore.
#[derive(Clone, Debug, Default)]
pub struct LocalShares {
    /// `R1`, if the keystore still has it.
    pub r1: Option<Share>,
    /// `R2`, if the keystore still has it.
    pub r2: Option<Share>,
}

impl LocalShares {
    /// Both shares present.
    pub fn both(r1: Share, r2: Share) -> LocalShares {
        LocalShares {
            r1: Some(r1),
            r2: Some(r2),
        }
    }
}

/// Which pieces of key material an open found to be bad.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadShares {
    /// `R1` was present but failed `M14` of `B` (or had the wrong `x`).
    pub r1: bool,
    /// `R2` was present but failed `M24` of `B` (or had the wrong `x`).
    pub r2: bool,
    /// `B` is damaged: either both local shares failed against it (the open
    /// went on with `R1` and `R2` alone), or a share that failed its MAC in
    /// `B` is nevertheless exactly the share regenerated from the others.
    pub backup: bool,
}

impl BadShares {
    /// True when anything needs healing.
    pub fn any(&self) -> bool {
        self.r1 || self.r2 || self.backup
    }
}

/// Which shares recovered `R`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// `R1`, `R2` and `R3` (the normal open).
    LocalPair,
    /// `R1`, `R3` and `R4` from `B`.
    R1WithBackup,
    /// `R2`, `R3` and `R4` from `B`.
    R2WithBackup,
}

/// Keys and layout of one object, recovered but not yet authenticated by `M`.
pub struct Recovered {
    k: Zeroizing<[u8; KEY_LEN]>,
    r: Zeroizing<[u8; KEY_LEN]>,
    geometry: Geometry,
    recovery: Recovery,
    bad: BadShares,
    /// The three shares that recovered `R` (distinct `x`).
    used: [Share; 3],
    /// KR and R3 in their `E''` order, as read from `N`.
    inserted: Zeroizing<[u8; KEY_LEN + SHARE_LEN]>,
}

impl Recovered {
    /// The data key `K`.
    pub fn k(&self) -> &[u8; KEY_LEN] {
        &self.k
    }

    /// The share secret `R` (the key of `M`).
    pub fn r(&self) -> &[u8; KEY_LEN] {
        &self.r
    }

    /// Lengths and insertion points (`n1`, `n2`) of the object.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Which shares recovered `R`.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Which local share (or `B`) was found bad.
    pub fn bad_shares(&self) -> BadShares {
        self.bad
    }

    /// A segment cipher under `K`.
    pub fn cipher(&self) -> SegmentCipher {
        SegmentCipher::new(&self.k)
    }

    /// Regenerates share `x` (1 to 4) from the shares that recovered `R`,
    /// to heal the keystore (`R1`, `R2`) or rebuild `B` (`R4`). Only
    /// trustworthy after `M` verified.
    pub fn regenerate(&self, x: u8) -> Result<Share, EnvelopeError> {
        if !(1..=4).contains(&x) {
            return Err(EnvelopeError::WrongShareRole {
                role: "R1..R4",
                expected: 1,
                found: x,
            });
        }
        if let Some(s) = self.used.iter().find(|s| s.x() == x) {
            return Ok(s.clone());
        }
        interpolate_share(x, &self.used)
    }

    /// Rebuilds the backup record `B` (for example after it failed to verify).
    pub fn rebuild_backup(&self) -> Result<Backup, EnvelopeError> {
        Backup::build(
            &self.regenerate(1)?,
            &self.regenerate(2)?,
            &self.regenerate(4)?,
            self.geometry.n2(),
        )
    }

    /// The three shares that recovered `R` (distinct `x`).
    pub fn shares_used(&self) -> &[Share; 3] {
        &self.used
    }

    /// KR and R3 in their `E''` order.
    pub(crate) fn inserted(&self) -> &[u8; KEY_LEN + SHARE_LEN] {
        &self.inserted
    }

    /// Keys for a hand-made layout (tests that place KR and R3 anywhere,
    /// which key-derived positions rarely do).
    #[cfg(test)]
    pub(crate) fn crafted(
        k: [u8; KEY_LEN],
        r: [u8; KEY_LEN],
        geometry: Geometry,
        kr: &[u8; KEY_LEN],
        r3: &Share,
    ) -> Recovered {
        let inserted = Zeroizing::new(geometry.interleave(kr, r3.as_bytes()));
        Recovered {
            k: Zeroizing::new(k),
            r: Zeroizing::new(r),
            geometry,
            recovery: Recovery::LocalPair,
            bad: BadShares::default(),
            used: [r3.clone(), r3.clone(), r3.clone()],
            inserted,
        }
    }
}

impl fmt::Debug for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovered")
            .field("geometry", &self.geometry)
            .field("recovery", &self.recovery)
            .field("bad", &self.bad)
            .finish_non_exhaustive()
    }
}

/// Reads `buf.len()` bytes of `N` at `offset`.
fn read(src: &mut dyn ObjectSource, offset: u64, buf: &mut [u8]) -> Result<(), EnvelopeError> {
    src.read_at(offset, buf)
        .map_err(|source| EnvelopeError::Read {
            offset,
            len: buf.len(),
            source,
        })
}

/// The shares chosen to open with.
enum Choice<'a> {
    Pair(&'a Share, &'a Share),
    WithBackup(&'a Share, &'a Backup),
}

/// Picks the shares to open with (see [`recover_keys`]), recording bad ones.
fn choose<'a>(
    local: &'a LocalShares,
    backup: Option<&'a Backup>,
    bad: &mut BadShares,
) -> Result<Choice<'a>, EnvelopeError> {
    let Some(b) = backup else {
        return match (&local.r1, &local.r2) {
            (Some(r1), Some(r2)) => {
                r1.check_role("R1", 1)?;
                r2.check_role("R2", 2)?;
                Ok(Choice::Pair(r1, r2))
            }
            (r1, r2) => Err(EnvelopeError::NotEnoughShares {
                detail: format!(
                    "R1 is {}, R2 is {}, and no backup record B was given",
                    if r1.is_some() { "present" } else { "missing" },
                    if r2.is_some() { "present" } else { "missing" }
                ),
            }),
        };
    };
    // A share for the wrong role, or one that fails its MAC in B, is bad.
    let check =
        |s: &Option<Share>, role: &'static str, x: u8| -> Option<Result<(), EnvelopeError>> {
            s.as_ref()
                .map(|s| s.check_role(role, x).and_then(|()| b.verify(s)))
        };
    let v1 = check(&local.r1, "R1", 1);
    let v2 = check(&local.r2, "R2", 2);
    bad.r1 = matches!(v1, Some(Err(_)));
    bad.r2 = matches!(v2, Some(Err(_)));
    match (&local.r1, v1, &local.r2, v2) {
        (Some(r1), Some(Ok(())), Some(r2), Some(Ok(()))) => Ok(Choice::Pair(r1, r2)),
        (Some(r1), Some(Ok(())), _, _) => Ok(Choice::WithBackup(r1, b)),
        (_, _, Some(r2), Some(Ok(()))) => Ok(Choice::WithBackup(r2, b)),
        (Some(r1), Some(Err(_)), Some(r2), Some(Err(_))) if r1.x() == 1 && r2.x() == 2 => {
            // Two independent shares failing against one B points at B.
            // Open with the pair; M decides whether they are good.
            *bad = BadShares {
                r1: false,
                r2: false,
                backup: true,
            };
            Ok(Choice::Pair(r1, r2))
        }
        (_, Some(Err(e)), _, None) | (None, None, _, Some(Err(e))) => Err(e),
        (_, Some(Err(e1)), _, Some(Err(_))) => Err(e1),
        _ => Err(EnvelopeError::NotEnoughShares {
            detail: "neither R1 nor R2 is present".to_string(),
        }),
    }
}

/// A present share that failed its MAC in `B` but equals the share
/// regenerated from the shares that recovered `R` is fine: the damage is in
/// `B`'s MAC for it. Moves the blame from the share to `B`.
fn exonerate(
    bad: &mut BadShares,
    local: &LocalShares,
    used: &[Share; 3],
) -> Result<(), EnvelopeError> {
    for (flag, share, x) in [(&mut bad.r1, &local.r1, 1u8), (&mut bad.r2, &local.r2, 2u8)] {
        if let Some(s) = share
            && *flag
            && s.x() == x
            && interpolate_share(x, used)? == *s
        {
            *flag = false;
            bad.backup = true;
        }
    }
    Ok(())
}

/// Recovers `K`, `R` and the layout of a sealed object of `len_n` bytes.
///
/// Without `B`, both local shares are required. With `B`, each present
/// local share is first checked against it (`M14`/`M24`); a share that fails
/// is recorded as bad and the good one is used with `B`. With both shares
/// good, `R1 + R2` are used and must agree with `B` on `n2`. When both
/// shares are present and both fail against `B`, `B` itself is the suspect
/// ([`BadShares::backup`]) and the open continues with `R1 + R2`; when one
/// fails but equals the share regenerated from the others, the blame moves
/// to `B` as well.
///
/// `R3` must have `x = 3`. `M` is **not** verified here (see the module doc).
pub fn recover_keys(
    src: &mut dyn ObjectSource,
    len_n: u64,
    local: &LocalShares,
    backup: Option<&Backup>,
) -> Result<Recovered, EnvelopeError> {
    let plain_len = Geometry::plain_len_of_sealed(len_n)?;
    let len_e1 = Geometry::new(plain_len, 0, 0)?.len_e1();
    let mut bad = BadShares::default();
    let choice = choose(local, backup, &mut bad)?;

    let n2 = match &choice {
        Choice::Pair(r1, r2) => {
            let r12 = xor32(r1.y(), r2.y());
            let n2 = pos("n2", &r12[..], len_e1);
            if let Some(b) = backup
                && !bad.backup
                && b.n2() != n2
            {
                return Err(EnvelopeError::PositionMismatch);
            }
            n2
        }
        Choice::WithBackup(_, b) => {
            if b.n2() > len_e1 {
                return Err(EnvelopeError::BackupMalformed {
                    detail: format!(
                        "it places R3 beyond the end of this object (len(E') = {len_e1}): B \
                         belongs to another object"
                    ),
                });
            }
            b.n2()
        }
    };

    let mut r3b = Zeroizing::new([0u8; SHARE_LEN]);
    read(src, n2, &mut r3b[..])?;
    let r3 = Share::from_bytes(&r3b[..])?;
    r3.check_role("R3", 3)?;

    let (used, recovery) = match choice {
        Choice::Pair(r1, r2) => ([r1.clone(), r2.clone(), r3], Recovery::LocalPair),
        Choice::WithBackup(s, b) => {
            let how = if s.x() == 1 {
                Recovery::R1WithBackup
            } else {
                Recovery::R2WithBackup
            };
            ([s.clone(), r3, b.r4().clone()], how)
        }
    };
    let r = shares::recover([&used[0], &used[1], &used[2]])?;
    if recovery != Recovery::LocalPair {
        exonerate(&mut bad, local, &used)?;
    }

    let mut n1 = pos("n1", &r[..], len_e1 - KEY_LEN as u64);
    let geometry = Geometry::new(plain_len, n1, n2)?;
    n1.zeroize();
    let mut kr = Zeroizing::new([0u8; KEY_LEN]);
    let mut at = 0usize;
    for piece in geometry.kr_in_n() {
        let n = (piece.end - piece.start) as usize;
        read(src, piece.start, &mut kr[at..at + n])?;
        at += n;
    }
    let k = xor32(&kr, &r);
    let inserted = Zeroizing::new(geometry.interleave(&kr, &r3b));
    Ok(Recovered {
        k,
        r,
        geometry,
        recovery,
        bad,
        used,
        inserted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::envelope::bytes::seal_bytes;
    use crate::envelope::keys::SealKeys;

    fn setup() -> (SealKeys, Vec<u8>, Backup) {
        let keys = SealKeys::split([5; 32], [6; 32], [7; 32]);
        let (n, b) = seal_bytes(&[9u8; 5000], &keys).unwrap();
        (keys, n, b)
    }

    fn corrupt(s: &Share) -> Share {
        let mut y = *s.y();
        y[3] ^= 0x80;
        Share::from_parts(s.x(), &y)
    }

    #[test]
    fn every_share_combination_recovers_the_same_keys() {
        let (keys, n, b) = setup();
        let len = n.len() as u64;
        let mut src: &[u8] = &n;
        let pair = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let only1 = LocalShares {
            r1: Some(keys.r1().clone()),
            r2: None,
        };
        let only2 = LocalShares {
            r1: None,
            r2: Some(keys.r2().clone()),
        };
        for (local, bk, how) in [
            (&pair, None, Recovery::LocalPair),
            (&pair, Some(&b), Recovery::LocalPair),
            (&only1, Some(&b), Recovery::R1WithBackup),
            (&only2, Some(&b), Recovery::R2WithBackup),
        ] {
            let rec = recover_keys(&mut src, len, local, bk).unwrap();
            assert_eq!(rec.k(), keys.k());
            assert_eq!(rec.r(), keys.r());
            assert_eq!(rec.recovery(), how);
            assert!(!rec.bad_shares().any());
            for (x, s) in [
                (1, keys.r1()),
                (2, keys.r2()),
                (3, keys.r3()),
                (4, keys.r4()),
            ] {
                assert_eq!(&rec.regenerate(x).unwrap(), s);
            }
            assert_eq!(rec.rebuild_backup().unwrap(), b);
        }
    }

    #[test]
    fn a_corrupt_share_is_found_through_b() {
        let (keys, n, b) = setup();
        let mut src: &[u8] = &n;
        let l = LocalShares::both(corrupt(keys.r1()), keys.r2().clone());
        let rec = recover_keys(&mut src, n.len() as u64, &l, Some(&b)).unwrap();
        assert_eq!(
            rec.bad_shares(),
            BadShares {
                r1: true,
                r2: false,
                backup: false
            }
        );
        assert_eq!(rec.recovery(), Recovery::R2WithBackup);
        assert_eq!(rec.k(), keys.k());
        assert_eq!(&rec.regenerate(1).unwrap(), keys.r1());

        let l = LocalShares::both(keys.r1().clone(), corrupt(keys.r2()));
        let rec = recover_keys(&mut src, n.len() as u64, &l, Some(&b)).unwrap();
        assert_eq!(
            rec.bad_shares(),
            BadShares {
                r1: false,
                r2: true,
                backup: false
            }
        );
        assert_eq!(rec.k(), keys.k());

        // A share with the wrong x in its slot is bad too.
        let l = LocalShares::both(keys.r2().clone(), keys.r2().clone());
        let rec = recover_keys(&mut src, n.len() as u64, &l, Some(&b)).unwrap();
        assert!(rec.bad_shares().r1);
        assert_eq!(rec.k(), keys.k());
    }

    #[test]
    fn a_bad_backup_is_named() {
        let (keys, n, b) = setup();
        let mut src: &[u8] = &n;
        let mut bb = b.to_bytes();
        bb[10] ^= 1;
        let bad_b = Backup::parse(&bb).unwrap();
        let only2 = LocalShares {
            r1: None,
            r2: Some(keys.r2().clone()),
        };
        let e = recover_keys(&mut src, n.len() as u64, &only2, Some(&bad_b)).unwrap_err();
        assert!(
            e.to_string().contains("backup record B") && e.to_string().contains("R2"),
            "{e}"
        );
        // Both shares present, B bad: B is the suspect and the pair opens.
        let pair = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let rec = recover_keys(&mut src, n.len() as u64, &pair, Some(&bad_b)).unwrap();
        assert_eq!(
            rec.bad_shares(),
            BadShares {
                r1: false,
                r2: false,
                backup: true
            }
        );
        assert_eq!(rec.k(), keys.k());
        assert_eq!(rec.rebuild_backup().unwrap(), b);
    }

    #[test]
    fn a_damaged_mac_in_b_blames_b_not_the_share() {
        let (keys, n, b) = setup();
        let mut src: &[u8] = &n;
        let mut bb = b.to_bytes();
        bb[104] ^= 1; // last byte of M24
        let bad_b = Backup::parse(&bb).unwrap();
        let pair = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let rec = recover_keys(&mut src, n.len() as u64, &pair, Some(&bad_b)).unwrap();
        assert_eq!(
            rec.bad_shares(),
            BadShares {
                r1: false,
                r2: false,
                backup: true
            }
        );
        assert_eq!(rec.recovery(), Recovery::R1WithBackup);
        assert_eq!(rec.k(), keys.k());
        assert_eq!(rec.rebuild_backup().unwrap(), b);
    }

    #[test]
    fn missing_shares_and_truncation() {
        let (keys, n, b) = setup();
        let mut src: &[u8] = &n;
        let only1 = LocalShares {
            r1: Some(keys.r1().clone()),
            r2: None,
        };
        let e = recover_keys(&mut src, n.len() as u64, &only1, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("need R1 and R2, or one of them plus the backup record B"),
            "{e}"
        );
        let none = LocalShares::default();
        assert!(matches!(
            recover_keys(&mut src, n.len() as u64, &none, Some(&b)),
            Err(EnvelopeError::NotEnoughShares { .. })
        ));
        let pair = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        assert!(matches!(
            recover_keys(&mut src, 112, &pair, None),
            Err(EnvelopeError::Truncated { .. })
        ));
    }

    #[test]
    fn r3_with_wrong_x_is_an_integrity_error() {
        let (keys, mut n, _) = setup();
        let pair = LocalShares::both(keys.r1().clone(), keys.r2().clone());
        let len = n.len() as u64;
        let n2 = {
            let mut src: &[u8] = &n;
            recover_keys(&mut src, len, &pair, None)
                .unwrap()
                .geometry()
                .n2()
        };
        n[n2 as usize] = 4;
        let mut src: &[u8] = &n;
        let e = recover_keys(&mut src, len, &pair, None).unwrap_err();
        assert!(
            matches!(
                e,
                EnvelopeError::WrongShareRole {
                    role: "R3",
                    expected: 3,
                    found: 4
                }
            ),
            "{e}"
        );
        assert!(e.is_integrity());
    }
}
