//! Seed inputs for the fuzz targets, made by the real encoders, so the
//! fuzzer starts from well-formed records and mutates from there. The
//! ignored test `fuzz_replay::write_seeds` writes them into
//! `fuzz/corpus/<target>/`; the envelope seeds come from the conformance
//! vectors instead (see that test).

use std::io;

use crate::ObjectId;
use crate::codec::Writer;
use crate::dispersal::Manifest;
use crate::erasure::StripeLayout;
use crate::namespace::{Extent, Inode, JournalMark, Kind, Time};
use crate::node::proof::Challenge;
use crate::node::wire::{ErrorKind, Request, Response, WireError};
use crate::node::{ShardHeader, ShardKey, StoredShard};
use crate::qkd::link::frame::FrameHeader;
use crate::qkd::link::hello::Hello;
use crate::qkd::pool::format::{Header, RECORD_LEN, encode_record};
use crate::qkd::{End, KeyId};

/// One seed: target name, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn layout(k: usize, n: usize, len: u64, chunk: u32) -> io::Result<StripeLayout> {
    StripeLayout::plan(k, n, len, chunk).map_err(io::Error::other)
}

/// Every seed the encoders make. Fails only if the temporary folder for
/// the staging journal or the vault configuration cannot be written.
pub fn seeds() -> io::Result<Vec<Seed>> {
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |t: &'static str, name: &str, b: Vec<u8>| out.push((t, name.to_string(), b));
    let id = ObjectId(*b"fuzz-seed-object");

    // Shard headers and manifests over a few layouts.
    for (i, (k, n, len, chunk)) in [(3, 5, 10_000, 1024), (1, 2, 0, 1), (2, 3, 1 << 20, 65_536)]
        .into_iter()
        .enumerate()
    {
        let l = layout(k, n, len, chunk)?;
        add(
            "shard_header",
            &format!("layout{i}"),
            ShardHeader::new(id, (n - 1) as u8, &l).encode().to_vec(),
        );
        let count = l.stripes as usize * n;
        let m = Manifest {
            id,
            layout: l,
            plain_len: len.saturating_sub(200),
            created: 1_700_000_000,
            placement: (0..n).map(|j| format!("node-{j}")).collect(),
            missing: 0b10,
            hashes: (0..count).map(|j| [j as u8; 32]).collect(),
            block: if i == 0 { 8192 } else { 0 },
            roots: if i == 0 { vec![[7; 32]; n] } else { Vec::new() },
            piece: 0,
        };
        let v2 = m.encode();
        // v1: the same without the block size and roots.
        let mut v1 = v2[..v2.len() - 4 - n * 32].to_vec();
        v1[0] = 1;
        add("manifest", &format!("v2-layout{i}"), v2);
        add("manifest", &format!("v1-layout{i}"), v1);
    }

    // Inodes of each kind; v1 (extents without object_offset) by hand.
    let t = Time {
        secs: 1_700_000_000,
        nanos: 5,
    };
    let mut file = Inode::new(Kind::File, 0o644, 1000, 1000);
    file.size = 70_000;
    (file.atime, file.mtime, file.ctime, file.crtime) = (t, t, t, t);
    file.extents = vec![
        Extent {
            offset: 0,
            len: 65_536,
            object: id,
            object_offset: 0,
        },
        Extent {
            offset: 65_536,
            len: 4464,
            object: ObjectId([9; 16]),
            object_offset: 12,
        },
    ];
    add("inode", "file", file.encode());
    let mut link = Inode::new(Kind::Symlink, 0o777, 0, 0);
    link.target = b"../some/target".to_vec();
    add("inode", "symlink", link.encode());
    add("inode", "dir", Inode::new(Kind::Dir, 0o755, 0, 0).encode());
    let mut dev = Inode::new(Kind::CharDev, 0o600, 0, 0);
    dev.rdev = 0x0501;
    add("inode", "chardev", dev.encode());

    // Namespace side records.
    let mark = JournalMark { epoch: 7, seq: 42 };
    add("namespace_records", "journal-mark", mark.encode().to_vec());
    let mut entry = 77u64.to_le_bytes().to_vec();
    entry.push(Kind::File.code());
    add("namespace_records", "dir-entry", entry);
    let mut w = Writer::with_capacity(64);
    w.u8(1).u64(9000).i64(1_700_000_000).u32(1).u32(2);
    w.u64(0).u64(4096).u64(8192).u64(9000);
    add("namespace_records", "staging-record", w.finish());

    // Keystore records and backup records / shares.
    add(
        "keystore_record",
        "share",
        crate::keystore::encode(&[0x31; 33]).to_vec(),
    );
    let keys = crate::envelope::SealKeys::split([1; 32], [2; 32], [3; 32]);
    let (_, b) = crate::envelope::seal_bytes(b"seed", &keys).map_err(io::Error::other)?;
    add("backup_record", "backup", b.to_bytes().to_vec());
    add("backup_record", "share", keys.r1().as_bytes().to_vec());
    add(
        "backup_record",
        "share-hex",
        keys.r2().to_hex().into_bytes(),
    );

    // A key pool file: header and records.
    let h = Header {
        end: End::A,
        refill: true,
        link_id: [5; 16],
        link: "node-0".to_string(),
        capacity: 4,
        count: 4,
        sealed: None,
    };
    let mut pool = h.encode().map_err(io::Error::other)?.to_vec();
    for i in 0..4u64 {
        let mut r = vec![0u8; RECORD_LEN];
        encode_record(&mut r, &KeyId([i as u8; 16]), &[i as u8 + 1; 32], i);
        pool.extend_from_slice(&r);
    }
    add("key_pool", "pool", pool);

    // Random pool position.
    let st = crate::entropy::pool_state::PoolState {
        position: 4096,
        pool_len: 1 << 20,
    };
    add(
        "pool_state",
        "state",
        crate::entropy::pool_state::encode(&st),
    );

    // Saved audit tree.
    let built = crate::node::treefile::Built {
        block: 8192,
        file: (1234, 3 * 8192, 1_700_000_000_000_000_000),
    };
    let leaves: Vec<[u8; 32]> = (0..3).map(|i| [i; 32]).collect();
    add(
        "treefile",
        "tree",
        crate::node::treefile::encode(&built, &leaves),
    );

    // Link frame header (with a payload and tag behind it) and hello.
    let f = FrameHeader {
        flags: crate::qkd::link::frame::HELLO,
        key: KeyId([8; 16]),
        key_seq: 0,
        global_seq: 3,
        len: 36,
    };
    let mut frame = f.encode().to_vec();
    frame.extend_from_slice(&[0xAB; 36 + 16]);
    add("link_frame", "frame", frame);
    let hello = Hello {
        protocol: crate::qkd::link::hello::PROTOCOL,
        link_id: [4; 16],
        end: End::B,
        link: "node-3".to_string(),
    };
    add("link_hello", "hello", hello.encode());

    // Node protocol messages.
    let l = layout(3, 5, 10_000, 1024)?;
    let header = ShardHeader::new(id, 2, &l);
    let key = ShardKey {
        object: id,
        index: 2,
    };
    let requests = [
        (
            "hello",
            Request::Hello {
                version: crate::node::wire::VERSION,
                vault_id: "00112233445566778899aabbccddeeff".into(),
                node: "node-2".into(),
            },
        ),
        ("health", Request::Health),
        ("space", Request::Space),
        ("create", Request::Create(header)),
        ("data", Request::Data(b"shard payload bytes")),
        ("finish", Request::Finish),
        ("commit", Request::Commit(vec![1, 2, 3])),
        (
            "read-at",
            Request::ReadAt {
                key,
                offset: 10,
                len: 100,
            },
        ),
        ("read-header", Request::ReadHeader(key)),
        ("delete", Request::Delete(key)),
        ("purge", Request::Purge(id)),
        ("list", Request::List),
        ("probe", Request::ProbeWrite),
        ("stat", Request::Stat(key)),
        ("discard", Request::Discard(vec![9])),
        (
            "prove",
            Request::Prove(
                key,
                Challenge {
                    nonce: [6; 32],
                    block: 8192,
                    indices: vec![0, 3],
                },
            ),
        ),
        ("holdings", Request::Holdings([2; 32])),
    ];
    for (name, r) in requests {
        add("node_request", name, r.encode());
    }
    let responses = [
        ("ok", Response::Ok),
        (
            "error",
            Response::Error(WireError::new(ErrorKind::NotFound, "no such shard")),
        ),
        (
            "hello-ok",
            Response::HelloOk {
                version: crate::node::wire::VERSION,
                vault_id: "00112233445566778899aabbccddeeff".into(),
                node: "node-2".into(),
                adopted: true,
            },
        ),
        ("pending", Response::Pending(17)),
        (
            "committed",
            Response::Committed(vec![Ok(()), Err(WireError::new(ErrorKind::Corrupt, "bad"))]),
        ),
        ("data", Response::Data(b"payload")),
        ("header", Response::Header(header)),
        ("purged", Response::Purged(3)),
        (
            "list-page",
            Response::ListPage {
                last: true,
                shards: vec![StoredShard { key, size: 4000 }],
                leftovers: vec!["shards/ab/x.tmp".into()],
            },
        ),
        ("size", Response::Size(4000)),
        ("holdings", Response::Holdings(2, [1; 32])),
    ];
    for (name, r) in responses {
        add("node_response", name, r.encode());
    }

    // ETSI 014: what a KME answers, and what a client asks.
    add(
        "etsi014_client",
        "keys",
        br#"{"keys":[{"key_ID":"bc490419-7d60-487f-adc1-4ddcc177c139","key":"wHHVxRwDJs3/bXd38GHP3oe4svTuRpZS0yCC7x4Ly+s="}]}"#.to_vec(),
    );
    add(
        "etsi014_client",
        "status",
        br#"{"source_KME_ID":"kme-a","target_KME_ID":"kme-b","master_SAE_ID":"sae-a","slave_SAE_ID":"sae-b","key_size":256,"stored_key_count":25000,"max_key_count":100000,"max_key_per_request":128,"max_key_size":1024,"min_key_size":64,"max_SAE_ID_count":0}"#.to_vec(),
    );
    add(
        "etsi014_client",
        "error",
        br#"{"message":"keys exhausted","details":[{"reason":"none left"}]}"#.to_vec(),
    );
    add(
        "etsi014_kme",
        "enc-get",
        b"GET\n/api/v1/keys/sae-b/enc_keys\nnumber=2&size=256\n".to_vec(),
    );
    add(
        "etsi014_kme",
        "enc-post",
        b"POST\n/api/v1/keys/sae-b/enc_keys\n\n{\"number\":2,\"size\":256}".to_vec(),
    );
    add(
        "etsi014_kme",
        "dec-post",
        b"POST\n/api/v1/keys/sae-a/dec_keys\n\n{\"key_IDs\":[{\"key_ID\":\"bc490419-7d60-487f-adc1-4ddcc177c139\"}]}".to_vec(),
    );
    add(
        "etsi014_kme",
        "dec-get",
        b"GET\n/api/v1/keys/sae-a/dec_keys\nkey_ID=bc490419-7d60-487f-adc1-4ddcc177c139\n".to_vec(),
    );
    add(
        "etsi014_kme",
        "status",
        b"GET\n/api/v1/keys/sae%2Db/status\n\n".to_vec(),
    );

    // The intent log and a staging journal, written by their writers.
    let tmp = tempfile::tempdir()?;
    let (log, _) = crate::vault::intents::Intents::open(&tmp.path().join("intents"))?;
    log.begin(id)?;
    log.begin(ObjectId([0xEE; 16]))?;
    log.done(&[id])?;
    drop(log);
    add(
        "intents_log",
        "log",
        std::fs::read(tmp.path().join("intents"))?,
    );
    let jdir = tmp.path().join("journal");
    std::fs::create_dir(&jdir)?;
    let mut j = crate::fs::journal::Journal::create(&jdir, 42, 1000, None)?;
    use crate::fs::journal::Entry;
    for e in [
        Entry::Wrote(0, 4096),
        Entry::Size(9000),
        Entry::Zeroed(100, 200),
    ] {
        j.append(e)?;
    }
    drop(j);
    for e in std::fs::read_dir(&jdir)? {
        add("staging_journal", "journal", std::fs::read(e?.path())?);
    }

    // A vault's configuration, as `qsfs init` writes it.
    let root = tmp.path().join("vault");
    crate::vault::init(
        &root,
        &crate::vault::InitOptions {
            direct: true,
            unlock: Some(crate::unlock::NewMethod::None),
            ..Default::default()
        },
    )
    .map_err(io::Error::other)?;
    add(
        "vault_config",
        "init",
        std::fs::read(root.join("qsfs.toml"))?,
    );
    Ok(out)
}
