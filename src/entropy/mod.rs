//! Random sources for the keys K and R: the OS RNG, a hardware device, or a preloaded QRNG pool file.
//!
//! Every sealed file version draws fresh keys (K, R and the share seed)
//! from one [`EntropySource`], chosen by the `[random]` table of the
//! vault's `qsfs.toml` ([`EntropyConfig`], opened with [`open_source`]).
//! The rules, each held by a test:
//!
//! 1. **A device or pool is always mixed with the OS RNG** ([`Mixed`],
//!    `mix.rs`). A draw of `n` bytes takes `max(n, 32)` bytes from the
//!    source and as many from getrandom, and returns keyed BLAKE3
//!    (`derive_key` context [`MIX_CONTEXT`]) over both, expanded with the
//!    BLAKE3 XOF. A stuck device, a FIFO replaying a stream or a pool
//!    restored from a backup can therefore never repeat a key; the source
//!    still protects the keys should the OS RNG be weak. `qsfs status`
//!    shows the real source with the note [`MIXED_NOTE`]. Only
//!    `source = "os"` is used unmixed.
//! 2. **`device` accepts only character devices and FIFOs** (checked on
//!    the path after symlinks, and again on the opened file). A regular
//!    file would hand every process the same bytes from its start; it is
//!    refused ([`EntropyError::DeviceWrongType`]), pointing to a character
//!    device such as `/dev/hwrng`, a FIFO, or `pool:` for a file of QRNG
//!    bytes.
//! 3. **Health tests** (NIST SP 800-90B §4.4, `health.rs`) run on the raw
//!    device or pool bytes before mixing: the Repetition Count Test
//!    (cutoff [`RCT_CUTOFF`] = 21 equal bytes in a row) and the Adaptive
//!    Proportion Test (window [`APT_WINDOW`] = 512, cutoff [`APT_CUTOFF`] =
//!    311), both for an assumed 1 bit of min-entropy per byte and a false
//!    alarm rate of 2^-20. The first [`STARTUP_SAMPLES`] = 1024 bytes are
//!    tested and discarded before the first output; every later byte is
//!    tested too. A failure ([`EntropyError::HealthTest`], naming the file
//!    and the test) is final until the source is reopened.
//! 4. **A byte is handed out at most once.** A device stream is read
//!    forward only; a pool file records its position on disk (`<pool>.pos`)
//!    *before* bytes leave and zeroes them after, so a crash cannot replay
//!    key material; and the vault keeps its own high-water mark per pool
//!    (`meta/random-pool/<id>.mark`, `high_water.rs`), raised durably
//!    before bytes leave, so a pool restored together with its position
//!    file is refused ([`EntropyError::PoolRestored`]).

mod config;
mod device;
mod error;
mod health;
mod high_water;
mod mix;
mod os;
mod pool;
pub(crate) mod pool_state;

use std::path::PathBuf;

pub use config::{EntropyConfig, open_source};
pub use device::{DEFAULT_TIMEOUT_MS, DeviceSource};
pub use error::EntropyError;
pub use health::{
    APT_CUTOFF, APT_WINDOW, ASSUMED_MIN_ENTROPY_BITS, HealthFailure, HealthTest, HealthTests,
    RCT_CUTOFF, STARTUP_SAMPLES,
};
pub use high_water::MARK_DIR;
pub use mix::{MIX_CONTEXT, MIXED_NOTE, Mixed};
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
