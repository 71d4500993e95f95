//! The pool's position file `<pool>.pos`: its format, its durable atomic write, and recovery without it.
//!
//! Format, version 1 (40 bytes, little-endian; see `encode`):
//! ```text
//! [ magic    8 bytes  b"QSFSPOS\0"                                        ]
//! [ version  u32      1                                                   ]
//! [ flags    u32      0 (reserved; a reader rejects other values)          ]
//! [ position u64      pool bytes [0, position) are consumed, never served ]
//! [ pool_len u64      pool length when written (spots a replaced pool)    ]
//! [ checksum 8 bytes  first 8 bytes of BLAKE3 over the 32 bytes above      ]
//! ```
//! The file is replaced, never edited: written to `<pool>.pos.tmp`, fsynced,
//! renamed over `<pool>.pos`, and the directory fsynced, so after a crash it
//! holds either the old or the new position, both safe to resume from.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::{DecodeError, Reader, Writer};

use super::EntropyError;

const MAGIC: [u8; 8] = *b"QSFSPOS\0";
const VERSION: u32 = 1;
const RECORD_LEN: usize = 40;
const WHAT: &str = "random pool position file";

/// A run this long of zero bytes (aligned to a multiple of its length in the
/// pool file) marks consumed bytes: random data holds one with probability
/// about 2^-256 per run.
pub(super) const ZERO_RUN: usize = 32;

/// Consumed bytes are zeroed, and recovery scans, in blocks of this size.
pub(super) const BLOCK: u64 = 4096;

/// The decoded position record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolState {
    /// Bytes before this offset are consumed.
    pub position: u64,
    /// Pool length when the record was written.
    pub pool_len: u64,
}

/// `<pool>.pos`, next to the pool.
pub(super) fn state_path(pool: &Path) -> PathBuf {
    with_suffix(pool, ".pos")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// The frame both small pool records share (this position file and the
/// vault's high-water mark, `high_water.rs`): magic, version, flags 0, two
/// u64 values and the first 8 bytes of BLAKE3 over the 32 bytes before it.
pub(super) struct Frame {
    pub magic: [u8; 8],
    pub version: u32,
    pub what: &'static str,
    /// What a wrong magic says the file is not.
    pub not_this: &'static str,
}

impl Frame {
    fn checksum(body: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&blake3::hash(body).as_bytes()[..8]);
        out
    }

    /// The record holding `a` then `b`.
    pub(super) fn encode(&self, a: u64, b: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(RECORD_LEN);
        w.bytes(&self.magic).u32(self.version).u32(0).u64(a).u64(b);
        let mut buf = w.finish();
        let sum = Self::checksum(&buf);
        buf.extend_from_slice(&sum);
        buf
    }

    /// `(a, b)` from a record `encode` wrote; anything else is refused.
    pub(super) fn decode(&self, buf: &[u8]) -> Result<(u64, u64), DecodeError> {
        let mut r = Reader::new(self.what, buf);
        if r.array::<8>()? != self.magic {
            return Err(r.invalid("magic", self.not_this));
        }
        let version = r.u32()?;
        if version != self.version {
            return Err(DecodeError::Version {
                what: self.what,
                found: version,
                supported: self.version,
            });
        }
        let flags = r.u32()?;
        let a = r.u64()?;
        let b = r.u64()?;
        let body_len = buf.len() - r.remaining();
        if r.array::<8>()? != Self::checksum(&buf[..body_len]) {
            return Err(r.invalid(
                "checksum",
                "does not match the record (torn or edited file)",
            ));
        }
        r.finish()?;
        if flags != 0 {
            return Err(DecodeError::Invalid {
                what: self.what,
                field: "flags",
                detail: format!("unknown flags {flags:#x}"),
            });
        }
        Ok((a, b))
    }
}

const FRAME: Frame = Frame {
    magic: MAGIC,
    version: VERSION,
    what: WHAT,
    not_this: "not a qsfs pool position file",
};

/// The version-1 record for `st`.
pub(crate) fn encode(st: &PoolState) -> Vec<u8> {
    FRAME.encode(st.position, st.pool_len)
}

/// Parses a record, rejecting anything not written by `encode`.
pub(crate) fn decode(buf: &[u8]) -> Result<PoolState, DecodeError> {
    let (position, pool_len) = FRAME.decode(buf)?;
    if position > pool_len {
        return Err(DecodeError::Invalid {
            what: WHAT,
            field: "position",
            detail: format!("position {position} lies beyond the recorded pool length {pool_len}"),
        });
    }
    Ok(PoolState { position, pool_len })
}

/// The record at `path`, or `None` when there is none yet.
pub(super) fn read(path: &Path) -> Result<Option<PoolState>, EntropyError> {
    let buf = match fs::read(path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(EntropyError::PoolIo {
                action: "read position file",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&buf)
        .map(Some)
        .map_err(|e| EntropyError::PoolStateCorrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// Durably replaces the record at `path` with `st` (temp file, fsync,
/// rename, directory fsync): once this returns, a crash cannot bring back
/// an older position.
pub(super) fn write(path: &Path, st: &PoolState) -> Result<(), EntropyError> {
    replace_durably(path, &encode(st))
}

/// Durably replaces the file at `path` with `bytes`: written to
/// `<path>.tmp`, fsynced, renamed over `path`, and the directory fsynced,
/// so after a crash the file holds either the old or the new bytes.
pub(super) fn replace_durably(path: &Path, bytes: &[u8]) -> Result<(), EntropyError> {
    let tmp = with_suffix(path, ".tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("rename into place at", path))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync the directory holding", path))
}

/// Maps an I/O error on `path` during `action` to [`EntropyError::PoolIo`].
pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EntropyError + 'a {
    move |source| EntropyError::PoolIo {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// File offset of the first aligned all-zero run in `bytes`, which start at
/// file offset `base`.
pub(super) fn first_zero_run(bytes: &[u8], base: u64) -> Option<u64> {
    let run = ZERO_RUN as u64;
    let mut off = base.div_ceil(run) * run;
    while off + run <= base + bytes.len() as u64 {
        let start = (off - base) as usize;
        if bytes[start..start + ZERO_RUN].iter().all(|&b| b == 0) {
            return Some(off);
        }
        off += run;
    }
    None
}

/// Where to resume when the position file is lost: just past the last
/// [`BLOCK`] that holds a zero run. Consumed blocks were zeroed before any
/// of their bytes left, so everything after that is unserved (bytes that
/// were reserved but not yet zeroed at a crash were never handed out).
pub(super) fn zeroed_prefix_end(file: &File, pool: &Path, len: u64) -> Result<u64, EntropyError> {
    const SCAN: usize = 1 << 20;
    let mut buf = vec![0u8; SCAN];
    let mut resume = 0;
    let mut at = 0;
    while at < len {
        let n = (len - at).min(SCAN as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(io_err("scan", pool))?;
        for (i, block) in buf[..n].chunks(BLOCK as usize).enumerate() {
            let block_at = at + i as u64 * BLOCK;
            if first_zero_run(block, block_at).is_some() {
                resume = block_at + block.len() as u64;
            }
        }
        at += n as u64;
    }
    Ok(resume)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 record (position 4096 of a 1 MiB pool) as written
    /// today; it must keep decoding, and encoding must not drift.
    const FROZEN_V1: &str =
        "51534653504f5300010000000000000000100000000000000000100000000000e026c6882cb0b1c7";

    #[test]
    fn frozen_v1_record_still_decodes() {
        let st = PoolState {
            position: 4096,
            pool_len: 1 << 20,
        };
        let enc = encode(&st);
        assert_eq!(enc.len(), RECORD_LEN);
        assert_eq!(hex::encode(&enc), FROZEN_V1);
        let frozen = hex::decode(FROZEN_V1).expect("hex");
        assert_eq!(decode(&frozen).expect("decode frozen"), st);
        assert_eq!(decode(&enc).expect("decode"), st);
    }

    #[test]
    fn damaged_records_are_rejected() {
        let enc = encode(&PoolState {
            position: 8192,
            pool_len: 8192,
        });
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(decode(&enc[..39]).is_err());
        let bad_pos = encode(&PoolState {
            position: 2,
            pool_len: 1,
        });
        assert!(matches!(
            decode(&bad_pos),
            Err(DecodeError::Invalid {
                field: "position",
                ..
            })
        ));
    }

    #[test]
    fn zero_runs_are_found_only_when_aligned() {
        let mut bytes = vec![1u8; 128];
        bytes[40..72].fill(0); // unaligned 32 zeros: not a run
        assert_eq!(first_zero_run(&bytes, 0), None);
        bytes[64..96].fill(0);
        assert_eq!(first_zero_run(&bytes, 0), Some(64));
        assert_eq!(first_zero_run(&bytes[8..], 8), Some(64));
    }
}
