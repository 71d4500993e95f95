//! How a connected TCP stream becomes a message channel for the node
//! protocol: the QKD-keyed link in production, plain framing only with
//! `--insecure-plaintext` and in tests. The server and the client take a
//! [`Transport`] and never know which.

use std::net::TcpStream;
use std::sync::Arc;

use super::plain::PlainChannel;
use crate::qkd::{Channel, ChannelError};

/// Turns a connected TCP stream into a message channel: the QKD-keyed link
/// in production, [`PlainChannel`] with `--insecure-plaintext` and in
/// tests. The same type serves both ends (each end builds its own).
pub type Transport = Arc<dyn Fn(TcpStream) -> Result<Box<dyn Channel>, ChannelError> + Send + Sync>;

/// The QKD-keyed transport: a [`crate::qkd::link::Link`] as `end` over the
/// stream, sealing every message with one-time keys from `keys`.
pub fn qkd_transport(
    keys: Arc<dyn crate::qkd::KeySource>,
    end: crate::qkd::End,
    cfg: crate::qkd::link::LinkConfig,
) -> Transport {
    Arc::new(move |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let link = crate::qkd::link::Link::new(stream, end, Arc::clone(&keys), cfg.clone())?;
        Ok(Box::new(link) as Box<dyn Channel>)
    })
}

/// The unencrypted transport: [`PlainChannel`] over the stream. Only for
/// `--insecure-plaintext` and tests: shards cross the wire in clear.
pub fn plain_transport(link: &str) -> Transport {
    let link = link.to_string();
    Arc::new(move |stream: TcpStream| {
        Ok(Box::new(PlainChannel::new(stream, &link)) as Box<dyn Channel>)
    })
}
