//! Random sources for the keys K and R: the OS RNG, a hardware device, or a preloaded QRNG pool file.
//!
//! Every sealed file version draws fresh keys from one [`EntropySource`],
//! chosen by the `[random]` table of the vault's `qsfs.toml`
//! ([`EntropyConfig`], opened with [`open_source`]). The rule every source
//! keeps: a byte is handed out at most once. A device stream is read
//! forward only; a pool file records its position on disk *before* bytes
//! leave and zeroes them after, so neither a crash nor a copied pool can
//! replay key material.

mod config;
mod device;
mod error;
mod os;
mod pool;
pub(crate) mod pool_state;

use std::path::PathBuf;

pub use config::{EntropyConfig, open_source};
pub use device::{DEFAULT_TIMEOUT_MS, DeviceSource};
pub use error::EntropyError;
pub use os::OsSource;
pub use pool::PoolSource;

/// Where random bytes come from.
///
/// Sources are shared between the threads that seal files, hence
/// `Send + Sync`; each one serializes its own state internally.
pub trait EntropySource: Send + Sync {
    /// Fills `buf` with random bytes; never hands out the same bytes twice.
    ///
    /// On error `buf` holds no usable randomness; bytes a failed draw took
    /// from the source may be wasted, never handed out again.
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError>;
    /// For `qsfs status`: kind, path, and level where the source has one.
    fn describe(&self) -> SourceStatus;
}

/// What `qsfs status` shows about the random source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceStatus {
    /// "os", "device" or "pool".
    pub kind: String,
    /// The device or pool file, for sources backed by a path.
    pub path: Option<PathBuf>,
    /// Bytes left, for sources that run out (the pool).
    pub remaining: Option<u64>,
    /// Bytes the source held when full, for sources that run out.
    pub total: Option<u64>,
    /// Anything else worth showing (timeout, last error).
    pub note: Option<String>,
}
