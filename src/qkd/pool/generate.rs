//! Making a new pair of pool files (both ends of one link) from a random source.
//!
//! The two files hold identical records and differ only in the header's
//! end byte, the way the two ends of a QKD link hold the same key stream.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::error::{PoolError, io_err};
use super::format::{self, HEADER_LEN, Header, RECORD_LEN, SealKey};
use crate::qkd::{End, KEY_LEN, KeyId};

/// Keys drawn per random call and write.
const CHUNK: u64 = 4096;

/// What `generate` makes.
#[derive(Debug, Clone)]
pub struct GenOptions<'a> {
    /// The link's name (1 to 200 bytes), shown in every message.
    pub link: &'a str,
    /// Keys in the pair (both directions together; half each way).
    pub keys: u64,
    /// End A's file (the vault side).
    pub a_path: &'a Path,
    /// End B's file (the node side).
    pub b_path: &'a Path,
    /// True for a simulated link that qsfs may refill.
    pub refill: bool,
}

/// Fills `out` with `n` fresh records for indices `start..start + n`,
/// drawing ids and keys from `random`. Ids already in `seen` (or repeated
/// within the batch) are refused: only a broken random source repeats one.
pub(crate) fn make_records(
    start: u64,
    n: u64,
    random: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
    seen: &mut dyn FnMut(&KeyId) -> bool,
    out: &mut Zeroizing<Vec<u8>>,
) -> io::Result<()> {
    let n = usize::try_from(n).map_err(|_| io::Error::other("too many keys"))?;
    let mut raw = Zeroizing::new(vec![0u8; n * (16 + KEY_LEN)]);
    random(&mut raw)?;
    out.clear();
    out.resize(n * RECORD_LEN, 0);
    for i in 0..n {
        let r = &raw[i * (16 + KEY_LEN)..(i + 1) * (16 + KEY_LEN)];
        let mut idb = [0u8; 16];
        idb.copy_from_slice(&r[..16]);
        let id = format::uuid_v4(idb);
        if !seen(&id) {
            return Err(io::Error::other(format!(
                "the random source repeated key id {id}; it is not random"
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&r[16..]);
        format::encode_record(
            &mut out[i * RECORD_LEN..(i + 1) * RECORD_LEN],
            &id,
            &key,
            start + i as u64,
        );
    }
    Ok(())
}

/// Creates a file that must not exist yet, mode 0600.
fn create_new(path: &Path) -> Result<File, PoolError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                PoolError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                PoolError::Io {
                    path: path.to_path_buf(),
                    action: "create",
                    source,
                }
            }
        })
}

/// Writes the pair A and B: both files are new (never overwritten), mode
/// 0600, made durable (file and folder fsync) before this returns. On an
/// error, files this call created are removed.
pub fn generate(
    opts: &GenOptions<'_>,
    random: impl FnMut(&mut [u8]) -> io::Result<()>,
) -> Result<(), PoolError> {
    generate_sealed(opts, None, random)
}

/// [`generate`], with both files' key bytes sealed under `seal` when it is
/// given (a vault's in-process link: no key is ever written in clear).
pub fn generate_sealed(
    opts: &GenOptions<'_>,
    seal: Option<&SealKey>,
    mut random: impl FnMut(&mut [u8]) -> io::Result<()>,
) -> Result<(), PoolError> {
    if opts.keys < 2 {
        return Err(PoolError::Invalid {
            path: opts.a_path.to_path_buf(),
            detail: format!(
                "a link needs at least 2 keys (one per direction), not {}",
                opts.keys
            ),
        });
    }
    for p in [opts.a_path, opts.b_path] {
        if p.symlink_metadata().is_ok() {
            return Err(PoolError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    let mut link_id = [0u8; 16];
    random(&mut link_id).map_err(io_err(
        opts.a_path,
        "draw the link id from the random source",
    ))?;
    let header = |end| Header {
        end,
        refill: opts.refill,
        link_id,
        link: opts.link.to_owned(),
        capacity: opts.keys,
        count: opts.keys,
        sealed: seal.map(|k| k.check(&link_id)),
    };
    let ha = header(End::A).encode().map_err(|fault| PoolError::Header {
        path: opts.a_path.to_path_buf(),
        fault,
    })?;
    let hb = header(End::B).encode().map_err(|fault| PoolError::Header {
        path: opts.b_path.to_path_buf(),
        fault,
    })?;

    let a = create_new(opts.a_path)?;
    let b = match create_new(opts.b_path) {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(opts.a_path);
            return Err(e);
        }
    };
    let sealing = seal.map(|k| (k, link_id));
    let result = write_pair(opts, sealing, &mut random, (&a, &ha), (&b, &hb));
    if result.is_err() {
        let _ = std::fs::remove_file(opts.a_path);
        let _ = std::fs::remove_file(opts.b_path);
    }
    result
}

fn write_pair(
    opts: &GenOptions<'_>,
    seal: Option<(&SealKey, [u8; 16])>,
    random: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
    a: (&File, &[u8; HEADER_LEN]),
    b: (&File, &[u8; HEADER_LEN]),
) -> Result<(), PoolError> {
    let mut wa = io::BufWriter::with_capacity(1 << 20, a.0);
    let mut wb = io::BufWriter::with_capacity(1 << 20, b.0);
    wa.write_all(a.1).map_err(io_err(opts.a_path, "write"))?;
    wb.write_all(b.1).map_err(io_err(opts.b_path, "write"))?;
    let mut ids = HashSet::new();
    let mut buf = Zeroizing::new(Vec::new());
    let mut done = 0u64;
    while done < opts.keys {
        let n = CHUNK.min(opts.keys - done);
        make_records(done, n, random, &mut |id| ids.insert(*id), &mut buf)
            .map_err(io_err(opts.a_path, "draw keys from the random source"))?;
        if let Some((k, link_id)) = seal {
            k.apply_records(&link_id, &mut buf);
        }
        wa.write_all(&buf).map_err(io_err(opts.a_path, "write"))?;
        wb.write_all(&buf).map_err(io_err(opts.b_path, "write"))?;
        done += n;
    }
    wa.flush().map_err(io_err(opts.a_path, "write"))?;
    wb.flush().map_err(io_err(opts.b_path, "write"))?;
    drop((wa, wb));
    a.0.sync_all().map_err(io_err(opts.a_path, "fsync"))?;
    b.0.sync_all().map_err(io_err(opts.b_path, "fsync"))?;
    for p in [opts.a_path, opts.b_path] {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        crate::sys::fsync_dir(dir).map_err(io_err(p, "fsync the folder holding"))?;
    }
    Ok(())
}
