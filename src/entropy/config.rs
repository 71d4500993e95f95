//! The `[random]` table of `qsfs.toml` and the constructor that opens the chosen source.

use std::path::{Path, PathBuf};

use super::{
    DEFAULT_TIMEOUT_MS, DeviceSource, EntropyError, EntropySource, Mixed, OsSource, PoolSource,
};

/// Which random source seals new file versions.
///
/// In `qsfs.toml` (paths relative to the vault folder):
/// ```toml
/// [random]
/// source = "pool"        # "os" (default) | "device" | "pool"
/// path = "qrng.bin"
/// # timeout_ms = 5000    # device only: how long a read may stall
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(
    tag = "source",
    rename_all = "lowercase",
    deny_unknown_fields,
    from = "RawConfig"
)]
pub enum EntropyConfig {
    /// The operating system RNG.
    #[default]
    Os,
    /// A hardware random device (`/dev/hwrng`, a QRNG card), read directly.
    Device {
        /// Device node; relative paths resolve against the vault folder.
        path: PathBuf,
        /// A read that yields nothing for this long is an error, not a hang.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
    /// A preloaded file of raw QRNG bytes, consumed front to back.
    Pool {
        /// Pool file; relative paths resolve against the vault folder.
        path: PathBuf,
    },
}

/// What is parsed: `Os {}` rather than a unit variant, because serde lets
/// a unit variant of an internally tagged enum ignore stray fields, and a
/// leftover `path = "qrng.bin"` under `source = "os"` must not pass silently.
#[derive(serde::Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
enum RawConfig {
    Os {},
    Device {
        path: PathBuf,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
    Pool {
        path: PathBuf,
    },
}

impl From<RawConfig> for EntropyConfig {
    fn from(raw: RawConfig) -> Self {
        match raw {
            RawConfig::Os {} => Self::Os,
            RawConfig::Device { path, timeout_ms } => Self::Device { path, timeout_ms },
            RawConfig::Pool { path } => Self::Pool { path },
        }
    }
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Opens the source `cfg` names; relative paths resolve against `base_dir`
/// (the vault folder), so a vault can be moved with its pool inside it.
///
/// A device or pool always comes back wrapped in [`Mixed`]: health-tested
/// and mixed with the OS RNG, so a stuck or replayed source cannot repeat a
/// key. With `vault_dir`, a pool is checked against (and raises) that
/// vault's high-water mark for it; `qsfs init` checks a source before the
/// vault exists and passes `None`.
pub fn open_source(
    cfg: &EntropyConfig,
    base_dir: &Path,
    vault_dir: Option<&Path>,
) -> Result<Box<dyn EntropySource>, EntropyError> {
    let raw: Box<dyn EntropySource> = match cfg {
        EntropyConfig::Os => return Ok(Box::new(OsSource::new())),
        EntropyConfig::Device { path, timeout_ms } => {
            Box::new(DeviceSource::open(&base_dir.join(path), *timeout_ms)?)
        }
        EntropyConfig::Pool { path } => {
            let path = base_dir.join(path);
            Box::new(match vault_dir {
                Some(dir) => PoolSource::open_for_vault(&path, dir)?,
                None => PoolSource::open(&path)?,
            })
        }
    };
    Ok(Box::new(Mixed::new(raw)))
}
