//! `ObjectSource`: random-access reads into a sealed object `N`, for key recovery.
//!
//! Key recovery needs only `R3` (33 bytes at `n2`) and `KR` (32 bytes near
//! `n1`) before any streaming starts; the mount reads them from the stripes
//! that hold them, tests read them from memory or a file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Random access into `N`.
pub trait ObjectSource {
    /// Fills `buf` with the bytes of `N` at `offset..offset + buf.len()`;
    /// fails (for example with `UnexpectedEof`) if they are not all there.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Copies `buf.len()` bytes of `data` at `offset`, or fails with `UnexpectedEof`.
fn read_slice(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).ok();
    let piece = start
        .and_then(|s| s.checked_add(buf.len()).map(|e| (s, e)))
        .and_then(|(s, e)| data.get(s..e));
    match piece {
        Some(p) => {
            buf.copy_from_slice(p);
            Ok(())
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} bytes at offset {offset} lie beyond the {} bytes of the object",
                buf.len(),
                data.len()
            ),
        )),
    }
}

impl ObjectSource for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self, offset, buf)
    }
}

impl ObjectSource for Vec<u8> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self, offset, buf)
    }
}

impl ObjectSource for File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl ObjectSource for &File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn slices_vecs_and_files_read_the_same() {
        let data: Vec<u8> = (0..200u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let mut s: &[u8] = &data;
        let mut v = data.clone();
        let mut a = [0u8; 10];
        let mut b = [0u8; 10];
        let mut c = [0u8; 10];
        s.read_at(50, &mut a).unwrap();
        v.read_at(50, &mut b).unwrap();
        ObjectSource::read_at(&mut f, 50, &mut c).unwrap();
        assert_eq!(a, [50, 51, 52, 53, 54, 55, 56, 57, 58, 59]);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(
            s.read_at(195, &mut a).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(v.read_at(u64::MAX, &mut b).is_err());
        assert!(ObjectSource::read_at(&mut f, 195, &mut c).is_err());
    }
}
