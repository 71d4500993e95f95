//! Splitting a link into a sending and a receiving half, so a client can pipeline requests.
//!
//! Each half owns its own handle of the stream (a cloned socket) and its
//! own sealing or opening state; they share only the link's fate: when one
//! half refuses a frame or breaks, the socket is shut down in both
//! directions and the other half's next call fails too.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::open::Opener;
use super::seal::Sealer;
use super::{Fail, Fate, Link, LinkConfig, closed};
use crate::qkd::ChannelError;

/// A stream whose handle can be cloned, so each half of a link owns one.
pub trait SplitStream: Read + Write + Send + Sized {
    /// A second handle to the same connection.
    fn try_clone_stream(&self) -> std::io::Result<Self>;
    /// Closes the connection in both directions (best effort).
    fn shutdown_both(&self);
}

impl SplitStream for TcpStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn shutdown_both(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl SplitStream for UnixStream {
    fn try_clone_stream(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn shutdown_both(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// The sending half of a split link.
pub struct LinkSender<S: SplitStream> {
    stream: S,
    sealer: Sealer,
    fate: Fate,
    cfg: Arc<LinkConfig>,
}

/// The receiving half of a split link.
pub struct LinkReceiver<S: SplitStream> {
    stream: BufReader<S>,
    opener: Opener,
    fate: Fate,
    cfg: Arc<LinkConfig>,
}

impl<S: SplitStream> Link<S> {
    /// Splits into halves that can be used from two threads. Fails if the
    /// link is dead or the stream cannot be cloned.
    pub fn into_split(self) -> Result<(LinkSender<S>, LinkReceiver<S>), ChannelError> {
        self.fate.check(&self.cfg.link_name)?;
        let Some(reader) = self.stream else {
            return Err(closed(&self.cfg.link_name));
        };
        let writer = reader
            .get_ref()
            .try_clone_stream()
            .map_err(|source| ChannelError::Io {
                link: self.cfg.link_name.clone(),
                detail: "cannot clone the stream to split the link".to_owned(),
                source,
            })?;
        Ok((
            LinkSender {
                stream: writer,
                sealer: self.sealer,
                fate: self.fate.clone(),
                cfg: Arc::clone(&self.cfg),
            },
            LinkReceiver {
                stream: reader,
                opener: self.opener,
                fate: self.fate,
                cfg: self.cfg,
            },
        ))
    }
}

fn settle<T>(r: Result<T, Fail>, fate: &Fate, close: impl FnOnce()) -> Result<T, ChannelError> {
    r.map_err(|f| {
        if f.fatal {
            fate.kill(&f.err);
            close();
        }
        f.err
    })
}

impl<S: SplitStream> LinkSender<S> {
    /// Sends one message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        self.fate.check(&self.cfg.link_name)?;
        let r = self.sealer.send(&mut self.stream, msg, false);
        let s = &self.stream;
        settle(r, &self.fate, || s.shutdown_both())
    }

    /// Keys this end has sealed under so far.
    pub fn keys_used(&self) -> u64 {
        self.sealer.keys_used()
    }
}

impl<S: SplitStream> LinkReceiver<S> {
    /// Receives the next message into `buf` (replacing its contents).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), ChannelError> {
        self.fate.check(&self.cfg.link_name)?;
        let r = match self.opener.recv(&mut self.stream, buf) {
            Ok(false) => Ok(()),
            Ok(true) => Err(Fail {
                err: ChannelError::Refused {
                    link: self.cfg.link_name.clone(),
                    detail: "a second hello from the peer".to_owned(),
                },
                fatal: true,
            }),
            Err(f) => Err(f),
        };
        let s = self.stream.get_ref();
        settle(r, &self.fate, || s.shutdown_both())
    }

    /// Receives the next message.
    pub fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut buf = Vec::new();
        self.recv_into(&mut buf)?;
        Ok(buf)
    }

    /// Keys the peer has sealed under so far.
    pub fn keys_used(&self) -> u64 {
        self.opener.keys_used()
    }
}
