//! Vault safety when its own folders are damaged or misconfigured: a
//! missing store is an error, never a fresh empty one; cleanups after a
//! crash touch only what was in flight; a damaged manifest or a missing
//! random source never locks the user out of their other files; a node
//! folder of another vault is never written to or emptied; `get` never
//! replaces a device or FIFO; wide codes do not run out of descriptors.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;

use common::*;

/// Puts a few files and returns them with their contents.
fn three_files(v: &TestVault, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = ["/a", "/b", "/c"]
        .iter()
        .map(|p| (p.to_string(), rng.bytes(30_000)))
        .collect();
    for (p, d) in &files {
        v.put_bytes(d, p).success().quiet();
    }
    files
}

fn shard_count(v: &TestVault) -> usize {
    v.shards().len()
}

#[test]
fn a_missing_store_is_an_error_not_an_empty_vault() {
    let mut rng = Rng::from_env("missing_store");
    let v = TestVault::new(&[]);
    let files = three_files(&v, &mut rng);
    let shards = shard_count(&v);
    for store in ["meta/ns", "meta/ec", "keys"] {
        let dir = v.root.join(store);
        let away = v.root.join("away");
        std::fs::rename(&dir, &away).unwrap();
        for cmd in [&["ls"][..], &["status"][..], &["get", "/a", "-"][..]] {
            let r = v.run(cmd[0], &cmd[1..]);
            r.failure()
                .stderr_has(&[&dir.display().to_string(), "missing"]);
        }
        assert!(!dir.exists(), "{store} was recreated");
        // Even after a crash (an in-flight intent), nothing is swept.
        std::fs::rename(&away, &dir).unwrap();
        assert_eq!(
            shard_count(&v),
            shards,
            "shards went missing while {store} was away"
        );
    }
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
}

#[test]
fn a_store_from_another_vault_is_refused() {
    let mut rng = Rng::from_env("foreign_store");
    let v = TestVault::new(&[]);
    let other = TestVault::new(&[]);
    let files = three_files(&v, &mut rng);
    let ns = v.root.join("meta/ns");
    let saved = v.root.join("ns-saved");
    std::fs::rename(&ns, &saved).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(other.root.join("meta/ns"))
        .arg(&ns)
        .status()
        .unwrap();
    assert!(status.success());
    v.run("ls", &[]).failure().stderr_has(&[
        "belongs to vault",
        other.config()["vault_id"].as_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&ns).unwrap();
    std::fs::rename(&saved, &ns).unwrap();
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
}

#[test]
fn a_damaged_manifest_in_the_deletion_queue_does_not_lock_the_vault() {
    let mut rng = Rng::from_env("damaged_manifest_gc");
    let v = TestVault::new(&[]);
    let files = three_files(&v, &mut rng);
    let b = v.object_of("/b");
    // Damage /b's manifest (version byte) with the store closed.
    {
        let db = qsfs::internals::Db::open(&v.root.join("meta/ec"), "test").unwrap();
        let mut key = vec![b'm'];
        key.extend(hex::decode(&b).unwrap());
        let mut m = db.get(&key).unwrap().unwrap();
        m[0] = 9;
        db.insert(&key, &m).unwrap();
        db.flush_durable().unwrap();
    }
    // Removing it still works (its shards are found by id), and the vault
    // stays usable for every other file.
    v.run("rm", &["/b"]).success();
    assert!(
        v.shards_of(&b).is_empty(),
        "shards of the removed file stayed"
    );
    for (p, d) in files.iter().filter(|(p, _)| p != "/b") {
        v.assert_reads(p, d).quiet();
    }
    v.run("status", &[]).success();
    let (r, _) = v.keys_verify();
    r.success();
}

#[test]
fn crash_cleanup_touches_only_what_was_in_flight() {
    let mut rng = Rng::from_env("bounded_sweep");
    let v = TestVault::new(&[]);
    let files = three_files(&v, &mut rng);
    let shards = shard_count(&v);
    // An interrupted run left intents: one for a named object (its write
    // finished), one for an object that never got named.
    let named = v.object_of("/a");
    let stray = "00112233445566778899aabbccddeeff";
    let log = v.root.join("meta/intents");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(&format!("+ {named}\n+ {stray}\n"));
    std::fs::write(&log, text).unwrap();
    // A temporary shard file of the stray object, as a killed write leaves.
    let fan = v.node_dir("node-2").join("shards").join(&stray[..2]);
    std::fs::create_dir_all(&fan).unwrap();
    std::fs::write(fan.join(format!(".{stray}.2.99-1.tmp")), b"partial").unwrap();
    // And a loose shard-looking file that no intent names: left alone.
    std::fs::write(
        fan.join("ffeeddccbbaa99887766554433221100.1"),
        b"not ours to judge",
    )
    .unwrap();

    v.run("status", &[]).success();
    assert!(
        !fan.join(format!(".{stray}.2.99-1.tmp")).exists(),
        "the in-flight temp file stayed"
    );
    assert!(
        fan.join("ffeeddccbbaa99887766554433221100.1").exists(),
        "the sweep removed a file no intent names"
    );
    assert_eq!(
        shard_count(&v),
        shards + 1,
        "the sweep touched committed shards"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "qsfs-intents 1\n");
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
}

#[test]
fn another_vaults_node_folder_is_never_written_or_emptied() {
    let mut rng = Rng::from_env("foreign_node");
    let a = TestVault::new(&[]);
    let a_files = three_files(&a, &mut rng);
    let a_shards = a.shards_of(&a.object_of("/a")).len();
    let b = TestVault::new(&[]);
    // B's node-4 is misconfigured to A's node-4 folder.
    let cfg = b.root.join("qsfs.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let a_node4 = a.node_dir("node-4").display().to_string();
    let text = text.replace("path = \"nodes/node-4\"", &format!("path = {a_node4:?}"));
    std::fs::write(&cfg, text).unwrap();
    let before = snapshot(&a.node_dir("node-4"));
    for i in 0..4 {
        b.put_bytes(&rng.bytes(5000), &format!("/x{i}"))
            .success()
            .stderr_has(&["node-4", "belongs to another vault"]);
    }
    b.run("rm", &["/x0"]).success();
    // A crash in B with an in-flight intent, then a sweep.
    std::fs::write(
        b.root.join("meta/intents"),
        format!("qsfs-intents 1\n+ {}\n", a.object_of("/a")),
    )
    .unwrap();
    b.run("status", &[]).success();
    assert_same_tree(
        &before,
        &snapshot(&a.node_dir("node-4")),
        "vault A's node-4 folder",
    );
    assert_eq!(a.shards_of(&a.object_of("/a")).len(), a_shards);
    for (p, d) in &a_files {
        a.assert_reads(p, d).quiet();
    }
}

#[test]
fn reads_work_while_the_random_pool_is_away() {
    let mut rng = Rng::from_env("pool_away");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let pool = tmp.path().join("qrng.bin");
    std::fs::write(&pool, rng.bytes(64 * 1024)).unwrap();
    let v = TestVault::new_in(tmp, &["--random", &format!("pool:{}", pool.display())]);
    let files = three_files(&v, &mut rng);
    let away = pool.with_extension("away");
    std::fs::rename(&pool, &away).unwrap();
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
    v.run("ls", &[]).success();
    v.run("rm", &["/c"]).success();
    let st = v.status();
    assert!(
        st["random"]["note"]
            .as_str()
            .unwrap()
            .contains("UNAVAILABLE"),
        "{st:#}"
    );
    v.put_bytes(b"new", "/new")
        .failure()
        .stderr_has(&[&pool.display().to_string()]);
    std::fs::rename(&away, &pool).unwrap();
    v.put_bytes(b"new", "/new").success();
}

#[test]
fn get_writes_into_devices_and_fifos_instead_of_replacing_them() {
    let mut rng = Rng::from_env("get_special");
    let v = TestVault::new(&[]);
    let data = rng.bytes(200_000);
    v.put_bytes(&data, "/f").success();
    // /dev/null stays a character device.
    v.run("get", &["/f", "/dev/null"]).success();
    let m = std::fs::metadata("/dev/null").unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()),
        "/dev/null was replaced"
    );
    // A FIFO receives the bytes and stays a FIFO.
    let fifo = v.scratch_path("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    v.run("get", &["/f", fifo.to_str().unwrap()]).success();
    assert_eq!(reader.join().unwrap(), data);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(&fifo).unwrap().file_type()
    ));
    // A symlink is followed: its target gets the bytes, the link stays.
    let target = v.scratch_path("target");
    std::fs::write(&target, b"old").unwrap();
    let link = v.scratch_path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    v.run("get", &["/f", link.to_str().unwrap()]).success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), data);
}

/// A 16-of-32 vault stores a tree under a tight descriptor limit: 256 for
/// node folders reached directly; 512 with in-process QKD links, where
/// each node also holds its two key pool files, a listener and both ends
/// of its connections.
fn wide_code_within(limit: u32, init: &[&str]) {
    let mut rng = Rng::from_env("wide_code_fds");
    let v = TestVault::new(init);
    let dir = v.scratch_path("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for i in 0..64 {
        let d = rng.bytes(2000 + i * 10);
        std::fs::write(dir.join(format!("f{i}")), &d).unwrap();
        files.push((format!("/t/f{i}"), d));
    }
    let script = format!(
        "ulimit -n {limit} && exec {} put -r {} {} /t",
        bin(),
        v.arg(),
        dir.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = v.status();
    assert_eq!(st["degraded_objects"], 0, "{st:#}");
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
}

#[test]
fn wide_codes_do_not_run_out_of_descriptors() {
    wide_code_within(256, &["--k", "16", "--n", "32", "--direct"]);
    wide_code_within(512, &["--k", "16", "--n", "32"]);
}

#[test]
fn a_name_that_cannot_exist_is_refused_before_sealing() {
    let v = TestVault::new(&[]);
    let long = format!("/{}", "x".repeat(300));
    v.put_bytes(b"data", &long)
        .failure()
        .stderr_has(&["name longer than 255 bytes"]);
    let st = v.status();
    assert_eq!(st["objects"], 0, "{st:#}");
    assert!(v.shards().is_empty());
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["stray_shares"], serde_json::json!([]));
}
