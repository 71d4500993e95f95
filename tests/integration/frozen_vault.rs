//! A vault written by format v1 (tests/fixtures/vault-v1.tar.gz, made with
//! the first release) must still open and read back byte for byte: shard
//! headers, manifests, inodes, keystore records and the envelope all keep
//! their meaning. Regenerate only with a format version bump.

use crate::common;

fn pattern() -> Vec<u8> {
    (0..70001u32)
        .map(|i| ((i * 7 + i / 251) % 256) as u8)
        .collect()
}

#[test]
fn frozen_v1_vault_reads_back() {
    let (dir, vault) = common::unpack_v1_vault();
    let v = vault.to_str().unwrap();

    for (path, want) in [
        ("/empty", Vec::new()),
        ("/hello.txt", b"hello, frozen vault\n".to_vec()),
        ("/docs/pattern.bin", pattern()),
    ] {
        let out = dir.path().join("out");
        let o = common::qsfs_output(&["get", v, path, out.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "get {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stderr.is_empty(),
            "get {path} warned: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&out).unwrap(), want, "{path}");
    }
    let o = common::qsfs_output(&["keys", "verify", v]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = common::qsfs_output(&["status", "--json", v]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["files"], 3);
    assert_eq!(s["objects"], 2);
    assert_eq!(s["degraded_objects"], 0);
    // And it still takes writes.
    let f = dir.path().join("new");
    std::fs::write(&f, b"new data").unwrap();
    assert!(
        common::qsfs_output(&["put", v, f.to_str().unwrap(), "/docs/new"])
            .status
            .success()
    );
    let o = common::qsfs_output(&["get", v, "/docs/new", "-"]);
    assert_eq!(o.stdout, b"new data");
}

/// A vault written by the sealed keystore's first release
/// (tests/fixtures/vault-v2-sealed.tar.gz: unlock.toml format 1 with a key
/// file and a passphrase, epoch table slots format 1, key records format 2,
/// one epoch already shredded) keeps opening with either method.
#[test]
fn frozen_sealed_vault_opens_with_each_method() {
    let (dir, vault) = common::unpack_fixture("vault-v2-sealed.tar.gz", "vault-v2");
    let v = vault.to_str().unwrap();
    let key = dir.path().join("vault-v2.key");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "frozen passphrase\n").unwrap();
    // The recorded key file path is where it was made; give the copy.
    let with_key = ["--key-file", key.to_str().unwrap()];
    let with_pass = ["--passphrase-file", pass.to_str().unwrap()];
    for unlock in [with_key, with_pass] {
        for (path, want) in [
            ("/empty", Vec::new()),
            ("/hello.txt", b"hello, sealed frozen vault\n".to_vec()),
            ("/docs/pattern.bin", pattern()),
        ] {
            let o = common::qsfs_output(&[&["get", v, path, "-"][..], &unlock].concat());
            assert!(
                o.status.success(),
                "get {path}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(o.stdout, want, "{path}");
        }
        let o = common::qsfs_output(&[&["keys", "verify", v][..], &unlock].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    common::qsfs(&["get", v, "/hello.txt", "-"])
        .failure()
        .stderr_has(&["cannot unlock vault", "missing"]);
    let o = common::qsfs_output(&["status", "--json", v, with_key[0], with_key[1]]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["files"], 3);
    assert_eq!(s["pending_shreds"], 0);
    assert_eq!(s["unlock"].as_array().unwrap().len(), 2);
}

/// Node folders written by the metadata journal's first release
/// (tests/fixtures/nodes-journal-v1.tar.gz): a vault made with
/// `--backup-records nodes` (shard header v2 carrying key pieces, manifest
/// v3) and a key file, `qsfs backup` (snapshot format 1, generation 1),
/// then a mount that wrote two journal entries (format 1: a folder and two
/// files; a file written then removed, a rename, one more file) and was
/// killed with kill -9. `qsfs recover` with the key file keeps rebuilding
/// the vault from the snapshot and both entries.
#[test]
fn frozen_journal_entries_keep_replaying() {
    let (dir, fx) = common::unpack_fixture("nodes-journal-v1.tar.gz", "journal-v1");
    let new = dir.path().join("recovered");
    let key = fx.join("v3.key");
    let mut args = vec![
        "recover".to_string(),
        new.display().to_string(),
        "--key-file".into(),
        key.display().to_string(),
    ];
    for i in 0..5 {
        args.push("--node".into());
        args.push(fx.join(format!("nodes/n{i}")).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = common::qsfs_output(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "recover: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("from metadata snapshot 1 and 2 journal entries after it"),
        "{out}"
    );
    let v = new.to_str().unwrap();
    let with_key = ["--key-file", key.to_str().unwrap()];
    let pattern: Vec<u8> = (0..10_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    for (path, want) in [
        ("/docs/hello.txt", b"journal frozen\n".to_vec()),
        ("/docs/pattern.bin", pattern),
        ("/last.txt", b"written last\n".to_vec()),
    ] {
        let o = common::qsfs_output(&[&["get", v, path, "-"][..], &with_key].concat());
        assert!(
            o.status.success(),
            "get {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.stdout, want, "{path}");
    }
    for gone in ["/hello.txt", "/docs/later.txt"] {
        let o = common::qsfs_output(&[&["get", v, gone, "-"][..], &with_key].concat());
        assert!(!o.status.success(), "{gone} came back");
    }
    let o = common::qsfs_output(&[&["fsck", v][..], &with_key].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
