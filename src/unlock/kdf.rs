//! Key-encryption keys from what a user holds: a passphrase (Argon2id) or
//! a key file (BLAKE3).

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{MethodFailure, UnlockError};

/// Argon2id parameters, stored with the method so a vault keeps opening
/// when the defaults change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub lanes: u32,
}

/// Memory every calibrated passphrase uses: 64 MiB, the first choice of
/// RFC 9106 for memory-constrained uses.
const MEMORY_KIB: u32 = 64 * 1024;
/// What one unlock should cost on the machine that made the vault. A
/// mount must take under 1 s with the passphrase; this leaves room for a
/// slower machine later.
const TARGET: Duration = Duration::from_millis(400);

/// Parameters that take about [`TARGET`] here (at least 2 iterations).
pub fn calibrate() -> Argon2Params {
    let mut p = Argon2Params {
        memory_kib: MEMORY_KIB,
        iterations: 1,
        lanes: 1,
    };
    let start = Instant::now();
    let _ = passphrase_kek("calibration", &[0u8; 16], &p);
    let one = start.elapsed().max(Duration::from_millis(1));
    let fit = (TARGET.as_secs_f64() / one.as_secs_f64()).floor() as u32;
    p.iterations = fit.clamp(2, 20);
    p
}

/// The key-encryption key of `phrase`.
pub(super) fn passphrase_kek(
    phrase: &str,
    salt: &[u8],
    p: &Argon2Params,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.lanes, Some(32))
        .map_err(|e| format!("bad Argon2 parameters ({e})"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(phrase.as_bytes(), salt, &mut out[..])
        .map_err(|e| format!("Argon2 failed ({e})"))?;
    Ok(out)
}

/// Largest key file read: any file works as a key file, but a huge one
/// is a mistake (a disk image given by accident).
const MAX_KEY_FILE: u64 = 1 << 20;
const KEY_FILE_CONTEXT: &str = "qsfs 2026-12 key file KEK v1";

/// The key-encryption key of the key file at `path`.
pub(super) fn key_file_kek(path: &Path) -> Result<Zeroizing<[u8; 32]>, MethodFailure> {
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MethodFailure::KeyFileMissing(path.into()),
        _ => MethodFailure::KeyFileUnreadable(path.into(), e.to_string()),
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| MethodFailure::KeyFileUnreadable(path.into(), e.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(MethodFailure::KeyFileUnreadable(
            path.into(),
            "larger than 1 MiB: not a key file".into(),
        ));
    }
    if bytes.len() < 16 {
        return Err(MethodFailure::KeyFileUnreadable(
            path.into(),
            "shorter than 16 bytes: too little to be a key".into(),
        ));
    }
    Ok(Zeroizing::new(blake3::derive_key(KEY_FILE_CONTEXT, &bytes)))
}

/// Makes a new key file at `path` (32 random bytes as hex, mode 0600, its
/// folder 0700 if new) unless one is there, which is then used as it is.
pub(super) fn ensure_key_file(path: &Path) -> Result<(), UnlockError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        // An existing file is used as it is, so it must be a secret: the
        // owner's alone, and long enough to hold a key.
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_file() {
            return Err(UnlockError::KeyFile {
                path: path.into(),
                detail: "exists and is not a regular file; give a new path for the key file".into(),
            });
        }
        if mode & 0o077 != 0 {
            return Err(UnlockError::KeyFile {
                path: path.into(),
                detail: format!(
                    "exists and others can read it (mode {mode:04o}); a key file must be the owner's alone: `chmod 600 {}`, or give a new path and qsfs makes one",
                    path.display()
                ),
            });
        }
        if meta.len() < 32 {
            return Err(UnlockError::KeyFile {
                path: path.into(),
                detail: format!(
                    "exists but holds only {} bytes; a key file needs at least 32 random bytes (give a new path and qsfs makes one)",
                    meta.len()
                ),
            });
        }
        return Ok(());
    }
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| UnlockError::Io { what, source }
    };
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        crate::perms::create_private_dir_all(parent).map_err(io("create the folder of"))?;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut key[..]).map_err(|e| UnlockError::Random(e.to_string()))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(&key[..])));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create"))?;
    f.write_all(text.as_bytes()).map_err(io("write"))?;
    f.sync_all().map_err(io("sync"))?;
    if let Some(parent) = path.parent() {
        crate::sys::fsync_dir(parent).map_err(io("sync the folder of"))?;
    }
    Ok(())
}
