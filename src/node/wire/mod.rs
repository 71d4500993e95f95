//! The node RPC protocol v1: how the vault talks to a node server.
//!
//! The protocol runs over a [`Channel`](crate::qkd::Channel): whole
//! messages, in order. In production that is the QKD-keyed link
//! (`crate::qkd::link`); [`plain::PlainChannel`] is the unencrypted framing used
//! only by `qsfs node serve --insecure-plaintext` and by tests of this
//! layer. Which one is used is decided by a [`Transport`], a factory that
//! turns a connected `TcpStream` into a channel, so the server
//! ([`server`]) and the client ([`crate::node::RemoteNode`]) never know.
//!
//! One request is in flight per channel: the client sends a request and
//! reads its whole response before the next request. A client that wants
//! parallel transfers opens several channels (`RemoteNode` pools them).
//!
//! # Messages (version 1)
//! Every message starts with a one-byte tag; integers are little-endian;
//! `blob` is a u32 length then that many bytes; `text` is a UTF-8 blob;
//! `key` is a shard key: object id (16 bytes) then shard index (u8).
//!
//! Requests (client -> server):
//! ```text
//! 0x01 Hello       magic b"QSFSNODE", version u16 = 1, vault_id text, node text
//! 0x02 Health
//! 0x03 Space
//! 0x04 Create      shard header (64 bytes, node/header.rs)      -> Ok | Error
//! 0x05 Data        payload bytes (rest of message, <= 1 MiB)   (no response)
//! 0x06 Finish                                                   -> Pending | Error
//! 0x07 Commit      count u32 (<= 1024), count x token u64       -> Committed
//! 0x08 ReadAt      key, offset u64, len u32 (<= 1 MiB)          -> Data | Error
//! 0x09 ReadHeader  key                                          -> Header | Error
//! 0x0a Delete      key                                          -> Ok | Error
//! 0x0b Purge       object id (16 bytes)                         -> Purged | Error
//! 0x0c List                                                     -> ListPage... | Error
//! 0x0d ProbeWrite                                               -> Ok | Error
//! 0x0e Stat        key                                          -> Size | Error
//! 0x0f Discard     count u32 (<= 1024), count x token u64       -> Ok
//! 0x10 Prove       key, nonce [32], block u32 (<= 8192),
//!                  count u32 (<= 64), count x leaf index u64    -> Proof | Error
//! 0x11 Holdings    nonce [32]                                   -> Holdings | Error
//! 0x12 Put         shard header (64 bytes), payload bytes
//!                  (rest of message, <= 1 MiB)                  -> Pending | Error
//! ```
//! Responses (server -> client):
//! ```text
//! 0x80 Ok
//! 0x81 Error       kind u8, errno i32 (0: none), message text
//!                  kind: 1 NotFound, 2 Offline, 3 Corrupt, 4 Io, 5 Protocol, 6 Foreign
//! 0x82 HelloOk     version u16, vault_id text, node text, adopted u8
//! 0x83 Health      state u8 (0 ok, 1 offline, 2 read-only, 3 foreign), detail text
//! 0x84 Space       present u8, total u64, available u64, fsid u64
//! 0x85 Pending     token u64
//! 0x86 Committed   count u32, count x (0u8 | 1u8 kind u8 errno i32 message text)
//! 0x87 Data        payload bytes (rest of message)
//! 0x88 Header      shard header (64 bytes)
//! 0x89 Purged      files removed u64
//! 0x8a ListPage    last u8, shards u32, shards x (key, size u64),
//!                  leftovers u32, leftovers x path text
//! 0x8b Size        shard file size u64 (header included)
//! 0x8c Proof       nonce [32], leaves u64, count u32, count x
//!                  (index u64, block blob, depth u8, depth x [32] sibling)
//! 0x8d Holdings    shard count u64, root [32] (node/proof.rs)
//! ```
//! `Prove` and `Holdings` (audits, node/proof.rs) and `Put` came after the
//! first release of v1; an older server answers them with a `Protocol`
//! error and closes the connection. A client that gets that answer to a
//! `Put` writes that node's shards streamed from then on.
//! The first message on a channel must be `Hello`; the server answers
//! `HelloOk` naming the vault and node its folder belongs to, or `Error`
//! of kind `Foreign` when the folder belongs to another vault or node (an
//! empty folder is taken into use for the vault on its first hello).
//!
//! Writing a shard is one streamed request: `Create` (answered at once, so
//! a node that refuses writes costs no data), then any number of `Data`
//! messages without answers, then `Finish`, answered with a token that
//! names the finished, still invisible shard on the server. `Commit` makes
//! a group of tokens durable and visible (one barrier on the node) and
//! answers one result per token, in order. A token is valid on every
//! channel of that server; uncommitted tokens expire (`Discard` drops them
//! at once). A `List` is answered with `ListPage` messages until one has
//! `last = 1`.
//!
//! `Put` is the same write in one message, for a shard whose payload fits
//! in one: `Create`, `Data` and `Finish` cost two round trips, and a
//! small file's seal waited for both on every node. The price is that a
//! node refusing the write is learnt after its bytes were sent, at most
//! 1 MiB.
//!
//! A message the server cannot decode, or one out of order (anything but
//! `Data`/`Finish` inside a write), is answered with a `Protocol` error and
//! the connection is closed.

pub mod msg;

pub use msg::{ErrorKind, Request, Response, WireError};

/// Protocol version spoken by this build.
pub const VERSION: u16 = 1;
/// Magic bytes at the front of a `Hello`.
pub const MAGIC: &[u8; 8] = b"QSFSNODE";
/// Largest payload of one `Data` message or one `ReadAt`.
pub const MAX_DATA: usize = 1 << 20;
/// Largest message of the protocol (a full `Data` message plus room).
pub const MAX_MESSAGE: usize = MAX_DATA + 64 * 1024;
/// Most tokens in one `Commit` or `Discard`.
pub const MAX_TOKENS: usize = 1024;
