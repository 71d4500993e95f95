//! The inode record: type, attributes and where a file's bytes live.
//!
//! Format v2 (written), integers little-endian; v1 (read) lacks the
//! per-extent object offset, which is then 0:
//! ```text
//! u8   version = 2
//! u8   kind (1 file, 2 dir, 3 symlink, 4 fifo, 5 socket, 6 char dev, 7 block dev)
//! u32  mode (permission bits incl. set-uid/set-gid/sticky; no type bits)
//! u32  uid, u32 gid, u32 nlink, u32 rdev, u32 flags
//! u64  size
//! 4 x  (i64 seconds, u32 nanoseconds): atime, mtime, ctime, crtime
//! u32  extent count, then per extent: u64 offset, u64 length, [16] object id,
//!      u64 object offset (v2: where in the object's plaintext the extent starts)
//! blob symlink target (u32 length + bytes; empty for non-links)
//! ```
//! A file's content is a sorted list of extents, each a piece of a sealed
//! object; bytes outside every extent are holes and read as zeros, so
//! sparse files cost nothing for their holes, and rewriting part of a file
//! seals only that part (the old object keeps serving the rest).

use crate::ObjectId;
use crate::codec::{DecodeError, Reader, Writer};

/// Inode record version written by this build.
pub const INODE_VERSION: u8 = 2;

/// Type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device (metadata only).
    CharDev,
    /// Block device (metadata only).
    BlockDev,
}

impl Kind {
    /// On-disk code.
    pub fn code(self) -> u8 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Fifo => 4,
            Kind::Socket => 5,
            Kind::CharDev => 6,
            Kind::BlockDev => 7,
        }
    }

    /// Kind from its on-disk code.
    pub fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDev,
            7 => Kind::BlockDev,
            _ => return None,
        })
    }

    /// One letter as `ls -l` shows it.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
        }
    }
}

/// A point in time with nanoseconds.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Time {
    /// Seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds.
    pub nanos: u32,
}

impl Time {
    /// The current time.
    pub fn now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }
}

/// One sealed piece of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extent {
    /// Offset of the piece in the file.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// The sealed object holding it.
    #[serde(serialize_with = "ser_id", deserialize_with = "de_id")]
    pub object: ObjectId,
    /// Where the extent starts in the object's plaintext.
    pub object_offset: u64,
}

fn ser_id<S: serde::Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

fn de_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    ObjectId::from_hex(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an object id")))
}

/// Attributes and content of one inode. (Its JSON form is what `qsfs ls
/// --json` prints, also when a mounted vault's control socket sent it.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inode {
    /// Type.
    pub kind: Kind,
    /// Permission bits (with set-uid, set-gid, sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (for directories: 2 + subdirectories).
    pub nlink: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Reserved flags.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Last access.
    pub atime: Time,
    /// Last content change.
    pub mtime: Time,
    /// Last inode change.
    pub ctime: Time,
    /// Creation.
    pub crtime: Time,
    /// Content pieces, sorted by offset, not overlapping.
    pub extents: Vec<Extent>,
    /// Target of a symlink.
    pub target: Vec<u8>,
}

impl Inode {
    /// A new inode of `kind` stamped now.
    pub fn new(kind: Kind, mode: u32, uid: u32, gid: u32) -> Inode {
        let now = Time::now();
        Inode {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            flags: 0,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            extents: Vec::new(),
            target: Vec::new(),
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + self.extents.len() * 32 + self.target.len());
        w.u8(INODE_VERSION)
            .u8(self.kind.code())
            .u32(self.mode)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.nlink)
            .u32(self.rdev)
            .u32(self.flags)
            .u64(self.size);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            w.i64(t.secs).u32(t.nanos);
        }
        w.u32(self.extents.len() as u32);
        for e in &self.extents {
            w.u64(e.offset)
                .u64(e.len)
                .bytes(e.object.as_bytes())
                .u64(e.object_offset);
        }
        w.blob(&self.target);
        w.finish()
    }

    /// Decodes a record.
    pub fn decode(buf: &[u8]) -> Result<Inode, DecodeError> {
        let mut r = Reader::new("inode", buf);
        let version = r.u8()?;
        if !(1..=INODE_VERSION).contains(&version) {
            return Err(DecodeError::Version {
                what: "inode",
                found: version.into(),
                supported: INODE_VERSION.into(),
            });
        }
        let code = r.u8()?;
        let kind = Kind::from_code(code)
            .ok_or_else(|| r.invalid("kind", format!("unknown code {code}")))?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let nlink = r.u32()?;
        let rdev = r.u32()?;
        let flags = r.u32()?;
        let size = r.u64()?;
        let mut times = [Time::default(); 4];
        for t in &mut times {
            *t = Time {
                secs: r.i64()?,
                nanos: r.u32()?,
            };
        }
        let count = r.u32()? as usize;
        let each = if version == 1 { 32 } else { 40 };
        if count > r.remaining() / each {
            return Err(r.invalid("extents", format!("{count} extents do not fit the record")));
        }
        let mut extents = Vec::with_capacity(count);
        for _ in 0..count {
            let (offset, len, object) = (r.u64()?, r.u64()?, ObjectId(r.array()?));
            let object_offset = if version == 1 { 0 } else { r.u64()? };
            extents.push(Extent {
                offset,
                len,
                object,
                object_offset,
            });
        }
        let target = r.blob()?.to_vec();
        r.finish()?;
        let [atime, mtime, ctime, crtime] = times;
        Ok(Inode {
            kind,
            mode,
            uid,
            gid,
            nlink,
            rdev,
            flags,
            size,
            atime,
            mtime,
            ctime,
            crtime,
            extents,
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut i = Inode::new(Kind::File, 0o104755, 1000, 100);
        assert_eq!(i.mode, 0o4755);
        i.size = 1 << 50;
        i.extents.push(Extent {
            offset: 4096,
            len: 10,
            object: ObjectId([7; 16]),
            object_offset: 77,
        });
        i.mtime = Time {
            secs: -5,
            nanos: 999_999_999,
        };
        assert_eq!(Inode::decode(&i.encode()).unwrap(), i);
        let mut l = Inode::new(Kind::Symlink, 0o777, 0, 0);
        l.target = b"../x".to_vec();
        assert_eq!(Inode::decode(&l.encode()).unwrap(), l);
        let enc = l.encode();
        assert!(Inode::decode(&enc[..enc.len() - 1]).is_err());
    }
}
