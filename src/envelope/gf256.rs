//! GF(2^8) arithmetic (polynomial 0x11d, generator 2) for Lagrange interpolation of shares.
//!
//! This is the field of `blahaj` (and `sharks`), so a share computed here lies
//! on the same polynomial as the dealer's shares. It exists because blahaj can
//! only recover the secret (x = 0); regenerating a lost `R1`, `R2` or `R4`
//! needs the polynomial at another `x`.

/// `EXP[i] = 2^i` for `i` in `0..510` (doubled so a sum of two logs needs no reduction).
const EXP: [u8; 512] = build_exp();
/// `LOG[v]` = discrete log of `v` base 2 (`LOG[0]` is unused).
const LOG: [u8; 256] = build_log();

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut v: u16 = 1;
    let mut i = 0;
    while i < 512 {
        t[i] = v as u8;
        v <<= 1;
        if v & 0x100 != 0 {
            v ^= 0x11d;
        }
        i += 1;
    }
    t
}

const fn build_log() -> [u8; 256] {
    let exp = build_exp();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

/// Product in GF(2^8).
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
}

/// Quotient `a / b` in GF(2^8); `None` for `b = 0`.
pub(crate) fn div(a: u8, b: u8) -> Option<u8> {
    if b == 0 {
        return None;
    }
    if a == 0 {
        return Some(0);
    }
    Some(EXP[LOG[a as usize] as usize + 255 - LOG[b as usize] as usize])
}

/// Lagrange basis weights for evaluating at `x` the polynomial through the
/// points with abscissas `xs`: `w_i = prod_{j != i} (x - x_j) / (x_i - x_j)`
/// (subtraction is xor). `None` when two abscissas are equal.
pub(crate) fn lagrange_weights<const T: usize>(x: u8, xs: &[u8; T]) -> Option<[u8; T]> {
    let w = lagrange_weights_of(x, xs)?;
    w.try_into().ok()
}

/// [`lagrange_weights`] for any number of points.
pub(crate) fn lagrange_weights_of(x: u8, xs: &[u8]) -> Option<Vec<u8>> {
    let mut w = vec![0u8; xs.len()];
    for (i, wi) in w.iter_mut().enumerate() {
        let mut num = 1u8;
        let mut den = 1u8;
        for (j, &xj) in xs.iter().enumerate() {
            if j != i {
                num = mul(num, x ^ xj);
                den = mul(den, xs[i] ^ xj);
            }
        }
        *wi = div(num, den)?;
    }
    Some(w)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    #[test]
    fn tables_match_blahaj_start() {
        // First entries of blahaj's EXP_TABLE and LOG_TABLE (field.rs).
        assert_eq!(
            &EXP[..10],
            &[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1d, 0x3a]
        );
        assert_eq!(&LOG[..8], &[0x00, 0x00, 0x01, 0x19, 0x02, 0x32, 0x1a, 0xc6]);
        assert_eq!(EXP[255], 0x01);
    }

    #[test]
    fn mul_div_inverse() {
        for a in 0..=255u8 {
            for b in 1..=255u8 {
                assert_eq!(div(mul(a, b), b), Some(a));
            }
        }
        assert_eq!(div(1, 0), None);
    }

    #[test]
    fn mul_matches_carryless_reduction() {
        fn slow(mut a: u8, mut b: u8) -> u8 {
            let mut p = 0u8;
            while b != 0 {
                if b & 1 != 0 {
                    p ^= a;
                }
                let carry = a & 0x80 != 0;
                a <<= 1;
                if carry {
                    a ^= 0x1d;
                }
                b >>= 1;
            }
            p
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), slow(a, b));
            }
        }
    }
}
