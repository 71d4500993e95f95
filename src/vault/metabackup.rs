//! Metadata backups on the nodes: the client is not a single point of loss.
//!
//! A snapshot of everything the vault folder holds that the nodes do not
//! (namespace, manifests, the sealed key records, the epoch table,
//! `qsfs.toml` and `unlock.toml`) is written as an erasure-coded object
//! like any other, so scrub, audit, drain and the deletion check look
//! after it too. Its manifest is registered in the erasure-coding store
//! (`S` + id); fsck, key checks and status leave it out of their file
//! counts. A new snapshot replaces the last one.
//!
//! Object format 1 (`QSFSMETA`):
//!
//! ```text
//! "QSFSMETA" || version u32 le (1) || generation u64 le || vault id (32 ascii hex)
//!   || len u32 le || unlock.toml (len bytes, in clear: it holds only wrapped keys)
//!   || nonce 12 || AES-256-GCM(body) || tag 16
//! key = BLAKE3 derive_key("qsfs 2026-12 metadata snapshot v1", vault key)
//! aad = every byte before the nonce
//! body = "QSFSMETB" || sections: tag u8 || len u64 le || bytes
//!   1 qsfs.toml   2 epoch table slot   3 namespace   4 manifests and B
//!   5 R1 store    6 separate R2 store
//!   a store section = (klen u32 le || key || vlen u32 le || value)*
//! ```
//!
//! The object id is `BLAKE3(vault id)[..8] || generation u64 be`, so a new
//! machine finds the newest snapshot by listing the node folders, and reads
//! it from its shard headers without a manifest; the AEAD tag vouches for
//! every byte (`qsfs recover`, recover.rs).
//!
//! Between snapshots a mount writes *journal entries*: every second in
//! which the stores changed, and before every `fsync(2)` returns, the
//! changed keys with their new values (or their removal) and the epoch
//! table, as one more small erasure-coded object. Recovery replays the
//! entries of the newest snapshot in order, so it is at most a second
//! behind the last change, and never behind the last acknowledged sync. The first change of a
//! mount, a journal as large as its snapshot, or [`MAX_ENTRIES`] entries
//! start a new snapshot, which destroys the entries before it.
//!
//! Journal entry format 1 (`QSFSMJNL`):
//!
//! ```text
//! "QSFSMJNL" || version u32 le (1) || base generation u64 le || seq u64 le
//!   || vault id (32 ascii hex) || nonce 12 || AES-256-GCM(body) || tag 16
//! key = BLAKE3 derive_key("qsfs 2026-12 metadata journal v1", vault key)
//! aad = every byte before the nonce
//! body = "QSFSMJNB" || sections as in a snapshot (2 epoch table slot, and
//!   3-6 for the stores that changed), a store section holding
//!   (klen u32 le || key || vlen u32 le || value)*, vlen 0xFFFFFFFF (and
//!   no value) for a removed key
//! id = BLAKE3("qsfs 2026-12 metadata journal id", vault id)[..8]
//!   || base generation u32 be (low bits) || seq u32 be, seq from 1
//! ```
//!
//! Frozen example: `tests/fixtures/nodes-journal-v1.tar.gz` (node folders
//! with a snapshot and two entries; `frozen_vault::` recovers from them).

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{Vault, VaultError};
use crate::ObjectId;
use crate::store::Db;
use crate::unlock::{VaultKey, wrap};

const MAGIC: &[u8; 8] = b"QSFSMETA";
const BODY_MAGIC: &[u8; 8] = b"QSFSMETB";
const VERSION: u32 = 1;
const CONTEXT: &str = "qsfs 2026-12 metadata snapshot v1";
const JOURNAL_MAGIC: &[u8; 8] = b"QSFSMJNL";
const JOURNAL_BODY_MAGIC: &[u8; 8] = b"QSFSMJNB";
const JOURNAL_CONTEXT: &str = "qsfs 2026-12 metadata journal v1";
/// `vlen` of a removed key in a journal's store section.
const REMOVED: u32 = u32::MAX;
/// Entries after which a new snapshot starts (recovery replays them all;
/// every `fsync(2)` may write one).
pub const MAX_ENTRIES: u64 = 1024;
/// A journal this large (or as large as its snapshot, if that is larger)
/// starts a new snapshot.
const MAX_JOURNAL_BYTES: u64 = 1 << 20;

/// Section tags of a snapshot body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Section {
    /// `qsfs.toml`.
    Config = 1,
    /// One slot of the epoch table.
    Epochs = 2,
    /// The namespace store.
    Namespace = 3,
    /// The erasure-coding store (manifests and B).
    Ec = 4,
    /// The R1 store.
    R1 = 5,
    /// A separate R2 store.
    R2 = 6,
}

impl Section {
    fn from_u8(b: u8) -> Option<Section> {
        Some(match b {
            1 => Section::Config,
            2 => Section::Epochs,
            3 => Section::Namespace,
            4 => Section::Ec,
            5 => Section::R1,
            6 => Section::R2,
            _ => return None,
        })
    }
}

/// The first 8 bytes of every snapshot id of vault `vault_id`.
pub(crate) fn id_tag(vault_id: &str) -> [u8; 8] {
    let h = blake3::derive_key("qsfs 2026-12 metadata snapshot id", vault_id.as_bytes());
    let mut t = [0u8; 8];
    t.copy_from_slice(&h[..8]);
    t
}

/// The id of snapshot `generation` of vault `vault_id`.
pub(crate) fn snapshot_id(vault_id: &str, generation: u64) -> ObjectId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id_tag(vault_id));
    b[8..].copy_from_slice(&generation.to_be_bytes());
    ObjectId(b)
}

/// The generation of `id` if it is a snapshot id of `vault_id`.
pub(crate) fn generation_of(vault_id: &str, id: &ObjectId) -> Option<u64> {
    let b = id.as_bytes();
    (b[..8] == id_tag(vault_id)).then(|| u64::from_be_bytes(b[8..].try_into().unwrap_or([0; 8])))
}

/// The first 8 bytes of every journal entry id of vault `vault_id`.
fn journal_tag(vault_id: &str) -> [u8; 8] {
    let h = blake3::derive_key("qsfs 2026-12 metadata journal id", vault_id.as_bytes());
    let mut t = [0u8; 8];
    t.copy_from_slice(&h[..8]);
    t
}

/// The id of journal entry `seq` after snapshot `base` of `vault_id`.
pub(crate) fn journal_id(vault_id: &str, base: u64, seq: u64) -> ObjectId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&journal_tag(vault_id));
    b[8..12].copy_from_slice(&(base as u32).to_be_bytes());
    b[12..].copy_from_slice(&(seq as u32).to_be_bytes());
    ObjectId(b)
}

/// `(base generation low bits, seq)` if `id` is a journal entry id of
/// `vault_id`.
pub(crate) fn journal_of(vault_id: &str, id: &ObjectId) -> Option<(u32, u32)> {
    let b = id.as_bytes();
    (b[..8] == journal_tag(vault_id)).then(|| {
        (
            u32::from_be_bytes(b[8..12].try_into().unwrap_or([0; 4])),
            u32::from_be_bytes(b[12..].try_into().unwrap_or([0; 4])),
        )
    })
}

/// Whether `id` is one of this vault's metadata backup objects (a
/// snapshot or a journal entry).
pub(crate) fn is_backup_id(vault_id: &str, id: &ObjectId) -> bool {
    generation_of(vault_id, id).is_some() || journal_of(vault_id, id).is_some()
}

fn push_section(out: &mut Vec<u8>, tag: Section, bytes: &[u8]) {
    out.push(tag as u8);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn dump(db: &Db) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut out = Zeroizing::new(Vec::new());
    for r in db.iter_all() {
        let (k, v) = r?;
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(&v);
    }
    Ok(out)
}

/// A journal store section of `log`.
fn encode_changes(log: &crate::store::ChangeLog) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    for (k, v) in log {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        match v {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&REMOVED.to_le_bytes()),
        }
    }
    out
}

/// One change of a journal store section: a key and its new value
/// (`None`: removed).
pub(crate) type Change<'a> = (&'a [u8], Option<&'a [u8]>);

/// The changes of a journal store section.
pub(crate) fn changes(b: &[u8]) -> Option<Vec<Change<'_>>> {
    let mut rest = b;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let klen = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let k = rest.get(4..4 + klen)?;
        rest = &rest[4 + klen..];
        let vlen = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if vlen == REMOVED {
            out.push((k, None));
        } else {
            let v = rest.get(..vlen as usize)?;
            rest = &rest[vlen as usize..];
            out.push((k, Some(v)));
        }
    }
    Some(out)
}

/// The records of a store section.
pub(crate) fn records(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    fn take<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + len)?;
        *b = &b[4 + len..];
        Some(v)
    }
    let mut rest = b;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        out.push((k, v));
    }
    Some(out)
}

/// A decoded snapshot object before its body is opened.
pub(crate) struct Sealed<'a> {
    pub generation: u64,
    pub vault_id: String,
    pub unlock_toml: &'a str,
    aad: &'a [u8],
    sealed: &'a [u8],
}

/// Whether `object` starts with `magic` and the format version read here.
fn is_format(object: &[u8], magic: &[u8; 8]) -> Option<()> {
    (object.get(..8)? == magic
        && u32::from_le_bytes(object.get(8..12)?.try_into().ok()?) == VERSION)
        .then_some(())
}

/// Splits a snapshot object into its clear header and sealed body.
pub(crate) fn parse(object: &[u8]) -> Option<Sealed<'_>> {
    is_format(object, MAGIC)?;
    let generation = u64::from_le_bytes(object.get(12..20)?.try_into().ok()?);
    let vault_id = std::str::from_utf8(object.get(20..52)?).ok()?.to_string();
    let len = u32::from_le_bytes(object.get(52..56)?.try_into().ok()?) as usize;
    let unlock_toml = std::str::from_utf8(object.get(56..56 + len)?).ok()?;
    Some(Sealed {
        generation,
        vault_id,
        unlock_toml,
        aad: &object[..56 + len],
        sealed: &object[56 + len..],
    })
}

impl Sealed<'_> {
    /// The body's sections, opened with the vault key (`None`: the key is
    /// not this snapshot's, or a byte changed).
    pub(crate) fn open(&self, vk: &VaultKey) -> Option<BTreeMap<Section, Zeroizing<Vec<u8>>>> {
        let body = wrap::unwrap(&vk.derive(CONTEXT), self.aad, self.sealed)?;
        sections(&body, BODY_MAGIC)
    }
}

/// The sections of an opened body that starts with `magic`.
fn sections(body: &[u8], magic: &[u8; 8]) -> Option<BTreeMap<Section, Zeroizing<Vec<u8>>>> {
    if body.get(..8)? != magic {
        return None;
    }
    let mut rest = &body[8..];
    let mut out = BTreeMap::new();
    while !rest.is_empty() {
        let tag = Section::from_u8(rest[0])?;
        let len = u64::from_le_bytes(rest.get(1..9)?.try_into().ok()?) as usize;
        let bytes = rest.get(9..9 + len)?;
        out.insert(tag, Zeroizing::new(bytes.to_vec()));
        rest = &rest[9 + len..];
    }
    Some(out)
}

/// A decoded journal entry before its body is opened.
pub(crate) struct SealedEntry<'a> {
    pub base: u64,
    pub seq: u64,
    pub vault_id: String,
    aad: &'a [u8],
    sealed: &'a [u8],
}

/// Splits a journal entry object into its clear header and sealed body.
pub(crate) fn parse_entry(object: &[u8]) -> Option<SealedEntry<'_>> {
    is_format(object, JOURNAL_MAGIC)?;
    Some(SealedEntry {
        base: u64::from_le_bytes(object.get(12..20)?.try_into().ok()?),
        seq: u64::from_le_bytes(object.get(20..28)?.try_into().ok()?),
        vault_id: std::str::from_utf8(object.get(28..60)?).ok()?.to_string(),
        aad: &object[..60],
        sealed: &object[60..],
    })
}

impl SealedEntry<'_> {
    /// The entry's sections, opened with the vault key.
    pub(crate) fn open(&self, vk: &VaultKey) -> Option<BTreeMap<Section, Zeroizing<Vec<u8>>>> {
        let body = wrap::unwrap(&vk.derive(JOURNAL_CONTEXT), self.aad, self.sealed)?;
        sections(&body, JOURNAL_BODY_MAGIC)
    }
}

/// Where this process's journal stands.
#[derive(Debug, Default)]
pub(crate) struct JournalState {
    /// Whether the stores' change logs run (a mount started them).
    tracking: bool,
    /// The snapshot this process wrote last: entries follow it. `None`
    /// until then, or after a failed snapshot (its changes are gone from
    /// the logs, so only a snapshot can follow).
    base: Option<u64>,
    /// The last entry written after `base`.
    seq: u64,
    /// Bytes of those entries.
    bytes: u64,
    /// Bytes of the base snapshot.
    snapshot_bytes: u64,
    /// After a failed write: no new attempt before this.
    retry_at: Option<std::time::Instant>,
}

/// How long after a failed backup write the next one waits.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl JournalState {
    /// Follows a snapshot attempt: entries start after a written one; after
    /// a failed one (whose changes left the logs) only a snapshot can.
    fn after_snapshot(
        &mut self,
        written: Result<MetaBackup, VaultError>,
    ) -> Result<MetaBackup, VaultError> {
        match &written {
            Ok(b) => {
                self.base = Some(b.generation);
                self.seq = 0;
                self.bytes = 0;
                self.snapshot_bytes = b.bytes;
                self.retry_at = None;
            }
            Err(_) => {
                self.base = None;
                self.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
            }
        }
        written
    }
}

/// What [`Vault::journal_metadata`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaWrite {
    /// A new snapshot.
    Snapshot(MetaBackup),
    /// Journal entry `seq` after snapshot `base`, of `bytes` bytes.
    Entry {
        /// Its snapshot's generation.
        base: u64,
        /// Its place after that snapshot, from 1.
        seq: u64,
        /// Bytes of the entry object.
        bytes: u64,
    },
}

/// What a metadata backup wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetaBackup {
    /// Its generation.
    pub generation: u64,
    /// Bytes of the snapshot object.
    pub bytes: u64,
    /// When it was written (seconds since 1970).
    pub at: u64,
}

impl Vault {
    /// The last metadata snapshot on the nodes, if any.
    pub fn last_meta_backup(&self) -> Result<Option<(ObjectId, u64)>, VaultError> {
        let vid = &self.config.vault_id;
        Ok(self
            .ec
            .store()
            .meta_objects()?
            .into_iter()
            .filter(|(id, _)| generation_of(vid, id).is_some())
            .max_by_key(|(_, g)| *g))
    }

    /// Journal entries written after the last snapshot, by this or an
    /// earlier process.
    pub fn meta_journal_entries(&self) -> Result<u64, VaultError> {
        let vid = &self.config.vault_id;
        Ok(self
            .ec
            .store()
            .meta_objects()?
            .iter()
            .filter(|(id, _)| journal_of(vid, id).is_some())
            .count() as u64)
    }

    /// Changes applied to the stores a snapshot copies, since they were
    /// opened: a backup is due when this moved since the last one.
    pub fn meta_change_count(&self) -> u64 {
        let (r1, r2) = self.keys.dbs();
        self.ns.db().change_count()
            + self.ec.store().db().change_count()
            + r1.change_count()
            + r2.map_or(0, Db::change_count)
    }

    /// Ids of this vault's metadata snapshots among the shards listed
    /// (any generation, registered or not).
    pub(crate) fn snapshot_ids_in<'a>(
        &self,
        listings: impl Iterator<Item = &'a crate::node::Listing>,
    ) -> Vec<ObjectId> {
        let vid = &self.config.vault_id;
        listings
            .flat_map(|l| l.shards.iter().map(|s| s.key.object))
            .filter(|id| is_backup_id(vid, id))
            .collect()
    }

    /// Ids of the metadata snapshot objects (left out of file checks).
    pub(crate) fn meta_ids(&self) -> Result<std::collections::HashSet<ObjectId>, VaultError> {
        Ok(self
            .ec
            .store()
            .meta_objects()?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Writes a snapshot of the vault's metadata to the nodes and destroys
    /// the one before. `None` for a vault without a vault key (made by an
    /// older qsfs and not sealed yet): its metadata stays on this disk only.
    pub fn backup_metadata(&self) -> Result<Option<MetaBackup>, VaultError> {
        self.backup_metadata_after(0)
    }

    /// [`Vault::backup_metadata`] with a generation above `floor` (a
    /// recovered vault: the nodes may hold snapshots its stores do not
    /// know).
    pub(crate) fn backup_metadata_after(
        &self,
        floor: u64,
    ) -> Result<Option<MetaBackup>, VaultError> {
        let Some(vk) = self.vault_key() else {
            return Ok(None);
        };
        let mut st = self.journal_state();
        let tracking = st.tracking;
        st.after_snapshot(self.write_snapshot(&vk, floor, tracking))
            .map(Some)
    }

    fn journal_state(&self) -> std::sync::MutexGuard<'_, JournalState> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stores whose changes a snapshot and the journal carry.
    fn backed_up_dbs(&self) -> Vec<(Section, &Db)> {
        let (r1, r2) = self.keys.dbs();
        let mut out = vec![
            (Section::Namespace, self.ns.db()),
            (Section::Ec, self.ec.store().db()),
            (Section::R1, r1),
        ];
        if let Some(r2) = r2 {
            out.push((Section::R2, r2));
        }
        out
    }

    /// Starts the journal: from now on the stores log their changes and
    /// [`Vault::journal_metadata`] writes them, after a first snapshot (a
    /// mount calls this; a one-shot command does not, so its logs never
    /// grow).
    pub fn start_journal(&self) {
        let mut st = self.journal_state();
        // Without a vault key nothing is ever written: no logs to grow.
        if !st.tracking && self.vault_key().is_some() {
            for (_, db) in self.backed_up_dbs() {
                db.track_changes();
            }
            st.tracking = true;
            st.base = None;
        }
    }

    /// Backs up what changed since the last backup: a journal entry, or a
    /// new snapshot when one is due (the first call after
    /// [`Vault::start_journal`], a long journal). `None` when nothing
    /// changed, the journal was not started, backups were not started
    /// (`qsfs backup`), or the vault has no vault key.
    pub fn journal_metadata(&self) -> Result<Option<MetaWrite>, VaultError> {
        let Some(vk) = self.vault_key() else {
            return Ok(None);
        };
        let mut st = self.journal_state();
        if !st.tracking {
            return Ok(None);
        }
        if self.last_meta_backup()?.is_none() {
            // Backups not started (`qsfs backup`): nothing to follow, and
            // the logs must not grow for the whole mount.
            for (_, db) in self.backed_up_dbs() {
                db.take_changes();
            }
            return Ok(None);
        }
        if st.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            // The last write failed a moment ago: the backup thread retries
            // at its pace, an fsync meanwhile does not wait on the nodes.
            return Ok(None);
        }
        if st.base.is_none() {
            // The first backup of this process is a snapshot: whatever
            // changed before the logs started (another process, a command
            // run between mounts) is in it.
            return st
                .after_snapshot(self.write_snapshot(&vk, 0, true))
                .map(|b| Some(MetaWrite::Snapshot(b)));
        }
        let _shred = self
            .shredding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let vid = self.config.vault_id.clone();
        let mut taken: Vec<(Section, &Db, crate::store::ChangeLog)> = Vec::new();
        // No deletion between the takes: a name changed after the first
        // take and its old object destroyed before the last would give an
        // entry with the name and without its object (as a snapshot,
        // which holds this lock while it reads).
        let deleting = self
            .deleting
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (section, db) in self.backed_up_dbs() {
            let mut log = db.take_changes();
            if section == Section::Ec {
                // The backups' own bookkeeping is not metadata to back up
                // (and would make every entry call for the next).
                log.retain(|k, _| {
                    let id = || ObjectId(k[1..].try_into().unwrap_or([0; 16]));
                    !(k.as_slice() == b"G"
                        || (k.len() == 17 && k[0] == b'S')
                        || (k.len() == 17 && k[0] == b'm' && is_backup_id(&vid, &id())))
                });
            }
            if !log.is_empty() {
                taken.push((section, db, log));
            }
        }
        drop(deleting);
        if taken.is_empty() {
            return Ok(None);
        }
        let due = st.seq >= MAX_ENTRIES || st.bytes >= st.snapshot_bytes.max(MAX_JOURNAL_BYTES);
        if due {
            drop(_shred);
            drop(taken);
            return st
                .after_snapshot(self.write_snapshot(&vk, 0, true))
                .map(|b| Some(MetaWrite::Snapshot(b)));
        }
        let base = st.base.unwrap_or(0);
        let seq = st.seq + 1;
        let written = self.write_entry(&vk, base, seq, &taken);
        drop(_shred);
        match written {
            Ok(bytes) => {
                st.seq = seq;
                st.bytes += bytes;
                Ok(Some(MetaWrite::Entry { base, seq, bytes }))
            }
            Err(e) => {
                // Its id may have shards on some nodes now: never reused.
                // A snapshot (a new generation) follows, and holds these
                // changes too, so the taken logs can go.
                st.base = None;
                st.retry_at = Some(std::time::Instant::now() + RETRY_AFTER);
                Err(e)
            }
        }
    }

    /// Seals `changes` as entry `seq` after snapshot `base`, writes it to
    /// the nodes and registers it; its size.
    fn write_entry(
        &self,
        vk: &VaultKey,
        base: u64,
        seq: u64,
        changes: &[(Section, &Db, crate::store::ChangeLog)],
    ) -> Result<u64, VaultError> {
        let vid = &self.config.vault_id;
        let mut body = Zeroizing::new(JOURNAL_BODY_MAGIC.to_vec());
        for (section, _, log) in changes {
            push_section(&mut body, *section, &encode_changes(log));
        }
        let slot = std::fs::read(self.root.join("meta/epochs.0"))
            .map_err(super::io_err("read the epoch table"))?;
        push_section(&mut body, Section::Epochs, &slot);
        let mut object = JOURNAL_MAGIC.to_vec();
        object.extend_from_slice(&VERSION.to_le_bytes());
        object.extend_from_slice(&base.to_le_bytes());
        object.extend_from_slice(&seq.to_le_bytes());
        object.extend_from_slice(vid.as_bytes());
        self.seal_and_store(
            journal_id(vid, base, seq),
            object,
            &vk.derive(JOURNAL_CONTEXT),
            &body,
            base,
        )
    }

    /// Seals `body` after the clear `header` (its AAD), writes the object
    /// `id` to the nodes, waits until it is durable there, and registers
    /// it as a backup object of `generation`; its size.
    fn seal_and_store(
        &self,
        id: ObjectId,
        header: Vec<u8>,
        key: &[u8; 32],
        body: &[u8],
        generation: u64,
    ) -> Result<u64, VaultError> {
        let mut object = header;
        let sealed = wrap::wrap(key, &object, body)
            .map_err(|e| VaultError::Internal(format!("OS random source failed: {e}")))?;
        object.extend_from_slice(&sealed);
        let mut written = self
            .ec
            .write_object_inline(id, &object, object.len() as u64, &[])?;
        let synced = self.ec.sync(&mut [&mut written]);
        if let Some(Err(e)) = synced.into_iter().next() {
            return Err(e.into());
        }
        self.ec.store().add_meta(&written.manifest, generation)?;
        Ok(object.len() as u64)
    }

    /// Writes a snapshot (generation above `floor`) and destroys every
    /// backup object before it; restarts the change logs when `tracking`.
    fn write_snapshot(
        &self,
        vk: &VaultKey,
        floor: u64,
        tracking: bool,
    ) -> Result<MetaBackup, VaultError> {
        let id_str = self.config.vault_id.clone();
        // No shred pass may change the epochs while the records are read,
        // and no deletion may take keys a dumped name still points at.
        let _shred = self
            .shredding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _deleting = self
            .deleting
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.ec.store().meta_objects()?;
        // Never an id used before, even by a failed attempt or a snapshot
        // a recovery found: its cleanup would delete that one's shards.
        let generation = old
            .iter()
            .map(|(_, g)| *g)
            .max()
            .unwrap_or(0)
            .max(floor)
            .max(self.ec.store().meta_generation()?)
            + 1;
        self.ec.store().set_meta_generation(generation)?;
        let meta: std::collections::HashSet<ObjectId> = old.iter().map(|(id, _)| *id).collect();
        // Changes from here on go to the entries after this snapshot (one
        // made while the stores are read is in both, and replays the same).
        if tracking {
            for (_, db) in self.backed_up_dbs() {
                db.track_changes();
            }
        }
        // Names first: the durability order writes keys and manifests
        // before names, so every name dumped finds its object dumped after.
        let mut body = Zeroizing::new(BODY_MAGIC.to_vec());
        push_section(&mut body, Section::Namespace, &dump(self.ns.db())?);
        let mut ec = Zeroizing::new(Vec::new());
        for r in self.ec.store().db().iter_all() {
            let (k, v) = r?;
            // The snapshot's own manifests and registry stay out of it.
            let own = k.len() == 17
                && (k[0] == b'S'
                    || (k[0] == b'm'
                        && meta.contains(&ObjectId(k[1..].try_into().unwrap_or([0; 16])))));
            if own {
                continue;
            }
            ec.extend_from_slice(&(k.len() as u32).to_le_bytes());
            ec.extend_from_slice(&k);
            ec.extend_from_slice(&(v.len() as u32).to_le_bytes());
            ec.extend_from_slice(&v);
        }
        push_section(&mut body, Section::Ec, &ec);
        let (r1, r2) = self.keys.dbs();
        push_section(&mut body, Section::R1, &dump(r1)?);
        if let Some(r2) = r2 {
            push_section(&mut body, Section::R2, &dump(r2)?);
        }
        let slot = std::fs::read(self.root.join("meta/epochs.0"))
            .map_err(super::io_err("read the epoch table"))?;
        push_section(&mut body, Section::Epochs, &slot);
        let config =
            std::fs::read(self.root.join("qsfs.toml")).map_err(super::io_err("read qsfs.toml"))?;
        push_section(&mut body, Section::Config, &config);
        let unlock = std::fs::read(self.root.join(crate::unlock::UNLOCK_FILE))
            .map_err(super::io_err("read unlock.toml"))?;

        let mut object = MAGIC.to_vec();
        object.extend_from_slice(&VERSION.to_le_bytes());
        object.extend_from_slice(&generation.to_le_bytes());
        object.extend_from_slice(id_str.as_bytes());
        object.extend_from_slice(&(unlock.len() as u32).to_le_bytes());
        object.extend_from_slice(&unlock);
        let bytes = self.seal_and_store(
            snapshot_id(&id_str, generation),
            object,
            &vk.derive(CONTEXT),
            &body,
            generation,
        )?;
        drop(_deleting);
        let gone: Vec<ObjectId> = old.iter().map(|(id, _)| *id).collect();
        if !gone.is_empty() {
            self.destroy_objects(&gone)?;
            self.ec.store().remove_meta(&gone)?;
        }
        Ok(MetaBackup {
            generation,
            bytes,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_follows_a_snapshot_with_the_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        let v = crate::vault::direct_test_vault(&root).unwrap();
        let put = |v: &Vault, name: &str, bytes: &[u8]| {
            let src = dir.path().join("src");
            std::fs::write(&src, bytes).unwrap();
            v.put(
                &crate::PutSource::File(src),
                &crate::VaultPath::parse(name).unwrap(),
            )
            .unwrap();
        };
        put(&v, "/before", b"before the journal");
        // Not started: nothing is written, and nothing is logged.
        assert_eq!(v.journal_metadata().unwrap(), None);
        v.start_journal();
        put(&v, "/first", b"first change");
        assert_eq!(v.journal_metadata().unwrap(), None, "backups not started");
        assert!(v.ns.db().take_changes().is_empty(), "the logs were dropped");
        let s = v.backup_metadata().unwrap().unwrap();
        assert_eq!(v.journal_metadata().unwrap(), None, "nothing changed since");
        put(&v, "/second", b"second change");
        let Some(MetaWrite::Entry { base, seq, bytes }) = v.journal_metadata().unwrap() else {
            panic!("a change after the snapshot is a journal entry");
        };
        assert_eq!((base, seq), (s.generation, 1));
        assert!(
            bytes < s.bytes,
            "an entry carries the changes, not the vault"
        );
        assert_eq!(
            v.journal_metadata().unwrap(),
            None,
            "the entry's own registration is not a change"
        );
        v.remove(&crate::VaultPath::parse("/first").unwrap(), false)
            .unwrap();
        let Some(MetaWrite::Entry { seq, .. }) = v.journal_metadata().unwrap() else {
            panic!("a removal is a journal entry");
        };
        assert_eq!(seq, 2);
        assert_eq!(v.meta_journal_entries().unwrap(), 2);
        // A new snapshot replaces the entries.
        v.backup_metadata().unwrap();
        assert_eq!(v.meta_journal_entries().unwrap(), 0);
        // A new process's journal starts with a snapshot.
        drop(v);
        let v = Vault::open(&root, &crate::OpenOptions::default()).unwrap();
        v.start_journal();
        assert!(matches!(
            v.journal_metadata().unwrap(),
            Some(MetaWrite::Snapshot(_))
        ));
    }

    #[test]
    fn snapshot_ids_carry_their_generation_and_only_their_vault() {
        let id = snapshot_id("a", 7);
        assert_eq!(generation_of("a", &id), Some(7));
        assert_eq!(generation_of("b", &id), None);
        assert_eq!(generation_of("a", &ObjectId([0; 16])), None);
        let rec = {
            let mut v = Vec::new();
            for (k, val) in [(&b"k1"[..], &b"v1"[..]), (b"", b"x")] {
                v.extend_from_slice(&(k.len() as u32).to_le_bytes());
                v.extend_from_slice(k);
                v.extend_from_slice(&(val.len() as u32).to_le_bytes());
                v.extend_from_slice(val);
            }
            v
        };
        assert_eq!(
            records(&rec).unwrap(),
            vec![(&b"k1"[..], &b"v1"[..]), (&b""[..], &b"x"[..])]
        );
        assert!(records(&rec[..rec.len() - 1]).is_none());
    }
}
