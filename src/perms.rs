//! Owner-only modes for everything that holds key material or shards.
//!
//! The vault's key stores (R1, a separate R2 store, B in `meta/ec`, the
//! link key pools) and the shards in node folders are made 0700 (folders)
//! and 0600 (files) when they are created, whatever the umask: sled and
//! `std::fs` create with the umask, so modes are set explicitly after
//! creation. Opening a vault whose key stores other users can reach is
//! refused, the way ssh refuses a private key others can read: the error
//! names the folder and the `chmod` that fixes it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Mode of a folder holding secrets.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a file holding secrets.
pub const FILE_MODE: u32 = 0o600;

/// A key store that group or others can reach, or one that could not be
/// checked.
#[derive(Debug, Error)]
pub enum PermsError {
    /// Group or other permission bits are set on a key store.
    #[error(
        "{path} is readable or writable by group or others (mode {mode:04o}); \
         it holds key material: run: chmod -R go-rwx {path}"
    )]
    Exposed {
        /// The folder or file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The mode could not be read or set.
    #[error("cannot check or set the permissions of {path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PermsError + '_ {
    move |source| PermsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` and any missing parents with mode 0700, then sets 0700
/// on `path` itself (it may have existed, or the umask may have cut it).
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Creates folder `path` (not its parents) with mode 0700; an existing
/// one is an `AlreadyExists` error, as with `std::fs::create_dir`.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Sets 0700 on a folder or 0600 on a file (symlinks are left alone).
pub fn make_private(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let want = if meta.is_dir() {
        DIR_MODE
    } else if meta.is_file() {
        FILE_MODE
    } else {
        return Ok(());
    };
    if meta.permissions().mode() & 0o777 != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    }
    Ok(())
}

/// [`make_private`] on `path` and everything under it. Entries that vanish
/// while we walk (sled removes old snapshots) are skipped.
pub fn make_private_tree(path: &Path) -> io::Result<()> {
    match make_private(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        r => r?,
    }
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        make_private_tree(&entry.path())?;
    }
    Ok(())
}

/// Refuses `path` if group or others have any permission on it. A path
/// that does not exist passes (a missing store is reported by its opener).
pub fn check_private(path: &Path) -> Result<(), PermsError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PermsError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_trees_and_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a/b");
        create_private_dir_all(&a).unwrap();
        assert_eq!(mode(&a), 0o700);
        std::fs::write(a.join("f"), b"x").unwrap();
        std::fs::set_permissions(a.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
        match check_private(&a) {
            Err(PermsError::Exposed { path, mode }) => {
                assert_eq!((path, mode), (a.clone(), 0o755));
            }
            other => panic!("{other:?}"),
        }
        let msg = check_private(&a).unwrap_err().to_string();
        assert!(
            msg.contains("chmod -R go-rwx") && msg.contains("0755"),
            "{msg}"
        );
        make_private_tree(&a).unwrap();
        assert_eq!((mode(&a), mode(&a.join("f"))), (0o700, 0o600));
        check_private(&a).unwrap();
        check_private(&dir.path().join("none")).unwrap();
    }
}
