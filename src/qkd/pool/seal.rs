//! Sealing a clear pool file in place, crash-safely, leaving no clear key on disk.
//!
//! A vault made before pools were sealed, or one that just gained its
//! first unlock method, holds its link pools in clear. [`seal_file`]
//! rewrites one under a seal key:
//!
//! 1. a sealed copy is written to `FILE.sealing` and synced;
//! 2. the clear file gets a second name, `FILE.clear` (a hard link);
//! 3. `FILE.sealing` is renamed over `FILE` and the folder synced: from
//!    here on `FILE` is sealed;
//! 4. `FILE.clear` is overwritten with zeros, synced and removed.
//!
//! A crash anywhere leaves either the clear pool or the sealed one under
//! `FILE`, never a mix, and [`finish_sealing`] (run before every seal and
//! by the vault at open) removes what is left: `FILE.sealing` is dropped
//! (it only ever holds sealed bytes), and `FILE.clear` is zeroed when
//! `FILE` is already sealed, or only unlinked when it is still the clear
//! pool's second name. The pool's flock is held throughout, so no link can
//! draw a key from the file being replaced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::error::{PoolError, io_err};
use super::file::{open_locked, read_header};
use super::format::{self, HEADER_LEN, SealKey};

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Overwrites a file with zeros, syncs it and removes it.
fn wipe(path: &Path) -> Result<(), PoolError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for wiping"))?;
    let len = f.metadata().map_err(io_err(path, "stat"))?.len();
    let zeros = vec![0u8; 1 << 16];
    let mut w = std::io::BufWriter::new(&f);
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])
            .map_err(io_err(path, "overwrite"))?;
        left -= n as u64;
    }
    w.flush().map_err(io_err(path, "overwrite"))?;
    drop(w);
    f.sync_data().map_err(io_err(path, "fdatasync"))?;
    std::fs::remove_file(path).map_err(io_err(path, "remove"))?;
    crate::sys::fsync_dir(parent(path)).map_err(io_err(path, "fsync the folder holding"))
}

/// True when the pool at `path` is sealed (false for a clear or missing one).
fn is_sealed(path: &Path) -> Result<bool, PoolError> {
    match File::open(path) {
        Ok(f) => Ok(read_header(&f, path)?.0.sealed.is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, "open")(e)),
    }
}

/// Removes what an interrupted [`seal_file`] of `path` left (see the module
/// doc). A no-op when nothing is left.
pub fn finish_sealing(path: &Path) -> Result<(), PoolError> {
    let sealing = sibling(path, ".sealing");
    if sealing.symlink_metadata().is_ok() {
        std::fs::remove_file(&sealing).map_err(io_err(&sealing, "remove"))?;
    }
    let clear = sibling(path, ".clear");
    let Ok(old) = clear.symlink_metadata() else {
        return Ok(());
    };
    let same_file = path
        .metadata()
        .is_ok_and(|m| m.ino() == old.ino() && m.dev() == old.dev());
    if !same_file && is_sealed(path)? {
        wipe(&clear)
    } else {
        std::fs::remove_file(&clear).map_err(io_err(&clear, "remove"))
    }
}

/// The bytes of the clear pool `file` sealed under `key`; `None` when it
/// is sealed already.
fn sealed_bytes(
    file: &File,
    path: &Path,
    key: &SealKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, PoolError> {
    let (mut header, _) = read_header(file, path)?;
    if header.sealed.is_some() {
        return Ok(None);
    }
    let end =
        usize::try_from(format::record_offset(header.count)).map_err(|_| PoolError::Invalid {
            path: path.to_path_buf(),
            detail: "too large to seal".into(),
        })?;
    let mut bytes = Zeroizing::new(vec![0u8; end]);
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut bytes[..], 0)
            .map_err(io_err(path, "read"))?;
    }
    header.sealed = Some(key.check(&header.link_id));
    let h = header.encode().map_err(|fault| PoolError::Header {
        path: path.to_path_buf(),
        fault,
    })?;
    bytes[..HEADER_LEN].copy_from_slice(&h);
    key.apply_records(&header.link_id, &mut bytes[HEADER_LEN..]);
    Ok(Some(bytes))
}

/// Writes `bytes` to the new file `path` (mode 0600) and syncs it; removes
/// it again on a failure.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PoolError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                PoolError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path, "create")(source)
            }
        })?;
    let written = out
        .write_all(bytes)
        .and_then(|()| out.sync_all())
        .map_err(io_err(path, "write"));
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Writes a sealed copy of the clear pool `src` to the new file `dst`
/// (the clear file is left as it is: its owner removes it). Refuses a
/// pool that is sealed already or in use.
pub fn seal_copy(src: &Path, dst: &Path, key: &SealKey) -> Result<(), PoolError> {
    let file = open_locked(src)?;
    let bytes = sealed_bytes(&file, src, key)?.ok_or_else(|| PoolError::Sealed {
        path: src.to_path_buf(),
    })?;
    write_new(dst, &bytes)?;
    crate::sys::fsync_dir(parent(dst)).map_err(io_err(dst, "fsync the folder holding"))
}

/// Seals the clear pool at `path` under `key` (see the module doc).
/// Returns false, changing nothing, when it is already sealed (under any
/// key: opening tells whether it is this one).
pub fn seal_file(path: &Path, key: &SealKey) -> Result<bool, PoolError> {
    finish_sealing(path)?;
    let file = open_locked(path)?;
    let Some(bytes) = sealed_bytes(&file, path, key)? else {
        return Ok(false);
    };
    let sealing = sibling(path, ".sealing");
    write_new(&sealing, &bytes)?;
    let clear = sibling(path, ".clear");
    std::fs::hard_link(path, &clear).map_err(io_err(&clear, "link the clear pool as"))?;
    std::fs::rename(&sealing, path).map_err(io_err(path, "replace with its sealed copy"))?;
    crate::sys::fsync_dir(parent(path)).map_err(io_err(path, "fsync the folder holding"))?;
    // `file` (and its lock) now belongs to the clear copy; wipe it.
    drop(file);
    wipe(&clear)?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::qkd::pool::{GenOptions, PoolFile, generate, os_random};
    use crate::qkd::{Direction, KeySource};

    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let (a, b) = (dir.join("l.a.pool"), dir.join("l.b.pool"));
        generate(
            &GenOptions {
                link: "l",
                keys: 64,
                a_path: &a,
                b_path: &b,
                refill: true,
            },
            os_random,
        )
        .unwrap();
        (a, b)
    }

    /// Every unused key of a clear pool, in record order (test helper:
    /// reads the raw file).
    fn clear_keys(path: &Path) -> Vec<[u8; 32]> {
        let raw = std::fs::read(path).unwrap();
        raw[HEADER_LEN..]
            .chunks_exact(format::RECORD_LEN)
            .filter(|r| r[format::STATE_AT] == format::STATE_UNUSED)
            .map(|r| r[format::KEY_AT..format::KEY_AT + 32].try_into().unwrap())
            .collect()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn sealing_keeps_every_key_and_leaves_none_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = pair(dir.path());
        // One key used before sealing: it stays used.
        let first = PoolFile::open(&a)
            .unwrap()
            .next_key(Direction::AToB)
            .unwrap();
        let keys = clear_keys(&b);
        let key = SealKey::new([3; 32]);
        assert!(seal_file(&a, &key).unwrap());
        assert!(seal_file(&b, &key).unwrap());
        assert!(!seal_file(&a, &key).unwrap(), "already sealed");
        for p in [&a, &b] {
            let raw = std::fs::read(p).unwrap();
            for k in &keys {
                assert!(!contains(&raw, k), "a clear key is left in {}", p.display());
            }
            assert!(matches!(PoolFile::open(p), Err(PoolError::Sealed { .. })));
            assert!(matches!(
                PoolFile::open_sealed(p, &SealKey::new([4; 32])),
                Err(PoolError::WrongSeal { .. })
            ));
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "leftovers: {names:?}");
        // The two ends still agree, key for key, and the used key stays used.
        let pa = PoolFile::open_sealed(&a, &key).unwrap();
        let pb = PoolFile::open_sealed(&b, &key).unwrap();
        assert!(pa.is_sealed());
        let k = pa.next_key(Direction::AToB).unwrap();
        assert_ne!(k.id, first.id);
        assert_eq!(*pb.take_key(Direction::AToB, &k.id).unwrap().key, *k.key);
        assert!(keys.contains(&*k.key), "the key is one the clear pool held");
        // A's key drawn before sealing is still B's to receive, unsealed.
        assert_eq!(
            *pb.take_key(Direction::AToB, &first.id).unwrap().key,
            *first.key
        );
        assert!(
            pa.take_key(Direction::AToB, &first.id).is_err(),
            "A sends, never takes A->B"
        );
        // A refill of a sealed pair writes sealed keys the ends agree on.
        let before = pa.status().total();
        crate::qkd::pool::refill_pair(&pa, &pb, 10, &mut os_random).unwrap();
        assert_eq!(pa.status().total(), before + 10);
        let b2 = pb.next_key(Direction::BToA).unwrap();
        assert_eq!(*pa.take_key(Direction::BToA, &b2.id).unwrap().key, *b2.key);
    }

    #[test]
    fn a_sealing_cut_short_leaves_the_pool_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _b) = pair(dir.path());
        let keys = clear_keys(&a);
        let key = SealKey::new([3; 32]);
        // Crash after step 2: a half-written copy and the second name.
        std::fs::write(sibling(&a, ".sealing"), b"partial").unwrap();
        std::fs::hard_link(&a, sibling(&a, ".clear")).unwrap();
        finish_sealing(&a).unwrap();
        assert!(!sibling(&a, ".clear").exists() && !sibling(&a, ".sealing").exists());
        assert_eq!(clear_keys(&a), keys, "the clear pool is untouched");
        // Crash after step 3: the clear copy is wiped, the sealed one kept.
        let copy = std::fs::read(&a).unwrap();
        assert!(seal_file(&a, &key).unwrap());
        std::fs::write(sibling(&a, ".clear"), &copy).unwrap();
        finish_sealing(&a).unwrap();
        assert!(!sibling(&a, ".clear").exists());
        assert!(PoolFile::open_sealed(&a, &key).unwrap().is_sealed());
    }
}
