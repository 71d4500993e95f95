//! The write path: seal plaintext into a new object, then commit a group
//! of objects in the durability order (shards -> keystore -> manifest and
//! `B`). Naming the object in the namespace is the caller's last step.

use std::io::Read;
use std::sync::Arc;

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
    written: WrittenObject,
    backup: [u8; BACKUP_LEN],
    r1: ShareBytes,
    r2: ShareBytes,
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
        let written = if len <= INLINE_MAX {
            self.seal_inline(&keys, src, len, id)
        } else {
            self.ec.write_object(id, sealed_len, len, |w| {
                envelope::seal_stream(&keys, len, src, w, self.threads)
                    .map_err(|e| DispersalError::Source(std::io::Error::other(e.to_string())))
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
            plain_len: len,
        })
    }

    /// Seals a small source in memory, in the calling thread.
    fn seal_inline<R: Read>(
        &self,
        keys: &SealKeys,
        mut src: R,
        len: u64,
        id: ObjectId,
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
            .map_err(|e| DispersalError::Source(std::io::Error::other(e.to_string())))?;
        Ok((backup, self.ec.write_object_inline(id, &n, len)?))
    }

    /// Commits a group of sealed objects with one barrier per step: their
    /// shards (one commit per node), then their shares (one keystore
    /// flush), then their manifests and backup records (one flush). Returns
    /// one result per object; a failed object leaves nothing behind that a
    /// name could point at.
    pub fn commit(&self, objs: &mut [SealedObject]) -> Vec<Result<(), VaultError>> {
        // Every shard about to become durable has its intent durable first.
        if let Err(source) = self.intents.sync() {
            let e = Arc::new(VaultError::Io {
                what: "sync the intent log".into(),
                source,
            });
            return objs
                .iter()
                .map(|_| Err(VaultError::Commit(Arc::clone(&e))))
                .collect();
        }
        let mut written: Vec<&mut WrittenObject> =
            objs.iter_mut().map(|o| &mut o.written).collect();
        let synced = self.ec.sync(&mut written);
        let mut results: Vec<Result<(), VaultError>> = synced
            .into_iter()
            .map(|r| r.map_err(VaultError::from))
            .collect();
        let failed: Vec<ObjectId> = (0..objs.len())
            .filter(|i| results[*i].is_err())
            .map(|i| objs[i].id())
            .collect();
        self.settle_failed(&failed);
        let ok: Vec<usize> = (0..objs.len()).filter(|i| results[*i].is_ok()).collect();
        if ok.is_empty() {
            return results;
        }
        let shares: Vec<(ObjectId, ShareBytes, ShareBytes)> = ok
            .iter()
            .map(|i| (objs[*i].id(), objs[*i].r1, objs[*i].r2))
            .collect();
        let step = self
            .keys
            .put_many(&shares)
            .map_err(VaultError::from)
            .and_then(|_| {
                let items: Vec<(&crate::dispersal::Manifest, &[u8])> = ok
                    .iter()
                    .map(|i| (&objs[*i].written.manifest, &objs[*i].backup[..]))
                    .collect();
                self.ec.publish(&items).map_err(VaultError::from)
            });
        if let Err(e) = step {
            let e = Arc::new(e);
            for i in &ok {
                results[*i] = Err(VaultError::Commit(Arc::clone(&e)));
            }
            let ids: Vec<ObjectId> = ok.iter().map(|i| objs[*i].id()).collect();
            self.settle_failed(&ids);
            return results;
        }
        for i in &ok {
            let o = &objs[*i];
            let m = &o.written.manifest;
            if o.missing_shards() == 0 {
                continue;
            }
            // Per node that missed the write: in full the first time,
            // then summarised (a node that is down fails every write).
            for (idx, node) in m.placement.iter().enumerate() {
                if !m.is_missing(idx) {
                    continue;
                }
                self.warnings().warn(
                    node,
                    crate::logsum::Cause::WriteFailed,
                    crate::logsum::item(&o.id(), None),
                    || {
                        format!(
                            "object {}: written with {} of {} shards; the missing ones are recorded as repair debt (see `qsfs status`): {}",
                            o.id(),
                            m.present(),
                            m.layout.n,
                            o.failures()
                        )
                    },
                );
            }
        }
        results
    }

    /// Destroys objects whose write failed (whatever of them became
    /// durable) and settles their intents; if that fails too, the intents
    /// stay open and the next open's sweep finishes the job.
    pub(crate) fn settle_failed(&self, ids: &[ObjectId]) {
        if ids.is_empty() {
            return;
        }
        match self.destroy_objects(ids) {
            Ok(()) => {
                let _ = self.intents.done(ids);
            }
            Err(e) => tracing::warn!(
                "could not clean up after a failed write ({e}); the next qsfs command retries"
            ),
        }
    }

    /// Settles the intents of objects now named durably.
    pub(crate) fn settle_named(&self, ids: &[ObjectId]) {
        if let Err(e) = self.intents.done(ids) {
            tracing::warn!(
                "cannot update the intent log {} ({e})",
                self.intents.path().display()
            );
        }
    }
}
