//! Encoding and decoding of the protocol messages (layout in the module
//! doc of `node::wire`). Pure: bytes in, bytes out.

use crate::ObjectId;
use crate::codec::{DecodeError, Reader, Writer};
use crate::node::StoredShard;
use crate::node::proof::{Challenge, MAX_PROOF_BLOCKS, PossessionProof, ProvenBlock};
use crate::node::{HEADER_LEN, NodeError, NodeErrorKind, NodeHealth, ShardHeader, ShardKey};
use crate::sys::FsSpace;

use super::{MAGIC, MAX_DATA, MAX_TOKENS};

/// Longest error message sent over the wire; longer ones are cut.
const MAX_ERROR_TEXT: usize = 4096;

/// What kind of failure crossed the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The shard is not on the node.
    NotFound = 1,
    /// The node cannot be used.
    Offline = 2,
    /// The shard is damaged.
    Corrupt = 3,
    /// The node's storage failed.
    Io = 4,
    /// A message was malformed or out of order.
    Protocol = 5,
    /// The node server's folder belongs to another vault or node.
    Foreign = 6,
}

impl ErrorKind {
    /// A kind this build does not know (sent by a newer peer) is a generic
    /// storage failure: its errno and message still say what happened, and
    /// failing the whole answer (a `Committed` with results for other
    /// shards) would lose more than the one error.
    fn from_u8(v: u8) -> ErrorKind {
        match v {
            1 => ErrorKind::NotFound,
            2 => ErrorKind::Offline,
            3 => ErrorKind::Corrupt,
            5 => ErrorKind::Protocol,
            6 => ErrorKind::Foreign,
            _ => ErrorKind::Io,
        }
    }
}

/// An error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Its kind.
    pub kind: ErrorKind,
    /// The OS error number of an `Io` error, 0 if none.
    pub errno: i32,
    /// What happened (without the node name: the client adds its own).
    pub message: String,
}

impl WireError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> WireError {
        let mut message: String = message.into();
        if message.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        WireError {
            kind,
            errno: 0,
            message,
        }
    }

    /// A protocol error.
    pub fn protocol(message: impl Into<String>) -> WireError {
        WireError::new(ErrorKind::Protocol, message)
    }

    /// The wire form of a storage failure. The errno is what carries its
    /// kind (a full disk is `Io` with ENOSPC or EDQUOT, which every v1
    /// peer already understands); an error built without a raw errno
    /// (`io::ErrorKind::StorageFull`, ...) gets the errno of its kind, so
    /// it is not flattened to a bare message on the way.
    pub fn io(e: &std::io::Error) -> WireError {
        let mut w = WireError::new(ErrorKind::Io, e.to_string());
        w.errno = crate::node::io_errno(e).unwrap_or(0);
        w
    }

    /// The wire form of a node error (its cause only; the node name and
    /// operation are added again by the client).
    pub fn from_node(e: &NodeError) -> WireError {
        match &e.kind {
            NodeErrorKind::NotFound => WireError::new(ErrorKind::NotFound, "shard not found"),
            NodeErrorKind::Offline(s) | NodeErrorKind::Timeout(s) => {
                WireError::new(ErrorKind::Offline, s.clone())
            }
            NodeErrorKind::Foreign(s) => WireError::new(ErrorKind::Foreign, s.clone()),
            NodeErrorKind::Protocol(s) => WireError::new(ErrorKind::Protocol, s.clone()),
            NodeErrorKind::Corrupt(s) => WireError::new(ErrorKind::Corrupt, s.clone()),
            NodeErrorKind::Io(io) => WireError::io(io),
            // No wire kind of its own (the protocol predates it): a refused
            // commit reads as before, as the node refusing.
            NodeErrorKind::NotIssued(n) => WireError::new(ErrorKind::Offline, n.to_string()),
        }
    }

    /// Back to a node error of the remote node `node`.
    pub fn into_node(self, node: &str, op: &'static str, shard: Option<ShardKey>) -> NodeError {
        let kind = match self.kind {
            ErrorKind::NotFound => NodeErrorKind::NotFound,
            ErrorKind::Offline => NodeErrorKind::Offline(self.message),
            ErrorKind::Foreign => NodeErrorKind::Foreign(self.message),
            ErrorKind::Corrupt => NodeErrorKind::Corrupt(self.message),
            ErrorKind::Io if self.errno != 0 => {
                NodeErrorKind::Io(std::io::Error::from_raw_os_error(self.errno))
            }
            ErrorKind::Io => NodeErrorKind::Io(std::io::Error::other(self.message)),
            ErrorKind::Protocol => NodeErrorKind::Protocol(self.message),
        };
        NodeError::new(node, op, shard, kind)
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.kind as u8)
            .bytes(&self.errno.to_le_bytes())
            .blob(self.message.as_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<WireError, DecodeError> {
        let kind = ErrorKind::from_u8(r.u8()?);
        let errno = i32::from_le_bytes(r.array()?);
        let message = text(r, "error message")?;
        Ok(WireError {
            kind,
            errno,
            message,
        })
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A request from the vault to a node server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// First message of a channel.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// The vault's id.
        vault_id: String,
        /// The node's name in the vault config.
        node: String,
    },
    /// The node's health.
    Health,
    /// Its storage capacity.
    Space,
    /// Starts writing a shard.
    Create(ShardHeader),
    /// Payload bytes of the shard being written.
    Data(&'a [u8]),
    /// Ends the shard being written.
    Finish,
    /// Commits pending shards by token.
    Commit(Vec<u64>),
    /// Reads payload bytes of a shard.
    ReadAt {
        /// The shard.
        key: ShardKey,
        /// Payload offset.
        offset: u64,
        /// Bytes wanted (at most [`MAX_DATA`]).
        len: u32,
    },
    /// Reads a shard's header.
    ReadHeader(ShardKey),
    /// Deletes a shard.
    Delete(ShardKey),
    /// Removes every file of an object.
    Purge(ObjectId),
    /// Lists the node.
    List,
    /// Tries a tiny write.
    ProbeWrite,
    /// Size of a shard file.
    Stat(ShardKey),
    /// Drops pending shards without committing them.
    Discard(Vec<u64>),
    /// Audit challenge for one shard.
    Prove(ShardKey, Challenge),
    /// Root over everything held (deletion check), keyed by a nonce.
    Holdings([u8; 32]),
    /// A whole shard in one message: `Create`, its `Data` and `Finish`
    /// at once (one round trip for a small shard instead of two).
    Put(ShardHeader, &'a [u8]),
}

/// A response from a node server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// Done.
    Ok,
    /// Failed.
    Error(WireError),
    /// Answer to `Hello`: who the node is.
    HelloOk {
        /// Protocol version of the server.
        version: u16,
        /// Vault the node folder belongs to.
        vault_id: String,
        /// Node name in its marker.
        node: String,
        /// True if the folder was taken into use by this hello.
        adopted: bool,
    },
    /// The node's health.
    Health(NodeHealth),
    /// Capacity, if the node can tell.
    Space(Option<FsSpace>),
    /// A finished shard waiting for its commit.
    Pending(u64),
    /// One result per committed token.
    Committed(Vec<Result<(), WireError>>),
    /// Payload bytes.
    Data(&'a [u8]),
    /// A shard header.
    Header(ShardHeader),
    /// Files removed by a purge.
    Purged(u64),
    /// One page of a listing.
    ListPage {
        /// No pages follow.
        last: bool,
        /// Shards on this page.
        shards: Vec<StoredShard>,
        /// Leftover temporary files (paths on the server).
        leftovers: Vec<String>,
    },
    /// Size of a shard file, header included.
    Size(u64),
    /// Answer to `Prove`.
    Proof(PossessionProof),
    /// Answer to `Holdings`: shard count and root.
    Holdings(u64, [u8; 32]),
}

fn key(w: &mut Writer, k: &ShardKey) {
    w.bytes(k.object.as_bytes()).u8(k.index);
}

fn read_key(r: &mut Reader<'_>) -> Result<ShardKey, DecodeError> {
    let object = ObjectId(r.array()?);
    let index = r.u8()?;
    Ok(ShardKey { object, index })
}

fn text(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let b = r.blob()?;
    String::from_utf8(b.to_vec()).map_err(|_| r.invalid(field, "not UTF-8"))
}

fn tokens(w: &mut Writer, t: &[u64]) {
    w.u32(t.len() as u32);
    for v in t {
        w.u64(*v);
    }
}

fn read_tokens(r: &mut Reader<'_>) -> Result<Vec<u64>, DecodeError> {
    let n = r.u32()? as usize;
    if n > MAX_TOKENS {
        return Err(r.invalid("token count", format!("{n} (at most {MAX_TOKENS})")));
    }
    (0..n).map(|_| r.u64()).collect()
}

fn header(r: &mut Reader<'_>) -> Result<ShardHeader, DecodeError> {
    let bytes = r.take(HEADER_LEN)?;
    ShardHeader::decode(bytes)
}

/// A `Data` message's first bytes; the payload is appended after it.
pub const DATA_TAG: u8 = 0x05;
/// A `Put` message's first byte; the shard header and then the payload
/// follow it.
pub const PUT_TAG: u8 = 0x12;

impl Request<'_> {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        match self {
            Request::Hello {
                version,
                vault_id,
                node,
            } => {
                w.u8(0x01)
                    .bytes(MAGIC)
                    .u16(*version)
                    .blob(vault_id.as_bytes())
                    .blob(node.as_bytes());
            }
            Request::Health => {
                w.u8(0x02);
            }
            Request::Space => {
                w.u8(0x03);
            }
            Request::Create(h) => {
                w.u8(0x04).bytes(&h.encode());
            }
            Request::Data(d) => {
                w = Writer::with_capacity(d.len() + 1);
                w.u8(DATA_TAG).bytes(d);
            }
            Request::Finish => {
                w.u8(0x06);
            }
            Request::Commit(t) => {
                w.u8(0x07);
                tokens(&mut w, t);
            }
            Request::ReadAt {
                key: k,
                offset,
                len,
            } => {
                w.u8(0x08);
                key(&mut w, k);
                w.u64(*offset).u32(*len);
            }
            Request::ReadHeader(k) => {
                w.u8(0x09);
                key(&mut w, k);
            }
            Request::Delete(k) => {
                w.u8(0x0a);
                key(&mut w, k);
            }
            Request::Purge(o) => {
                w.u8(0x0b).bytes(o.as_bytes());
            }
            Request::List => {
                w.u8(0x0c);
            }
            Request::ProbeWrite => {
                w.u8(0x0d);
            }
            Request::Stat(k) => {
                w.u8(0x0e);
                key(&mut w, k);
            }
            Request::Discard(t) => {
                w.u8(0x0f);
                tokens(&mut w, t);
            }
            Request::Prove(k, c) => {
                w.u8(0x10);
                key(&mut w, k);
                w.bytes(&c.nonce).u32(c.block).u32(c.indices.len() as u32);
                for i in &c.indices {
                    w.u64(*i);
                }
            }
            Request::Holdings(nonce) => {
                w.u8(0x11).bytes(nonce);
            }
            Request::Put(h, d) => {
                w = Writer::with_capacity(1 + HEADER_LEN + d.len());
                w.u8(PUT_TAG).bytes(&h.encode()).bytes(d);
            }
        }
        w.finish()
    }
}

impl<'a> Request<'a> {
    /// Decodes a message.
    pub fn decode(buf: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        let mut r = Reader::new("node request", buf);
        let tag = r.u8()?;
        let req = match tag {
            0x01 => {
                let magic: [u8; 8] = r.array()?;
                if &magic != MAGIC {
                    return Err(r.invalid("magic", "not a qsfs node protocol hello"));
                }
                let version = r.u16()?;
                if version != super::VERSION {
                    // Later fields may differ in another version.
                    return Ok(Request::Hello {
                        version,
                        vault_id: String::new(),
                        node: String::new(),
                    });
                }
                Request::Hello {
                    version,
                    vault_id: text(&mut r, "vault id")?,
                    node: text(&mut r, "node name")?,
                }
            }
            0x02 => Request::Health,
            0x03 => Request::Space,
            0x04 => Request::Create(header(&mut r)?),
            DATA_TAG => {
                let d = r.take(r.remaining())?;
                if d.len() > MAX_DATA {
                    return Err(
                        r.invalid("data", format!("{} bytes (at most {MAX_DATA})", d.len()))
                    );
                }
                Request::Data(d)
            }
            0x06 => Request::Finish,
            0x07 => Request::Commit(read_tokens(&mut r)?),
            0x08 => {
                let key = read_key(&mut r)?;
                let offset = r.u64()?;
                let len = r.u32()?;
                if len as usize > MAX_DATA {
                    return Err(r.invalid("len", format!("{len} (at most {MAX_DATA})")));
                }
                Request::ReadAt { key, offset, len }
            }
            0x09 => Request::ReadHeader(read_key(&mut r)?),
            0x0a => Request::Delete(read_key(&mut r)?),
            0x0b => Request::Purge(ObjectId(r.array()?)),
            0x0c => Request::List,
            0x0d => Request::ProbeWrite,
            0x0e => Request::Stat(read_key(&mut r)?),
            0x0f => Request::Discard(read_tokens(&mut r)?),
            0x10 => {
                let key = read_key(&mut r)?;
                let nonce = r.array()?;
                let block = r.u32()?;
                let n = r.u32()? as usize;
                if n > MAX_PROOF_BLOCKS {
                    return Err(
                        r.invalid("block count", format!("{n} (at most {MAX_PROOF_BLOCKS})"))
                    );
                }
                let indices = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
                Request::Prove(
                    key,
                    Challenge {
                        nonce,
                        block,
                        indices,
                    },
                )
            }
            0x11 => Request::Holdings(r.array()?),
            PUT_TAG => {
                let h = header(&mut r)?;
                let d = r.take(r.remaining())?;
                if d.len() > MAX_DATA {
                    return Err(r.invalid("put", format!("{} bytes (at most {MAX_DATA})", d.len())));
                }
                Request::Put(h, d)
            }
            other => return Err(r.invalid("tag", format!("unknown request 0x{other:02x}"))),
        };
        r.finish()?;
        Ok(req)
    }
}

impl Response<'_> {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        match self {
            Response::Ok => {
                w.u8(0x80);
            }
            Response::Error(e) => {
                w.u8(0x81);
                e.encode(&mut w);
            }
            Response::HelloOk {
                version,
                vault_id,
                node,
                adopted,
            } => {
                w.u8(0x82)
                    .u16(*version)
                    .blob(vault_id.as_bytes())
                    .blob(node.as_bytes())
                    .u8(u8::from(*adopted));
            }
            Response::Health(h) => {
                let (state, detail) = match h {
                    NodeHealth::Ok => (0, ""),
                    NodeHealth::Offline(d) => (1, d.as_str()),
                    NodeHealth::ReadOnly(d) => (2, d.as_str()),
                    NodeHealth::Foreign(d) => (3, d.as_str()),
                };
                w.u8(0x83).u8(state).blob(detail.as_bytes());
            }
            Response::Space(s) => {
                w.u8(0x84);
                match s {
                    Some(s) => w.u8(1).u64(s.total).u64(s.available).u64(s.fsid),
                    None => w.u8(0).u64(0).u64(0).u64(0),
                };
            }
            Response::Pending(t) => {
                w.u8(0x85).u64(*t);
            }
            Response::Committed(results) => {
                w.u8(0x86).u32(results.len() as u32);
                for r in results {
                    match r {
                        Ok(()) => {
                            w.u8(0);
                        }
                        Err(e) => {
                            w.u8(1);
                            e.encode(&mut w);
                        }
                    }
                }
            }
            Response::Data(d) => {
                w = Writer::with_capacity(d.len() + 1);
                w.u8(0x87).bytes(d);
            }
            Response::Header(h) => {
                w.u8(0x88).bytes(&h.encode());
            }
            Response::Purged(n) => {
                w.u8(0x89).u64(*n);
            }
            Response::ListPage {
                last,
                shards,
                leftovers,
            } => {
                w.u8(0x8a).u8(u8::from(*last)).u32(shards.len() as u32);
                for s in shards {
                    key(&mut w, &s.key);
                    w.u64(s.size);
                }
                w.u32(leftovers.len() as u32);
                for l in leftovers {
                    w.blob(l.as_bytes());
                }
            }
            Response::Size(n) => {
                w.u8(0x8b).u64(*n);
            }
            Response::Proof(p) => {
                w.u8(0x8c)
                    .bytes(&p.nonce)
                    .u64(p.leaves)
                    .u32(p.blocks.len() as u32);
                for b in &p.blocks {
                    w.u64(b.index).blob(&b.data).u8(b.path.len() as u8);
                    for h in &b.path {
                        w.bytes(h);
                    }
                }
            }
            Response::Holdings(count, root) => {
                w.u8(0x8d).u64(*count).bytes(root);
            }
        }
        w.finish()
    }
}

impl<'a> Response<'a> {
    /// Decodes a message.
    pub fn decode(buf: &'a [u8]) -> Result<Response<'a>, DecodeError> {
        let mut r = Reader::new("node response", buf);
        let tag = r.u8()?;
        let resp = match tag {
            0x80 => Response::Ok,
            0x81 => Response::Error(WireError::decode(&mut r)?),
            0x82 => {
                let version = r.u16()?;
                let vault_id = text(&mut r, "vault id")?;
                let node = text(&mut r, "node name")?;
                let adopted = r.u8()? != 0;
                Response::HelloOk {
                    version,
                    vault_id,
                    node,
                    adopted,
                }
            }
            0x83 => {
                let state = r.u8()?;
                let detail = text(&mut r, "health detail")?;
                Response::Health(match state {
                    0 => NodeHealth::Ok,
                    1 => NodeHealth::Offline(detail),
                    2 => NodeHealth::ReadOnly(detail),
                    3 => NodeHealth::Foreign(detail),
                    other => {
                        return Err(r.invalid("health", format!("unknown state {other}")));
                    }
                })
            }
            0x84 => {
                let present = r.u8()? != 0;
                let (total, available, fsid) = (r.u64()?, r.u64()?, r.u64()?);
                Response::Space(present.then_some(FsSpace {
                    total,
                    available,
                    fsid,
                }))
            }
            0x85 => Response::Pending(r.u64()?),
            0x86 => {
                let n = r.u32()? as usize;
                if n > MAX_TOKENS {
                    return Err(r.invalid("result count", format!("{n} (at most {MAX_TOKENS})")));
                }
                let mut results = Vec::with_capacity(n);
                for _ in 0..n {
                    results.push(match r.u8()? {
                        0 => Ok(()),
                        _ => Err(WireError::decode(&mut r)?),
                    });
                }
                Response::Committed(results)
            }
            0x87 => Response::Data(r.take(r.remaining())?),
            0x88 => Response::Header(header(&mut r)?),
            0x89 => Response::Purged(r.u64()?),
            0x8a => {
                let last = r.u8()? != 0;
                let n = r.u32()? as usize;
                // Each entry takes 25 bytes: the count cannot exceed what is there.
                if n > r.remaining() / 25 {
                    return Err(r.invalid("shard count", format!("{n} does not fit the page")));
                }
                let mut shards = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = read_key(&mut r)?;
                    let size = r.u64()?;
                    shards.push(StoredShard { key, size });
                }
                let n = r.u32()? as usize;
                if n > r.remaining() / 4 {
                    return Err(r.invalid("leftover count", format!("{n} does not fit the page")));
                }
                let mut leftovers = Vec::with_capacity(n);
                for _ in 0..n {
                    leftovers.push(text(&mut r, "leftover path")?);
                }
                Response::ListPage {
                    last,
                    shards,
                    leftovers,
                }
            }
            0x8b => Response::Size(r.u64()?),
            0x8c => {
                let nonce = r.array()?;
                let leaves = r.u64()?;
                let n = r.u32()? as usize;
                if n > MAX_PROOF_BLOCKS {
                    return Err(
                        r.invalid("block count", format!("{n} (at most {MAX_PROOF_BLOCKS})"))
                    );
                }
                let mut blocks = Vec::with_capacity(n);
                for _ in 0..n {
                    let index = r.u64()?;
                    let data = r.blob()?.to_vec();
                    let depth = r.u8()? as usize;
                    let path = (0..depth).map(|_| r.array()).collect::<Result<_, _>>()?;
                    blocks.push(ProvenBlock { index, data, path });
                }
                Response::Proof(PossessionProof {
                    nonce,
                    leaves,
                    blocks,
                })
            }
            0x8d => Response::Holdings(r.u64()?, r.array()?),
            other => return Err(r.invalid("tag", format!("unknown response 0x{other:02x}"))),
        };
        r.finish()?;
        Ok(resp)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;

    fn header() -> ShardHeader {
        let layout = StripeLayout::plan(3, 5, 5000, 1024).unwrap();
        ShardHeader::new(ObjectId([7; 16]), 2, &layout)
    }

    #[test]
    fn requests_round_trip() {
        let key = ShardKey {
            object: ObjectId([3; 16]),
            index: 4,
        };
        let data = vec![9u8; 1000];
        let all = vec![
            Request::Hello {
                version: 1,
                vault_id: "ab".repeat(16),
                node: "node-3".into(),
            },
            Request::Health,
            Request::Space,
            Request::Create(header()),
            Request::Data(&data),
            Request::Finish,
            Request::Commit(vec![1, 2, u64::MAX]),
            Request::ReadAt {
                key,
                offset: 77,
                len: 4096,
            },
            Request::ReadHeader(key),
            Request::Delete(key),
            Request::Purge(ObjectId([5; 16])),
            Request::List,
            Request::ProbeWrite,
            Request::Stat(key),
            Request::Discard(vec![8]),
            Request::Put(header(), &data),
        ];
        for r in all {
            let bytes = r.encode();
            assert_eq!(Request::decode(&bytes).unwrap(), r);
            // Every truncation is an error, never a panic.
            if !matches!(r, Request::Data(_) | Request::Put(..)) {
                for cut in 0..bytes.len() {
                    assert!(Request::decode(&bytes[..cut]).is_err(), "{r:?} cut {cut}");
                }
            }
        }
        assert!(Request::decode(&[0x7f]).is_err());
        assert!(Request::decode(&[0x02, 0]).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let key = ShardKey {
            object: ObjectId([3; 16]),
            index: 4,
        };
        let data = vec![1u8; 10];
        let mut io = WireError::new(ErrorKind::Io, "disk full");
        io.errno = 28;
        let all = vec![
            Response::Ok,
            Response::Error(WireError::new(ErrorKind::Foreign, "another vault")),
            Response::HelloOk {
                version: 1,
                vault_id: "cd".repeat(16),
                node: "node-1".into(),
                adopted: true,
            },
            Response::Health(NodeHealth::ReadOnly("ro".into())),
            Response::Health(NodeHealth::Ok),
            Response::Space(Some(FsSpace {
                total: 10,
                available: 5,
                fsid: 3,
            })),
            Response::Space(None),
            Response::Pending(42),
            Response::Committed(vec![Ok(()), Err(io.clone()), Ok(())]),
            Response::Data(&data),
            Response::Header(header()),
            Response::Purged(3),
            Response::ListPage {
                last: true,
                shards: vec![StoredShard { key, size: 164 }],
                leftovers: vec!["/n/shards/ab/.x.tmp".into()],
            },
            Response::Size(164),
        ];
        for r in all {
            let bytes = r.encode();
            assert_eq!(Response::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn errors_map_back_to_node_errors() {
        let io = WireError::io(&std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!((io.kind, io.errno), (ErrorKind::Io, libc::ENOSPC));
        let e = io.into_node("node-2", "write shard", None);
        assert!(matches!(&e.kind, NodeErrorKind::Io(i) if i.raw_os_error() == Some(libc::ENOSPC)));
        assert!(e.is_storage_full());
        assert!(e.to_string().starts_with("node-2: write shard"));
        let nf = WireError::new(ErrorKind::NotFound, "x").into_node("n", "read shard", None);
        assert!(nf.is_not_found());
        let long = WireError::new(ErrorKind::Corrupt, "é".repeat(5000));
        assert!(long.message.len() <= MAX_ERROR_TEXT);
    }

    /// A full disk crosses the wire as `Io` with its errno whether or not
    /// the OS error had a raw number, and an error kind from a newer peer
    /// decodes as a generic storage failure that keeps its errno.
    #[test]
    fn storage_full_survives_the_wire() {
        for (io, errno) in [
            (
                std::io::Error::from(std::io::ErrorKind::StorageFull),
                libc::ENOSPC,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::QuotaExceeded),
                libc::EDQUOT,
            ),
            (
                std::io::Error::from_raw_os_error(libc::EDQUOT),
                libc::EDQUOT,
            ),
        ] {
            let bytes = Response::Committed(vec![Err(WireError::io(&io)), Ok(())]).encode();
            let Response::Committed(r) = Response::decode(&bytes).unwrap() else {
                panic!("not a commit answer");
            };
            let w = r[0].clone().unwrap_err();
            assert_eq!((w.kind, w.errno), (ErrorKind::Io, errno));
            let e = w.into_node("node-1", "commit shard", None);
            assert_eq!(e.errno(), Some(errno));
            assert!(e.is_storage_full());
            assert_eq!(r[1], Ok(()));
        }
        // kind 99, errno ENOSPC, message "x"
        let mut future = vec![0x81, 99];
        future.extend_from_slice(&libc::ENOSPC.to_le_bytes());
        future.extend_from_slice(&[1, 0, 0, 0, b'x']);
        let Response::Error(w) = Response::decode(&future).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(
            (w.kind, w.errno, w.message.as_str()),
            (ErrorKind::Io, libc::ENOSPC, "x")
        );
        assert!(w.into_node("n", "create shard", None).is_storage_full());
        let p = WireError::protocol("bad").into_node("n", "prove shard", None);
        assert!(matches!(p.kind, NodeErrorKind::Protocol(_)));
        let f = WireError::new(ErrorKind::Foreign, "v").into_node("n", "hello", None);
        assert!(matches!(f.kind, NodeErrorKind::Foreign(_)));
    }

    /// Frozen bytes of v1 messages: the wire format must not drift.
    #[test]
    fn frozen_v1_bytes() {
        let hello = Request::Hello {
            version: 1,
            vault_id: "v".into(),
            node: "n".into(),
        };
        assert_eq!(
            hex::encode(hello.encode()),
            "01515346534e4f444501000100000076010000006e"
        );
        let read = Request::ReadAt {
            key: ShardKey {
                object: ObjectId([0xaa; 16]),
                index: 2,
            },
            offset: 1,
            len: 2,
        };
        assert_eq!(
            hex::encode(read.encode()),
            format!(
                "08{}02{}{}",
                "aa".repeat(16),
                "0100000000000000",
                "02000000"
            )
        );
    }
}
