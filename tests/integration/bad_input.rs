//! Bad input: every refusal is a clear message naming what is wrong (the
//! vault path, `qsfs.toml` and the setting, the vault file, the pool file),
//! exit status 1, and nothing changed (the vault folder tree, with sizes
//! and BLAKE3 of every file, is the same before and after).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::*;

/// Every vault command, run against `vault` (a path that is not a usable
/// vault), with local files in `scratch`.
fn every_command(vault: &str, scratch: &Path) -> Vec<Vec<String>> {
    let local = scratch.join("local.txt");
    std::fs::write(&local, b"some bytes").unwrap();
    let out = scratch.join("out.txt");
    let l = local.display().to_string();
    let o = out.display().to_string();
    [
        vec!["ls", vault],
        vec!["ls", vault, "/", "-l"],
        vec!["status", vault],
        vec!["status", vault, "--json"],
        vec!["put", vault, &l, "/x"],
        vec!["get", vault, "/x", &o],
        vec!["rm", vault, "/x"],
        vec!["mkdir", vault, "/d"],
        vec!["keys", "verify", vault],
        vec!["keys", "repair", vault],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn missing_vault_path() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("no-such-vault");
    let v = vault.display().to_string();
    for cmd in every_command(&v, tmp.path()) {
        let snap = snapshot(tmp.path());
        qsfs(&cmd)
            .failure()
            .stderr_has(&[&format!("no vault at {v}: create one with `qsfs init {v}`")]);
        assert!(!vault.exists(), "{cmd:?} created the vault folder");
        assert_same_tree(&snap, &snapshot(tmp.path()), &format!("{cmd:?}"));
    }
}

#[test]
fn folder_that_is_not_a_vault() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, content) in [("empty", None), ("documents", Some("notes.txt"))] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        if let Some(f) = content {
            std::fs::write(dir.join(f), b"my notes").unwrap();
        }
        let d = dir.display().to_string();
        let scratch = tmp.path().join(format!("scratch-{name}"));
        std::fs::create_dir(&scratch).unwrap();
        for cmd in every_command(&d, &scratch) {
            let before = snapshot(tmp.path());
            qsfs(&cmd)
                .failure()
                .stderr_has(&[&format!("{d} is not a qsfs vault (it has no qsfs.toml)")]);
            // Not even a lock file is left behind.
            assert_same_tree(&before, &snapshot(tmp.path()), &format!("{cmd:?}"));
        }
    }
}

/// A vault whose `qsfs.toml` was edited by `edit`; every command fails
/// with a message naming the file and containing `fragments`, and changes
/// nothing.
fn broken_config(what: &str, edit: impl Fn(&str) -> String, fragments: &[&str]) {
    let v = TestVault::new(&[]);
    v.put_bytes(b"hello", "/hello").success();
    v.run("ls", &[]).success(); // settle the stores
    let toml = v.root.join("qsfs.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "{what}: the edit changed nothing");
    std::fs::write(&toml, &edited).unwrap();
    let file = toml.display().to_string();
    for cmd in every_command(&v.arg(), &v.scratch) {
        let before = vault_snapshot(&v.root);
        let r = qsfs(&cmd);
        r.failure();
        let err = r
            .stderr
            .lines()
            .find(|l| l.starts_with("qsfs: error:"))
            .unwrap();
        assert!(
            err.starts_with(&format!("qsfs: error: {file}: ")),
            "{what}: {cmd:?}: error does not name {file}: {err}"
        );
        r.stderr_has(fragments);
        assert_same_tree(
            &before,
            &vault_snapshot(&v.root),
            &format!("{what}: {cmd:?}"),
        );
    }
    // Fixing the file brings the vault back.
    std::fs::write(&toml, &text).unwrap();
    v.assert_reads("/hello", b"hello").quiet();
}

#[test]
fn config_syntax_error() {
    broken_config(
        "syntax error",
        |t| t.replacen("k = 3", "k = = 3", 1),
        &["TOML parse error", "k = = 3"],
    );
}

#[test]
fn config_unknown_key() {
    broken_config(
        "unknown key",
        |t| t.replacen("k = 3\n", "k = 3\nreplicas = 2\n", 1),
        &["unknown field `replicas`"],
    );
}

#[test]
fn config_unknown_key_in_a_node() {
    broken_config(
        "unknown node key",
        |t| t.replacen("kind = \"dir\"\n", "kind = \"dir\"\nsize = \"1T\"\n", 1),
        &["unknown field `size`"],
    );
}

#[test]
fn config_k_not_below_n() {
    broken_config(
        "k >= n",
        |t| t.replacen("k = 3\n", "k = 5\n", 1),
        &["k = 5, n = 5", "need 1 <= k < n"],
    );
}

#[test]
fn config_too_few_nodes() {
    broken_config(
        "too few nodes",
        |t| t[..t.rfind("[[node]]").unwrap()].to_string(),
        &["4 [[node]] entries, but n = 5 needs at least 5"],
    );
}

#[test]
fn config_bad_node_kind() {
    broken_config(
        "bad node kind",
        |t| t.replacen("kind = \"dir\"", "kind = \"s3\"", 1),
        &["node \"node-0\": unknown kind \"s3\" (known: \"dir\", \"remote\")"],
    );
}

#[test]
fn config_bad_quorum_and_chunk() {
    broken_config(
        "quorum above n",
        |t| t.replacen("k = 3\n", "k = 3\nwrite_quorum = 6\n", 1),
        &["write_quorum = 6 must be between k = 3 and n = 5"],
    );
    broken_config(
        "tiny max_chunk",
        |t| t.replacen("max_chunk = 1048576", "max_chunk = 100", 1),
        &["max_chunk = 100 must be between 4096"],
    );
}

#[test]
fn unknown_and_wrong_vault_paths() {
    let v = TestVault::new(&[]);
    v.run("mkdir", &["/docs"]).success();
    v.put_bytes(b"keep me", "/docs/a.txt").success();
    v.run("ls", &[]).success();
    let out = v.scratch.join("out");
    let o = out.to_str().unwrap();
    let local = v.scratch.join("local");
    std::fs::write(&local, b"new content").unwrap();
    let l = local.to_str().unwrap();
    // A local file whose name is taken by a vault folder.
    v.run("mkdir", &["/docs/sub"]).success();
    let sub = v.scratch.join("sub");
    std::fs::write(&sub, b"a file called sub").unwrap();
    let sub_l = sub.to_str().unwrap();
    v.run("ls", &[]).success(); // settle the stores before the snapshots
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["get", "/nope", o],
            "/nope: no such file or directory in the vault",
        ),
        (
            vec!["get", "/docs/nope.txt", o],
            "/docs/nope.txt: no such file or directory in the vault",
        ),
        (vec!["get", "/docs", o], "/docs: is a directory"),
        (vec!["get", "/docs/a.txt/x", o], "not a directory"),
        (
            vec!["ls", "/nope"],
            "/nope: no such file or directory in the vault",
        ),
        (
            vec!["rm", "/nope"],
            "/nope: no such file or directory in the vault",
        ),
        (vec!["rm", "/docs"], "/docs: directory not empty"),
        (vec!["rm", "/"], "the root cannot be removed"),
        (
            vec!["put", l, "/missing/parent/f"],
            "/missing: no such file or directory in the vault",
        ),
        (vec!["put", l, "/docs/a.txt/x"], "not a directory"),
        (vec!["put", sub_l, "/docs"], "/docs/sub: is a directory"),
        (vec!["put", l, "/../x"], "`..` is not allowed"),
        (
            vec!["put", "/no/such/local/file", "/x"],
            "cannot read /no/such/local/file",
        ),
        (vec!["mkdir", "/docs"], "/docs: already exists"),
        (
            vec!["mkdir", "/a/b/c"],
            "/a: no such file or directory in the vault",
        ),
    ];
    for (args, fragment) in cases {
        let before = vault_snapshot(&v.root);
        let nodes_before: Vec<Snapshot> = v.nodes().iter().map(|(_, d)| snapshot(d)).collect();
        let r = v.run(args[0], &args[1..]);
        r.failure().stderr_has(&[fragment]);
        assert!(!out.exists(), "{args:?} created the output file");
        assert_same_tree(&before, &vault_snapshot(&v.root), &format!("{args:?}"));
        for (b, (_, d)) in nodes_before.iter().zip(v.nodes()) {
            assert_same_tree(b, &snapshot(&d), &format!("{args:?}: node folder"));
        }
    }
    v.assert_reads("/docs/a.txt", b"keep me").quiet();
}

#[test]
fn bad_init_options() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("new-vault");
    let t = target.display().to_string();
    let full = tmp.path().join("full-node");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("photo.jpg"), b"not mine").unwrap();
    let nodes = (0..4)
        .map(|i| tmp.path().join(format!("n{i}")).display().to_string())
        .collect::<Vec<_>>();
    let nodes_with_full = format!("{},{}", nodes.join(","), full.display());
    let not_empty = format!("node folder {} is not empty", full.display());
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--k", "5", "--n", "3"],
            vec!["qsfs init options", "k = 5, n = 3", "need 1 <= k < n <= 32"],
        ),
        (
            vec!["--n", "40"],
            vec!["qsfs init options", "k = 3, n = 40", "<= 32"],
        ),
        (vec!["--k", "0"], vec!["qsfs init options", "k = 0, n = 5"]),
        (
            vec!["--quorum", "7"],
            vec![
                "qsfs init options",
                "write_quorum = 7 must be between k = 3 and n = 5",
            ],
        ),
        (
            vec!["--quorum", "2"],
            vec!["write_quorum = 2 must be between k = 3 and n = 5"],
        ),
        (
            vec!["--max-chunk", "10"],
            vec!["max_chunk = 10 must be between 4096"],
        ),
        (
            vec!["--random", "dice"],
            vec!["--random \"dice\": expected `os`, `device:PATH` or `pool:FILE`"],
        ),
        (
            vec!["--random", "pool:/no/such/pool.bin"],
            vec!["random pool file /no/such/pool.bin does not exist"],
        ),
        (
            vec!["--random", "device:/dev/no-such-rng"],
            vec!["random device /dev/no-such-rng does not exist"],
        ),
        (vec!["--nodes", &nodes_with_full], vec![&not_empty]),
        (
            vec!["--n", "5", "--nodes", "/tmp/a,/tmp/b"],
            vec!["2 [[node]] entries, but n = 5 needs at least 5"],
        ),
    ];
    for (args, fragments) in cases {
        let before = snapshot(tmp.path());
        let mut a = vec!["init", t.as_str()];
        a.extend(&args);
        qsfs(&a).failure().stderr_has(&fragments);
        assert!(!target.exists(), "init {args:?} created the vault folder");
        assert_same_tree(&before, &snapshot(tmp.path()), &format!("init {args:?}"));
    }

    // Into a non-empty folder (a vault or anything else): refused, untouched.
    let v = TestVault::new(&[]);
    v.put_bytes(b"data", "/f").success();
    v.run("ls", &[]).success();
    for dir in [v.root.clone(), full.clone()] {
        let before = snapshot(&dir);
        qsfs(&["init", dir.to_str().unwrap()])
            .failure()
            .stderr_has(&[&format!(
                "{} already exists and is not empty",
                dir.display()
            )]);
        assert_same_tree(&before, &snapshot(&dir), "init into a non-empty folder");
    }
    // An existing empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    qsfs(&["init", empty.to_str().unwrap()]).success();
}

#[test]
fn exhausted_random_pool() {
    let mut rng = Rng::from_env("exhausted_random_pool");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let qrng = tmp.path().join("qrng");
    std::fs::create_dir(&qrng).unwrap();
    let pool = qrng.join("pool.bin");
    // Two 4 KiB blocks: every qsfs process reserves a whole block on its
    // first draw (and never serves it again), so two puts fit.
    std::fs::write(&pool, rng.bytes(8192)).unwrap();
    let p = pool.display().to_string();
    let v = TestVault::new_in(tmp, &["--random", &format!("pool:{p}")]);
    let st = v.status();
    assert_eq!(st["random"]["kind"], "pool");
    assert_eq!(st["random"]["remaining"], 8192);

    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failed = None;
    for i in 0..10 {
        let data = rng.bytes(1000 + i * 100);
        let path = format!("/f{i}");
        v.run("ls", &[]).success(); // settle the stores before the snapshot
        let vault_before = vault_snapshot(&v.root);
        let pool_before = snapshot(&qrng);
        let nodes_before: Vec<Snapshot> = v.nodes().iter().map(|(_, d)| snapshot(d)).collect();
        let r = v.put_bytes(&data, &path);
        if r.ok() {
            stored.push((path, data));
            continue;
        }
        r.failure().stderr_has(&[
            &format!("cannot store {path}"),
            &p,
            "the vault was not changed",
        ]);
        r.stderr_has(&[
            &format!("random pool {p} is exhausted"),
            "nothing was consumed",
        ]);
        assert_same_tree(&vault_before, &vault_snapshot(&v.root), "failed put: vault");
        assert_same_tree(
            &pool_before,
            &snapshot(&qrng),
            "failed put: pool and its position file",
        );
        for (b, (_, d)) in nodes_before.iter().zip(v.nodes()) {
            assert_same_tree(b, &snapshot(&d), "failed put: node folder");
        }
        failed = Some(i);
        break;
    }
    assert_eq!(
        failed,
        Some(2),
        "two puts fit in two pool blocks; the third must fail"
    );
    let st = v.status();
    assert_eq!(st["random"]["remaining"], 0, "{st:#}");
    for (path, data) in &stored {
        v.assert_reads(path, data).quiet();
    }
    // The pool is consumed: its bytes are zeroed, never served again.
    assert!(
        std::fs::read(&pool).unwrap().iter().all(|b| *b == 0),
        "consumed pool bytes were not zeroed"
    );
}
