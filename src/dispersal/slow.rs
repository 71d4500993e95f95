//! Nodes found slow by reads: a read that waited on one node clearly
//! longer than on its peers read a spare shard instead (a hedged read),
//! and the node is marked here for a while. Range reads then try such a
//! node last, and `qsfs status` shows it as degraded. Slowness is not
//! damage: it never becomes repair debt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mark lasts after the last slow read.
pub const SLOW_FOR: Duration = Duration::from_secs(600);

/// A node's latest slow read.
#[derive(Debug, Clone)]
struct Mark {
    at: Instant,
    why: String,
    times: u64,
}

/// A single chunk fetch is hedged after at least this long...
const HEDGE_SINGLE_MIN: Duration = Duration::from_secs(2);
/// ...and this many times the recent typical fetch.
const HEDGE_SINGLE_FACTOR: u32 = 8;

/// The nodes reads found slow lately, by name, and how long a chunk
/// fetch usually takes.
#[derive(Debug, Default)]
pub struct SlowNodes {
    marks: Mutex<HashMap<String, Mark>>,
    /// Moving average of successful chunk fetches, in microseconds.
    typical_us: std::sync::atomic::AtomicU64,
}

impl SlowNodes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Mark>> {
        self.marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records how long a successful chunk fetch took.
    pub fn note_fetch(&self, took: Duration) {
        use std::sync::atomic::Ordering;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.typical_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.typical_us.store(new, Ordering::Relaxed);
    }

    /// How long a single chunk fetch may take before a read goes around
    /// its node: a clear margin over the typical fetch, never below
    /// [`HEDGE_SINGLE_MIN`].
    pub fn hedge_after(&self) -> Duration {
        let typical =
            Duration::from_micros(self.typical_us.load(std::sync::atomic::Ordering::Relaxed));
        HEDGE_SINGLE_MIN.max(typical * HEDGE_SINGLE_FACTOR)
    }

    /// Records that a read went around `node`.
    pub fn mark(&self, node: &str, why: String) {
        let mut m = self.lock();
        let times = m.get(node).map_or(0, |k| k.times) + 1;
        if times == 1 {
            tracing::warn!("node {node} is slow: {why}; reading a spare shard instead");
        }
        m.insert(
            node.to_owned(),
            Mark {
                at: Instant::now(),
                why,
                times,
            },
        );
    }

    /// Whether `node` was slow lately.
    pub fn is_slow(&self, node: &str) -> bool {
        self.lock()
            .get(node)
            .is_some_and(|k| k.at.elapsed() < SLOW_FOR)
    }

    /// What status shows for `node`, if it was slow lately.
    pub fn describe(&self, node: &str) -> Option<String> {
        self.lock()
            .get(node)
            .filter(|k| k.at.elapsed() < SLOW_FOR)
            .map(|k| {
                format!(
                    "slow: {} ({} read(s) went around it, the last {} s ago)",
                    k.why,
                    k.times,
                    k.at.elapsed().as_secs()
                )
            })
    }
}
