//! `qsfs keys verify|repair`: every object's shares checked against its
//! backup record `B`, and damaged or lost pieces rebuilt.
//!
//! A lost or corrupt `R1` (or `R2`) is regenerated from the other share,
//! `R3` (inside the object) and `R4` (inside `B`): three points fix the
//! share polynomial, and the rebuilt share must pass its MAC in `B` before
//! it is written back. A lost or corrupt `B` is rebuilt from `R1`, `R2` and
//! `R3`, after the whole object verified (`M`) under the recovered key.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ObjectId;
use crate::dispersal::{DispersalError, Manifest, ReadReport};
use crate::envelope::{self, Backup, LocalShares, Share};
use crate::keystore::Stored;
use crate::namespace::{Kind, ROOT, VaultPath};
use crate::vault::{StoredBackup, Vault, VaultError};

/// One problem with an object's key material, or with the records that
/// key material is useless without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyIssue {
    /// R1 has no record.
    R1Missing,
    /// R1's record is unreadable or fails M14.
    R1Corrupt,
    /// R2 has no record.
    R2Missing,
    /// R2's record is unreadable or fails M24.
    R2Corrupt,
    /// No backup record.
    BackupMissing,
    /// The backup record is unreadable or verifies with neither share.
    BackupCorrupt,
    /// A file points at the object but it has no manifest: without the
    /// stripe layout and chunk hashes its shards cannot be read, and key
    /// material cannot bring it back (restore `meta/ec` from a backup).
    ManifestMissing,
    /// The object's manifest record cannot be decoded.
    ManifestDamaged,
}

/// Key state of one object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectKeyState {
    /// Object id (hex).
    pub object: String,
    /// Vault path of the file holding it, if any.
    pub path: Option<String>,
    /// What is wrong.
    pub issues: Vec<KeyIssue>,
    /// After `repair`: healed.
    pub repaired: bool,
    /// Why it could not be healed.
    pub error: Option<String>,
}

/// Result of verify or repair.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyReport {
    /// Objects checked.
    pub checked: u64,
    /// Objects with problems.
    pub problems: Vec<ObjectKeyState>,
    /// Share records of objects that no longer exist (left by a crash).
    pub stray_shares: Vec<String>,
    /// Backup records of objects that no longer exist (left by a crash).
    #[serde(default)]
    pub stray_backups: Vec<String>,
}

/// What `qsfs keys verify|repair` asks for (the control socket's `keys`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct KeysOptions {
    /// Rebuild what can be rebuilt (`keys repair`), not only check.
    pub repair: bool,
}

impl KeyReport {
    /// True when nothing is wrong (or everything was healed).
    pub fn healthy(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }
}

impl Vault {
    /// Maps every object to the vault path that uses it.
    pub fn object_paths(&self) -> Result<HashMap<ObjectId, String>, VaultError> {
        let mut out = HashMap::new();
        let mut stack = vec![(ROOT, VaultPath::root())];
        while let Some((ino, path)) = stack.pop() {
            for e in self.namespace().readdir(ino)? {
                let p = path.join(&e.name);
                match e.kind {
                    Kind::Dir => stack.push((e.ino, p)),
                    Kind::File => match self.namespace().inode(e.ino) {
                        Ok(node) => {
                            for x in node.extents {
                                out.insert(x.object, p.to_string());
                            }
                        }
                        // Removed since the folder was read (a writer runs
                        // beside scrub and fsck): it uses no object now.
                        Err(crate::NamespaceError::NotFound(_)) => {}
                        Err(err) => return Err(err.into()),
                    },
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    pub(super) fn key_issues(&self, id: &ObjectId) -> Result<Vec<KeyIssue>, VaultError> {
        let (s1, s2) = self.keystore().get(id)?;
        let b = match self.backup_of(id)? {
            StoredBackup::Present(b) => Some(Backup::parse(&b).map_err(|e| e.to_string())),
            StoredBackup::Missing => None,
            StoredBackup::Damaged(why) => Some(Err(why.clone())),
        };
        let mut issues = Vec::new();
        let check = |stored: &Stored,
                     x: u8,
                     missing: KeyIssue,
                     corrupt: KeyIssue,
                     issues: &mut Vec<KeyIssue>| {
            match stored {
                Stored::Missing => issues.push(missing),
                Stored::Damaged => issues.push(corrupt),
                Stored::Present(bytes) => {
                    let share = Share::from_bytes(bytes).ok().filter(|s| s.x() == x);
                    match (share, &b) {
                        (None, _) => issues.push(corrupt),
                        (Some(s), Some(Ok(b))) if b.verify(&s).is_err() => issues.push(corrupt),
                        _ => {}
                    }
                }
            }
        };
        check(
            &s1,
            1,
            KeyIssue::R1Missing,
            KeyIssue::R1Corrupt,
            &mut issues,
        );
        check(
            &s2,
            2,
            KeyIssue::R2Missing,
            KeyIssue::R2Corrupt,
            &mut issues,
        );
        match b {
            None => issues.push(KeyIssue::BackupMissing),
            Some(Err(_)) => issues.push(KeyIssue::BackupCorrupt),
            Some(Ok(_)) => {
                // Both shares failing B means B is the suspect (two
                // independent shares are unlikely to break together).
                if issues.contains(&KeyIssue::R1Corrupt) && issues.contains(&KeyIssue::R2Corrupt) {
                    issues.retain(|i| !matches!(i, KeyIssue::R1Corrupt | KeyIssue::R2Corrupt));
                    issues.push(KeyIssue::BackupCorrupt);
                }
            }
        }
        Ok(issues)
    }

    /// Checks every object's shares against its backup record; with
    /// `repair`, heals what can be healed.
    /// Objects whose manifest is missing or damaged are reported too (when
    /// a file points at them, or the record is there but undecodable):
    /// no key repair brings those back.
    pub fn check_keys(&self, repair: bool) -> Result<KeyReport, VaultError> {
        let paths = self.object_paths()?;
        let mut report = KeyReport::default();
        let mut manifests: Vec<Manifest> = Vec::new();
        let mut known: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
        let mut unusable: Vec<(ObjectId, KeyIssue)> = Vec::new();
        for m in self.dispersal().store().manifests() {
            match m {
                Ok(m) => {
                    known.insert(m.id);
                    manifests.push(m);
                }
                Err(DispersalError::Record { object, .. }) => {
                    known.insert(object);
                    unusable.push((object, KeyIssue::ManifestDamaged));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Objects being written or destroyed right now (by a mount serving
        // this run, or left by a crash for the next open) have their key
        // material on its way in or out: not a problem to report, and a
        // repair must never bring back the keys of a deleted object.
        let mut busy: std::collections::HashSet<ObjectId> =
            self.intents().in_flight().into_iter().collect();
        busy.extend(self.namespace().gc_queue()?);
        busy.extend(self.namespace().r2_cleanup_queue()?);
        // Metadata snapshots have no key records: sealed under the vault key.
        busy.extend(self.meta_ids()?);
        manifests.retain(|m| !busy.contains(&m.id));
        let named = self.namespace().referenced_objects()?;
        for id in named.iter().copied() {
            // Re-read: the object may have been published since the scan.
            if !known.contains(&id) && self.dispersal().store().manifest(&id)?.is_none() {
                unusable.push((id, KeyIssue::ManifestMissing));
            }
        }
        for (id, issue) in unusable {
            report.checked += 1;
            report.problems.push(ObjectKeyState {
                object: id.to_hex(),
                path: paths.get(&id).cloned(),
                issues: vec![issue],
                repaired: false,
                error: repair.then(|| {
                    "no usable manifest: key material cannot rebuild the stripe layout and chunk \
                     hashes; restore the vault's meta/ec folder from a backup, or remove the file \
                     (`qsfs fsck` lists every file affected)"
                        .to_string()
                }),
            });
        }
        for m in &manifests {
            report.checked += 1;
            let mut issues = self.key_issues(&m.id)?;
            if matches!(
                issues.as_slice(),
                [KeyIssue::R1Corrupt | KeyIssue::R2Corrupt]
            ) && self.backup_mac_is_bad(m)
            {
                issues = vec![KeyIssue::BackupCorrupt];
            }
            if issues.is_empty() {
                continue;
            }
            let mut state = ObjectKeyState {
                object: m.id.to_hex(),
                path: paths.get(&m.id).cloned(),
                issues,
                repaired: false,
                error: None,
            };
            if repair {
                match self.heal_keys(m, &state.issues) {
                    Ok(()) => state.repaired = true,
                    Err(e) => state.error = Some(e),
                }
            }
            report.problems.push(state);
        }
        report.stray_backups = self
            .dispersal()
            .store()
            .backup_ids()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|id| !known.contains(id) && !named.contains(id) && !busy.contains(id))
            .map(|id| id.to_hex())
            .collect();
        report.stray_shares = self
            .keystore()
            .ids()?
            .into_iter()
            .filter(|id| !known.contains(id) && !named.contains(id) && !busy.contains(id))
            .map(|id| id.to_hex())
            .collect();
        Ok(report)
    }

    /// One share fails its MAC in `B` while the other passes: either that
    /// share is damaged or `B`'s MAC for it is. The object decides: the
    /// suspect share is regenerated from the good share, `R3` and `R4`; if
    /// it equals the stored one, `B` is the damaged piece (the open path
    /// draws the same conclusion, see `envelope::recover_keys`).
    fn backup_mac_is_bad(&self, m: &Manifest) -> bool {
        let mut warnings = Vec::new();
        let mut report = ReadReport::default();
        match self.recover(m, &mut warnings, &mut report) {
            Ok(rec) => {
                let bad = rec.bad_shares();
                bad.backup && !bad.r1 && !bad.r2
            }
            Err(_) => false,
        }
    }

    fn heal_keys(&self, m: &Manifest, issues: &[KeyIssue]) -> Result<(), String> {
        let mut warnings = Vec::new();
        let mut shard_report = ReadReport::default();
        let rec = self.recover(m, &mut warnings, &mut shard_report)?;
        let backup_bad = issues
            .iter()
            .any(|i| matches!(i, KeyIssue::BackupMissing | KeyIssue::BackupCorrupt));
        if backup_bad {
            // Nothing vouches for R1/R2 but the object itself: verify all
            // of it under the recovered key before trusting them.
            let (r, rep) = self
                .dispersal()
                .read_stream(m, |s| envelope::verify_stream(s, &rec))
                .map_err(|e| e.to_string())?;
            self.record_debt(m, rep.mask());
            r.map_err(|e| format!("the object does not verify with R1 and R2: {e}"))?;
            let b = rec.rebuild_backup().map_err(|e| e.to_string())?;
            self.update_backup(&m.id, &b.to_bytes())
                .map_err(|e| e.to_string())?;
        }
        let b = match self.backup_of(&m.id).map_err(|e| e.to_string())? {
            StoredBackup::Present(b) => Backup::parse(&b).map_err(|e| e.to_string())?,
            StoredBackup::Missing => return Err("no backup record".into()),
            StoredBackup::Damaged(why) => {
                return Err(format!("the backup record does not open: {why}"));
            }
        };
        for (x, bad) in [
            (
                1u8,
                issues
                    .iter()
                    .any(|i| matches!(i, KeyIssue::R1Missing | KeyIssue::R1Corrupt)),
            ),
            (
                2u8,
                issues
                    .iter()
                    .any(|i| matches!(i, KeyIssue::R2Missing | KeyIssue::R2Corrupt)),
            ),
        ] {
            if !bad {
                continue;
            }
            let share = rec.regenerate(x).map_err(|e| e.to_string())?;
            b.verify(&share)
                .map_err(|e| format!("rebuilt R{x} does not verify with the backup record: {e}"))?;
            let mut bytes = [0u8; 33];
            bytes.copy_from_slice(share.as_bytes());
            self.keystore()
                .heal(&m.id, x, &bytes)
                .map_err(|e| e.to_string())?;
        }
        // Prove the healed material opens the object's keys again.
        let (s1, s2) = self.keystore().get(&m.id).map_err(|e| e.to_string())?;
        let local = LocalShares {
            r1: s1.bytes().and_then(|b| Share::from_bytes(b).ok()),
            r2: s2.bytes().and_then(|b| Share::from_bytes(b).ok()),
        };
        if local.r1.as_ref().is_some_and(|s| b.verify(s).is_err())
            || local.r2.as_ref().is_some_and(|s| b.verify(s).is_err())
        {
            return Err("shares still fail the backup record after repair".into());
        }
        Ok(())
    }
}
