//! POSIX access ACLs as the kernel hands them to a FUSE filesystem with
//! `FUSE_POSIX_ACL`: the filesystem keeps the mode bits in step with the
//! ACL, as ext4 does (`posix_acl_update_mode`). `cp -a` and `rsync -A` set
//! a file's permissions this way.
//!
//! Xattr format (little-endian): u32 version = 2, then entries of
//! u16 tag, u16 perm, u32 id.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// What an access ACL means for the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclMode {
    /// The rwx bits of owner, group (or mask) and other.
    pub perm: u32,
    /// True when the ACL says no more than the mode bits (no named users
    /// or groups): it is then not stored at all.
    pub equivalent: bool,
}

/// Reads an access ACL; None if it is not a valid one.
pub fn parse(value: &[u8]) -> Option<AclMode> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return None;
    }
    if u32::from_le_bytes(value[..4].try_into().ok()?) != VERSION {
        return None;
    }
    let (mut user, mut group, mut mask, mut other) = (None, None, None, None);
    let mut named = false;
    for e in value[4..].chunks(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 0o7);
        match tag {
            USER_OBJ => user = Some(perm),
            GROUP_OBJ => group = Some(perm),
            MASK => mask = Some(perm),
            OTHER => other = Some(perm),
            USER | GROUP => named = true,
            _ => return None,
        }
    }
    let (user, group, other) = (user?, group?, other?);
    let group_bits = mask.unwrap_or(group);
    Some(AclMode {
        perm: user << 6 | group_bits << 3 | other,
        equivalent: !named && mask.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for (t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn minimal_and_extended_acls() {
        let m = parse(&acl(&[
            (USER_OBJ, 6, u32::MAX),
            (GROUP_OBJ, 4, u32::MAX),
            (OTHER, 4, u32::MAX),
        ]))
        .unwrap();
        assert_eq!(
            m,
            AclMode {
                perm: 0o644,
                equivalent: true
            }
        );
        let e = parse(&acl(&[
            (USER_OBJ, 7, u32::MAX),
            (USER, 6, 1000),
            (GROUP_OBJ, 5, u32::MAX),
            (MASK, 6, u32::MAX),
            (OTHER, 0, u32::MAX),
        ]))
        .unwrap();
        assert_eq!(
            e,
            AclMode {
                perm: 0o760,
                equivalent: false
            }
        );
        assert!(parse(b"junk").is_none());
        assert!(parse(&acl(&[(USER_OBJ, 6, 0)])).is_none());
    }
}
