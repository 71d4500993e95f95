//! Unencrypted message framing: a u32 length prefix per message.
//!
//! **Not a link for production.** Shards cross the wire in clear. It exists
//! only for `qsfs node serve --insecure-plaintext` (the matching vault
//! setting is `insecure_plaintext = true` on a node) and for tests of the
//! node protocol; real deployments use the QKD-keyed link (`crate::qkd::link`),
//! which implements the same [`Channel`] trait.
//!
//! Frame format: `[len u32 little-endian][len bytes of message]`, with
//! `len` at most the channel's limit (default [`MAX_MESSAGE`]); a larger
//! length is refused and the connection must be dropped.

use std::io::{BufReader, ErrorKind, Read, Write};

use crate::qkd::{Channel, ChannelError};

use super::wire::MAX_MESSAGE;

/// Messages up to this size are written with their length in one write.
const COALESCE: usize = 64 * 1024;

/// Length-prefixed messages over a byte stream, without encryption.
#[derive(Debug)]
pub struct PlainChannel<S: Read + Write> {
    link: String,
    stream: BufReader<S>,
    max: usize,
}

impl<S: Read + Write> PlainChannel<S> {
    /// Frames messages over `stream`; `link` names the connection in errors.
    pub fn new(stream: S, link: &str) -> PlainChannel<S> {
        PlainChannel {
            link: link.to_string(),
            stream: BufReader::with_capacity(64 * 1024, stream),
            max: MAX_MESSAGE,
        }
    }

    /// Sets the largest message accepted (and sent).
    pub fn with_max_message(mut self, max: usize) -> PlainChannel<S> {
        self.max = max;
        self
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }

    fn io(&self, detail: &str, source: std::io::Error) -> ChannelError {
        ChannelError::Io {
            link: self.link.clone(),
            detail: detail.to_string(),
            source,
        }
    }
}

impl<S: Read + Write + Send> Channel for PlainChannel<S> {
    fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        if msg.len() > self.max {
            return Err(ChannelError::Refused {
                link: self.link.clone(),
                detail: format!(
                    "message of {} bytes is over the limit of {}",
                    msg.len(),
                    self.max
                ),
            });
        }
        let len = (msg.len() as u32).to_le_bytes();
        let out = self.stream.get_mut();
        let result = if msg.len() <= COALESCE {
            let mut buf = Vec::with_capacity(4 + msg.len());
            buf.extend_from_slice(&len);
            buf.extend_from_slice(msg);
            out.write_all(&buf)
        } else {
            out.write_all(&len).and_then(|()| out.write_all(msg))
        };
        result
            .and_then(|()| out.flush())
            .map_err(|e| self.io("send", e))
    }

    fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut len = [0u8; 4];
        // A clean close is only a close between messages.
        let mut got = 0;
        while got < 4 {
            match self.stream.read(&mut len[got..]) {
                Ok(0) if got == 0 => {
                    return Err(ChannelError::Closed {
                        link: self.link.clone(),
                    });
                }
                Ok(0) => {
                    return Err(self.io(
                        "receive",
                        std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "connection closed mid-frame",
                        ),
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io("receive", e)),
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max {
            return Err(ChannelError::Refused {
                link: self.link.clone(),
                detail: format!("frame of {len} bytes is over the limit of {}", self.max),
            });
        }
        let mut msg = vec![0u8; len];
        self.stream
            .read_exact(&mut msg)
            .map_err(|e| self.io("receive", e))?;
        Ok(msg)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn messages_cross_a_real_socket_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut c = PlainChannel::new(s, "server");
            loop {
                match c.recv() {
                    Ok(m) => c.send(&m).unwrap(),
                    Err(ChannelError::Closed { .. }) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut c = PlainChannel::new(TcpStream::connect(addr).unwrap(), "client");
        let big = vec![0x5au8; 300_000];
        for m in [&b""[..], b"hello", &big] {
            c.send(m).unwrap();
            assert_eq!(c.recv().unwrap(), m);
        }
        drop(c);
        server.join().unwrap();
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut raw = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut c = PlainChannel::new(s, "n").with_max_message(100);
        raw.write_all(&1000u32.to_le_bytes()).unwrap();
        assert!(matches!(c.recv(), Err(ChannelError::Refused { .. })));
        assert!(matches!(
            c.send(&[0u8; 101]),
            Err(ChannelError::Refused { .. })
        ));

        let mut raw = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut c = PlainChannel::new(s, "n");
        raw.write_all(&10u32.to_le_bytes()).unwrap();
        raw.write_all(b"abc").unwrap();
        drop(raw);
        assert!(matches!(c.recv(), Err(ChannelError::Io { .. })));
    }
}
