//! The receiving side: reads frames, checks sequence and key, opens them, reassembles messages.
//!
//! Checked in this order, before any plaintext is released: the header
//! parses; the global sequence is exactly the next one (a repeat is a
//! replay, a jump a lost or reordered frame); a frame under the current key
//! has the next key sequence; a new key id was not seen before on this
//! connection and starts at key sequence 0, and the pool hands it out
//! (`take_key`: unknown, used or wrong-direction keys are refused); the GCM
//! tag is valid. Ciphertext is read straight into the message buffer and
//! decrypted in place.

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind, Read};
use std::sync::Arc;

use super::cipher::FrameCipher;
use super::seal::internal;

use super::frame::{self, FrameHeader, HEADER_LEN, TAG_LEN};
use super::{Fail, LinkConfig};
use crate::qkd::{ChannelError, Direction, KeyError, KeyId, KeySource};

/// Key ids remembered after the link moved on, for a clear "old key" refusal
/// (older ones are still refused by the pool as used).
const OLD_KEYS: usize = 64;

struct RecvKey {
    id: KeyId,
    aead: FrameCipher,
    next_seq: u64,
}

/// Opening state of one direction.
pub(crate) struct Opener {
    keys: Arc<dyn KeySource>,
    /// The direction the peer sends in.
    dir: Direction,
    cfg: Arc<LinkConfig>,
    cur: Option<RecvKey>,
    old: VecDeque<KeyId>,
    global: u64,
    keys_used: u64,
}

impl Opener {
    pub(crate) fn new(keys: Arc<dyn KeySource>, dir: Direction, cfg: Arc<LinkConfig>) -> Opener {
        Opener {
            keys,
            dir,
            cfg,
            cur: None,
            old: VecDeque::new(),
            global: 0,
            keys_used: 0,
        }
    }

    /// Keys the peer has sealed under so far, as seen here.
    pub(crate) fn keys_used(&self) -> u64 {
        self.keys_used
    }

    fn refused(&self, detail: String) -> Fail {
        Fail {
            err: ChannelError::Refused {
                link: self.cfg.link_name.clone(),
                detail,
            },
            fatal: true,
        }
    }

    fn io(&self, detail: &str, source: std::io::Error) -> Fail {
        Fail {
            err: ChannelError::Io {
                link: self.cfg.link_name.clone(),
                detail: detail.to_owned(),
                source,
            },
            fatal: true,
        }
    }

    /// Receives one whole message into `msg` (cleared first); returns
    /// whether it was a hello. A timeout before the first byte of a
    /// message is not fatal.
    pub(crate) fn recv<R: BufRead>(&mut self, r: &mut R, msg: &mut Vec<u8>) -> Result<bool, Fail> {
        msg.clear();
        // Wait for the message's first byte: a clean end of stream or a
        // timeout here leaves the link in step.
        match r.fill_buf() {
            Ok([]) => {
                return Err(Fail {
                    err: ChannelError::Closed {
                        link: self.cfg.link_name.clone(),
                    },
                    fatal: true,
                });
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Fail {
                    err: ChannelError::Io {
                        link: self.cfg.link_name.clone(),
                        detail: "timed out waiting for the peer".to_owned(),
                        source: e,
                    },
                    fatal: false,
                });
            }
            Err(e) => return Err(self.io("receiving failed", e)),
        }
        let mut hello = None;
        loop {
            let h = self.read_frame(r, msg)?;
            let is_hello = h.flags & frame::HELLO != 0;
            if *hello.get_or_insert(is_hello) != is_hello {
                return Err(self.refused("a message mixes hello and data frames".to_owned()));
            }
            if h.flags & frame::MORE == 0 {
                return Ok(is_hello);
            }
        }
    }

    /// Reads, checks and opens one frame, appending its plaintext to `msg`.
    fn read_frame<R: BufRead>(
        &mut self,
        r: &mut R,
        msg: &mut Vec<u8>,
    ) -> Result<FrameHeader, Fail> {
        let mut hb = [0u8; HEADER_LEN];
        r.read_exact(&mut hb)
            .map_err(|e| self.io("the connection broke inside a frame", e))?;
        let h = FrameHeader::decode(&hb).map_err(|d| self.refused(d))?;
        let len = h.len as usize;
        let pmax = self.cfg.payload_max();
        if len > pmax {
            return Err(self.refused(format!(
                "a frame of {len} bytes is over the maximum of {pmax}"
            )));
        }
        if h.global_seq != self.global {
            let what = if h.global_seq < self.global {
                "replayed frame"
            } else {
                "frame out of order (one was dropped or reordered)"
            };
            return Err(self.refused(format!(
                "{what}: sequence {} where {} was expected",
                h.global_seq, self.global
            )));
        }
        if msg.len() + len > self.cfg.max_message {
            return Err(self.refused(format!(
                "a message over the maximum of {} bytes",
                self.cfg.max_message
            )));
        }
        self.select_key(&h)?;
        let Some(k) = self.cur.as_mut() else {
            return Err(self.refused("no key for the frame".to_owned()));
        };
        k.next_seq += 1;
        self.global += 1;

        // Ciphertext and tag straight into the message buffer.
        let start = msg.len();
        msg.reserve(len + TAG_LEN);
        let want = (len + TAG_LEN) as u64;
        let got = r.by_ref().take(want).read_to_end(msg);
        match got {
            Ok(n) if n as u64 == want => {}
            Ok(_) => {
                return Err(self.io(
                    "the connection broke inside a frame",
                    ErrorKind::UnexpectedEof.into(),
                ));
            }
            Err(e) => return Err(self.io("the connection broke inside a frame", e)),
        }
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&msg[start + len..]);
        msg.truncate(start + len);
        let aad = frame::aad(&hb, self.dir, &self.cfg.link_id);
        let nonce = frame::nonce(self.dir, h.key_seq);
        let Some(k) = self.cur.as_ref() else {
            return Err(self.refused("no key for the frame".to_owned()));
        };
        if !k.aead.open(nonce, &aad, &mut msg[start..], tag) {
            msg.truncate(start);
            return Err(self.refused(format!(
                "frame {} under key {} failed authentication: altered in transit",
                h.global_seq, h.key
            )));
        }
        Ok(h)
    }

    /// Makes the frame's key current, taking a new one from the pool.
    fn select_key(&mut self, h: &FrameHeader) -> Result<(), Fail> {
        if let Some(k) = &self.cur
            && k.id == h.key
        {
            if h.key_seq != k.next_seq {
                return Err(self.refused(format!(
                    "frame {} of key {} where {} was expected: reordered or replayed",
                    h.key_seq, h.key, k.next_seq
                )));
            }
            return Ok(());
        }
        if self.old.contains(&h.key) {
            return Err(self.refused(format!(
                "frame under old key {} after the link moved on: replayed",
                h.key
            )));
        }
        if h.key_seq != 0 {
            return Err(self.refused(format!(
                "the first frame under key {} has key sequence {}: an earlier one is missing",
                h.key, h.key_seq
            )));
        }
        let key = self.keys.take_key(self.dir, &h.key).map_err(|e| match e {
            KeyError::Unknown { id, .. } => self.refused(format!(
                "key {id} is not in {}: the peer uses another key pool",
                self.keys.describe()
            )),
            KeyError::Used { id, .. } => {
                self.refused(format!("key {id} was already used: replayed traffic"))
            }
            KeyError::WrongDirection { id, .. } => self.refused(format!(
                "key {id} belongs to the other direction: reflected traffic"
            )),
            other => Fail {
                err: ChannelError::Key(other),
                fatal: true,
            },
        })?;
        if let Some(old) = self.cur.take() {
            if self.old.len() == OLD_KEYS {
                self.old.pop_front();
            }
            self.old.push_back(old.id);
        }
        let Some(aead) = FrameCipher::new(&key.key) else {
            return Err(Fail {
                err: internal(&self.cfg.link_name),
                fatal: true,
            });
        };
        self.cur = Some(RecvKey {
            id: key.id,
            aead,
            next_seq: 0,
        });
        self.keys_used += 1;
        Ok(())
    }
}
