//! `qsfs audit` end to end: real vaults made with the real binary, real
//! node folders and real `qsfs node serve` processes, real damage to
//! shard files. An honest vault passes every time; a node that lost 10% of
//! its blocks is caught at the rate the report predicts (hundreds of
//! audits through the library API on a vault opened in this process); a
//! deleted shard, a deleted node folder, a damaged remote shard and a shard
//! kept after `qsfs rm` are each reported as what they are.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{NodeServer, Rng, ShardFile, TestVault, shards_in};
use qsfs::maint::audit::{AuditOptions, AuditReport, Verdict};
use qsfs::maint::no_progress;
use qsfs::vault::{OpenOptions, Vault};
use serde_json::Value;

/// Shard header length: the payload (what the trees cover) starts after it.
const HEADER: usize = 64;
const BLOCK: usize = qsfs::internals::BLOCK as usize;

/// `qsfs audit VAULT --json EXTRA...`: exit code and parsed report.
fn audit_json(v: &TestVault, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = v.run("audit", &args);
    let report: Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}); exit {:?}\nstdout: {}\nstderr: {}",
            r.code,
            r.out(),
            r.stderr
        )
    });
    (r.code, report)
}

fn node<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {report:#}"))
}

/// Asserts a node passed both checks.
#[track_caller]
fn assert_clean(report: &Value, name: &str) {
    let n = node(report, name);
    assert_eq!(n["verdict"], "ok", "{name}: {n:#}");
    assert_eq!(n["failed_blocks"], 0, "{name}: {n:#}");
    assert!(n["failing_shards"].as_array().unwrap().is_empty(), "{n:#}");
    let d = &n["deletion"];
    assert_eq!(d["holds_exactly_expected"], true, "{name}: {n:#}");
    assert!(d["extra"].as_array().unwrap().is_empty(), "{n:#}");
    assert!(d["missing"].as_array().unwrap().is_empty(), "{n:#}");
}

/// Flips every payload byte of a shard file (all its blocks lost).
fn ruin_payload(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    for b in &mut data[HEADER..] {
        *b ^= 0xa5;
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn honest_vault_passes_every_time_and_nobody_is_accused() {
    let mut rng = Rng::from_env("honest_vault");
    let v = TestVault::new(&[]);
    for (i, len) in [1usize, 4095, 4096, 100_000, 1 << 20, 3 << 20]
        .iter()
        .enumerate()
    {
        v.put_bytes(&rng.bytes(*len), &format!("/f{i}")).success();
    }
    let names: Vec<String> = v.nodes().into_iter().map(|(n, _)| n).collect();
    for _ in 0..4 {
        let (code, r) = audit_json(&v, &[]);
        assert_eq!(code, Some(0), "{r:#}");
        assert_eq!(r["totals"]["nodes_ok"], 5, "{r:#}");
        assert_eq!(r["totals"]["failed_blocks"], 0, "{r:#}");
        for name in &names {
            assert_clean(&r, name);
            let n = node(&r, name);
            assert_eq!(n["shards"], 6, "{n:#}");
            assert_eq!(n["blocks_challenged"], 300, "{n:#}");
            assert_eq!(n["deletion"]["root_matches"], true, "{n:#}");
            // 300 samples: a 1% loss escapes with (0.99)^300 = 4.9%.
            let p1 = n["escape"][0]["probability"].as_f64().unwrap();
            assert!((p1 - 0.99f64.powi(300)).abs() < 1e-9, "{n:#}");
            assert_eq!(n["samples_for_1e6_at_1pct"], 1375);
        }
    }
    // The table, one node, more samples.
    let r = v.run("audit", &["--node", "node-3", "--samples", "1375"]);
    r.success()
        .stdout_has(&["node-3", "ok", "holds exactly the 6 expected shards"]);
    let out = r.out();
    assert!(!out.contains("FAILED") && !out.contains("node-1"), "{out}");
    // An unknown node is an error that names the real ones.
    v.run("audit", &["--node", "node-9"])
        .failure()
        .stderr_has(&["node-9", "node-0, node-1"]);
}

/// Opens the vault in this process (the CLI would cost a process per
/// audit) and runs `opts`.
fn audit_lib(v: &Vault, opts: &AuditOptions) -> AuditReport {
    v.audit(opts, &no_progress).unwrap()
}

fn shard_path(v: &Vault, node: &str, object: &str, index: usize) -> PathBuf {
    v.node_folder(node)
        .unwrap()
        .join("shards")
        .join(&object[..2])
        .join(format!("{object}.{index}"))
}

#[test]
fn a_node_that_lost_ten_percent_is_caught_at_the_predicted_rate() {
    let mut rng = Rng::from_env("detection_rate");
    let tv = TestVault::new(&[]);
    // 20 files of one size: every node holds one equal shard of each.
    for i in 0..20 {
        tv.put_bytes(&rng.bytes(40_000), &format!("/f{i}"))
            .success();
    }
    let v = Vault::open(&tv.root, &OpenOptions::default()).unwrap();
    let manifests: Vec<_> = v
        .dispersal()
        .store()
        .manifests()
        .map(|m| m.unwrap())
        .collect();
    assert_eq!(manifests.len(), 20);
    let target = "node-1";
    let mine: Vec<(String, usize, u64)> = manifests
        .iter()
        .flat_map(|m| {
            m.shards_on(target)
                .map(move |i| (m.id.to_hex(), i, m.leaves()))
        })
        .collect();
    assert_eq!(mine.len(), 20);
    let leaves = mine[0].2;
    assert!(
        mine.iter().all(|s| s.2 == leaves) && leaves >= 2,
        "{mine:?}"
    );
    // Lose exactly 10% of node-1's blocks: every block of 2 of its 20
    // equal shards (a node that lost whole files, or that kept the tree
    // hashes of what it dropped, fails exactly on those blocks).
    let lost: BTreeSet<(String, usize)> = rng
        .choose(20, 2)
        .into_iter()
        .map(|j| (mine[j].0.clone(), mine[j].1))
        .collect();
    for (obj, i) in &lost {
        ruin_payload(&shard_path(&v, target, obj, *i));
    }

    let samples = 20u32;
    let trials = 400u32;
    let predicted = 0.9f64.powi(samples as i32);
    let one = AuditOptions {
        node: Some(target.into()),
        samples,
        deletion_check: false,
        ..Default::default()
    };
    let mut escaped = 0u32;
    for t in 0..trials {
        let r = audit_lib(&v, &one);
        let n = &r.nodes[0];
        assert_eq!(n.name, target);
        assert_eq!(n.blocks_challenged, samples as u64);
        assert!((n.escape[2].probability - predicted).abs() < 1e-12);
        match n.verdict {
            Verdict::Ok => {
                assert_eq!(n.failed_blocks, 0);
                escaped += 1;
            }
            Verdict::Failed => {
                for f in &n.failing_shards {
                    assert!(
                        lost.contains(&(f.object.clone(), f.index as usize)),
                        "an intact shard was accused: {f:?}"
                    );
                }
            }
            Verdict::Unreachable => panic!("{n:?}"),
        }
        // The other nodes are audited alongside now and then: never accused.
        if t % 40 == 0 {
            let all = audit_lib(
                &v,
                &AuditOptions {
                    samples,
                    ..Default::default()
                },
            );
            for n in all.nodes.iter().filter(|n| n.name != target) {
                assert_eq!(n.verdict, Verdict::Ok, "{n:?}");
                assert!(n.deletion.as_ref().unwrap().root_matches, "{n:?}");
            }
        }
    }
    let rate = escaped as f64 / trials as f64;
    let sigma = (predicted * (1.0 - predicted) / trials as f64).sqrt();
    eprintln!(
        "escaped {escaped} of {trials} audits: {rate:.4}, predicted {predicted:.4} (sigma {sigma:.4})"
    );
    assert!(
        (rate - predicted).abs() < 4.5 * sigma,
        "escape rate {rate:.4} is outside {predicted:.4} +- {:.4}",
        4.5 * sigma
    );

    // The same 10% scattered as single blocks over node-2's shards: a node
    // that rebuilds its tree from damaged bytes fails every challenged
    // block of a damaged shard, so it is caught at least as often as
    // predicted (the bound is for the strongest cheater).
    let other = "node-2";
    let theirs: Vec<(String, usize)> = manifests
        .iter()
        .flat_map(|m| m.shards_on(other).map(move |i| (m.id.to_hex(), i)))
        .collect();
    let total = theirs.len() * leaves as usize;
    for g in rng.choose(total, total / 10) {
        let (obj, i) = &theirs[g / leaves as usize];
        let path = shard_path(&v, other, obj, *i);
        let mut data = std::fs::read(&path).unwrap();
        data[HEADER + (g % leaves as usize) * BLOCK] ^= 0x01;
        std::fs::write(&path, data).unwrap();
    }
    let scattered_trials = 100;
    let mut escaped = 0;
    for _ in 0..scattered_trials {
        let r = audit_lib(
            &v,
            &AuditOptions {
                node: Some(other.into()),
                samples,
                deletion_check: false,
                ..Default::default()
            },
        );
        if r.nodes[0].verdict == Verdict::Ok {
            escaped += 1;
        }
    }
    let sigma = (predicted * (1.0 - predicted) / scattered_trials as f64).sqrt();
    let rate = escaped as f64 / scattered_trials as f64;
    assert!(
        rate < predicted + 4.5 * sigma,
        "scattered damage escaped {rate:.3}, bound {predicted:.3}"
    );
}

#[test]
fn lost_shards_and_a_lost_node_folder_are_reported_as_what_they_are() {
    let mut rng = Rng::from_env("lost_shards");
    let v = TestVault::new(&[]);
    v.put_bytes(&rng.bytes(1 << 20), "/big").success();
    v.put_bytes(&rng.bytes(60_000), "/small").success();
    let big = v.object_of("/big");
    let shards: Vec<ShardFile> = v.shards_of(&big);
    assert_eq!(shards.len(), 5);

    // A node folder gone (an unmounted disk): unreachable, not "lost",
    // and the others pass. Exit 2: nothing wrong found, audit incomplete.
    let gone = shards[4].node.clone();
    let gone_dir = v.node_dir(&gone);
    let parked = v.tmp.path().join("parked");
    std::fs::rename(&gone_dir, &parked).unwrap();
    let (code, r) = audit_json(&v, &[]);
    assert_eq!(code, Some(2), "{r:#}");
    let n = node(&r, &gone);
    assert_eq!(n["verdict"], "unreachable", "{n:#}");
    assert_eq!(n["failed_blocks"], 0, "{n:#}");
    assert!(
        n["unreachable"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{n:#}"
    );
    for s in &shards[..4] {
        assert_clean(&r, &s.node);
    }
    v.run("audit", &[])
        .stdout_has(&["unreachable", "bring them back"]);
    std::fs::rename(&parked, &gone_dir).unwrap();

    // A shard file deleted, one truncated, one with a flipped bit.
    std::fs::remove_file(&shards[0].path).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&shards[1].path)
        .unwrap();
    f.set_len(HEADER as u64 + 100_000).unwrap();
    drop(f);
    let mut data = std::fs::read(&shards[2].path).unwrap();
    data[HEADER + 77_777] ^= 0x10;
    std::fs::write(&shards[2].path, data).unwrap();

    // Enough samples that every shard of /big (most of each node's
    // blocks) is challenged.
    let (code, r) = audit_json(&v, &["--samples", "2000"]);
    assert_eq!(code, Some(1), "{r:#}");
    let expect = [
        (&shards[0], "not found"),
        (&shards[1], ""),
        (&shards[2], "does not match"),
    ];
    for (s, why) in expect {
        let n = node(&r, &s.node);
        assert_eq!(n["verdict"], "failed", "{n:#}");
        let failing = n["failing_shards"].as_array().unwrap();
        assert_eq!(failing.len(), 1, "{n:#}");
        assert_eq!(failing[0]["object"], big.as_str());
        assert_eq!(failing[0]["index"], s.index);
        assert!(failing[0]["why"].as_str().unwrap().contains(why), "{n:#}");
        assert!(n["deletion"]["extra"].as_array().unwrap().is_empty());
    }
    let d0 = &node(&r, &shards[0].node)["deletion"];
    assert_eq!(d0["missing"][0]["object"], big.as_str(), "{d0:#}");
    let d1 = &node(&r, &shards[1].node)["deletion"];
    assert_eq!(
        d1["wrong_size"][0]["size"],
        HEADER as u64 + 100_000,
        "{d1:#}"
    );
    for s in &shards[3..] {
        assert_clean(&r, &s.node);
    }
    v.run("audit", &[]).stdout_has(&[
        "FAILED: lost or altered blocks",
        "MISSING 1 SHARD",
        "scrub --repair",
    ]);
}

#[test]
fn remote_nodes_prove_possession_with_a_small_fraction_of_the_data() {
    let mut rng = Rng::from_env("remote_audit");
    let v = TestVault::new(&[]);
    let servers: Vec<NodeServer> = (0..5)
        .map(|i| NodeServer::start(&v.tmp.path().join(format!("srv-{i}"))))
        .collect();
    let mut cfg = v.config();
    let nodes: Vec<toml::Value> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut t = toml::Table::new();
            t.insert("name".into(), format!("node-{i}").into());
            t.insert("address".into(), s.addr.clone().into());
            t.insert("insecure_plaintext".into(), true.into());
            toml::Value::Table(t)
        })
        .collect();
    cfg.insert("node".into(), toml::Value::Array(nodes));
    std::fs::write(v.root.join("qsfs.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    std::fs::remove_dir_all(v.root.join("nodes")).unwrap();
    v.put_bytes(&rng.bytes(24 << 20), "/big").success();

    let (code, r) = audit_json(&v, &["--samples", "100"]);
    assert_eq!(code, Some(0), "{r:#}");
    for (i, s) in servers.iter().enumerate() {
        let name = format!("node-{i}");
        assert_clean(&r, &name);
        let n = node(&r, &name);
        assert!(n["location"].as_str().unwrap().contains(&s.addr), "{n:#}");
        let moved = n["bytes_moved"].as_u64().unwrap();
        let held = n["bytes_held"].as_u64().unwrap();
        assert!(held > 8_000_000, "{n:#}");
        // 100 blocks and their paths: a small part of the shard.
        assert!(moved > 90 * BLOCK as u64 && moved < held / 5, "{n:#}");
    }

    // Damage the shard on one server's disk: caught through the link.
    let victim = 3;
    let files = shards_in("node-3", &servers[victim].dir);
    assert_eq!(files.len(), 1);
    let mut data = std::fs::read(&files[0].path).unwrap();
    data[HEADER + 5_000_000] ^= 0x80;
    std::fs::write(&files[0].path, data).unwrap();
    let (code, r) = audit_json(&v, &["--samples", "100"]);
    assert_eq!(code, Some(1), "{r:#}");
    let n = node(&r, "node-3");
    assert_eq!(n["verdict"], "failed", "{n:#}");
    assert_eq!(n["failed_blocks"], 100, "{n:#}");
    for i in [0, 1, 2, 4] {
        assert_clean(&r, &format!("node-{i}"));
    }
}

#[test]
fn deleted_files_leave_nothing_and_a_kept_shard_is_reported() {
    let mut rng = Rng::from_env("deletion_check");
    let v = TestVault::new(&[]);
    v.put_bytes(&rng.bytes(300_000), "/keep").success();
    v.put_bytes(&rng.bytes(200_000), "/gone").success();
    let gone = v.object_of("/gone");
    // A node that will "keep" its shard copies it aside first.
    let kept: Vec<(ShardFile, Vec<u8>)> = v
        .shards_of(&gone)
        .into_iter()
        .map(|s| {
            let data = std::fs::read(&s.path).unwrap();
            (s, data)
        })
        .collect();
    assert_eq!(kept.len(), 5);
    v.run("rm", &["/gone"]).success();

    let (code, r) = audit_json(&v, &[]);
    assert_eq!(code, Some(0), "{r:#}");
    for (s, _) in &kept {
        assert_clean(&r, &s.node);
        let d = &node(&r, &s.node)["deletion"];
        assert_eq!(d["root_matches"], true, "{d:#}");
        assert_eq!(d["expected_shards"], 1, "{d:#}");
    }

    // node-? puts its copy back: it holds a shard it should not.
    let (s, data) = &kept[2];
    std::fs::write(&s.path, data).unwrap();
    let (code, r) = audit_json(&v, &[]);
    assert_eq!(code, Some(1), "{r:#}");
    let n = node(&r, &s.node);
    // Its possession of what it should hold is fine: not accused of loss.
    assert_eq!(n["verdict"], "ok", "{n:#}");
    let d = &n["deletion"];
    assert_eq!(d["root_matches"], false, "{d:#}");
    assert_eq!(d["holds_exactly_expected"], false, "{d:#}");
    let extra = d["extra"].as_array().unwrap();
    assert_eq!(extra.len(), 1, "{d:#}");
    assert_eq!(extra[0]["object"], gone.as_str());
    assert_eq!(extra[0]["index"], s.index);
    assert!(
        extra[0]["why"].as_str().unwrap().contains("deleted"),
        "{d:#}"
    );
    assert_eq!(r["totals"]["nodes_holding_extra"], 1, "{r:#}");
    for (o, _) in kept.iter().filter(|(o, _)| o.node != s.node) {
        assert_clean(&r, &o.node);
    }
    v.run("audit", &[])
        .stdout_has(&["HOLDS 1 SHARD IT SHOULD NOT", "its object was deleted"]);
}

#[test]
fn audits_during_writes_and_deletes_accuse_nobody() {
    use qsfs::VaultPath;
    use qsfs::vault::PutSource;
    let mut rng = Rng::from_env("audit_concurrency");
    let tv = TestVault::new(&[]);
    tv.put_bytes(&rng.bytes(500_000), "/base").success();
    let v = Vault::open(&tv.root, &OpenOptions::default()).unwrap();
    let src: Vec<PathBuf> = (0..4)
        .map(|i| {
            let p = tv.scratch_path("src");
            std::fs::write(&p, rng.bytes(20_000 + i * 70_000)).unwrap();
            p
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writes = std::sync::atomic::AtomicU32::new(0);
    let (audits, writes) = std::thread::scope(|s| {
        // A writer: new files, overwrites (the old object is destroyed)
        // and deletes, as a mount would do, in the same process.
        let writer = s.spawn(|| {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writes.store(n, std::sync::atomic::Ordering::Relaxed);
                let path = VaultPath::parse(&format!("/w{}", n % 3)).unwrap();
                v.put(&PutSource::File(src[n as usize % src.len()].clone()), &path)
                    .unwrap();
                if n % 4 == 3 {
                    v.remove(&path, false).unwrap();
                }
                n += 1;
            }
            n
        });
        // Stops the writer however this thread leaves, a failed assertion
        // included: otherwise the scope would wait for it forever and a
        // failure would show as a hang.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop_guard = StopOnDrop(&stop);
        let (mut audits, mut raced) = (0, 0u64);
        // At least 3 s and 5 audits, and audits go on until the writer
        // has done 5 writes (a loaded machine may run it slowly).
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(3)
            || audits < 5
            || writes.load(std::sync::atomic::Ordering::Relaxed) < 5
        {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "the writer hardly ran in 300 s"
            );
            let r = audit_lib(
                &v,
                &AuditOptions {
                    samples: 50,
                    ..Default::default()
                },
            );
            for n in &r.nodes {
                assert_eq!(n.verdict, Verdict::Ok, "{n:#?}");
                let d = n.deletion.as_ref().unwrap();
                assert!(d.holds_exactly_expected, "{n:#?}");
                raced += d.ignored + n.changed_during_audit;
            }
            audits += 1;
        }
        drop(stop_guard);
        eprintln!("{raced} differences were work in progress and left out");
        (audits, writer.join().unwrap())
    });
    eprintln!("{audits} audits during {writes} writes");
    assert!(writes >= 5, "the writer hardly ran: {writes} writes");
}

/// A node keeps the trees of audited shards (NODE/trees/) so later audits
/// read only the challenged blocks; a saved tree must never hide damage,
/// even damage that keeps the shard file's inode, size and mtime (bit rot
/// on the disk).
#[test]
fn saved_audit_trees_never_hide_damage() {
    let mut rng = Rng::from_env("saved_trees");
    let v = TestVault::new(&[]);
    v.put_bytes(&rng.bytes(20_000), "/f").success();
    let obj = v.object_of("/f");
    let shards: Vec<ShardFile> = v.shards_of(&obj);
    // First audit: every node builds and saves its trees.
    let (code, r) = audit_json(&v, &["--samples", "50"]);
    assert_eq!(code, Some(0), "{r:#}");
    let s = &shards[1];
    let saved = common::files_under(&v.node_dir(&s.node).join("trees"));
    assert!(!saved.is_empty(), "no saved audit tree on {}", s.node);
    // Flip one bit in the payload in place, then put the mtime back.
    let before = std::fs::metadata(&s.path).unwrap();
    let mut data = std::fs::read(&s.path).unwrap();
    data[HEADER + 5] ^= 0x01;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.path)
            .unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(&data).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
    }
    // The shard has a handful of blocks: 200 samples over the node's few
    // blocks challenge the damaged one.
    let (code, r) = audit_json(&v, &["--samples", "200", "--node", &s.node]);
    assert_eq!(code, Some(1), "{r:#}");
    let n = node(&r, &s.node);
    assert_eq!(n["verdict"], "failed", "{n:#}");
    assert!(n["failed_blocks"].as_u64().unwrap() >= 1, "{n:#}");
}
