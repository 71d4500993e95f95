//! Changing how a vault unlocks: adding and removing methods, moving a
//! vault off a key kept in clear, and sealing the keystore of a vault made
//! before the sealed keystore.

use std::sync::Arc;

use super::{Vault, VaultError};
use crate::keystore::Epochs;
use crate::unlock::{self, NewMethod, VaultKey};

/// What [`Vault::add_unlock`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedUnlock {
    /// The new method's name.
    pub name: String,
    /// Methods `none` it replaced; the vault then moved to a new key and
    /// every key record to new epoch keys.
    pub replaced: Vec<String>,
    /// Whether the keystore was in clear (an older vault) and is now sealed.
    pub sealed_now: bool,
    /// Key records sealed by that.
    pub records_sealed: u64,
}

impl Vault {
    pub(crate) fn vault_key(&self) -> Option<VaultKey> {
        self.key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The seal key for this vault's link pools (see `links::seal_for`).
    pub(crate) fn link_seal(&self) -> Option<crate::qkd::pool::SealKey> {
        super::links::seal_for(&self.root, &self.config.vault_id, self.vault_key().as_ref())
    }

    /// The vault's unlock methods.
    pub fn unlock_methods(&self) -> Result<Vec<unlock::MethodInfo>, VaultError> {
        Ok(unlock::list(&self.root, &self.config.vault_id)?)
    }

    /// Adds an unlock method. On a vault unlocked by `none`, the vault key
    /// was in clear: the vault moves to a new key under the new method
    /// alone, and a shred pass re-seals every key record under new epoch
    /// keys. On a vault from before unlock methods, the keystore is sealed.
    pub fn add_unlock(
        &self,
        method: &NewMethod,
        name: Option<&str>,
    ) -> Result<AddedUnlock, VaultError> {
        let id = self.config.vault_id.clone();
        let Some(key) = self.vault_key() else {
            return self.seal_keystore(method);
        };
        let clear = unlock::has_clear_key(&self.root, &id)?;
        if matches!(method, NewMethod::None) {
            if !clear {
                return Err(VaultError::Config {
                    file: self.root.join(unlock::UNLOCK_FILE),
                    detail: "refusing to add `none`: a vault key in clear beside other methods would make them pointless".into(),
                });
            }
            return Ok(AddedUnlock::default());
        }
        if !clear {
            let a = unlock::add(&self.root, &id, &key, method, name)?;
            return Ok(AddedUnlock {
                name: a.name,
                ..Default::default()
            });
        }
        // The old key was in clear: everything it reached is exposed.
        // Every epoch is counted for shredding first (durably), then the
        // table moves to a new key between its two slot writes, with the
        // new method written in between; the pass re-seals and destroys.
        let epochs = self
            .keys
            .epochs()
            .cloned()
            .ok_or_else(|| VaultError::Internal("a vault with a key has no epochs".into()))?;
        self.keys.mark_all_epochs()?;
        let fresh = VaultKey::generate()?;
        let mut added = None;
        epochs.rekey(&fresh, || {
            added = Some(
                unlock::replace(&self.root, &id, &fresh, method, name).map_err(|e| {
                    crate::keystore::KeystoreError::Io {
                        what: "write the new unlock method".into(),
                        source: std::io::Error::other(e.to_string()),
                    }
                })?,
            );
            Ok(())
        })?;
        *self
            .key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fresh);
        let a = added.ok_or_else(|| VaultError::Internal("rekey did not switch".into()))?;
        self.shred()?;
        Ok(AddedUnlock {
            name: a.name,
            replaced: a.replaced_none,
            ..Default::default()
        })
    }

    /// Removes the unlock method `name` (never the last).
    pub fn remove_unlock(&self, name: &str) -> Result<(), VaultError> {
        Ok(unlock::remove(&self.root, &self.config.vault_id, name)?)
    }

    /// Seals the keystore of a vault made before unlock methods: a new
    /// vault key and epoch table, the method, then every clear record
    /// counted and re-sealed by a shred pass. The clear copies sled's logs
    /// still hold go when the stores are rebuilt
    /// ([`Vault::rebuild_key_stores`], once the vault is closed).
    fn seal_keystore(&self, method: &NewMethod) -> Result<AddedUnlock, VaultError> {
        let id = self.config.vault_id.clone();
        self.keys.check_writable()?;
        let key = VaultKey::generate()?;
        let epochs = Arc::new(Epochs::create(&self.root.join("meta"), &id, &key)?);
        self.keys.start_sealing(Arc::clone(&epochs));
        // Counted before the method is written: from then on the vault is
        // sealed, and an interrupted run is finished by any later pass.
        let clear_b = self
            .ec
            .store()
            .backups()
            .filter(|r| {
                r.as_ref()
                    .is_ok_and(|(_, v)| v.first() == Some(&crate::dispersal::CLEAR_BACKUP))
            })
            .count() as u64;
        self.keys.mark_clear_records(clear_b)?;
        let name = unlock::create(&self.root, &id, &key, method)?;
        *self
            .key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key);
        let report = self.shred()?;
        Ok(AddedUnlock {
            name,
            sealed_now: true,
            records_sealed: report.records_resealed,
            ..Default::default()
        })
    }

    /// Closes the vault and rebuilds its key-bearing stores (R1, R2, B)
    /// into fresh folders, so no clear copy an older format left in their
    /// logs survives; the vault stays locked throughout.
    pub fn rebuild_key_stores(self) -> Result<(), VaultError> {
        let folders = {
            let mut f: Vec<(std::path::PathBuf, &'static str)> = self
                .keys
                .folders()
                .into_iter()
                .map(|p| (p, "keystore"))
                .collect();
            f.push((
                self.ec.store().folder().to_path_buf(),
                "manifest and backup-record",
            ));
            f
        };
        let Vault {
            keys,
            ec,
            ns,
            links,
            _lock,
            ..
        } = self;
        drop(keys);
        drop(ec);
        drop(links);
        drop(ns);
        for (p, role) in folders {
            crate::store::rebuild(&p, role)?;
        }
        drop(_lock);
        Ok(())
    }
}
