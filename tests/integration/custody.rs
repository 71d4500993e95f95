//! Key custody as an attacker meets it: a stolen copy of the vault folder,
//! deleted files whose keys must be gone from every byte on disk, and the
//! unlock methods' failures. Each test drives the real `qsfs` command.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{self, Rng, TestVault, qsfs};

/// The key records of `vpath` as `qsfs keys show --json` prints them.
pub(crate) fn key_records(v: &TestVault, vpath: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![vpath, "--json"];
    args.extend_from_slice(extra);
    let r = qsfs(&[&["keys", "show", &v.arg()][..], &args].concat());
    r.success();
    assert!(
        r.stderr.contains("expert"),
        "keys show must say it is expert output: {}",
        r.stderr
    );
    serde_json::from_slice::<Vec<Value>>(&r.stdout).unwrap()
}

/// Byte strings an attacker would look for: for each record, its first and
/// last 16 bytes (the share's x and y, B's R4 and its MAC).
pub(crate) fn needles(records: &[Value]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for r in records {
        for k in ["r1", "r2", "b"] {
            let hex = r[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} missing in {r}"));
            let b = hex_decode(hex);
            let name = format!("{} {k}", r["object"].as_str().unwrap());
            out.push((name.clone(), b[..16].to_vec()));
            out.push((name, b[b.len() - 16..].to_vec()));
        }
    }
    out
}

pub(crate) fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Where any needle occurs in clear in the files under `dirs`.
pub(crate) fn scan(dirs: &[&Path], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut files = Vec::new();
    for d in dirs {
        files_under(d, &mut files);
    }
    assert!(files.len() > 10, "nothing to scan under {dirs:?}");
    let mut hits = Vec::new();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        for (name, n) in needles {
            if data.windows(n.len()).any(|w| w == &n[..]) {
                hits.push(format!("{name} in {}", f.display()));
            }
        }
    }
    hits
}

fn write_secret(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    p.display().to_string()
}

/// Copies the vault folder the way a thief would (a backup, a synced copy).
pub(crate) fn steal(v: &TestVault) -> PathBuf {
    let copy = v.scratch_path("stolen");
    let ok = std::process::Command::new("cp")
        .args(["-a", &v.arg(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    copy
}

/// Every way of reading from the copy fails, and says why.
fn nothing_reads(copy: &Path, extra: &[&str], why: &str) {
    let c = copy.display().to_string();
    let out = copy.with_extension("out");
    for cmd in [
        vec!["get", &c, "/a.txt", out.to_str().unwrap()],
        vec!["ls", &c, "/"],
        vec!["keys", "show", &c, "/a.txt"],
        vec!["keys", "verify", &c],
        vec!["status", &c],
        vec!["fsck", &c],
        vec!["shred", &c],
    ] {
        let r = qsfs(&[&cmd[..], extra].concat());
        r.failure().stderr_has(&["cannot unlock vault", why]);
        assert!(!out.exists(), "{cmd:?} wrote output");
    }
}

#[test]
fn a_stolen_vault_folder_opens_no_file_and_holds_no_key_in_clear() {
    let pass_dir = tempfile::tempdir().unwrap();
    let pass = write_secret(pass_dir.path(), "pass", "correct horse battery staple");
    let wrong = write_secret(pass_dir.path(), "wrong", "incorrect horse");
    let v = TestVault::new(&["--passphrase-file", &pass]);
    let mut rng = Rng::from_env("stolen vault");
    let files = common::sample_files(
        &mut rng,
        &[("/a.txt", 3000), ("/b.bin", 200_000), ("/c/d.bin", 70_001)],
    );
    for (p, data) in &files {
        if p.starts_with("/c/") {
            v.run("mkdir", &["/c", "--passphrase-file", &pass])
                .success();
        }
        v.put_bytes_with(data, p, &["--passphrase-file", &pass])
            .success();
    }
    let mut records = Vec::new();
    for (p, _) in &files {
        records.extend(key_records(&v, p, &["--passphrase-file", &pass]));
    }
    assert_eq!(records.len(), 3);

    let copy = steal(&v);
    nothing_reads(&copy, &[], "no passphrase given");
    nothing_reads(
        &copy,
        &["--passphrase-file", &wrong],
        "the passphrase is wrong",
    );
    let hits = scan(&[&copy], &needles(&records));
    assert!(
        hits.is_empty(),
        "key bytes in clear in the stolen copy: {hits:?}"
    );
    // The copy is whole: with the passphrase it reads (so the refusals
    // above come from the missing secret alone).
    let out = v.scratch_path("from-copy");
    qsfs(&[
        "get",
        copy.to_str().unwrap(),
        "/b.bin",
        out.to_str().unwrap(),
        "--passphrase-file",
        &pass,
    ])
    .success();
    assert_eq!(std::fs::read(&out).unwrap(), files[1].1);
}

#[test]
fn a_vault_unlocked_by_a_key_file_is_safe_without_it_and_names_it_when_missing() {
    let v = TestVault::new(&[]);
    // Without a terminal, init makes a key file in the config folder.
    let kf = common::key_dir()
        .join("qsfs")
        .join(format!("{}.key", v.status()["vault_id"].as_str().unwrap()));
    let meta = std::fs::metadata(&kf).unwrap_or_else(|e| panic!("{}: {e}", kf.display()));
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    v.put_bytes(b"key file protected", "/a.txt").success();
    let records = key_records(&v, "/a.txt", &[]);
    let copy = steal(&v);
    assert!(scan(&[&copy], &needles(&records)).is_empty());
    // The key file moved away: every command names it.
    let away = v.scratch_path("away.key");
    std::fs::rename(&kf, &away).unwrap();
    nothing_reads(&copy, &[], &kf.display().to_string());
    let r = v.run("get", &["/a.txt", "-"]);
    r.failure()
        .stderr_has(&[&kf.display().to_string(), "missing", "--key-file"]);
    // Given where it is now, it works.
    let r = v.run(
        "get",
        &["/a.txt", "-", "--key-file", away.to_str().unwrap()],
    );
    r.success();
    assert_eq!(r.stdout, b"key file protected");
    std::fs::rename(&away, &kf).unwrap();
    v.assert_reads("/a.txt", b"key file protected");
}

/// `qsfs unlock add VAULT key-file --key-file PATH` with `extra` arguments.
fn add_key_file(v: &TestVault, path: &Path, extra: &[&str]) -> crate::common::Run {
    let vault = v.arg();
    let mut args = vec![
        "unlock",
        "add",
        vault.as_str(),
        "key-file",
        "--key-file",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    qsfs(&args)
}

#[test]
fn unlock_methods_are_added_and_removed_but_never_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let pass = write_secret(dir.path(), "pass", "first passphrase");
    let pass2 = write_secret(dir.path(), "pass2", "second passphrase");
    let v = TestVault::new(&["--passphrase-file", &pass]);
    v.put_bytes(b"x", "/a.txt")
        .failure()
        .stderr_has(&["no passphrase given"]);
    let p = ["--passphrase-file", pass.as_str()];
    let local = v.scratch_path("src");
    std::fs::write(&local, b"methods").unwrap();
    v.run("put", &[local.to_str().unwrap(), "/a.txt", p[0], p[1]])
        .success();

    let usb = dir.path().join("usb/vault.key");
    add_key_file(&v, &usb, &p)
        .success()
        .stdout_has(&["added unlock method \"key-file\""]);
    qsfs(&[
        "unlock",
        "add",
        &v.arg(),
        "passphrase",
        "--name",
        "backup",
        "--new-passphrase-file",
        &pass2,
        p[0],
        p[1],
    ])
    .success();
    // An existing file is a key file only if it could be one: the owner's
    // alone and long enough; the same file twice is refused.
    let weak = dir.path().join("weak.key");
    std::fs::write(&weak, "a".repeat(40)).unwrap();
    std::fs::set_permissions(&weak, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    add_key_file(&v, &weak, &p)
        .failure()
        .stderr_has(&["others can read it (mode 0644)", "chmod 600"]);
    std::fs::write(&weak, "short").unwrap();
    std::fs::set_permissions(&weak, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    add_key_file(&v, &weak, &p)
        .failure()
        .stderr_has(&["holds only 5 bytes"]);
    add_key_file(&v, &usb, &p)
        .failure()
        .stderr_has(&["already uses this key file"]);
    let list = qsfs(&["unlock", "list", &v.arg()]);
    list.success()
        .stdout_has(&["passphrase", "key-file", "backup", usb.to_str().unwrap()]);
    // Each method opens the vault on its own.
    v.run("get", &["/a.txt", "-", "--key-file", usb.to_str().unwrap()])
        .success();
    let r = v.run("get", &["/a.txt", "-", "--passphrase-file", &pass2]);
    r.success();
    assert_eq!(r.stdout, b"methods");
    qsfs(&["unlock", "remove", &v.arg(), "passphrase"]).success();
    // The removed passphrase opens nothing (the key file unplugged, so
    // that only passphrases are tried).
    let unplugged = dir.path().join("usb-away");
    std::fs::rename(dir.path().join("usb"), &unplugged).unwrap();
    v.run("get", &["/a.txt", "-", p[0], p[1]])
        .failure()
        .stderr_has(&["the passphrase is wrong", "missing"]);
    std::fs::rename(&unplugged, dir.path().join("usb")).unwrap();
    qsfs(&["unlock", "remove", &v.arg(), "backup"]).success();
    qsfs(&["unlock", "remove", &v.arg(), "key-file"])
        .failure()
        .stderr_has(&["only unlock method", "add another first"]);
    qsfs(&["unlock", "remove", &v.arg(), "nope"])
        .failure()
        .stderr_has(&["no unlock method named \"nope\""]);
    v.assert_reads("/a.txt", b"methods");
}

#[test]
fn deleted_files_keys_cannot_be_recovered_even_with_the_vault_key() {
    let v = TestVault::new(&[]);
    let mut rng = Rng::from_env("shred");
    let mut keep = Vec::new();
    let mut gone = Vec::new();
    for i in 0..12 {
        let data = rng.bytes(1000 + i * 3000);
        let p = format!("/f{i}");
        v.put_bytes(&data, &p).success();
        if i % 3 == 0 {
            keep.push((p, data));
        } else {
            gone.push(p);
        }
    }
    let mut records = Vec::new();
    for p in &gone {
        records.extend(key_records(&v, p, &[]));
    }
    let objects: Vec<String> = records
        .iter()
        .map(|r| r["object"].as_str().unwrap().to_string())
        .collect();
    // Before: the attacker holding the vault key (here: the key file)
    // opens every record.
    let probe = |objects: &[String]| {
        qsfs::internals::custody::recoverable_records(
            &v.root,
            &Default::default(),
            std::slice::from_ref(&v.root),
            objects,
        )
        .unwrap()
    };
    let before = probe(&objects);
    assert!(
        before.len() >= 3 * objects.len(),
        "the probe must find the live records first: {before:?}"
    );
    let gone_args: Vec<&str> = gone.iter().map(String::as_str).collect();
    v.run("rm", &gone_args).success();
    // `rm` ran a shred pass; one more finds nothing left to do.
    v.run("shred", &[])
        .success()
        .stdout_has(&["nothing to shred"]);
    let after = probe(&objects);
    assert!(
        after.is_empty(),
        "deleted key records still open: {after:?}"
    );
    let hits = scan(&[&v.root], &needles(&records));
    assert!(hits.is_empty(), "{hits:?}");
    for (p, data) in &keep {
        v.assert_reads(p, data);
    }
    v.keys_verify().0.success();
    v.run("fsck", &[]).success();
}

#[test]
fn a_vault_from_before_the_sealed_keystore_opens_and_is_sealed_in_place() {
    let (dir, vault) = common::unpack_v1_vault();
    let v = vault.to_str().unwrap();
    // Its records are in clear: what the old format kept.
    let show = qsfs(&["keys", "show", v, "/hello.txt", "--json"]);
    show.success();
    let records: Vec<Value> = serde_json::from_slice(&show.stdout).unwrap();
    let n = needles(&records);
    assert!(
        !scan(&[&vault], &n).is_empty(),
        "the old format should hold its shares in clear"
    );
    qsfs(&["unlock", "list", v])
        .success()
        .stdout_has(&["no unlock methods"]);
    let kf = dir.path().join("usb/v1.key");
    qsfs(&[
        "unlock",
        "add",
        v,
        "key-file",
        "--key-file",
        kf.to_str().unwrap(),
    ])
    .success()
    .stdout_has(&["now sealed"]);
    let hits = scan(&[&vault], &n);
    assert!(
        hits.is_empty(),
        "clear shares survived the sealing: {hits:?}"
    );
    let o = common::qsfs_output(&["get", v, "/hello.txt", "-"]);
    assert_eq!(
        o.stdout,
        b"hello, frozen vault\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(common::qsfs_output(&["keys", "verify", v]).status.success());
    std::fs::rename(&kf, dir.path().join("elsewhere")).unwrap();
    qsfs(&["get", v, "/hello.txt", "-"])
        .failure()
        .stderr_has(&["cannot unlock vault", "missing"]);
}

#[test]
fn moving_off_a_clear_vault_key_re_seals_every_record_under_a_new_key() {
    let v = TestVault::new(&["--unlock", "none"]);
    let st = v.run("status", &[]);
    st.success().stdout_has(&["NONE"]);
    v.put_bytes(b"was under a clear key", "/a.txt").success();
    // A key in clear seals nothing: the link pools stay clear, and say so.
    let links = |st: &Value| -> Vec<Value> {
        st["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["sealed"].clone())
            .collect()
    };
    assert_eq!(links(&v.status()), vec![Value::Bool(false); 5]);
    v.run("status", &[])
        .success()
        .stdout_has(&["KEYS IN CLEAR"]);
    let pool = v.root.join("links/node-0.a.pool");
    let raw = std::fs::read(&pool).unwrap();
    // The last record: unused (keys are drawn from the front).
    let key_at = raw.len() - qsfs::qkd::pool::format::RECORD_LEN + qsfs::qkd::pool::format::KEY_AT;
    let clear_key = raw[key_at..key_at + 32].to_vec();
    assert!(clear_key.iter().any(|b| *b != 0), "the last key is used");
    let old_unlock = std::fs::read_to_string(v.root.join("unlock.toml")).unwrap();
    let old_copy = steal(&v);
    let kf = v.scratch_path("new.key");
    add_key_file(&v, &kf, &[])
        .success()
        .stdout_has(&["new key"]);
    assert!(
        !std::fs::read_to_string(v.root.join("unlock.toml"))
            .unwrap()
            .contains("vault_key")
    );
    v.assert_reads("/a.txt", b"was under a clear key");
    // The next open sealed the pools under the new key.
    assert_eq!(links(&v.status()), vec![Value::Bool(true); 5]);
    let raw = std::fs::read(&pool).unwrap();
    assert!(
        !raw.windows(32).any(|w| w == clear_key),
        "an unused link key is still in clear"
    );
    assert!(
        std::fs::read_dir(v.root.join("links")).unwrap().all(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".pool")),
        "sealing left files behind"
    );
    // Someone who copied the folder while the key was in clear had what it
    // held then; nothing sealed since opens with that old key and table.
    v.put_bytes(b"written after the move", "/b.txt").success();
    let fresh = key_records(&v, "/b.txt", &[]);
    let objects = vec![fresh[0]["object"].as_str().unwrap().to_string()];
    std::fs::write(old_copy.join("unlock.toml"), &old_unlock).unwrap();
    let r = qsfs::internals::custody::recoverable_records(
        &old_copy,
        &Default::default(),
        std::slice::from_ref(&v.root),
        &objects,
    )
    .unwrap();
    assert!(r.is_empty(), "the old clear key opens new records: {r:?}");
    // And the vault's table as it is now does not open under the old key.
    for slot in ["epochs.0", "epochs.1"] {
        std::fs::copy(
            v.root.join("meta").join(slot),
            old_copy.join("meta").join(slot),
        )
        .unwrap();
    }
    qsfs(&["ls", old_copy.to_str().unwrap(), "/"])
        .failure()
        .stderr_has(&["epoch"]);
}

/// Runs `qsfs ARGS` and kills it with SIGKILL after `delay` (harmless if
/// it already ended). True if it ran to the end.
fn run_killed(args: &[String], delay: std::time::Duration) -> bool {
    let mut child = common::qsfs_command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < delay {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap().success()
}

#[test]
fn kill_9_during_deletes_and_shred_passes_loses_no_live_key() {
    let mut rng = Rng::from_env("kill during shred");
    let v = TestVault::new(&[]);
    let mut live: Vec<(String, Vec<u8>)> = Vec::new();
    let (mut killed, mut finished) = (0, 0);
    for round in 0..12 {
        for i in 0..6 {
            let p = format!("/r{round}-{i}");
            let len = 500 + rng.index(20_000);
            let data = rng.bytes(len);
            v.put_bytes(&data, &p).success();
            live.push((p, data));
        }
        // Delete a few (their shred pass runs inside `rm`), killed at a
        // random moment.
        let mut doomed = Vec::new();
        for _ in 0..3 {
            let i = rng.index(live.len());
            doomed.push(live.remove(i).0);
        }
        let mut args = vec!["rm".to_string(), v.arg()];
        args.extend(doomed.iter().cloned());
        // Every third rm runs to the end; the others are killed within
        // 40 ms (a delete and its shred pass take longer than that here,
        // loaded or not), so both outcomes happen whatever the seed.
        let delay = if round % 3 == 0 {
            std::time::Duration::from_secs(60)
        } else {
            std::time::Duration::from_millis(rng.below(40))
        };
        if run_killed(&args, delay) {
            finished += 1;
        } else {
            killed += 1;
        }
        // A killed rm may have deleted some, all or none of them: what is
        // left of them is removed now; every other file must read.
        for p in &doomed {
            let r = v.run("rm", &[p]);
            assert!(r.ok() || r.stderr.contains("no such file"), "{}", r.stderr);
        }
        if round % 4 == 3 {
            for (p, data) in &live {
                v.assert_reads(p, data).quiet();
            }
        }
    }
    v.run("shred", &[]).success();
    for (p, data) in &live {
        v.assert_reads(p, data).quiet();
    }
    v.keys_verify().0.success();
    assert_eq!(v.status()["pending_shreds"], 0);
    assert!(
        killed > 0 && finished > 0,
        "killed {killed}, finished {finished}: move the delays"
    );
}

#[test]
fn kill_9_while_moving_off_a_clear_key_leaves_a_vault_that_opens() {
    let mut rng = Rng::from_env("kill during rekey");
    let mut outcomes = std::collections::BTreeSet::new();
    // How long the whole command takes on this machine now: a loaded CI
    // box made a fixed "late" delay land before the switch every time.
    let took = {
        let v = TestVault::new(&["--unlock", "none"]);
        v.put_bytes(&rng.bytes(20_000), "/f").success();
        let kf = v.scratch_path("calibrate.key");
        let t = std::time::Instant::now();
        add_key_file(&v, &kf, &[]).success();
        t.elapsed().as_millis() as u64
    };
    for round in 0..8 {
        let v = TestVault::new(&["--unlock", "none"]);
        let files: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| {
                let len = 1000 + rng.index(30_000);
                (format!("/f{i}"), rng.bytes(len))
            })
            .collect();
        for (p, d) in &files {
            v.put_bytes(d, p).success();
        }
        let kf = v.scratch_path("new.key");
        let args: Vec<String> = [
            "unlock",
            "add",
            &v.arg(),
            "key-file",
            "--key-file",
            kf.to_str().unwrap(),
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        // Half the kills land within 15 ms (before the new key is in force),
        // half later: between the middle of a whole run and twice its
        // length (after the switch, while the records are re-sealed, or
        // once it finished).
        let delay = std::time::Duration::from_millis(if round % 2 == 0 {
            rng.below(15)
        } else {
            took / 2 + rng.below(took.max(2) + took / 2)
        });
        let done = run_killed(&args, delay);
        // Whichever key a kill left in force (the clear one, or the new
        // key file), the vault opens with what the user has, and every
        // file reads; the next command finishes the job.
        let with_kf = ["--key-file", kf.to_str().unwrap()];
        for (p, d) in &files {
            let r = v.run("get", &[p, "-", with_kf[0], with_kf[1]]);
            r.success();
            assert!(r.stdout == *d, "{p} differs after a kill (round {round})");
        }
        let methods = String::from_utf8(qsfs(&["unlock", "list", &v.arg()]).stdout).unwrap();
        if methods.contains("none") {
            outcomes.insert("old key");
            add_key_file(&v, &kf, &[]).success();
        } else {
            outcomes.insert(if done { "finished" } else { "new key" });
        }
        v.run("shred", &["--key-file", kf.to_str().unwrap()])
            .success();
        assert!(
            !std::fs::read_to_string(v.root.join("unlock.toml"))
                .unwrap()
                .contains("vault_key")
        );
        for (p, d) in &files {
            v.assert_reads(p, d).quiet();
        }
        v.keys_verify().0.success();
    }
    assert!(
        outcomes.len() >= 2,
        "every kill landed on the same side: {outcomes:?}"
    );
}
