//! QKD-keyed links: where link keys come from and the links that use them.
//!
//! A QKD link hands both of its ends the same 256-bit keys, each named by a
//! key ID (a UUID, as ETSI GS QKD 014 names keys). qsfs gets them from a
//! pre-shared key pool file ([`pool`]) or from a key manager (KME) over
//! the ETSI 014 API ([`etsi014`]); the link layer ([`link`]) seals frames
//! with them. This file is the contract ([`KeySource`], [`Channel`]); the
//! implementations live in the submodules:
//!
//! ```text
//! pool/     pre-shared key pool files: format, generation, refill, status
//! etsi014/  ETSI GS QKD 014 client and a test key manager (KME) server
//! link/     the link frames: one-time keys per frame, hello, split ends
//! ```
//!
//! Keys are consumed in two places only: `link/seal.rs` draws the next key
//! for each rekey of a sending end, and `link/open.rs` takes the key the
//! peer named, by ID, from the [`KeySource`].
//!
//! Directions: a link has two ends. The end that made the link (the vault
//! side, the one that connects) is end **A**, the node side is end **B**.
//! Keys for A -> B traffic and keys for B -> A traffic are disjoint sets,
//! so the two directions never draw the same key.

pub mod etsi014;
pub mod link;
pub mod pool;

use std::fmt;

use thiserror::Error;
use zeroize::Zeroizing;

/// Key length: AES-256.
pub const KEY_LEN: usize = 32;

/// A key's name, shared by both ends: UUID bytes (RFC 9562 layout).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// The canonical hyphenated UUID text (`8-4-4-4-12` lowercase hex).
    pub fn to_uuid_string(&self) -> String {
        let h = hex::encode(self.0);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Parses the hyphenated UUID text (case-insensitive).
    pub fn parse(text: &str) -> Option<KeyId> {
        let compact: String = text.chars().filter(|c| *c != '-').collect();
        if compact.len() != 32 || text.len() != 36 {
            return None;
        }
        let bytes = hex::decode(compact).ok()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes);
        Some(KeyId(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uuid_string())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Which way traffic protected by a key flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From end A (vault side) to end B (node side).
    AToB,
    /// From end B to end A.
    BToA,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::AToB => Direction::BToA,
            Direction::BToA => Direction::AToB,
        }
    }
}

/// Which end of a link a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The vault side (connects, sends A -> B).
    A,
    /// The node side (accepts, sends B -> A).
    B,
}

impl End {
    /// The direction this end sends in.
    pub fn sends(self) -> Direction {
        match self {
            End::A => Direction::AToB,
            End::B => Direction::BToA,
        }
    }
}

/// One link key. The bytes are wiped when dropped.
pub struct LinkKey {
    /// Its name.
    pub id: KeyId,
    /// The key.
    pub key: Zeroizing<[u8; KEY_LEN]>,
}

/// Its only secret, `key`, wipes itself when dropped.
impl zeroize::ZeroizeOnDrop for LinkKey {}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkKey({}, <secret>)", self.id)
    }
}

/// Counts for `qsfs status` and `qsfs keypool status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct KeyCounts {
    /// Keys still unused, both directions.
    pub left: u64,
    /// Keys used (or delivered), both directions.
    pub used: u64,
    /// Keys the source ever held.
    pub total: u64,
}

/// Why a key could not be had.
#[derive(Debug, Error)]
pub enum KeyError {
    /// No unused key is left in that direction.
    #[error("link {link}: the key pool is exhausted ({detail}); refill it: {remedy}")]
    Exhausted {
        /// Link name.
        link: String,
        /// Which pool / direction.
        detail: String,
        /// What the user can do.
        remedy: String,
    },
    /// The peer named a key this source does not have.
    #[error("link {link}: unknown key {id}: the peer uses another key pool or KME")]
    Unknown {
        /// Link name.
        link: String,
        /// The key named.
        id: KeyId,
    },
    /// The peer named a key that was already used (a replay).
    #[error("link {link}: key {id} was already used: replayed or duplicated traffic")]
    Used {
        /// Link name.
        link: String,
        /// The key named.
        id: KeyId,
    },
    /// The key belongs to the other direction.
    #[error("link {link}: key {id} is for the other direction")]
    WrongDirection {
        /// Link name.
        link: String,
        /// The key named.
        id: KeyId,
    },
    /// Reading or persisting the source failed.
    #[error("link {link}: key source {source_name}: {detail}")]
    Source {
        /// Link name.
        link: String,
        /// The pool file or KME URL.
        source_name: String,
        /// What happened.
        detail: String,
    },
}

/// Where a link's keys come from: a pool file or a KME.
///
/// Both calls consume: the key's use is persisted (the pool file updated
/// and the key bytes overwritten on disk, or the KME has handed it out)
/// before the key is returned, so no key protects data twice, even across
/// a crash.
pub trait KeySource: Send + Sync {
    /// The link's name (for messages).
    fn link(&self) -> &str;
    /// Where the keys come from: a pool file path or a KME URL.
    fn describe(&self) -> String;
    /// A fresh key for sending in `dir`.
    fn next_key(&self, dir: Direction) -> Result<LinkKey, KeyError>;
    /// The key the peer named in its frame, for receiving in `dir`;
    /// refuses unknown keys, used keys and keys of the other direction.
    fn take_key(&self, dir: Direction, id: &KeyId) -> Result<LinkKey, KeyError>;
    /// Keys left and used.
    fn counts(&self) -> Result<KeyCounts, KeyError>;
    /// True when qsfs itself refills this source (a simulated link).
    fn refills(&self) -> bool {
        false
    }
}

/// Why a message channel failed.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The transport failed (connection reset, timeout, ...).
    #[error("link {link}: {detail}")]
    Io {
        /// Link name.
        link: String,
        /// What happened.
        detail: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the connection cleanly.
    #[error("link {link}: the peer closed the connection")]
    Closed {
        /// Link name.
        link: String,
    },
    /// A frame was refused (tampered, replayed, reordered, unknown key);
    /// the connection must be dropped.
    #[error("link {link}: frame refused: {detail}; connection closed")]
    Refused {
        /// Link name.
        link: String,
        /// Why.
        detail: String,
    },
    /// No key for the next frame.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A message channel between the vault and one node: whole messages in
/// order, each sent and received exactly once. The link layer implements
/// it with QKD-keyed AES-256-GCM frames; the node protocol runs on it.
pub trait Channel: Send {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError>;
    /// Receives the next message.
    fn recv(&mut self) -> Result<Vec<u8>, ChannelError>;
}
