//! The write path's first half: seal plaintext into a new object whose
//! shards are written but not durable. Making it durable and naming it is
//! commit.rs's job.

use std::io::Read;

use zeroize::{Zeroize, Zeroizing};

use super::{Vault, VaultError};
use crate::ObjectId;
use crate::dispersal::{Dispersal, DispersalError, WrittenObject};
use crate::envelope::{self, BACKUP_LEN, KEY_LEN, SealKeys};
use crate::keystore::ShareBytes;

/// Files up to this size are sealed in memory in the calling thread.
const INLINE_MAX: u64 = 256 * 1024;

/// A sealed object whose shards are written but not yet committed.
pub struct SealedObject {
    pub(super) written: WrittenObject,
    pub(super) backup: [u8; BACKUP_LEN],
    pub(super) r1: ShareBytes,
    pub(super) r2: ShareBytes,
    /// `B` went to the nodes as key pieces; the client keeps only a marker.
    pub(super) dispersed: bool,
    plain_len: u64,
}

impl std::fmt::Debug for SealedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedObject")
            .field("id", &self.id())
            .field("plain_len", &self.plain_len)
            .finish()
    }
}

impl Drop for SealedObject {
    fn drop(&mut self) {
        self.r1.zeroize();
        self.r2.zeroize();
        // B holds R4: with R1 or R2 and the object's R3 it rebuilds R.
        self.backup.zeroize();
    }
}

impl SealedObject {
    /// The object id.
    pub fn id(&self) -> ObjectId {
        self.written.manifest.id
    }

    /// Plaintext bytes sealed.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// Shards that did not become durable (after commit).
    pub fn missing_shards(&self) -> u32 {
        self.written.manifest.missing
    }

    /// Per-node failures seen while writing.
    pub fn failures(&self) -> &crate::node::NodeFailures {
        Dispersal::failures(&self.written)
    }
}

impl Vault {
    /// Draws `K`, `R` and the share-polynomial seed from the random source.
    fn draw_keys(&self) -> Result<SealKeys, VaultError> {
        let mut buf = Zeroizing::new([0u8; 3 * KEY_LEN]);
        self.random()?.fill(&mut buf[..])?;
        let mut k = [0u8; KEY_LEN];
        let mut r = [0u8; KEY_LEN];
        let mut seed = [0u8; KEY_LEN];
        k.copy_from_slice(&buf[..KEY_LEN]);
        r.copy_from_slice(&buf[KEY_LEN..2 * KEY_LEN]);
        seed.copy_from_slice(&buf[2 * KEY_LEN..]);
        let keys = SealKeys::split(k, r, seed);
        k.zeroize();
        r.zeroize();
        seed.zeroize();
        Ok(keys)
    }

    /// Seals `len` bytes from `src` into a new object and writes its shards
    /// (not yet durable or visible). `what` names the file in errors.
    pub fn seal<R: Read + Send>(
        &self,
        src: R,
        len: u64,
        what: &str,
    ) -> Result<SealedObject, VaultError> {
        self.seal_object(src, len, what, false)
    }

    /// [`Vault::seal`] for a caller that waits for the commit (fsync): the
    /// intent log's sync starts at once and overlaps the shard writes,
    /// instead of being the first barrier of the commit. Seals nobody
    /// waits for leave it to the commit, one sync per group.
    pub fn seal_awaited<R: Read + Send>(
        &self,
        src: R,
        len: u64,
        what: &str,
    ) -> Result<SealedObject, VaultError> {
        self.seal_object(src, len, what, true)
    }

    fn seal_object<R: Read + Send>(
        &self,
        src: R,
        len: u64,
        what: &str,
        awaited: bool,
    ) -> Result<SealedObject, VaultError> {
        let fail = |source: VaultError| VaultError::Seal {
            path: what.to_string(),
            source: Box::new(source),
        };
        // Fail before drawing keys or writing shards if the shares could
        // not be stored anyway.
        self.keys.check_writable().map_err(|e| fail(e.into()))?;
        let keys = self.draw_keys().map_err(fail)?;
        let sealed_len = envelope::sealed_len(len);
        let id = ObjectId::random().map_err(|source| {
            fail(VaultError::Io {
                what: "draw an object id from the OS random source".into(),
                source,
            })
        })?;
        // Recorded before the first shard byte, so an interrupted run's
        // leftovers can be found and removed (intents.rs).
        self.intents.begin(id).map_err(|source| {
            fail(VaultError::Io {
                what: "write the intent log".into(),
                source,
            })
        })?;
        if awaited {
            self.intents.sync_soon();
        }
        let pieces = self.backup_pieces(&keys, len).map_err(fail)?;
        let written = if len <= INLINE_MAX {
            self.seal_inline(&keys, src, len, id, &pieces)
        } else {
            self.ec.write_object(id, sealed_len, len, &pieces, |w| {
                envelope::seal_stream(&keys, len, src, w, self.threads)
                    .map_err(|e| DispersalError::Source(std::io::Error::other(e)))
                    .map(|s| s.backup)
            })
        };
        let (backup, written) = match written {
            Ok(x) => x,
            Err(e) => {
                // Nothing but temporary shard files (already removed) exists.
                let _ = self.intents.done(&[id]);
                return Err(fail(e.into()));
            }
        };
        let mut r1 = [0u8; 33];
        let mut r2 = [0u8; 33];
        r1.copy_from_slice(keys.r1().as_bytes());
        r2.copy_from_slice(keys.r2().as_bytes());
        Ok(SealedObject {
            written,
            backup: backup.to_bytes(),
            r1,
            r2,
            dispersed: !pieces.is_empty(),
            plain_len: len,
        })
    }

    /// In a vault that keeps `B` on the nodes, its `n` key pieces (any `k`
    /// rebuild it); otherwise none.
    fn backup_pieces(
        &self,
        keys: &SealKeys,
        len: u64,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, VaultError> {
        if self.config.keystore.backup != super::config::BackupPlace::Nodes {
            return Ok(Vec::new());
        }
        let b = envelope::seal::backup_for(len, keys)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        self.random()?.fill(&mut seed[..])?;
        let k = u8::try_from(self.config.k).unwrap_or(u8::MAX);
        envelope::pieces::split(&Zeroizing::new(b.to_bytes())[..], k, self.config.n, *seed).map_err(
            |e| VaultError::Internal(format!("split the backup record into key pieces: {e}")),
        )
    }

    /// Seals a small source in memory, in the calling thread.
    fn seal_inline<R: Read>(
        &self,
        keys: &SealKeys,
        mut src: R,
        len: u64,
        id: ObjectId,
        pieces: &[Zeroizing<Vec<u8>>],
    ) -> Result<(envelope::Backup, WrittenObject), DispersalError> {
        let mut data = Zeroizing::new(Vec::with_capacity(len as usize));
        (&mut src)
            .take(len)
            .read_to_end(&mut data)
            .map_err(DispersalError::Source)?;
        if data.len() as u64 != len {
            return Err(DispersalError::Source(std::io::Error::other(format!(
                "source ended early at byte {} of {len}: it was truncated or changed while being read",
                data.len()
            ))));
        }
        let mut probe = [0u8; 1];
        if src.read(&mut probe).map_err(DispersalError::Source)? != 0 {
            return Err(DispersalError::Source(std::io::Error::other(format!(
                "source grew during seal: it has more than the {len} bytes announced; seal again"
            ))));
        }
        let (n, backup) = envelope::seal_bytes(&data, keys)
            .map_err(|e| DispersalError::Source(std::io::Error::other(e)))?;
        Ok((backup, self.ec.write_object_inline(id, &n, len, pieces)?))
    }
}
