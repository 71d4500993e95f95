//! One exchange with a node server over a leased channel: a request out,
//! its answer in, and what a failure means. A failure of the connection
//! costs the channel; an error the node answered leaves the channel in
//! step, so the two are kept apart ([`Failure`]).

use super::pool::{Inner, Lease, is_timeout};
use crate::node::wire::{Response, WireError};
use crate::node::{NodeError, NodeErrorKind, ShardKey};
use crate::qkd::ChannelError;

/// Why an exchange failed.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The connection failed (its channel is gone).
    Transport { detail: String, timeout: bool },
    /// The node answered with an error (the channel is fine).
    Remote(WireError),
    /// The node broke a limit no honest node reaches (a listing without
    /// end); the channel is dropped and the node reported as misbehaving.
    Misbehaving(String),
}

impl Inner {
    pub(super) fn err(&self, f: Failure, op: &'static str, shard: Option<ShardKey>) -> NodeError {
        match f {
            Failure::Transport { detail, timeout } => {
                let why = format!("{}: {detail}", self.address);
                let kind = if timeout {
                    NodeErrorKind::Timeout(why)
                } else {
                    NodeErrorKind::Offline(why)
                };
                NodeError::new(&self.name, op, shard, kind)
            }
            Failure::Remote(w) => w.into_node(&self.name, op, shard),
            Failure::Misbehaving(why) => NodeError::new(
                &self.name,
                op,
                shard,
                NodeErrorKind::Protocol(format!("{}: node misbehaves: {why}", self.address)),
            ),
        }
    }

    pub(super) fn channel_failure(&self, e: &ChannelError) -> Failure {
        let (detail, timeout) = match e {
            ChannelError::Io { source, detail, .. } if is_timeout(source) => (
                format!(
                    "no answer within {} s ({detail} timed out; {} s per request); the node \
                     server is slow or hung",
                    self.opts.io_timeout.as_secs_f32(),
                    self.opts.request_timeout.as_secs_f32()
                ),
                true,
            ),
            ChannelError::Io { detail, source, .. } => (format!("{detail}: {source}"), false),
            ChannelError::Closed { .. } => ("the node server closed the connection".into(), false),
            ChannelError::Refused { detail, .. } => {
                (format!("the link refused a frame: {detail}"), false)
            }
            ChannelError::Key(k) => (k.to_string(), false),
        };
        Failure::Transport { detail, timeout }
    }
}

/// The variant name of a response, for messages.
pub(super) fn tag_of(r: &Response<'_>) -> &'static str {
    match r {
        Response::Ok => "ok",
        Response::Error(_) => "error",
        Response::HelloOk { .. } => "hello",
        Response::Health(_) => "health",
        Response::Space(_) => "space",
        Response::Pending(_) => "pending",
        Response::Committed(_) => "committed",
        Response::Data(_) => "data",
        Response::Header(_) => "header",
        Response::Purged(_) => "purged",
        Response::ListPage { .. } => "list page",
        Response::Size(_) => "size",
        Response::Proof(_) => "proof",
        Response::Holdings(..) => "holdings",
    }
}

impl Lease {
    /// The exchange that follows must finish within the node's request
    /// timeout, however the peer paces its bytes.
    pub(super) fn arm(&self) {
        self.deadline_in(self.inner.opts.request_timeout);
    }

    /// What follows must finish within `d` (a listing's overall limit).
    pub(super) fn deadline_in(&self, d: std::time::Duration) {
        if let Some(p) = &self.chan {
            p.deadline.set(std::time::Instant::now() + d);
        }
    }

    pub(super) fn send(&mut self, msg: &[u8]) -> Result<(), Failure> {
        let Some(chan) = self.chan.as_mut().map(|p| p.chan.as_mut()) else {
            return Err(Failure::Transport {
                detail: "connection already closed".into(),
                timeout: false,
            });
        };
        match chan.send(msg) {
            Ok(()) => Ok(()),
            Err(e) => {
                let f = self.inner.channel_failure(&e);
                Err(self.fail(f))
            }
        }
    }

    /// Reads one response and hands it to `f`; an error response is a
    /// `Remote` failure, anything `f` does not expect ends the connection.
    pub(super) fn reply<T>(
        &mut self,
        f: impl FnOnce(Response<'_>) -> Option<T>,
    ) -> Result<T, Failure> {
        let Some(chan) = self.chan.as_mut().map(|p| p.chan.as_mut()) else {
            return Err(Failure::Transport {
                detail: "connection already closed".into(),
                timeout: false,
            });
        };
        let msg = match chan.recv() {
            Ok(m) => m,
            Err(e) => {
                let f = self.inner.channel_failure(&e);
                return Err(self.fail(f));
            }
        };
        let unexpected = match Response::decode(&msg) {
            Ok(Response::Error(e)) => return Err(Failure::Remote(e)),
            Ok(r) => {
                let tag = tag_of(&r);
                match f(r) {
                    Some(v) => return Ok(v),
                    None => format!("unexpected {tag} answer from the node server"),
                }
            }
            Err(e) => format!("undecodable answer from the node server: {e}"),
        };
        Err(self.fail(Failure::Transport {
            detail: unexpected,
            timeout: false,
        }))
    }

    pub(super) fn call<T>(
        &mut self,
        req: &[u8],
        f: impl FnOnce(Response<'_>) -> Option<T>,
    ) -> Result<T, Failure> {
        self.arm();
        self.send(req)?;
        self.reply(f)
    }
}
