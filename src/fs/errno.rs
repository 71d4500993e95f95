//! Library errors to the errno a system call returns, at the FUSE
//! boundary (each also logged with what, where and why).

use fuser::Errno;

use crate::dispersal::DispersalError;
use crate::keystore::KeystoreError;
use crate::namespace::NamespaceError;
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

/// The errno for a vault error; "no space" anywhere in the chain of a
/// failed write becomes ENOSPC, everything else that failed on the way to
/// the nodes is EIO.
pub fn vault(e: &VaultError) -> Errno {
    match e {
        VaultError::Namespace(n) => ns(n),
        VaultError::Keystore(KeystoreError::R2Unavailable(..)) => Errno::EIO,
        VaultError::Dispersal(DispersalError::BelowQuorum { detail, .. }) if no_space(detail) => {
            Errno::ENOSPC
        }
        VaultError::Seal { detail, .. } | VaultError::Commit(detail) if no_space(detail) => {
            Errno::ENOSPC
        }
        _ => Errno::EIO,
    }
}

/// True if a failure message says a disk was full.
pub fn no_space(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

/// The errno of an I/O error on local files (staging).
pub fn io(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO)
}
