//! Choosing the blocks an audit challenges, and what a sample count buys.
//!
//! Blocks are drawn uniformly over every block a node should hold (so a
//! shard is asked in proportion to its size), independently and with
//! replacement. That makes the escape bound exact and simple: a node that
//! cannot produce a fraction `f` of its blocks answers one sample right
//! with probability at most `1 - f`, and all `s` samples with at most
//! `(1 - f)^s`. Pure code apart from [`OsDraw`], which only reads the OS
//! random generator.

use crate::entropy::EntropyError;

/// Uniform random numbers from the operating system's generator
/// (getrandom), read in batches. Challenges must not be predictable by a
/// node, and must not spend the vault's configured key source (a finite
/// quantum pool is kept for keys).
#[derive(Debug, Default)]
pub struct OsDraw {
    buf: Vec<u8>,
    pos: usize,
}

impl OsDraw {
    /// A fresh source.
    pub fn new() -> OsDraw {
        OsDraw::default()
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::fill(out).map_err(|source| EntropyError::Os { source })
    }

    /// A uniform 64-bit number.
    pub fn u64(&mut self) -> Result<u64, EntropyError> {
        if self.pos + 8 > self.buf.len() {
            self.buf.resize(4096, 0);
            getrandom::fill(&mut self.buf).map_err(|source| EntropyError::Os { source })?;
            self.pos = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        Ok(u64::from_le_bytes(b))
    }

    /// A uniform number below `n` (`n > 0`), without modulo bias
    /// (rejection of the incomplete top range).
    pub fn below(&mut self, n: u64) -> Result<u64, EntropyError> {
        let n = n.max(1);
        let zone = (u64::MAX / n) * n;
        loop {
            let x = self.u64()?;
            if x < zone {
                return Ok(x % n);
            }
        }
    }
}

/// Draws `samples` blocks uniformly over all blocks of shards with
/// `leaves[j]` blocks each, with replacement. Returns, per shard, the
/// drawn leaf indices (repeats possible, in draw order). `below(n)` must
/// return a uniform number in `0..n`.
pub fn draw<E>(
    leaves: &[u64],
    samples: u32,
    mut below: impl FnMut(u64) -> Result<u64, E>,
) -> Result<Vec<Vec<u64>>, E> {
    let mut out = vec![Vec::new(); leaves.len()];
    // prefix[j] = blocks of shards 0..=j.
    let mut prefix = Vec::with_capacity(leaves.len());
    let mut total = 0u64;
    for &l in leaves {
        total = total.saturating_add(l);
        prefix.push(total);
    }
    if total == 0 {
        return Ok(out);
    }
    for _ in 0..samples {
        let r = below(total)?;
        // First shard whose prefix passes r: r falls in its range.
        let j = prefix.partition_point(|&p| p <= r);
        let start = prefix[j] - leaves[j];
        out[j].push(r - start);
    }
    Ok(out)
}

/// Probability that a node missing a fraction `missing` of its blocks
/// answers all of `samples` independent uniform challenges: `(1-f)^s`.
pub fn escape_probability(missing: f64, samples: u64) -> f64 {
    let keep = (1.0 - missing).clamp(0.0, 1.0);
    keep.powf(samples as f64)
}

/// Samples needed so a node missing a fraction `missing` of its blocks
/// escapes with probability at most `target`.
pub fn samples_needed(missing: f64, target: f64) -> u64 {
    if missing >= 1.0 {
        return 1;
    }
    if missing <= 0.0 || target <= 0.0 {
        return u64::MAX;
    }
    if target >= 1.0 {
        return 0;
    }
    (target.ln() / (1.0 - missing).ln()).ceil() as u64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn draws_land_in_range_and_follow_the_weights() {
        let leaves = [10u64, 0, 30, 60];
        let mut os = OsDraw::new();
        let per = draw(&leaves, 20_000, |n| os.below(n)).unwrap();
        assert!(per[1].is_empty(), "an empty shard is never drawn");
        for (j, idx) in per.iter().enumerate() {
            assert!(idx.iter().all(|&i| i < leaves[j]));
        }
        let total: usize = per.iter().map(std::vec::Vec::len).sum();
        assert_eq!(total, 20_000);
        // Expected 2000 / 6000 / 12000; 6 sigma is well under 10%.
        for (j, want) in [(0usize, 2000f64), (2, 6000.0), (3, 12_000.0)] {
            let got = per[j].len() as f64;
            assert!(
                (got - want).abs() < want * 0.1,
                "shard {j}: {got} vs {want}"
            );
        }
        // Every leaf of the small shard shows up (10 leaves, ~200 draws each).
        let mut seen = [false; 10];
        for &i in &per[0] {
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn draw_maps_boundaries_exactly() {
        // A deterministic "random" walk over every global index once.
        let leaves = [3u64, 1, 2];
        let mut next = 0u64;
        let per = draw::<()>(&leaves, 6, |_| {
            next += 1;
            Ok(next - 1)
        })
        .unwrap();
        assert_eq!(per, vec![vec![0, 1, 2], vec![0], vec![0, 1]]);
        assert!(draw::<()>(&[0, 0], 5, |_| Ok(0)).unwrap()[0].is_empty());
    }

    #[test]
    fn below_is_in_range() {
        let mut os = OsDraw::new();
        for n in [1u64, 2, 3, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(os.below(n).unwrap() < n);
            }
        }
    }

    #[test]
    fn escape_odds() {
        assert!((escape_probability(0.1, 20) - 0.9f64.powi(20)).abs() < 1e-12);
        assert_eq!(escape_probability(0.0, 300), 1.0);
        assert_eq!(escape_probability(1.0, 1), 0.0);
        let s = samples_needed(0.01, 1e-6);
        assert_eq!(s, 1375);
        assert!(escape_probability(0.01, s) <= 1e-6);
        assert!(escape_probability(0.01, s - 1) > 1e-6);
    }
}
