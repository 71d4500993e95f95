//! A stock of empty files made ahead of need by a background thread.
//!
//! Why: creating a file is the slowest step of sealing a small file. A
//! seal creates one shard file per node, and on a filesystem that has just
//! deleted many files the inode allocator can take hundreds of
//! microseconds per create (ext4 without a journal skips every inode freed
//! in the last minute). Making the files ahead, on the otherwise idle core,
//! and renaming one into place when a shard is written (a rename allocates
//! nothing) takes that cost off the path a user waits on.
//!
//! Stock files are empty and hold nothing; they are named
//! `.stock.<pid>.<n>.tmp` in their own folder, and files left by a process
//! that is gone are removed by the next stock on the folder (when it starts
//! or, if never used, when it is dropped). When the
//! stock is empty the caller simply creates its file itself.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A stock of empty files in one folder.
#[derive(Debug)]
pub struct Stock {
    inner: Arc<Inner>,
    filler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// A file that must exist before each new stock file (a node's
    /// marker): a node disk unmounted meanwhile leaves its bare mount
    /// point untouched.
    guard: Option<PathBuf>,
    mode: u32,
    want: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    files: Vec<PathBuf>,
    started: bool,
    stop: bool,
    /// The folder could not be used; the stock stays empty.
    broken: bool,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Stock {
    /// A stock of `want` files of `mode` in `dir` (made on first use).
    pub fn new(dir: &Path, mode: u32, want: usize) -> Stock {
        Stock::guarded(dir, None, mode, want)
    }

    /// A stock that makes files only while `guard` exists.
    pub fn guarded(dir: &Path, guard: Option<&Path>, mode: u32, want: usize) -> Stock {
        Stock {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                guard: guard.map(Path::to_path_buf),
                mode,
                want,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            filler: Mutex::new(None),
        }
    }

    /// Takes the path of an empty file, or None when none is ready; the
    /// caller renames it to its own name and opens it. (Paths, not open
    /// files: a vault of 32 nodes must not hold hundreds of descriptors.)
    pub fn take(&self) -> Option<PathBuf> {
        let mut st = self.inner.lock();
        if !st.started {
            st.started = true;
            let inner = Arc::clone(&self.inner);
            match std::thread::Builder::new()
                .name("qsfs-stock".into())
                .spawn(move || inner.fill())
            {
                Ok(h) => {
                    *self
                        .filler
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(h);
                }
                Err(_) => st.broken = true,
            }
        }
        let got = st.files.pop();
        if st.files.len() < self.inner.want / 2 {
            self.inner.wake.notify_one();
        }
        got
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn guard_gone(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| !g.exists())
    }

    fn fill(&self) {
        if self.guard_gone() {
            self.lock().broken = true;
            return;
        }
        // Only the stock folder itself: a missing parent (a node folder on
        // a disk that is not mounted) must never be made here.
        match crate::perms::create_private_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                self.lock().broken = true;
                return;
            }
        }
        self.remove_stale();
        let pid = std::process::id();
        loop {
            {
                let mut st = self.lock();
                while !st.stop && st.files.len() >= self.want {
                    st = self
                        .wake
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if st.stop {
                    return;
                }
            }
            if self.guard_gone() {
                // Taken up again by the next stock once the node is back.
                self.lock().broken = true;
                return;
            }
            let path = self.dir.join(format!(
                ".stock.{pid}.{}.tmp",
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let made = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(self.mode)
                .open(&path);
            match made {
                Ok(_) => {
                    let mut st = self.lock();
                    if st.stop {
                        let _ = fs::remove_file(&path);
                        return;
                    }
                    st.files.push(path);
                }
                Err(e) => {
                    tracing::debug!(
                        "stock {}: {e}; files are made on demand",
                        self.dir.display()
                    );
                    self.lock().broken = true;
                    return;
                }
            }
        }
    }

    /// Removes stock files of processes that are gone.
    fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(".stock."))
                .and_then(|n| n.split('.').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !crate::sys::process_alive(pid) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Stock {
    /// Stops the filler and removes the unused files and, when it is then
    /// empty, the folder: a stock leaves nothing behind.
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            st.stop = true;
            self.inner.wake.notify_all();
        }
        let filler = self
            .filler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match filler {
            Some(filler) => {
                let _ = filler.join();
            }
            // Never used: still clear what a killed process left.
            None => self.inner.remove_stale(),
        }
        for path in self.inner.lock().files.drain(..) {
            let _ = fs::remove_file(path);
        }
        let _ = fs::remove_dir(&self.inner.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_empty_files_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let stock_dir = dir.path().join("stock");
        let stock = Stock::new(&stock_dir, 0o600, 4);
        let mut got = Vec::new();
        for _ in 0..200 {
            if let Some(x) = stock.take() {
                got.push(x);
            }
            if got.len() >= 8 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(got.len() >= 8, "the stock never filled");
        let mut paths = got.clone();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), got.len());
        for p in &got {
            assert_eq!(fs::metadata(p).unwrap().len(), 0);
            fs::remove_file(p).unwrap();
        }
        drop(stock);
        assert!(!stock_dir.exists(), "the stock folder was left behind");
    }

    #[test]
    fn files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // 2^22 is the kernel's upper limit for pid_max, and pids are below
        // pid_max: no process can have this one.
        let stale = dir.path().join(".stock.4194304.1.tmp");
        fs::File::create(&stale).unwrap();
        let stock = Stock::new(dir.path(), 0o600, 1);
        for _ in 0..2000 {
            if stock.take().is_some() && !stale.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!stale.exists());
    }
}
