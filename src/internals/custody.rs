//! The attacker who holds the vault key (a stolen passphrase, a copied
//! key file) and a copy of every client file: which deleted key records
//! can they still open? Used by the shredding tests.

use std::path::{Path, PathBuf};

use crate::ObjectId;
use crate::keystore::{Epochs, Kind, record};
use crate::unlock::{Unlock, open};

/// A key record found that still opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recoverable {
    /// The file it was found in.
    pub file: PathBuf,
    /// Its offset there.
    pub offset: usize,
    /// `R1`, `R2` or `B`.
    pub kind: &'static str,
    /// The object it belongs to.
    pub object: String,
}

/// Every place in the files under `dirs` where a key record of one of
/// `objects` (hex ids) opens under an epoch key the vault at `root` still
/// holds, unlocking it with `how`. Reads `meta/epochs.*` only.
pub fn recoverable_records(
    root: &Path,
    how: &Unlock,
    dirs: &[PathBuf],
    objects: &[String],
) -> Result<Vec<Recoverable>, String> {
    let cfg = crate::vault::Config::load(root).map_err(|e| e.to_string())?;
    let vk = open(root, &cfg.vault_id, how)
        .map_err(|e| e.to_string())?
        .ok_or("the vault has no vault key")?;
    let epochs = Epochs::open(&root.join("meta"), &cfg.vault_id, &vk).map_err(|e| e.to_string())?;
    let keys = epochs.live_keys();
    let ids: Vec<ObjectId> = objects
        .iter()
        .map(|h| {
            let b = hex::decode(h).map_err(|e| e.to_string())?;
            Ok(ObjectId(
                b.try_into().map_err(|_| "object ids are 16 bytes")?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let mut found = Vec::new();
    let mut files = Vec::new();
    for d in dirs {
        walk(d, &mut files);
    }
    const KINDS: [(Kind, &str, usize); 3] = [
        (Kind::R1, "R1", 5 + 28 + 33),
        (Kind::R2, "R2", 5 + 28 + 33),
        (Kind::Backup, "B", 5 + 28 + 105),
    ];
    for f in files {
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        for i in 0..data.len().saturating_sub(5) {
            if data[i] != record::SEALED {
                continue;
            }
            let e = u32::from_le_bytes([data[i + 1], data[i + 2], data[i + 3], data[i + 4]]);
            let Some((_, key)) = keys.iter().find(|(n, _)| *n == e) else {
                continue;
            };
            for (kind, name, len) in KINDS {
                let Some(rec) = data.get(i..i + len) else {
                    continue;
                };
                for id in &ids {
                    if record::open(key, &cfg.vault_id, kind, id, rec).is_some() {
                        found.push(Recoverable {
                            file: f.clone(),
                            offset: i,
                            kind: name,
                            object: id.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(found)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        if dir.is_file() {
            out.push(dir.to_path_buf());
        }
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn place(
    root: &Path,
    kind: &str,
    object: &str,
) -> Result<(PathBuf, Vec<u8>, Kind, ObjectId), String> {
    let b = hex::decode(object).map_err(|e| e.to_string())?;
    let id = ObjectId(b.try_into().map_err(|_| "object ids are 16 bytes")?);
    let (dir, prefix, k) = match kind {
        "R1" => ("keys", b'1', Kind::R1),
        "R2" => ("keys", b'2', Kind::R2),
        "B" => ("meta/ec", b'b', Kind::Backup),
        _ => return Err(format!("no record kind {kind:?}")),
    };
    let mut key = vec![prefix];
    key.extend_from_slice(id.as_bytes());
    Ok((root.join(dir), key, k, id))
}

fn vault_epochs(root: &Path, how: &Unlock) -> Result<(String, Epochs), String> {
    let cfg = crate::vault::Config::load(root).map_err(|e| e.to_string())?;
    let vk = open(root, &cfg.vault_id, how)
        .map_err(|e| e.to_string())?
        .ok_or("the vault has no vault key")?;
    let epochs = Epochs::open(&root.join("meta"), &cfg.vault_id, &vk).map_err(|e| e.to_string())?;
    Ok((cfg.vault_id, epochs))
}

/// The payload of key record `kind` (`R1`, `R2`, `B`) of `object`, opened
/// with the vault key (`None`: no record). No qsfs process may hold the
/// vault.
pub fn read_record(
    root: &Path,
    how: &Unlock,
    kind: &str,
    object: &str,
) -> Result<Option<Vec<u8>>, String> {
    let (dir, key, k, id) = place(root, kind, object)?;
    let (_, epochs) = vault_epochs(root, how)?;
    let db = crate::store::Db::open(&dir, "test read").map_err(|e| e.to_string())?;
    let stored = db.get(&key).map_err(|e| e.to_string())?;
    match epochs.open_record(k, &id, stored.as_deref()) {
        crate::keystore::Opened::Payload(p) => Ok(Some(p.to_vec())),
        crate::keystore::Opened::Missing => Ok(None),
        other => Err(format!("{kind} of {object} does not open: {other:?}")),
    }
}

/// Rewrites key record `kind` of `object` with the payload `edit` makes of
/// it, sealed as the vault seals it (a well-formed record with a wrong
/// value: what a bug or a bad sector behind the AEAD would look like).
pub fn edit_record(
    root: &Path,
    how: &Unlock,
    kind: &str,
    object: &str,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Result<(), String> {
    let (dir, key, k, id) = place(root, kind, object)?;
    let (_, epochs) = vault_epochs(root, how)?;
    let db = crate::store::Db::open(&dir, "test edit").map_err(|e| e.to_string())?;
    let stored = db.get(&key).map_err(|e| e.to_string())?;
    let crate::keystore::Opened::Payload(p) = epochs.open_record(k, &id, stored.as_deref()) else {
        return Err(format!("{kind} of {object} does not open"));
    };
    let mut p = p.to_vec();
    edit(&mut p);
    let w = epochs.writer().map_err(|e| e.to_string())?;
    let new = w.seal(k, &id, &p).map_err(|e| e.to_string())?;
    db.insert(&key, new).map_err(|e| e.to_string())?;
    db.flush_durable().map_err(|e| e.to_string())
}

/// The vault key of the vault at `root`, unlocked with `how` (the tests
/// look for it where it must not be: a key holder's store).
pub fn vault_key(root: &Path, how: &Unlock) -> Result<[u8; 32], String> {
    let cfg = crate::vault::Config::load(root).map_err(|e| e.to_string())?;
    let vk = open(root, &cfg.vault_id, how)
        .map_err(|e| e.to_string())?
        .ok_or("the vault has no vault key")?;
    Ok(*vk.bytes())
}
