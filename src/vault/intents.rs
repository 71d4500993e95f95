//! The intent log: which objects are being written and not yet named.
//!
//! Format (text, one record per line, append-only):
//! ```text
//! qsfs-intents 1
//! + <object id hex>     a seal of this object started
//! - <object id hex>     it is named, or it was destroyed
//! ```
//! `+` is appended before the object's first shard is written and the log
//! is fsynced before its shards are (see [`Intents::sync`]), so every
//! durable shard has a durable `+`. After a crash, the objects with a `+`
//! and no `-` are the only candidates for cleanup; the sweep destroys those
//! that no name points at. Cleanup work is thus bounded by what was in
//! flight, and a vault whose namespace went missing is never emptied by it.
//! The log is truncated whenever nothing is in flight.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ObjectId;

const HEADER: &str = "qsfs-intents 1\n";

/// An object held in flight by [`Intents::hold`].
#[derive(Debug)]
pub struct IntentHold<'a> {
    log: &'a Intents,
    id: ObjectId,
}

impl Drop for IntentHold<'_> {
    fn drop(&mut self) {
        let mut st = self.log.lock();
        if let Some(n) = st.holds.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.holds.remove(&self.id);
            }
        }
    }
}

/// The open intent log.
#[derive(Debug)]
pub struct Intents {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    /// The same file, synced without holding the state's lock (a seal's
    /// `+` need not wait for another seal's sync).
    sync_file: Arc<File>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// `+` records appended so far, and how many of them are durable: a
    /// sync with nothing new costs nothing.
    appended: u64,
    synced: u64,
    /// A sync started by [`Intents::sync_soon`] is running.
    syncing: bool,
    /// What a background sync failed with, for the next [`Intents::sync`]
    /// to report: a writeback error is told once per open file, so the
    /// commit's own retry could otherwise succeed over records the disk
    /// lost.
    failed: Option<String>,
    open: BTreeSet<ObjectId>,
    /// Objects held by maintenance (moves, repairs), counted: several
    /// holders may overlap, and a seal's own `+`/`-` must not end them.
    holds: std::collections::BTreeMap<ObjectId, u32>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Syncs the log unless every `+` appended is durable already. The lock
/// is not held during the sync, so seals go on appending meanwhile.
fn sync(state: &Mutex<State>, file: &File) -> std::io::Result<()> {
    let upto = {
        let mut st = lock(state);
        if let Some(why) = st.failed.take() {
            return Err(std::io::Error::other(format!(
                "an earlier fdatasync of the intent log failed: {why}"
            )));
        }
        if st.synced >= st.appended {
            return Ok(());
        }
        st.appended
    };
    file.sync_data()?;
    let mut st = lock(state);
    st.synced = st.synced.max(upto);
    Ok(())
}

/// The objects a log's records leave in flight: every `+` without a later
/// `-`. Lines that are not records are skipped.
pub(crate) fn in_flight(log: impl BufRead) -> std::io::Result<BTreeSet<ObjectId>> {
    let mut open = BTreeSet::new();
    for line in log.lines() {
        let line = line?;
        // A torn last line (crash mid-append) is simply ignored: its
        // object's shards were not written yet.
        let Some((sign, hex)) = line.split_once(' ') else {
            continue;
        };
        let Some(id) = ObjectId::from_hex(hex.trim()) else {
            continue;
        };
        match sign {
            "+" => {
                open.insert(id);
            }
            "-" => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    Ok(open)
}

impl Intents {
    /// Opens (creating) the log at `path`; returns it and the objects a
    /// previous process left in flight.
    pub fn open(path: &Path) -> std::io::Result<(Intents, Vec<ObjectId>)> {
        let open = match File::open(path) {
            Ok(f) => in_flight(BufReader::new(f))?,
            Err(_) => BTreeSet::new(),
        };
        let leftover: Vec<ObjectId> = open.iter().copied().collect();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        if file.metadata()?.len() == 0 {
            file.write_all(HEADER.as_bytes())?;
        }
        let sync_file = Arc::new(file.try_clone()?);
        let intents = Intents {
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(State {
                file,
                appended: 0,
                synced: 0,
                syncing: false,
                failed: None,
                open,
                holds: Default::default(),
            })),
            sync_file,
        };
        Ok((intents, leftover))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records that a seal of `id` starts.
    pub fn begin(&self, id: ObjectId) -> std::io::Result<()> {
        let mut st = self.lock();
        st.file.write_all(format!("+ {id}\n").as_bytes())?;
        st.appended += 1;
        st.open.insert(id);
        Ok(())
    }

    /// Makes the `+` records durable (before shards are made durable).
    pub fn sync(&self) -> std::io::Result<()> {
        sync(&self.state, &self.sync_file)
    }

    /// Starts [`Intents::sync`] on a kept thread, for a seal someone waits
    /// for: it then overlaps the seal's shard writes, and the commit's own
    /// sync finds nothing left to do. A failure here is the commit's to
    /// find and report.
    pub fn sync_soon(&self) {
        {
            let mut st = self.lock();
            // One at a time: what the running one misses, the commit syncs.
            if st.syncing || st.synced >= st.appended {
                return;
            }
            st.syncing = true;
        }
        let (state, file) = (Arc::clone(&self.state), Arc::clone(&self.sync_file));
        let started = crate::workers::run("intent sync", move || {
            let r = sync(&state, &file);
            let mut st = lock(&state);
            st.syncing = false;
            if let Err(e) = r {
                st.failed = Some(e.to_string());
            }
        });
        if started.is_err() {
            self.lock().syncing = false;
        }
    }

    /// Records that `ids` are settled (named durably, or destroyed); the
    /// log starts over once nothing is in flight.
    pub fn done(&self, ids: &[ObjectId]) -> std::io::Result<()> {
        let mut st = self.lock();
        for id in ids {
            st.open.remove(id);
        }
        if st.open.is_empty() {
            st.file.set_len(0)?;
            st.file.write_all(HEADER.as_bytes())?;
        } else {
            let text: String = ids.iter().map(|id| format!("- {id}\n")).collect();
            st.file.write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// Objects being written right now (a `+` without a `-`). Maintenance
    /// runs read this after listing the nodes, so a shard they listed
    /// belongs either to an object in here or to one with a manifest.
    pub fn in_flight(&self) -> BTreeSet<ObjectId> {
        let st = self.lock();
        let mut all = st.open.clone();
        all.extend(st.holds.keys().copied());
        all
    }

    /// Marks `id` in flight until the guard drops: maintenance that moves
    /// or rebuilds an object's shards holds it, so concurrent scrubs and
    /// fscks leave the object's files alone. Held in memory only: after a
    /// crash mid-move the object has its manifest, and the half-placed or
    /// stale copy is an orphan that scrub and fsck remove.
    pub fn hold(&self, id: ObjectId) -> std::io::Result<IntentHold<'_>> {
        *self.lock().holds.entry(id).or_insert(0) += 1;
        Ok(IntentHold { log: self, id })
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {

    /// A sync started early (for a seal an fsync waits for) leaves the
    /// commit's own sync nothing to do, and a `+` appended after it is
    /// synced again.
    #[test]
    fn an_early_sync_covers_what_was_appended_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Intents::open(&dir.path().join("intents")).unwrap();
        let unsynced = |log: &Intents| {
            let st = log.lock();
            st.appended - st.synced
        };
        log.begin(ObjectId([1; 16])).unwrap();
        assert_eq!(unsynced(&log), 1);
        log.sync_soon();
        let t0 = std::time::Instant::now();
        while unsynced(&log) != 0 {
            assert!(t0.elapsed().as_secs() < 10, "the early sync never ran");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        log.begin(ObjectId([2; 16])).unwrap();
        assert_eq!(unsynced(&log), 1);
        log.sync().unwrap();
        assert_eq!(unsynced(&log), 0);
    }

    use super::*;

    #[test]
    fn leftovers_survive_a_crash_and_settle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intents");
        let (a, b, c) = (ObjectId([1; 16]), ObjectId([2; 16]), ObjectId([3; 16]));
        {
            let (log, left) = Intents::open(&p).unwrap();
            assert!(left.is_empty());
            log.begin(a).unwrap();
            log.begin(b).unwrap();
            log.done(&[a]).unwrap();
            log.begin(c).unwrap();
            // "crash": dropped without settling b and c
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"+ 04")
            .unwrap();
        let (log, left) = Intents::open(&p).unwrap();
        assert_eq!(left, vec![b, c]);
        assert_eq!(log.in_flight().into_iter().collect::<Vec<_>>(), vec![b, c]);
        log.done(&[b, c]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), HEADER);
        drop(log);
        assert!(Intents::open(&p).unwrap().1.is_empty());
    }
}
