//! The handshake message each end sends before any other, so a wrong pool or peer fails at connect time.
//!
//! ```text
//! Hello (sent as the first message, in frames flagged HELLO):
//!   off len field
//!     0   8 "QSFSLINK"
//!     8   2 link protocol version (u16 big endian), 1
//!    10  16 link id (from the key pool header)
//!    26   1 sender's end: b'A' or b'B'
//!    27   1 link name length N
//!    28   N link name, UTF-8
//! ```
//!
//! The hello is sealed under the sender's first key like any message, so
//! a peer with another key pool fails on it (unknown key) before anything
//! else is exchanged; the fields then catch a peer of another link with a
//! colliding key (impossible in practice) or one given the wrong end's file.
//!
//! Order: end A (the client) sends its hello first; end B (the node) reads
//! and checks it, and only then sends its own. B never answers a hello it
//! could not open, so connecting to a node costs it no key.

use crate::qkd::End;

/// The hello's first bytes.
pub const MAGIC: &[u8; 8] = b"QSFSLINK";
/// The link protocol this code speaks.
pub const PROTOCOL: u16 = 1;

/// What a peer says in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Its protocol version.
    pub protocol: u16,
    /// The link id of its key pool.
    pub link_id: [u8; 16],
    /// The end it is.
    pub end: End,
    /// Its name for the link.
    pub link: String,
}

impl Hello {
    /// The message bytes (a name over 255 bytes is cut at a char boundary).
    pub fn encode(&self) -> Vec<u8> {
        let mut name = self.link.as_str();
        while name.len() > 255 {
            let mut cut = 255;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = &name[..cut];
        }
        let mut m = Vec::with_capacity(28 + name.len());
        m.extend_from_slice(MAGIC);
        m.extend_from_slice(&self.protocol.to_be_bytes());
        m.extend_from_slice(&self.link_id);
        m.push(match self.end {
            End::A => b'A',
            End::B => b'B',
        });
        m.push(name.len() as u8);
        m.extend_from_slice(name.as_bytes());
        m
    }

    /// Parses a hello; the error says what is wrong.
    pub fn decode(m: &[u8]) -> Result<Hello, String> {
        if m.len() < 28 || &m[..8] != MAGIC {
            return Err("the peer's first message is not a qsfs link hello".to_owned());
        }
        let protocol = u16::from_be_bytes([m[8], m[9]]);
        let mut link_id = [0u8; 16];
        link_id.copy_from_slice(&m[10..26]);
        let end = match m[26] {
            b'A' => End::A,
            b'B' => End::B,
            b => return Err(format!("the peer's hello names end {b:#04x}")),
        };
        let n = usize::from(m[27]);
        if m.len() != 28 + n {
            return Err("the peer's hello has a wrong length".to_owned());
        }
        let link = String::from_utf8_lossy(&m[28..]).into_owned();
        Ok(Hello {
            protocol,
            link_id,
            end,
            link,
        })
    }

    /// Checks the peer's hello against ours; the error says what is wrong.
    pub fn check_peer(&self, peer: &Hello) -> Result<(), String> {
        if peer.protocol != self.protocol {
            return Err(format!(
                "the peer speaks link protocol {}, this qsfs speaks {}",
                peer.protocol, self.protocol
            ));
        }
        if peer.link_id != self.link_id {
            return Err(format!(
                "the peer's key pool belongs to another link ({:?}, link id {}; ours is {}): \
                 it uses another key pool",
                peer.link,
                hex::encode(peer.link_id),
                hex::encode(self.link_id)
            ));
        }
        if peer.end == self.end {
            return Err(format!(
                "both ends claim to be end {:?}: one was given the wrong file of the pair \
                 (the node needs the --peer-out file)",
                self.end
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hello(end: End) -> Hello {
        Hello {
            protocol: PROTOCOL,
            link_id: [5; 16],
            end,
            link: "node-1".to_owned(),
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let a = hello(End::A);
        let bytes = a.encode();
        assert_eq!(&bytes[..8], b"QSFSLINK");
        assert_eq!(Hello::decode(&bytes).unwrap(), a);
        assert!(a.check_peer(&hello(End::B)).is_ok());
        assert!(
            a.check_peer(&hello(End::A))
                .unwrap_err()
                .contains("wrong file")
        );
        let mut other = hello(End::B);
        other.link_id = [6; 16];
        assert!(
            a.check_peer(&other)
                .unwrap_err()
                .contains("another key pool")
        );
        other = hello(End::B);
        other.protocol = 2;
        assert!(a.check_peer(&other).is_err());
        assert!(Hello::decode(b"short").is_err());
    }
}
