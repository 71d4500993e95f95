//! `t`-of-`n` Shamir pieces of a small secret of any length (blahaj's
//! field, GF(2^8), byte by byte). Pure: the caller brings the randomness.
//!
//! Two users: the backup record `B` when a vault keeps it on the nodes
//! (one piece beside each shard, so fewer than `k` nodes learn nothing of
//! `R4`), and the wrapping key the key holders share. A piece is
//! `x (u8) || y (one byte per secret byte)`, blahaj's share form; pieces
//! of one secret have `x = 1..=n`.

use zeroize::Zeroizing;

use super::gf256;

/// Why pieces could not be made or put together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// The threshold cannot work for this many pieces.
    #[error("a threshold of {t} of {n} pieces is impossible (need 1 <= t <= n <= 255)")]
    Threshold {
        /// The threshold.
        t: u8,
        /// The number of pieces.
        n: usize,
    },
    /// Fewer than `t` usable pieces.
    #[error("{have} usable pieces, {need} needed")]
    TooFew {
        /// Distinct, well-formed pieces given.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// Pieces of different lengths, or an empty one.
    #[error("the pieces have different lengths (damaged, or of different secrets)")]
    Shape,
}

/// Splits `secret` into `n` pieces (`x = 1..=n`), any `t` of which rebuild
/// it and any `t - 1` of which say nothing about it. `seed` draws the
/// polynomials: it must be fresh and secret.
pub fn split(
    secret: &[u8],
    t: u8,
    n: usize,
    seed: [u8; 32],
) -> Result<Vec<Zeroizing<Vec<u8>>>, PieceError> {
    if t == 0 || usize::from(t) > n || n > 255 {
        return Err(PieceError::Threshold { t, n });
    }
    let mut rng =
        <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::from_seed(seed);
    Ok(blahaj::Sharks(t)
        .dealer_rng(secret, &mut rng)
        .take(n)
        .map(|s| Zeroizing::new(Vec::from(&s)))
        .collect())
}

/// The first `t` well-formed pieces with distinct `x`, as `(x, y)`.
fn usable<'a>(pieces: &[&'a [u8]], t: usize) -> Result<Vec<(u8, &'a [u8])>, PieceError> {
    let len = pieces.first().map_or(0, |p| p.len());
    if len < 2 || pieces.iter().any(|p| p.len() != len) {
        return Err(PieceError::Shape);
    }
    let mut out: Vec<(u8, &[u8])> = Vec::with_capacity(t);
    for p in pieces {
        if p[0] != 0 && !out.iter().any(|(x, _)| *x == p[0]) {
            out.push((p[0], &p[1..]));
        }
        if out.len() == t {
            return Ok(out);
        }
    }
    Err(PieceError::TooFew {
        have: out.len(),
        need: t,
    })
}

/// Evaluates at `x` the polynomial through the first `t` usable pieces:
/// `x = 0` is the secret, `x = i` regenerates piece `i` exactly as the
/// dealer made it (a lost piece comes back byte for byte).
pub fn at(x: u8, pieces: &[&[u8]], t: u8) -> Result<Zeroizing<Vec<u8>>, PieceError> {
    let used = usable(pieces, usize::from(t))?;
    let xs: Vec<u8> = used.iter().map(|(x, _)| *x).collect();
    let w = gf256::lagrange_weights_of(x, &xs).ok_or(PieceError::Shape)?;
    let mut y = Zeroizing::new(vec![0u8; used[0].1.len()]);
    for ((_, ys), wi) in used.iter().zip(w) {
        for (acc, v) in y.iter_mut().zip(*ys) {
            *acc ^= gf256::mul(wi, *v);
        }
    }
    Ok(y)
}

/// Rebuilds the secret from `t` or more pieces.
pub fn combine(pieces: &[&[u8]], t: u8) -> Result<Zeroizing<Vec<u8>>, PieceError> {
    at(0, pieces, t)
}

/// Piece `x` in stored form (`x || y`), regenerated from `t` others.
pub fn regenerate(x: u8, pieces: &[&[u8]], t: u8) -> Result<Zeroizing<Vec<u8>>, PieceError> {
    let y = at(x, pieces, t)?;
    let mut out = Zeroizing::new(Vec::with_capacity(1 + y.len()));
    out.push(x);
    out.extend_from_slice(&y);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn refs(v: &[Zeroizing<Vec<u8>>]) -> Vec<&[u8]> {
        v.iter().map(|p| &p[..]).collect()
    }

    #[test]
    fn any_t_of_n_rebuild_and_regenerate_exactly() {
        let secret: Vec<u8> = (0..105u8).map(|i| i.wrapping_mul(91)).collect();
        for (t, n) in [(1u8, 1usize), (2, 3), (3, 5), (4, 6), (5, 9)] {
            let p = split(&secret, t, n, [t; 32]).unwrap();
            assert_eq!(p.len(), n);
            for (i, piece) in p.iter().enumerate() {
                assert_eq!(piece[0] as usize, i + 1);
                assert_eq!(piece.len(), 1 + secret.len());
            }
            // Every window of t pieces rebuilds the secret and every piece.
            for start in 0..=n - usize::from(t) {
                let some = refs(&p[start..start + usize::from(t)]);
                assert_eq!(&combine(&some, t).unwrap()[..], &secret[..]);
                for (i, piece) in p.iter().enumerate() {
                    let x = (i + 1) as u8;
                    assert_eq!(&regenerate(x, &some, t).unwrap()[..], &piece[..]);
                }
            }
        }
    }

    #[test]
    fn fewer_than_t_pieces_do_not_rebuild() {
        let secret = [7u8; 40];
        let p = split(&secret, 3, 5, [1; 32]).unwrap();
        let two = refs(&p[..2]);
        assert_eq!(
            combine(&two, 3).unwrap_err(),
            PieceError::TooFew { have: 2, need: 3 }
        );
        // A duplicate does not count twice.
        let dup = vec![&p[0][..], &p[0][..], &p[1][..]];
        assert!(combine(&dup, 3).is_err());
        // With t - 1 pieces every secret is equally possible: the pieces of
        // two different secrets can agree on any t - 1 points.
        let other = split(&[9u8; 40], 3, 5, [2; 32]).unwrap();
        assert_ne!(p[0][1..], other[0][1..]);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(split(b"x", 0, 3, [0; 32]).is_err());
        assert!(split(b"x", 4, 3, [0; 32]).is_err());
        let p = split(&[1u8; 8], 2, 3, [3; 32]).unwrap();
        let short = &p[1][..5];
        assert_eq!(
            combine(&[&p[0][..], short], 2).unwrap_err(),
            PieceError::Shape
        );
    }
}
