//! Thin wrappers over the few Linux syscalls std does not expose.
//!
//! Everything unsafe in qsfs lives in this crate, each call wrapped so
//! callers get a plain `io::Result`; the main crate forbids `unsafe`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Makes a directory's entries (creations, renames, unlinks) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts writeback of a file's dirty pages without waiting.
///
/// Called on every file of a group commit before the first `fsync`, so the
/// device works on all of them at once and the later fsyncs mostly find
/// their data already written and share one journal commit.
pub fn start_writeback(file: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        // Filesystems without sync_file_range (some FUSE/NFS) just skip the hint.
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(()),
            _ => Err(err),
        }
    }
}

/// `syncfs(2)`: makes every file and folder of the filesystem holding
/// `fd` durable, reporting writeback errors seen since `fd` was opened.
pub fn syncfs(fd: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a valid, open descriptor.
    let rc = unsafe { libc::syncfs(fd.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts writeback of `len` bytes at `offset` of a file without waiting.
/// Only a hint (the durable fsync comes later), so failures are ignored.
pub fn start_writeback_range(file: &File, offset: u64, len: u64) {
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// The byte ranges of a file that hold data (`SEEK_DATA`/`SEEK_HOLE`):
/// holes, and blocks whose data never reached the disk before a power
/// loss, are left out. A filesystem without hole reporting shows the
/// whole file as data.
pub fn data_ranges(file: &File) -> io::Result<Vec<(u64, u64)>> {
    let len = file.metadata()?.len();
    let fd = file.as_raw_fd();
    let seek = |off: u64, whence: i32| -> io::Result<Option<u64>> {
        // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
        let rc = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
        if rc >= 0 {
            return Ok(Some(rc as u64));
        }
        let e = io::Error::last_os_error();
        // ENXIO: no data (or hole) at or after `off`.
        if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        }
    };
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let Some(start) = seek(pos, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        if end <= start {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Frees `[offset, offset + len)` of a file, keeping its size; the range
/// reads as zeros. Filesystems that cannot punch holes get the zeros
/// written instead.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall on a valid, open descriptor; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let end = offset.saturating_add(len).min(size);
    let zeros = vec![0u8; 1 << 16];
    let mut at = offset;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)`, a 32-byte header.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;
const FIEMAP_BATCH: usize = 32;

/// `struct fiemap_extent` (linux/fiemap.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// `struct fiemap` with room for [`FIEMAP_BATCH`] extents.
#[repr(C)]
#[derive(Default)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; FIEMAP_BATCH],
}

/// Whether any byte of `[offset, offset + len)` of a file has a block on
/// the disk (`FIEMAP`, without forcing writeback). Blocks under delayed
/// allocation (ext4, xfs) were never written: their bytes exist only in
/// the page cache. `None` when the filesystem cannot tell (no FIEMAP).
///
/// Why: a plaintext file overwritten before it is freed needs the
/// overwrite made durable only if the plaintext ever reached the disk;
/// asked after the overwrite, "no block" means it never did (an
/// allocated block never goes back to delayed allocation).
pub fn has_disk_blocks(file: &File, offset: u64, len: u64) -> io::Result<Option<bool>> {
    let end = offset.saturating_add(len);
    let mut pos = offset;
    while pos < end {
        let mut map = Fiemap {
            start: pos,
            length: end - pos,
            extent_count: FIEMAP_BATCH as u32,
            ..Fiemap::default()
        };
        // SAFETY: FS_IOC_FIEMAP reads the header and writes at most
        // `extent_count` extents into `map`, which has room for them.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map as *mut Fiemap) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::ENOSYS) => Ok(None),
                _ => Err(e),
            };
        }
        let n = (map.mapped_extents as usize).min(FIEMAP_BATCH);
        if n == 0 {
            return Ok(Some(false));
        }
        for e in &map.extents[..n] {
            if e.flags & FIEMAP_EXTENT_DELALLOC == 0 {
                return Ok(Some(true));
            }
            if e.flags & FIEMAP_EXTENT_LAST != 0 {
                return Ok(Some(false));
            }
            pos = pos.max(e.logical.saturating_add(e.length));
        }
        if n < FIEMAP_BATCH {
            return Ok(Some(false));
        }
    }
    Ok(Some(false))
}

/// Restores the default SIGPIPE action, so `qsfs ls | head -1` ends quietly
/// like every other Unix tool instead of reporting a broken pipe (Rust
/// ignores SIGPIPE by default).
pub fn default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Starts a new session (a daemon leaves its parent's terminal).
pub fn setsid() {
    // SAFETY: setsid has no memory arguments; failure (already a leader) is harmless.
    unsafe {
        libc::setsid();
    }
}

/// Points stdin, stdout and stderr at /dev/null (a daemon, once its
/// parent knows it started, keeps nothing of the terminal open).
pub fn detach_stdio() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors with a valid source fd.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unmounts `path` (root only; others use fusermount3).
pub fn umount(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: NUL-terminated path, no other memory passed.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One line of /proc/self/mountinfo that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount point.
    pub target: std::path::PathBuf,
    /// Filesystem type (`fuse`, `fuse.qsfs`, `ext4`, ...).
    pub fstype: String,
    /// Source (for qsfs: the vault folder).
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current mounts, in mount order.
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            Some(MountEntry {
                target: std::path::PathBuf::from(unescape(target)),
                fstype: fstype.to_string(),
                source: unescape(source),
            })
        })
        .collect()
}

/// The topmost mount at exactly `path`.
pub fn mounted_at(path: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.target == path)
}

/// `path` made absolute, with the longest leading part that resolves
/// canonicalised and the rest appended as given. Unlike `canonicalize`
/// this works on a dead FUSE mount point, where every stat fails.
pub fn resolve_lenient(path: &Path) -> std::path::PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(mut p) = cur.canonicalize() {
            p.extend(rest.iter().rev());
            return p;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// A FUSE mount whose serving process is gone: the kernel answers every
/// access under it with ENOTCONN ("Transport endpoint is not connected")
/// until it is unmounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMount {
    /// The mount point.
    pub target: std::path::PathBuf,
    /// The mount's source (for qsfs: the vault folder).
    pub source: String,
    /// True if the source is a qsfs vault (`qsfs umount` clears it).
    pub qsfs: bool,
}

impl DeadMount {
    /// What is wrong with `path` (the mount point or a path under it) and
    /// how to clear it.
    pub fn explain(&self, path: &Path) -> String {
        let t = self.target.display();
        let what = if resolve_lenient(path) == self.target {
            format!("{} is a dead FUSE mount", path.display())
        } else {
            format!("{} is inside the dead FUSE mount {t}", path.display())
        };
        if self.qsfs {
            format!(
                "{what} of vault {}: the qsfs process serving it has ended (killed or crashed), so every access fails with \"Transport endpoint is not connected\"; clear it with `qsfs umount {t}`, then mount again with `qsfs mount {} {t}`",
                self.source, self.source
            )
        } else {
            format!(
                "{what} of {}: the process serving it has ended, so every access fails with \"Transport endpoint is not connected\"; clear it with `fusermount3 -u {t}` (or `umount {t}` as root)",
                self.source
            )
        }
    }
}

/// The dead FUSE mount at or above `path`, if there is one.
pub fn dead_mount(path: &Path) -> Option<DeadMount> {
    let full = resolve_lenient(path);
    mounts()
        .into_iter()
        .rev()
        .filter(|m| m.fstype == "fuse" || m.fstype.starts_with("fuse."))
        .find(|m| {
            full.starts_with(&m.target)
                && matches!(std::fs::symlink_metadata(&m.target),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
        })
        .map(|m| DeadMount {
            qsfs: Path::new(&m.source).join("qsfs.toml").is_file(),
            target: m.target,
            source: m.source,
        })
}

/// True if `e` is the error of an access to a dead FUSE mount.
pub fn is_dead_mount_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

/// True if process `pid` still runs (a zombie waiting to be reaped has
/// finished all its work and counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Format: "pid (comm) state ..."; comm may hold spaces and ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// A moment in local time (TZ, else /etc/localtime), broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Year, e.g. 2025.
    pub year: i64,
    /// Month, 0 (January) to 11.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute, 0 to 59.
    pub minute: u32,
}

/// `localtime_r(3)` of `secs` since the epoch; None if it is out of range.
pub fn local_time(secs: i64) -> Option<LocalTime> {
    // (time_t is 64 bits on every target qsfs builds for.)
    let t: libc::time_t = secs;
    // SAFETY: a zeroed `tm` is a valid out-parameter; both pointers are
    // valid for the call and localtime_r keeps neither.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(LocalTime {
        year: i64::from(tm.tm_year) + 1900,
        month: u32::try_from(tm.tm_mon).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
    })
}

/// Raises the soft limit on open files to the hard limit.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, zero-initialised struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Caps glibc's malloc arenas at `n` (elsewhere: nothing to do).
///
/// Why: glibc gives threads up to 8 arenas per core, each keeping the
/// memory it freed. A mount runs dozens of threads (FUSE workers, shard
/// writers, node connections) that each touch megabyte buffers, so its
/// peak RSS grew with the arenas rather than with what it held at once.
pub fn cap_malloc_arenas(n: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes only the allocator's
    // tuning; glibc serialises it against other allocations. Arenas that
    // threads made already stay; call it early.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}

/// Capacity of the filesystem holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsSpace {
    /// Total bytes.
    pub total: u64,
    /// Bytes available to an unprivileged writer.
    pub available: u64,
    /// Filesystem id (nodes sharing a disk share it).
    pub fsid: u64,
}

/// `statvfs(3)` of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> io::Result<FsSpace> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
        fsid: st.f_fsid as u64,
    })
}

/// Device id of the filesystem holding `path` (to tell whether two folders
/// share a disk).
pub fn device_of(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.dev())
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(s: &std::os::unix::net::UnixStream) -> Option<u32> {
    peer_cred(s).map(|(uid, _)| uid)
}

/// The uid and gid of the process at the other end of a Unix socket (a
/// file a command stores through the mount's control socket belongs to
/// whoever ran the command, as when it opens the vault itself).
pub fn peer_cred(s: &std::os::unix::net::UnixStream) -> Option<(u32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((cred.uid, cred.gid))
}

/// Ignores SIGPIPE in this process: the mount process writes to control
/// socket clients that may go away at any moment (a `qsfs get ... | head`
/// that has read enough), and a write to them must fail with EPIPE, not
/// end the process serving the mount.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Writes to a socket without raising SIGPIPE when the peer has gone
/// (`send` with `MSG_NOSIGNAL`): the command line keeps the default
/// SIGPIPE action for its stdout, and a mount process that ends while a
/// command talks to it must give the command an error to report, not kill
/// it silently. A socket timeout (SO_SNDTIMEO) shows as `TimedOut`.
pub struct NoSigPipe<'a>(pub &'a std::os::unix::net::UnixStream);

impl io::Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Err(io::ErrorKind::TimedOut.into()),
                _ => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends SIGTERM to process `pid` (a child the caller started).
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall with integer arguments; no memory is passed.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Peak resident set size of this process in KiB (`getrusage`), for
/// benchmarks that report memory.
pub fn peak_rss_kib() -> io::Result<u64> {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(ru.ru_maxrss).unwrap_or(0)) // KiB on Linux
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert!(mounts().iter().any(|m| m.target == Path::new("/")));
    }

    #[test]
    fn fiemap_tells_written_blocks_from_delayed_ones() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let Some(empty) = has_disk_blocks(&f, 0, u64::MAX).unwrap() else {
            return; // no FIEMAP on this filesystem
        };
        assert!(!empty, "an empty file has no blocks");
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        let before = has_disk_blocks(&f, 0, u64::MAX).unwrap();
        f.sync_data().unwrap();
        assert_eq!(has_disk_blocks(&f, 0, u64::MAX).unwrap(), Some(true));
        assert_eq!(
            has_disk_blocks(&f, 2 << 20, 4096).unwrap(),
            Some(false),
            "past the end"
        );
        eprintln!("before fdatasync: {before:?}");
    }

    #[test]
    fn space_and_sync_work_on_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let s = fs_space(dir.path()).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        let f = File::create(dir.path().join("x")).unwrap();
        start_writeback(&f).unwrap();
        fsync_dir(dir.path()).unwrap();
        assert!(fs_space(&dir.path().join("missing")).is_err());
    }
}
