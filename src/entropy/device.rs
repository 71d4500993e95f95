//! A hardware random device (`/dev/hwrng`, a QRNG card's node) read directly by a reader thread.
//!
//! A device read can block forever (a wedged card, a FIFO nobody writes).
//! Without `unsafe` there is no `poll(2)`, so a dedicated thread owns the
//! open file and does the blocking; the caller waits on a bounded channel
//! with `recv_timeout` and gets a "stalled" error instead of a hang. The
//! thread reads up to [`CHUNK`] bytes ahead, so a 32-byte key draw is
//! usually served from memory. A thread stuck in a read outlives the
//! source; it exits on its next read or send once the source is dropped.
//!
//! Only character devices and FIFOs are accepted. A regular file would be
//! read from its start by every process, handing the same bytes (hence the
//! same keys) to each; a file of QRNG bytes belongs in a `pool:`, which is
//! consumed and never replayed. The type is checked on the path (after
//! symlinks) before opening and again on the opened file, so a path swapped
//! in between is refused too.

use std::fs::{File, FileType};
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use zeroize::{Zeroize, Zeroizing};

use super::{EntropyError, EntropySource, SourceStatus};

/// How long a device may stay silent before a draw fails, unless configured.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// Read-ahead per device read: enough for a hundred key draws, small enough
/// that little randomness sits in memory.
const CHUNK: usize = 4096;

/// What the reader thread reports.
enum Msg {
    /// The device was opened; reads follow.
    Opened,
    /// open(2) failed; the thread has exited.
    OpenFailed(io::Error),
    /// The opened file is not a character device or FIFO (what it is);
    /// the thread has closed it and exited.
    WrongType(&'static str),
    /// Fresh bytes, in device order.
    Bytes(Zeroizing<Vec<u8>>),
    /// End of file; the thread has exited.
    Ended,
    /// read(2) failed; the thread has exited.
    Failed(io::Error),
}

/// Why the device will deliver no more bytes; kept so every later draw
/// repeats the real cause instead of "channel closed".
#[derive(Debug, Clone)]
enum Done {
    Ended,
    Failed(io::ErrorKind, String),
}

/// Bytes received from the reader thread and not yet handed out.
struct State {
    rx: Receiver<Msg>,
    buf: Zeroizing<Vec<u8>>,
    off: usize,
    done: Option<Done>,
}

/// A random device read directly, not through the OS pool.
pub struct DeviceSource {
    path: PathBuf,
    timeout_ms: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for DeviceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSource")
            .field("path", &self.path)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl DeviceSource {
    /// Opens `path` on a reader thread and waits up to `timeout_ms` for the
    /// open to finish (opening a FIFO blocks until a writer appears).
    pub fn open(path: &Path, timeout_ms: u64) -> Result<Self, EntropyError> {
        let path = path.to_path_buf();
        match std::fs::metadata(&path) {
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(EntropyError::DeviceMissing { path, source });
            }
            Err(source) => return Err(EntropyError::DeviceOpen { path, source }),
            Ok(meta) => {
                if let Some(found) = wrong_type(meta.file_type()) {
                    return Err(EntropyError::DeviceWrongType { path, found });
                }
            }
        }
        // Capacity 1: one chunk waiting plus one being read is all the
        // read-ahead there is.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let thread_path = path.clone();
        thread::Builder::new()
            .name("qsfs-random-device".to_owned())
            .spawn(move || reader(&thread_path, &tx))
            .map_err(|source| EntropyError::DeviceThread {
                path: path.clone(),
                source,
            })?;
        match rx.recv_timeout(Duration::from_millis(timeout_ms)) {
            Ok(Msg::Opened) => {}
            Ok(Msg::OpenFailed(source)) if source.kind() == io::ErrorKind::NotFound => {
                return Err(EntropyError::DeviceMissing { path, source });
            }
            Ok(Msg::OpenFailed(source)) => return Err(EntropyError::DeviceOpen { path, source }),
            Ok(Msg::WrongType(found)) => {
                return Err(EntropyError::DeviceWrongType { path, found });
            }
            Ok(_) | Err(RecvTimeoutError::Disconnected) => {
                return Err(EntropyError::DeviceOpen {
                    path,
                    source: io::Error::other("the reader thread stopped"),
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(EntropyError::DeviceStalled {
                    path,
                    what: "while opening it",
                    timeout_ms,
                });
            }
        }
        let state = State {
            rx,
            buf: Zeroizing::new(Vec::new()),
            off: 0,
            done: None,
        };
        Ok(Self {
            path,
            timeout_ms,
            state: Mutex::new(state),
        })
    }

    /// The state, recovering from a panicked holder by discarding its
    /// buffer: bytes it may have copied out must not be served again.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            self.state.clear_poison();
            let mut st = poisoned.into_inner();
            st.buf.zeroize();
            st.off = 0;
            st
        })
    }

    fn done_error(&self, done: &Done) -> EntropyError {
        let path = self.path.clone();
        match done {
            Done::Ended => EntropyError::DeviceEnded { path },
            Done::Failed(kind, msg) => EntropyError::DeviceRead {
                path,
                source: io::Error::new(*kind, msg.clone()),
            },
        }
    }

    fn fill_locked(&self, st: &mut State, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut filled = 0;
        while filled < buf.len() {
            if st.off < st.buf.len() {
                let n = (buf.len() - filled).min(st.buf.len() - st.off);
                let taken = &mut st.buf[st.off..st.off + n];
                buf[filled..filled + n].copy_from_slice(taken);
                taken.zeroize();
                st.off += n;
                filled += n;
                continue;
            }
            if let Some(done) = &st.done {
                return Err(self.done_error(done));
            }
            match st.rx.recv_timeout(Duration::from_millis(self.timeout_ms)) {
                Ok(Msg::Bytes(bytes)) => {
                    st.buf = bytes;
                    st.off = 0;
                }
                Ok(Msg::Ended) => st.done = Some(Done::Ended),
                Ok(Msg::Failed(e)) => st.done = Some(Done::Failed(e.kind(), e.to_string())),
                Ok(Msg::Opened | Msg::OpenFailed(_) | Msg::WrongType(_)) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    st.done = Some(Done::Failed(
                        io::ErrorKind::Other,
                        "the reader thread stopped".to_owned(),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(EntropyError::DeviceStalled {
                        path: self.path.clone(),
                        what: "to read",
                        timeout_ms: self.timeout_ms,
                    });
                }
            }
        }
        Ok(())
    }
}

impl EntropySource for DeviceSource {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        let mut st = self.lock();
        let res = self.fill_locked(&mut st, buf);
        if res.is_err() {
            // The bytes taken so far are spent; do not leave them behind.
            buf.zeroize();
        }
        res
    }

    fn describe(&self) -> SourceStatus {
        let mut note = format!("read directly, timeout {} ms", self.timeout_ms);
        // A draw may be waiting out the timeout; status must not wait too.
        if let Ok(st) = self.state.try_lock()
            && let Some(done) = &st.done
        {
            note.push_str(&format!("; {}", self.done_error(done)));
        }
        SourceStatus {
            kind: "device".into(),
            path: Some(self.path.clone()),
            remaining: None,
            total: None,
            note: Some(note),
        }
    }
}

/// `None` for a character device or FIFO; otherwise what the file is, for
/// the error message.
fn wrong_type(ft: FileType) -> Option<&'static str> {
    if ft.is_char_device() || ft.is_fifo() {
        None
    } else if ft.is_file() {
        Some("a regular file")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a device")
    }
}

/// The reader thread: opens the device, then reads chunks until the device
/// ends, fails, or the source is dropped (the send fails).
fn reader(path: &Path, tx: &Sender<Msg>) {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            let _ = tx.send(Msg::OpenFailed(e));
            return;
        }
    };
    // The path may have been swapped since it was checked: check what
    // was actually opened.
    let found = match file.metadata() {
        Ok(meta) => wrong_type(meta.file_type()),
        Err(e) => {
            let _ = tx.send(Msg::OpenFailed(e));
            return;
        }
    };
    if let Some(found) = found {
        drop(file);
        let _ = tx.send(Msg::WrongType(found));
        return;
    }
    if tx.send(Msg::Opened).is_err() {
        return;
    }
    loop {
        let mut chunk = Zeroizing::new(vec![0u8; CHUNK]);
        let msg = match file.read(&mut chunk) {
            Ok(0) => Msg::Ended,
            Ok(n) => {
                chunk.truncate(n);
                Msg::Bytes(chunk)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Msg::Failed(e),
        };
        let last = !matches!(msg, Msg::Bytes(_));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second check, on the opened handle: the reader thread refuses a
    /// regular file even when the path check before it was passed (the
    /// path swapped in between).
    #[test]
    fn reader_refuses_an_opened_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plain");
        std::fs::write(&path, [7u8; 64]).expect("write");
        let (tx, rx) = crossbeam_channel::bounded(1);
        reader(&path, &tx);
        assert!(matches!(rx.recv(), Ok(Msg::WrongType("a regular file"))));
        assert!(rx.try_recv().is_err(), "no bytes may follow");
    }

    #[test]
    fn only_character_devices_and_fifos_pass() {
        let ty = |p: &str| std::fs::metadata(p).expect("stat").file_type();
        assert_eq!(wrong_type(ty("/dev/null")), None);
        assert_eq!(wrong_type(ty("/")), Some("a directory"));
    }
}
