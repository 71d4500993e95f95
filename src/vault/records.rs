//! The backup records `B` as the erasure-coding side stores them: sealed
//! under the keystore's current epoch, like R1 and R2, or in clear in a
//! vault made before the sealed keystore (see `keystore::record`).

use zeroize::Zeroizing;

use super::{Vault, VaultError};
use crate::ObjectId;
use crate::dispersal::{CLEAR_BACKUP, clear_backup};
use crate::keystore::{Kind, Opened, Writer};

/// A backup record as read back.
#[derive(Debug)]
pub(crate) enum StoredBackup {
    /// Its bytes.
    Present(Zeroizing<Vec<u8>>),
    /// No record.
    Missing,
    /// A record that does not open (damaged, or its epoch shredded).
    Damaged(&'static str),
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

    /// The backup record of `id`.
    pub(crate) fn backup_of(&self, id: &ObjectId) -> Result<StoredBackup, VaultError> {
        let Some(v) = self.ec.store().backup(id)? else {
            return Ok(StoredBackup::Missing);
        };
        let v = Zeroizing::new(v);
        if v.first() == Some(&CLEAR_BACKUP) {
            return Ok(StoredBackup::Present(Zeroizing::new(v[1..].to_vec())));
        }
        let Some(epochs) = self.keys.epochs() else {
            return Ok(StoredBackup::Damaged("its format is unknown"));
        };
        Ok(match epochs.open_record(Kind::Backup, id, Some(&v)) {
            Opened::Payload(p) => StoredBackup::Present(p),
            Opened::Missing => StoredBackup::Missing,
            Opened::Shredded => StoredBackup::Damaged("its epoch key was destroyed"),
            Opened::Damaged => StoredBackup::Damaged("it does not open under its epoch key"),
        })
    }

    /// Writes a rebuilt backup record of `id` under the current epoch.
    pub(crate) fn update_backup(&self, id: &ObjectId, b: &[u8]) -> Result<(), VaultError> {
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
