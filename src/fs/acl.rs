//! POSIX ACLs as the kernel hands them to a FUSE filesystem with
//! `FUSE_POSIX_ACL`: the filesystem keeps the mode bits in step with an
//! access ACL, as ext4 does (`posix_acl_update_mode`; `cp -a` and
//! `rsync -A` set a file's permissions this way), and it applies a
//! folder's default ACL to what is created in it (`posix_acl_create`):
//! with that capability the kernel leaves both to the filesystem.
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

/// Name of the access ACL xattr.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL xattr (folders only).
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// What a new inode takes from its folder's default ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// The create mode with its rwx bits cut down by the ACL (the other
    /// bits, set-id and sticky, as they came). The umask plays no part.
    pub mode: u32,
    /// The new inode's access ACL; None when it says no more than
    /// `mode` (no named users or groups, no mask), as ext4 then stores none.
    pub access: Option<Vec<u8>>,
}

/// Applies a folder's default ACL (xattr value `default`) to a new inode
/// created with `mode`, as ext4 does (`posix_acl_create_masq`): every
/// owner, group-or-mask and other entry keeps only the permissions the
/// create mode grants, and the mode keeps only what the entries grant.
/// None if `default` is not a valid ACL.
pub fn inherit(default: &[u8], mode: u32) -> Option<Inherited> {
    parse(default)?;
    let mut acl = default.to_vec();
    let mut bits = mode & 0o777;
    let mut extended = false;
    let (mut group_obj, mut mask) = (None, None);
    // The perm field of entry i sits at bytes 4 + 8i + 2 .. + 4.
    let perm_at = |i: usize| 4 + 8 * i + 2;
    let entries = (acl.len() - 4) / 8;
    for i in 0..entries {
        let at = 4 + 8 * i;
        let tag = u16::from_le_bytes([acl[at], acl[at + 1]]);
        let perm = u32::from(u16::from_le_bytes([acl[at + 2], acl[at + 3]]) & 0o7);
        let kept = match tag {
            USER_OBJ => {
                let p = perm & (bits >> 6);
                bits &= (p << 6) | !0o700;
                p
            }
            OTHER => {
                let p = perm & bits;
                bits &= p | !0o007;
                p
            }
            GROUP_OBJ => {
                group_obj = Some(i);
                continue;
            }
            MASK => {
                mask = Some(i);
                extended = true;
                continue;
            }
            _ => {
                extended = true;
                continue;
            }
        };
        acl[perm_at(i)..perm_at(i) + 2].copy_from_slice(&(kept as u16).to_le_bytes());
    }
    // The mask, when there is one, stands for the group class; else the
    // owning group does.
    let g = mask.or(group_obj)?;
    let at = perm_at(g);
    let p = u32::from(u16::from_le_bytes([acl[at], acl[at + 1]]) & 0o7) & (bits >> 3);
    bits &= (p << 3) | !0o070;
    acl[at..at + 2].copy_from_slice(&(p as u16).to_le_bytes());
    Some(Inherited {
        mode: (mode & !0o777) | (bits & 0o777),
        access: extended.then_some(acl),
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

    /// The cases of acl(5) and of ext4: the create mode cuts the entries
    /// (the mask stands for the group class), the entries cut the mode.
    #[test]
    fn inheriting_a_default_acl() {
        const U: u32 = u32::MAX;
        // setfacl -d -m u:nobody:rwx,g::r-x,o::- : touch asks for 0666.
        let default = acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 65534),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 0, U),
        ]);
        let f = inherit(&default, 0o666).expect("a valid ACL");
        assert_eq!(f.mode, 0o660);
        assert_eq!(
            f.access.expect("an extended ACL"),
            acl(&[
                (USER_OBJ, 6, U),
                (USER, 7, 65534),
                (GROUP_OBJ, 5, U),
                (MASK, 6, U),
                (OTHER, 0, U),
            ])
        );
        // mkdir asks for 0777; set-group-id and sticky bits pass through.
        let d = inherit(&default, 0o3777).expect("a valid ACL");
        assert_eq!(d.mode, 0o3770);
        assert_eq!(d.access.expect("an extended ACL"), default);
        // A default ACL of the three base entries only works like a umask
        // (acl(5): u::rwx,g::r-x,o::r-x with 0666 gives 0644) and leaves
        // no access ACL.
        let plain = acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U), (OTHER, 5, U)]);
        assert_eq!(
            inherit(&plain, 0o666).expect("a valid ACL"),
            Inherited {
                mode: 0o644,
                access: None
            }
        );
        assert_eq!(inherit(&plain, 0o700).expect("a valid ACL").mode, 0o700);
        assert!(inherit(b"junk", 0o666).is_none());
    }
}
