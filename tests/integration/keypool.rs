//! Key pool files: generation, one-time use persisted and wiped on disk,
//! direction rules, refusal of damaged files, refill of simulated links, the
//! CLI, and a frozen file of format 1.
#![allow(clippy::unwrap_used)]

use crate::common;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qsfs::qkd::pool::format::{self, HEADER_LEN, Header, RECORD_LEN};
use qsfs::qkd::pool::{
    GenOptions, PoolError, PoolFile, RefillConfig, Refiller, generate, inspect, reconcile_pair,
    refill_files, refill_pair,
};
use qsfs::qkd::{Direction, End, KeyError, KeyId, KeySource};

/// A deterministic random source: blake3 XOF of a seed, read forward.
fn seeded(seed: &str) -> impl FnMut(&mut [u8]) -> std::io::Result<()> + Send + 'static {
    let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    move |buf: &mut [u8]| {
        xof.fill(buf);
        Ok(())
    }
}

fn gen_pair(dir: &Path, link: &str, keys: u64, refill: bool) -> (PathBuf, PathBuf) {
    let a = dir.join(format!("{link}.A.pool"));
    let b = dir.join(format!("{link}.B.pool"));
    generate(
        &GenOptions {
            link,
            keys,
            a_path: &a,
            b_path: &b,
            refill,
        },
        seeded(link),
    )
    .unwrap();
    (a, b)
}

/// Records of a pool file as (id, key bytes, state, dir).
fn records(path: &Path) -> Vec<(KeyId, [u8; 32], u8, u8)> {
    let bytes = std::fs::read(path).unwrap();
    let h = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    (0..h.count as usize)
        .map(|i| {
            let r = &bytes[HEADER_LEN + i * RECORD_LEN..HEADER_LEN + (i + 1) * RECORD_LEN];
            let mut id = [0u8; 16];
            id.copy_from_slice(&r[..16]);
            let mut key = [0u8; 32];
            key.copy_from_slice(&r[16..48]);
            (KeyId(id), key, r[48], r[49])
        })
        .collect()
}

#[test]
fn generated_pair_is_identical_but_for_the_end() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "node-0", 101, true);
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba.len(), HEADER_LEN + 101 * RECORD_LEN);
    assert_eq!(ba[HEADER_LEN..], bb[HEADER_LEN..], "same key records");
    assert_eq!((ba[10], bb[10]), (b'A', b'B'));
    for p in [&a, &b] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let ra = records(&a);
    // Alternating directions, UUID v4 ids, all distinct, no zero keys.
    for (i, (id, key, state, dir)) in ra.iter().enumerate() {
        assert_eq!(*dir as usize, i % 2);
        assert_eq!(*state, 0);
        assert_eq!(id.0[6] >> 4, 4);
        assert_ne!(key, &[0u8; 32]);
    }
    let ids: std::collections::HashSet<_> = ra.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), 101);
    let s = inspect(&a).unwrap();
    assert_eq!(
        (s.a_to_b.left, s.b_to_a.left, s.end, s.refills),
        (51, 50, 'A', true)
    );
    assert_eq!(s.link, "node-0");
    assert_eq!(s.link_id, inspect(&b).unwrap().link_id);

    // Never overwrites: neither file is touched.
    let err = generate(
        &GenOptions {
            link: "node-0",
            keys: 10,
            a_path: &t.path().join("new.pool"),
            b_path: &b,
            refill: true,
        },
        seeded("x"),
    )
    .unwrap_err();
    assert!(matches!(err, PoolError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("node-0.B.pool"), "{err}");
    assert!(!t.path().join("new.pool").exists());
    assert_eq!(std::fs::read(&b).unwrap(), bb);
}

#[test]
fn keys_are_used_once_and_wiped_in_both_files() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "link-w", 64, true);
    let pa = open_pool(&a);
    let pb = open_pool(&b);
    assert_eq!(pa.end(), End::A);

    let k = pa.next_key(Direction::AToB).unwrap();
    let kb = pb.take_key(Direction::AToB, &k.id).unwrap();
    assert_eq!(*k.key, *kb.key, "both ends hold the same key");
    // Used at once, by either end.
    assert!(matches!(
        pb.take_key(Direction::AToB, &k.id),
        Err(KeyError::Used { .. })
    ));
    // The sender reserved a batch: all of it is used and zero on disk.
    let ra = records(&a);
    let used_a: Vec<_> = ra.iter().filter(|r| r.2 == 1).collect();
    assert_eq!(used_a.len(), qsfs::qkd::pool::DEFAULT_BATCH);
    assert!(used_a.iter().all(|r| r.1 == [0u8; 32] && r.3 == 0));
    let rb = records(&b);
    let used_b: Vec<_> = rb.iter().filter(|r| r.2 == 1).collect();
    assert_eq!(used_b.len(), 1);
    assert_eq!(used_b[0].0, k.id);
    assert_eq!(used_b[0].1, [0u8; 32]);
    // The raw key bytes appear nowhere in either file any more.
    for p in [&a, &b] {
        let bytes = std::fs::read(p).unwrap();
        assert!(!bytes.windows(32).any(|w| w == &k.key[..]));
    }

    // Direction rules: an end sends in its own direction only and takes
    // the other one.
    assert!(matches!(
        pa.next_key(Direction::BToA),
        Err(KeyError::Source { .. })
    ));
    assert!(matches!(
        pa.take_key(Direction::AToB, &k.id),
        Err(KeyError::Source { .. })
    ));
    let kba = pb.next_key(Direction::BToA).unwrap();
    assert_eq!(kba.id, ra[1].0, "B->A keys are the odd records");
    assert!(matches!(
        pa.take_key(Direction::BToA, &ra[2].0),
        Err(KeyError::WrongDirection { .. })
    ));
    assert!(matches!(
        pa.take_key(Direction::BToA, &KeyId([9; 16])),
        Err(KeyError::Unknown { .. })
    ));
    assert_eq!(
        *pa.take_key(Direction::BToA, &kba.id).unwrap().key,
        *kba.key
    );

    // Reopened after a "crash": reserved keys stay used, none is served again.
    let counts = pa.counts().unwrap();
    assert_eq!(counts.used, 16 + 1);
    drop(pa);
    let pa = open_pool(&a);
    assert_eq!(pa.counts().unwrap(), counts);
    let k2 = pa.next_key(Direction::AToB).unwrap();
    assert_eq!(k2.id, ra[32].0, "first key after the wasted batch");
}

#[test]
fn exhaustion_names_the_link_and_counts_and_low_water() {
    let t = tempfile::tempdir().unwrap();
    let (a, _b) = gen_pair(t.path(), "tiny", 20, false);
    let pa = open_pool(&a);
    pa.set_batch(1);
    assert!(!pa.low(0.10));
    for _ in 0..9 {
        pa.next_key(Direction::AToB).unwrap();
    }
    assert!(!pa.low(0.10), "1 of 10 left is not under 10%");
    pa.next_key(Direction::AToB).unwrap();
    assert!(pa.low(0.10));
    let err = pa.next_key(Direction::AToB).unwrap_err();
    assert!(matches!(err, KeyError::Exhausted { .. }));
    let msg = err.to_string();
    assert!(msg.contains("tiny") && msg.contains("A->B"), "{msg}");
    assert!(msg.contains("new key pool pair"), "{msg}");
    let c = pa.counts().unwrap();
    assert_eq!((c.left, c.used, c.total), (10, 10, 20));
}

#[test]
fn damaged_files_are_refused_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "dmg", 10, true);
    let mut bytes = std::fs::read(&a).unwrap();
    bytes[30] ^= 0x20; // in the link name
    std::fs::write(&a, &bytes).unwrap();
    let err = PoolFile::open(&a).unwrap_err();
    assert!(matches!(err, PoolError::Header { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("dmg.A.pool") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(inspect(&a).is_err());

    // Cut short: the header counts more keys than the file holds.
    let len = std::fs::metadata(&b).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let msg = PoolFile::open(&b).unwrap_err().to_string();
    assert!(
        msg.contains("dmg.B.pool") && msg.contains("cut short"),
        "{msg}"
    );

    // Not a pool at all.
    let other = t.path().join("other");
    std::fs::write(&other, b"hello").unwrap();
    let msg = PoolFile::open(&other).unwrap_err().to_string();
    assert!(msg.contains("not a qsfs key pool"), "{msg}");
}

#[test]
fn one_process_per_pool_file() {
    let t = tempfile::tempdir().unwrap();
    let (a, _b) = gen_pair(t.path(), "lock", 10, true);
    let _pa = open_pool(&a);
    let err = PoolFile::open(&a).unwrap_err();
    assert!(matches!(err, PoolError::InUse { .. }), "{err}");
    // Status reads without the lock.
    assert_eq!(inspect(&a).unwrap().a_to_b.left, 5);
}

#[test]
fn concurrent_senders_never_share_a_key() {
    let t = tempfile::tempdir().unwrap();
    let (a, _b) = gen_pair(t.path(), "conc", 2000, true);
    let pa = Arc::new(open_pool(&a));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = Arc::clone(&pa);
            std::thread::spawn(move || {
                (0..200)
                    .map(|_| p.next_key(Direction::AToB).unwrap().id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = std::collections::HashSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert!(all.insert(id), "key {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 800);
}

#[test]
fn refill_appends_identical_keys_to_both_ends() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "sim", 4, true);
    let pa = open_pool(&a);
    let pb = open_pool(&b);
    pa.set_batch(1);
    pa.next_key(Direction::AToB).unwrap();
    pa.next_key(Direction::AToB).unwrap();
    assert!(matches!(
        pa.next_key(Direction::AToB),
        Err(KeyError::Exhausted { .. })
    ));
    let mut random = seeded("refill");
    assert_eq!(refill_pair(&pa, &pb, 6, &mut random).unwrap(), 10);
    let k = pa.next_key(Direction::AToB).unwrap();
    assert_eq!(*pb.take_key(Direction::AToB, &k.id).unwrap().key, *k.key);
    assert_eq!(pb.counts().unwrap().total, 10);
    drop((pa, pb));
    let (ra, rb) = (records(&a), records(&b));
    assert_eq!(ra.len(), 10);
    for i in 0..10 {
        assert_eq!(ra[i].0, rb[i].0);
        assert_eq!(ra[i].3 as usize, i % 2);
    }

    // Path form, and refusal of pools from QKD equipment.
    assert_eq!(refill_files(&a, &b, 2, &mut random).unwrap(), 12);
    let (qa, qb) = gen_pair(t.path(), "real", 4, false);
    let err = refill_files(&qa, &qb, 2, &mut random).unwrap_err();
    assert!(matches!(err, PoolError::NotRefillable { .. }), "{err}");
    assert!(
        Refiller::start(
            Arc::new(open_pool(&qa)),
            Arc::new(open_pool(&qb)),
            RefillConfig::new(100),
            seeded("r"),
        )
        .is_err()
    );
    // Files of two different links are not a pair.
    let (oa, _ob) = gen_pair(t.path(), "other", 4, true);
    let err = refill_files(&oa, &b, 2, &mut random).unwrap_err();
    assert!(matches!(err, PoolError::NotAPair { .. }), "{err}");
}

#[test]
fn a_crash_between_count_updates_is_reconciled() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "crash", 4, true);
    refill_files(&a, &b, 6, &mut seeded("c")).unwrap();
    // Simulate the crash: B's count never reached 10.
    let mut bytes = std::fs::read(&b).unwrap();
    let mut h = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    h.count = 4;
    bytes[..HEADER_LEN].copy_from_slice(&h.encode().unwrap());
    std::fs::write(&b, &bytes).unwrap();
    let pa = open_pool(&a);
    let pb = open_pool(&b);
    assert_eq!(pb.counts().unwrap().total, 4);
    reconcile_pair(&pa, &pb).unwrap();
    assert_eq!(pb.counts().unwrap().total, 10);
    assert_eq!(inspect(&b).unwrap().b_to_a.total, 5);
    // Uncounted bytes after the last record (an append that never got
    // its count) are ignored and overwritten by the next append.
    let mut random = seeded("d");
    drop((pa, pb));
    let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    std::io::Write::write_all(&mut f, &[0xEE; 75]).unwrap();
    drop(f);
    let pa = open_pool(&a);
    let pb = open_pool(&b);
    refill_pair(&pa, &pb, 2, &mut random).unwrap();
    drop((pa, pb));
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        format::record_offset(12)
    );
    assert_eq!(records(&a).len(), 12);
}

#[test]
fn refiller_tops_up_at_its_rate_up_to_the_cap() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "rate", 10, true);
    let pa = Arc::new(open_pool(&a));
    let pb = Arc::new(open_pool(&b));
    // 256 kbit/s = 1000 keys/s, capped at 200 unused keys.
    let cfg = RefillConfig {
        key_rate_bps: 256_000.0,
        max_left: 200,
        tick: Duration::from_millis(20),
    };
    let t0 = std::time::Instant::now();
    let r = Refiller::start(Arc::clone(&pa), Arc::clone(&pb), cfg, seeded("bg")).unwrap();
    // Never faster than its rate (checked at every count seen), and it
    // reaches the cap. Waits are bounded polls: a loaded machine with a
    // slow disk only makes it later, which the rate bound allows.
    let deadline = Duration::from_secs(30);
    loop {
        let total = pa.counts().unwrap().total;
        let allowed = (t0.elapsed().as_secs_f64() * 1000.0).ceil() as u64 + 1;
        assert!(
            total - 10 <= allowed,
            "{} keys added in {:?}",
            total - 10,
            t0.elapsed()
        );
        if total == 200 {
            break;
        }
        assert!(
            t0.elapsed() < deadline,
            "only {total} keys after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Capped: it stays at 200 while running.
    std::thread::sleep(Duration::from_millis(100));
    let stats = r.stop();
    let c = pa.counts().unwrap();
    assert_eq!(c.total, 200, "capped: {stats:?}");
    assert_eq!(stats.keys_added, 190);
    assert_eq!(pb.counts().unwrap().total, 200);
    // Stopped: nothing more arrives.
    pa.set_batch(1);
    for _ in 0..50 {
        pa.next_key(Direction::AToB).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pa.counts().unwrap().total, 200);
}

/// A file written by format 1 today must open tomorrow: the fixture was
/// made by `generate` with the seeded source below and must still match
/// byte for byte and serve the same key.
#[test]
fn frozen_pool_file_of_format_1() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keypool");
    let t = tempfile::tempdir().unwrap();
    let (a, b) = gen_pair(t.path(), "frozen", 8, true);
    if std::env::var_os("QSFS_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&fixture).unwrap();
        std::fs::copy(&a, fixture.join("frozen.A.pool")).unwrap();
        std::fs::copy(&b, fixture.join("frozen.B.pool")).unwrap();
    }
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(fixture.join("frozen.A.pool")).unwrap(),
        "format 1 output changed"
    );
    let copy = t.path().join("copy.B.pool");
    std::fs::copy(fixture.join("frozen.B.pool"), &copy).unwrap();
    let pb = open_pool(&copy);
    assert_eq!(KeySource::link(&pb), "frozen");
    let k = pb.next_key(Direction::BToA).unwrap();
    assert_eq!(
        k.id.to_string(),
        records(&fixture.join("frozen.A.pool"))[1].0.to_string()
    );
}

/// Opens a pool file, waiting out a lock held for a moment by a process
/// another test thread is starting: between its fork and its exec, the
/// child holds a copy of every descriptor, and with it our flock.
fn open_pool(path: &std::path::Path) -> PoolFile {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match PoolFile::open(path) {
            Err(PoolError::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.unwrap(),
        }
    }
}

#[test]
fn cli_gen_and_status() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("n.A.pool");
    let b = t.path().join("n.B.pool");
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = common::qsfs_output(&[
        "keypool",
        "gen",
        "--link",
        "node-7",
        "--keys",
        "100",
        "--out",
        sa,
        "--peer-out",
        sb,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::qsfs_output(&["keypool", "status", sb]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node-7"), "{text}");
    assert!(text.contains("end       B"), "{text}");
    assert!(text.contains("A->B      50 left, 0 used of 50"), "{text}");
    assert!(text.contains("refills   yes"), "{text}");
    assert!(out.stderr.is_empty());

    // Overwrite refused, naming the file.
    let out = common::qsfs_output(&[
        "keypool",
        "gen",
        "--link",
        "x",
        "--keys",
        "10",
        "--out",
        sa,
        "--peer-out",
        t.path().join("z").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n.A.pool") && err.contains("already exists"),
        "{err}"
    );

    // Use most of A->B, then status warns and --json says low.
    {
        let p = open_pool(&a);
        p.set_batch(1);
        for _ in 0..46 {
            p.next_key(Direction::AToB).unwrap();
        }
    }
    let out = common::qsfs_output(&["keypool", "status", sa, "--json"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["a_to_b"]["left"], 4);
    assert_eq!(j["used"], 46);
    assert_eq!(j["low"], true);
    assert_eq!(j["refills"], true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("low") && err.contains("node-7"), "{err}");

    // --no-refill marks a pool from QKD equipment.
    let c = t.path().join("c.pool");
    let d = t.path().join("d.pool");
    let out = common::qsfs_output(&[
        "keypool",
        "gen",
        "--link",
        "real",
        "--keys",
        "10",
        "--out",
        c.to_str().unwrap(),
        "--peer-out",
        d.to_str().unwrap(),
        "--no-refill",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(
        &common::qsfs_output(&["keypool", "status", d.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(text.contains("refills   no"), "{text}");
}
