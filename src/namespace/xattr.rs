//! Extended attributes of inodes (what `rsync -X` and `cp -a` carry).

use super::{Namespace, NamespaceError, Result, Time, ikey, inokey};

/// `setxattr` flag: fail if the attribute exists.
pub const XATTR_CREATE: i32 = 1;
/// `setxattr` flag: fail if the attribute does not exist.
pub const XATTR_REPLACE: i32 = 2;
/// Largest attribute value, as on ext4 with a 4 KiB block... and then some.
pub const XATTR_SIZE_MAX: usize = 65_536;

pub(super) fn xkey(ino: u64, name: &[u8]) -> Vec<u8> {
    let mut k = inokey(b'x', ino).to_vec();
    k.extend_from_slice(name);
    k
}

impl Namespace {
    /// Value of attribute `name` of `ino`.
    pub fn get_xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.db
            .get(xkey(ino, name))?
            .ok_or_else(|| NamespaceError::NoXattr(String::from_utf8_lossy(name).into_owned()))
    }

    /// Sets attribute `name` of `ino` (with `XATTR_CREATE`/`XATTR_REPLACE`
    /// semantics); the inode's ctime moves.
    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        let what = String::from_utf8_lossy(name).into_owned();
        if name.is_empty() || name.len() > 255 {
            return Err(NamespaceError::Invalid(what));
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(NamespaceError::Invalid(what));
        }
        let _g = self.lock();
        let exists = self.db.get(xkey(ino, name))?.is_some();
        if flags & XATTR_CREATE != 0 && exists {
            return Err(NamespaceError::Exists(what));
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(NamespaceError::NoXattr(what));
        }
        let mut node = self.inode(ino)?;
        node.ctime = Time::now();
        let mut b = super::Batch::new();
        b.insert(xkey(ino, name), value);
        b.insert(ikey(ino), node.encode());
        self.db.apply(b)?;
        Ok(())
    }

    /// Names of the attributes of `ino`.
    pub fn list_xattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let prefix = inokey(b'x', ino);
        self.db
            .scan_prefix(prefix)
            .map(|r| Ok(r?.0[prefix.len()..].to_vec()))
            .collect()
    }

    /// Removes attribute `name` of `ino`.
    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        let _g = self.lock();
        if self.db.get(xkey(ino, name))?.is_none() {
            return Err(NamespaceError::NoXattr(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        let mut node = self.inode(ino)?;
        node.ctime = Time::now();
        let mut b = super::Batch::new();
        b.remove(xkey(ino, name));
        b.insert(ikey(ino), node.encode());
        self.db.apply(b)?;
        Ok(())
    }
}
