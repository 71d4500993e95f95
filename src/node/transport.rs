//! How a connection becomes a message channel for the node protocol: the
//! QKD-keyed link in production, plain framing only with
//! `--insecure-plaintext` and in tests. The server and the client take a
//! [`Transport`] and never know which.

use std::sync::Arc;

use super::conn::Conn;
use super::plain::PlainChannel;
use super::wire::MAX_MESSAGE;
use crate::qkd::{Channel, ChannelError};

/// Turns a connection into a message channel: the QKD-keyed link in
/// production, [`PlainChannel`] with `--insecure-plaintext` and in tests.
/// The same type serves both ends (each end builds its own).
pub type Transport = Arc<dyn Fn(Conn) -> Result<Box<dyn Channel>, ChannelError> + Send + Sync>;

/// The QKD-keyed transport: a [`crate::qkd::link::Link`] as `end` over the
/// stream, sealing every message with one-time keys from `keys`.
///
/// The link accepts no message larger than the node protocol's largest
/// ([`MAX_MESSAGE`]): a hostile peer cannot make this end buffer more.
pub fn qkd_transport(
    keys: Arc<dyn crate::qkd::KeySource>,
    end: crate::qkd::End,
    mut cfg: crate::qkd::link::LinkConfig,
) -> Transport {
    cfg.max_message = cfg.max_message.min(MAX_MESSAGE);
    Arc::new(move |stream: Conn| {
        let link = crate::qkd::link::Link::new(stream, end, Arc::clone(&keys), cfg.clone())?;
        Ok(Box::new(link) as Box<dyn Channel>)
    })
}

/// The unencrypted transport: [`PlainChannel`] over the stream. Only for
/// `--insecure-plaintext` and tests: shards cross the wire in clear.
pub fn plain_transport(link: &str) -> Transport {
    let link = link.to_string();
    Arc::new(move |stream: Conn| Ok(Box::new(PlainChannel::new(stream, &link)) as Box<dyn Channel>))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::qkd::link::{Link, LinkConfig};
    use crate::qkd::pool::{GenOptions, PoolFile, generate, os_random};
    use crate::qkd::{End, KeySource};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// Security finding 3: node links accepted 64 MiB messages although the
    /// node protocol never sends more than [`MAX_MESSAGE`]; a hostile peer
    /// could make this end buffer 64 MiB per connection.
    #[test]
    fn a_node_link_refuses_messages_above_the_protocols_largest() {
        let dir = tempfile::tempdir().unwrap();
        let (a_path, b_path) = (dir.path().join("a.pool"), dir.path().join("b.pool"));
        generate(
            &GenOptions {
                link: "t",
                keys: 1000,
                a_path: &a_path,
                b_path: &b_path,
                refill: false,
            },
            os_random,
        )
        .unwrap();
        let a_pool = PoolFile::open(&a_path).unwrap();
        let a_id = a_pool.link_id();
        let a: Arc<dyn KeySource> = Arc::new(a_pool);
        let b = Arc::new(PoolFile::open(&b_path).unwrap());
        let cfg = LinkConfig::for_pool(&b);
        let (x, y) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let t = qkd_transport(b, End::B, cfg);
            let conn = Conn::local(y, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
            let mut chan = t(conn).unwrap();
            (chan.recv().map(|m| m.len()), chan.recv().map(|m| m.len()))
        });
        // The hostile end: a link with the generic 64 MiB limit.
        let mut peer_cfg = LinkConfig::new("t");
        peer_cfg.link_id = a_id;
        let mut peer = Link::new(x, End::A, a, peer_cfg).unwrap();
        peer.send(&vec![7u8; MAX_MESSAGE]).unwrap();
        let _ = peer.send(&vec![7u8; MAX_MESSAGE + 1]);
        let (first, second) = server.join().unwrap();
        assert_eq!(first.unwrap(), MAX_MESSAGE);
        assert!(second.is_err(), "{second:?}");
    }
}
