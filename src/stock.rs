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

    /// Removes `path`, a file nobody needs any more, by taking it into the
    /// stock emptied when there is room, and unlinking it otherwise.
    ///
    /// Why: on ext4 without a journal an unlink marks the inode "recently
    /// deleted", and every create in that block group for the next minute
    /// walks past each such inode (`recently_deleted` in ialloc.c). Under
    /// churn (a small file is five shard files made and later removed) the
    /// creates became 40% of the mount's CPU. A recycled file frees no
    /// inode and the next create allocates none.
    ///
    /// Like `fs::remove_file`, the name is gone when this returns (a rename
    /// takes it away atomically) and a missing file is `NotFound`. Only the
    /// caller's own files may be given: the file is emptied in place, so it
    /// must have no other name (checked) and no reader that holds it open
    /// for longer than one read (a shard reader opens, reads and closes).
    pub fn recycle(&self, path: &Path) -> std::io::Result<()> {
        let room = {
            let st = self.inner.lock();
            st.started && !st.broken && !st.stop && st.files.len() < self.inner.keep()
        };
        if !room {
            return fs::remove_file(path);
        }
        let dst = self.inner.next_path();
        if let Err(e) = fs::rename(path, &dst) {
            return match e.kind() {
                std::io::ErrorKind::NotFound => Err(e),
                // Another filesystem, a full folder: plain removal.
                _ => fs::remove_file(path),
            };
        }
        let emptied = OpenOptions::new().write(true).open(&dst).and_then(|f| {
            use std::os::unix::fs::MetadataExt;
            if f.metadata()?.nlink() != 1 {
                return Err(std::io::Error::other("file has another name"));
            }
            f.set_len(0)
        });
        let mut st = self.inner.lock();
        if emptied.is_err() || st.stop || st.files.len() >= self.inner.keep() {
            drop(st);
            let _ = fs::remove_file(&dst);
            return Ok(());
        }
        st.files.push(dst);
        Ok(())
    }
}

impl Inner {
    /// How many files the stock holds at most: recycled files fill it past
    /// `want` (what the filler makes), so a burst of deletes (an `rm -rf`)
    /// feeds the creates after it.
    fn keep(&self) -> usize {
        4 * self.want
    }

    /// A fresh name in the stock folder (`.stock.<pid>.<n>.tmp`).
    fn next_path(&self) -> PathBuf {
        self.dir.join(format!(
            ".stock.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

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
            let path = self.next_path();
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

    /// Takes files until `n` are in hand (the filler runs meanwhile).
    fn take_n(stock: &Stock, n: usize) -> Vec<PathBuf> {
        let mut got = Vec::new();
        for _ in 0..400 {
            if let Some(x) = stock.take() {
                got.push(x);
            }
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the stock never filled");
    }

    #[test]
    fn recycled_files_are_emptied_and_handed_out_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let stock = Stock::new(&dir.path().join("stock"), 0o600, 2);
        // Started (and, with 2 wanted, full) once something was taken.
        for p in take_n(&stock, 2) {
            fs::remove_file(p).unwrap();
        }
        let old = dir.path().join("old-shard");
        fs::write(&old, vec![7u8; 100_000]).unwrap();
        let inode = fs::metadata(&old).unwrap().ino();
        stock.recycle(&old).unwrap();
        assert!(!old.exists(), "the recycled name is still there");
        // The filler keeps up to 2 of its own; the recycled one is among
        // the next files handed out, empty.
        let got = take_n(&stock, 3);
        let reused: Vec<_> = got
            .iter()
            .filter(|p| fs::metadata(p).unwrap().ino() == inode)
            .collect();
        assert_eq!(reused.len(), 1, "the recycled file was not handed out");
        assert_eq!(
            fs::metadata(reused[0]).unwrap().len(),
            0,
            "handed out with old bytes"
        );
        // Gone already: like remove_file, NotFound.
        let err = stock.recycle(&dir.path().join("never-was")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_with_another_name_is_unlinked_not_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let stock = Stock::new(&dir.path().join("stock"), 0o600, 2);
        for p in take_n(&stock, 1) {
            fs::remove_file(p).unwrap();
        }
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"still needed under b").unwrap();
        fs::hard_link(&a, &b).unwrap();
        stock.recycle(&a).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"still needed under b");
    }

    #[test]
    fn a_stock_that_is_full_or_not_started_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let stock_dir = dir.path().join("stock");
        let stock = Stock::new(&stock_dir, 0o600, 1);
        // Not started: nothing is kept, the file just goes.
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        stock.recycle(&f).unwrap();
        assert!(!f.exists());
        assert!(!stock_dir.exists(), "an unused stock made its folder");
        // Started: at most 4 x want are kept; the rest are unlinked.
        for p in take_n(&stock, 1) {
            fs::remove_file(p).unwrap();
        }
        for i in 0..10 {
            let f = dir.path().join(format!("f{i}"));
            fs::write(&f, b"x").unwrap();
            stock.recycle(&f).unwrap();
            assert!(!f.exists());
        }
        let kept = fs::read_dir(&stock_dir).unwrap().count();
        assert!(kept <= 4, "{kept} files kept for a stock of 1");
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
