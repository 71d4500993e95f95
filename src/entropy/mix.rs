//! Every configured device or pool is mixed with the OS RNG and health-tested, so a stuck or replayed source can never repeat a key.
//!
//! A device or pool can hand the same bytes to two processes: a QRNG card
//! stuck on one output, a FIFO fed the same stream twice, a pool file
//! restored from a backup or a VM snapshot. Keys drawn from those bytes
//! alone would repeat (K, R, the Shamir shares, the GCM nonces). So every
//! draw of `n` bytes takes `m = max(n, 32)` bytes from the source *and* `m`
//! bytes from the OS RNG and returns
//!
//! ```text
//! BLAKE3-XOF( derive_key(MIX_CONTEXT), le64(m) || source[m] || os[m] )[..n]
//! ```
//!
//! (BLAKE3 in key-derivation mode with a fixed context string, then its
//! extendable output cut to `n` bytes). The output is unpredictable as long
//! as *either* input is: the OS bytes alone make two draws differ even when
//! the source repeats itself exactly, and the source alone keeps the keys
//! safe from a weak OS RNG. Each input is at least as long as the output
//! (and at least 256 bits), so neither side alone is cut below the output's
//! strength. The source is still consumed as before: its bytes are used
//! once and never handed out again.
//!
//! Before mixing, the raw source bytes go through the SP 800-90B health
//! tests (`health.rs`): a startup test over the first
//! [`STARTUP_SAMPLES`](super::health::STARTUP_SAMPLES) bytes (drawn and
//! discarded before the first output) and a continuous test on every byte
//! after. A failure is an [`EntropyError::HealthTest`] and is final for
//! this source: every later draw fails until it is reopened (a new qsfs
//! process, or a remount).

use std::path::PathBuf;
use std::sync::Mutex;

use zeroize::{Zeroize, Zeroizing};

use super::health::{HealthFailure, HealthTests, STARTUP_SAMPLES};
use super::{EntropyError, EntropySource, SourceStatus};

/// Domain separation of the mix: BLAKE3 `derive_key` context string.
pub const MIX_CONTEXT: &str = "qsfs 2026 entropy mix v1";

/// Each input holds at least this many bytes, even for a shorter draw.
const MIN_INPUT: usize = 32;

/// What [`Mixed::describe`] appends to the source's note.
pub const MIXED_NOTE: &str = "mixed with the OS RNG";

/// Health state of the raw stream; `started` once the startup test passed.
struct Health {
    tests: HealthTests,
    started: bool,
}

/// A device or pool source whose output is health-tested and mixed with
/// the OS RNG (see the module doc).
pub struct Mixed {
    inner: Box<dyn EntropySource>,
    /// The device or pool file, for error messages.
    path: PathBuf,
    /// "device" or "pool", for error messages.
    kind: String,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Mixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixed")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .finish()
    }
}

impl Mixed {
    /// Wraps `inner`. Nothing is drawn yet: the startup test runs on the
    /// first draw, so opening a source (for `qsfs status`, or the check at
    /// `qsfs init`) consumes none of it.
    pub fn new(inner: Box<dyn EntropySource>) -> Self {
        let st = inner.describe();
        Self {
            path: st.path.unwrap_or_default(),
            kind: st.kind,
            inner,
            health: Mutex::new(Health {
                tests: HealthTests::new(),
                started: false,
            }),
        }
    }

    fn health_error(&self, f: HealthFailure) -> EntropyError {
        EntropyError::HealthTest {
            kind: self.kind.clone(),
            path: self.path.clone(),
            test: f.test,
            detail: f.detail,
        }
    }

    /// Draws `raw.len()` bytes from the source and tests them.
    fn draw_tested(&self, health: &mut Health, raw: &mut [u8]) -> Result<(), EntropyError> {
        if let Some(f) = health.tests.failure() {
            return Err(self.health_error(f.clone()));
        }
        self.inner.fill(raw)?;
        health.tests.feed(raw).map_err(|f| self.health_error(f))
    }

    fn fill_locked(&self, health: &mut Health, buf: &mut [u8]) -> Result<(), EntropyError> {
        if !health.started {
            let mut startup = Zeroizing::new(vec![0u8; STARTUP_SAMPLES]);
            self.draw_tested(health, &mut startup)?;
            health.started = true;
        }
        let m = buf.len().max(MIN_INPUT);
        let mut raw = Zeroizing::new(vec![0u8; m]);
        self.draw_tested(health, &mut raw)?;
        let mut os = Zeroizing::new(vec![0u8; m]);
        getrandom::fill(&mut os).map_err(|source| EntropyError::Os { source })?;
        mix(&raw, &os, buf);
        Ok(())
    }
}

/// The mix itself: `raw` and `os` (equal length, at least `out.len()`)
/// into `out`.
fn mix(raw: &[u8], os: &[u8], out: &mut [u8]) {
    let mut h = blake3::Hasher::new_derive_key(MIX_CONTEXT);
    h.update(&(raw.len() as u64).to_le_bytes());
    h.update(raw);
    h.update(os);
    h.finalize_xof().fill(out);
}

impl EntropySource for Mixed {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        // Health state holds no secret: a panicked holder leaves it usable
        // (a failure recorded stays recorded).
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let res = self.fill_locked(&mut health, buf);
        if res.is_err() {
            buf.zeroize();
        }
        res
    }

    fn describe(&self) -> SourceStatus {
        let mut st = self.inner.describe();
        let mut note = match st.note.take() {
            Some(n) => format!("{n}; {MIXED_NOTE}"),
            None => MIXED_NOTE.to_owned(),
        };
        // A draw may be waiting on the device; status must not wait too.
        if let Ok(h) = self.health.try_lock()
            && let Some(f) = h.tests.failure()
        {
            note.push_str(&format!("; FAILED: {}", self.health_error(f.clone())));
        }
        st.note = Some(note);
        st
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::entropy::OsSource;

    /// A source that hands out the same bytes on every draw (a stuck
    /// device, a replayed pool), counting what it gave.
    struct Replay {
        byte_at: fn(usize) -> u8,
        given: Arc<AtomicUsize>,
    }

    impl EntropySource for Replay {
        fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (self.byte_at)(i);
            }
            self.given.fetch_add(buf.len(), Ordering::SeqCst);
            Ok(())
        }

        fn describe(&self) -> SourceStatus {
            SourceStatus {
                kind: "device".into(),
                path: Some("/dev/replay".into()),
                remaining: None,
                total: None,
                note: None,
            }
        }
    }

    /// Varied bytes (pass the health tests) that repeat on every draw.
    fn varied(i: usize) -> u8 {
        (i.wrapping_mul(151) ^ (i >> 8)) as u8
    }

    fn replay(byte_at: fn(usize) -> u8) -> Box<Replay> {
        replay_counted(byte_at, &Arc::new(AtomicUsize::new(0)))
    }

    fn replay_counted(byte_at: fn(usize) -> u8, given: &Arc<AtomicUsize>) -> Box<Replay> {
        Box::new(Replay {
            byte_at,
            given: Arc::clone(given),
        })
    }

    #[test]
    fn a_replaying_source_still_gives_fresh_keys() {
        let a = Mixed::new(replay(varied));
        let b = Mixed::new(replay(varied));
        let (mut x, mut y, mut z) = ([0u8; 96], [0u8; 96], [0u8; 96]);
        a.fill(&mut x).expect("draw");
        b.fill(&mut y).expect("draw");
        a.fill(&mut z).expect("draw");
        assert_ne!(x, y, "two sources fed the same bytes gave the same key");
        assert_ne!(x, z);
        assert_ne!(x, [0u8; 96]);
    }

    #[test]
    fn the_source_is_consumed_startup_then_at_least_the_output() {
        let given = Arc::new(AtomicUsize::new(0));
        let m = Mixed::new(replay_counted(varied, &given));
        assert_eq!(given.load(Ordering::SeqCst), 0, "opening draws nothing");
        m.fill(&mut [0u8; 96]).expect("draw");
        assert_eq!(given.load(Ordering::SeqCst), STARTUP_SAMPLES + 96);
        m.fill(&mut [0u8; 1]).expect("draw");
        assert_eq!(
            given.load(Ordering::SeqCst),
            STARTUP_SAMPLES + 96 + MIN_INPUT
        );
        let st = m.describe();
        assert_eq!(st.kind, "device");
        assert_eq!(
            st.path.as_deref(),
            Some(std::path::Path::new("/dev/replay"))
        );
        assert!(st.note.expect("note").contains(MIXED_NOTE));
    }

    #[test]
    fn the_output_depends_on_both_inputs() {
        let (raw, os) = ([7u8; 32], [9u8; 32]);
        let (mut a, mut b, mut c) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        mix(&raw, &os, &mut a);
        mix(&[8u8; 32], &os, &mut b);
        mix(&raw, &[8u8; 32], &mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut again = [0u8; 32];
        mix(&raw, &os, &mut again);
        assert_eq!(a, again, "the mix is a function of its inputs");
        // Keyed: not plain BLAKE3 of the concatenation.
        let mut plain = blake3::Hasher::new();
        plain.update(&32u64.to_le_bytes());
        plain.update(&raw);
        plain.update(&os);
        assert_ne!(&a, plain.finalize().as_bytes());
    }

    #[test]
    fn a_constant_source_fails_the_startup_test_and_stays_failed() {
        let m = Mixed::new(replay(|_| 0));
        let mut buf = [5u8; 32];
        let err = m.fill(&mut buf).expect_err("constant bytes");
        assert!(
            matches!(
                err,
                EntropyError::HealthTest {
                    test: crate::entropy::HealthTest::RepetitionCount,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(buf, [0u8; 32], "a failed draw leaves nothing behind");
        let msg = err.to_string();
        assert!(
            msg.contains("/dev/replay") && msg.contains("Repetition Count Test"),
            "{msg}"
        );
        assert!(matches!(
            m.fill(&mut buf),
            Err(EntropyError::HealthTest { .. })
        ));
        assert!(m.describe().note.expect("note").contains("FAILED"));
    }

    #[test]
    fn os_source_through_the_mixer_passes() {
        let m = Mixed::new(Box::new(OsSource::new()));
        for n in [0, 1, 32, 96, 5000] {
            let mut buf = vec![0u8; n];
            m.fill(&mut buf).expect("draw");
        }
    }
}
