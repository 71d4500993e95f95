//! The sending side: splits a message into frames, seals each under the current key, rekeys.
//!
//! The current key is replaced by a fresh one (`next_key` in the direction
//! this end sends) before a frame that would take it past `rekey_bytes`, or
//! once it has carried `rekey_interval` of traffic: the time between its
//! frames, where a gap over 2 ms is idle and does not count (the issue's
//! "every 10 ms of traffic"; a request now and then does not spend a key,
//! and each key costs the receiver a durable write). Both are checked at
//! each frame, so no timer thread is needed. Each frame is
//! encrypted from the caller's bytes straight into one reusable buffer
//! behind its header and written with one `write_all`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cipher::FrameCipher;

use super::frame::{self, FrameHeader, HEADER_LEN, OVERHEAD, TAG_LEN};
use super::{Fail, LinkConfig};
use crate::qkd::{ChannelError, Direction, KeyId, KeySource};

struct SendKey {
    id: KeyId,
    aead: FrameCipher,
    seq: u64,
    bytes: u64,
    clock: TrafficClock,
}

/// Traffic time a key has carried: the gaps between its frames, where a
/// gap over [`BUSY_GAP`] is idle and does not count. Takes the time as an
/// argument so the rule is tested exactly, without sleeping.
#[derive(Debug, Clone, Copy)]
struct TrafficClock {
    /// Traffic time so far.
    active: Duration,
    /// When the key last sealed a frame (or was taken).
    last: Instant,
}

impl TrafficClock {
    fn start(now: Instant) -> TrafficClock {
        TrafficClock {
            active: Duration::ZERO,
            last: now,
        }
    }

    /// Traffic time if a frame were sealed at `now`.
    fn at(&self, now: Instant) -> Duration {
        self.active + busy(now.saturating_duration_since(self.last))
    }

    /// Records a frame sealed at `now`.
    fn frame(&mut self, now: Instant) {
        self.active = self.at(now);
        self.last = now;
    }
}

/// A gap between two frames up to this long counts as traffic time; a
/// longer one is idle time. So a stream changes keys every 10 ms, while a
/// request now and then does not spend a key on each request.
const BUSY_GAP: Duration = Duration::from_millis(2);

/// Sealing state of one direction.
pub(crate) struct Sealer {
    keys: Arc<dyn KeySource>,
    dir: Direction,
    cfg: Arc<LinkConfig>,
    cur: Option<SendKey>,
    global: u64,
    buf: Vec<u8>,
    keys_used: u64,
}

impl Sealer {
    pub(crate) fn new(keys: Arc<dyn KeySource>, dir: Direction, cfg: Arc<LinkConfig>) -> Sealer {
        Sealer {
            keys,
            dir,
            cfg,
            cur: None,
            global: 0,
            buf: Vec::new(),
            keys_used: 0,
        }
    }

    /// Keys this side has sealed under so far.
    pub(crate) fn keys_used(&self) -> u64 {
        self.keys_used
    }

    fn payload_max(&self) -> usize {
        self.cfg.payload_max()
    }

    /// Takes a fresh key if the current one is spent for a frame of `len`.
    fn rekey_if_due(&mut self, len: usize) -> Result<(), ChannelError> {
        let due = match &self.cur {
            None => true,
            Some(k) => {
                (k.bytes > 0 && k.bytes + len as u64 > self.cfg.rekey_bytes)
                    || k.clock.at(Instant::now()) >= self.cfg.rekey_interval
            }
        };
        if due {
            // Drop the old cipher (its key schedule is zeroized) first.
            self.cur = None;
            let key = self.keys.next_key(self.dir)?;
            let aead = FrameCipher::new(&key.key).ok_or_else(|| internal(&self.cfg.link_name))?;
            self.cur = Some(SendKey {
                id: key.id,
                aead,
                seq: 0,
                bytes: 0,
                clock: TrafficClock::start(Instant::now()),
            });
            self.keys_used += 1;
        }
        Ok(())
    }

    /// Sends `msg` as one or more frames. A failure before the first byte
    /// is written is not fatal (the stream is still in step).
    pub(crate) fn send<W: Write>(
        &mut self,
        w: &mut W,
        msg: &[u8],
        hello: bool,
    ) -> Result<(), Fail> {
        if msg.len() > self.cfg.max_message {
            return Err(Fail::soft(ChannelError::Io {
                link: self.cfg.link_name.clone(),
                detail: format!(
                    "a message of {} bytes is over the link's maximum of {} bytes",
                    msg.len(),
                    self.cfg.max_message
                ),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "message too large"),
            }));
        }
        let pmax = self.payload_max();
        if self.buf.len() < pmax.min(msg.len()) + OVERHEAD {
            self.buf.resize(pmax.min(msg.len().max(4096)) + OVERHEAD, 0);
        }
        let mut rest = msg;
        let mut first = true;
        loop {
            let n = rest.len().min(pmax);
            let (chunk, tail) = rest.split_at(n);
            let fatal = !first;
            self.rekey_if_due(n).map_err(|e| Fail { err: e, fatal })?;
            let mut flags = if tail.is_empty() { 0 } else { frame::MORE };
            if hello {
                flags |= frame::HELLO;
            }
            let Some(k) = self.cur.as_mut() else {
                return Err(Fail {
                    err: internal(&self.cfg.link_name),
                    fatal,
                });
            };
            let header = FrameHeader {
                flags,
                key: k.id,
                key_seq: k.seq,
                global_seq: self.global,
                len: n as u32,
            }
            .encode();
            let aad = frame::aad(&header, self.dir, &self.cfg.link_id);
            let nonce = frame::nonce(self.dir, k.seq);
            let total = HEADER_LEN + n + TAG_LEN;
            let out = &mut self.buf[..total];
            out[..HEADER_LEN].copy_from_slice(&header);
            let body = &mut out[HEADER_LEN..HEADER_LEN + n];
            body.copy_from_slice(chunk);
            let tag = k.aead.seal(nonce, &aad, body).ok_or_else(|| Fail {
                err: internal(&self.cfg.link_name),
                fatal,
            })?;
            out[HEADER_LEN + n..].copy_from_slice(&tag);
            k.seq += 1;
            k.bytes += n as u64;
            k.clock.frame(Instant::now());
            self.global += 1;
            w.write_all(out).map_err(|source| Fail {
                err: ChannelError::Io {
                    link: self.cfg.link_name.clone(),
                    detail: "sending a frame failed".to_owned(),
                    source,
                },
                fatal: true,
            })?;
            first = false;
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        w.flush().map_err(|source| Fail {
            err: ChannelError::Io {
                link: self.cfg.link_name.clone(),
                detail: "sending a frame failed".to_owned(),
                source,
            },
            fatal: true,
        })
    }
}

pub(crate) fn internal(link: &str) -> ChannelError {
    ChannelError::Io {
        link: link.to_owned(),
        detail: "internal error sealing a frame".to_owned(),
        source: std::io::Error::other("sealing failed"),
    }
}

/// The part of a gap between frames that counts as traffic time.
fn busy(gap: Duration) -> Duration {
    if gap <= BUSY_GAP { gap } else { Duration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_steady_stream_counts_and_idle_gaps_do_not() {
        let t0 = Instant::now();
        let mut c = TrafficClock::start(t0);
        // A frame every 0.5 ms: 20 frames are 10 ms of traffic.
        for i in 1..=20u32 {
            c.frame(t0 + MS / 2 * i);
        }
        assert_eq!(c.at(t0 + MS * 10), MS * 10);
        // A gap of exactly 2 ms still counts, one just over does not.
        assert_eq!(c.at(t0 + MS * 12), MS * 12);
        assert_eq!(c.at(t0 + MS * 12 + Duration::from_micros(1)), MS * 10);
        // Requests 15 ms apart never add up.
        let mut idle = TrafficClock::start(t0);
        for i in 1..=100u32 {
            idle.frame(t0 + MS * 15 * i);
        }
        assert_eq!(idle.at(t0 + MS * 1500), Duration::ZERO);
    }

    #[test]
    fn a_clock_that_goes_back_counts_nothing() {
        let t0 = Instant::now() + MS * 5;
        let mut c = TrafficClock::start(t0);
        c.frame(t0.checked_sub(MS).unwrap());
        assert_eq!(c.at(t0.checked_sub(MS).unwrap()), Duration::ZERO);
    }
}
