//! Reading sealed content at random offsets: only the segments a read
//! needs are fetched (their chunks verified against the manifest), with
//! bounded caches of verified chunks, decrypted segments and recovered keys,
//! and chunks fetched ahead of sequential readers.
//!
//! The crypto is the envelope's [`ObjectReader`]: it decrypts and
//! authenticates each segment (GCM tag) and walks the object's MAC `M` as
//! segments are visited, in any order, so a whole-file read verifies `M` at
//! no extra cost; a mismatch fails that read with EIO and marks the object
//! bad. A file that holds only part of an object gets the rest of the
//! object walked once its part was read whole (`Reader::finish_walk`).
//! Otherwise this file only caches and prefetches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuser::Errno;
use zeroize::Zeroize;

use super::VaultHandle;
use crate::ObjectId;
use crate::cache::ByteLru;
use crate::dispersal::{ChunkCache, Manifest, ReadReport};
use crate::envelope::{EnvelopeError, MacStatus, ObjectReader};
use crate::namespace::Extent;

/// Bytes of verified chunks kept.
const CHUNK_CACHE: usize = 48 << 20;
/// Bytes of decrypted segments kept.
const SEGMENT_CACHE: usize = 64 << 20;
/// Objects whose keys are kept.
const KEYS_KEPT: usize = 4096;

/// How far ahead of a sequential reader chunks are fetched in the background.
const PREFETCH: u64 = 4 << 20;

/// What reading one object needs, kept while it is being read.
pub struct ObjectKeys {
    manifest: Manifest,
    /// Keys, segment opening and the `M` walk of the object.
    reader: ObjectReader,
    /// Bytes of `N` already fetched (or asked for) ahead of readers.
    prefetched: AtomicU64,
}

/// A prefetch request: an object's keys and the byte range of `N` to fetch.
type PrefetchJob = (Arc<ObjectKeys>, u64, u64);

/// The mount's reader of sealed content.
pub struct Reader {
    inner: Arc<Inner>,
    prefetch: Mutex<Option<crossbeam_channel::Sender<PrefetchJob>>>,
}

pub struct Inner {
    vault: VaultHandle,
    chunks: ChunkCache,
    segments: ByteLru<(ObjectId, u64), Vec<u8>>,
    keys: Mutex<HashMap<ObjectId, Arc<ObjectKeys>>>,
}

impl std::ops::Deref for Reader {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Reader {
    /// A reader over `vault`, with two background threads that fetch
    /// (and verify) chunks ahead of sequential readers.
    pub fn new(vault: VaultHandle) -> Reader {
        let inner = Arc::new(Inner {
            vault,
            chunks: ChunkCache::new(CHUNK_CACHE),
            segments: ByteLru::new(SEGMENT_CACHE),
            keys: Mutex::new(HashMap::new()),
        });
        // A destroyed object's keys and plaintext leave memory with it,
        // not when the caches happen to fill (weak: the vault must not keep
        // the reader alive).
        let weak = Arc::downgrade(&inner);
        inner.vault.on_destroy(Box::new(move |ids| {
            if let Some(inner) = weak.upgrade() {
                inner.forget(ids);
            }
        }));
        let (tx, rx) = crossbeam_channel::unbounded::<PrefetchJob>();
        for i in 0..2 {
            let (inner, rx) = (Arc::clone(&inner), rx.clone());
            let _ = std::thread::Builder::new()
                .name(format!("qsfs-prefetch-{i}"))
                .spawn(move || {
                    for (keys, start, end) in rx {
                        // Failures show up (and are reported) when the reader
                        // gets there itself.
                        let _ = inner.n_bytes(&keys, start, end);
                    }
                });
        }
        Reader {
            inner,
            prefetch: Mutex::new(Some(tx)),
        }
    }

    /// Stops the prefetch threads.
    pub fn stop(&self) {
        self.prefetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Fills `out` with the file bytes at `offset` described by `extents`.
    /// Bytes no extent covers are holes: `out` must come zeroed.
    pub fn read(&self, extents: &[Extent], offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        let end = offset + out.len() as u64;
        for e in extents {
            let (a, b) = (offset.max(e.offset), end.min(e.offset + e.len));
            if a >= b {
                continue;
            }
            let dst = &mut out[(a - offset) as usize..(b - offset) as usize];
            let keys = self.read_object(&e.object, e.object_offset + (a - e.offset), dst)?;
            self.finish_walk(&e.object, &keys, extents)?;
        }
        Ok(())
    }

    fn read_object(
        &self,
        id: &ObjectId,
        offset: u64,
        out: &mut [u8],
    ) -> Result<Arc<ObjectKeys>, Errno> {
        let keys = self.keys(id)?;
        if keys.reader.mac_status() == MacStatus::Failed {
            return Err(Errno::EIO);
        }
        let g = keys.reader.geometry();
        let end = offset + out.len() as u64;
        if end > g.plain_len() {
            tracing::error!("object {id}: read past its end ({end} > {})", g.plain_len());
            return Err(Errno::EIO);
        }
        let segs = g.segments_for_plain(offset..end);
        if !segs.is_empty() {
            let upto = keys.reader.segment_read_range(segs.end - 1).end;
            self.prefetch_after(&keys, upto);
        }
        for i in segs {
            let seg = self.segment(id, &keys, i)?;
            let span = g.segment_span_in_plain(i);
            let (a, b) = (offset.max(span.start), end.min(span.end));
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&seg[(a - span.start) as usize..(b - span.start) as usize]);
        }
        Ok(keys)
    }

    /// Checks all of object `id` against `M` once the file (`extents`) has
    /// had all of its part of the object read, when that part is not the
    /// whole object.
    ///
    /// A file can hold only a window of an object: after a truncate or a
    /// partial rewrite in the mount, its extents keep using the old object
    /// for the bytes that did not change. Reading the file whole then
    /// never visits the object's other segments, so its `M` walk would
    /// never complete and a modified object would read without error. As
    /// `qsfs get` decrypts and checks the whole object of such an extent,
    /// the mount visits the rest (the plaintext is wiped, not cached) when
    /// the last segment of the window was read, and fails that read with
    /// EIO if `M` does not verify. A read of part of the window (`tail`)
    /// costs nothing more; a whole read costs the object's other bytes
    /// once per object while its keys are cached.
    fn finish_walk(
        &self,
        id: &ObjectId,
        keys: &ObjectKeys,
        extents: &[Extent],
    ) -> Result<(), Errno> {
        let r = &keys.reader;
        let MacStatus::Pending { visited, segments } = r.mac_status() else {
            return Ok(());
        };
        let g = r.geometry();
        let mut window: Vec<std::ops::Range<u64>> = extents
            .iter()
            .filter(|e| e.object == *id)
            .map(|e| g.segments_for_plain(e.object_offset..e.object_offset + e.len))
            .filter(|s| !s.is_empty())
            .collect();
        window.sort_by_key(|s| s.start);
        let (mut count, mut upto) = (0u64, 0u64);
        for s in &window {
            count += s.end.saturating_sub(s.start.max(upto));
            upto = upto.max(s.end);
        }
        // A file over every segment completes the walk by reading; one
        // with fewer visited segments than its window has not read it all.
        if count >= segments || visited < count {
            return Ok(());
        }
        if window.iter().any(|s| s.clone().any(|i| r.mac_wants(i))) {
            return Ok(());
        }
        for i in 0..segments {
            if !r.mac_wants(i) {
                continue;
            }
            let range = r.segment_read_range(i);
            let bytes = self.n_bytes(keys, range.start, range.end)?;
            let mut plain = r
                .open_segment_bytes(i, bytes)
                .map_err(|e| open_error(id, e))?;
            plain.zeroize();
        }
        Ok(())
    }

    /// Asks the prefetch threads for the chunks after `upto` in `N`, once
    /// per window, when a read reaches near what was fetched so far.
    fn prefetch_after(&self, keys: &Arc<ObjectKeys>, upto: u64) {
        let len_n = keys.reader.geometry().len_n();
        let have = keys.prefetched.load(Ordering::Relaxed);
        if have >= len_n || upto + PREFETCH / 2 < have {
            return;
        }
        let from = have.max(upto);
        let to = (from + PREFETCH).min(len_n);
        keys.prefetched.store(to, Ordering::Relaxed);
        if let Some(tx) = self
            .prefetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send((Arc::clone(keys), from, to));
        }
    }
}

impl Inner {
    /// Drops the keys and decrypted segments of `ids`.
    fn forget(&self, ids: &[ObjectId]) {
        {
            let mut keys = self
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in ids {
                keys.remove(id);
            }
        }
        let gone: std::collections::HashSet<&ObjectId> = ids.iter().collect();
        self.segments.retain(|(id, _)| !gone.contains(id));
    }

    /// Whether the keys of `id` are in memory.
    #[cfg(test)]
    pub(crate) fn holds_keys(&self, id: &ObjectId) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(id)
    }

    fn keys(&self, id: &ObjectId) -> Result<Arc<ObjectKeys>, Errno> {
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
        {
            return Ok(Arc::clone(k));
        }
        let manifest = self.vault.manifest(id).map_err(|e| {
            tracing::error!("read: {e}");
            Errno::EIO
        })?;
        let mut warnings = Vec::new();
        let mut report = ReadReport::default();
        let rec = self.vault.recover(&manifest, &mut warnings, &mut report);
        for w in &warnings {
            self.vault.warnings().warn(
                "keystore",
                crate::logsum::Cause::KeyDamaged,
                crate::logsum::item(id, None),
                || format!("object {id}: {w}; run `qsfs keys repair` after unmounting"),
            );
        }
        self.note_bad_shards(&manifest, &report);
        let rec = rec.map_err(|e| {
            tracing::error!("object {id}: cannot recover its keys: {e}");
            Errno::EIO
        })?;
        let keys = Arc::new(ObjectKeys {
            manifest,
            reader: ObjectReader::new(rec),
            prefetched: AtomicU64::new(0),
        });
        let mut map = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= KEYS_KEPT {
            map.clear();
        }
        map.insert(*id, Arc::clone(&keys));
        Ok(keys)
    }

    fn note_bad_shards(&self, manifest: &Manifest, report: &ReadReport) {
        self.vault.note_bad_shards(manifest, report);
    }

    /// Bytes of `N` in `range`, through the chunk cache.
    fn n_bytes(&self, keys: &ObjectKeys, start: u64, end: u64) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; (end - start) as usize];
        let mut report = ReadReport::default();
        let r =
            self.vault
                .read_at_cached(&keys.manifest, start, &mut buf, &mut report, &self.chunks);
        if !report.bad.is_empty() {
            self.note_bad_shards(&keys.manifest, &report);
        }
        r.map_err(|e| {
            tracing::error!("read: {e}");
            Errno::EIO
        })?;
        Ok(buf)
    }

    /// Plaintext of segment `i`, decrypted and authenticated by the
    /// envelope's reader (cached). A cached segment is opened again while
    /// the `M` walk still needs its bytes, so a whole read checks `M` even
    /// when parts of it were read before.
    fn segment(&self, id: &ObjectId, keys: &ObjectKeys, i: u64) -> Result<Arc<Vec<u8>>, Errno> {
        let r = &keys.reader;
        if let Some(seg) = self.segments.get(&(*id, i))
            && !r.mac_wants(i)
        {
            return Ok(seg);
        }
        let range = r.segment_read_range(i);
        let bytes = self.n_bytes(keys, range.start, range.end)?;
        let plain = r
            .open_segment_bytes(i, bytes)
            .map_err(|e| open_error(id, e))?;
        let seg = Arc::new(plain);
        self.segments.put((*id, i), Arc::clone(&seg), seg.len());
        Ok(seg)
    }
}

/// Logs why a segment of `id` did not open; the read fails with EIO.
fn open_error(id: &ObjectId, e: EnvelopeError) -> Errno {
    match e {
        EnvelopeError::MacMismatch => tracing::error!(
            "object {id} fails its integrity check (M): it was modified; reads of it fail"
        ),
        e => tracing::error!("object {id}: {e}"),
    }
    Errno::EIO
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::namespace::VaultPath;
    use crate::vault::{PutSource, Vault};

    /// A direct vault with a reader over it.
    fn vault_and_reader(dir: &std::path::Path) -> (Arc<Vault>, Reader) {
        let vault = Arc::new(crate::vault::direct_test_vault(&dir.join("v")).unwrap());
        let reader = Reader::new(VaultHandle::new(Arc::clone(&vault)));
        (vault, reader)
    }

    /// Puts `data` at `/f` and returns its one extent.
    fn put(vault: &Vault, dir: &std::path::Path, data: &[u8]) -> Extent {
        let local = dir.join("plain");
        std::fs::write(&local, data).unwrap();
        let path = VaultPath::parse("/f").unwrap();
        vault.put(&PutSource::File(local), &path).unwrap();
        let (_, inode) = vault.namespace().resolve(&path).unwrap();
        assert_eq!(inode.extents.len(), 1);
        inode.extents[0]
    }

    /// Rewrites object `id` on the nodes with the byte of `N` that `pick`
    /// names flipped, and a manifest of the tampered bytes: the chunks
    /// verify, so only the envelope (a GCM tag, or `M`) can tell.
    fn tamper(vault: &Vault, reader: &Reader, id: &ObjectId, pick: impl Fn(&ObjectReader) -> u64) {
        let at = pick(&reader.keys(id).unwrap().reader);
        let ec = vault.dispersal();
        let old = ec.manifest(id).unwrap();
        let mut n = vec![0u8; old.layout.object_len as usize];
        ec.read_at(&old, 0, &mut n, &mut ReadReport::default())
            .unwrap();
        n[at as usize] ^= 0x20;
        assert!(ec.remove_shards(&old, u32::MAX).is_empty());
        let mut w = ec.write_object_inline(*id, &n, old.plain_len, &[]).unwrap();
        for r in ec.sync(&mut [&mut w]) {
            r.unwrap();
        }
        assert!(ec.store().replace_manifest(&old, &w.manifest).unwrap());
        // The keys looked up above came with the old manifest.
        reader.forget(&[*id]);
    }

    /// Reads `len` bytes of the file described by `extents` front to back
    /// in the kernel's 128 KiB requests; the result of each.
    fn read_through(reader: &Reader, extents: &[Extent], len: u64) -> Vec<Result<Vec<u8>, Errno>> {
        (0..len)
            .step_by(128 << 10)
            .map(|at| {
                let mut out = vec![0u8; (len - at).min(128 << 10) as usize];
                reader.read(extents, at, &mut out).map(|()| out)
            })
            .collect()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A rename over a file drops the replaced file's keys once the
    /// mount's tick (flush, then garbage collection) destroys its object,
    /// as it does after the fs layer's rename; the renamed file's keys stay.
    #[test]
    fn a_file_renamed_over_leaves_the_key_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, reader) = vault_and_reader(dir.path());
        let old = put(&vault, dir.path(), &data(100_000));
        let local = dir.path().join("plain2");
        std::fs::write(&local, data(50_000)).unwrap();
        let g = VaultPath::parse("/g").unwrap();
        vault.put(&PutSource::File(local), &g).unwrap();
        let (_, inode) = vault.namespace().resolve(&g).unwrap();
        let new = inode.extents[0];
        for e in [old, new] {
            let mut out = vec![0u8; 1000];
            reader.read(&[e], 0, &mut out).unwrap();
            assert!(reader.holds_keys(&e.object));
        }
        let ns = vault.namespace();
        let removed = ns
            .rename(
                crate::namespace::ROOT,
                b"g",
                crate::namespace::ROOT,
                b"f",
                crate::namespace::RenameFlags::default(),
                "/f",
                &|_| false,
            )
            .unwrap();
        assert_eq!(removed.objects, vec![old.object]);
        ns.flush_durable().unwrap();
        vault.collect_garbage().unwrap();
        assert!(
            !reader.holds_keys(&old.object),
            "a file renamed over keeps its keys cached"
        );
        assert!(reader.holds_keys(&new.object));
        reader.stop();
    }

    /// Every read of `got` (128 KiB each, from offset 0) but the last
    /// returned `d`'s bytes; the last failed with EIO (`why` if not).
    fn only_the_last_read_fails(got: &[Result<Vec<u8>, Errno>], d: &[u8], why: &str) {
        let (last, rest) = got.split_last().unwrap();
        for (k, r) in rest.iter().enumerate() {
            let at = k * (128 << 10);
            assert!(
                r.as_ref().is_ok_and(|b| b[..] == d[at..at + b.len()]),
                "read at {at}: {r:?}"
            );
        }
        assert_eq!(last.as_ref().err(), Some(&Errno::EIO), "{why}");
    }

    /// Finding 7 (a guard): `M` over a whole file is checked by the mount
    /// too. With the stored `M` altered every segment still passes its GCM
    /// tag, so every read but the one that completes the walk succeeds;
    /// that one fails with EIO, and so does every later read, cached
    /// segments included.
    #[test]
    fn a_whole_read_fails_at_its_end_when_m_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, reader) = vault_and_reader(dir.path());
        let d = data(300_000);
        let e = put(&vault, dir.path(), &d);
        tamper(&vault, &reader, &e.object, |r| r.geometry().len_n() - 1);
        let got = read_through(&reader, &[e], e.len);
        only_the_last_read_fails(&got, &d, "the last read passed");
        let mut out = vec![0u8; 100];
        assert_eq!(reader.read(&[e], 0, &mut out), Err(Errno::EIO));
        assert_eq!(
            reader.keys(&e.object).unwrap().reader.mac_status(),
            MacStatus::Failed
        );
        reader.stop();
    }

    /// Finding 7 (a guard): a segment whose GCM tag fails is never
    /// released, whichever read reaches it, while the other segments of
    /// the object still read; the walk of `M` never completes.
    #[test]
    fn a_tampered_segment_is_never_released_by_a_random_read() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, reader) = vault_and_reader(dir.path());
        let d = data(300_000);
        let e = put(&vault, dir.path(), &d);
        tamper(&vault, &reader, &e.object, |r| {
            r.geometry().segment_span_in_n(2)[0].start + 100
        });
        let seg = 64 << 10;
        for (at, len, ok) in [
            (3 * seg + 5, 1000, true),
            (2 * seg + 10, 10, false),
            (0, 100, true),
            (seg, 3 * seg, false),
            (2 * seg - 1, 2, false),
            (4 * seg, 300_000 - 4 * seg, true),
        ] {
            let mut out = vec![0u8; len];
            let r = reader.read(&[e], at as u64, &mut out);
            if ok {
                assert_eq!(r, Ok(()), "read of {len} at {at}");
                assert!(out == d[at..at + len], "read of {len} at {at}");
            } else {
                assert_eq!(r, Err(Errno::EIO), "read of {len} at {at}");
                let (a, b) = ((2 * seg).max(at), (3 * seg).min(at + len));
                assert!(
                    out[a - at..b - at].iter().all(|&x| x == 0),
                    "bytes of the bad segment were released"
                );
            }
        }
        let got = read_through(&reader, &[e], e.len);
        assert_eq!(got[1].as_ref().err(), Some(&Errno::EIO));
        assert!(matches!(
            reader.keys(&e.object).unwrap().reader.mac_status(),
            MacStatus::Pending { .. }
        ));
        reader.stop();
    }

    /// Finding 7: a file that holds only part of an object (after a
    /// truncate or a partial rewrite in the mount) still has all of the
    /// object checked against `M` when the file is read whole, as `qsfs
    /// get` does; reading only some of it (`tail`) costs no more than
    /// before.
    #[test]
    fn a_whole_read_of_part_of_an_object_checks_all_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, reader) = vault_and_reader(dir.path());
        let d = data(600_000);
        let e = put(&vault, dir.path(), &d);
        tamper(&vault, &reader, &e.object, |r| r.geometry().len_n() - 1);
        // The file is the object's first 400_000 bytes (segments 0..=6 of
        // 10), as after a truncate.
        let window = Extent { len: 400_000, ..e };
        let got = read_through(&reader, &[window], window.len);
        only_the_last_read_fails(
            &got,
            &d,
            "a whole read of a window into a modified object passed",
        );
        assert_eq!(
            reader.keys(&e.object).unwrap().reader.mac_status(),
            MacStatus::Failed
        );
        // A window inside the object (bytes 70_000..170_000), from a fresh
        // walk: its one read covers it and fails.
        reader.forget(&[e.object]);
        let inside = Extent {
            len: 100_000,
            object_offset: 70_000,
            ..e
        };
        let mut out = vec![0u8; 100_000];
        assert_eq!(reader.read(&[inside], 0, &mut out), Err(Errno::EIO));

        // An unmodified object: reading the end of the window visits
        // nothing more; reading the window whole verifies `M`.
        let d = data(250_000);
        let e = put(&vault, dir.path(), &d);
        let window = Extent { len: 100_000, ..e };
        let mut tail = vec![0u8; 10];
        assert_eq!(reader.read(&[window], 99_990, &mut tail), Ok(()));
        assert!(tail == d[99_990..100_000]);
        assert_eq!(
            reader.keys(&e.object).unwrap().reader.mac_status(),
            MacStatus::Pending {
                visited: 1,
                segments: 4
            }
        );
        let got = read_through(&reader, &[window], window.len);
        assert!(got.iter().all(Result::is_ok));
        assert_eq!(
            reader.keys(&e.object).unwrap().reader.mac_status(),
            MacStatus::Verified
        );
        reader.stop();
    }

    /// Deleting or replacing a file takes its old object's keys and
    /// decrypted segments out of the reader's caches at once.
    #[test]
    fn destroyed_objects_leave_the_key_and_segment_caches() {
        let dir = tempfile::tempdir().unwrap();
        let (vault, reader) = vault_and_reader(dir.path());
        let local = dir.path().join("plain");
        let read_back = |path: &VaultPath| {
            let (_, inode) = vault.namespace().resolve(path).unwrap();
            let mut out = vec![0; inode.size as usize];
            reader.read(&inode.extents, 0, &mut out).unwrap();
            (inode.extents[0].object, out)
        };
        let (a, b) = (
            VaultPath::parse("/a").unwrap(),
            VaultPath::parse("/b").unwrap(),
        );
        for (path, byte) in [(&a, b'a'), (&b, b'b')] {
            std::fs::write(&local, vec![byte; 100_000]).unwrap();
            vault.put(&PutSource::File(local.clone()), path).unwrap();
        }
        let (id_a, got) = read_back(&a);
        assert_eq!(got, vec![b'a'; 100_000]);
        let (id_b, _) = read_back(&b);
        assert!(reader.holds_keys(&id_a) && reader.holds_keys(&id_b));
        assert!(reader.segments.get(&(id_a, 0)).is_some());

        vault.remove(&a, false).unwrap();
        assert!(
            !reader.holds_keys(&id_a),
            "an unlinked file's keys stay cached"
        );
        assert!(reader.segments.get(&(id_a, 0)).is_none());
        assert!(reader.holds_keys(&id_b), "another file's keys were dropped");

        // Replacing /b destroys its old version.
        std::fs::write(&local, vec![b'c'; 100_000]).unwrap();
        vault.put(&PutSource::File(local.clone()), &b).unwrap();
        assert!(
            !reader.holds_keys(&id_b),
            "a replaced version's keys stay cached"
        );
        let (id_c, got) = read_back(&b);
        assert_ne!(id_c, id_b);
        assert_eq!(got, vec![b'c'; 100_000]);
        reader.stop();
    }
}
