//! The vault's own record of how far it consumed a pool file, so a pool restored from a backup is refused.
//!
//! A pool file and its `.pos` sidecar restored together (from a backup, a
//! VM snapshot, a copied folder) are consistent with each other: the
//! sidecar's position and the zeroed prefix both point to bytes the vault
//! already used. Only the vault can tell. So the vault keeps, per pool, a
//! high-water mark in `<vault>/meta/random-pool/<id>.mark`, raised durably
//! (temp file, fsync, rename, directory fsync) after the sidecar advance
//! and before any reserved byte is handed out. A pool whose position
//! (recorded or recovered from its zeroed prefix) is behind the mark is
//! refused with [`EntropyError::PoolRestored`].
//!
//! The pool's identity `<id>` is the first 16 bytes (hex) of BLAKE3 over
//! the pool's length and its last [`TAIL`] bytes, read when the source is
//! opened. Why those: consumption zeroes the pool from the front, so the
//! tail is the last part to change (only when the final block is
//! reserved), while a restored copy has the very same length and tail. A
//! new pool file has a new tail, so it gets a new mark even at the same
//! path and size; a copy of the pool at another path is still the same
//! pool. The path is deliberately not part of it. The sidecar cannot hold
//! the identity: a restored pool without its sidecar must still be caught.
//!
//! Format, version 1 (40 bytes, little-endian):
//! ```text
//! [ magic      8 bytes  b"QSFSHWM\0"                                ]
//! [ version    u32      1                                           ]
//! [ flags      u32      0                                           ]
//! [ pool_len   u64      the pool's length (part of its identity)    ]
//! [ high_water u64      pool bytes [0, high_water) were consumed    ]
//! [ checksum   8 bytes  first 8 bytes of BLAKE3 over the 32 above   ]
//! ```
//! Each pool has its own file, updated only under the pool's lock, so two
//! processes never race on one mark.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::DecodeError;

use super::EntropyError;
use super::pool_state::{Frame, io_err, replace_durably};

const MAGIC: [u8; 8] = *b"QSFSHWM\0";
const VERSION: u32 = 1;
const WHAT: &str = "random pool high-water mark";

/// Bytes at the pool's end that, with its length, identify it.
pub(super) const TAIL: u64 = 64;

/// Where the marks live inside the vault folder.
pub const MARK_DIR: &str = "meta/random-pool";

/// The vault's mark for one pool.
#[derive(Debug, Clone)]
pub(super) struct HighWater {
    /// `<vault>/meta/random-pool/<id>.mark`.
    file: PathBuf,
    pool_len: u64,
}

const FRAME: Frame = Frame {
    magic: MAGIC,
    version: VERSION,
    what: WHAT,
    not_this: "not a qsfs high-water mark",
};

fn encode(pool_len: u64, high_water: u64) -> Vec<u8> {
    FRAME.encode(pool_len, high_water)
}

/// (pool_len, high_water) from a record written by `encode`.
fn decode(buf: &[u8]) -> Result<(u64, u64), DecodeError> {
    FRAME.decode(buf)
}

impl HighWater {
    /// The mark of the pool open as `file` (`len` bytes at `pool`) in the
    /// vault at `vault_dir`. Reads the pool's tail; writes nothing.
    pub(super) fn locate(
        vault_dir: &Path,
        file: &File,
        pool: &Path,
        len: u64,
    ) -> Result<Self, EntropyError> {
        let tail_len = len.min(TAIL);
        let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
        file.read_exact_at(&mut tail, len - tail_len)
            .map_err(io_err("read the end of", pool))?;
        let mut h = blake3::Hasher::new_derive_key("qsfs 2026 random pool identity v1");
        h.update(&len.to_le_bytes());
        h.update(&tail);
        let id = hex::encode(&h.finalize().as_bytes()[..16]);
        Ok(Self {
            file: vault_dir.join(MARK_DIR).join(format!("{id}.mark")),
            pool_len: len,
        })
    }

    /// The mark file.
    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.file
    }

    /// The recorded high-water mark; 0 when this vault never used the pool.
    pub(super) fn read(&self) -> Result<u64, EntropyError> {
        let buf = match fs::read(&self.file) {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(EntropyError::PoolIo {
                    action: "read the vault's high-water mark",
                    path: self.file.clone(),
                    source,
                });
            }
        };
        match decode(&buf) {
            Ok((pool_len, high_water)) if pool_len == self.pool_len => Ok(high_water),
            Ok((pool_len, _)) => Err(EntropyError::MarkCorrupt {
                path: self.file.clone(),
                detail: format!(
                    "it is for a pool of {pool_len} bytes, this pool has {}",
                    self.pool_len
                ),
            }),
            Err(e) => Err(EntropyError::MarkCorrupt {
                path: self.file.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// Refuses a pool whose `position` is behind the mark: its bytes from
    /// `position` on were already used by this vault.
    pub(super) fn check(
        &self,
        pool: &Path,
        state_path: &Path,
        position: u64,
    ) -> Result<(), EntropyError> {
        let mark = self.read()?;
        if position < mark {
            return Err(EntropyError::PoolRestored {
                path: pool.to_path_buf(),
                state_path: state_path.to_path_buf(),
                position,
                mark,
                mark_path: self.file.clone(),
            });
        }
        Ok(())
    }

    /// Durably raises the mark to `end` (never lowers it). Called under the
    /// pool's lock, after the sidecar advance and before bytes leave.
    pub(super) fn advance(&self, end: u64) -> Result<(), EntropyError> {
        if self.read()? >= end {
            return Ok(());
        }
        if let Some(dir) = self.file.parent() {
            fs::create_dir_all(dir).map_err(io_err("create the folder of", &self.file))?;
        }
        replace_durably(&self.file, &encode(self.pool_len, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        let enc = encode(1 << 20, 8192);
        assert_eq!(enc.len(), 40);
        assert_eq!(decode(&enc).expect("decode"), (1 << 20, 8192));
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn marks_only_rise_and_catch_a_lagging_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = dir.path().join("pool.bin");
        let mut bytes = vec![0u8; 10_000];
        getrandom::fill(&mut bytes).expect("os rng");
        fs::write(&pool, &bytes).expect("write");
        let f = File::open(&pool).expect("open");
        let hw = HighWater::locate(dir.path(), &f, &pool, 10_000).expect("locate");
        assert_eq!(hw.read().expect("read"), 0);
        hw.check(&pool, Path::new("p.pos"), 0).expect("fresh");
        hw.advance(8192).expect("advance");
        hw.advance(4096).expect("no lowering");
        assert_eq!(hw.read().expect("read"), 8192);
        hw.check(&pool, Path::new("p.pos"), 8192)
            .expect("at the mark");
        let err = hw
            .check(&pool, Path::new("p.pos"), 4096)
            .expect_err("behind the mark");
        assert!(matches!(
            err,
            EntropyError::PoolRestored {
                position: 4096,
                mark: 8192,
                ..
            }
        ));
        // Another pool of the same length has another mark.
        bytes[9_999] ^= 1;
        fs::write(&pool, &bytes).expect("write");
        let other = HighWater::locate(dir.path(), &f, &pool, 10_000).expect("locate");
        assert_ne!(other.path(), hw.path());
        assert_eq!(other.read().expect("read"), 0);
    }
}
