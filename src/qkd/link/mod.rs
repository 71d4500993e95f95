//! QKD-keyed links: framed AES-256-GCM over any byte stream, keys drawn once each from a key source.
//!
//! A [`Link`] turns a byte stream (TCP, a Unix socket, an in-process pipe)
//! into a [`Channel`] of whole messages. Messages are cut into frames of
//! at most [`LinkConfig::max_frame`] bytes (layout in [`frame`]), each
//! sealed under a one-time key from the link's [`KeySource`]: a key pool
//! file ([`crate::qkd::pool::PoolFile`]) or a key manager. The sender moves
//! to a fresh key every [`LinkConfig::rekey_bytes`] and every
//! [`LinkConfig::rekey_interval`] of traffic (the paper's 100 key updates
//! a second). The receiver refuses replayed, reordered and altered frames,
//! frames under unknown or used keys, and a peer with another pool; any
//! refusal kills the link: every later call fails and the stream is closed.
//!
//! Each end sends a hello ([`hello`]) under its first key, so a wrong
//! pool or peer fails in [`Link::new`], not at the first shard. End A
//! speaks first; end B answers only once A's hello opened and checked, so
//! a stranger connecting to a node spends none of its keys.
//!
//! Streams should be set up by the caller: `TcpStream::set_nodelay(true)`
//! (frames are written whole, so Nagle only adds delay) and read timeouts
//! where a dead peer must cost a timeout, not a hang. A timeout while
//! waiting for the first byte of a message leaves the link usable; one in
//! the middle of a frame kills it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use qsfs::qkd::pool::PoolFile;
//! use qsfs::qkd::link::{Link, LinkConfig};
//! use qsfs::qkd::{Channel, End};
//! let pool = Arc::new(PoolFile::open("node-0.A.pool".as_ref())?);
//! let cfg = LinkConfig::for_pool(&pool);
//! let tcp = std::net::TcpStream::connect("127.0.0.1:7100")?;
//! tcp.set_nodelay(true)?;
//! let mut link = Link::new(tcp, End::A, pool, cfg)?;
//! link.send(b"hello node")?;
//! let reply = link.recv()?;
//! # let _ = reply; Ok(()) }
//! ```

mod cipher;
pub mod frame;
pub mod hello;
mod open;
mod seal;
mod split;

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::qkd::pool::PoolFile;
use crate::qkd::{Channel, ChannelError, End, KeySource};

pub use split::{LinkReceiver, LinkSender, SplitStream};

use hello::Hello;
use open::Opener;
use seal::Sealer;

/// Default key change after this many bytes under one key.
pub const DEFAULT_REKEY_BYTES: u64 = 64 << 20;
/// Default key change after this long under one key.
pub const DEFAULT_REKEY_INTERVAL: Duration = Duration::from_millis(10);
/// Default largest frame on the wire: 1 MiB of payload plus header and tag.
pub const DEFAULT_MAX_FRAME: usize = (1 << 20) + frame::OVERHEAD;
/// Default largest message.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// How a link seals and what it accepts. Both ends must agree on
/// `max_frame` (a bigger frame is refused) and `link_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Change keys before a key has protected more than this many bytes.
    pub rekey_bytes: u64,
    /// Change keys once a key has been in use this long.
    pub rekey_interval: Duration,
    /// Largest frame on the wire, header and tag included.
    pub max_frame: usize,
    /// Largest message; a bigger one is refused (sending: not sent,
    /// receiving: the link is killed).
    pub max_message: usize,
    /// The link's name, in every error.
    pub link_name: String,
    /// Shared by both ends (the key pool's link id), bound into every
    /// frame's associated data.
    pub link_id: [u8; 16],
}

impl LinkConfig {
    /// Defaults for a link named `name`; the link id is derived from the
    /// name (for key sources without one, such as a KME).
    pub fn new(name: &str) -> LinkConfig {
        let h = blake3::derive_key("qsfs link id v1", name.as_bytes());
        let mut link_id = [0u8; 16];
        link_id.copy_from_slice(&h[..16]);
        LinkConfig {
            rekey_bytes: DEFAULT_REKEY_BYTES,
            rekey_interval: DEFAULT_REKEY_INTERVAL,
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
            link_name: name.to_owned(),
            link_id,
        }
    }

    /// Plaintext bytes per frame: `max_frame` less header and tag (at
    /// least 1, at most what the 32-bit length field holds).
    pub fn payload_max(&self) -> usize {
        self.max_frame
            .saturating_sub(frame::OVERHEAD)
            .clamp(1, u32::MAX as usize)
    }

    /// Defaults for the link of a key pool: its name and link id.
    pub fn for_pool(pool: &PoolFile) -> LinkConfig {
        let mut c = LinkConfig::new(KeySource::link(pool));
        c.link_id = pool.link_id();
        c
    }
}

/// A failure and whether it leaves the stream out of step (fatal).
pub(crate) struct Fail {
    pub(crate) err: ChannelError,
    pub(crate) fatal: bool,
}

impl Fail {
    pub(crate) fn soft(err: ChannelError) -> Fail {
        Fail { err, fatal: false }
    }
}

/// Why a link died; shared by the two halves of a split link.
#[derive(Clone, Default)]
pub(crate) struct Fate(Arc<Mutex<Option<(Kind, String)>>>);

#[derive(Clone, Copy)]
enum Kind {
    Refused,
    Closed,
    Other,
}

impl Fate {
    /// The error for a call on a dead link, or `None` while it lives.
    pub(crate) fn check(&self, link: &str) -> Result<(), ChannelError> {
        let g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*g {
            None => Ok(()),
            Some((Kind::Refused, why)) => Err(ChannelError::Refused {
                link: link.to_owned(),
                detail: format!("the link was closed after an earlier refusal ({why})"),
            }),
            Some((Kind::Closed, _)) => Err(ChannelError::Closed {
                link: link.to_owned(),
            }),
            Some((Kind::Other, why)) => Err(ChannelError::Io {
                link: link.to_owned(),
                detail: format!("the link was closed after an earlier failure ({why})"),
                source: std::io::ErrorKind::NotConnected.into(),
            }),
        }
    }

    /// Records the first fatal failure.
    pub(crate) fn kill(&self, err: &ChannelError) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.is_none() {
            let kind = match err {
                ChannelError::Refused { .. } => Kind::Refused,
                ChannelError::Closed { .. } => Kind::Closed,
                _ => Kind::Other,
            };
            *g = Some((kind, err.to_string()));
        }
    }
}

/// A link over one stream: sends and receives whole messages.
pub struct Link<S: Read + Write + Send> {
    stream: Option<BufReader<S>>,
    sealer: Sealer,
    opener: Opener,
    fate: Fate,
    cfg: Arc<LinkConfig>,
    peer: Hello,
}

impl<S: Read + Write + Send> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("link", &self.cfg.link_name)
            .field("peer_end", &self.peer.end)
            .finish()
    }
}

/// Read buffer: big enough that small messages take one read.
const READ_BUF: usize = 64 << 10;

impl<S: Read + Write + Send> Link<S> {
    /// Sets up the link as end `end` over `stream`: sends this end's hello
    /// and checks the peer's. Fails (and drops the stream) if the peer uses
    /// another key pool, is the same end, or speaks another protocol.
    pub fn new(
        stream: S,
        end: End,
        keys: Arc<dyn KeySource>,
        cfg: LinkConfig,
    ) -> Result<Link<S>, ChannelError> {
        let cfg = Arc::new(cfg);
        let mut link = Link {
            stream: Some(BufReader::with_capacity(READ_BUF, stream)),
            sealer: Sealer::new(Arc::clone(&keys), end.sends(), Arc::clone(&cfg)),
            opener: Opener::new(keys, end.sends().reverse(), Arc::clone(&cfg)),
            fate: Fate::default(),
            peer: Hello {
                protocol: hello::PROTOCOL,
                link_id: cfg.link_id,
                end,
                link: cfg.link_name.clone(),
            },
            cfg,
        };
        let ours = link.peer.clone();
        // End A (the client) speaks first. End B (the node) answers only
        // a hello it could open and check: a stranger who connects to a
        // node's port cannot make it spend a key (and a durable write) on
        // its own hello.
        if end == End::A {
            link.send_inner(&ours.encode(), true)?;
        }
        let mut buf = Vec::new();
        let was_hello = match link.recv_inner(&mut buf) {
            // B refuses a hello by closing the connection (it never
            // answers what it could not check), so A can only say why
            // that usually happens.
            Err(ChannelError::Closed { link: name }) if end == End::A => {
                return Err(ChannelError::Refused {
                    link: name,
                    detail: "the peer closed the connection instead of answering this end's \
                             hello: it refuses new connections for now (too many are still in \
                             their handshake, from this address or in all: others may be \
                             flooding it), or it uses another key pool (or another link's), is \
                             not the other end of this link, or has no keys left; its log says \
                             which"
                        .to_owned(),
                });
            }
            other => other?,
        };
        let peer = if was_hello {
            Hello::decode(&buf).and_then(|p| ours.check_peer(&p).map(|()| p))
        } else {
            Err("the peer's first message is not a hello".to_owned())
        };
        match peer {
            Ok(p) => {
                link.peer = p;
                if end == End::B {
                    link.send_inner(&ours.encode(), true)?;
                }
                Ok(link)
            }
            Err(detail) => {
                let e = ChannelError::Refused {
                    link: link.cfg.link_name.clone(),
                    detail,
                };
                link.die(&e);
                Err(e)
            }
        }
    }

    /// The link's settings.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// The peer's name for the link, from its hello.
    pub fn peer_link_name(&self) -> &str {
        &self.peer.link
    }

    /// Keys sealed under by this end and by the peer so far (hello keys
    /// included).
    pub fn keys_used(&self) -> (u64, u64) {
        (self.sealer.keys_used(), self.opener.keys_used())
    }

    fn die(&mut self, e: &ChannelError) {
        self.fate.kill(e);
        // Dropping the stream closes the connection.
        self.stream = None;
    }

    fn send_inner(&mut self, msg: &[u8], hello: bool) -> Result<(), ChannelError> {
        self.fate.check(&self.cfg.link_name)?;
        let Some(s) = self.stream.as_mut() else {
            return Err(closed(&self.cfg.link_name));
        };
        match self.sealer.send(s.get_mut(), msg, hello) {
            Ok(()) => Ok(()),
            Err(f) => {
                if f.fatal {
                    self.die(&f.err);
                }
                Err(f.err)
            }
        }
    }

    fn recv_inner(&mut self, buf: &mut Vec<u8>) -> Result<bool, ChannelError> {
        self.fate.check(&self.cfg.link_name)?;
        let Some(s) = self.stream.as_mut() else {
            return Err(closed(&self.cfg.link_name));
        };
        match self.opener.recv(s, buf) {
            Ok(h) => Ok(h),
            Err(f) => {
                if f.fatal {
                    self.die(&f.err);
                }
                Err(f.err)
            }
        }
    }

    /// Receives the next message into `buf` (replacing its contents),
    /// reusing its allocation.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), ChannelError> {
        if self.recv_inner(buf)? {
            let e = ChannelError::Refused {
                link: self.cfg.link_name.clone(),
                detail: "a second hello from the peer".to_owned(),
            };
            self.die(&e);
            return Err(e);
        }
        Ok(())
    }
}

fn closed(link: &str) -> ChannelError {
    ChannelError::Closed {
        link: link.to_owned(),
    }
}

impl<S: Read + Write + Send> Channel for Link<S> {
    fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        self.send_inner(msg, false)
    }

    fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut buf = Vec::new();
        self.recv_into(&mut buf)?;
        Ok(buf)
    }
}
