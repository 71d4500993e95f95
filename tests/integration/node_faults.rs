//! Node faults, with real node folders and real qsfs processes.
//!
//! Reads: up to `n - k` nodes deleted, emptied, or with every shard
//! truncated or bit-flipped, and every file still reads back identical;
//! one fault more and the read fails with an error naming the file and
//! the bad shards, creates no output, and leaves other files alone. The
//! damage found is recorded as repair debt (`qsfs status`).
//!
//! Writes: a node whose disk is full (a small tmpfs), that is read-only
//! (read-only bind mount, read-only tmpfs, `chattr +i`) or whose folder is
//! missing. At or above the write quorum the put succeeds and the debt is
//! recorded; below it the put fails naming the nodes and the previous
//! version of the file is untouched.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;

/// The files every read-fault vault holds: an empty file, one byte, one
/// KiB, ~200 KB and ~3 MB (many stripes with `--max-chunk 4096`).
const SAMPLE_FILES: &[(&str, usize)] = &[
    ("/empty", 0),
    ("/one", 1),
    ("/dir/kib", 1024),
    ("/dir/mid.bin", 200_003),
    ("/big file.bin", 3_000_017),
];

struct Fixture {
    v: TestVault,
    files: Vec<(String, Vec<u8>)>,
    /// vault path -> object id (non-empty files only).
    objects: BTreeMap<String, String>,
}

fn fixture(k: usize, n: usize, rng: &mut Rng) -> Fixture {
    let v = TestVault::new(&[
        "--k",
        &k.to_string(),
        "--n",
        &n.to_string(),
        "--max-chunk",
        "4096",
    ]);
    v.run("mkdir", &["/dir"]).success();
    let files = sample_files(rng, SAMPLE_FILES);
    let mut objects = BTreeMap::new();
    for (p, data) in &files {
        v.put_bytes(data, p).success().quiet();
        if !data.is_empty() {
            objects.insert(p.clone(), v.object_of(p));
        }
    }
    // Every object has one shard on each of the n nodes.
    for obj in objects.values() {
        let shards = v.shards_of(obj);
        assert_eq!(shards.len(), n, "object {obj} should have {n} shards");
        let nodes: BTreeSet<&str> = shards.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes.len(), n, "shards of {obj} must sit on distinct nodes");
    }
    Fixture { v, files, objects }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeFault {
    /// The node folder is removed.
    Delete,
    /// The node folder exists but everything in it is gone.
    Empty,
    /// Every shard file on the node is cut short.
    Truncate,
    /// One bit of every shard's payload is flipped.
    Flip,
}

const NODE_FAULTS: [NodeFault; 4] = [
    NodeFault::Delete,
    NodeFault::Empty,
    NodeFault::Truncate,
    NodeFault::Flip,
];

/// Applies `fault` to node folder `dir` (named `name`).
fn apply_node_fault(name: &str, dir: &Path, fault: NodeFault, rng: &mut Rng) {
    match fault {
        NodeFault::Delete => std::fs::remove_dir_all(dir).unwrap(),
        NodeFault::Empty => {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .unwrap();
            }
        }
        NodeFault::Truncate => {
            // Cut anywhere, the header included; the last stripe is always lost.
            for s in shards_in(name, dir) {
                let len = std::fs::metadata(&s.path).unwrap().len();
                truncate(&s.path, rng.below(len));
            }
        }
        NodeFault::Flip => {
            // One bit anywhere in the payload, and one in the last stripe
            // (so that every kind of fault hits the last stripe and one
            // fault more than n - k leaves it below k good chunks).
            for s in shards_in(name, dir) {
                let (chunk, stripes) = s.geometry();
                let len = std::fs::metadata(&s.path).unwrap().len();
                let last = (
                    64 + (stripes - 1) * chunk + rng.below(chunk),
                    rng.below(8) as u8,
                );
                let mut any = (64 + rng.below(len - 64), rng.below(8) as u8);
                if any == last {
                    any.1 = (any.1 + 1) % 8; // two flips of one bit would cancel out
                }
                flip_bit(&s.path, last.0, last.1);
                flip_bit(&s.path, any.0, any.1);
            }
        }
    }
}

/// (object, shard index) -> node name, read from the node folders.
fn placement(v: &TestVault) -> BTreeMap<(String, u8), String> {
    v.shards()
        .into_iter()
        .map(|s| ((s.object, s.index), s.node))
        .collect()
}

/// Up to n-k node faults, then one more: the whole story for one (k, n).
fn node_faults_then_one_more(k: usize, n: usize) {
    let mut rng = Rng::from_env(&format!("node_faults_{k}_of_{n}"));
    let Fixture { v, files, objects } = fixture(k, n, &mut rng);
    let place = placement(&v);
    let nodes = v.nodes();

    // n - k faulty nodes, every kind of fault used.
    let picked = rng.choose(n, n - k + 1);
    let (first, extra) = picked.split_at(n - k);
    let start = rng.index(NODE_FAULTS.len());
    let mut faulty: BTreeMap<String, NodeFault> = BTreeMap::new();
    for (j, &i) in first.iter().enumerate() {
        let fault = NODE_FAULTS[(start + j) % NODE_FAULTS.len()];
        apply_node_fault(&nodes[i].0, &nodes[i].1, fault, &mut rng);
        faulty.insert(nodes[i].0.clone(), fault);
    }
    eprintln!("({k},{n}): faults {faulty:?}");

    let mut reported = BTreeSet::new();
    for (p, data) in &files {
        let r = v.assert_reads(p, data);
        let bad = bad_shard_warnings(&r.stderr);
        for (obj, idx, node) in &bad {
            assert!(
                faulty.contains_key(node),
                "{p}: shard {idx} of {obj} on healthy {node} reported bad:\n{}",
                r.stderr
            );
            assert_eq!(
                place[&(obj.clone(), *idx)],
                *node,
                "{p}: warning names the wrong node"
            );
            assert_eq!(
                Some(obj),
                objects.get(p),
                "{p}: warning names another object"
            );
        }
        // Data shards are always read, so a damaged one is always found.
        if let Some(obj) = objects.get(p) {
            for idx in 0..k as u8 {
                if faulty.contains_key(&place[&(obj.clone(), idx)]) {
                    assert!(
                        bad.iter().any(|(o, i, _)| o == obj && *i == idx),
                        "{p}: damaged data shard {idx} was not reported:\n{}",
                        r.stderr
                    );
                }
            }
        }
        reported.extend(bad);
    }
    // Random placement may keep every data shard off the faulty nodes
    // (likely with (1,2) and few files); then nothing needs reporting.
    let data_shard_hit = objects
        .values()
        .any(|obj| (0..k as u8).any(|idx| faulty.contains_key(&place[&(obj.clone(), idx)])));
    assert!(
        !data_shard_hit || !reported.is_empty(),
        "faulty data shards but no shard reported bad"
    );
    let st = v.status();
    let degraded: BTreeSet<&String> = reported.iter().map(|(o, _, _)| o).collect();
    assert_eq!(
        st["degraded_objects"].as_u64().unwrap(),
        degraded.len() as u64,
        "status: {st:#}"
    );
    assert_eq!(
        st["missing_shards"].as_u64().unwrap(),
        reported.len() as u64,
        "status: {st:#}"
    );
    // A second read of everything still works and finds nothing new
    // (shards recorded as missing are skipped).
    for (p, data) in &files {
        v.assert_reads(p, data);
    }

    // One fault more than n - k: a whole node deleted.
    let last = &nodes[extra[0]];
    std::fs::remove_dir_all(&last.1).unwrap();
    faulty.insert(last.0.clone(), NodeFault::Delete);
    for (p, data) in &files {
        let (r, out) = v.get_bytes(p);
        if data.is_empty() {
            // An empty file has no object: nothing to lose.
            r.success();
            assert_eq!(out.as_deref(), Some(&[][..]));
            continue;
        }
        r.failure();
        assert!(out.is_none(), "{p}: a failed read left an output file");
        let obj = &objects[p];
        let err = r
            .stderr
            .lines()
            .find(|l| l.starts_with("qsfs: error:"))
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("cannot read {p}")),
            "error does not name {p}: {err}"
        );
        assert!(
            err.contains(obj.as_str()),
            "error does not name object {obj}: {err}"
        );
        assert!(
            err.contains(&format!("only {} of the {k} verified chunks", k - 1)),
            "{err}"
        );
        // Every shard on a faulty node is named, with its node.
        for ((o, idx), node) in &place {
            if o == obj && faulty.contains_key(node) {
                assert!(
                    err.contains(&format!("shard {idx} on {node}")),
                    "{p}: error does not name shard {idx} on {node}: {err}"
                );
            }
        }
    }
}

#[test]
fn node_faults_3_of_5() {
    node_faults_then_one_more(3, 5);
}

#[test]
fn node_faults_2_of_3() {
    node_faults_then_one_more(2, 3);
}

#[test]
fn node_faults_4_of_6() {
    node_faults_then_one_more(4, 6);
}

#[test]
fn node_faults_10_of_14() {
    node_faults_then_one_more(10, 14);
}

#[test]
fn node_faults_1_of_2() {
    node_faults_then_one_more(1, 2);
}

#[derive(Debug, Clone, Copy)]
enum ShardFault {
    Remove,
    /// Last byte cut off: the last stripe's chunk is short.
    CutLastByte,
    /// Only the header is left.
    HeaderOnly,
    /// A bit flipped in the chunk of the last stripe.
    FlipLastChunk,
}

/// n - k + 1 shards of one file damaged, all in its last stripe: that file
/// fails with a precise error (twice: also once the damage is recorded as
/// debt), the others are untouched and read back.
fn one_file_past_the_limit(k: usize, n: usize) {
    let mut rng = Rng::from_env(&format!("one_file_past_the_limit_{k}_of_{n}"));
    let Fixture { v, files, objects } = fixture(k, n, &mut rng);
    let victim = if rng.below(2) == 0 {
        "/dir/mid.bin"
    } else {
        "/big file.bin"
    };
    let obj = &objects[victim];
    let shards = v.shards_of(obj);
    let kinds = [
        ShardFault::Remove,
        ShardFault::CutLastByte,
        ShardFault::HeaderOnly,
        ShardFault::FlipLastChunk,
    ];
    let start = rng.index(kinds.len());
    let mut damaged = Vec::new();
    for (j, idx) in rng.choose(n, n - k + 1).into_iter().enumerate() {
        let s = &shards[idx];
        let (chunk, stripes) = s.geometry();
        let len = std::fs::metadata(&s.path).unwrap().len();
        assert_eq!(len, 64 + chunk * stripes);
        let kind = kinds[(start + j) % kinds.len()];
        match kind {
            ShardFault::Remove => std::fs::remove_file(&s.path).unwrap(),
            ShardFault::CutLastByte => truncate(&s.path, len - 1),
            ShardFault::HeaderOnly => truncate(&s.path, 64),
            ShardFault::FlipLastChunk => flip_bit(
                &s.path,
                64 + (stripes - 1) * chunk + rng.below(chunk),
                rng.below(8) as u8,
            ),
        }
        damaged.push((s.index, s.node.clone(), kind));
    }
    eprintln!("({k},{n}) {victim}: damaged {damaged:?}");

    let before = snapshot(&v.scratch);
    for attempt in 0..2 {
        let (r, out) = v.get_bytes(victim);
        r.failure();
        assert!(
            out.is_none(),
            "attempt {attempt}: a failed read left an output file"
        );
        let err = r
            .stderr
            .lines()
            .find(|l| l.starts_with("qsfs: error:"))
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("cannot read {victim} (object {obj})")),
            "attempt {attempt}: {err}"
        );
        for (idx, node, _) in &damaged {
            assert!(
                err.contains(&format!("shard {idx} on {node}")),
                "attempt {attempt}: error does not name damaged shard {idx} on {node}: {err}"
            );
        }
        // Nothing but the error: no temp files left in the target folder.
        assert_same_tree(
            &before,
            &snapshot(&v.scratch),
            "scratch folder after a failed get",
        );
    }
    // Same through stdout: nothing is written.
    let r = v.run("get", &[victim, "-"]);
    r.failure();
    assert!(
        r.stdout.is_empty(),
        "a failed get to stdout wrote {} bytes",
        r.stdout.len()
    );

    for (p, data) in &files {
        if p != victim {
            v.assert_reads(p, data).quiet();
        }
    }
    let st = v.status();
    assert_eq!(st["degraded_objects"].as_u64().unwrap(), 1, "{st:#}");
    assert_eq!(
        st["missing_shards"].as_u64().unwrap(),
        (n - k + 1) as u64,
        "{st:#}"
    );
}

#[test]
fn one_file_past_the_limit_3_of_5() {
    one_file_past_the_limit(3, 5);
}

#[test]
fn one_file_past_the_limit_2_of_3() {
    one_file_past_the_limit(2, 3);
}

#[test]
fn one_file_past_the_limit_4_of_6() {
    one_file_past_the_limit(4, 6);
}

#[test]
fn one_file_past_the_limit_10_of_14() {
    one_file_past_the_limit(10, 14);
}

// ------------------------------------------------------------ write faults

/// Shard files outside the given nodes, for "nothing new was written".
fn shard_set(v: &TestVault) -> BTreeSet<PathBuf> {
    v.shards().into_iter().map(|s| s.path).collect()
}

/// A put below the write quorum: fails naming every failed node and the
/// path, leaves the previous version readable and no new shard behind.
#[track_caller]
fn assert_put_below_quorum(
    v: &TestVault,
    data: &[u8],
    vpath: &str,
    old: &[u8],
    bad_nodes: &[(&str, &str)],
) {
    let shards_before = shard_set(v);
    let ns_before = v.run("ls", &["/", "-l"]).out();
    let r = v.put_bytes(data, vpath);
    r.failure();
    let err = r
        .stderr
        .lines()
        .find(|l| l.starts_with("qsfs: error:"))
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("cannot store {vpath}")), "{err}");
    assert!(
        err.contains(&format!("write quorum {}", v.status()["write_quorum"])),
        "{err}"
    );
    assert!(err.contains("the vault was not changed"), "{err}");
    for (node, why) in bad_nodes {
        assert!(
            err.contains(&format!("{node}: write shard")),
            "error does not name {node}: {err}"
        );
        assert!(
            err.contains(why),
            "error does not say {why:?} for {node}: {err}"
        );
    }
    assert_eq!(
        shard_set(v),
        shards_before,
        "a failed put left shards behind"
    );
    assert!(
        v.temp_shards().is_empty(),
        "temp shards left: {:?}",
        v.temp_shards()
    );
    assert_eq!(
        v.run("ls", &["/", "-l"]).out(),
        ns_before,
        "a failed put changed the namespace"
    );
    v.assert_reads(vpath, old);
}

#[test]
fn write_to_a_full_node() {
    if skip_unless_root("write_to_a_full_node") {
        return;
    }
    let _g = priv_lock();
    let mut rng = Rng::from_env("write_to_a_full_node");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let dirs: Vec<PathBuf> = (0..5)
        .map(|i| tmp.path().join(format!("disk{i}")))
        .collect();
    // node-3 is a small disk from the start.
    let full3 = Mounted::tmpfs(&dirs[3], "256k");
    let list = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let v = TestVault::new_in(tmp, &["--nodes", &list, "--max-chunk", "65536"]);
    v.keep(full3);
    assert!(
        dirs[3].join("qsfs-node").exists(),
        "the tmpfs node folder was not initialised"
    );

    let v1 = rng.bytes(10_000);
    v.put_bytes(&v1, "/doc").success().quiet();
    assert_eq!(v.status()["degraded_objects"], 0);

    // 2 MB does not fit node-3: 4 of 5 shards, quorum 4 -> success with debt.
    let big = rng.bytes(2_000_000);
    let r = v.put_bytes(&big, "/big");
    r.success().stderr_has(&[
        "written with 4 of 5 shards",
        "repair debt",
        "node-3",
        "No space left on device",
    ]);
    let st = v.status();
    assert_eq!(st["degraded_objects"], 1, "{st:#}");
    assert_eq!(st["missing_shards"], 1, "{st:#}");
    let n3 = node_status(&st, "node-3");
    assert_eq!(n3["shards_expected"], 1, "{n3:#}");
    assert_eq!(n3["shards_found"], 1, "{n3:#}");
    v.assert_reads("/big", &big).quiet();
    v.assert_reads("/doc", &v1);
    assert!(
        v.temp_shards().is_empty(),
        "the failed shard left a temp file: {:?}",
        v.temp_shards()
    );

    // node-1's folder is replaced by another small, empty disk: not used
    // until adopted (it could be an unmounted disk's mount point)...
    let full1 = Mounted::tmpfs(&v.node_dir("node-1"), "256k");
    let small = rng.bytes(3000);
    v.put_bytes(&small, "/small")
        .success()
        .stderr_has(&["node-1", "node adopt"]);
    assert!(
        !v.node_dir("node-1").join("qsfs-node").exists(),
        "an empty node folder was adopted by itself"
    );
    // ...then taken into use explicitly.
    qsfs(&["node", "adopt", &v.arg(), "node-1"]).success();
    assert!(
        v.node_dir("node-1").join("qsfs-node").exists(),
        "node adopt wrote no marker"
    );
    let small = rng.bytes(3000);
    v.put_bytes(&small, "/small").success().quiet();
    v.assert_reads("/small", &small).quiet();

    // Two full nodes: 3 of 5 < quorum 4 -> fails, /doc keeps version 1.
    assert_put_below_quorum(
        &v,
        &rng.bytes(1_500_000),
        "/doc",
        &v1,
        &[
            ("node-1", "No space left on device"),
            ("node-3", "No space left on device"),
        ],
    );
    drop(full1);
    v.assert_reads("/big", &big);
}

#[test]
fn write_to_read_only_nodes() {
    if skip_unless_root("write_to_read_only_nodes") {
        return;
    }
    let _g = priv_lock();
    let mut rng = Rng::from_env("write_to_read_only_nodes");
    let v = TestVault::new(&[]);
    let v1 = rng.bytes(50_000);
    v.put_bytes(&v1, "/doc").success();

    // node-2 read-only (bind mount): 4 of 5 -> success with debt.
    let ro2 = Mounted::read_only_bind(&v.node_dir("node-2"));
    let a = rng.bytes(100_000);
    v.put_bytes(&a, "/a").success().stderr_has(&[
        "written with 4 of 5 shards",
        "node-2",
        "Read-only file system",
    ]);
    let st = v.status();
    assert_eq!(
        (
            st["degraded_objects"].as_u64(),
            st["missing_shards"].as_u64()
        ),
        (Some(1), Some(1)),
        "{st:#}"
    );
    v.assert_reads("/a", &a);

    // node-4 immutable (chattr +i on its shard folders): below quorum.
    let shards4 = v.node_dir("node-4").join("shards");
    let mut imm: Vec<PathBuf> = vec![shards4.clone()];
    imm.extend(
        std::fs::read_dir(&shards4)
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let imm4 = Immutable::set(&imm);
    assert_put_below_quorum(
        &v,
        &rng.bytes(70_000),
        "/doc",
        &v1,
        &[
            ("node-2", "Read-only file system"),
            ("node-4", "Operation not permitted"),
        ],
    );
    drop(imm4);
    drop(ro2);

    // A tmpfs node (a fresh disk, adopted) that goes read-only later.
    let t0 = Mounted::tmpfs(&v.node_dir("node-0"), "8m");
    qsfs(&["node", "adopt", &v.arg(), "node-0"]).success();
    let b = rng.bytes(20_000);
    v.put_bytes(&b, "/b").success().quiet();
    t0.remount_ro();
    let c = rng.bytes(20_000);
    v.put_bytes(&c, "/c")
        .success()
        .stderr_has(&["node-0", "Read-only file system"]);
    v.assert_reads("/b", &b);
    v.assert_reads("/c", &c);
    drop(t0);

    // Everything undone: writes are whole again.
    let d = rng.bytes(30_000);
    let before = v.status()["missing_shards"].as_u64().unwrap();
    v.put_bytes(&d, "/doc").success().quiet();
    assert_eq!(v.status()["missing_shards"].as_u64().unwrap(), before);
    v.assert_reads("/doc", &d);
}

#[test]
fn write_with_missing_node_folders() {
    let mut rng = Rng::from_env("write_with_missing_node_folders");
    let v = TestVault::new(&["--k", "2", "--n", "4"]);
    let v1 = rng.bytes(40_000);
    v.put_bytes(&v1, "/doc").success();
    let away = v.tmp.path().join("unplugged");
    std::fs::create_dir(&away).unwrap();

    let n1 = v.node_dir("node-1");
    std::fs::rename(&n1, away.join("node-1")).unwrap();
    let a = rng.bytes(123_456);
    v.put_bytes(&a, "/a").success().stderr_has(&[
        "written with 3 of 4 shards",
        "node-1",
        "does not exist",
    ]);
    assert!(!n1.exists(), "a missing node folder was recreated");
    let st = v.status();
    assert_eq!(
        (
            st["degraded_objects"].as_u64(),
            st["missing_shards"].as_u64()
        ),
        (Some(1), Some(1)),
        "{st:#}"
    );
    assert_eq!(
        node_status(&st, "node-1")["health"]["state"],
        "offline",
        "{st:#}"
    );
    v.assert_reads("/a", &a);

    let n3 = v.node_dir("node-3");
    std::fs::rename(&n3, away.join("node-3")).unwrap();
    assert_put_below_quorum(
        &v,
        &rng.bytes(10_000),
        "/doc",
        &v1,
        &[("node-1", "does not exist"), ("node-3", "does not exist")],
    );
    assert!(
        !n1.exists() && !n3.exists(),
        "a missing node folder was recreated"
    );

    // Plugged back in: full writes again, old files still read.
    std::fs::rename(away.join("node-1"), &n1).unwrap();
    std::fs::rename(away.join("node-3"), &n3).unwrap();
    let b = rng.bytes(5_000);
    v.put_bytes(&b, "/doc").success().quiet();
    v.assert_reads("/doc", &b);
    v.assert_reads("/a", &a);
}

#[test]
fn write_quorum_of_n_refuses_any_missing_node() {
    let mut rng = Rng::from_env("write_quorum_of_n");
    let v = TestVault::new(&["--quorum", "5"]);
    assert_eq!(v.status()["write_quorum"], 5);
    let v1 = rng.bytes(2_000);
    v.put_bytes(&v1, "/doc").success();
    std::fs::remove_dir_all(v.node_dir("node-2")).unwrap();
    assert_put_below_quorum(
        &v,
        &rng.bytes(2_000),
        "/doc",
        &v1,
        &[("node-2", "does not exist")],
    );
}

/// Damage spread over more than n - k shards, but never more than one bad
/// chunk per stripe: every stripe still has n - 1 >= k good chunks, so
/// the erasure code can rebuild every stripe and the file must read back
/// (and keep reading back once the damage is recorded as repair debt).
#[test]
fn scattered_chunk_damage_within_per_stripe_tolerance() {
    let mut rng = Rng::from_env("scattered_chunk_damage");
    let v = TestVault::new(&["--max-chunk", "4096"]);
    let data = rng.bytes(200_000);
    v.put_bytes(&data, "/f").success();
    let shards = v.shards_of(&v.object_of("/f"));
    let (chunk, stripes) = shards[0].geometry();
    assert!(stripes >= 8, "need several stripes, got {stripes}");
    // Shard 0 bad in stripe 1, shard 1 in stripe 3, shard 3 in stripe 5.
    for (idx, stripe) in [(0usize, 1u64), (1, 3), (3, 5)] {
        flip_bit(
            &shards[idx].path,
            64 + stripe * chunk + rng.below(chunk),
            rng.below(8) as u8,
        );
    }
    v.assert_reads("/f", &data);
    v.assert_reads("/f", &data);
}
