//! A folder node's packs (format in packfmt.rs): small shards appended to
//! one open pack file, committed a group at a time with one commit record
//! and one `fdatasync`, read by offset, removed by tombstones, and
//! reclaimed by a repack once most of a pack is dead.
//!
//! Why the node and not the manifest knows where a shard sits: every tool
//! that handles shards (scrub, audit, drain, fsck, node servers) goes
//! through the node's `ShardStore`, so they all work on packed shards
//! unchanged, and a repack can move a shard without touching any vault.
//!
//! The index (shard -> record) lives in memory and is rebuilt by reading
//! the record headers of every pack the first time a packed shard is
//! touched. Only the process that created a pack appends to it; it holds
//! an exclusive lock on the pack while it does, and a repack skips packs
//! someone holds.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::header::{HEADER_LEN, ShardHeader, ShardKey};
use super::packfmt::{
    self, Kind, PACK_HEADER_LEN, RECORD_HEADER_LEN, RecordAt, RecordHead, TOMBSTONE_LEN,
};
use crate::ObjectId;

/// A pack stops taking new shards once it holds this many bytes.
const PACK_TARGET: u64 = 64 << 20;
/// A pack is repacked once at least this share of its bytes is dead.
const REPACK_DEAD: f64 = 0.5;

/// Whether the open `file` is still the file at `path`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(m) => Ok(m.dev() == open.dev() && m.ino() == open.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Where a committed shard is: its record and body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub at: RecordAt,
    pub len: u32,
}

impl Loc {
    /// Offset of the shard's first byte (its header) in the pack.
    pub fn body(&self) -> u64 {
        self.at.offset + RECORD_HEADER_LEN
    }

    fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.len)
    }
}

/// What the node knows of one pack.
#[derive(Debug, Default)]
struct Pack {
    /// Bytes of the file that were read or written (header and records).
    bytes: u64,
    /// Bytes after a record that did not parse: dead, never read.
    tail: u64,
    /// Bytes of the records of committed, not removed shards.
    live: u64,
    /// Tombstones held here: what they remove (pack, record) and which shard.
    tombstones: Vec<(RecordAt, ShardKey)>,
    /// Open for reading.
    file: Option<Arc<File>>,
    /// This instance appends here (created it); never repacked while so.
    owned: Option<Owned>,
}

#[derive(Debug)]
struct Owned {
    /// Open for writing, holding the pack's lock.
    file: Arc<File>,
    /// Shard records written and neither committed nor discarded.
    pending: usize,
}

impl Pack {
    fn dead(&self) -> u64 {
        (self.bytes + self.tail).saturating_sub(PACK_HEADER_LEN + self.live)
    }
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    index: BTreeMap<ShardKey, Loc>,
    packs: BTreeMap<u64, Pack>,
    /// The pack new records go to.
    current: Option<u64>,
}

/// Space use of a node's packs, for `qsfs status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Packs on the node.
    pub packs: usize,
    /// Bytes of pack files.
    pub bytes: u64,
    /// Bytes of removed or never committed records, until a repack.
    pub dead: u64,
}

/// The packs of one node folder.
#[derive(Debug)]
pub(super) struct Packs {
    dir: PathBuf,
    state: Mutex<State>,
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

impl Packs {
    /// The packs in `dir` (`NODE/packs`); nothing is read until used.
    pub fn new(dir: &Path) -> Packs {
        Packs {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !st.loaded {
            self.load(&mut st)?;
            st.loaded = true;
        }
        Ok(st)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(packfmt::file_name(seq))
    }

    /// Reads every pack's records into the index.
    fn load(&self, st: &mut State) -> io::Result<()> {
        let mut seqs: Vec<u64> = match fs::read_dir(&self.dir) {
            Ok(it) => it
                .filter_map(std::result::Result::ok)
                .filter_map(|e| packfmt::parse_file_name(&e.file_name().to_string_lossy()))
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        seqs.sort_unstable();
        let mut tombstones = Vec::new();
        for seq in seqs {
            let pack = match self.scan(seq, &mut st.index, &mut tombstones) {
                Ok(p) => p,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    // Its shards read as missing; scrub rebuilds them elsewhere.
                    tracing::warn!(
                        "pack {}: {e}; its shards are treated as missing: run `qsfs scrub --repair` to rebuild them from the other nodes, then move this file out of the node folder",
                        self.path(seq).display()
                    );
                    continue;
                }
            };
            st.packs.insert(seq, pack);
        }
        for (holder, target, key) in tombstones {
            if let Some(p) = st.packs.get_mut(&holder) {
                p.tombstones.push((target, key));
            }
            if st.index.get(&key).is_some_and(|l| l.at == target) {
                st.index.remove(&key);
            }
        }
        for loc in st.index.values() {
            if let Some(p) = st.packs.get_mut(&loc.at.seq) {
                p.live += loc.record_len();
            }
        }
        Ok(())
    }

    /// Reads pack `seq`'s records: committed shards go into `index` (a later
    /// record of a shard replaces an earlier one), tombstones into
    /// `tombstones` as (holder, target, shard).
    fn scan(
        &self,
        seq: u64,
        index: &mut BTreeMap<ShardKey, Loc>,
        tombstones: &mut Vec<(u64, RecordAt, ShardKey)>,
    ) -> io::Result<Pack> {
        let file = File::open(self.path(seq))?;
        let file_len = file.metadata()?.len();
        let mut r = BufReader::with_capacity(256 << 10, &file);
        let mut h = [0u8; PACK_HEADER_LEN as usize];
        r.read_exact(&mut h)
            .map_err(|e| corrupt(format!("cannot read its header: {e}")))?;
        packfmt::check_pack_header(seq, &h).map_err(|e| corrupt(e.to_string()))?;
        let mut off = PACK_HEADER_LEN;
        // End of the last whole record: where appends would go.
        let mut end_valid = off;
        let mut uncommitted: HashMap<u64, (ShardKey, u32)> = HashMap::new();
        let mut covered = Vec::new();
        loop {
            let Some(head) = Self::next_record(&mut r, seq, off, file_len, &mut covered) else {
                if off + RECORD_HEADER_LEN > file_len {
                    break;
                }
                // Damaged bytes, or a write a crash cut short: go on at the
                // next whole record, so damage costs only the records it hit.
                match Self::resync(&file, seq, off + 1, file_len)? {
                    Some(next) => {
                        tracing::warn!(
                            "pack {}: {} damaged bytes at offset {off} skipped; the shards there read as missing until scrub rebuilds them",
                            self.path(seq).display(),
                            next - off
                        );
                        off = next;
                        r.seek(io::SeekFrom::Start(next))?;
                        continue;
                    }
                    None => break,
                }
            };
            let end = off + RECORD_HEADER_LEN + u64::from(head.len);
            match head.kind {
                Kind::Shard => {
                    if covered.len() >= HEADER_LEN
                        && let Ok(sh) = ShardHeader::decode(&covered[..HEADER_LEN])
                    {
                        uncommitted.insert(off, (sh.key, head.len));
                    }
                }
                Kind::Commit => {
                    for o in packfmt::parse_commit(&covered).unwrap_or_default() {
                        if let Some((key, len)) = uncommitted.remove(&o) {
                            let at = RecordAt { seq, offset: o };
                            index.insert(key, Loc { at, len });
                        }
                    }
                }
                Kind::Tombstone => {
                    if let Some((target, key)) = packfmt::parse_tombstone(&covered) {
                        tombstones.push((seq, target, key));
                    }
                }
            }
            let rest = u64::from(head.len) - covered.len() as u64;
            r.seek_relative(rest as i64)?;
            off = end;
            end_valid = end;
        }
        Ok(Pack {
            bytes: end_valid,
            tail: file_len - end_valid,
            ..Pack::default()
        })
    }

    /// Reads the record at `off` (its header, and into `covered` the body
    /// bytes its check covers); None unless it is whole and checks out.
    fn next_record(
        r: &mut BufReader<&File>,
        seq: u64,
        off: u64,
        file_len: u64,
        covered: &mut Vec<u8>,
    ) -> Option<RecordHead> {
        let mut rh = [0u8; RECORD_HEADER_LEN as usize];
        if off + RECORD_HEADER_LEN > file_len || r.read_exact(&mut rh).is_err() {
            return None;
        }
        let head = RecordHead::parse(&rh)?;
        if off + RECORD_HEADER_LEN + u64::from(head.len) > file_len {
            return None;
        }
        covered.resize(head.covered_len(), 0);
        r.read_exact(covered).ok()?;
        head.verify(RecordAt { seq, offset: off }, covered)
            .then_some(head)
    }

    /// The offset of the first whole record at or after `from`, if any.
    /// The check binds a record to its offset, so bytes that merely look
    /// like a record header do not pass.
    fn resync(file: &File, seq: u64, mut from: u64, file_len: u64) -> io::Result<Option<u64>> {
        let mut buf = vec![0u8; 1 << 20];
        let mut covered = Vec::new();
        let h = RECORD_HEADER_LEN as usize;
        while from + RECORD_HEADER_LEN <= file_len {
            let n = ((file_len - from) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], from)?;
            let last = n - h;
            for i in 0..=last {
                let Some(head) = RecordHead::parse(&buf[i..i + h]) else {
                    continue;
                };
                let at = from + i as u64;
                if at + RECORD_HEADER_LEN + u64::from(head.len) > file_len {
                    continue;
                }
                covered.resize(head.covered_len(), 0);
                file.read_exact_at(&mut covered, at + RECORD_HEADER_LEN)?;
                if head.verify(RecordAt { seq, offset: at }, &covered) {
                    return Ok(Some(at));
                }
            }
            from += (last + 1) as u64;
        }
        Ok(None)
    }

    /// The pack this instance appends to, made when there is none.
    fn current(&self, st: &mut State) -> io::Result<u64> {
        if let Some(seq) = st.current {
            return Ok(seq);
        }
        if let Some(seq) = self.adopt_last(st) {
            st.current = Some(seq);
            return Ok(seq);
        }
        crate::perms::create_private_dir(&self.dir).or_else(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let mut seq = st.packs.keys().next_back().map_or(1, |s| s + 1);
        let file = loop {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(crate::perms::FILE_MODE)
                .open(self.path(seq))
            {
                Ok(f) => break f,
                // Another process made this one since the scan.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => seq += 1,
                Err(e) => return Err(e),
            }
        };
        if file.try_lock().is_err() {
            return Err(io::Error::other(format!(
                "cannot lock the new pack {}",
                self.path(seq).display()
            )));
        }
        file.write_all_at(&packfmt::pack_header(seq), 0)?;
        file.sync_data()?;
        crate::sys::fsync_dir(&self.dir)?;
        let file = Arc::new(file);
        st.packs.insert(
            seq,
            Pack {
                bytes: PACK_HEADER_LEN,
                file: Some(Arc::clone(&file)),
                owned: Some(Owned { file, pending: 0 }),
                ..Pack::default()
            },
        );
        st.current = Some(seq);
        Ok(seq)
    }

    /// Takes over the newest pack when it has room, ends cleanly (every
    /// byte of it was read as records) and nobody holds it: so each
    /// `qsfs put` does not leave a pack of its own.
    fn adopt_last(&self, st: &mut State) -> Option<u64> {
        let (&seq, pack) = st.packs.iter().next_back()?;
        if pack.owned.is_some() || pack.bytes >= PACK_TARGET {
            return None;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(seq))
            .ok()?;
        if file.try_lock().is_err() || file.metadata().ok()?.len() != pack.bytes {
            return None;
        }
        let file = Arc::new(file);
        let pack = st.packs.get_mut(&seq)?;
        pack.file = Some(Arc::clone(&file));
        pack.owned = Some(Owned { file, pending: 0 });
        Some(seq)
    }

    /// Appends a record to pack `seq` (one this instance owns).
    fn append(st: &mut State, seq: u64, kind: Kind, body: &[u8]) -> io::Result<RecordAt> {
        let pack = st
            .packs
            .get_mut(&seq)
            .ok_or_else(|| io::Error::other(format!("pack {seq} is gone")))?;
        let file = pack
            .owned
            .as_ref()
            .map(|o| Arc::clone(&o.file))
            .ok_or_else(|| {
                io::Error::other(format!("pack {seq} is not this node's to append to"))
            })?;
        let at = RecordAt {
            seq,
            offset: pack.bytes,
        };
        let head = packfmt::record_header(at, kind, body)
            .ok_or_else(|| io::Error::other("a pack record over 4 GiB"))?;
        let mut buf = Vec::with_capacity(head.len() + body.len());
        buf.extend_from_slice(&head);
        buf.extend_from_slice(body);
        file.write_all_at(&buf, at.offset)?;
        pack.bytes += buf.len() as u64;
        Ok(at)
    }

    /// Appends a shard (a shard file's bytes); it counts once committed.
    pub fn append_shard(&self, shard: &[u8]) -> io::Result<Loc> {
        let mut st = self.lock()?;
        if let Some(seq) = st.current
            && st.packs.get(&seq).is_some_and(|p| p.bytes >= PACK_TARGET)
        {
            st.current = None;
            self.release_if_done(&mut st, seq);
        }
        let mut seq = self.current(&mut st)?;
        if let Some(o) = st.packs.get(&seq).and_then(|p| p.owned.as_ref())
            && !same_file(&o.file, &self.path(seq))?
        {
            // The node folder was moved or deleted under the open pack: a
            // new pack is made where the folder should be, and where there
            // is none the write fails (close(2) reports it), as it would
            // without packs.
            tracing::warn!(
                "pack {} is gone while open (the node folder was moved or deleted); starting a new pack",
                self.path(seq).display()
            );
            st.current = None;
            self.release_if_done(&mut st, seq);
            seq = self.current(&mut st)?;
        }
        let at = Self::append(&mut st, seq, Kind::Shard, shard)?;
        if let Some(o) = st.packs.get_mut(&seq).and_then(|p| p.owned.as_mut()) {
            o.pending += 1;
        }
        let len = u32::try_from(shard.len()).map_err(|_| io::Error::other("shard over 4 GiB"))?;
        Ok(Loc { at, len })
    }

    /// Fails unless the pack this node writes, `seq`, is still the file at
    /// its path. Why: an open pack outlives its folder; after a `mv` or
    /// `rm -rf` of the node folder (or a disk unmounted under it) commits
    /// would land in a file nobody can find again, and count as durable.
    /// Checked once per pack per group commit, beside its `fdatasync`.
    fn still_linked(&self, st: &State, seq: u64) -> io::Result<()> {
        let Some(o) = st.packs.get(&seq).and_then(|p| p.owned.as_ref()) else {
            return Ok(());
        };
        let path = self.path(seq);
        if same_file(&o.file, &path)? {
            return Ok(());
        }
        Err(io::Error::new(
            ErrorKind::NotFound,
            format!(
                "pack {} is gone while open (the node folder was moved or deleted)",
                path.display()
            ),
        ))
    }

    /// Drops the write lock of an owned pack that is no longer current and
    /// has no pending records: it can be repacked from now on.
    fn release_if_done(&self, st: &mut State, seq: u64) {
        if st.current == Some(seq) {
            return;
        }
        if let Some(p) = st.packs.get_mut(&seq)
            && p.owned.as_ref().is_some_and(|o| o.pending == 0)
            && let Some(o) = p.owned.take()
        {
            // The read handle is the same open file: the lock goes with
            // ownership, not with the last handle.
            let _ = o.file.unlock();
        }
    }

    /// A shard record that will never be committed.
    pub fn discard(&self, loc: Loc) {
        let Ok(mut st) = self.lock() else { return };
        if let Some(o) = st.packs.get_mut(&loc.at.seq).and_then(|p| p.owned.as_mut()) {
            o.pending = o.pending.saturating_sub(1);
        }
        self.release_if_done(&mut st, loc.at.seq);
    }

    /// Commits shard records: one commit record per pack, then one
    /// `fdatasync` per pack. Once this returns the shards are durable and
    /// readable; a shard that was in the index already is replaced.
    pub fn commit(&self, items: &[(ShardKey, Loc)]) -> io::Result<()> {
        let mut by_pack: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (_, loc) in items {
            by_pack.entry(loc.at.seq).or_default().push(loc.at.offset);
        }
        let mut files = Vec::new();
        {
            let mut st = self.lock()?;
            for seq in by_pack.keys() {
                if let Err(e) = self.still_linked(&st, *seq) {
                    // The node folder was moved or deleted under the open
                    // pack: these shards went nowhere anyone can find. The
                    // next write makes a new pack where the folder should
                    // be, and fails where there is none.
                    if st.current == Some(*seq) {
                        st.current = None;
                    }
                    return Err(e);
                }
            }
            for (seq, offsets) in &by_pack {
                Self::append(&mut st, *seq, Kind::Commit, &packfmt::commit_body(offsets))?;
                if let Some(o) = st.packs.get(seq).and_then(|p| p.owned.as_ref()) {
                    files.push(Arc::clone(&o.file));
                }
            }
        }
        // The barrier, without holding up appends of the next group.
        for f in &files {
            f.sync_data()?;
        }
        let mut st = self.lock()?;
        for (key, loc) in items {
            if let Some(old) = st.index.insert(*key, *loc)
                && let Some(p) = st.packs.get_mut(&old.at.seq)
            {
                p.live = p.live.saturating_sub(old.record_len());
            }
            if let Some(p) = st.packs.get_mut(&loc.at.seq) {
                p.live += loc.record_len();
                if let Some(o) = p.owned.as_mut() {
                    o.pending = o.pending.saturating_sub(1);
                }
            }
        }
        for seq in by_pack.keys() {
            self.release_if_done(&mut st, *seq);
        }
        Ok(())
    }

    /// Where shard `key` is, and the pack open for reading.
    pub fn find(&self, key: ShardKey) -> io::Result<Option<(Loc, Arc<File>)>> {
        let mut st = self.lock()?;
        let Some(loc) = st.index.get(&key).copied() else {
            return Ok(None);
        };
        let path = self.path(loc.at.seq);
        let pack = st.packs.entry(loc.at.seq).or_default();
        let file = match &pack.file {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(File::open(&path)?);
                pack.file = Some(Arc::clone(&f));
                return Ok(Some((loc, f)));
            }
        };
        drop(st);
        // A pack kept open for reading outlives its folder too: a read must
        // notice the folder is gone (a node offline), not serve a file
        // that is no longer there. Two stats, outside the node's lock.
        if !same_file(&file, &path)? {
            let mut st = self.lock()?;
            if let Some(p) = st.packs.get_mut(&loc.at.seq)
                && p.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &file))
            {
                p.file = None;
            }
            return Err(io::Error::new(
                ErrorKind::NotFound,
                format!("pack {} is gone while open", path.display()),
            ));
        }
        Ok(Some((loc, file)))
    }

    /// Removes shard `key` with a tombstone (made durable by the next
    /// commit's barrier, as a removed shard file is by the file system's
    /// next journal commit); false if no pack holds it.
    pub fn remove(&self, key: ShardKey) -> io::Result<bool> {
        let mut st = self.lock()?;
        let Some(loc) = st.index.get(&key).copied() else {
            return Ok(false);
        };
        self.tombstone(&mut st, key, loc)?;
        let seq = loc.at.seq;
        self.repack_if_due(&mut st, seq);
        Ok(true)
    }

    fn tombstone(&self, st: &mut State, key: ShardKey, loc: Loc) -> io::Result<()> {
        let cur = self.current(st)?;
        let body = packfmt::tombstone_body(loc.at, key);
        Self::append(st, cur, Kind::Tombstone, &body)?;
        st.index.remove(&key);
        if let Some(p) = st.packs.get_mut(&loc.at.seq) {
            p.live = p.live.saturating_sub(loc.record_len());
        }
        if let Some(p) = st.packs.get_mut(&cur) {
            p.tombstones.push((loc.at, key));
        }
        Ok(())
    }

    /// Removes every shard of `object` durably; how many there were.
    pub fn remove_object(&self, object: ObjectId) -> io::Result<usize> {
        let mut st = self.lock()?;
        let lo = ShardKey { object, index: 0 };
        let hi = ShardKey {
            object,
            index: u8::MAX,
        };
        let found: Vec<(ShardKey, Loc)> = st.index.range(lo..=hi).map(|(k, l)| (*k, *l)).collect();
        for (key, loc) in &found {
            self.tombstone(&mut st, *key, *loc)?;
        }
        if !found.is_empty() {
            Self::sync_current(&st)?;
            let seqs: Vec<u64> = found.iter().map(|(_, l)| l.at.seq).collect();
            for seq in seqs {
                self.repack_if_due(&mut st, seq);
            }
        }
        Ok(found.len())
    }

    fn sync_current(st: &State) -> io::Result<()> {
        if let Some(o) = st
            .current
            .and_then(|s| st.packs.get(&s))
            .and_then(|p| p.owned.as_ref())
        {
            o.file.sync_data()?;
        }
        Ok(())
    }

    /// Committed shards and their sizes.
    pub fn list(&self) -> io::Result<Vec<(ShardKey, u64)>> {
        Ok(self
            .lock()?
            .index
            .iter()
            .map(|(k, l)| (*k, u64::from(l.len)))
            .collect())
    }

    /// Space use.
    pub fn stats(&self) -> io::Result<PackStats> {
        let st = self.lock()?;
        Ok(PackStats {
            packs: st.packs.len(),
            bytes: st.packs.values().map(|p| p.bytes + p.tail).sum(),
            dead: st.packs.values().map(Pack::dead).sum(),
        })
    }

    /// Repacks pack `seq` if enough of it is dead. Failures are logged:
    /// the pack stays as it is and the next removal tries again.
    fn repack_if_due(&self, st: &mut State, seq: u64) {
        let Some(p) = st.packs.get(&seq) else { return };
        let used = (p.bytes + p.tail).saturating_sub(PACK_HEADER_LEN);
        if used == 0 || (p.dead() as f64) < REPACK_DEAD * used as f64 {
            return;
        }
        if st.current == Some(seq) {
            if p.owned.as_ref().is_some_and(|o| o.pending > 0) {
                return;
            }
            // Its dead half is worth more than its room for new shards.
            st.current = None;
        }
        self.release_if_done(st, seq);
        if let Err(e) = self.repack(st, seq) {
            tracing::warn!(
                "cannot repack {}: {e}; it stays as it is",
                self.path(seq).display()
            );
        }
    }

    /// Copies pack `seq`'s live shards and still needed tombstones to the
    /// current pack, makes them durable, then removes `seq`. A crash in
    /// between leaves both copies, which hold the same bytes.
    fn repack(&self, st: &mut State, seq: u64) -> io::Result<()> {
        let Some(pack) = st.packs.get(&seq) else {
            return Ok(());
        };
        if pack.owned.is_some() {
            return Ok(());
        }
        let old = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(seq))?;
        if old.try_lock().is_err() {
            // Another process appends to it.
            return Ok(());
        }
        let live: Vec<(ShardKey, Loc)> = st
            .index
            .iter()
            .filter(|(_, l)| l.at.seq == seq)
            .map(|(k, l)| (*k, *l))
            .collect();
        let keep: Vec<(RecordAt, ShardKey)> = pack
            .tombstones
            .iter()
            .filter(|(t, _)| t.seq != seq && st.packs.contains_key(&t.seq))
            .copied()
            .collect();
        let cur = self.current(st)?;
        if cur == seq {
            // Cannot happen while `old` holds the lock (the current pack is
            // never the locked one); never copy a pack into itself.
            return Err(io::Error::other(format!(
                "pack {seq} would be repacked into itself"
            )));
        }
        let mut moved = Vec::with_capacity(live.len());
        let mut body = Vec::new();
        for (key, loc) in &live {
            body.resize(loc.len as usize, 0);
            old.read_exact_at(&mut body, loc.body())?;
            let at = Self::append(st, cur, Kind::Shard, &body)?;
            let new = Loc { at, len: loc.len };
            // A commit record right after each copy: damage to the new
            // pack then costs only the shards it hits, not all that one
            // commit record would have named.
            Self::append(st, cur, Kind::Commit, &packfmt::commit_body(&[at.offset]))?;
            moved.push((*key, new));
        }
        for (target, key) in &keep {
            let b = packfmt::tombstone_body(*target, *key);
            debug_assert_eq!(b.len(), TOMBSTONE_LEN);
            Self::append(st, cur, Kind::Tombstone, &b)?;
        }
        Self::sync_current(st)?;
        for (key, loc) in &moved {
            st.index.insert(*key, *loc);
        }
        if let Some(p) = st.packs.get_mut(&cur) {
            p.live += moved.iter().map(|(_, l)| l.record_len()).sum::<u64>();
            p.tombstones.extend(keep);
        }
        st.packs.remove(&seq);
        fs::remove_file(self.path(seq))?;
        crate::sys::fsync_dir(&self.dir)?;
        tracing::info!(
            "repacked {}: {} live shards moved to pack {cur}",
            self.path(seq).display(),
            moved.len()
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;

    fn shard(object: u8, index: u8, payload: usize) -> (ShardKey, Vec<u8>) {
        let layout = StripeLayout::plan(3, 5, (payload * 3) as u64, 1 << 20).unwrap();
        let id = ObjectId([object; 16]);
        let h = ShardHeader::new(id, index, &layout);
        let mut bytes = h.encode().to_vec();
        bytes.resize(h.file_len() as usize, object ^ index);
        (h.key, bytes)
    }

    fn read(p: &Packs, key: ShardKey) -> Option<Vec<u8>> {
        let (loc, f) = p.find(key).unwrap()?;
        let mut b = vec![0u8; loc.len as usize];
        f.read_exact_at(&mut b, loc.body()).unwrap();
        Some(b)
    }

    /// A node folder moved away (or deleted, or a disk unmounted) under an
    /// open pack: the pending write's commit fails instead of counting as
    /// durable in a file nobody finds again, the next write fails where
    /// the folder is gone, and reads stop serving the vanished pack.
    #[test]
    fn a_folder_moved_under_an_open_pack_fails_writes_and_reads() {
        let d = tempfile::tempdir().unwrap();
        let node = d.path().join("node");
        let dir = node.join("packs");
        std::fs::create_dir_all(&dir).unwrap();
        let p = Packs::new(&dir);
        let (k1, b1) = shard(1, 0, 500);
        let (k2, b2) = shard(2, 0, 500);
        let l1 = p.append_shard(&b1).unwrap();
        p.commit(&[(k1, l1)]).unwrap();
        assert_eq!(read(&p, k1).unwrap(), b1);
        let l2 = p.append_shard(&b2).unwrap();
        std::fs::rename(&node, d.path().join("away")).unwrap();
        let e = p.commit(&[(k2, l2)]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("is gone while open"), "{e}");
        let e = p.append_shard(&b2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let e = p.find(k1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        // Back in place, the committed shard reads again.
        std::fs::rename(d.path().join("away"), &node).unwrap();
        assert_eq!(read(&p, k1).unwrap(), b1);
    }

    #[test]
    fn committed_shards_survive_a_reopen_and_uncommitted_do_not() {
        let d = tempfile::tempdir().unwrap();
        let p = Packs::new(d.path());
        let (k1, b1) = shard(1, 0, 5000);
        let (k2, b2) = shard(2, 1, 300);
        let l1 = p.append_shard(&b1).unwrap();
        let l2 = p.append_shard(&b2).unwrap();
        p.commit(&[(k1, l1)]).unwrap();
        assert_eq!(read(&p, k1).unwrap(), b1);
        assert!(read(&p, k2).is_none(), "not committed yet");
        p.discard(l2);
        drop(p);
        let p = Packs::new(d.path());
        assert_eq!(read(&p, k1).unwrap(), b1);
        assert!(
            read(&p, k2).is_none(),
            "a discarded write never becomes a shard"
        );
        assert_eq!(p.list().unwrap(), vec![(k1, b1.len() as u64)]);
        assert!(p.stats().unwrap().dead >= b2.len() as u64);
    }

    #[test]
    fn the_next_writer_appends_to_a_cleanly_ended_pack_nobody_holds() {
        let d = tempfile::tempdir().unwrap();
        let (k1, b1) = shard(1, 0, 100);
        let (k2, b2) = shard(2, 0, 100);
        let first = Packs::new(d.path());
        let l1 = first.append_shard(&b1).unwrap();
        first.commit(&[(k1, l1)]).unwrap();
        // Held by `first`: a second writer makes its own pack.
        let second = Packs::new(d.path());
        assert_eq!(second.append_shard(&b2).unwrap().at.seq, 2);
        drop((first, second));
        let third = Packs::new(d.path());
        let l2 = third.append_shard(&b2).unwrap();
        assert_eq!(
            l2.at.seq, 2,
            "the newest pack, ended cleanly, is taken over"
        );
        third.commit(&[(k2, l2)]).unwrap();
        drop(third);
        let p = Packs::new(d.path());
        assert_eq!(read(&p, k1).unwrap(), b1);
        assert_eq!(read(&p, k2).unwrap(), b2);
    }

    #[test]
    fn damage_costs_only_the_records_it_hits() {
        let d = tempfile::tempdir().unwrap();
        let p = Packs::new(d.path());
        let mut keys = Vec::new();
        for i in 0..5u8 {
            let (k, b) = shard(i, 0, 300);
            let l = p.append_shard(&b).unwrap();
            p.commit(&[(k, l)]).unwrap();
            keys.push((k, b, l));
        }
        drop(p);
        // Zero the second shard's record header.
        let path = d.path().join(packfmt::file_name(1));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0u8; 24], keys[1].2.at.offset).unwrap();
        let p = Packs::new(d.path());
        for (i, (k, b, _)) in keys.iter().enumerate() {
            match i {
                1 => assert!(read(&p, *k).is_none()),
                _ => assert_eq!(read(&p, *k).unwrap(), *b, "shard {i} after the damage"),
            }
        }
        assert!(p.stats().unwrap().dead >= 300);
    }

    #[test]
    fn a_torn_tail_ends_the_pack() {
        let d = tempfile::tempdir().unwrap();
        let p = Packs::new(d.path());
        let (k1, b1) = shard(1, 0, 100);
        let (k2, b2) = shard(2, 0, 100);
        let l1 = p.append_shard(&b1).unwrap();
        p.commit(&[(k1, l1)]).unwrap();
        let l2 = p.append_shard(&b2).unwrap();
        p.commit(&[(k2, l2)]).unwrap();
        drop(p);
        let path = d.path().join(packfmt::file_name(1));
        let len = fs::metadata(&path).unwrap().len();
        // Cut into the second commit record.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let p = Packs::new(d.path());
        assert_eq!(read(&p, k1).unwrap(), b1);
        assert!(read(&p, k2).is_none(), "its commit record was torn");
        // A new writer starts a new pack rather than appending after garbage.
        let (k3, b3) = shard(3, 0, 100);
        let l3 = p.append_shard(&b3).unwrap();
        assert_eq!(l3.at.seq, 2);
        p.commit(&[(k3, l3)]).unwrap();
        drop(p);
        let p = Packs::new(d.path());
        assert_eq!(read(&p, k3).unwrap(), b3);
    }

    #[test]
    fn tombstones_remove_and_repack_reclaims() {
        let d = tempfile::tempdir().unwrap();
        let p = Packs::new(d.path());
        let mut keys = Vec::new();
        for i in 0..10u8 {
            let (k, b) = shard(i, 0, 2000);
            let l = p.append_shard(&b).unwrap();
            p.commit(&[(k, l)]).unwrap();
            keys.push((k, b));
        }
        // Removals made durable, and seen by another opener.
        assert_eq!(p.remove_object(keys[0].0.object).unwrap(), 1);
        assert!(!p.remove(keys[0].0).unwrap());
        let other = Packs::new(d.path());
        assert!(read(&other, keys[0].0).is_none());
        assert_eq!(read(&other, keys[1].0).unwrap(), keys[1].1);
        drop(other);
        // Past half dead, the pack is repacked into a new one.
        for (k, _) in &keys[1..7] {
            assert!(p.remove(*k).unwrap());
        }
        let packs: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !packs.iter().any(|n| n == packfmt::file_name(1).as_str()),
            "pack 1 was not repacked: {packs:?}"
        );
        for (k, b) in &keys[7..] {
            assert_eq!(read(&p, *k).unwrap(), *b, "{k} after the repack");
        }
        drop(p);
        let p = Packs::new(d.path());
        for (k, b) in &keys[7..] {
            assert_eq!(read(&p, *k).unwrap(), *b, "{k} after reopening");
        }
        for (k, _) in &keys[..7] {
            assert!(read(&p, *k).is_none(), "{k} came back");
        }
        assert_eq!(p.list().unwrap().len(), 3);
        // The repacked pack holds little dead space.
        let s = p.stats().unwrap();
        assert!(s.dead < s.bytes / 2, "{s:?}");
    }

    #[test]
    fn a_rewritten_shard_reads_its_latest_copy() {
        let d = tempfile::tempdir().unwrap();
        let p = Packs::new(d.path());
        let (k, b1) = shard(4, 2, 700);
        let mut b2 = b1.clone();
        let last = b2.len() - 1;
        b2[last] ^= 0xff;
        let l1 = p.append_shard(&b1).unwrap();
        p.commit(&[(k, l1)]).unwrap();
        let l2 = p.append_shard(&b2).unwrap();
        p.commit(&[(k, l2)]).unwrap();
        assert_eq!(read(&p, k).unwrap(), b2);
        drop(p);
        let p = Packs::new(d.path());
        assert_eq!(read(&p, k).unwrap(), b2);
        assert_eq!(p.remove_object(k.object).unwrap(), 1);
        drop(p);
        assert!(read(&Packs::new(d.path()), k).is_none());
    }
}
