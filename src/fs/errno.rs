//! Library errors to the errno a system call returns, at the FUSE
//! boundary (each also logged with what, where and why).

use fuser::Errno;

use crate::dispersal::DispersalError;
use crate::keystore::KeystoreError;
use crate::namespace::NamespaceError;
use crate::node::NodeFailures;
use crate::vault::VaultError;

/// The errno for a namespace error.
pub fn ns(e: &NamespaceError) -> Errno {
    match e {
        NamespaceError::NotFound(_) => Errno::ENOENT,
        NamespaceError::NotADirectory(_) => Errno::ENOTDIR,
        NamespaceError::IsADirectory(_) => Errno::EISDIR,
        NamespaceError::Exists(_) => Errno::EEXIST,
        NamespaceError::NotEmpty(_) => Errno::ENOTEMPTY,
        NamespaceError::NameTooLong(_) => Errno::ENAMETOOLONG,
        NamespaceError::InvalidPath { .. } | NamespaceError::Invalid(_) => Errno::EINVAL,
        NamespaceError::NotPermitted(_) => Errno::EPERM,
        NamespaceError::NoXattr(_) => Errno::NO_XATTR,
        NamespaceError::Store(_) | NamespaceError::Record { .. } => Errno::EIO,
    }
}

/// The errno for a vault error: a node that ran out of space anywhere in
/// the chain of a failed write is ENOSPC (EDQUOT for a quota), found by
/// the typed cause, so a remote node or another locale reports it the same;
/// everything else that failed on the way to the nodes is EIO.
pub fn vault(e: &VaultError) -> Errno {
    match e {
        VaultError::Namespace(n) => ns(n),
        VaultError::Keystore(KeystoreError::R2Unavailable(..)) => Errno::EIO,
        _ => storage_full(e).unwrap_or(Errno::EIO),
    }
}

/// The errno a failed write or commit gives close(2), fsync and write:
/// ENOSPC (EDQUOT) for full nodes, EIO for anything else (the data stays
/// staged and is retried, so a namespace error is not the caller's).
pub fn write_failure(e: &VaultError) -> Errno {
    storage_full(e).unwrap_or(Errno::EIO)
}

/// ENOSPC or EDQUOT if the write failed because nodes were full.
fn storage_full(e: &VaultError) -> Option<Errno> {
    match e {
        VaultError::Dispersal(d) => dispersal_full(d),
        VaultError::Seal { source, .. } | VaultError::SpoolKept { source, .. } => {
            storage_full(source)
        }
        VaultError::Commit(source) => storage_full(source),
        _ => None,
    }
}

fn dispersal_full(e: &DispersalError) -> Option<Errno> {
    match e {
        DispersalError::BelowQuorum { failures, .. } => node_failures(failures),
        DispersalError::Node { source } if source.is_storage_full() => {
            source.errno().map(Errno::from_i32)
        }
        _ => None,
    }
}

/// ENOSPC (EDQUOT) if one of a write's node failures was a full disk.
pub fn node_failures(f: &NodeFailures) -> Option<Errno> {
    f.storage_full().map(Errno::from_i32)
}

/// The errno of an I/O error on local files (staging).
pub fn io(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO)
}
