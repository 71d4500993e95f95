//! What `qsfs keypool status` and `qsfs status` show about a pool.

use std::path::PathBuf;

/// Keys of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DirCounts {
    /// Unused.
    pub left: u64,
    /// Used (or reserved by a running sender).
    pub used: u64,
    /// Both.
    pub total: u64,
}

/// A pool's facts and counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// The file.
    pub path: PathBuf,
    /// The link's name.
    pub link: String,
    /// The link id both ends share, hex.
    pub link_id: String,
    /// 'A' or 'B'.
    pub end: char,
    /// True for a simulated link qsfs refills.
    pub refills: bool,
    /// True when its key bytes are sealed under a vault's key.
    pub sealed: bool,
    /// Keys at generation.
    pub capacity: u64,
    /// Keys for A -> B traffic.
    pub a_to_b: DirCounts,
    /// Keys for B -> A traffic.
    pub b_to_a: DirCounts,
}

/// The default low-water mark: warn under 10% left.
pub const LOW_FRACTION: f64 = 0.10;

impl PoolStatus {
    /// Unused keys, both directions.
    pub fn left(&self) -> u64 {
        self.a_to_b.left + self.b_to_a.left
    }

    /// Used keys, both directions.
    pub fn used(&self) -> u64 {
        self.a_to_b.used + self.b_to_a.used
    }

    /// All keys in the file.
    pub fn total(&self) -> u64 {
        self.a_to_b.total + self.b_to_a.total
    }

    /// True when either direction has fewer than `fraction` of its half
    /// of the capacity left. Measured against the capacity at generation,
    /// not the total, so a refilled pool (whose total keeps growing) is
    /// low only when its unused keys really run short.
    pub fn low(&self, fraction: f64) -> bool {
        let share = (self.capacity as f64 / 2.0).max(1.0);
        [self.a_to_b.left, self.b_to_a.left]
            .iter()
            .any(|&left| (left as f64) < fraction * share)
    }
}
