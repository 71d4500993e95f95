//! Fuzz entry points: one function per decoder of bytes that come from disk
//! or from a peer, shared by the cargo-fuzz targets (`fuzz/`) and by the
//! corpus replay in the normal test suite (`tests/integration/fuzz_replay.rs`),
//! so both run exactly the same code on the same inputs.
//!
//! Each entry must return normally for every input: a decoder that panics,
//! allocates without bound or loops on some bytes is a bug. Where it is
//! cheap, an entry also encodes what decoded and decodes it again; a
//! mismatch panics on purpose (the encoder and decoder disagree).
//!
//! Not an API: the entries change with the formats.

use std::io::Cursor;
use std::path::Path;

use crate::ObjectId;
pub mod seeds;

use crate::envelope::{
    BACKUP_LEN, Backup, LocalShares, MacStatus, ObjectReader, SHARE_LEN, Share, open_bytes,
    recover_keys,
};

/// A fuzz entry: runs one decoder on the bytes.
pub type Entry = fn(&[u8]);

/// Every target, by name: the fuzz crate has one binary per row and the
/// replay test walks `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/`
/// for each.
pub const TARGETS: &[(&str, Entry)] = &[
    ("envelope_open", envelope_open),
    ("object_reader", object_reader),
    ("backup_record", backup_record),
    ("shard_header", shard_header),
    ("manifest", manifest),
    ("inode", inode),
    ("namespace_records", namespace_records),
    ("keystore_record", keystore_record),
    ("key_pool", key_pool),
    ("pool_state", pool_state),
    ("treefile", treefile),
    ("link_frame", link_frame),
    ("link_hello", link_hello),
    ("node_request", node_request),
    ("node_response", node_response),
    ("etsi014_client", etsi014_client),
    ("etsi014_kme", etsi014_kme),
    ("intents_log", intents_log),
    ("staging_journal", staging_journal),
    ("vault_config", vault_config),
];

/// Bytes in front of `N` in the envelope inputs: a mode byte (bit 0: R1
/// present, bit 1: R2 present, bit 2: B present), `R1`, `R2` and `B`. The
/// keys travel with the object so that every conformance vector is a seed
/// that opens, and the fuzzer mutates keys and object alike.
pub const ENVELOPE_PREFIX: usize = 1 + 2 * SHARE_LEN + BACKUP_LEN;

/// The key material and object of an envelope input, or `None` for one
/// too short to hold the prefix.
fn envelope_parts(data: &[u8]) -> Option<(LocalShares, Option<Backup>, &[u8])> {
    if data.len() < ENVELOPE_PREFIX {
        return None;
    }
    let (prefix, n) = data.split_at(ENVELOPE_PREFIX);
    let mode = prefix[0];
    let r1 = &prefix[1..1 + SHARE_LEN];
    let r2 = &prefix[1 + SHARE_LEN..1 + 2 * SHARE_LEN];
    let b = &prefix[1 + 2 * SHARE_LEN..];
    let local = LocalShares {
        r1: (mode & 1 != 0)
            .then(|| Share::from_bytes(r1).ok())
            .flatten(),
        r2: (mode & 2 != 0)
            .then(|| Share::from_bytes(r2).ok())
            .flatten(),
    };
    let backup = (mode & 4 != 0).then(|| Backup::parse(b).ok()).flatten();
    Some((local, backup, n))
}

/// Opens a sealed object `N` in memory (`envelope::open_bytes`) with the
/// shares and backup record in front of it (see [`ENVELOPE_PREFIX`]).
pub fn envelope_open(data: &[u8]) {
    let Some((local, backup, n)) = envelope_parts(data) else {
        return;
    };
    let Ok(opened) = open_bytes(n, &local, backup.as_ref()) else {
        return;
    };
    let g = opened.recovered.geometry();
    assert_eq!(opened.plaintext.len() as u64, g.plain_len());
    assert_eq!(g.len_n(), n.len() as u64);
}

/// Opens a sealed object segment by segment with the random-access
/// [`ObjectReader`] (last segment first, so `M` completes out of order)
/// and checks it against the whole-object open: the reader may release a
/// segment before `M` is complete, but once every segment was visited and
/// none failed, `M` must be verified and the plaintext must be what
/// `open_bytes` returns.
pub fn object_reader(data: &[u8]) {
    let Some((local, backup, n)) = envelope_parts(data) else {
        return;
    };
    let mut src: &[u8] = n;
    let Ok(rec) = recover_keys(&mut src, n.len() as u64, &local, backup.as_ref()) else {
        return;
    };
    let reader = ObjectReader::new(rec);
    let g = reader.geometry().clone();
    // Each segment's plaintext is bounded by the input's length; a
    // segment count beyond it is a layout bug the loop below would hit.
    assert!(
        g.segments() <= n.len() as u64 + 1,
        "more segments than bytes"
    );
    let mut plain = vec![Vec::new(); g.segments() as usize];
    let mut failed = false;
    for i in (0..g.segments()).rev() {
        let mut src: &[u8] = n;
        match reader.open_segment(i, &mut src) {
            Ok(seg) => plain[i as usize] = seg,
            Err(_) => failed = true,
        }
    }
    let whole = open_bytes(n, &local, backup.as_ref());
    if failed {
        return;
    }
    assert!(
        matches!(reader.mac_status(), MacStatus::Verified),
        "every segment opened but M is not verified"
    );
    let whole = whole.map(|o| o.plaintext);
    assert_eq!(
        whole.ok().as_deref(),
        Some(plain.concat().as_slice()),
        "the reader and the whole-object open disagree"
    );
}

/// Backup records `B` and key shares, as kept in the manifest store and
/// the keystore.
pub fn backup_record(data: &[u8]) {
    if let Ok(b) = Backup::parse(data) {
        assert_eq!(b.to_bytes().as_slice(), data, "backup record round trip");
    }
    if let Ok(s) = Share::from_bytes(data) {
        assert_eq!(s.as_bytes().as_slice(), data, "share round trip");
        let again = Share::from_hex(&s.to_hex()).map(|s| s.as_bytes().to_vec());
        assert_eq!(again.ok().as_deref(), Some(data), "share hex round trip");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Share::from_hex(text);
    }
}

/// The header of a shard file on a node.
pub fn shard_header(data: &[u8]) {
    if let Ok(h) = crate::node::ShardHeader::decode(data) {
        let enc = h.encode();
        let back = crate::node::ShardHeader::decode(&enc).ok();
        assert_eq!(back, Some(h), "shard header round trip");
        let _ = (h.payload_len(), h.file_len());
    }
}

/// A manifest, v1 or v2 (v1 re-encodes as v2, so the check compares
/// what the two decodes mean, not their bytes).
pub fn manifest(data: &[u8]) {
    if let Ok(m) = crate::dispersal::Manifest::decode(data) {
        let back = crate::dispersal::Manifest::decode(&m.encode()).ok();
        assert_eq!(back.as_ref(), Some(&m), "manifest round trip");
        let _ = (m.present(), m.stored_bytes(), m.leaves());
    }
}

/// An inode record of the namespace.
pub fn inode(data: &[u8]) {
    if let Ok(i) = crate::namespace::Inode::decode(data) {
        let back = crate::namespace::Inode::decode(&i.encode()).ok();
        assert_eq!(back, Some(i), "inode round trip");
    }
}

/// The namespace's side records: journal marks, directory entries and the
/// staging records older versions wrote.
pub fn namespace_records(data: &[u8]) {
    if let Some(m) = crate::namespace::JournalMark::decode(data) {
        assert_eq!(m.encode().as_slice(), data, "journal mark round trip");
    }
    let _ = crate::namespace::decode_entry(1, data);
    let _ = crate::fs::staging::StagingRecord::decode(data);
}

/// A keystore record (`R1` or `R2` of one object).
pub fn keystore_record(data: &[u8]) {
    if let crate::keystore::Stored::Present(s) = crate::keystore::decode(Some(data.to_vec())) {
        assert_eq!(
            crate::keystore::encode(&s).as_slice(),
            data,
            "keystore record round trip"
        );
    }
}

/// A QKD key pool file: its header and the records after it.
pub fn key_pool(data: &[u8]) {
    use crate::qkd::pool::format::{HEADER_LEN, Header, RECORD_LEN, decode_record};
    // Compared by meaning: the decoder ignores the name's padding and the
    // reserved bytes (files of earlier versions may hold anything there).
    if let Ok(h) = Header::decode(data) {
        let back = h.encode().ok().and_then(|e| Header::decode(&e).ok());
        assert_eq!(back, Some(h), "pool header round trip");
    }
    for r in data
        .get(HEADER_LEN..)
        .unwrap_or(&[])
        .chunks_exact(RECORD_LEN)
    {
        let _ = decode_record(r);
    }
}

/// The position file of a random pool (`entropy`).
pub fn pool_state(data: &[u8]) {
    if let Ok(st) = crate::entropy::pool_state::decode(data) {
        let enc = crate::entropy::pool_state::encode(&st);
        assert_eq!(enc.as_slice(), data, "pool position round trip");
    }
}

/// A node's saved audit tree. The file it must match is taken from the
/// input's own fields, so that a well-formed file gets past that check.
pub fn treefile(data: &[u8]) {
    use crate::node::treefile::{Built, decode, encode};
    let le = |o: usize, n: usize| data.get(o..o + n);
    let u64_at = |o: usize| {
        le(o, 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let want = Built {
        block: le(10, 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes),
        file: (
            u64_at(14),
            u64_at(22),
            le(30, 16)
                .and_then(|b| b.try_into().ok())
                .map_or(0, i128::from_le_bytes),
        ),
    };
    if let Some(leaves) = decode(data, &want) {
        assert_eq!(encode(&want, &leaves), data, "audit tree round trip");
    }
}

/// A QKD link frame header.
pub fn link_frame(data: &[u8]) {
    use crate::qkd::link::frame::{FrameHeader, HEADER_LEN};
    let Some(h) = data
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok())
    else {
        return;
    };
    if let Ok(f) = FrameHeader::decode(h) {
        assert_eq!(&f.encode(), h, "frame header round trip");
    }
}

/// A QKD link hello.
pub fn link_hello(data: &[u8]) {
    use crate::qkd::link::hello::Hello;
    if let Ok(h) = Hello::decode(data) {
        // A name that is not UTF-8 decodes lossily, so only a valid one
        // encodes back to the same bytes.
        if data
            .get(28..)
            .is_some_and(|name| std::str::from_utf8(name).is_ok())
        {
            assert_eq!(h.encode(), data, "hello round trip");
        }
        // A lossy name can outgrow the 255 bytes a hello carries (each bad
        // byte becomes a 3-byte U+FFFD), and is cut when encoded again.
        if h.link.len() <= 255 {
            assert_eq!(Hello::decode(&h.encode()).ok(), Some(h), "hello re-decode");
        }
    }
}

/// A node protocol request, as a node server reads it.
pub fn node_request(data: &[u8]) {
    use crate::node::wire::Request;
    if let Ok(r) = Request::decode(data) {
        let enc = r.encode();
        assert_eq!(Request::decode(&enc).ok(), Some(r), "request round trip");
    }
}

/// A node protocol response, as a node client reads it.
pub fn node_response(data: &[u8]) {
    use crate::node::wire::Response;
    if let Ok(r) = Response::decode(data) {
        let enc = r.encode();
        assert_eq!(Response::decode(&enc).ok(), Some(r), "response round trip");
    }
}

/// What an ETSI 014 client reads from a KME: a key container and a status.
pub fn etsi014_client(data: &[u8]) {
    use crate::qkd::etsi014::client::{decode_keys, key_counts};
    if let Ok(keys) = decode_keys(data) {
        for k in &keys {
            assert_eq!(crate::qkd::KeyId::parse(&k.id.to_string()), Some(k.id));
        }
    }
    let _ = key_counts(data, u64::MAX, u64::MAX);
    let _ = key_counts(data, 1, 1);
}

/// An HTTP request as the test KME reads it. The input is
/// `method \n path \n query \n body` (a missing query line means none).
pub fn etsi014_kme(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let method = text(parts.next());
    let path = text(parts.next());
    let query = parts
        .next()
        .map(|q| String::from_utf8_lossy(q).into_owned());
    let body = parts.next().unwrap_or_default();
    let _ = crate::qkd::etsi014::routes::parse(&method, &path, query.as_deref(), body);
}

/// The vault's intent log.
pub fn intents_log(data: &[u8]) {
    if let Ok(open) = crate::vault::intents::in_flight(Cursor::new(data)) {
        // Every object left in flight was named on some `+` line.
        for id in &open {
            let hex = id.to_hex();
            assert!(
                data.windows(hex.len())
                    .any(|w| w.eq_ignore_ascii_case(hex.as_bytes())),
                "{id} is in flight but not in the log"
            );
        }
        let _: Vec<ObjectId> = open.into_iter().collect();
    }
}

/// A file's staging journal, as the mount reads it back after a crash.
pub fn staging_journal(data: &[u8]) {
    let _ = crate::fs::journal::Image::decode(data, Path::new("fuzz.journal"));
}

/// A vault's `qsfs.toml`. What parsed must print back to text that parses
/// to the same configuration.
pub fn vault_config(data: &[u8]) {
    use crate::vault::config::Config;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("qsfs.toml");
    if let Ok(cfg) = Config::parse(text, file) {
        let again = toml::to_string(&cfg)
            .ok()
            .and_then(|t| Config::parse(&t, file).ok());
        assert_eq!(again, Some(cfg), "configuration round trip");
    }
}
