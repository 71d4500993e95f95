//! Reading sealed content at random offsets: only the segments a read
//! needs are fetched (their chunks verified against the manifest) and
//! decrypted (each authenticated by its GCM tag), with bounded caches of
//! verified chunks, decrypted segments and recovered keys.
//!
//! A reader that walks an object from its first segment to its last also
//! feeds the object's MAC `M` as it goes (the bytes of `N` in order, KR and
//! R3 included), so a whole-file read verifies `M` at no extra cost; a
//! mismatch fails that read with EIO and marks the object bad.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::Errno;

use crate::ObjectId;
use crate::cache::ByteLru;
use crate::dispersal::{ChunkCache, Manifest, ReadReport};
use crate::envelope::derive::MacHasher;
use crate::envelope::{MAC_LEN, Recovered, SegmentCipher, TAG_LEN};
use crate::namespace::Extent;
use crate::vault::Vault;

/// Bytes of verified chunks kept.
const CHUNK_CACHE: usize = 48 << 20;
/// Bytes of decrypted segments kept.
const SEGMENT_CACHE: usize = 64 << 20;
/// Objects whose keys are kept.
const KEYS_KEPT: usize = 4096;

/// Sequential MAC check of one object. Segments that arrive ahead of the
/// next expected one (the kernel reads ahead in parallel) wait in
/// `ahead`, a few at most, so a front-to-back read still completes it.
struct MacTrack {
    next_seg: u64,
    next_n: u64,
    hasher: MacHasher,
    done: bool,
    ahead: std::collections::BTreeMap<u64, (u64, u64, Arc<Vec<u8>>)>,
}

/// Segments kept waiting for the MAC walk.
const MAC_AHEAD: usize = 32;
/// How far ahead of a sequential reader chunks are fetched in the background.
const PREFETCH: u64 = 4 << 20;

/// What reading one object needs, kept while it is being read.
pub struct ObjectKeys {
    manifest: Manifest,
    rec: Recovered,
    cipher: SegmentCipher,
    mac: Mutex<MacTrack>,
    corrupt: AtomicBool,
    /// Bytes of `N` already fetched (or asked for) ahead of readers.
    prefetched: std::sync::atomic::AtomicU64,
}

/// The mount's reader of sealed content.
pub struct Reader {
    inner: Arc<Inner>,
    prefetch: Mutex<Option<crossbeam_channel::Sender<(Arc<ObjectKeys>, u64, u64)>>>,
}

pub struct Inner {
    vault: Arc<Vault>,
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
    pub fn new(vault: Arc<Vault>) -> Reader {
        let inner = Arc::new(Inner {
            vault,
            chunks: ChunkCache::new(CHUNK_CACHE),
            segments: ByteLru::new(SEGMENT_CACHE),
            keys: Mutex::new(HashMap::new()),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<(Arc<ObjectKeys>, u64, u64)>();
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
            .unwrap_or_else(|p| p.into_inner())
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
            self.read_object(&e.object, e.object_offset + (a - e.offset), dst)?;
        }
        Ok(())
    }

    fn read_object(&self, id: &ObjectId, offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        let keys = self.keys(id)?;
        if keys.corrupt.load(Ordering::Relaxed) {
            return Err(Errno::EIO);
        }
        let g = keys.rec.geometry();
        let end = offset + out.len() as u64;
        if end > g.plain_len() {
            tracing::error!("object {id}: read past its end ({end} > {})", g.plain_len());
            return Err(Errno::EIO);
        }
        let segs = g.segments_for_plain(offset..end);
        if let Some(last) = g.segment_span_in_n(segs.end.saturating_sub(1)).last() {
            self.prefetch_after(&keys, last.end);
        }
        for i in segs {
            let seg = self.segment(id, &keys, i)?;
            let span = g.segment_span_in_plain(i);
            let (a, b) = (offset.max(span.start), end.min(span.end));
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&seg[(a - span.start) as usize..(b - span.start) as usize]);
        }
        Ok(())
    }

    /// Asks the prefetch threads for the chunks after `upto` in `N`, once
    /// per window, when a read reaches near what was fetched so far.
    fn prefetch_after(&self, keys: &Arc<ObjectKeys>, upto: u64) {
        let len_n = keys.rec.geometry().len_n();
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
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send((Arc::clone(keys), from, to));
        }
    }
}

impl Inner {
    fn keys(&self, id: &ObjectId) -> Result<Arc<ObjectKeys>, Errno> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(Arc::clone(k));
        }
        let manifest = self.vault.dispersal().manifest(id).map_err(|e| {
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
        let mac = MacTrack {
            next_seg: 0,
            next_n: 0,
            hasher: MacHasher::new("mac M", rec.r()),
            done: false,
            ahead: std::collections::BTreeMap::new(),
        };
        let keys = Arc::new(ObjectKeys {
            cipher: rec.cipher(),
            manifest,
            rec,
            mac: Mutex::new(mac),
            corrupt: AtomicBool::new(false),
            prefetched: std::sync::atomic::AtomicU64::new(0),
        });
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEYS_KEPT {
            map.clear();
        }
        map.insert(*id, Arc::clone(&keys));
        Ok(keys)
    }

    fn note_bad_shards(&self, manifest: &Manifest, report: &ReadReport) {
        self.vault.warn_bad_shards(None, &manifest.id, report);
        self.vault.record_debt(manifest, report.mask());
    }

    /// Bytes of `N` in `range`, through the chunk cache.
    fn n_bytes(&self, keys: &ObjectKeys, start: u64, end: u64) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; (end - start) as usize];
        let mut report = ReadReport::default();
        let r = self.vault.dispersal().read_at_cached(
            &keys.manifest,
            start,
            &mut buf,
            &mut report,
            &self.chunks,
        );
        if !report.bad.is_empty() {
            self.note_bad_shards(&keys.manifest, &report);
        }
        r.map_err(|e| {
            tracing::error!("read: {e}");
            Errno::EIO
        })?;
        Ok(buf)
    }

    /// Plaintext of segment `i`, decrypted and authenticated (cached),
    /// and its part in the front-to-back MAC walk.
    fn segment(&self, id: &ObjectId, keys: &ObjectKeys, i: u64) -> Result<Arc<Vec<u8>>, Errno> {
        let g = keys.rec.geometry();
        let spans = g.segment_span_in_n(i);
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return Err(Errno::EIO);
        };
        let (cover_start, cover_end) = (first.start, last.end);
        let walk_wants = {
            let mac = keys.mac.lock().unwrap_or_else(|p| p.into_inner());
            !mac.done
                && i >= mac.next_seg
                && i < mac.next_seg + MAC_AHEAD as u64
                && !mac.ahead.contains_key(&i)
        };
        if let Some(seg) = self.segments.get(&(*id, i))
            && !walk_wants
        {
            return Ok(seg);
        }
        let bytes = Arc::new(self.n_bytes(keys, cover_start, cover_end)?);
        if walk_wants {
            self.walk_mac(id, keys, i, cover_start, cover_end, &bytes)?;
        }
        if let Some(seg) = self.segments.get(&(*id, i)) {
            return Ok(seg);
        }
        // One span (KR and R3 elsewhere) is the common case: decrypt the
        // fetched bytes in place rather than copy them again.
        let mut ct = match (spans.len(), Arc::try_unwrap(bytes)) {
            (1, Ok(v)) => v,
            (_, Ok(v)) => join_spans(&spans, cover_start, &v),
            (_, Err(shared)) => join_spans(&spans, cover_start, &shared),
        };
        if ct.len() < TAG_LEN {
            return Err(Errno::EIO);
        }
        let body_len = ct.len() - TAG_LEN;
        let (body, tag) = ct.split_at_mut(body_len);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        keys.cipher
            .decrypt_segment(i, i + 1 == g.segments(), body, &t)
            .map_err(|e| {
                tracing::error!("object {id}: {e}");
                Errno::EIO
            })?;
        ct.truncate(body_len);
        let seg = Arc::new(ct);
        self.segments.put((*id, i), Arc::clone(&seg), seg.len());
        Ok(seg)
    }

    /// Feeds segment `i`'s bytes of `N` to the object's MAC in order (or
    /// parks them until the segments before it came); checks `M` at the end.
    fn walk_mac(
        &self,
        id: &ObjectId,
        keys: &ObjectKeys,
        i: u64,
        start: u64,
        end: u64,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<(), Errno> {
        let g = keys.rec.geometry();
        let mut mac = keys.mac.lock().unwrap_or_else(|p| p.into_inner());
        if mac.done || i < mac.next_seg {
            return Ok(());
        }
        mac.ahead.insert(i, (start, end, Arc::clone(bytes)));
        loop {
            let next = mac.next_seg;
            let Some((s, e, b)) = mac.ahead.remove(&next) else {
                break;
            };
            if mac.next_n < s {
                // KR or R3 between two segments.
                let gap = self.n_bytes(keys, mac.next_n, s)?;
                mac.hasher.update(&gap);
            }
            mac.hasher.update(&b);
            mac.next_n = e;
            mac.next_seg += 1;
        }
        if mac.next_seg == g.segments() {
            mac.done = true;
            mac.ahead.clear();
            let tail = self.n_bytes(keys, mac.next_n, g.len_n())?;
            let (rest, m) = tail.split_at(tail.len() - MAC_LEN);
            mac.hasher.update(rest);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac.hasher.finalize()[..], m)) {
                keys.corrupt.store(true, Ordering::Relaxed);
                tracing::error!(
                    "object {id} fails its integrity check (M): it was modified; reads of it fail"
                );
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }
}

/// The bytes of `spans` out of `bytes` (which start at `base` in `N`).
fn join_spans(spans: &[std::ops::Range<u64>], base: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spans.iter().map(|r| (r.end - r.start) as usize).sum());
    for r in spans {
        out.extend_from_slice(&bytes[(r.start - base) as usize..(r.end - base) as usize]);
    }
    out
}
