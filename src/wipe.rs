//! Overwriting plaintext before the disk blocks that hold it are freed.
//!
//! Why: a file written through the mount sits in clear in its staging
//! file until it is sealed, and `qsfs put -` spools stdin the same way.
//! Unlinking or truncating such a file frees its blocks with the bytes
//! still on them, where anyone who later reads the raw disk finds them:
//! crypto-shredding a file would then leave its content on the client.
//! So every plaintext file is overwritten with zeros, and the zeros made
//! durable, before it is unlinked, truncated or punched.
//!
//! The zeros need to reach the disk only when the plaintext did. Under
//! delayed allocation (ext4, xfs) bytes never written back have no disk
//! block yet; the overwrite replaces them in the page cache and the
//! unlink then drops them. FIEMAP, asked after the overwrite, tells which
//! (`qsfs_sys::has_disk_blocks`), so most short-lived small files cost a
//! memory write and no `fdatasync`.
//!
//! Whole files are wiped in the background ([`Wiper`]): their names move
//! into `staging/wipe/` at once, and a thread zeroes, syncs and removes
//! them (into the staging stock when it has room). A crash leaves them
//! there and the next open of the vault wipes them
//! ([`wipe_leftovers`]).
//!
//! Limits (README, threat model): an overwrite reaches the same blocks
//! only where the filesystem overwrites in place (ext4 in its default
//! `data=ordered`, xfs). Copy-on-write filesystems (btrfs, ZFS), ext4 with
//! `data=journal` and an SSD's flash translation layer may keep old
//! copies; full-disk encryption under the vault covers those.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};

use crate::stock::Stock;

/// Zeros written per call.
const ZEROS: usize = 1 << 20;

/// Overwrites the bytes of `[start, end)` that hold data with zeros, and
/// makes the zeros durable if the old bytes may have reached the disk.
pub fn zero(file: &File, start: u64, end: u64) -> io::Result<()> {
    if start >= end {
        return Ok(());
    }
    let zeros = vec![0u8; ZEROS];
    let mut wrote = false;
    for (a, b) in crate::sys::data_ranges(file)? {
        let (a, b) = (a.max(start), b.min(end));
        let mut at = a;
        while at < b {
            let n = (b - at).min(ZEROS as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
            wrote = true;
        }
    }
    if wrote && crate::sys::has_disk_blocks(file, start, end - start)? != Some(false) {
        file.sync_data()?;
    }
    Ok(())
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Opens `path` for overwriting; `None` when it is already gone.
fn open(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Overwrites the whole of `path` and removes it (into `stock` when one
/// is given and has room). A file that cannot be overwritten is kept:
/// removing it would free its plaintext.
pub fn wipe_and_remove(path: &Path, stock: Option<&Stock>) -> io::Result<()> {
    let Some(f) = open(path)? else {
        return Ok(());
    };
    if let Err(e) = zero(&f, 0, f.metadata()?.len()) {
        if !no_space(&e) {
            return Err(e);
        }
        // A full disk (or a copy-on-write one, where zeros need new
        // blocks) must still get its space back.
        tracing::warn!(
            "cannot overwrite {} before removing it ({e}): the disk is full; removed without overwriting",
            path.display()
        );
    }
    drop(f);
    let removed = match stock {
        Some(stock) => stock.recycle(path),
        None => std::fs::remove_file(path),
    };
    match removed {
        Ok(()) => Ok(()),
        // Either the file went meanwhile or the stock's folder is not
        // there (yet): a plain removal tells which.
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    }
}

/// Wipes what a crash left in the wipe folder `dir` (files moved there
/// but not yet overwritten).
pub fn wipe_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file())
            && let Err(err) = wipe_and_remove(&e.path(), None)
        {
            tracing::warn!(
                "cannot overwrite {} before removing it ({err}); it stays until the next open",
                e.path().display()
            );
        }
    }
}

/// A background queue of plaintext files to overwrite and remove.
#[derive(Debug)]
pub struct Wiper {
    dir: PathBuf,
    stock: Arc<Stock>,
    tx: Mutex<Option<Sender<PathBuf>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Wiper {
    /// A wiper moving files into `dir` (made 0700 if missing) and
    /// recycling them into `stock` once overwritten.
    pub fn start(dir: &Path, stock: Arc<Stock>) -> io::Result<Wiper> {
        crate::perms::create_private_dir_all(dir)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let for_thread = Arc::clone(&stock);
        let thread = std::thread::Builder::new()
            .name("qsfs-wipe".into())
            .spawn(move || run(&rx, &for_thread))?;
        Ok(Wiper {
            dir: dir.to_path_buf(),
            stock,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The stock wiped files go back to.
    pub fn stock(&self) -> &Stock {
        &self.stock
    }

    /// Takes `path` out of its folder (its name is gone when this
    /// returns) into the wipe folder, and returns where it now is; hand
    /// that to [`Wiper::queue`] once nothing reads the file any more.
    /// `None` when `path` did not exist.
    pub fn take(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
        let to = self.dir.join(hex::encode(id));
        match std::fs::rename(path, &to) {
            Ok(()) => Ok(Some(to)),
            // The wipe folder goes when a mount ends clean; a late caller
            // makes it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.exists() => {
                crate::perms::create_private_dir_all(&self.dir)?;
                std::fs::rename(path, &to)?;
                Ok(Some(to))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Overwrites and removes `paths` (files in the wipe folder) in the
    /// background; here and now once the wiper has finished.
    pub fn queue(&self, paths: Vec<PathBuf>) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut late = Vec::new();
        for p in paths {
            match &tx {
                Some(tx) => {
                    if let Err(e) = tx.send(p) {
                        late.push(e.into_inner());
                    }
                }
                None => late.push(p),
            }
        }
        for p in late {
            wipe_one(&p, &self.stock);
        }
    }

    /// Takes `path` away and queues it at once (nothing else holds it).
    pub fn remove(&self, path: &Path) {
        match self.take(path) {
            Ok(Some(p)) => self.queue(vec![p]),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "cannot move {} into {} to overwrite it ({e}); it stays",
                path.display(),
                self.dir.display()
            ),
        }
    }

    /// Waits until every queued file is overwritten and removed; later
    /// ones are wiped by their caller.
    pub fn finish(&self) {
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            && t.join().is_err()
        {
            tracing::error!("the wipe thread panicked; the next open wipes what it left");
        }
    }
}

impl Drop for Wiper {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(rx: &Receiver<PathBuf>, stock: &Stock) {
    for p in rx {
        wipe_one(&p, stock);
    }
}

fn wipe_one(path: &Path, stock: &Stock) {
    if let Err(e) = wipe_and_remove(path, Some(stock)) {
        tracing::warn!(
            "cannot overwrite {} before removing it ({e}); the next open of the vault tries again",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_wiped_file_reads_as_zeros_through_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        std::fs::write(&path, vec![0xA5u8; 3 << 20]).unwrap();
        // Another name on the same inode sees what happened to its blocks.
        let witness = dir.path().join("witness");
        std::fs::hard_link(&path, &witness).unwrap();
        wipe_and_remove(&path, None).unwrap();
        assert!(!path.exists());
        let mut back = Vec::new();
        File::open(&witness)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), 3 << 20);
        assert!(back.iter().all(|&b| b == 0), "plaintext left in the file");
    }

    #[test]
    fn zero_touches_only_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        zero(&f, 4000, 6000).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert!(back[..4000].iter().all(|&b| b == 1));
        assert!(back[4000..6000].iter().all(|&b| b == 0));
        assert!(back[6000..].iter().all(|&b| b == 1));
    }

    #[test]
    fn the_wiper_drains_its_queue_when_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let stock = Arc::new(Stock::new(&dir.path().join("stock"), 0o600, 4));
        let w = Wiper::start(&dir.path().join("wipe"), stock).unwrap();
        let mut witnesses = Vec::new();
        for i in 0..20 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![0x5Au8; 100_000]).unwrap();
            let wit = dir.path().join(format!("w{i}"));
            std::fs::hard_link(&p, &wit).unwrap();
            witnesses.push(wit);
            w.remove(&p);
            assert!(!p.exists(), "the name goes at once");
        }
        assert!(w.take(&dir.path().join("none")).unwrap().is_none());
        w.finish();
        for wit in witnesses {
            assert!(std::fs::read(&wit).unwrap().iter().all(|&b| b == 0));
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("wipe")).unwrap().count(),
            0
        );
        // After finish, a queued file is wiped by the caller, even once
        // the wipe folder is gone.
        std::fs::remove_dir(dir.path().join("wipe")).unwrap();
        let p = dir.path().join("late");
        std::fs::write(&p, b"late plaintext").unwrap();
        w.remove(&p);
        assert_eq!(
            std::fs::read_dir(dir.path().join("wipe")).unwrap().count(),
            0
        );
    }
}
