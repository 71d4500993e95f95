//! An open pool file: the key source of one link end, consuming keys durably.
//!
//! Every key leaves as follows: under the pool's mutex its record is marked
//! used and its 32 key bytes overwritten with zeros in the file, the file
//! is `fdatasync`ed, and only then is the key returned. A crash after the
//! sync wastes the key; nothing can make it protect data twice, and a copy
//! of the file taken later holds no used key material.
//!
//! Sending keys (`next_key`) are reserved in batches ([`DEFAULT_BATCH`]
//! per sync) and held in memory, wiped on drop: a crash wastes at most one
//! batch. Received keys (`take_key`) are taken one at a time, because the
//! receiver cannot know which key the sender names next and must not erase
//! keys the sender may still use.
//!
//! The two ends of an in-process link live in one process
//! ([`PoolFile::in_process_receiver`]): there a received key's mark is
//! written at once but not synced. It guards against replay, and nothing
//! outside the process can send into its socket pairs; after a crash both
//! ends start over together, and the sender's synced reservation still
//! keeps any key from sealing twice. Per-key syncs on the receiving ends
//! were one `fdatasync` per small file written through the mount.
//!
//! One process per file: the file is held under an exclusive `flock`.
//! `qsfs keypool status` reads without the lock ([`inspect`]).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use zeroize::Zeroizing;

use super::error::{PoolError, io_err};
use super::format::{self, HEADER_LEN, Header, KEY_AT, RECORD_LEN, STATE_USED, SealKey};
use super::status::{DirCounts, PoolStatus};
use crate::qkd::{Direction, End, KEY_LEN, KeyCounts, KeyError, KeyId, KeySource, LinkKey};

/// Sending keys reserved per `fdatasync`.
pub const DEFAULT_BATCH: usize = 16;

/// What an open pool may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A link end: `next_key` in the direction it sends, `take_key` in the
    /// other one.
    End(End),
    /// A key manager's backing file: both calls in both directions. One
    /// key is still handed out once, by either call.
    Both,
}

/// What memory keeps of a record: never the key bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    id: KeyId,
    used: bool,
    dir: Direction,
}

impl Slot {
    /// The key's name.
    pub(crate) fn id(&self) -> KeyId {
        self.id
    }
}

impl From<format::RecordMeta> for Slot {
    fn from(m: format::RecordMeta) -> Slot {
        Slot {
            id: m.id,
            used: m.used,
            dir: m.dir,
        }
    }
}

fn di(dir: Direction) -> usize {
    match dir {
        Direction::AToB => 0,
        Direction::BToA => 1,
    }
}

/// The mutable state: which records are used, and the reserve.
pub(crate) struct Inner {
    slots: Vec<Slot>,
    index: HashMap<KeyId, u64>,
    /// Per direction, no unused slot of that direction lies below it.
    cursor: [u64; 2],
    /// Per direction, keys marked used on disk and not yet handed out.
    reserve: [VecDeque<LinkKey>; 2],
    left: [u64; 2],
    used: [u64; 2],
}

impl Inner {
    fn from_slots(slots: Vec<Slot>, path: &Path) -> Result<Inner, PoolError> {
        let mut inner = Inner {
            slots: Vec::new(),
            index: HashMap::with_capacity(slots.len()),
            cursor: [0, 0],
            reserve: [VecDeque::new(), VecDeque::new()],
            left: [0, 0],
            used: [0, 0],
        };
        inner.extend(slots, path)?;
        Ok(inner)
    }

    /// Adds records at the end (after open or a refill).
    pub(crate) fn extend(&mut self, slots: Vec<Slot>, path: &Path) -> Result<(), PoolError> {
        for s in slots {
            let i = self.slots.len() as u64;
            if self.index.insert(s.id, i).is_some() {
                return Err(PoolError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("key id {} appears twice (record {i})", s.id),
                });
            }
            if s.used {
                self.used[di(s.dir)] += 1;
            } else {
                self.left[di(s.dir)] += 1;
            }
            self.slots.push(s);
        }
        Ok(())
    }

    /// Number of records.
    pub(crate) fn count(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Unused keys, both directions.
    pub(crate) fn left_total(&self) -> u64 {
        self.left[0] + self.left[1]
    }

    /// The key id of record `i`.
    pub(crate) fn id(&self, i: u64) -> Option<KeyId> {
        self.slots.get(i as usize).map(|s| s.id)
    }

    /// True when `id` is in the pool.
    pub(crate) fn knows(&self, id: &KeyId) -> bool {
        self.index.contains_key(id)
    }
}

/// One end's key pool file, open for use.
pub struct PoolFile {
    path: PathBuf,
    file: File,
    header: Header,
    access: Access,
    batch: AtomicUsize,
    /// Whether a received key's use is synced before the key is returned
    /// (always, except on the receiving end of an in-process link).
    sync_takes: std::sync::atomic::AtomicBool,
    /// The seal key of a sealed pool (its key bytes are stored sealed).
    seal: Option<SealKey>,
    pub(crate) inner: Mutex<Inner>,
    /// Serializes appends (refills).
    pub(crate) grow: Mutex<()>,
}

impl std::fmt::Debug for PoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolFile")
            .field("path", &self.path)
            .field("link", &self.header.link)
            .field("end", &self.header.end)
            .field("access", &self.access)
            .finish()
    }
}

/// Opens a pool file for reading and writing under an exclusive `flock`
/// (one process per pool file).
pub(crate) fn open_locked(path: &Path) -> Result<File, PoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open for reading and writing"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(PoolError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(path, "lock")(e)),
    }
}

/// Reads and checks the header of an open file.
pub(crate) fn read_header(file: &File, path: &Path) -> Result<(Header, u64), PoolError> {
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let mut h = vec![0u8; HEADER_LEN.min(len as usize)];
    file.read_exact_at(&mut h, 0)
        .map_err(io_err(path, "read the header of"))?;
    let header = Header::decode(&h).map_err(|fault| PoolError::Header {
        path: path.to_path_buf(),
        fault,
    })?;
    let need = format::record_offset(header.count);
    if len < need {
        return Err(PoolError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the header counts {} keys but the file holds only {} bytes of {need}: it was cut short",
                header.count, len
            ),
        });
    }
    Ok((header, len))
}

/// Reads records `from..to` (metadata only; key bytes are wiped).
pub(crate) fn read_slots(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<Vec<Slot>, PoolError> {
    let mut slots = Vec::with_capacity((to - from) as usize);
    let mut r = io::BufReader::with_capacity(1 << 20, file);
    // A shared `&File` reads from its own position: seek it first.
    {
        use std::io::Seek;
        r.seek(io::SeekFrom::Start(format::record_offset(from)))
            .map_err(io_err(path, "seek in"))?;
    }
    let mut rec = Zeroizing::new([0u8; RECORD_LEN]);
    for i in from..to {
        r.read_exact(&mut rec[..])
            .map_err(io_err(path, "read the key records of"))?;
        let m = format::decode_record(&rec[..]).ok_or_else(|| PoolError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("record {i} holds an invalid state or direction byte"),
        })?;
        slots.push(Slot::from(m));
    }
    Ok(slots)
}

/// Reads a pool's state without locking or changing it (for `status`).
pub fn inspect(path: &Path) -> Result<PoolStatus, PoolError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let (header, _) = read_header(&file, path)?;
    let slots = read_slots(&file, path, 0, header.count)?;
    let inner = Inner::from_slots(slots, path)?;
    Ok(status_of(path, &header, &inner))
}

fn status_of(path: &Path, header: &Header, inner: &Inner) -> PoolStatus {
    let dir = |d: usize| DirCounts {
        left: inner.left[d],
        used: inner.used[d],
        total: inner.left[d] + inner.used[d],
    };
    PoolStatus {
        path: path.to_path_buf(),
        link: header.link.clone(),
        link_id: hex::encode(header.link_id),
        end: format::end_byte(header.end) as char,
        refills: header.refill,
        sealed: header.sealed.is_some(),
        capacity: header.capacity,
        a_to_b: dir(0),
        b_to_a: dir(1),
    }
}

impl PoolFile {
    /// Opens a link end's pool: `next_key` only in the direction its end
    /// (from the header) sends, `take_key` only in the other one.
    /// A sealed pool is refused ([`PoolError::Sealed`]): only its vault
    /// opens it, with [`PoolFile::open_sealed`].
    pub fn open(path: &Path) -> Result<PoolFile, PoolError> {
        Self::open_with(path, None, None)
    }

    /// Opens a link end's pool that may be sealed under `seal`: a sealed
    /// pool must carry `seal`'s check ([`PoolError::WrongSeal`] otherwise);
    /// a clear pool opens as it is ([`PoolFile::is_sealed`] tells which).
    pub fn open_sealed(path: &Path, seal: &SealKey) -> Result<PoolFile, PoolError> {
        Self::open_with(path, None, Some(seal))
    }

    /// Opens a pool as a key manager's backing file: both directions, both
    /// calls.
    pub fn open_both(path: &Path) -> Result<PoolFile, PoolError> {
        Self::open_with(path, Some(Access::Both), None)
    }

    fn open_with(
        path: &Path,
        access: Option<Access>,
        seal: Option<&SealKey>,
    ) -> Result<PoolFile, PoolError> {
        let file = open_locked(path)?;
        let (header, _) = read_header(&file, path)?;
        let seal = match (&header.sealed, seal) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(PoolError::Sealed {
                    path: path.to_path_buf(),
                });
            }
            (Some(check), Some(k)) if *check == k.check(&header.link_id) => Some(k.clone()),
            (Some(_), Some(_)) => {
                return Err(PoolError::WrongSeal {
                    path: path.to_path_buf(),
                });
            }
        };
        let slots = read_slots(&file, path, 0, header.count)?;
        let inner = Inner::from_slots(slots, path)?;
        Ok(PoolFile {
            path: path.to_path_buf(),
            access: access.unwrap_or(Access::End(header.end)),
            file,
            header,
            batch: AtomicUsize::new(DEFAULT_BATCH),
            sync_takes: std::sync::atomic::AtomicBool::new(true),
            seal,
            inner: Mutex::new(inner),
            grow: Mutex::new(()),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The end this file belongs to (from its header).
    pub fn end(&self) -> End {
        self.header.end
    }

    /// The 16 random bytes both ends' files share.
    pub fn link_id(&self) -> [u8; 16] {
        self.header.link_id
    }

    /// Keys at generation (the low-water mark's 100%).
    pub fn capacity(&self) -> u64 {
        self.header.capacity
    }

    /// What this open pool may do.
    pub fn access(&self) -> Access {
        self.access
    }

    /// True when its key bytes are stored sealed under a vault's key.
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }

    /// The seal key of a sealed pool (for appends).
    pub(crate) fn seal(&self) -> Option<&SealKey> {
        self.seal.as_ref()
    }

    /// The header as read at open (the count may since have grown).
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The open file (for appends).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Sending keys reserved per sync (at least 1). Smaller wastes fewer
    /// keys on a crash, larger costs fewer syncs.
    pub fn set_batch(&self, keys: usize) {
        self.batch.store(keys.max(1), Ordering::Relaxed);
    }

    /// Marks this end as receiving over an in-process link, whose sender
    /// is in this process too: received keys are marked used and wiped in
    /// the file without an `fdatasync` each (see the module doc).
    pub fn in_process_receiver(&self) {
        self.sync_takes.store(false, Ordering::Relaxed);
    }

    /// The state, recovering from a panicked holder: memory is only
    /// changed after the disk, so it is consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| {
            self.inner.clear_poison();
            p.into_inner()
        })
    }

    /// Keys left and used per direction, and the header's facts.
    pub fn status(&self) -> PoolStatus {
        let inner = self.lock();
        status_of(&self.path, &self.header, &inner)
    }

    /// True when either direction has fewer than `fraction` (e.g. 0.1) of
    /// its share of the pool's capacity left.
    pub fn low(&self, fraction: f64) -> bool {
        self.status().low(fraction)
    }

    fn source_err(&self, detail: String) -> KeyError {
        KeyError::Source {
            link: self.header.link.clone(),
            source_name: self.path.display().to_string(),
            detail,
        }
    }

    fn exhausted(&self, dir: Direction, inner: &Inner) -> KeyError {
        let remedy = if self.header.refill {
            "the simulated link refills it at its key rate; wait, raise the key rate or \
             generate a bigger pair with `qsfs keypool gen`"
                .to_owned()
        } else {
            "install a new key pool pair from the QKD equipment (or `qsfs keypool gen`) \
             at both ends"
                .to_owned()
        };
        KeyError::Exhausted {
            link: self.header.link.clone(),
            detail: format!(
                "no unused {} keys left in {} ({} used)",
                dir_name(dir),
                self.path.display(),
                inner.used[di(dir)]
            ),
            remedy,
        }
    }

    /// Checks that this pool may `next_key` (`sending`) or `take_key` in `dir`.
    fn check_access(&self, dir: Direction, sending: bool) -> Result<(), KeyError> {
        let Access::End(end) = self.access else {
            return Ok(());
        };
        let ok = if sending {
            dir == end.sends()
        } else {
            dir == end.sends().reverse()
        };
        if ok {
            Ok(())
        } else {
            Err(self.source_err(format!(
                "end {} of this pool {} {} keys; open the other end's file for that",
                format::end_byte(end) as char,
                if sending {
                    "cannot send with"
                } else {
                    "cannot receive with"
                },
                dir_name(dir)
            )))
        }
    }

    /// Marks records used and zeroes their key bytes on disk, returning
    /// the keys; one `fdatasync` for all. Memory marks them used first, so
    /// a failure wastes them instead of serving them later.
    fn consume(
        &self,
        inner: &mut Inner,
        slots: &[u64],
        sync: bool,
    ) -> Result<Vec<LinkKey>, KeyError> {
        for &i in slots {
            let s = &mut inner.slots[i as usize];
            s.used = true;
            inner.left[di(s.dir)] -= 1;
            inner.used[di(s.dir)] += 1;
        }
        let mut keys = Vec::with_capacity(slots.len());
        let mut wipe = [0u8; KEY_LEN + 1];
        wipe[KEY_LEN] = STATE_USED;
        for &i in slots {
            let at = format::record_offset(i) + KEY_AT as u64;
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            self.file
                .read_exact_at(&mut key[..], at)
                .map_err(|e| self.source_err(format!("cannot read key record {i}: {e}")))?;
            if let Some(seal) = &self.seal {
                seal.apply(
                    &self.header.link_id,
                    &inner.slots[i as usize].id,
                    &mut key[..],
                );
            }
            self.file
                .write_all_at(&wipe, at)
                .map_err(|e| self.source_err(format!("cannot mark key record {i} used: {e}")))?;
            keys.push(LinkKey {
                id: inner.slots[i as usize].id,
                key,
            });
        }
        if sync {
            self.file.sync_data().map_err(|e| {
                self.source_err(format!("cannot persist the use of keys (fdatasync): {e}"))
            })?;
        }
        Ok(keys)
    }
}

/// "A->B" or "B->A".
pub fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::AToB => "A->B",
        Direction::BToA => "B->A",
    }
}

impl KeySource for PoolFile {
    fn link(&self) -> &str {
        &self.header.link
    }

    fn describe(&self) -> String {
        format!("key pool {}", self.path.display())
    }

    fn next_key(&self, dir: Direction) -> Result<LinkKey, KeyError> {
        self.check_access(dir, true)?;
        let mut inner = self.lock();
        let d = di(dir);
        if let Some(k) = inner.reserve[d].pop_front() {
            return Ok(k);
        }
        let want = self.batch.load(Ordering::Relaxed);
        let mut pick = Vec::with_capacity(want);
        let mut i = inner.cursor[d];
        while pick.len() < want && i < inner.count() {
            let s = inner.slots[i as usize];
            if !s.used && s.dir == dir {
                pick.push(i);
            }
            i += 1;
        }
        // Every slot of `dir` below `i` is now used or picked.
        inner.cursor[d] = i;
        if pick.is_empty() {
            return Err(self.exhausted(dir, &inner));
        }
        let keys = self.consume(&mut inner, &pick, true)?;
        let mut keys = VecDeque::from(keys);
        let first = keys.pop_front();
        inner.reserve[d] = keys;
        first.ok_or_else(|| self.exhausted(dir, &inner))
    }

    fn take_key(&self, dir: Direction, id: &KeyId) -> Result<LinkKey, KeyError> {
        self.check_access(dir, false)?;
        let mut inner = self.lock();
        let link = || self.header.link.clone();
        let Some(&i) = inner.index.get(id) else {
            return Err(KeyError::Unknown {
                link: link(),
                id: *id,
            });
        };
        let s = inner.slots[i as usize];
        if s.dir != dir {
            return Err(KeyError::WrongDirection {
                link: link(),
                id: *id,
            });
        }
        if s.used {
            return Err(KeyError::Used {
                link: link(),
                id: *id,
            });
        }
        let sync = self.sync_takes.load(Ordering::Relaxed);
        let mut keys = self.consume(&mut inner, &[i], sync)?;
        keys.pop()
            .ok_or_else(|| self.source_err("no key read".to_owned()))
    }

    fn counts(&self) -> Result<KeyCounts, KeyError> {
        let inner = self.lock();
        let left = inner.left[0] + inner.left[1];
        let used = inner.used[0] + inner.used[1];
        Ok(KeyCounts {
            left,
            used,
            total: left + used,
        })
    }

    fn refills(&self) -> bool {
        self.header.refill
    }
}
