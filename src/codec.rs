//! Little-endian byte writer/reader shared by every on-disk record format.
//!
//! Each format (shard header, manifest, inode, ...) documents its own layout
//! next to its code; this module only provides the primitive fields so the
//! layouts read the same everywhere and a truncated record is a typed error
//! instead of a panic.

use thiserror::Error;

/// A record could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record ended before a field was complete.
    #[error("{what}: record truncated (needed {needed} more bytes at offset {offset})")]
    Truncated {
        /// Which record was being read.
        what: &'static str,
        /// Offset of the field that did not fit.
        offset: usize,
        /// Bytes that were missing.
        needed: usize,
    },
    /// The record's version is not one this build can read.
    #[error("{what}: unsupported format version {found} (this build reads version {supported})")]
    Version {
        /// Which record was being read.
        what: &'static str,
        /// Version found in the record.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// A field holds a value that the format does not allow.
    #[error("{what}: invalid field {field}: {detail}")]
    Invalid {
        /// Which record was being read.
        what: &'static str,
        /// Field name.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Bytes were left over after the record.
    #[error("{what}: {extra} unexpected trailing bytes")]
    Trailing {
        /// Which record was being read.
        what: &'static str,
        /// Number of extra bytes.
        extra: usize,
    },
}

/// Appends fixed-width little-endian fields to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
        }
    }
    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a u16, little-endian.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u32, little-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u64, little-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends an i64, little-endian.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends raw bytes (fixed length known to the reader).
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends a u32 length prefix then the bytes.
    pub fn blob(&mut self, v: &[u8]) -> &mut Self {
        // Records are small (names, link targets, xattr values); a value over
        // 4 GiB cannot be produced by any caller, so saturating is only a guard.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.bytes(v)
    }
    /// The encoded record.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fixed-width little-endian fields from a record.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`; `what` names the record in errors.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { what, buf, pos: 0 }
    }
    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.len() - self.pos;
        if rest < n {
            return Err(DecodeError::Truncated {
                what: self.what,
                offset: self.pos,
                needed: n - rest,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// Reads a u32 length prefix and that many bytes.
    pub fn blob(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fails if bytes are left over.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing {
                what: self.what,
                extra,
            }),
        }
    }
    /// An `Invalid` error for this record.
    pub fn invalid(&self, field: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what: self.what,
            field,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::default();
        w.u8(7)
            .u16(0x1234)
            .u32(0xdead_beef)
            .u64(u64::MAX)
            .i64(-5)
            .blob(b"name");
        let buf = w.finish();
        let mut r = Reader::new("test", &buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 0x1234);
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.blob().unwrap(), b"name");
        r.finish().unwrap();
        let mut short = Reader::new("test", &buf[..3]);
        short.u8().unwrap();
        assert!(matches!(
            short.u32(),
            Err(DecodeError::Truncated { needed: 2, .. })
        ));
    }
}
