//! Erasure coding: the stripe layout of a sealed object and the
//! Reed-Solomon codec over it. Pure code, no I/O.
//!
//! A sealed object `N` is cut into stripes of `k` data chunks; each stripe
//! gets `n - k` parity chunks. Shard `i` of the object is chunk `i` of every
//! stripe, back to back, so any `k` shards rebuild `N` and a byte of `N`
//! lives at a position that is computed, not looked up.

mod codec;
mod layout;

pub use codec::Codec;
pub use layout::StripeLayout;

use thiserror::Error;

/// Largest `n` qsfs accepts (shard indexes are one byte and Reed-Solomon
/// over GF(2^8) allows up to 256; 32 keeps manifests and node lists sane).
pub const MAX_SHARDS: usize = 32;

/// Erasure-coding failures.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ErasureError {
    /// `k`/`n` outside `1 <= k < n <= 32`.
    #[error("invalid erasure parameters k={k}, n={n}: need 1 <= k < n <= {MAX_SHARDS}")]
    Params {
        /// Data chunks per stripe.
        k: usize,
        /// Total chunks per stripe.
        n: usize,
    },
    /// Fewer than `k` chunks of a stripe are available.
    #[error("only {have} of the {k} chunks needed to rebuild the stripe are available")]
    TooFewChunks {
        /// Chunks available.
        have: usize,
        /// Chunks needed.
        k: usize,
    },
    /// Chunks passed to the codec differ in size or count.
    #[error("chunk shape mismatch: {0}")]
    Shape(String),
}
