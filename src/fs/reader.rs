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

/// Sequential MAC check of one object.
struct MacTrack {
    next_seg: u64,
    next_n: u64,
    hasher: MacHasher,
    done: bool,
}

/// What reading one object needs, kept while it is being read.
struct ObjectKeys {
    manifest: Manifest,
    rec: Recovered,
    cipher: SegmentCipher,
    mac: Mutex<MacTrack>,
    corrupt: AtomicBool,
}

/// The mount's reader of sealed content.
pub struct Reader {
    vault: Arc<Vault>,
    chunks: ChunkCache,
    segments: ByteLru<(ObjectId, u64), Vec<u8>>,
    keys: Mutex<HashMap<ObjectId, Arc<ObjectKeys>>>,
}

impl Reader {
    /// A reader over `vault`.
    pub fn new(vault: Arc<Vault>) -> Reader {
        Reader {
            vault,
            chunks: ChunkCache::new(CHUNK_CACHE),
            segments: ByteLru::new(SEGMENT_CACHE),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Fills `out` with the file bytes at `offset` described by `extents`
    /// (bytes no extent covers are holes: zeros).
    pub fn read(&self, extents: &[Extent], offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        out.fill(0);
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
            tracing::warn!("object {id}: {w}; run `qsfs keys repair` after unmounting");
        }
        self.note_bad_shards(&manifest, &report);
        let rec = rec.map_err(|e| {
            tracing::error!("object {id}: cannot recover its keys: {e}");
            Errno::EIO
        })?;
        let mac = MacTrack { next_seg: 0, next_n: 0, hasher: MacHasher::new("mac M", rec.r()), done: false };
        let keys = Arc::new(ObjectKeys {
            cipher: rec.cipher(),
            manifest,
            rec,
            mac: Mutex::new(mac),
            corrupt: AtomicBool::new(false),
        });
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEYS_KEPT {
            map.clear();
        }
        map.insert(*id, Arc::clone(&keys));
        Ok(keys)
    }

    fn note_bad_shards(&self, manifest: &Manifest, report: &ReadReport) {
        for (shard, node, why) in &report.bad {
            tracing::warn!("object {}: shard {shard} on {node} is bad ({why}); read around it", manifest.id);
        }
        self.vault.record_debt(manifest, report.mask());
    }

    /// Bytes of `N` in `range`, through the chunk cache.
    fn n_bytes(&self, keys: &ObjectKeys, start: u64, end: u64) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; (end - start) as usize];
        let mut report = ReadReport::default();
        let r = self.vault.dispersal().read_at_cached(&keys.manifest, start, &mut buf, &mut report, &self.chunks);
        if !report.bad.is_empty() {
            self.note_bad_shards(&keys.manifest, &report);
        }
        r.map_err(|e| {
            tracing::error!("read: {e}");
            Errno::EIO
        })?;
        Ok(buf)
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
        for i in g.segments_for_plain(offset..end) {
            let seg = self.segment(id, &keys, i)?;
            let span = g.segment_span_in_plain(i);
            let (a, b) = (offset.max(span.start), end.min(span.end));
            out[(a - offset) as usize..(b - offset) as usize]
                .copy_from_slice(&seg[(a - span.start) as usize..(b - span.start) as usize]);
        }
        Ok(())
    }

    /// Plaintext of segment `i`, decrypted and authenticated (cached).
    fn segment(&self, id: &ObjectId, keys: &ObjectKeys, i: u64) -> Result<Arc<Vec<u8>>, Errno> {
        let g = keys.rec.geometry();
        let spans = g.segment_span_in_n(i);
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else { return Err(Errno::EIO) };
        let (cover_start, cover_end) = (first.start, last.end);
        // When this is the next segment of a front-to-back walk, read from
        // where the MAC stopped (taking in KR/R3 between segments).
        let mut mac = keys.mac.lock().unwrap_or_else(|p| p.into_inner());
        let feed = !mac.done && mac.next_seg == i;
        let cached = self.segments.get(&(*id, i));
        if let Some(seg) = &cached
            && !feed
        {
            return Ok(Arc::clone(seg));
        }
        let from = if feed { mac.next_n } else { cover_start };
        let bytes = self.n_bytes(keys, from, cover_end)?;
        if feed {
            mac.hasher.update(&bytes);
            mac.next_n = cover_end;
            mac.next_seg += 1;
            if mac.next_seg == g.segments() {
                mac.done = true;
                let tail = self.n_bytes(keys, mac.next_n, g.len_n())?;
                let (rest, m) = tail.split_at(tail.len() - MAC_LEN);
                mac.hasher.update(rest);
                if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac.hasher.finalize()[..], m)) {
                    keys.corrupt.store(true, Ordering::Relaxed);
                    tracing::error!("object {id} fails its integrity check (M): it was modified; reads of it fail");
                    return Err(Errno::EIO);
                }
            }
        }
        drop(mac);
        if let Some(seg) = cached {
            return Ok(seg);
        }
        let mut ct = Vec::with_capacity((cover_end - cover_start) as usize);
        for r in &spans {
            ct.extend_from_slice(&bytes[(r.start - from) as usize..(r.end - from) as usize]);
        }
        if ct.len() < TAG_LEN {
            return Err(Errno::EIO);
        }
        let body_len = ct.len() - TAG_LEN;
        let (body, tag) = ct.split_at_mut(body_len);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        keys.cipher.decrypt_segment(i, i + 1 == g.segments(), body, &t).map_err(|e| {
            tracing::error!("object {id}: {e}");
            Errno::EIO
        })?;
        ct.truncate(ct.len() - TAG_LEN);
        let seg = Arc::new(ct);
        self.segments.put((*id, i), Arc::clone(&seg), seg.len());
        Ok(seg)
    }
}
