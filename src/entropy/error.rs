//! Errors of the random sources: what failed, which path, and what to do next.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Hint appended to device errors: the way out is always the OS RNG.
const DEVICE_HINT: &str =
    "check the device (driver loaded, permissions), or set [random] source = \"os\" in qsfs.toml";

/// A random source could not deliver bytes.
///
/// Every variant names the path involved so a message in a log is enough to
/// find the file; none of them is ever "recovered" by handing out bytes that
/// may have been handed out before.
#[derive(Debug, Error)]
pub enum EntropyError {
    /// The operating system's random generator failed.
    #[error(
        "the operating system random generator failed: {source}; the kernel RNG is unavailable, check the system (seccomp, early boot) or configure [random] source = \"device\" or \"pool\" in qsfs.toml"
    )]
    Os {
        /// Error reported by getrandom.
        source: getrandom::Error,
    },

    /// The configured random device path does not exist.
    #[error("random device {} does not exist: {source}; {DEVICE_HINT}", path.display())]
    DeviceMissing {
        /// Device path.
        path: PathBuf,
        /// Error from the lookup.
        source: io::Error,
    },

    /// The random device exists but could not be opened for reading.
    #[error("random device {} cannot be opened for reading: {source}; {DEVICE_HINT}", path.display())]
    DeviceOpen {
        /// Device path.
        path: PathBuf,
        /// Error from open(2).
        source: io::Error,
    },

    /// The path is not a character device or FIFO: a regular file (or a
    /// directory, a socket, a block device) gives every reader the same
    /// bytes from its start, so keys would repeat.
    #[error(
        "random device {} is {found}, not a character device or FIFO: every process would read the same bytes from it, and keys would repeat; use a character device such as /dev/hwrng, a FIFO fed by the QRNG, or pool:FILE ([random] source = \"pool\") for a file of QRNG bytes",
        path.display()
    )]
    DeviceWrongType {
        /// Device path.
        path: PathBuf,
        /// What it is instead ("a regular file", "a directory", ...).
        found: &'static str,
    },

    /// The device delivered no bytes within the timeout.
    #[error("random device {} stalled: no bytes {what} within {timeout_ms} ms; {DEVICE_HINT}, or raise timeout_ms", path.display())]
    DeviceStalled {
        /// Device path.
        path: PathBuf,
        /// "while opening it" or "to read".
        what: &'static str,
        /// The configured timeout.
        timeout_ms: u64,
    },

    /// The device reported end of file: it has no more bytes to give.
    #[error("random device {} ended (end of file): it has no more random bytes; {DEVICE_HINT}", path.display())]
    DeviceEnded {
        /// Device path.
        path: PathBuf,
    },

    /// Reading the device failed.
    #[error("reading random device {} failed: {source}; {DEVICE_HINT}", path.display())]
    DeviceRead {
        /// Device path.
        path: PathBuf,
        /// Error from read(2).
        source: io::Error,
    },

    /// The reader thread for the device could not be started.
    #[error("cannot start the reader thread for random device {}: {source}; the process is out of threads or memory", path.display())]
    DeviceThread {
        /// Device path.
        path: PathBuf,
        /// Error from thread creation.
        source: io::Error,
    },

    /// The pool file does not exist.
    #[error("random pool file {} does not exist: {source}; load a pool file (raw QRNG bytes) there or set [random] source = \"os\" in qsfs.toml", path.display())]
    PoolMissing {
        /// Pool path.
        path: PathBuf,
        /// Error from open(2).
        source: io::Error,
    },

    /// An I/O operation on the pool file or its position sidecar failed.
    #[error("random pool: cannot {action} {}: {source}; check the file's permissions and the disk", path.display())]
    PoolIo {
        /// What was being done ("open", "read", "zero consumed bytes in", ...).
        action: &'static str,
        /// The pool file or its sidecar.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },

    /// The position sidecar exists but cannot be trusted.
    #[error("random pool position file {} is damaged: {detail}; if the pool file is intact, delete the position file and qsfs will resume after the zeroed (consumed) prefix of the pool", path.display())]
    PoolStateCorrupt {
        /// Sidecar path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },

    /// The pool file is shorter than the position recorded for it.
    #[error("random pool file {} is {len} bytes but its position file {} records {position} bytes consumed (of a {recorded_len}-byte pool): the pool was replaced by a different file; if this is a fresh pool, delete the position file", path.display(), state_path.display())]
    PoolShorter {
        /// Pool path.
        path: PathBuf,
        /// Sidecar path.
        state_path: PathBuf,
        /// Current pool length.
        len: u64,
        /// Recorded position.
        position: u64,
        /// Pool length recorded in the sidecar.
        recorded_len: u64,
    },

    /// The pool has fewer bytes left than a draw needs. Nothing was consumed.
    #[error("random pool {} is exhausted: {needed} bytes needed but only {left} left (nothing was consumed); load a new pool file or set [random] source = \"os\" in qsfs.toml", path.display())]
    PoolExhausted {
        /// Pool path.
        path: PathBuf,
        /// Bytes the draw needed.
        needed: u64,
        /// Bytes still unconsumed.
        left: u64,
    },

    /// The pool bytes at the position are zeros: they were consumed before.
    #[error("random pool {} holds zeros at offset {offset}: these bytes were already consumed (the pool file was reused, or its position file was lost or restored from a backup); refusing to hand them out; delete the position file {} to resume after the zeroed prefix, or load a new pool file", path.display(), state_path.display())]
    PoolAlreadyConsumed {
        /// Pool path.
        path: PathBuf,
        /// Sidecar path.
        state_path: PathBuf,
        /// File offset of the zeroed bytes.
        offset: u64,
    },

    /// The raw bytes of a device or pool failed an SP 800-90B health test.
    /// The source stays failed until it is reopened.
    #[error(
        "random {kind} {} failed the {test} health test (NIST SP 800-90B): {detail}; the source is stuck or broken, so no key was drawn and it stays refused until qsfs reopens it; check the QRNG, or set [random] source = \"os\" in qsfs.toml",
        path.display()
    )]
    HealthTest {
        /// "device" or "pool".
        kind: String,
        /// Device or pool path.
        path: PathBuf,
        /// The test that failed.
        test: super::HealthTest,
        /// What it saw.
        detail: String,
    },

    /// The pool's position is behind what this vault already consumed of
    /// it: the pool (and its position file) were restored from a backup or
    /// a snapshot, and its next bytes were already used for keys.
    #[error(
        "random pool {} was restored from an older copy: its position is {position} but this vault already consumed it up to byte {mark} (recorded in {}); its position file is {}; refusing to hand out these bytes again; load a new pool file of fresh QRNG bytes, or set [random] source = \"os\" in qsfs.toml",
        path.display(),
        mark_path.display(),
        state_path.display()
    )]
    PoolRestored {
        /// Pool path.
        path: PathBuf,
        /// Sidecar path.
        state_path: PathBuf,
        /// The pool's recorded (or recovered) position.
        position: u64,
        /// The vault's high-water mark for this pool.
        mark: u64,
        /// The mark file.
        mark_path: PathBuf,
    },

    /// The vault's high-water mark for a pool cannot be trusted.
    #[error(
        "the vault's record of random pool use {} is damaged: {detail}; restore it from the vault's backup, or load a new pool file",
        path.display()
    )]
    MarkCorrupt {
        /// Mark file path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },

    /// The exclusive lock on the pool could not be taken.
    #[error("cannot lock random pool {} for exclusive use: {source}; check that the file system supports flock", path.display())]
    PoolLock {
        /// Pool path.
        path: PathBuf,
        /// Error from flock(2).
        source: io::Error,
    },
}
