//! The backup records `B` as the erasure-coding side stores them: sealed
//! under the keystore's current epoch, like R1 and R2; in clear in a
//! vault made before the sealed keystore (see `keystore::record`); or, in
//! a vault that keeps `B` off the client, a one-byte marker while `B`
//! itself is on the nodes as key pieces (`dispersal::keypieces`).

use zeroize::Zeroizing;

use super::{Vault, VaultError};
use crate::ObjectId;
use crate::dispersal::{CLEAR_BACKUP, DISPERSED_BACKUP, clear_backup};
use crate::keystore::{Kind, Opened, Writer};

/// A backup record as read back.
#[derive(Debug)]
pub(crate) enum StoredBackup {
    /// Its bytes.
    Present(Zeroizing<Vec<u8>>),
    /// No record.
    Missing,
    /// A record that does not open (damaged, its epoch shredded, or its
    /// key pieces out of reach).
    Damaged(String),
}

impl Vault {
    /// The stored form of `b`, the backup record of `id`.
    pub(crate) fn backup_form(
        &self,
        w: Option<&Writer<'_>>,
        id: &ObjectId,
        b: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        Ok(match w {
            Some(w) => w.seal(Kind::Backup, id, b)?,
            None => clear_backup(b),
        })
    }

    /// True if `B` of `id` is on the nodes as key pieces (reading it
    /// costs a round trip to each of them).
    pub(crate) fn backup_on_nodes(&self, id: &ObjectId) -> Result<bool, VaultError> {
        Ok(self.ec.store().backup(id)?.and_then(|v| v.first().copied()) == Some(DISPERSED_BACKUP))
    }

    /// The backup record of `id`, from the nodes if it is kept there.
    pub(crate) fn backup_of(&self, id: &ObjectId) -> Result<StoredBackup, VaultError> {
        let Some(v) = self.ec.store().backup(id)? else {
            return Ok(StoredBackup::Missing);
        };
        let v = Zeroizing::new(v);
        match v.first() {
            Some(&CLEAR_BACKUP) => {
                return Ok(StoredBackup::Present(Zeroizing::new(v[1..].to_vec())));
            }
            Some(&DISPERSED_BACKUP) => {
                let m = self.ec.manifest(id)?;
                return Ok(match self.ec.backup_from_nodes(&m) {
                    Ok(b) => StoredBackup::Present(b),
                    Err(e) => StoredBackup::Damaged(e.to_string()),
                });
            }
            _ => {}
        }
        let Some(epochs) = self.keys.epochs() else {
            return Ok(StoredBackup::Damaged("its format is unknown".into()));
        };
        Ok(match epochs.open_record(Kind::Backup, id, Some(&v)) {
            Opened::Payload(p) => StoredBackup::Present(p),
            Opened::Missing => StoredBackup::Missing,
            Opened::Shredded => StoredBackup::Damaged("its epoch key was destroyed".into()),
            Opened::Damaged => StoredBackup::Damaged("it does not open under its epoch key".into()),
        })
    }

    /// Writes a rebuilt backup record of `id` under the current epoch.
    /// Refused for a `B` kept on the nodes: its pieces are written with
    /// the shards, and `qsfs scrub --repair` restores a lost one.
    pub(crate) fn update_backup(&self, id: &ObjectId, b: &[u8]) -> Result<(), VaultError> {
        if self.backup_on_nodes(id)? {
            return Err(crate::dispersal::PiecesError {
                object: *id,
                detail:
                    "its pieces cannot be rewritten from the client (a shard's piece is rebuilt \
                         with the shard): run `qsfs scrub --repair`"
                        .into(),
            }
            .into());
        }
        let w = self.keys.writer()?;
        let stored = self.backup_form(w.as_ref(), id, b)?;
        self.ec.store().update_backup(id, &stored)?;
        Ok(())
    }
}

/// The key records of one object in clear, for `qsfs keys show`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyDump {
    /// The object.
    pub object: String,
    /// R1 (x then y) in hex, if it opens.
    pub r1: Option<String>,
    /// R2 in hex, if it opens.
    pub r2: Option<String>,
    /// B in hex, if it opens.
    pub b: Option<String>,
}

impl Vault {
    /// The key records of every object of the file at `path`, unwrapped
    /// (expert use: interoperability tests and hand recovery).
    pub fn key_dump(&self, path: &crate::namespace::VaultPath) -> Result<Vec<KeyDump>, VaultError> {
        let (_, inode) = self.ns.resolve(path)?;
        let mut ids: Vec<ObjectId> = inode.extents.iter().map(|x| x.object).collect();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let (s1, s2) = self.keys.get(&id)?;
            let b = match self.backup_of(&id)? {
                StoredBackup::Present(b) => Some(hex::encode(&b[..])),
                _ => None,
            };
            out.push(KeyDump {
                object: id.to_string(),
                r1: s1.bytes().map(hex::encode),
                r2: s2.bytes().map(hex::encode),
                b,
            });
        }
        Ok(out)
    }
}
