//! One process at a time per vault: an exclusive lock on `VAULT/.lock`.
//!
//! The stores are single-process (sled locks its files), so a second qsfs
//! command on the same vault waits a little for the first to finish and
//! then fails with a message naming the holder, instead of a sled error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::VaultError;

/// Holds the vault lock until dropped.
#[derive(Debug)]
pub struct VaultLock {
    _file: File,
}

impl VaultLock {
    /// Takes the lock, waiting up to `wait` for another qsfs process.
    pub fn acquire(root: &Path, wait: Duration) -> Result<VaultLock, VaultError> {
        let path = root.join(".lock");
        let io = |e| VaultError::Io {
            what: format!("open the vault lock {}", path.display()),
            source: e,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                // A mounted vault stays busy until it is unmounted: say so
                // at once instead of waiting.
                Err(std::fs::TryLockError::WouldBlock)
                    if start.elapsed() < wait
                        && !crate::sys::mounts()
                            .iter()
                            .any(|m| Path::new(&m.source) == root) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim().to_string();
                    let root_str = root.display().to_string();
                    if let Some(m) = crate::sys::mounts()
                        .into_iter()
                        .find(|m| m.source == root_str)
                    {
                        return Err(VaultError::Busy {
                            path: root.to_path_buf(),
                            holder: format!(
                                "{holder}, mounted at {}: use the files there, or `qsfs umount {}` first",
                                m.target.display(),
                                m.target.display()
                            ),
                        });
                    }
                    return Err(VaultError::Busy {
                        path: root.to_path_buf(),
                        holder: holder.trim().to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Holding the lock proves that no live process serves this vault
        // (a mount keeps it until its process exits, after the kernel
        // mount is gone), so a FUSE mount of it still listed is dead.
        let root_str = root.display().to_string();
        if let Some(m) = crate::sys::mounts()
            .into_iter()
            .rev()
            .find(|m| m.source == root_str && (m.fstype == "fuse" || m.fstype.starts_with("fuse.")))
        {
            return Err(VaultError::MountDied {
                vault: root.to_path_buf(),
                mountpoint: m.target,
            });
        }
        // The command, not its arguments: those can name private files.
        let me = format!(
            "pid {} (qsfs {})\n",
            std::process::id(),
            std::env::args().nth(1).unwrap_or_default()
        );
        // Who holds the lock is only a hint for messages; failing to record
        // it must not stop the command.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()));
        Ok(VaultLock { _file: file })
    }
}
