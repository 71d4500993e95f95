//! Key pool files: the pre-shared key material of one QKD link end, each key used once.
//!
//! A link's two ends hold the same keys, as a QKD link delivers them: 256-bit
//! keys named by UUID key ids, half for A -> B traffic and half for B -> A
//! (so the two directions never draw the same key). Each end has its own
//! file; the byte layout is in [`format`]. `qsfs keypool gen` makes a pair
//! ([`generate`]); [`PoolFile`] opens one end as a [`crate::qkd::KeySource`]
//! for the link layer; [`refill_pair`] and [`Refiller`] keep a simulated
//! link's pair topped up.
//!
//! The rule every path keeps: a key's use is on disk (record marked used,
//! key bytes zeroed, file synced) before the key protects any data.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use qsfs::qkd::pool::{GenOptions, PoolFile, generate};
//! use qsfs::qkd::{End, KeySource};
//! generate(
//!     &GenOptions {
//!         link: "node-0",
//!         keys: 10_000,
//!         a_path: Path::new("node-0.A.pool"),
//!         b_path: Path::new("node-0.B.pool"),
//!         refill: true,
//!     },
//!     |buf| getrandom::fill(buf).map_err(std::io::Error::other),
//! )?;
//! let a = PoolFile::open(Path::new("node-0.A.pool"))?;
//! let key = a.next_key(End::A.sends())?; // marked used and zeroed on disk
//! # let _ = key; Ok(()) }
//! ```

mod error;
mod file;
pub mod format;
mod generate;
mod refill;
mod seal;
mod status;

pub use error::{HeaderFault, PoolError};
pub use file::{Access, DEFAULT_BATCH, PoolFile, dir_name, inspect};
pub use format::SealKey;
pub use generate::{GenOptions, generate, generate_sealed};
pub use refill::{
    DEFAULT_KEY_RATE_BPS, RefillConfig, RefillStats, Refiller, reconcile_pair, refill_files,
    refill_pair,
};
pub use seal::{finish_sealing, seal_copy, seal_file};
pub use status::{DirCounts, LOW_FRACTION, PoolStatus};

/// Fills a buffer from the OS RNG (getrandom), the random source of
/// `qsfs keypool gen` and of simulated links by default.
pub fn os_random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(format!("getrandom: {e}")))
}
