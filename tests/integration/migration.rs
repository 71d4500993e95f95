//! Nodes over time, with the real `qsfs` binary, real vaults and real node
//! folders: `qsfs node add` + `qsfs rebalance` spread shards onto a new node
//! without ever putting two shards of one object on one node; `qsfs node
//! drain` empties a node by verified transfer and its deletion check says
//! so; a corrupted source chunk is rebuilt from the other shards, not
//! copied; a drain that would leave too few nodes and a removal of a node
//! that still holds shards are refused; a remote node server can take the
//! drained shards.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use qsfs::node::ShardKey;
use qsfs::vault::{OpenOptions, Vault};
use serde_json::Value;

/// A 3-of-5 vault (default: in-process QKD-keyed links) with small chunks
/// so files span many stripes, holding `files`.
fn vault_with_files(rng: &mut Rng) -> (TestVault, Vec<(String, Vec<u8>)>) {
    let v = TestVault::new(&["--max-chunk", "4096"]);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("/one".into(), rng.bytes(1)),
        ("/kib".into(), rng.bytes(1024)),
        ("/mid.bin".into(), rng.bytes(100_003)),
        ("/big.bin".into(), rng.bytes(700_001)),
        ("/b".into(), rng.bytes(30_000)),
        ("/c".into(), rng.bytes(5_000)),
    ];
    for (p, d) in &files {
        v.put_bytes(d, p).success().quiet();
    }
    (v, files)
}

fn reads_back(v: &TestVault, files: &[(String, Vec<u8>)]) {
    for (p, d) in files {
        v.assert_reads(p, d).quiet();
    }
}

fn json(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("{:?}: not JSON ({e}): {}", r.args, r.out()))
}

fn open(v: &TestVault) -> Vault {
    Vault::open(&v.root, &OpenOptions::default()).unwrap()
}

/// Checks every manifest against the nodes through the library: the shards
/// of each object sit on distinct nodes, and every chunk of every present
/// shard reads from its node and matches the manifest's hash (a scrub).
/// Returns node -> shards placed there.
fn check_all_shards(v: &TestVault) -> BTreeMap<String, usize> {
    let vault = open(v);
    let ec = vault.dispersal();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut objects = 0;
    for m in ec.store().manifests() {
        let m = m.unwrap();
        objects += 1;
        let distinct: BTreeSet<&String> = m.placement.iter().collect();
        assert_eq!(
            distinct.len(),
            m.layout.n,
            "object {}: two shards on one node: {:?}",
            m.id,
            m.placement
        );
        assert_eq!(m.missing, 0, "object {} has repair debt", m.id);
        for (i, name) in m.placement.iter().enumerate() {
            *per_node.entry(name.clone()).or_default() += 1;
            let node = ec.node(name).unwrap();
            let chunk = m.layout.chunk as usize;
            let mut buf = vec![0u8; chunk];
            for s in 0..m.layout.stripes {
                let key = ShardKey {
                    object: m.id,
                    index: i as u8,
                };
                node.read_at(key, s * chunk as u64, &mut buf)
                    .unwrap_or_else(|e| panic!("object {} shard {i} on {name}: {e}", m.id));
                assert_eq!(
                    blake3::hash(&buf).as_bytes(),
                    m.hash(s, i),
                    "object {} shard {i} stripe {s} on {name} does not verify",
                    m.id
                );
            }
        }
    }
    assert!(objects > 0);
    per_node
}

/// Shard files per node folder, and a check that no folder holds two
/// shards of one object.
fn files_per_node(v: &TestVault) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (name, dir) in v.nodes() {
        let shards = shards_in(&name, &dir);
        let objects: BTreeSet<&String> = shards.iter().map(|s| &s.object).collect();
        assert_eq!(
            objects.len(),
            shards.len(),
            "{name} holds two shards of one object"
        );
        out.insert(name, shards.len());
    }
    out
}

fn add_dir_node(v: &TestVault, name: &str) {
    let dir = v.tmp.path().join(name);
    qsfs(&[
        "node",
        "add",
        &v.arg(),
        name,
        "--dir",
        dir.to_str().unwrap(),
    ])
    .success()
    .quiet()
    .stdout_has(&["added", name, "qsfs rebalance"]);
}

#[test]
fn add_a_node_and_rebalance_spreads_shards_onto_it() {
    let mut rng = Rng::from_env("rebalance");
    let (v, files) = vault_with_files(&mut rng);
    let before = files_per_node(&v);
    assert_eq!(before.values().sum::<usize>(), 5 * files.len());
    add_dir_node(&v, "node-5");
    // The new node is in qsfs.toml, got its own link, and is empty.
    let cfg = v.config();
    let n5 = cfg["node"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"].as_str() == Some("node-5"))
        .unwrap();
    assert!(n5.get("node_keypool").is_some(), "{n5:?}");
    assert!(v.root.join("links/node-5.b.pool").is_file());
    let list = json(
        qsfs(&["node", "list", &v.arg(), "--json"])
            .success()
            .quiet(),
    );
    let n5 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-5")
        .unwrap();
    assert_eq!(
        (n5["shards"].as_u64(), n5["health"].as_str()),
        (Some(0), Some("ok"))
    );

    let r = qsfs(&["rebalance", &v.arg(), "--json"]);
    r.success().quiet();
    let rep = json(&r);
    let moved = rep["moves"].as_array().unwrap();
    // 30 shards over 6 nodes: 5 each, so 5 moves onto node-5.
    assert_eq!(moved.len(), 5, "{rep}");
    assert!(
        moved
            .iter()
            .all(|m| m["to"] == "node-5" && m["rebuilt"] == 0)
    );
    let after = files_per_node(&v);
    assert_eq!(after.values().sum::<usize>(), 5 * files.len(), "{after:?}");
    assert_eq!(after["node-5"], 5, "{after:?}");
    let (lo, hi) = (after.values().min().unwrap(), after.values().max().unwrap());
    assert!(hi - lo <= 1, "not balanced: {after:?}");
    assert_eq!(
        check_all_shards(&v),
        after,
        "manifests and folders disagree"
    );
    reads_back(&v, &files);
    // Balanced already: a second run moves nothing.
    let again = json(qsfs(&["rebalance", &v.arg(), "--json"]).success());
    assert_eq!(again["moves"].as_array().unwrap().len(), 0, "{again}");
}

#[test]
fn drain_empties_a_node_and_it_can_be_removed() {
    let mut rng = Rng::from_env("drain");
    let (v, files) = vault_with_files(&mut rng);
    add_dir_node(&v, "node-5");
    let node2 = v.node_dir("node-2");
    assert_eq!(shards_in("node-2", &node2).len(), files.len());
    // Still holding shards: removal is refused and nothing changes.
    let before = std::fs::read_to_string(v.root.join("qsfs.toml")).unwrap();
    qsfs(&["node", "remove", &v.arg(), "node-2"])
        .failure()
        .stderr_has(&[
            "node-2 still holds 6 shards",
            "drain it first",
            "qsfs node drain",
        ]);
    assert_eq!(
        std::fs::read_to_string(v.root.join("qsfs.toml")).unwrap(),
        before
    );

    let r = qsfs(&["node", "drain", &v.arg(), "node-2", "--json"]);
    r.success().quiet();
    let rep = json(&r);
    assert_eq!(rep["shards_moved"], files.len(), "{rep}");
    assert_eq!(rep["chunks_rebuilt"], 0, "{rep}");
    assert!(rep["failures"].as_array().unwrap().is_empty(), "{rep}");
    let d = &rep["deletion"];
    assert_eq!(
        (
            d["held"].as_u64(),
            d["expected"].as_u64(),
            d["matches"].as_bool()
        ),
        (Some(0), Some(0), Some(true)),
        "{rep}"
    );
    assert!(d["leftovers"].as_array().unwrap().is_empty());
    assert!(
        shards_in("node-2", &node2).is_empty(),
        "node-2 still has shard files"
    );
    assert!(temp_files(&node2).is_empty());
    // Every moved shard went to the only free node.
    assert!(
        rep["moves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["from"] == "node-2" && m["to"] == "node-5")
    );
    // draining = true is kept in qsfs.toml, and new writes avoid the node.
    let cfg = v.config();
    let n2 = cfg["node"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"].as_str() == Some("node-2"))
        .unwrap();
    assert_eq!(
        n2.get("draining").and_then(toml::Value::as_bool),
        Some(true),
        "{n2:?}"
    );
    let extra = rng.bytes(20_000);
    v.put_bytes(&extra, "/after-drain").success().quiet();
    assert!(
        shards_in("node-2", &node2).is_empty(),
        "a new write went to a draining node"
    );
    let per_node = check_all_shards(&v);
    assert!(!per_node.contains_key("node-2"), "{per_node:?}");
    reads_back(&v, &files);
    v.assert_reads("/after-drain", &extra);

    // A human-readable drain of the empty node says it is empty.
    qsfs(&["node", "drain", &v.arg(), "node-2"])
        .success()
        .stdout_has(&["0 shards moved", "holds no shards of this vault"]);

    qsfs(&["node", "remove", &v.arg(), "node-2"])
        .success()
        .quiet()
        .stdout_has(&["removed node-2"]);
    let cfg = std::fs::read_to_string(v.root.join("qsfs.toml")).unwrap();
    assert!(!cfg.contains("\"node-2\""), "{cfg}");
    assert!(!v.root.join("links/node-2.a.pool").exists());
    assert!(node2.join("qsfs-node").is_file(), "the folder itself stays");
    reads_back(&v, &files);
    v.assert_reads("/after-drain", &extra);
}

fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_under(&dir.join("shards"))
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[test]
fn a_corrupted_source_chunk_is_rebuilt_not_copied() {
    let mut rng = Rng::from_env("corrupt-drain");
    let (v, files) = vault_with_files(&mut rng);
    add_dir_node(&v, "node-5");
    let big = v.object_of("/big.bin");
    let shard = shards_in("node-1", &v.node_dir("node-1"))
        .into_iter()
        .find(|s| s.object == big)
        .unwrap();
    let (chunk, stripes) = shard.geometry();
    assert!(stripes > 10);
    // One bit in stripe 7 of the payload (after the 64-byte header).
    let mut data = std::fs::read(&shard.path).unwrap();
    let at = 64 + 7 * chunk as usize + 123;
    data[at] ^= 0x10;
    std::fs::write(&shard.path, &data).unwrap();

    let r = qsfs(&["node", "drain", &v.arg(), "node-1", "--json"]);
    r.success();
    let rep = json(&r);
    let mv = rep["moves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["object"] == big.as_str())
        .unwrap_or_else(|| panic!("no move of {big}: {rep}"));
    assert_eq!(mv["index"], shard.index, "{mv}");
    assert_eq!(
        (mv["rebuilt"].as_u64(), mv["copied"].as_u64()),
        (Some(1), Some(stripes - 1)),
        "{mv}"
    );
    assert_eq!(rep["chunks_rebuilt"], 1, "{rep}");
    assert_eq!(rep["deletion"]["held"], 0, "{rep}");
    // The moved shard verifies chunk by chunk, and no other damage is left.
    let moved = shards_in("node-5", &v.node_dir("node-5"))
        .into_iter()
        .find(|s| s.object == big)
        .unwrap();
    assert_eq!(moved.index, shard.index);
    let fixed = std::fs::read(&moved.path).unwrap();
    assert_eq!(fixed.len(), data.len());
    data[at] ^= 0x10;
    assert!(
        fixed[64..] == data[64..],
        "the moved shard is not the original shard"
    );
    check_all_shards(&v);
    reads_back(&v, &files);
}

#[test]
fn refusals_leave_everything_as_it_was() {
    let mut rng = Rng::from_env("refusals");
    let (v, files) = vault_with_files(&mut rng);
    // Node folders, key pools and qsfs.toml (the stores rewrite their
    // snapshot files on every open, by design).
    let stable =
        |p: &Path| p.starts_with("keys") || p.starts_with("meta") || p == Path::new(".lock");
    let snap = snapshot_filtered(&v.root, &stable);
    qsfs(&["node", "drain", &v.arg(), "node-0"])
        .failure()
        .stderr_has(&[
            "cannot drain node-0",
            "n = 5",
            "add a node first: qsfs node add",
        ]);
    qsfs(&["node", "drain", &v.arg(), "node-9"])
        .failure()
        .stderr_has(&["no node named \"node-9\""]);
    qsfs(&["node", "remove", &v.arg(), "node-3"])
        .failure()
        .stderr_has(&["would leave 4 nodes", "add a node first"]);
    qsfs(&[
        "node",
        "add",
        &v.arg(),
        "node-1",
        "--dir",
        v.tmp.path().join("x").to_str().unwrap(),
    ])
    .failure()
    .stderr_has(&["already"]);
    // A folder of another node is not taken.
    qsfs(&[
        "node",
        "add",
        &v.arg(),
        "node-7",
        "--dir",
        v.node_dir("node-1").to_str().unwrap(),
    ])
    .failure();
    assert_same_tree(
        &snap,
        &snapshot_filtered(&v.root, &stable),
        "refused node commands",
    );
    assert!(
        !std::fs::read_to_string(v.root.join("qsfs.toml"))
            .unwrap()
            .contains("draining")
    );
    // --force on a node that holds shards: they become repair debt, and
    // every file still reads (3 of 5 needed, 4 left).
    add_dir_node(&v, "node-5");
    qsfs(&["node", "remove", &v.arg(), "node-4", "--force"])
        .success()
        .stdout_has(&["6 shards of 6 objects are now repair debt", "scrub"]);
    let st = v.status();
    assert_eq!(st["missing_shards"], 6, "{st}");
    reads_back(&v, &files);
}

#[test]
fn a_remote_node_takes_the_drained_shards() {
    let mut rng = Rng::from_env("remote-drain");
    let (v, files) = vault_with_files(&mut rng);
    let dir = v.tmp.path().join("remote-node");
    let server = NodeServer::start(&dir);
    qsfs(&[
        "node",
        "add",
        &v.arg(),
        "far",
        "--address",
        &server.addr,
        "--insecure-plaintext",
    ])
    .success()
    .stdout_has(&["added far (remote node"]);
    let rep = json(qsfs(&["node", "drain", &v.arg(), "node-3", "--json"]).success());
    assert_eq!(rep["shards_moved"], files.len(), "{rep}");
    assert_eq!(rep["deletion"]["held"], 0, "{rep}");
    assert!(shards_in("node-3", &v.root.join("nodes/node-3")).is_empty());
    assert_eq!(shards_in("far", &dir).len(), files.len());
    reads_back(&v, &files);
    drop(server);
}

#[test]
fn drain_is_safe_while_the_same_process_writes_and_deletes() {
    use qsfs::VaultPath;
    use qsfs::maint::DrainOptions;
    use qsfs::maint::no_progress;
    use qsfs::vault::PutSource;
    let mut rng = Rng::from_env("drain-concurrent");
    let (v, mut files) = vault_with_files(&mut rng);
    add_dir_node(&v, "node-5");
    let new: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("/w{i}"), rng.bytes(20_000 + 37_000 * (i % 4))))
        .collect();
    let locals: Vec<std::path::PathBuf> = new
        .iter()
        .map(|(_, d)| {
            let p = v.scratch_path("w");
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    let vault = open(&v);
    let rep = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for (i, ((p, _), local)) in new.iter().zip(&locals).enumerate() {
                vault
                    .put(
                        &PutSource::File(local.clone()),
                        &VaultPath::parse(p).unwrap(),
                    )
                    .unwrap();
                if i == 3 {
                    vault
                        .remove(&VaultPath::parse("/b").unwrap(), false)
                        .unwrap();
                }
                if i == 6 {
                    vault
                        .remove(&VaultPath::parse("/c").unwrap(), false)
                        .unwrap();
                }
            }
        });
        let rep = vault
            .drain(
                &DrainOptions {
                    node: "node-2".into(),
                },
                &no_progress,
            )
            .unwrap();
        writer.join().unwrap();
        rep
    });
    assert!(rep.failures.is_empty(), "{rep:?}");
    assert!(rep.deletion.clean(), "{:?}", rep.deletion);
    drop(vault);
    assert!(
        shards_in("node-2", &v.node_dir("node-2")).is_empty(),
        "node-2 still holds shards after the drain"
    );
    files.retain(|(p, _)| p != "/b" && p != "/c");
    files.extend(new);
    let per_node = check_all_shards(&v);
    assert!(!per_node.contains_key("node-2"), "{per_node:?}");
    // Every shard file on the nodes belongs to a live object.
    assert_eq!(
        files_per_node(&v).values().sum::<usize>(),
        5 * files.len(),
        "stray shard files"
    );
    reads_back(&v, &files);
    v.get_bytes("/b").0.failure();
}
