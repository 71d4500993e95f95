//! The wire frame, version 1: header layout, nonce and associated data. Pure code.
//!
//! ```text
//! Frame (integers big endian):
//!   off len  field
//!     0   1  version byte 0xA1 (frame format 1)
//!     1   1  flags: bit 0 MORE (the message continues in the next frame),
//!            bit 1 HELLO (a handshake message); other bits 0
//!     2  16  key id the frame is sealed under (UUID bytes)
//!    18   8  key sequence: frame number under this key, from 0
//!    26   8  global sequence: frame number in this direction, from 0
//!    34   4  payload length L (plaintext bytes)
//!    38   L  AES-256-GCM ciphertext
//!  38+L  16  GCM tag
//!
//! nonce (12 bytes) = direction byte (0 A->B, 1 B->A), 0, 0, 0,
//!                    key sequence (u64)
//! AAD   (55 bytes) = the 38 header bytes, direction byte, link id (16)
//! ```
//!
//! A key protects one direction of one link and is sealed by one sender
//! only, and the key sequence counts that sender's frames under it, so a
//! nonce never repeats under a key. The header is authenticated (AAD), so
//! no field can be changed in transit; the direction and link id in the
//! AAD stop a frame from being reflected back or moved to another link.

use crate::qkd::{Direction, KeyId};

/// The first byte of every frame of format 1.
pub const VERSION: u8 = 0xA1;
/// Header bytes before the ciphertext.
pub const HEADER_LEN: usize = 38;
/// GCM tag bytes after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Flag: the message continues in the next frame.
pub const MORE: u8 = 1;
/// Flag: a handshake message.
pub const HELLO: u8 = 2;
const KNOWN_FLAGS: u8 = MORE | HELLO;
/// Length of the associated data.
pub const AAD_LEN: usize = HEADER_LEN + 1 + 16;

/// A frame's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// [`MORE`] and [`HELLO`] bits.
    pub flags: u8,
    /// The key the frame is sealed under.
    pub key: KeyId,
    /// Frame number under this key.
    pub key_seq: u64,
    /// Frame number in this direction.
    pub global_seq: u64,
    /// Plaintext length.
    pub len: u32,
}

impl FrameHeader {
    /// The header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1] = self.flags;
        h[2..18].copy_from_slice(&self.key.0);
        h[18..26].copy_from_slice(&self.key_seq.to_be_bytes());
        h[26..34].copy_from_slice(&self.global_seq.to_be_bytes());
        h[34..38].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    /// Parses header bytes; the error says what is wrong.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<FrameHeader, String> {
        if h[0] != VERSION {
            return Err(format!(
                "not a qsfs link frame of format 1 (first byte {:#04x}, expected {VERSION:#04x})",
                h[0]
            ));
        }
        if h[1] & !KNOWN_FLAGS != 0 {
            return Err(format!("unknown frame flags {:#04x}", h[1]));
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&h[2..18]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Ok(FrameHeader {
            flags: h[1],
            key: KeyId(key),
            key_seq: u64_at(18),
            global_seq: u64_at(26),
            len: u32::from_be_bytes([h[34], h[35], h[36], h[37]]),
        })
    }
}

/// The direction byte used in nonce and AAD.
pub fn dir_byte(dir: Direction) -> u8 {
    match dir {
        Direction::AToB => 0,
        Direction::BToA => 1,
    }
}

/// The GCM nonce of frame `key_seq` under a key of direction `dir`.
pub fn nonce(dir: Direction, key_seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = dir_byte(dir);
    n[4..].copy_from_slice(&key_seq.to_be_bytes());
    n
}

/// The associated data: header, direction, link id.
pub fn aad(header: &[u8; HEADER_LEN], dir: Direction, link_id: &[u8; 16]) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN] = dir_byte(dir);
    a[HEADER_LEN + 1..].copy_from_slice(link_id);
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_round_trip() {
        let h = FrameHeader {
            flags: MORE,
            key: KeyId([3; 16]),
            key_seq: 0x0102,
            global_seq: 0x0a0b,
            len: 0x00ff_0001,
        };
        let b = h.encode();
        assert_eq!(b[0], 0xA1);
        assert_eq!(b[1], 1);
        assert_eq!(&b[2..18], &[3; 16]);
        assert_eq!(&b[24..26], &[1, 2]);
        assert_eq!(&b[32..34], &[0x0a, 0x0b]);
        assert_eq!(&b[34..38], &[0, 0xff, 0, 1]);
        assert_eq!(FrameHeader::decode(&b).unwrap(), h);
        let mut bad = b;
        bad[0] = 0xA2;
        assert!(FrameHeader::decode(&bad).is_err());
        let mut bad = b;
        bad[1] = 4;
        assert!(FrameHeader::decode(&bad).is_err());
    }

    #[test]
    fn nonce_and_aad_bind_direction() {
        assert_eq!(
            nonce(Direction::BToA, 5),
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]
        );
        assert_ne!(nonce(Direction::AToB, 5), nonce(Direction::BToA, 5));
        let h = [9u8; HEADER_LEN];
        let a = aad(&h, Direction::AToB, &[7; 16]);
        assert_eq!(a[HEADER_LEN], 0);
        assert_eq!(&a[HEADER_LEN + 1..], &[7; 16]);
    }
}
