//! Errors of the key pool file: each names the file and what to do.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What is wrong with header bytes (the caller adds the file).
#[derive(Debug, Error)]
pub enum HeaderFault {
    /// The magic is missing.
    #[error("not a qsfs key pool file (no QSFSPOOL magic)")]
    Magic,
    /// Fewer bytes than a header.
    #[error("the header is cut short ({0} bytes)")]
    Short(usize),
    /// A version this build does not know.
    #[error("key pool format version {0}; this qsfs reads version 1")]
    Version(u16),
    /// The blake3 checksum does not match.
    #[error("the header checksum does not match: the header is damaged")]
    Checksum,
    /// A field holds a value no writer produces.
    #[error("the header is invalid: {0}")]
    Field(String),
    /// The link name cannot be stored.
    #[error("the link name must be 1 to 200 bytes of UTF-8")]
    Name,
}

/// Why a key pool file could not be made, opened or refilled.
#[derive(Debug, Error)]
pub enum PoolError {
    /// An I/O call failed.
    #[error("key pool {path}: cannot {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was tried.
        action: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `gen` would overwrite a file.
    #[error(
        "key pool {path} already exists; refusing to overwrite key material (remove it first or choose another path)"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The header is damaged or not a pool header.
    #[error(
        "key pool {path}: {fault}; restore the file from the link's key delivery or generate a new pair"
    )]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        fault: HeaderFault,
    },
    /// The records do not match the header.
    #[error("key pool {path} is damaged: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A sealed pool opened without its vault's seal key.
    #[error(
        "key pool {path} is sealed under its vault's key; only that vault opens it (qsfs mount or any vault command, with the vault's unlock)"
    )]
    Sealed {
        /// The file.
        path: PathBuf,
    },
    /// A sealed pool whose seal check does not match the key given.
    #[error(
        "key pool {path} is sealed under another vault's key (its seal check does not match); put back this vault's own pool file"
    )]
    WrongSeal {
        /// The file.
        path: PathBuf,
    },
    /// Another process has the pool open.
    #[error("key pool {path} is in use by another process (one process per pool file)")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// Refill asked of a pool from QKD equipment.
    #[error("key pool {path} holds keys from QKD equipment; qsfs never refills it")]
    NotRefillable {
        /// The file.
        path: PathBuf,
    },
    /// Two files that are not the two ends of one link.
    #[error("key pools {a} and {b} are not the two ends of one link: {detail}")]
    NotAPair {
        /// The first file.
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// What differs.
        detail: String,
    },
    /// Bad arguments (key count, name).
    #[error("key pool {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// A closure for `map_err` turning an `io::Error` into [`PoolError::Io`].
pub fn io_err(path: &std::path::Path, action: &'static str) -> impl FnOnce(io::Error) -> PoolError {
    let path = path.to_path_buf();
    move |source| PoolError::Io {
        path,
        action,
        source,
    }
}
