//! `qsfs scrub` on real vaults with real faults in real node folders.
//!
//! The fault matrix: each of (delete shard files, truncate them, flip a
//! bit in their payload, delete the node folder, replace it with an empty
//! folder) on 1 and on n-k = 2 nodes of a 3-of-5 vault. `scrub` reports
//! exactly the damage and exits 1; `scrub --repair` rebuilds it; the next
//! `scrub` is clean with every object at full redundancy, and every file
//! reads back identical.
//!
//! A node folder that is gone or empty is never written to by scrub (it
//! may be the mount point of a disk that is not mounted): its shards are
//! rebuilt on a free node if the vault has one, and otherwise scrub says
//! to take the replacement folder into use with `qsfs node adopt` and
//! rebuilds them there on the next `scrub --repair`. A node folder that
//! keeps its marker but lost `shards/` (or fan-out folders under it) is
//! this very node: the folders are made again and the shards rebuilt
//! where they were. Scrub calls a node that answers but lacks or holds
//! damaged shards "damaged", and `qsfs node list` agrees with its counts.
//!
//! Beyond n-k: scrub names exactly the lost files, exits 2, and leaves
//! their surviving shards as they were; the other objects are repaired.
//! Orphans (a shard of an unknown object, a shard the manifest places
//! elsewhere, a leftover temporary file) are removed by `--repair`; repair
//! debt is cleared; audit roots are added to a v1 vault's manifests.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::*;
use serde_json::Value;

/// Files of every fixture: one byte to many stripes (`--max-chunk 4096`,
/// 12 KiB per stripe).
const SAMPLE_FILES: &[(&str, usize)] = &[
    ("/one", 1),
    ("/small", 777),
    ("/stripe", 12_288),
    ("/mid", 50_000),
    ("/many", 200_003),
    ("/big2", 120_000),
];

struct Fixture {
    v: TestVault,
    files: Vec<(String, Vec<u8>)>,
    /// vault path -> object id.
    objects: BTreeMap<String, String>,
}

fn fixture(extra: &[&str], rng: &mut Rng) -> Fixture {
    let mut args = vec!["--max-chunk", "4096"];
    args.extend_from_slice(extra);
    let v = TestVault::new(&args);
    let files = sample_files(rng, SAMPLE_FILES);
    let mut objects = BTreeMap::new();
    for (p, data) in &files {
        v.put_bytes(data, p).success().quiet();
        objects.insert(p.clone(), v.object_of(p));
    }
    Fixture { v, files, objects }
}

/// `qsfs scrub VAULT --json [extra]`: the run and its parsed report.
fn scrub(v: &TestVault, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = v.run("scrub", &args);
    let j: Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "scrub {extra:?}: no JSON report ({e}), exit {:?}:\n{}\n{}",
            r.code,
            r.out(),
            r.stderr
        )
    });
    (r, j)
}

type Key = (String, String, u8, String);

/// (kind, object, shard, node) of every finding.
fn findings(j: &Value) -> BTreeSet<Key> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["object"].as_str().unwrap().to_string(),
                f["shard"].as_u64().map(|s| s as u8).unwrap_or(u8::MAX),
                f["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every finding's outcome.
fn outcomes(j: &Value) -> BTreeSet<String> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"].as_str().unwrap().to_string())
        .collect()
}

fn node_row<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

/// `qsfs node list --json` counts as scrub counts: held shards are
/// scrub's ok plus corrupt, missing ones its missing; a node scrub calls
/// damaged or offline, node list calls so too.
#[track_caller]
fn assert_node_list_agrees(v: &TestVault, scrub: &Value) {
    let r = qsfs(&["node", "list", &v.arg(), "--json"]);
    r.success();
    let list: Value = serde_json::from_slice(&r.stdout).unwrap();
    let rows = scrub["nodes"].as_array().unwrap();
    assert_eq!(list.as_array().unwrap().len(), rows.len(), "{list:#}");
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let n = list
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in node list: {list:#}"));
        let ctx = format!("{name}: node list {n:#}\nscrub row {row:#}");
        assert_eq!(n["missing"], row["missing"], "{ctx}");
        assert_eq!(
            n["shards"].as_u64().unwrap(),
            row["ok"].as_u64().unwrap() + row["corrupt"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            n["placed"].as_u64().unwrap(),
            n["shards"].as_u64().unwrap() + n["missing"].as_u64().unwrap(),
            "{ctx}"
        );
        let word = row["health"].as_str().unwrap().split(':').next().unwrap();
        match word {
            "ok" => assert_eq!(n["health"], "ok", "{ctx}"),
            // Only reading tells a damaged shard from a good one.
            "damaged" if row["missing"] == 0 => assert_eq!(n["health"], "ok", "{ctx}"),
            "damaged" => assert_eq!(n["health"], "damaged", "{ctx}"),
            "offline" => assert_eq!(n["health"], "offline", "{ctx}"),
            other => panic!("unexpected scrub health {other}: {ctx}"),
        }
    }
}

/// A clean scrub, every object with its n shards on n distinct nodes and
/// none recorded missing, node list agreeing, and every file identical.
#[track_caller]
fn assert_whole(f: &Fixture) {
    let (r, j) = scrub(&f.v, &[]);
    assert_eq!(r.code, Some(0), "scrub after repair not clean: {j:#}");
    assert!(j["findings"].as_array().unwrap().is_empty(), "{j:#}");
    for row in j["nodes"].as_array().unwrap() {
        // Ok, or away and holding nothing (a gone folder whose shards
        // were rebuilt elsewhere).
        let h = row["health"].as_str().unwrap();
        assert!(
            h == "ok" || (h.starts_with("offline") && row["ok"] == 0 && row["missing"] == 0),
            "{j:#}"
        );
    }
    assert_node_list_agrees(&f.v, &j);
    assert!(j["lost"].as_array().unwrap().is_empty(), "{j:#}");
    assert_eq!(j["objects"], f.objects.len(), "{j:#}");
    assert_eq!(j["shards"], f.objects.len() * 5, "{j:#}");
    let st = f.v.status();
    assert_eq!(
        (
            st["degraded_objects"].as_u64(),
            st["missing_shards"].as_u64()
        ),
        (Some(0), Some(0)),
        "{st:#}"
    );
    for (path, obj) in &f.objects {
        let shards = f.v.shards_of(obj);
        let idx: Vec<u8> = shards.iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4], "{path}: shards {shards:?}");
        let nodes: BTreeSet<&str> = shards.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes.len(), 5, "{path}: two shards on one node: {shards:?}");
    }
    for (p, data) in &f.files {
        f.v.assert_reads(p, data);
    }
}

/// Flips one bit in the chunk of stripe `stripe` of a shard file.
fn flip_in_stripe(s: &ShardFile, stripe: u64, rng: &mut Rng) {
    let (chunk, _) = s.geometry();
    flip_bit(
        &s.path,
        64 + stripe * chunk + rng.below(chunk),
        rng.below(8) as u8,
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    DeleteShards,
    Truncate,
    FlipBit,
    DeleteNode,
    EmptyNode,
    /// `rm -rf NODE/shards`, the marker left.
    LoseShardsFolder,
    /// `rm -rf NODE/shards/<ab>` for every fan-out folder holding a shard.
    LoseFanFolders,
}

/// Applies `fault` to node `name`; returns the (object, shard) damaged.
fn apply(v: &TestVault, name: &str, fault: Fault, rng: &mut Rng) -> Vec<(String, u8)> {
    let dir = v.node_dir(name);
    let shards = shards_in(name, &dir);
    for s in &shards {
        // Two shards can share a fan-out folder, so the second one's
        // file may already be gone: only the byte faults need its length.
        let len = || std::fs::metadata(&s.path).unwrap().len();
        match fault {
            Fault::DeleteShards => std::fs::remove_file(&s.path).unwrap(),
            // Anywhere, into the header too.
            Fault::Truncate => truncate(&s.path, rng.below(len())),
            Fault::FlipBit => flip_bit(&s.path, 64 + rng.below(len() - 64), rng.below(8) as u8),
            Fault::LoseFanFolders => {
                let fan = s.path.parent().unwrap();
                if fan.exists() {
                    std::fs::remove_dir_all(fan).unwrap();
                }
            }
            Fault::DeleteNode | Fault::EmptyNode | Fault::LoseShardsFolder => {}
        }
    }
    match fault {
        Fault::LoseShardsFolder => std::fs::remove_dir_all(dir.join("shards")).unwrap(),
        Fault::DeleteNode => std::fs::remove_dir_all(&dir).unwrap(),
        Fault::EmptyNode => {
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::create_dir(&dir).unwrap();
        }
        _ => {}
    }
    shards.into_iter().map(|s| (s.object, s.index)).collect()
}

/// The snapshot of every node's `shards/` folder, paths prefixed with
/// the node name.
fn shard_trees(v: &TestVault) -> Snapshot {
    let mut all = Snapshot::new();
    for (n, d) in v.nodes() {
        for (p, e) in snapshot(&d.join("shards")) {
            all.insert(PathBuf::from(&n).join(p), e);
        }
    }
    all
}

fn fault_matrix(fault: Fault) {
    let mut rng = Rng::from_env(&format!("scrub {fault:?}"));
    for count in [1usize, 2] {
        let f = fixture(&[], &mut rng);
        let names: Vec<String> = rng
            .choose(5, count)
            .into_iter()
            .map(|i| format!("node-{i}"))
            .collect();
        let mut want = BTreeSet::new();
        let kind = match fault {
            Fault::Truncate | Fault::FlipBit => "corrupt",
            _ => "missing",
        };
        for name in &names {
            for (obj, idx) in apply(&f.v, name, fault, &mut rng) {
                want.insert((kind.to_string(), obj, idx, name.clone()));
            }
        }
        assert_eq!(want.len(), f.objects.len() * count);
        let before = shard_trees(&f.v);

        // Reported exactly, nothing changed.
        let (r, j) = scrub(&f.v, &[]);
        assert_eq!(r.code, Some(1), "{fault:?} x{count}: {j:#}");
        assert_eq!(findings(&j), want, "{fault:?} x{count}: {j:#}");
        assert_eq!(j[kind], want.len(), "{j:#}");
        assert!(j["lost"].as_array().unwrap().is_empty(), "{j:#}");
        assert_same_tree(&before, &shard_trees(&f.v), "a scrub without --repair");
        assert_node_list_agrees(&f.v, &j);
        for row in j["nodes"].as_array().unwrap() {
            let name = row["name"].as_str().unwrap();
            let h = row["health"].as_str().unwrap();
            if !names.iter().any(|n| n == name) {
                assert_eq!(h, "ok", "{j:#}");
            } else if !matches!(fault, Fault::DeleteNode | Fault::EmptyNode) {
                // It answers, but lacks shards or holds damaged ones.
                let n = f.objects.len();
                assert_eq!(h, format!("damaged: {n} shards {kind}"), "{j:#}");
            }
        }

        if matches!(fault, Fault::DeleteNode | Fault::EmptyNode) {
            for name in &names {
                let h = node_row(&j, name)["health"].as_str().unwrap();
                assert!(h.starts_with("offline"), "{name}: {h}");
            }
            // No free node in a 5-node 3-of-5 vault, and the gone or empty
            // folder is not written to: repair says what to do.
            let (r, j) = scrub(&f.v, &["--repair"]);
            assert_eq!(r.code, Some(1), "{j:#}");
            assert_eq!(findings(&j), want, "{j:#}");
            assert_eq!(
                outcomes(&j),
                BTreeSet::from(["failed".to_string()]),
                "{j:#}"
            );
            assert!(
                j["findings"][0]["note"]
                    .as_str()
                    .unwrap()
                    .contains("qsfs node adopt"),
                "{j:#}"
            );
            // The text report gives the reason per node, however many
            // findings it lists, and its last line points there.
            let human = f.v.run("scrub", &["--repair"]);
            assert_eq!(human.code, Some(1), "{}", human.out());
            let out = human.out();
            let section = out
                .split("not repaired, by node and cause:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("no reasons section:\n{out}"));
            for name in &names {
                let line = section
                    .lines()
                    .find(|l| l.trim_start().starts_with(name.as_str()))
                    .unwrap_or_else(|| panic!("no reason for {name}:\n{out}"));
                let n = f.objects.len();
                assert!(
                    line.contains(&format!(" {n} missing -> failed: "))
                        && line.contains("qsfs node adopt"),
                    "{line}"
                );
            }
            assert!(
                out.trim_end().ends_with("are under \"not repaired\" above"),
                "{out}"
            );
            for name in &names {
                let dir = f.v.node_dir(name);
                if fault == Fault::DeleteNode {
                    assert!(!dir.exists(), "scrub recreated {}", dir.display());
                    std::fs::create_dir(&dir).unwrap(); // the new disk's mount point
                } else {
                    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
                }
                qsfs(&["node", "adopt", &f.v.arg(), name]).success();
            }
        }

        let (r, j) = scrub(&f.v, &["--repair"]);
        assert_eq!(r.code, Some(0), "{fault:?} x{count}: {j:#}");
        assert_eq!(findings(&j), want, "{j:#}");
        assert_eq!(
            outcomes(&j),
            BTreeSet::from(["repaired".to_string()]),
            "{j:#}"
        );
        assert_eq!(j["repaired"], want.len(), "{j:#}");
        for fi in j["findings"].as_array().unwrap() {
            // Rebuilt where it was: every node is usable again.
            assert_eq!(fi["repaired_on"], fi["node"], "{fi:#}");
        }
        assert_whole(&f);
    }
}

#[test]
fn fault_delete_shard_files() {
    fault_matrix(Fault::DeleteShards);
}

#[test]
fn fault_truncate_shard_files() {
    fault_matrix(Fault::Truncate);
}

#[test]
fn fault_flip_a_bit() {
    fault_matrix(Fault::FlipBit);
}

#[test]
fn fault_delete_node_folder() {
    fault_matrix(Fault::DeleteNode);
}

#[test]
fn fault_empty_node_folder() {
    fault_matrix(Fault::EmptyNode);
}

#[test]
fn fault_lose_shards_folder() {
    fault_matrix(Fault::LoseShardsFolder);
}

#[test]
fn fault_lose_fan_out_folders() {
    fault_matrix(Fault::LoseFanFolders);
}

/// The report of issue 10: `rm -rf` of `shards/` and of the saved audit
/// trees on two nodes, their markers left. Files still read; scrub calls
/// both nodes damaged and `node list` counts the same; fsck sends to
/// `scrub --repair`, which rebuilds every shard on its own node without
/// an "internal error"; the second scrub is clean, node list agrees, and
/// audit and fsck pass. A write in between lands on all five nodes.
#[test]
fn lost_shards_folders_are_rebuilt_where_they_were() {
    let mut rng = Rng::from_env("lost_shards_folders_are_rebuilt_where_they_were");
    let mut f = fixture(&[], &mut rng);
    let v = &f.v;
    v.run("audit", &[]).success();
    let names: Vec<String> = rng
        .choose(5, 2)
        .into_iter()
        .map(|i| format!("node-{i}"))
        .collect();
    for name in &names {
        let dir = v.node_dir(name);
        assert!(dir.join("trees").is_dir(), "the audit saved no trees");
        std::fs::remove_dir_all(dir.join("shards")).unwrap();
        std::fs::remove_dir_all(dir.join("trees")).unwrap();
    }
    // fsck first: a read below may reach a lost shard and record it as
    // repair debt, which fsck then leaves to `status` (known, not news);
    // which shards a read reaches depends on timing.
    let fsck = v.run("fsck", &[]);
    assert_eq!(fsck.code, Some(1), "{}", fsck.out());
    fsck.stdout_has(&["`qsfs scrub --repair` rebuilds it"]);
    for (p, data) in &f.files {
        v.assert_reads(p, data);
    }

    let (r, j) = scrub(v, &[]);
    assert_eq!(r.code, Some(1), "{j:#}");
    assert_eq!(j["missing"], f.objects.len() * 2, "{j:#}");
    for name in &names {
        assert_eq!(
            node_row(&j, name)["health"],
            format!("damaged: {} shards missing", f.objects.len()),
            "{j:#}"
        );
    }
    assert_node_list_agrees(v, &j);
    v.run("scrub", &[])
        .stdout_has(&["damaged: ", "run `qsfs scrub --repair`"]);
    qsfs(&["node", "list", &v.arg()]).success().stdout_has(&[
        "damaged",
        "placed here are missing",
        "run `qsfs scrub --repair`",
    ]);
    v.run("status", &[])
        .success()
        .stdout_has(&["DAMAGED", "placed here are missing"]);

    // A write lands on all five nodes: the folders are made again.
    let late = rng.bytes(30_000);
    v.put_bytes(&late, "/late").success();
    let late_obj = v.object_of("/late");
    let on: BTreeSet<String> = v.shards_of(&late_obj).into_iter().map(|s| s.node).collect();
    assert_eq!(on.len(), 5, "{on:?}");

    // fsck's advice works.
    let (r, j) = scrub(v, &["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert!(!r.out().contains("internal error"), "{}", r.out());
    assert_eq!(j["repaired"], f.objects.len() * 2, "{j:#}");
    assert_eq!(
        outcomes(&j),
        BTreeSet::from(["repaired".to_string()]),
        "{j:#}"
    );
    for fi in j["findings"].as_array().unwrap() {
        assert_eq!(fi["repaired_on"], fi["node"], "{fi:#}");
        assert!(names.iter().any(|n| fi["node"] == n.as_str()), "{fi:#}");
    }
    f.files.push(("/late".to_string(), late));
    f.objects.insert("/late".to_string(), late_obj);
    assert_whole(&f);
    f.v.run("audit", &[]).success();
    f.v.run("fsck", &[]).success();
}

/// With a sixth node free, the shards of a node whose folder is gone are
/// rebuilt there, and the gone folder is not recreated.
#[test]
fn gone_node_is_rebuilt_on_a_free_node() {
    let mut rng = Rng::from_env("gone_node_is_rebuilt_on_a_free_node");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let dirs: Vec<String> = (0..6)
        .map(|i| tmp.path().join(format!("disk{i}")).display().to_string())
        .collect();
    let joined = dirs.join(",");
    let v = TestVault::new_in(tmp, &["--max-chunk", "4096", "--nodes", &joined]);
    let files = sample_files(&mut rng, SAMPLE_FILES);
    let mut objects = BTreeMap::new();
    for (p, data) in &files {
        v.put_bytes(data, p).success().quiet();
        objects.insert(p.clone(), v.object_of(p));
    }
    let gone = format!("node-{}", rng.below(6));
    let damaged = apply(&v, &gone, Fault::DeleteNode, &mut rng);
    let (r, j) = scrub(&v, &["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(j["repaired"], damaged.len(), "{j:#}");
    for fi in j["findings"].as_array().unwrap() {
        assert_eq!(fi["node"], gone.as_str());
        assert_ne!(fi["repaired_on"], gone.as_str(), "{fi:#}");
        assert_eq!(fi["outcome"], "repaired", "{fi:#}");
    }
    assert!(
        !v.node_dir(&gone).exists(),
        "scrub recreated the gone folder"
    );
    let f = Fixture { v, files, objects };
    assert_whole(&f);
}

/// Three nodes damaged for two objects: exactly their files are named,
/// their surviving shards stay byte for byte, everything else is repaired.
#[test]
fn beyond_n_minus_k_names_exactly_the_lost_files() {
    let mut rng = Rng::from_env("beyond_n_minus_k");
    let f = fixture(&[], &mut rng);
    let v = &f.v;
    let on = |path: &str, node: &str| -> ShardFile {
        v.shards_of(&f.objects[path])
            .into_iter()
            .find(|s| s.node == node)
            .unwrap()
    };
    // /mid: three shards gone.
    for n in ["node-0", "node-1", "node-2"] {
        std::fs::remove_file(on("/mid", n).path).unwrap();
    }
    // /many (17 stripes): two shards gone and stripe 5 of a third damaged.
    for n in ["node-0", "node-1"] {
        std::fs::remove_file(on("/many", n).path).unwrap();
    }
    flip_in_stripe(&on("/many", "node-3"), 5, &mut rng);
    // /big2 (10 stripes): three shards damaged, one stripe each: every
    // stripe keeps four good chunks, so it is not lost.
    for (n, s) in [("node-0", 1), ("node-1", 2), ("node-2", 3)] {
        flip_in_stripe(&on("/big2", n), s, &mut rng);
    }
    // /stripe: one shard gone, one truncated.
    std::fs::remove_file(on("/stripe", "node-3").path).unwrap();
    let t = on("/stripe", "node-4").path;
    truncate(&t, std::fs::metadata(&t).unwrap().len() - 100);

    let lost_ids = [f.objects["/mid"].clone(), f.objects["/many"].clone()];
    let lost_trees = || -> Snapshot {
        shard_trees(v)
            .into_iter()
            .filter(|(p, _)| {
                let name = p.to_string_lossy();
                lost_ids.iter().any(|id| name.contains(id.as_str()))
            })
            .collect()
    };
    let lost_of = |j: &Value| -> BTreeMap<String, Vec<String>> {
        j["lost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["object"].as_str().unwrap().to_string(),
                    l["paths"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    };
    let want_lost: BTreeMap<String, Vec<String>> = [
        (f.objects["/mid"].clone(), vec!["/mid".to_string()]),
        (f.objects["/many"].clone(), vec!["/many".to_string()]),
    ]
    .into_iter()
    .collect();

    let all_before = shard_trees(v);
    let (r, j) = scrub(v, &[]);
    assert_eq!(r.code, Some(2), "{j:#}");
    assert_eq!(lost_of(&j), want_lost, "{j:#}");
    let many = j["lost"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["object"] == f.objects["/many"].as_str())
        .unwrap();
    assert!(
        many["detail"].as_str().unwrap().contains("stripe 5 "),
        "{many:#}"
    );
    assert_eq!(
        (j["missing"].as_u64(), j["corrupt"].as_u64()),
        (Some(6), Some(5)),
        "{j:#}"
    );
    assert_same_tree(&all_before, &shard_trees(v), "a scrub without --repair");

    let lost_before = lost_trees();
    let (r, j) = scrub(v, &["--repair"]);
    assert_eq!(r.code, Some(2), "{j:#}");
    assert_eq!(lost_of(&j), want_lost, "{j:#}");
    assert_same_tree(&lost_before, &lost_trees(), "the lost objects' shards");
    for fi in j["findings"].as_array().unwrap() {
        let lost = lost_ids.iter().any(|id| fi["object"] == id.as_str());
        assert_eq!(
            fi["outcome"],
            if lost { "lost" } else { "repaired" },
            "{fi:#}"
        );
    }
    assert_eq!(j["repaired"], 5, "{j:#}");

    // Only the lost objects are left, and still exactly as they were.
    let (r, j) = scrub(v, &[]);
    assert_eq!(r.code, Some(2), "{j:#}");
    assert_eq!(lost_of(&j), want_lost, "{j:#}");
    let objs: BTreeSet<String> = findings(&j).into_iter().map(|k| k.1).collect();
    assert_eq!(objs, lost_ids.iter().cloned().collect(), "{j:#}");
    assert_same_tree(&lost_before, &lost_trees(), "the lost objects' shards");
    let human = v.run("scrub", &[]);
    assert_eq!(human.code, Some(2));
    human.stdout_has(&["LOST", "/mid", "/many", "total", "MB/s"]);

    for (p, data) in &f.files {
        if p == "/mid" || p == "/many" {
            let (r, _) = v.get_bytes(p);
            assert!(!r.ok(), "{p} read back although lost");
        } else {
            v.assert_reads(p, data);
        }
    }
}

/// Shard files no manifest accounts for, and temporary files of writes
/// that are not running, are reported and removed by --repair; a leftover
/// of an object that has a manifest is kept (purging its object would
/// take the live shard too).
#[test]
fn orphans_are_found_and_removed() {
    let mut rng = Rng::from_env("orphans_are_found_and_removed");
    let f = fixture(&[], &mut rng);
    let v = &f.v;
    let src = v.shards_of(&f.objects["/mid"])[0].clone();
    let stranger = hex::encode(rng.bytes(16));
    let fan = |node: &str, id: &str| -> PathBuf {
        let d = v.node_dir(node).join("shards").join(&id[..2]);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // A shard of an unknown object.
    let other_node = if src.node == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    let unknown = fan(other_node, &stranger).join(format!("{stranger}.0"));
    std::fs::copy(&src.path, &unknown).unwrap();
    // A shard the manifest places on another node.
    let misplaced = fan(other_node, &src.object).join(src.path.file_name().unwrap());
    std::fs::copy(&src.path, &misplaced).unwrap();
    // A leftover temporary file of a write that is not running.
    let stranger2 = hex::encode(rng.bytes(16));
    let leftover = fan("node-3", &stranger2).join(format!(".{stranger2}.1.42.tmp"));
    std::fs::write(&leftover, rng.bytes(1000)).unwrap();
    // A leftover of an object that has a manifest.
    let known = f.objects["/small"].clone();
    let kept = fan("node-4", &known).join(format!(".{known}.0.7.tmp"));
    std::fs::write(&kept, rng.bytes(100)).unwrap();

    let (r, j) = scrub(v, &[]);
    assert_eq!(r.code, Some(1), "{j:#}");
    let want: BTreeSet<Key> = [
        ("orphan", stranger.clone(), 0, other_node),
        ("orphan", src.object.clone(), src.index, other_node),
        ("leftover", stranger2.clone(), u8::MAX, "node-3"),
        ("leftover", known.clone(), u8::MAX, "node-4"),
    ]
    .into_iter()
    .map(|(k, o, i, n)| (k.to_string(), o, i, n.to_string()))
    .collect();
    assert_eq!(findings(&j), want, "{j:#}");
    assert_eq!(j["orphans"], 4, "{j:#}");
    assert!(unknown.exists() && misplaced.exists() && leftover.exists());

    let (r, j) = scrub(v, &["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(findings(&j), want, "{j:#}");
    assert_eq!(j["orphans_removed"], 3, "{j:#}");
    assert!(!unknown.exists() && !misplaced.exists() && !leftover.exists());
    assert!(kept.exists(), "a leftover of a live object was purged");
    assert!(
        src.path.exists(),
        "the real shard went with its orphan copy"
    );
    std::fs::remove_file(&kept).unwrap();
    assert_whole(&f);
}

/// Repair debt: a shard recorded missing by a read that could not find
/// it, but back in place, is cleared without a rewrite; a shard a write
/// could not place (read-only node) is rebuilt.
#[test]
fn repair_debt_is_cleared() {
    let mut rng = Rng::from_env("repair_debt_is_cleared");
    let f = fixture(&[], &mut rng);
    let v = &f.v;
    let shard = v.shards_of(&f.objects["/many"])[0].clone();
    let aside = v.scratch_path("aside");
    std::fs::rename(&shard.path, &aside).unwrap();
    let (r, data) = v.get_bytes("/many");
    r.success();
    assert_eq!(data.as_deref(), Some(&f.files[4].1[..]));
    std::fs::rename(&aside, &shard.path).unwrap();
    let inode = std::fs::metadata(&shard.path).unwrap().ino();
    assert_eq!(v.status()["missing_shards"], 1);

    let (r, j) = scrub(v, &[]);
    assert_eq!(r.code, Some(1), "{j:#}");
    let want: BTreeSet<Key> = [(
        "debt".to_string(),
        shard.object.clone(),
        shard.index,
        shard.node.clone(),
    )]
    .into();
    assert_eq!(findings(&j), want, "{j:#}");
    let (r, j) = scrub(v, &["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(
        (j["debt_cleared"].as_u64(), j["repaired"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        std::fs::metadata(&shard.path).unwrap().ino(),
        inode,
        "a fine shard was rewritten"
    );
    assert_eq!(v.status()["missing_shards"], 0);

    if is_root() {
        let _g = priv_lock();
        let ro = Mounted::read_only_bind(&v.node_dir("node-2"));
        let data = rng.bytes(30_000);
        v.put_bytes(&data, "/late")
            .success()
            .stderr_has(&["written with 4 of 5 shards", "node-2"]);
        let obj = v.object_of("/late");
        let (r, j) = scrub(v, &["--repair"]);
        assert_eq!(r.code, Some(1), "repair onto a read-only node: {j:#}");
        assert_eq!(
            node_row(&j, "node-2")["health"]
                .as_str()
                .unwrap()
                .split(':')
                .next(),
            Some("read-only"),
            "{j:#}"
        );
        drop(ro);
        let (r, j) = scrub(v, &["--repair"]);
        assert_eq!(r.code, Some(0), "{j:#}");
        let want: BTreeSet<Key> = [(
            "missing".to_string(),
            obj.clone(),
            v.shards_of(&obj)
                .iter()
                .find(|s| s.node == "node-2")
                .unwrap()
                .index,
            "node-2".to_string(),
        )]
        .into();
        assert_eq!(findings(&j), want, "{j:#}");
        let mut files = f.files.clone();
        files.push(("/late".into(), data));
        let mut objects = f.objects.clone();
        objects.insert("/late".into(), obj);
        assert_whole(&Fixture {
            v: f.v,
            files,
            objects,
        });
    } else {
        eprintln!("SKIPPED the read-only half of repair_debt_is_cleared: needs root");
        assert_whole(&f);
    }
}

/// A vault written by the first release (manifest v1, no audit roots):
/// scrub --repair adds the roots, including for a shard it rebuilds, and
/// they are right (a later repair checks rebuilt shards against them).
#[test]
fn v1_vault_gets_audit_roots() {
    let (_dir, vault) = common::unpack_v1_vault();
    let v = vault.to_str().unwrap();
    let run = |extra: &[&str]| -> (Run, Value) {
        let mut a = vec!["scrub", v, "--json"];
        a.extend_from_slice(extra);
        let r = qsfs(&a);
        let j = serde_json::from_slice(&r.stdout).unwrap_or(Value::Null);
        (r, j)
    };
    let (r, j) = run(&[]);
    assert_eq!(r.code, Some(0), "{}\n{j:#}", r.stderr);
    let objects = j["objects"].as_u64().unwrap();
    assert!(objects >= 2, "{j:#}");
    assert_eq!(j["without_roots"], objects, "{j:#}");
    // Without roots nothing can be challenged: the audit is not a pass.
    let a = qsfs(&["audit", v]);
    assert_eq!(
        a.code,
        Some(2),
        "audit of a v1 vault: {}",
        String::from_utf8_lossy(&a.stdout)
    );

    let shards = files_under(&vault.join("nodes"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/shards/"))
        .collect::<Vec<_>>();
    std::fs::remove_file(&shards[0]).unwrap();
    let (r, j) = run(&["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(
        (j["repaired"].as_u64(), j["roots_added"].as_u64()),
        (Some(1), Some(objects))
    );
    let (r, j) = run(&[]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(j["without_roots"], 0, "{j:#}");
    let a = qsfs(&["audit", v]);
    assert_eq!(
        a.code,
        Some(0),
        "audit after the roots were added: {}",
        String::from_utf8_lossy(&a.stdout)
    );

    // The roots hold: a rebuilt shard is checked against them.
    for p in &shards[..2] {
        std::fs::remove_file(p).unwrap();
    }
    let (r, j) = run(&["--repair"]);
    assert_eq!(
        (r.code, j["repaired"].as_u64()),
        (Some(0), Some(2)),
        "{j:#}"
    );
    let o = qsfs(&["get", v, "/hello.txt", "-"]);
    assert_eq!(o.stdout, b"hello, frozen vault\n");
}

/// Scrub and fsck beside a writer that replaces and deletes files in the
/// same process (as they run inside a mount through its control socket):
/// objects destroyed while they look lose their shards with them, which
/// is no damage, so neither may report damage or orphans. (The tryout of issue 10
/// saw 36 scrub findings and 40 "missing" shards from fsck on a busy
/// mount, all gone once the writes stopped.)
#[test]
fn scrub_and_fsck_report_nothing_while_files_are_replaced_and_deleted() {
    use qsfs::maint::{FsckOptions, ScrubOptions, no_progress};
    use qsfs::vault::{OpenOptions, PutSource, Vault};
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut rng = Rng::from_env("scrub-beside-writes");
    let v = TestVault::new(&[]);
    let bodies: Vec<std::path::PathBuf> = (0..8)
        .map(|i| {
            let p = v.scratch_path("body");
            std::fs::write(&p, rng.bytes(1_000 + 3_000 * i)).unwrap();
            p
        })
        .collect();
    let vault = Vault::open(&v.root, &OpenOptions::default()).unwrap();
    let done = AtomicBool::new(false);
    let (scrubs, fscks) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // Every round replaces eight files and deletes two: each
            // replace and delete destroys an object.
            for round in 0..40 {
                for (i, body) in bodies.iter().enumerate() {
                    let path = qsfs::VaultPath::parse(&format!("/f{i}")).unwrap();
                    vault.put(&PutSource::File(body.clone()), &path).unwrap();
                }
                for i in [round % 8, (round + 3) % 8] {
                    let path = qsfs::VaultPath::parse(&format!("/f{i}")).unwrap();
                    vault.remove(&path, false).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        let (mut scrubs, mut fscks) = (0, 0);
        while !done.load(Ordering::SeqCst) {
            let s = vault
                .scrub(&ScrubOptions { repair: false }, &no_progress)
                .unwrap();
            assert!(s.healthy(), "scrub beside the writer: {:#?}", s.findings);
            scrubs += 1;
            let f = vault
                .fsck(&FsckOptions { repair: false }, &no_progress)
                .unwrap();
            // Deletions the writer queued may still be pending (that is
            // their normal state on a busy vault); nothing may be damaged
            // or orphaned.
            let found = f.shard_problems.len()
                + f.broken_files.len()
                + f.orphan_shards.len()
                + f.leftovers.len()
                + f.orphan_objects.len()
                + f.orphan_keys.len()
                + f.orphan_backups.len();
            assert_eq!(found, 0, "fsck beside the writer: {f:#?}");
            fscks += 1;
        }
        writer.join().unwrap();
        (scrubs, fscks)
    });
    assert!(
        scrubs >= 2 && fscks >= 2,
        "only {scrubs} scrubs and {fscks} fscks ran beside the writer"
    );
}
