//! Continuous health tests of a raw noise source (NIST SP 800-90B §4.4): the Repetition Count Test and the Adaptive Proportion Test.
//!
//! Pure code, no I/O: [`HealthTests::feed`] takes the bytes a device or
//! pool delivered, before they are mixed with the OS RNG, and says whether
//! the source still behaves like one. Samples are bytes (8-bit samples).
//!
//! Both cutoffs come from one assumed min-entropy `H` per byte and the
//! false-alarm probability `alpha = 2^-20` the standard recommends:
//!
//! * `H = 1` bit per byte ([`ASSUMED_MIN_ENTROPY_BITS`]). A QRNG delivers
//!   close to 8; assuming 1 keeps false alarms on a good source out of
//!   reach while still catching a stuck or badly biased one. It is only a
//!   threshold: the keys never rely on it, since they always mix in the OS
//!   RNG (`mix.rs`).
//! * RCT (§4.4.1): cutoff `C = 1 + ceil(-log2(alpha) / H) = 1 + 20 = 21`:
//!   21 identical bytes in a row fail.
//! * APT (§4.4.2): window `W = 512` (the non-binary window), cutoff
//!   `C = 1 + CRITBINOM(W, 2^-H, 1 - alpha) = 1 + 310 = 311` (the standard's
//!   Table 2 lists 311 for H = 1): the window's first byte appearing 311
//!   or more times among its 512 bytes fails. 310 is the smallest `k` with
//!   `P[Binomial(512, 1/2) <= k] >= 1 - 2^-20`, computed exactly.
//!
//! The startup test (§4.3) runs both tests over the first
//! [`STARTUP_SAMPLES`] bytes before any output; the mixer (`mix.rs`) draws
//! and discards them. After that every byte drawn is tested. A failure is
//! final for this [`HealthTests`]: the source must be reopened.

/// Assumed min-entropy per byte, in bits, behind both cutoffs.
pub const ASSUMED_MIN_ENTROPY_BITS: u32 = 1;

/// Repetition Count Test cutoff for H = 1, alpha = 2^-20.
pub const RCT_CUTOFF: u32 = 1 + 20_u32.div_ceil(ASSUMED_MIN_ENTROPY_BITS);

/// Adaptive Proportion Test window (non-binary samples).
pub const APT_WINDOW: u32 = 512;

/// Adaptive Proportion Test cutoff for H = 1, W = 512, alpha = 2^-20.
pub const APT_CUTOFF: u32 = 311;

/// Bytes tested at startup before the first byte is used (SP 800-90B §4.3
/// asks for at least 1024 samples).
pub const STARTUP_SAMPLES: usize = 1024;

/// Which health test failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthTest {
    /// SP 800-90B §4.4.1: too many identical samples in a row.
    RepetitionCount,
    /// SP 800-90B §4.4.2: one value too frequent within a window.
    AdaptiveProportion,
}

impl std::fmt::Display for HealthTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RepetitionCount => "Repetition Count Test",
            Self::AdaptiveProportion => "Adaptive Proportion Test",
        })
    }
}

/// A failed health test: which one and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthFailure {
    /// The test.
    pub test: HealthTest,
    /// What it saw, for the error message.
    pub detail: String,
}

/// The state of both tests over one source's byte stream.
#[derive(Debug, Clone)]
pub struct HealthTests {
    rct_value: Option<u8>,
    rct_count: u32,
    apt_value: u8,
    apt_count: u32,
    /// Samples seen in the current APT window; 0 = a new window starts.
    apt_seen: u32,
    failed: Option<HealthFailure>,
}

impl Default for HealthTests {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTests {
    /// Fresh tests, as at startup.
    pub fn new() -> Self {
        Self {
            rct_value: None,
            rct_count: 0,
            apt_value: 0,
            apt_count: 0,
            apt_seen: 0,
            failed: None,
        }
    }

    /// The failure seen so far, if any; it never clears.
    pub fn failure(&self) -> Option<&HealthFailure> {
        self.failed.as_ref()
    }

    /// Runs both tests over `bytes`, the next samples of the stream. Once a
    /// test failed, every call fails with that same failure.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), HealthFailure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        for &b in bytes {
            if let Err(f) = self.sample(b) {
                self.failed = Some(f.clone());
                return Err(f);
            }
        }
        Ok(())
    }

    fn sample(&mut self, b: u8) -> Result<(), HealthFailure> {
        // Repetition Count Test.
        if self.rct_value == Some(b) {
            self.rct_count += 1;
            if self.rct_count >= RCT_CUTOFF {
                return Err(HealthFailure {
                    test: HealthTest::RepetitionCount,
                    detail: format!(
                        "byte {b:#04x} repeated {} times in a row (cutoff {RCT_CUTOFF})",
                        self.rct_count
                    ),
                });
            }
        } else {
            self.rct_value = Some(b);
            self.rct_count = 1;
        }
        // Adaptive Proportion Test.
        if self.apt_seen == 0 {
            self.apt_value = b;
            self.apt_count = 1;
        } else if b == self.apt_value {
            self.apt_count += 1;
            if self.apt_count >= APT_CUTOFF {
                let at = self.apt_seen + 1;
                return Err(HealthFailure {
                    test: HealthTest::AdaptiveProportion,
                    detail: format!(
                        "byte {b:#04x} appeared {} times within {at} bytes of a {APT_WINDOW}-byte window (cutoff {APT_CUTOFF})",
                        self.apt_count
                    ),
                });
            }
        }
        self.apt_seen += 1;
        if self.apt_seen == APT_WINDOW {
            self.apt_seen = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for biased streams.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn cutoffs_match_the_standard_for_h_1() {
        assert_eq!(RCT_CUTOFF, 21);
        assert_eq!(APT_CUTOFF, 311);
    }

    #[test]
    fn apt_cutoff_is_the_binomial_critical_value() {
        // P[Binomial(512, 1/2) <= k] in exact integers: sum of C(512, i)
        // compared against (1 - 2^-20) * 2^512, via big-number-free
        // logarithms would be inexact, so use f64 log-space with margin:
        // the CDF at 309 must be below 1 - 2^-20 and at 310 above.
        let ln_c = |n: u32, k: u32| -> f64 {
            (1..=k)
                .map(|i| f64::from(n - k + i).ln() - f64::from(i).ln())
                .sum()
        };
        let tail_above = |k: u32| -> f64 {
            // P[X > k] = sum_{i>k} C(512,i) / 2^512
            (k + 1..=APT_WINDOW)
                .map(|i| (ln_c(APT_WINDOW, i) - f64::from(APT_WINDOW) * 2f64.ln()).exp())
                .sum()
        };
        let alpha = 2f64.powi(-20);
        assert!(tail_above(APT_CUTOFF - 2) > alpha);
        assert!(tail_above(APT_CUTOFF - 1) <= alpha);
    }

    #[test]
    fn constant_bytes_fail_the_rct() {
        let mut t = HealthTests::new();
        assert!(
            t.feed(&[0u8; 20]).is_ok(),
            "20 in a row is below the cutoff"
        );
        let f = t.feed(&[0u8]).expect_err("21 in a row");
        assert_eq!(f.test, HealthTest::RepetitionCount);
        assert!(f.detail.contains("21 times"), "{}", f.detail);
        // The failure sticks, whatever comes next.
        let mut fresh = [0u8; 64];
        getrandom::fill(&mut fresh).expect("os rng");
        assert_eq!(t.feed(&fresh).expect_err("stays failed"), f);
        assert_eq!(t.failure(), Some(&f));
    }

    #[test]
    fn biased_bytes_fail_the_apt() {
        // 90% 0xAA, 10% other values, never 21 in a row: only the APT can
        // see it.
        let mut state = 1u64;
        let mut run = 0;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                let r = next(&mut state);
                if !r.is_multiple_of(10) && run < 15 {
                    run += 1;
                    0xAA
                } else {
                    run = 0;
                    (r >> 8) as u8 | 1
                }
            })
            .collect();
        let share = bytes.iter().filter(|&&b| b == 0xAA).count() as f64 / bytes.len() as f64;
        assert!(share > 0.85, "the stream is {share} 0xAA");
        let mut t = HealthTests::new();
        let f = t.feed(&bytes).expect_err("biased source");
        assert_eq!(f.test, HealthTest::AdaptiveProportion, "{f:?}");
    }

    #[test]
    fn two_valued_source_at_the_assumed_entropy_passes() {
        // One fair bit per byte is exactly H = 1: it passes (a run of 21
        // has probability about 2^-20 per byte, the designed false-alarm
        // rate, so the stream is kept short).
        let mut state = 3u64;
        let mut bytes = Vec::with_capacity(8192);
        while bytes.len() < 8192 {
            let r = next(&mut state);
            bytes.extend((0..64).map(|i| if (r >> i) & 1 == 1 { 0x55 } else { 0xAA }));
        }
        let mut t = HealthTests::new();
        assert_eq!(t.feed(&bytes), Ok(()));
    }

    #[test]
    fn os_random_bytes_pass() {
        let mut t = HealthTests::new();
        let mut buf = vec![0u8; 1 << 20];
        getrandom::fill(&mut buf).expect("os rng");
        assert_eq!(t.feed(&buf), Ok(()));
        for _ in 0..16 {
            getrandom::fill(&mut buf[..4096]).expect("os rng");
            assert_eq!(t.feed(&buf[..4096]), Ok(()));
        }
        assert!(t.failure().is_none());
    }

    /// A window of 512 bytes starting with `v` and holding it `hits` times,
    /// in runs of 4 (far from the RCT cutoff).
    fn window_with(v: u8, hits: u32) -> Vec<u8> {
        let mut n = 0;
        (0..APT_WINDOW)
            .map(|i| {
                if i % 5 != 4 && n < hits {
                    n += 1;
                    v
                } else {
                    0x80 | (i % 97) as u8
                }
            })
            .collect()
    }

    #[test]
    fn apt_cutoff_is_exact_and_windows_restart() {
        let mut t = HealthTests::new();
        for _ in 0..8 {
            // One below the cutoff in every window: nothing accumulates
            // across window boundaries.
            assert_eq!(t.feed(&window_with(0x11, APT_CUTOFF - 1)), Ok(()));
        }
        let f = t
            .feed(&window_with(0x11, APT_CUTOFF))
            .expect_err("at the cutoff");
        assert_eq!(f.test, HealthTest::AdaptiveProportion);
    }
}
