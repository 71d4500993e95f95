//! `qsfs fsck`: a healthy vault is clean; after repeated kill -9 during
//! writes (with realistic crash leftovers planted, and sometimes the intent
//! log lost so the open-time sweep cannot help) fsck finds exactly the
//! orphans an independent walk of the node folders finds, `--repair`
//! removes every one of them and nothing else; a file whose manifest is
//! gone is reported as broken and its name is never removed.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use qsfs::ObjectId;
use qsfs::vault::{OpenOptions, Vault};
use serde_json::Value;

/// `qsfs fsck VAULT [extra] --json`: the run and its parsed report.
fn fsck(v: &TestVault, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = v.run("fsck", &args);
    let report = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("fsck printed no JSON report ({e}): {}", r.stderr));
    (r, report)
}

/// The strings at `field` of every entry of the report list `list`.
fn listed(report: &Value, list: &str, field: &str) -> BTreeSet<String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("report has no list {list}: {report}"))
        .iter()
        .map(|e| e[field].as_str().unwrap().to_string())
        .collect()
}

/// Temporary files as (node, file name) from the report.
fn listed_temps(report: &Value) -> BTreeSet<(String, String)> {
    report["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = Path::new(e["file"].as_str().unwrap());
            (
                e["node"].as_str().unwrap().to_string(),
                file.file_name().unwrap().to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Orphan shard files as (node, "object/index") from the report.
fn listed_shards(report: &Value) -> BTreeSet<(String, String)> {
    report["orphan_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_string(),
                e["shard"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What should be removed, computed without fsck: node folders walked by
/// file name, manifests, names and key records read through the library.
#[derive(Debug, Default, PartialEq, Eq)]
struct Orphans {
    /// (node, "object/index") of shard files no manifest places there.
    shards: BTreeSet<(String, String)>,
    /// (node, file name) of temporary shard files.
    temps: BTreeSet<(String, String)>,
    /// Manifests no name points at.
    objects: BTreeSet<String>,
    /// Key records without manifest.
    keys: BTreeSet<String>,
    /// Backup records without manifest.
    backups: BTreeSet<String>,
}

impl Orphans {
    fn is_empty(&self) -> bool {
        *self == Orphans::default()
    }
}

/// Opens the vault through the library (which, like any command, first
/// settles what the intent log says was in flight), reads its records,
/// closes it, and then walks the node folders.
fn independent_orphans(v: &TestVault) -> Orphans {
    let (placement, named, keys, backups) = {
        let vault = Vault::open(&v.root, &OpenOptions::default()).unwrap();
        let placement: BTreeMap<String, Vec<String>> = vault
            .dispersal()
            .store()
            .manifests()
            .map(|m| {
                let m = m.unwrap();
                (m.id.to_hex(), m.placement.clone())
            })
            .collect();
        let named: HashSet<String> = vault
            .namespace()
            .referenced_objects()
            .unwrap()
            .iter()
            .map(ObjectId::to_hex)
            .collect();
        assert!(vault.namespace().gc_queue().unwrap().is_empty());
        let keys: BTreeSet<String> = vault
            .keystore()
            .ids()
            .unwrap()
            .iter()
            .map(ObjectId::to_hex)
            .collect();
        let backups: BTreeSet<String> = vault
            .dispersal()
            .store()
            .backup_ids()
            .map(|id| id.unwrap().to_hex())
            .collect();
        (placement, named, keys, backups)
    };
    let mut o = Orphans::default();
    for (node, dir) in v.nodes() {
        for f in files_under(&dir.join("shards")) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                o.temps.insert((node.clone(), name));
                continue;
            }
            let (hex, idx) = name
                .split_once('.')
                .unwrap_or_else(|| panic!("unexpected file {} on {node}", f.display()));
            let idx: usize = idx.parse().unwrap();
            let home = placement.get(hex).and_then(|p| p.get(idx));
            if home != Some(&node) {
                o.shards.insert((node.clone(), format!("{hex}/{idx}")));
            }
        }
    }
    o.objects = placement
        .keys()
        .filter(|id| !named.contains(*id))
        .cloned()
        .collect();
    let stray = |ids: BTreeSet<String>| -> BTreeSet<String> {
        ids.into_iter()
            .filter(|id| !placement.contains_key(id) && !named.contains(id))
            .collect()
    };
    o.keys = stray(keys);
    o.backups = stray(backups);
    o
}

/// Fan-out folder of `hex` on node folder `dir`.
fn fan(dir: &Path, hex: &str) -> std::path::PathBuf {
    dir.join("shards").join(&hex[..2])
}

/// Leftovers an interrupted run could leave that no intent covers:
/// a committed shard under an id nothing knows, a temporary shard file of
/// a writer that died, a stale copy of a live shard on a second node, and
/// (when `records`) key and backup records of an object never published.
/// Written with the vault closed, before any command opens it. Returns
/// (shards, temps, keys, backups) planted.
fn plant(v: &TestVault, rng: &mut Rng, i: usize, live: &str, records: bool) -> Orphans {
    let nodes = v.nodes();
    // Copies come from a live object: a shard of an object in flight would
    // go with its object when the sweep destroys it.
    let shards = v.shards_of(live);
    let mut planted = Orphans::default();
    let src = &shards[rng.index(shards.len())];
    let data = std::fs::read(&src.path).unwrap();

    let unknown = hex::encode(rng.bytes(16));
    let (node, dir) = &nodes[rng.index(nodes.len())];
    std::fs::write(fan(dir, &unknown).join(format!("{unknown}.2")), &data).unwrap();
    planted
        .shards
        .insert((node.clone(), format!("{unknown}/2")));

    let dead = hex::encode(rng.bytes(16));
    let (node, dir) = &nodes[rng.index(nodes.len())];
    let tmp = format!(".{dead}.1.{}-{i}.tmp", 3_900_000 + i);
    std::fs::write(fan(dir, &dead).join(&tmp), &data[..data.len() / 2]).unwrap();
    planted.temps.insert((node.clone(), tmp));

    // A stale copy: the same shard on another node (every node holds one
    // shard of each object, so the copy is never at its own place).
    let (node, dir) = nodes.iter().find(|(n, _)| *n != src.node).unwrap();
    std::fs::copy(
        &src.path,
        fan(dir, &src.object).join(format!("{}.{}", src.object, src.index)),
    )
    .unwrap();
    planted
        .shards
        .insert((node.clone(), format!("{}/{}", src.object, src.index)));

    if records {
        let vault_id = v.config()["vault_id"].as_str().unwrap().to_string();
        let id = ObjectId::random().unwrap();
        let ks = qsfs::internals::Keystore::open(
            &v.root.join("keys"),
            None,
            &vault_id,
            qsfs::internals::OpenMode::Existing,
            qsfs::internals::OpenMode::Existing,
            None,
        )
        .unwrap();
        ks.put_many(&[(id, [1u8; 33], [2u8; 33])]).unwrap();
        planted.keys.insert(id.to_hex());
        let other = ObjectId::random().unwrap();
        let ec = qsfs::internals::EcStore::open(
            &v.root.join("meta/ec"),
            &vault_id,
            qsfs::internals::OpenMode::Existing,
        )
        .unwrap();
        ec.update_backup(&other, &[7u8; 105]).unwrap();
        planted.backups.insert(other.to_hex());
    }
    planted
}

/// When to kill a put.
enum Kill {
    /// This long after it started.
    After(Duration),
    /// This long after its first shard write began (its intent record
    /// appeared and a temporary shard file exists): the kill lands while
    /// shards are being written.
    Writing(Duration),
}

/// True if a temporary shard file (a write not yet committed) is in any
/// node folder under `nodes`.
fn shard_write_under_way(nodes: &Path) -> bool {
    let Ok(nodes) = std::fs::read_dir(nodes) else {
        return false;
    };
    nodes.flatten().any(|node| {
        let Ok(fans) = std::fs::read_dir(node.path().join("shards")) else {
            return false;
        };
        fans.flatten().any(|fan| {
            std::fs::read_dir(fan.path()).is_ok_and(|files| {
                files.flatten().any(|f| {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with('.') && name.ends_with(".tmp")
                })
            })
        })
    })
}

/// Runs qsfs with `args` and SIGKILLs it as `when` says. True if it
/// finished (exit 0) first.
fn run_and_kill(args: &[String], when: Kill, intents: &Path) -> bool {
    const HEADER: u64 = "qsfs-intents 1\n".len() as u64;
    let mut child = qsfs_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    match when {
        Kill::After(delay) => std::thread::sleep(delay),
        Kill::Writing(delay) => {
            let start = std::time::Instant::now();
            while std::fs::metadata(intents).map(|m| m.len()).unwrap_or(0) <= HEADER
                && child.try_wait().unwrap().is_none()
                && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_micros(300));
            }
            // Then until a shard write is under way (a temporary shard
            // file exists), however slow the machine is.
            let nodes = intents
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .join("nodes");
            while !shard_write_under_way(&nodes)
                && child.try_wait().unwrap().is_none()
                && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(delay);
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    match out.status.code() {
        Some(0) => true,
        None => false,
        Some(c) => panic!(
            "qsfs {args:?} failed without being killed (exit {c}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_healthy_vault_is_clean() {
    let mut rng = Rng::from_env("fsck_healthy");
    let v = TestVault::new(&["--max-chunk", "65536"]);
    let tree = v.scratch.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for j in 0..6 {
        std::fs::write(tree.join(format!("f{j}")), rng.bytes(1000 * j)).unwrap();
    }
    std::fs::write(tree.join("sub/deep"), rng.bytes(300_000)).unwrap();
    v.run("put", &["-r", tree.to_str().unwrap(), "/tree"])
        .success();
    let big = rng.bytes(2_000_000);
    v.put_bytes(&big, "/big").success();
    v.run("rm", &["/tree/f1"]).success();
    let shards = v.shards();

    let r = v.run("fsck", &[]);
    r.success().quiet().stdout_has(&["clean", "orphan objects"]);
    let (r, report) = fsck(&v, &[]);
    r.success();
    assert_eq!(report["clean"], true, "{report}");
    let objects = report["objects"].as_u64().unwrap();
    assert!(objects >= 6, "{report}");
    assert_eq!(report["named"].as_u64(), Some(objects), "{report}");
    assert_eq!(report["shards"].as_u64(), Some(5 * objects), "{report}");
    for list in [
        "broken_files",
        "orphan_objects",
        "orphan_keys",
        "orphan_backups",
        "orphan_shards",
        "leftovers",
        "shard_problems",
    ] {
        assert_eq!(
            report[list].as_array().unwrap().len(),
            0,
            "{list}: {report}"
        );
    }
    let (r, report) = fsck(&v, &["--repair"]);
    r.success().quiet();
    assert_eq!(report["clean"], true);
    assert_eq!(
        v.shards(),
        shards,
        "a repair of a clean vault changed the nodes"
    );
    let (r, keys) = v.keys_verify();
    r.success();
    assert_eq!(keys["stray_shares"].as_array().unwrap().len(), 0);
    assert_eq!(keys["stray_backups"].as_array().unwrap().len(), 0);
    v.assert_reads("/big", &big).quiet();
}

/// What one killed (or finished) put stored: vault path -> content.
struct Put {
    files: Vec<(String, Vec<u8>)>,
    finished: bool,
}

#[test]
fn fsck_after_repeated_kill_9_removes_every_orphan() {
    let mut rng = Rng::from_env("fsck_kill9");
    let v = TestVault::new(&["--max-chunk", "65536"]);
    // Something to copy shards from from the first round on.
    let base = rng.bytes(100_000);
    v.put_bytes(&base, "/base").success();
    let base_object = v.object_of("/base");
    let mut puts: Vec<Put> = Vec::new();
    let mut found_by_fsck_alone = 0;
    const ROUNDS: usize = 9;
    for i in 0..ROUNDS {
        let local = v.scratch.join(format!("round-{i}"));
        let (args, files) = if i % 2 == 0 {
            let len = 3_000_000 + rng.index(3_000_000);
            let data = rng.bytes(len);
            std::fs::write(&local, &data).unwrap();
            let vpath = format!("/big{i}");
            (
                vec![
                    "put".to_string(),
                    v.arg(),
                    local.display().to_string(),
                    vpath.clone(),
                ],
                vec![(vpath, data)],
            )
        } else {
            std::fs::create_dir_all(&local).unwrap();
            let mut files = Vec::new();
            for j in 0..40 {
                let len = rng.index(40_000);
                let data = rng.bytes(len);
                std::fs::write(local.join(format!("f{j:02}")), &data).unwrap();
                files.push((format!("/tree{i}/f{j:02}"), data));
            }
            (
                vec![
                    "put".to_string(),
                    v.arg(),
                    "-r".into(),
                    local.display().to_string(),
                    format!("/tree{i}"),
                ],
                files,
            )
        };
        // Every third round loses its intent log after the kill, so that
        // kill lands while shards are written; a few rounds get time to
        // finish; the others die anywhere in their first 200 ms.
        let intents_lost = i % 3 == 2;
        let when = if intents_lost {
            Kill::Writing(Duration::from_millis(rng.below(20)))
        } else if i % 4 == 3 {
            Kill::After(Duration::from_millis(400 + rng.below(2000)))
        } else {
            Kill::After(Duration::from_millis(5 + rng.below(196)))
        };
        let log = v.root.join("meta/intents");
        let finished = run_and_kill(&args, when, &log);
        puts.push(Put { files, finished });

        // Before anything opens the vault again: leftovers no intent
        // covers (and, in those rounds, no intent log).
        if intents_lost {
            std::fs::write(v.root.join("meta/intents"), b"").unwrap();
        }
        let planted = plant(&v, &mut rng, i, &base_object, i % 2 == 1);

        let expected = independent_orphans(&v);
        for (what, have, want) in [
            ("shards", &planted.shards, &expected.shards),
            ("temps", &planted.temps, &expected.temps),
        ] {
            assert!(
                have.is_subset(want),
                "round {i}: planted {what} not seen by the walk"
            );
        }
        assert!(planted.keys.is_subset(&expected.keys));
        assert!(planted.backups.is_subset(&expected.backups));
        if intents_lost {
            found_by_fsck_alone +=
                expected.shards.len() + expected.temps.len() + expected.objects.len()
                    - planted.shards.len()
                    - planted.temps.len();
        }

        if i == 1 {
            // keys verify sees the planted records as strays too.
            let (_, keys) = v.keys_verify();
            let strays = |f: &str| -> BTreeSet<String> {
                keys[f]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect()
            };
            assert!(planted.keys.is_subset(&strays("stray_shares")), "{keys}");
            assert!(
                planted.backups.is_subset(&strays("stray_backups")),
                "{keys}"
            );
        }
        let (r, report) = fsck(&v, &[]);
        r.failure();
        assert_eq!(report["clean"], false);
        assert_eq!(
            listed_shards(&report),
            expected.shards,
            "round {i}: {report}"
        );
        assert_eq!(listed_temps(&report), expected.temps, "round {i}: {report}");
        assert_eq!(
            listed(&report, "orphan_objects", "object"),
            expected.objects,
            "round {i}"
        );
        assert_eq!(
            listed(&report, "orphan_keys", "object"),
            expected.keys,
            "round {i}"
        );
        assert_eq!(
            listed(&report, "orphan_backups", "object"),
            expected.backups,
            "round {i}"
        );
        assert_eq!(
            report["broken_files"].as_array().unwrap().len(),
            0,
            "{report}"
        );
        assert_eq!(
            report["shard_problems"].as_array().unwrap().len(),
            0,
            "{report}"
        );

        let names_before = v.run("ls", &["/", "--json"]).success().out();
        let (r, report) = fsck(&v, &["--repair"]);
        r.success();
        assert_eq!(report["clean"], true, "round {i}: {report}");
        assert_eq!(
            v.run("ls", &["/", "--json"]).success().out(),
            names_before,
            "round {i}: repair changed the names"
        );
        let (r, report) = fsck(&v, &[]);
        r.success();
        assert_eq!(report["clean"], true, "round {i}: {report}");
        let left = independent_orphans(&v);
        assert!(
            left.is_empty(),
            "round {i}: orphans left after repair: {left:?}"
        );
    }
    eprintln!(
        "{} puts finished, {} killed; {found_by_fsck_alone} orphans found without an intent log",
        puts.iter().filter(|p| p.finished).count(),
        puts.iter().filter(|p| !p.finished).count()
    );
    // The rounds without intent log were killed mid-write: fsck alone
    // found what they left.
    assert!(
        found_by_fsck_alone > 0,
        "no round left anything behind without its intent log"
    );

    // Every finished put reads back; a killed one left each file whole or
    // not at all.
    v.assert_reads("/base", &base).quiet();
    for p in &puts {
        for (path, data) in &p.files {
            let (r, got) = v.get_bytes(path);
            if p.finished {
                r.success();
            }
            if r.ok() {
                let got = got.unwrap();
                assert!(got == *data, "{path}: content differs");
            } else {
                r.stderr_has(&["no such file or directory"]);
            }
        }
    }
    let (r, keys) = v.keys_verify();
    r.success();
    assert_eq!(keys["stray_shares"].as_array().unwrap().len(), 0);
    assert_eq!(keys["stray_backups"].as_array().unwrap().len(), 0);
}

#[test]
fn a_name_whose_manifest_is_gone_is_reported_and_kept() {
    let mut rng = Rng::from_env("fsck_broken");
    let v = TestVault::new(&[]);
    let (a, b, c) = (rng.bytes(50_000), rng.bytes(60_000), rng.bytes(70_000));
    v.put_bytes(&a, "/a").success();
    v.put_bytes(&b, "/b").success();
    v.put_bytes(&c, "/c").success();
    let (oa, ob) = (v.object_of("/a"), v.object_of("/b"));
    {
        let vault = Vault::open(&v.root, &OpenOptions::default()).unwrap();
        let store = vault.dispersal().store();
        store
            .remove_manifests(&[ObjectId::from_hex(&oa).unwrap()])
            .unwrap();
        // /b loses only its backup record: still readable.
        store
            .remove_backups(&[ObjectId::from_hex(&ob).unwrap()])
            .unwrap();
    }
    let shards_a = v.shards_of(&oa);
    assert_eq!(shards_a.len(), 5);

    for extra in [&[][..], &["--repair"][..]] {
        let (r, report) = fsck(&v, extra);
        r.failure();
        assert_eq!(report["clean"], false);
        let broken = report["broken_files"].as_array().unwrap();
        assert_eq!(broken.len(), 2, "{report}");
        assert_eq!(broken[0]["path"], if oa < ob { "/a" } else { "/b" });
        let by_path = |p: &str| broken.iter().find(|x| x["path"] == p).unwrap().clone();
        let ba = by_path("/a");
        assert_eq!(ba["object"], oa.as_str());
        assert_eq!(ba["readable"], false);
        assert_eq!(ba["problems"][0]["problem"], "manifest-missing");
        let bb = by_path("/b");
        assert_eq!(bb["readable"], true);
        assert_eq!(bb["problems"][0]["problem"], "key");
        assert_eq!(bb["problems"][0]["issue"], "backup-missing");
        // The pieces of the broken file are not orphans.
        for list in [
            "orphan_objects",
            "orphan_keys",
            "orphan_shards",
            "leftovers",
        ] {
            assert_eq!(
                report[list].as_array().unwrap().len(),
                0,
                "{list}: {report}"
            );
        }
    }
    let text = v.run("fsck", &[]);
    text.failure().stdout_has(&[
        "broken file /a",
        "UNREADABLE",
        "broken file /b",
        "keys repair",
    ]);
    // Names and the broken file's shards are all still there.
    v.run("ls", &["/a"]).success();
    assert_eq!(v.shards_of(&oa), shards_a);
    v.assert_reads("/c", &c).quiet();
    v.assert_reads("/b", &b);

    // keys verify sees both; keys repair heals /b but cannot help /a.
    let (r, keys) = v.keys_verify();
    r.failure();
    let problems = keys["problems"].as_array().unwrap();
    let issue_of = |o: &str| {
        problems.iter().find(|p| p["object"] == o).unwrap()["issues"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(issue_of(&oa), "manifest-missing");
    assert_eq!(issue_of(&ob), "backup-missing");
    assert_eq!(keys["stray_shares"].as_array().unwrap().len(), 0, "{keys}");
    assert_eq!(keys["stray_backups"].as_array().unwrap().len(), 0, "{keys}");
    let (r, _) = v.keys_repair();
    r.failure();
    let (_, report) = fsck(&v, &[]);
    let broken = report["broken_files"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{report}");
    assert_eq!(broken[0]["path"], "/a");
}

/// The row of node `name` in a status or fsck report list.
fn node_row<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|n| n[key] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {list:#}"))
}

/// Per node, fsck's "missing" shard problems, from its list of problems.
fn fsck_missing_by_node(report: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in report["shard_problems"].as_array().unwrap() {
        if p["fault"]["problem"] == "missing" {
            *out.entry(p["node"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// Asserts that `qsfs status` counts what `qsfs fsck` finds: per node the
/// shard files held and the placed shards missing, and the totals.
#[track_caller]
fn assert_status_agrees_with_fsck(st: &Value, report: &Value) {
    let by_node = fsck_missing_by_node(report);
    let total: u64 = by_node.values().sum();
    assert_eq!(
        st["placed_missing"].as_u64(),
        Some(total),
        "status placed_missing vs fsck's missing shards\nstatus: {st:#}\nfsck: {report:#}"
    );
    for n in report["nodes"].as_array().unwrap() {
        let name = n["node"].as_str().unwrap();
        let s = node_row(&st["nodes"], "name", name);
        let missing = by_node.get(name).copied().unwrap_or(0);
        assert_eq!(n["missing"].as_u64(), Some(missing), "fsck {name}: {n:#}");
        assert_eq!(
            s["placed_missing"].as_u64(),
            Some(missing),
            "status {name} placed_missing vs fsck: {s:#}"
        );
        assert_eq!(
            s["shards_found"], n["shards"],
            "status {name} shards_found vs fsck's shard files: {s:#} {n:#}"
        );
        assert_eq!(
            s["not_checked"], n["not_checked"],
            "status and fsck disagree on whether {name} was checked"
        );
    }
}

/// One node loses every shard file (its marker stays): `qsfs status`
/// counts per node what is really there, and its `placed_missing` (per
/// node and in total) is exactly what `qsfs fsck` lists as missing. After
/// `fsck --repair` the same shards are repair debt (`shards_unplaced`),
/// and `scrub --repair` brings every count back to 0.
#[test]
fn status_counts_what_fsck_finds_when_a_node_loses_its_shards() {
    let mut rng = Rng::from_env("status_counts_lost_shards");
    let v = TestVault::new(&["--max-chunk", "65536"]);
    let mut files = Vec::new();
    for i in 0..6 {
        let data = rng.bytes(5_000 + 40_000 * i);
        let path = format!("/f{i}");
        v.put_bytes(&data, &path).success();
        files.push((path, data));
    }
    let st = v.status();
    for key in ["placed_missing", "shards_unplaced", "placed_unchecked"] {
        assert_eq!(st[key], 0, "{key} on a healthy vault: {st:#}");
    }
    let (r, report) = fsck(&v, &[]);
    r.success();
    assert_status_agrees_with_fsck(&st, &report);

    let victim = "node-1";
    let lost: Vec<ShardFile> = v
        .shards()
        .into_iter()
        .filter(|s| s.node == victim)
        .collect();
    assert_eq!(lost.len(), files.len(), "node-1 holds one shard per file");
    for s in &lost {
        std::fs::remove_file(&s.path).unwrap();
    }
    assert!(v.node_dir(victim).join("qsfs-node").exists());

    let st = v.status();
    let (r, report) = fsck(&v, &[]);
    r.failure();
    assert_status_agrees_with_fsck(&st, &report);
    let n = lost.len() as u64;
    assert_eq!(st["placed_missing"], n, "{st:#}");
    assert_eq!(st["shards_unplaced"], 0, "nothing recorded yet: {st:#}");
    assert_eq!(st["placed_unchecked"], 0, "{st:#}");
    let row = node_row(&st["nodes"], "name", victim);
    assert_eq!(row["shards_found"], 0, "{row:#}");
    assert_eq!(row["shards_expected"], n, "{row:#}");
    assert_eq!(row["placed_missing"], n, "{row:#}");
    assert_eq!(row["shards_missing"], n, "{row:#}");
    assert_eq!(
        fsck_missing_by_node(&report),
        BTreeMap::from([(victim.to_string(), n)])
    );
    let text = v.run("status", &[]);
    text.success().stdout_has(&[
        "unplaced  0 shards",
        &format!("missing   {n} shards"),
        &format!("{victim} {n}"),
        "nothing recorded as owed",
    ]);

    // fsck --repair records them as repair debt: the catalogue knows now.
    let (r, _) = fsck(&v, &["--repair"]);
    r.success();
    let st = v.status();
    let (r, report) = fsck(&v, &[]);
    r.success();
    assert_status_agrees_with_fsck(&st, &report);
    assert_eq!(st["placed_missing"], 0, "{st:#}");
    assert_eq!(st["shards_unplaced"], n, "{st:#}");
    assert_eq!(st["missing_shards"], n, "{st:#}");
    let row = node_row(&st["nodes"], "name", victim);
    assert_eq!(row["shards_unplaced"], n, "{row:#}");
    assert_eq!(row["placed_missing"], 0, "{row:#}");
    assert_eq!(row["shards_found"], 0, "{row:#}");
    v.run("status", &[])
        .success()
        .stdout_has(&[&format!("unplaced  {n} shards"), "missing   0 shards"]);

    // scrub --repair rebuilds them where they were: every count is 0.
    v.run("scrub", &["--repair"]).success();
    let st = v.status();
    for key in ["placed_missing", "shards_unplaced", "placed_unchecked"] {
        assert_eq!(st[key], 0, "{key} after the repair: {st:#}");
    }
    assert_eq!(node_row(&st["nodes"], "name", victim)["shards_found"], n);
    for (p, data) in &files {
        v.assert_reads(p, data).quiet();
    }
}

/// A node folder that is gone entirely: fsck names the node "not
/// checked" with the typed reason `folder-missing` and a next step that
/// names the real commands, counts it in a "nodes not checked" row and
/// exits 1 (also with --repair, which records nothing for it); `qsfs
/// status` leaves the same node unchecked and counts its shards as
/// `placed_unchecked`, not missing. An empty folder in its place is "not
/// checked" too (`no-marker`: it may be a disk that is not mounted) until
/// `qsfs node adopt` takes it into use; then both count its shards as
/// missing, and `scrub --repair` rebuilds them.
#[test]
fn a_missing_node_folder_is_not_checked_and_says_what_to_do() {
    let mut rng = Rng::from_env("fsck_missing_node_folder");
    let v = TestVault::new(&[]);
    let mut files = Vec::new();
    for i in 0..4 {
        let data = rng.bytes(20_000 + 30_000 * i);
        let path = format!("/f{i}");
        v.put_bytes(&data, &path).success();
        files.push((path, data));
    }
    let victim = "node-3";
    let dir = v.node_dir(victim);
    std::fs::remove_dir_all(&dir).unwrap();
    let n = files.len() as u64;

    for extra in [&[][..], &["--repair"][..]] {
        let (r, report) = fsck(&v, extra);
        r.failure()
            .stderr_has(&["1 node not checked (node-3)", "NOT CHECKED"]);
        assert_eq!(report["clean"], false, "{report:#}");
        assert_eq!(report["nodes_not_checked"], 1, "{report:#}");
        let row = node_row(&report["nodes"], "node", victim);
        assert_eq!(row["not_checked"]["reason"], "folder-missing", "{row:#}");
        assert_eq!(
            row["not_checked"]["path"],
            dir.display().to_string(),
            "{row:#}"
        );
        let next = row["next_step"].as_str().unwrap();
        for want in [
            "restore the folder",
            &format!("qsfs node adopt {} {victim}", v.arg()),
            "qsfs umount",
            "--repair",
        ] {
            assert!(next.contains(want), "{want:?} not in the next step: {next}");
        }
        // Its shards were not looked at: no verdict on them.
        assert_eq!(report["shard_problems"].as_array().unwrap().len(), 0);
        for other in report["nodes"].as_array().unwrap() {
            if other["node"] != victim {
                assert_eq!(other["not_checked"], Value::Null, "{other:#}");
            }
        }
    }
    let text = v.run("fsck", &[]);
    assert_eq!(text.code, Some(1), "{}", text.out());
    let out = text.out();
    assert!(
        out.lines()
            .any(|l| l.starts_with("node node-3: NOT CHECKED: its folder")
                && l.contains("is missing; next: restore the folder")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["nodes", "not", "checked", "1", "-"]),
        "{out}"
    );

    let st = v.status();
    let (_, report) = fsck(&v, &[]);
    assert_status_agrees_with_fsck(&st, &report);
    let row = node_row(&st["nodes"], "name", victim);
    assert_eq!(row["not_checked"]["reason"], "folder-missing", "{row:#}");
    assert_eq!(row["health"]["state"], "offline", "{row:#}");
    assert_eq!(row["placed_unchecked"], n, "{row:#}");
    assert_eq!(row["placed_missing"], 0, "{row:#}");
    assert_eq!(st["placed_unchecked"], n, "{st:#}");
    assert_eq!(st["placed_missing"], 0, "{st:#}");
    assert_eq!(
        st["shards_unplaced"], 0,
        "fsck --repair recorded nothing: {st:#}"
    );
    v.run("status", &[]).success().stdout_has(&[
        &format!("unchecked {n} shards"),
        "node-3: its folder",
        "shards not checked",
        "qsfs node adopt",
    ]);

    // An empty folder in its place (a new disk, or a disk not mounted).
    std::fs::create_dir(&dir).unwrap();
    let (r, report) = fsck(&v, &[]);
    r.failure();
    let row = node_row(&report["nodes"], "node", victim);
    assert_eq!(row["not_checked"]["reason"], "no-marker", "{row:#}");
    assert!(
        row["next_step"].as_str().unwrap().contains("mount it"),
        "{row:#}"
    );
    assert_status_agrees_with_fsck(&v.status(), &report);

    // Adopted: checked again, and both count its shards missing.
    qsfs(&["node", "adopt", &v.arg(), victim]).success();
    let (r, report) = fsck(&v, &[]);
    r.failure();
    assert_eq!(report["nodes_not_checked"], 0, "{report:#}");
    let st = v.status();
    assert_status_agrees_with_fsck(&st, &report);
    assert_eq!(st["placed_missing"], n, "{st:#}");
    assert_eq!(st["placed_unchecked"], 0, "{st:#}");
    v.run("scrub", &["--repair"]).success();
    let (r, report) = fsck(&v, &[]);
    r.success();
    assert_eq!(report["clean"], true, "{report:#}");
    for (p, data) in &files {
        v.assert_reads(p, data).quiet();
    }
}

/// Only staged file data (`<ino>`, `<ino>.<piece>`) counts as files in the
/// staging folder: the journal and stock folders a mount keeps there, and
/// anything else (`7.journal`, `stock-3`, notes), do not.
#[test]
fn only_staged_file_data_counts_in_the_staging_folder() {
    let v = TestVault::new(&[]);
    let staging = v.root.join("staging");
    std::fs::create_dir_all(staging.join("journal")).unwrap();
    std::fs::create_dir_all(staging.join("stock")).unwrap();
    std::fs::write(staging.join("stock/.stock.4242.1.tmp"), b"").unwrap();
    for other in ["7.journal", "stock-3", "notes.txt", "+9", "9."] {
        std::fs::write(staging.join(other), b"x").unwrap();
    }
    std::fs::create_dir(staging.join("55")).unwrap(); // a folder, not data
    let (r, report) = fsck(&v, &[]);
    r.success();
    assert_eq!(
        report["staging"]["files"],
        serde_json::json!([]),
        "{report:#}"
    );
    v.run("fsck", &[])
        .success()
        .stdout_has(&["0 files in the staging folder"]);

    // Staged pieces as a mount names them do count.
    std::fs::write(staging.join("12"), b"data").unwrap();
    std::fs::write(staging.join("12.1"), b"data").unwrap();
    let (_, report) = fsck(&v, &[]);
    assert_eq!(
        report["staging"]["files"],
        serde_json::json!(["12", "12.1"]),
        "{report:#}"
    );
    v.run("fsck", &[])
        .stdout_has(&["2 files in the staging folder"]);
}
