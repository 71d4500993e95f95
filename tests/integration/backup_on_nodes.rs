//! A vault made with `--backup-records nodes` keeps each file's backup
//! record B off the client: a 3-of-5 Shamir piece of it ends every shard.
//! The tests play the thief of the client and a coalition of two nodes,
//! and check that the pieces do their job (a lost R1, a lost node).

use std::path::PathBuf;

use serde_json::Value;

use crate::common::{self, Rng, TestVault};
use crate::custody::{hex_decode, key_records, needles, scan};
use crate::key_faults::{edit_store, record_key};

/// Length of a key piece: x, then one byte per byte of B (105).
const PIECE: usize = 106;

struct Fixture {
    v: TestVault,
    nodes: Vec<PathBuf>,
    files: Vec<(String, Vec<u8>)>,
}

fn fixture(test: &str) -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-bnodes-")
        .tempdir()
        .unwrap();
    let nodes: Vec<PathBuf> = (0..5)
        .map(|i| tmp.path().join(format!("node{i}")))
        .collect();
    let list = nodes
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let v = TestVault::new_in(
        tmp,
        &[
            "--nodes",
            &list,
            "--backup-records",
            "nodes",
            "--max-chunk",
            "16384",
        ],
    );
    let mut rng = Rng::from_env(test);
    // Inline seals (small), and a streamed one (over 256 KiB).
    let files = common::sample_files(
        &mut rng,
        &[
            ("/small.txt", 3000),
            ("/mid.bin", 200_000),
            ("/big.bin", 700_001),
        ],
    );
    for (p, data) in &files {
        v.put_bytes(data, p).success();
    }
    Fixture { v, nodes, files }
}

/// The B bytes of `vpath`'s object, as `keys show` rebuilds them.
fn b_of(v: &TestVault, vpath: &str) -> Vec<u8> {
    let r = key_records(v, vpath, &[]);
    hex_decode(r[0]["b"].as_str().expect("B rebuilt from the nodes"))
}

#[test]
fn b_on_the_nodes_is_on_no_client_byte_and_no_two_nodes_rebuild_it() {
    let f = fixture("b on nodes: theft");
    let v = &f.v;
    let st = v.status();
    assert_eq!(st["backup_records"], "nodes", "{st:#}");

    let mut records = Vec::new();
    for (p, _) in &f.files {
        records.extend(key_records(v, p, &[]));
    }
    let b_needles: Vec<_> = needles(&records)
        .into_iter()
        .filter(|(name, _)| name.ends_with(" b"))
        .collect();
    assert_eq!(b_needles.len(), 6);
    // The client: every byte of the vault folder (the nodes are elsewhere).
    let hits = scan(&[&v.root], &b_needles);
    assert!(hits.is_empty(), "B in the vault folder: {hits:?}");
    // No node holds B in clear either.
    let node_dirs: Vec<&std::path::Path> = f.nodes.iter().map(PathBuf::as_path).collect();
    let hits = scan(&node_dirs, &b_needles);
    assert!(hits.is_empty(), "B in clear on a node: {hits:?}");

    // Two colluding nodes (k - 1) put their pieces together: not B. Three
    // (k) do rebuild it, which shows the pieces are where the test looks.
    let obj = v.object_of("/big.bin");
    let b = b_of(v, "/big.bin");
    let shards = v.shards_of(&obj);
    assert_eq!(shards.len(), 5);
    let pieces: Vec<Vec<u8>> = shards
        .iter()
        .map(|s| {
            let data = std::fs::read(&s.path).unwrap();
            data[data.len() - PIECE..].to_vec()
        })
        .collect();
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!(usize::from(p[0]), i + 1, "piece of shard {i}");
    }
    let refs: Vec<&[u8]> = pieces.iter().map(|p| &p[..]).collect();
    for pair in [[0, 1], [1, 4], [2, 3]] {
        let two = [refs[pair[0]], refs[pair[1]]];
        let guess = qsfs::envelope::pieces::combine(&two, 2).unwrap();
        assert_ne!(&guess[..], &b[..], "nodes {pair:?} rebuilt B");
        assert!(qsfs::envelope::pieces::combine(&two, 3).is_err());
    }
    let three = [refs[4], refs[0], refs[2]];
    assert_eq!(
        &qsfs::envelope::pieces::combine(&three, 3).unwrap()[..],
        &b[..]
    );

    // The client alone (every node away): R1 and R2 open, B does not.
    let away: Vec<PathBuf> = f.nodes.iter().map(|n| n.with_extension("away")).collect();
    for (n, a) in f.nodes.iter().zip(&away) {
        std::fs::rename(n, a).unwrap();
    }
    let r = key_records(v, "/big.bin", &[]);
    assert!(r[0]["r1"].is_string() && r[0]["r2"].is_string(), "{r:?}");
    assert_eq!(
        r[0]["b"],
        Value::Null,
        "B came from the client alone: {r:?}"
    );
    for (n, a) in f.nodes.iter().zip(&away) {
        std::fs::rename(a, n).unwrap();
    }
    for (p, data) in &f.files {
        v.assert_reads(p, data);
    }
}

#[test]
fn a_lost_r1_opens_with_b_from_the_nodes_and_a_lost_node_gets_its_pieces_back() {
    let f = fixture("b on nodes: faults");
    let v = &f.v;
    let obj = v.object_of("/big.bin");
    let big = &f.files[2].1;

    // R1 gone from the keystore: R2, R3 and B (from any 3 nodes) open it.
    edit_store(&v.root.join("keys"), |db| {
        db.remove(record_key(b'1', &obj)).unwrap();
    });
    // With two nodes away, the three left still give B.
    let away: Vec<(PathBuf, PathBuf)> = f.nodes[3..]
        .iter()
        .map(|n| (n.clone(), n.with_extension("away")))
        .collect();
    for (n, a) in &away {
        std::fs::rename(n, a).unwrap();
    }
    let r = v.assert_reads("/big.bin", big);
    r.stderr_has(&["R1 is missing"]);
    for (n, a) in &away {
        std::fs::rename(a, n).unwrap();
    }
    let (r, report) = v.keys_repair();
    r.success();
    assert_eq!(report["problems"][0]["repaired"], true, "{report:#}");
    let r = v.assert_reads("/big.bin", big);
    assert!(!r.stderr.contains("R1"), "{}", r.stderr);

    // A node loses every shard: scrub --repair writes them back byte for
    // byte, key pieces included (regenerated from the other nodes).
    let node = &f.nodes[1];
    let before: Vec<(PathBuf, Vec<u8>)> = common::shards_in("n1", node)
        .into_iter()
        .map(|s| {
            let data = std::fs::read(&s.path).unwrap();
            (s.path, data)
        })
        .collect();
    assert_eq!(before.len(), 3);
    for (p, _) in &before {
        std::fs::remove_file(p).unwrap();
    }
    v.run("scrub", &["--repair"]).success();
    for (p, data) in &before {
        let now = std::fs::read(p).unwrap_or_default();
        assert!(now == *data, "{} came back different", p.display());
    }
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    // B still rebuilds from the repaired node and two others.
    for n in [&f.nodes[0], &f.nodes[2]] {
        std::fs::rename(n, n.with_extension("away")).unwrap();
    }
    let r = key_records(v, "/big.bin", &[]);
    assert!(r[0]["b"].is_string(), "{r:?}");
}

#[test]
fn node_servers_carry_the_pieces_and_a_killed_one_still_leaves_b() {
    let mut rng = Rng::from_env("b on node servers");
    let v = TestVault::new(&["--backup-records", "nodes", "--max-chunk", "16384"]);
    let mut srv = crate::remote_nodes::servers(&v, "srv", 5);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    crate::remote_nodes::use_remote_nodes(&v, &addrs, &[]);
    let small = rng.bytes(5000);
    let big = rng.bytes(600_000);
    v.put_bytes(&small, "/small").success();
    v.put_bytes(&big, "/big").success();
    let b = b_of(&v, "/big");
    assert_eq!(b.len(), PIECE - 1);
    // Every server's shard files end with their piece.
    let obj = v.object_of("/big");
    for (i, s) in srv.iter().enumerate() {
        let files = common::shards_in(&format!("node-{i}"), &s.dir);
        let f = files.iter().find(|f| f.object == obj).unwrap();
        let data = std::fs::read(&f.path).unwrap();
        assert_eq!(
            usize::from(data[data.len() - PIECE]),
            usize::from(f.index) + 1
        );
    }
    // R1 gone and two servers killed: R2, R3 and B from the three left.
    edit_store(&v.root.join("keys"), |db| {
        db.remove(record_key(b'1', &obj)).unwrap();
    });
    srv[0].kill();
    srv[3].kill();
    v.assert_reads("/big", &big).stderr_has(&["R1 is missing"]);
    v.assert_reads("/small", &small);
}

/// XORs `flip` into the byte `back` bytes before the end of `obj`'s shard
/// on node `n` (inside its key piece, after the hashed chunks); returns
/// the shard file and its bytes before.
fn damage_piece(f: &Fixture, n: usize, obj: &str, back: usize, flip: u8) -> (PathBuf, Vec<u8>) {
    let shard = common::shards_in(&format!("n{n}"), &f.nodes[n])
        .into_iter()
        .find(|s| s.object == obj)
        .unwrap_or_else(|| panic!("no shard of {obj} on node {n}"));
    let good = std::fs::read(&shard.path).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - back;
    bad[at] ^= flip;
    std::fs::write(&shard.path, &bad).unwrap();
    (shard.path, good)
}

#[test]
fn scrub_finds_a_damaged_key_piece_and_repair_regenerates_it() {
    let f = fixture("b on nodes: damaged piece");
    let v = &f.v;
    let obj = v.object_of("/mid.bin");
    let b = b_of(v, "/mid.bin");
    // The piece ends the shard file, after the hashed chunks: flip a byte
    // of it on node 2.
    let (path, good) = damage_piece(&f, 2, &obj, PIECE / 2, 0x40);

    let r = v.run("scrub", &["--json"]);
    let report: Value = serde_json::from_slice(&r.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let hit: Vec<&Value> = findings
        .iter()
        .filter(|f| f["object"] == obj.as_str())
        .collect();
    assert_eq!(hit.len(), 1, "{report:#}");
    assert_eq!(hit[0]["kind"], "corrupt", "{report:#}");
    assert_eq!(hit[0]["node"], "node-2", "{report:#}");
    assert!(
        hit[0]["detail"].as_str().unwrap().contains("key piece"),
        "{report:#}"
    );
    assert_ne!(r.code, Some(0), "scrub with damage must not exit 0");

    v.run("scrub", &["--repair"]).success();
    assert!(
        std::fs::read(&path).unwrap() == good,
        "the shard came back different"
    );
    let r = v.run("scrub", &["--json"]);
    r.success();
    let report: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
    assert_eq!(b_of(v, "/mid.bin"), b);
    v.assert_reads("/mid.bin", &f.files[1].1);
}

#[test]
fn two_damaged_key_pieces_are_told_apart_by_the_keystore_and_repaired() {
    let f = fixture("b on nodes: two damaged pieces");
    let v = &f.v;
    let obj = v.object_of("/mid.bin");
    let b = b_of(v, "/mid.bin");
    // Two of five pieces damaged: any 3 pieces define a polynomial, so the
    // pieces alone cannot tell which two are bad.
    let mut damaged = Vec::new();
    // (Different changes: the same change to two pieces can cancel out
    // in GF(256), which is reported as undecidable instead.)
    for (n, back, flip) in [(0usize, 4usize, 0x11u8), (1, 9, 0x5a)] {
        damaged.push(damage_piece(&f, n, &obj, back, flip));
    }
    // keys verify blames B, never a share that is fine.
    let (_, report) = v.keys_verify();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(
        problems[0]["issues"],
        serde_json::json!(["backup-corrupt"]),
        "{report:#}"
    );
    // Scrub asks the keystore which pieces are bad, and names both.
    let r = v.run("scrub", &["--json"]);
    let report: Value = serde_json::from_slice(&r.stdout).unwrap();
    let mut nodes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["object"] == obj.as_str())
        .map(|f| f["node"].as_str().unwrap())
        .collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["node-0", "node-1"], "{report:#}");
    v.run("scrub", &["--repair"]).success();
    for (p, good) in &damaged {
        assert!(
            std::fs::read(p).unwrap() == *good,
            "{} came back different",
            p.display()
        );
    }
    v.run("scrub", &[]).success();
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    assert_eq!(b_of(v, "/mid.bin"), b);
}
