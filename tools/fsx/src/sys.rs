//! The system calls std has no wrapper for, each in a safe function.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fallocate(2)` with `mode`.
pub fn fallocate(f: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    check(unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) })
}

/// Drops the file's clean cached pages, so the next reads reach the
/// filesystem instead of the page cache.
pub fn drop_cache(f: &File) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn page() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// A shared mapping of `[offset, offset + len)` of a file (the mapping
/// itself starts at the page below `offset`).
struct Map {
    addr: *mut libc::c_void,
    map_len: usize,
    skip: usize,
    len: usize,
}

impl Map {
    fn new(f: &File, offset: u64, len: usize, write: bool) -> io::Result<Map> {
        let start = offset / page() * page();
        let skip = (offset - start) as usize;
        let map_len = skip + len;
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of an open file; the kernel picks the
        // address; the length is non-zero (callers pass len > 0).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                start as i64,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            addr,
            map_len,
            skip,
            len,
        })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned.
        unsafe {
            libc::munmap(self.addr, self.map_len);
        }
    }
}

/// Writes `data` at `offset` through a shared mapping, then msync
/// (MS_SYNC when `sync`, else MS_ASYNC). The range must lie within the
/// file's size.
pub fn map_write(f: &File, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let m = Map::new(f, offset, data.len(), true)?;
    // SAFETY: the mapping covers skip..skip+len, which is data.len() bytes,
    // and is writable; the regions cannot overlap (data is our buffer).
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), (m.addr as *mut u8).add(m.skip), m.len);
    }
    let flags = if sync { libc::MS_SYNC } else { libc::MS_ASYNC };
    // SAFETY: syncing the whole mapping we own.
    check(unsafe { libc::msync(m.addr, m.map_len, flags) })
}

/// Reads `len` bytes at `offset` through a shared mapping. The range must
/// lie within the file's size.
pub fn map_read(f: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let m = Map::new(f, offset, len, false)?;
    let mut out = vec![0u8; len];
    // SAFETY: the mapping covers skip..skip+len and is readable.
    unsafe {
        std::ptr::copy_nonoverlapping((m.addr as *const u8).add(m.skip), out.as_mut_ptr(), len);
    }
    Ok(out)
}
