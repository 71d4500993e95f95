//! One connection of the node protocol, as the transports see it: a TCP
//! stream to a remote node server, or one end of a socket pair to a node
//! served inside this process, with an absolute deadline on top of the
//! socket timeouts.
//!
//! Socket timeouts bound each `read(2)` and `write(2)`, not a request: a
//! peer that drips one byte just inside the timeout keeps a request (or a
//! handshake) alive for ever. A [`Deadline`] bounds the whole exchange:
//! every read and write first shortens the socket timeout to what is left
//! of it, and fails with `TimedOut` once it has passed. The handle is
//! shared, so the owner of a channel (the pool of a remote node, the
//! server's connection thread) can set and clear it around each request
//! while the transport owns the stream.
//!
//! In-process connections are socket pairs handed to the server through a
//! channel ([`LocalDialer`]): they have no address at all, so no other
//! process (and no other local user) can connect to a node served inside
//! the vault's process.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

/// The byte stream under a connection.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Local(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Local(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Local(s) => s.set_write_timeout(t),
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Local(s) => Stream::Local(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Local(s) => s.shutdown(how),
        };
    }
}

/// The end of the request in progress on a connection, shared between the
/// connection and whoever runs requests on it.
#[derive(Debug, Clone, Default)]
pub struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    /// Every read and write must finish by `at`.
    pub fn set(&self, at: Instant) {
        *self.lock() = Some(at);
    }

    /// Only the socket timeouts apply again.
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn get(&self) -> Option<Instant> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection: a stream, its per-call timeouts and its deadline.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    deadline: Deadline,
    /// Socket timeouts when no deadline is set.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// What the socket is set to now, to skip needless `setsockopt`s.
    applied: (Option<Duration>, Option<Duration>),
}

/// Why a read or write was refused before it started.
fn deadline_passed() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the request's deadline passed (the peer is too slow)",
    )
}

impl Conn {
    /// A TCP connection; `timeout` bounds each read and write.
    pub fn tcp(stream: TcpStream, read: Duration, write: Duration) -> io::Result<Conn> {
        let _ = stream.set_nodelay(true);
        Conn::new(Stream::Tcp(stream), read, write)
    }

    /// One end of an in-process socket pair.
    pub fn local(stream: UnixStream, read: Duration, write: Duration) -> io::Result<Conn> {
        Conn::new(Stream::Local(stream), read, write)
    }

    fn new(stream: Stream, read: Duration, write: Duration) -> io::Result<Conn> {
        let (r, w) = (Some(read), Some(write));
        stream.set_read_timeout(r)?;
        stream.set_write_timeout(w)?;
        Ok(Conn {
            stream,
            deadline: Deadline::default(),
            read_timeout: r,
            write_timeout: w,
            applied: (r, w),
        })
    }

    /// The handle that sets this connection's deadline.
    pub fn deadline(&self) -> Deadline {
        self.deadline.clone()
    }

    /// Changes the timeout of each read (the server: handshake, then idle).
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.read_timeout = Some(t);
    }

    /// The peer's IP address; none for an in-process connection.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        match &self.stream {
            Stream::Tcp(s) => s.peer_addr().ok().map(|a| a.ip()),
            Stream::Local(_) => None,
        }
    }

    /// The peer, for logs.
    pub fn peer_name(&self) -> String {
        match &self.stream {
            Stream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            Stream::Local(_) => "in-process".to_owned(),
        }
    }

    /// A handle that can close this connection from another thread.
    pub fn closer(&self) -> io::Result<Closer> {
        Ok(Closer(self.stream.try_clone()?))
    }

    /// Sets the socket timeout for the next call: the base timeout, cut to
    /// what is left of the deadline.
    fn arm(&mut self, write: bool) -> io::Result<()> {
        let base = if write {
            self.write_timeout
        } else {
            self.read_timeout
        };
        let want = match self.deadline.get() {
            None => base,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(deadline_passed());
                }
                Some(base.map_or(left, |b| b.min(left)))
            }
        };
        let applied = if write {
            &mut self.applied.1
        } else {
            &mut self.applied.0
        };
        if *applied != want {
            if write {
                self.stream.set_write_timeout(want)?;
            } else {
                self.stream.set_read_timeout(want)?;
            }
            *applied = want;
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(false)?;
        match &mut self.stream {
            Stream::Tcp(s) => s.read(buf),
            Stream::Local(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(true)?;
        match &mut self.stream {
            Stream::Tcp(s) => s.write(buf),
            Stream::Local(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.flush(),
            Stream::Local(s) => s.flush(),
        }
    }
}

/// Closes a connection's reading side from another thread: the server's
/// way of ending every connection when it stops.
#[derive(Debug)]
pub struct Closer(Stream);

impl Closer {
    /// The connection's next read sees the end of the stream.
    pub fn close_read(&self) {
        self.0.shutdown(Shutdown::Read);
    }
}

/// Connects to a node served in this process: each call makes a socket
/// pair and hands one end to the server's accept loop.
#[derive(Debug, Clone)]
pub struct LocalDialer(pub(crate) Sender<UnixStream>);

impl LocalDialer {
    /// A new connection to the in-process server.
    pub fn dial(&self) -> io::Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        self.0.send(theirs).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the in-process node server has stopped",
            )
        })?;
        Ok(ours)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_dripping_peer_cannot_outlast_the_deadline() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut conn = Conn::local(a, Duration::from_secs(2), Duration::from_secs(2)).unwrap();
        let drip = std::thread::spawn(move || {
            // One byte every 300 ms: each read alone is well inside 2 s.
            for _ in 0..20 {
                if b.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let start = Instant::now();
        conn.deadline().set(start + Duration::from_secs(1));
        let mut buf = [0u8; 1];
        let err = loop {
            if let Err(e) = conn.read_exact(&mut buf) {
                break e;
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        let took = start.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // Cleared, the base timeout applies again and reads go on.
        conn.deadline().clear();
        conn.read_exact(&mut buf).unwrap();
        drop(conn);
        drip.join().unwrap();
    }
}
