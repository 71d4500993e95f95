//! Inode attributes as the kernel wants them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::namespace::{Inode, Kind, Time};

/// How long the kernel may cache attributes and names. Only this process
/// changes the vault while it is mounted, so a short TTL costs little.
pub const TTL: Duration = Duration::from_secs(1);

/// Block size reported by stat.
pub const BLOCK: u32 = 4096;

/// FUSE file type of an inode kind.
pub fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

/// Inode kind of a `mknod` mode.
pub fn kind_of_mode(mode: u32) -> Option<Kind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Kind::File,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFCHR => Kind::CharDev,
        libc::S_IFBLK => Kind::BlockDev,
        libc::S_IFDIR => Kind::Dir,
        _ => return None,
    })
}

/// A stored time as a `SystemTime` (times before 1970 included).
pub fn system_time(t: Time) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
            + Duration::from_nanos(u64::from(t.nanos))
    }
}

/// A `SystemTime` as a stored time.
pub fn stored_time(t: SystemTime) -> Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut secs, mut nanos) = (-(d.as_secs() as i64), 0u32);
            if d.subsec_nanos() > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - d.subsec_nanos();
            }
            Time { secs, nanos }
        }
    }
}

/// A time received from fuser 0.18 (pinned): for times before 1970 its
/// conversion from the kernel's (seconds, nanoseconds) subtracts the
/// nanoseconds where it should add them (fuser `time.rs`
/// `system_time_from_time`); this undoes that.
pub fn from_fuser(t: SystemTime) -> Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(_) => stored_time(t),
        Err(e) => {
            let d = e.duration();
            // fuser made: EPOCH - (secs + nanos); the kernel meant: EPOCH - secs + nanos.
            Time {
                secs: -(d.as_secs() as i64),
                nanos: d.subsec_nanos(),
            }
        }
    }
}

/// Blocks (of 512 bytes) a file occupies: the bytes its extents cover,
/// so a sparse file reports what it really stores, as on ext4.
pub fn blocks_of(inode: &Inode) -> u64 {
    let data: u64 = match inode.kind {
        Kind::File => inode.extents.iter().map(|e| e.len).sum(),
        Kind::Symlink => inode.target.len() as u64,
        Kind::Dir => u64::from(BLOCK),
        _ => 0,
    };
    data.div_ceil(u64::from(BLOCK)) * u64::from(BLOCK / 512)
}

/// The attributes of inode `ino`.
pub fn to_attr(ino: u64, inode: &Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: match inode.kind {
            Kind::Symlink => inode.target.len() as u64,
            Kind::Dir => u64::from(BLOCK),
            _ => inode.size,
        },
        blocks: blocks_of(inode),
        atime: system_time(inode.atime),
        mtime: system_time(inode.mtime),
        ctime: system_time(inode.ctime),
        crtime: system_time(inode.crtime),
        kind: file_type(inode.kind),
        perm: (inode.mode & 0o7777) as u16,
        nlink: inode.nlink,
        uid: inode.uid,
        gid: inode.gid,
        rdev: inode.rdev,
        blksize: BLOCK,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_nanoseconds_and_before_1970() {
        for t in [
            Time {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            Time {
                secs: -5,
                nanos: 250,
            },
            Time::default(),
        ] {
            assert_eq!(stored_time(system_time(t)), t);
        }
    }

    #[test]
    fn fuser_pre_1970_times_are_corrected() {
        // The kernel sends (-2, 800_000_000) = -1.2 s; fuser hands over -2.8 s.
        let handed = UNIX_EPOCH - Duration::new(2, 800_000_000);
        assert_eq!(
            from_fuser(handed),
            Time {
                secs: -2,
                nanos: 800_000_000
            }
        );
        let after = UNIX_EPOCH + Duration::new(5, 7);
        assert_eq!(from_fuser(after), Time { secs: 5, nanos: 7 });
    }

    #[test]
    fn sparse_files_report_their_extents() {
        let mut i = Inode::new(Kind::File, 0o644, 0, 0);
        i.size = 1 << 50;
        assert_eq!(to_attr(5, &i).blocks, 0);
        assert_eq!(to_attr(5, &i).size, 1 << 50);
    }
}
