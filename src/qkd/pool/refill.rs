//! Refilling a simulated link: fresh identical keys appended to both ends' files.
//!
//! A QKD link keeps producing key; a simulated link (both ends' pools open
//! in one process, header flag REFILL) imitates that by appending records
//! drawn from the random source to both files at a configured key rate.
//! Pools from QKD equipment are never refilled.
//!
//! An append is crash-safe: the records are written after the counted
//! ones and synced in both files, then each header's count is raised and
//! synced, A before B. A crash before a count update leaves uncounted bytes
//! that are ignored (and overwritten by the next append); a crash between
//! the two count updates leaves A ahead of B, which [`reconcile_pair`]
//! repairs from B's synced tail before the next refill or link use. New
//! keys become usable only once both counts are durable.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::error::{PoolError, io_err};
use super::file::{PoolFile, Slot, read_slots};
use super::format::{self, RECORD_LEN};
use super::generate::make_records;
use crate::qkd::End;

/// The key rate the paper cites for a metropolitan QKD network, bits/s.
pub const DEFAULT_KEY_RATE_BPS: f64 = 49_500.0;

/// Checks that `a` and `b` are the A and B files of one refillable link;
/// returns them ordered (A, B).
fn pair<'p>(a: &'p PoolFile, b: &'p PoolFile) -> Result<(&'p PoolFile, &'p PoolFile), PoolError> {
    for p in [a, b] {
        if !p.header().refill {
            return Err(PoolError::NotRefillable {
                path: p.path().to_path_buf(),
            });
        }
    }
    let not_pair = |detail: &str| PoolError::NotAPair {
        a: a.path().to_path_buf(),
        b: b.path().to_path_buf(),
        detail: detail.to_owned(),
    };
    if a.link_id() != b.link_id() {
        return Err(not_pair("their link ids differ"));
    }
    if a.header().sealed != b.header().sealed {
        return Err(not_pair(
            "one is sealed and the other is not (or under another key)",
        ));
    }
    match (a.end(), b.end()) {
        (End::A, End::B) => Ok((a, b)),
        (End::B, End::A) => Ok((b, a)),
        _ => Err(not_pair("both are the same end")),
    }
}

fn grow_lock(p: &PoolFile) -> MutexGuard<'_, ()> {
    p.grow.lock().unwrap_or_else(|e| {
        p.grow.clear_poison();
        e.into_inner()
    })
}

/// Writes `p`'s header with key count `count` and syncs it.
fn write_count(p: &PoolFile, count: u64) -> Result<(), PoolError> {
    let mut h = p.header().clone();
    h.count = count;
    let bytes = h.encode().map_err(|fault| PoolError::Header {
        path: p.path().to_path_buf(),
        fault,
    })?;
    p.file()
        .write_all_at(&bytes, 0)
        .map_err(io_err(p.path(), "update the key count in the header of"))?;
    p.file().sync_data().map_err(io_err(p.path(), "fdatasync"))
}

/// Repairs a pair left uneven by a crash between the two count updates
/// of an append: the file behind adopts the records it already holds, if
/// they are the same keys. Call with both grow locks held.
fn reconcile_locked(a: &PoolFile, b: &PoolFile) -> Result<(), PoolError> {
    let (ca, cb) = (a.lock().count(), b.lock().count());
    if ca == cb {
        return Ok(());
    }
    let (behind, ahead, from, to) = if ca < cb {
        (a, b, ca, cb)
    } else {
        (b, a, cb, ca)
    };
    let not_pair = |detail: String| PoolError::NotAPair {
        a: a.path().to_path_buf(),
        b: b.path().to_path_buf(),
        detail,
    };
    let len = behind
        .file()
        .metadata()
        .map_err(io_err(behind.path(), "stat"))?
        .len();
    if len < format::record_offset(to) {
        return Err(not_pair(format!(
            "{} holds {to} keys, {} only {from} and not the missing ones",
            ahead.path().display(),
            behind.path().display()
        )));
    }
    let slots = read_slots(behind.file(), behind.path(), from, to)?;
    {
        let ah = ahead.lock();
        for (k, s) in slots.iter().enumerate() {
            if ah.id(from + k as u64) != Some(s.id()) {
                return Err(not_pair(format!(
                    "record {} differs between the files",
                    from + k as u64
                )));
            }
        }
    }
    write_count(behind, to)?;
    behind.lock().extend(slots, behind.path())
}

/// Repairs a pair of pools left uneven by a crash in the middle of a
/// refill (see the module doc). A no-op for an even pair.
pub fn reconcile_pair(a: &PoolFile, b: &PoolFile) -> Result<(), PoolError> {
    let (a, b) = pair(a, b)?;
    let _ga = grow_lock(a);
    let _gb = grow_lock(b);
    reconcile_locked(a, b)
}

/// Appends `n_keys` fresh keys (alternating directions by record index)
/// to both files of a simulated link, crash-safely; returns the new key
/// count. Both pools must be open in this process.
pub fn refill_pair(
    a: &PoolFile,
    b: &PoolFile,
    n_keys: u64,
    random: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
) -> Result<u64, PoolError> {
    let (a, b) = pair(a, b)?;
    let _ga = grow_lock(a);
    let _gb = grow_lock(b);
    reconcile_locked(a, b)?;
    let start = a.lock().count();
    if n_keys == 0 {
        return Ok(start);
    }
    let mut buf = Zeroizing::new(Vec::new());
    let mut ids = HashSet::new();
    make_records(start, n_keys, random, &mut |id| ids.insert(*id), &mut buf)
        .map_err(io_err(a.path(), "draw keys from the random source for"))?;
    {
        let inner = a.lock();
        if let Some(id) = ids.iter().find(|id| inner.knows(id)) {
            return Err(PoolError::Invalid {
                path: a.path().to_path_buf(),
                detail: format!("the random source repeated key id {id}; refill refused"),
            });
        }
    }
    let slots: Vec<Slot> = buf
        .chunks_exact(RECORD_LEN)
        .filter_map(format::decode_record)
        .map(Slot::from)
        .collect();
    // Both ends carry the same seal (checked by `pair`): the same bytes.
    if let Some(seal) = a.seal() {
        seal.apply_records(&a.link_id(), &mut buf);
    }
    let at = format::record_offset(start);
    for p in [a, b] {
        p.file()
            .write_all_at(&buf, at)
            .map_err(io_err(p.path(), "append keys to"))?;
        p.file()
            .sync_data()
            .map_err(io_err(p.path(), "fdatasync"))?;
    }
    let new_count = start + n_keys;
    write_count(a, new_count)?;
    write_count(b, new_count)?;
    a.lock().extend(slots.clone(), a.path())?;
    b.lock().extend(slots, b.path())?;
    Ok(new_count)
}

/// Opens both files of a simulated link (neither may be open elsewhere)
/// and appends `n_keys` keys; returns the new key count.
pub fn refill_files(
    a_path: &Path,
    b_path: &Path,
    n_keys: u64,
    random: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
) -> Result<u64, PoolError> {
    let a = PoolFile::open_both(a_path)?;
    let b = PoolFile::open_both(b_path)?;
    refill_pair(&a, &b, n_keys, random)
}

/// How fast and how far a [`Refiller`] tops a pair up.
#[derive(Debug, Clone, PartialEq)]
pub struct RefillConfig {
    /// Key produced by the simulated link, bits per second (each key of
    /// the pair is 256 bits).
    pub key_rate_bps: f64,
    /// Refill only while the fuller file has fewer unused keys than this.
    pub max_left: u64,
    /// How often to append.
    pub tick: Duration,
}

impl RefillConfig {
    /// The paper's key rate, capped at `max_left` unused keys, appending
    /// once a second.
    pub fn new(max_left: u64) -> RefillConfig {
        RefillConfig {
            key_rate_bps: DEFAULT_KEY_RATE_BPS,
            max_left,
            tick: Duration::from_secs(1),
        }
    }
}

/// What a refiller has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefillStats {
    /// Keys appended to the pair.
    pub keys_added: u64,
    /// The last failure, if the latest attempt failed.
    pub last_error: Option<String>,
}

/// A background thread that tops up a pair of open pools at a key rate.
/// Stops when [`Refiller::stop`] is called or it is dropped.
pub struct Refiller {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<RefillStats>>,
}

impl std::fmt::Debug for Refiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refiller")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Refiller {
    /// Checks the pair (both refillable, one link), repairs an uneven
    /// pair, and starts the thread.
    pub fn start(
        a: Arc<PoolFile>,
        b: Arc<PoolFile>,
        cfg: RefillConfig,
        mut random: impl FnMut(&mut [u8]) -> io::Result<()> + Send + 'static,
    ) -> Result<Refiller, PoolError> {
        reconcile_pair(&a, &b)?;
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let stats = Arc::new(Mutex::new(RefillStats::default()));
        let st = Arc::clone(&stats);
        let keys_per_sec = cfg.key_rate_bps.max(0.0) / 256.0;
        let thread = std::thread::Builder::new()
            .name(format!("refill {}", crate::qkd::KeySource::link(&*a)))
            .spawn(move || {
                let mut credit = 0.0f64;
                let mut last = Instant::now();
                // Any message or a dropped sender means stop.
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(cfg.tick)
                {
                    let now = Instant::now();
                    credit += now.duration_since(last).as_secs_f64() * keys_per_sec;
                    last = now;
                    let left = a.lock().left_total().max(b.lock().left_total());
                    // A full buffer discards what the link produces.
                    credit = credit.min(cfg.max_left.saturating_sub(left) as f64);
                    let n = credit.floor() as u64;
                    if n == 0 {
                        continue;
                    }
                    let result = refill_pair(&a, &b, n, &mut random);
                    let mut s = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match result {
                        Ok(_) => {
                            credit -= n as f64;
                            s.keys_added += n;
                            s.last_error = None;
                        }
                        Err(e) => {
                            if s.last_error.is_none() {
                                tracing::warn!("refilling the simulated link failed: {e}");
                            }
                            s.last_error = Some(e.to_string());
                        }
                    }
                }
            })
            .map_err(io_err(Path::new("refill thread"), "start"))?;
        Ok(Refiller {
            stop: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// What it has done so far.
    pub fn stats(&self) -> RefillStats {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the thread and waits for it (an append in progress finishes).
    pub fn stop(mut self) -> RefillStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Refiller {
    fn drop(&mut self) {
        self.halt();
    }
}
