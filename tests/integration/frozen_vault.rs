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
