//! Key faults: a local share (R1 or R2) missing, corrupted or with a
//! damaged record, a backup record B missing or corrupted, and a separate
//! R2 store that is unplugged. Files stay readable (with a warning naming
//! the bad piece), `qsfs keys verify` reports the damage, `qsfs keys
//! repair` heals it exactly (the healed record equals the original), and
//! afterwards everything is clean and quiet.
//!
//! The stores are edited with the library while no qsfs process holds the
//! vault.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;

use common::*;
use qsfs::ObjectId;
use qsfs::internals::Db;
use serde_json::{Value, json};

/// Opens a sled store of the vault, runs `f`, makes it durable, closes it.
pub(crate) fn edit_store<T>(path: &Path, f: impl FnOnce(&Db) -> T) -> T {
    let db = Db::open(path, "test edit").unwrap();
    let out = f(&db);
    db.flush_durable().unwrap();
    out
}

/// The payload of a key record, opened with the vault's key file.
fn record(v: &TestVault, kind: &str, object: &str) -> Option<Vec<u8>> {
    qsfs::internals::custody::read_record(&v.root, &Default::default(), kind, object).unwrap()
}

pub(crate) fn record_key(prefix: u8, object: &str) -> Vec<u8> {
    let id = ObjectId::from_hex(object).unwrap();
    let mut k = vec![prefix];
    k.extend_from_slice(id.as_bytes());
    k
}

#[derive(Debug, Clone, Copy)]
enum ShareFault {
    /// The record is gone.
    Missing,
    /// A well-formed record whose share value has one flipped bit.
    WrongValue,
    /// A record that does not decode.
    Junk,
}

/// The one problem `keys verify --json` reports.
#[track_caller]
fn single_problem(report: &Value, path: &str, object: &str) -> Vec<String> {
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "expected one problem: {report:#}");
    let p = &problems[0];
    assert_eq!(p["path"], path, "{report:#}");
    assert_eq!(p["object"], object, "{report:#}");
    p["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

/// Verify reports `issue` for `path`, repair heals it, verify is clean.
#[track_caller]
fn verify_repair_verify(v: &TestVault, path: &str, object: &str, issue: &str) {
    let (r, report) = v.keys_verify();
    assert_eq!(
        r.code,
        Some(1),
        "keys verify must fail on damaged keys: {}",
        r.out()
    );
    assert_eq!(
        single_problem(&report, path, object),
        vec![issue.to_string()],
        "{report:#}"
    );
    assert_eq!(report["problems"][0]["repaired"], false);
    // The text report names the file, the object and the issue.
    let r = qsfs(&["keys", "verify", &v.arg()]);
    assert_eq!(r.code, Some(1));
    r.stdout_has(&[
        &format!("{path} ({object}): {issue}"),
        "run `qsfs keys repair` to heal",
        "1 with key problems",
    ]);

    let (r, report) = v.keys_repair();
    r.success();
    assert_eq!(
        single_problem(&report, path, object),
        vec![issue.to_string()],
        "{report:#}"
    );
    assert_eq!(report["problems"][0]["repaired"], true, "{report:#}");
    assert_eq!(report["problems"][0]["error"], Value::Null, "{report:#}");

    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert_eq!(report["stray_shares"], json!([]), "{report:#}");
}

fn share_fault(which: u8, fault: ShareFault) {
    let mut rng = Rng::from_env(&format!("share_fault_R{which}_{fault:?}"));
    let v = TestVault::new(&["--max-chunk", "16384"]);
    let a = rng.bytes(70_001);
    let b = rng.bytes(5_000);
    v.put_bytes(&a, "/a").success();
    v.put_bytes(&b, "/b").success();
    let obj = v.object_of("/a");
    let keys = v.root.join("keys");
    let key = record_key(b'0' + which, &obj);
    let kind = format!("R{which}");
    let original = record(&v, &kind, &obj).expect("share record");
    assert_eq!(original.len(), 33, "x + 32-byte share");
    match fault {
        ShareFault::Missing => edit_store(&keys, |db| db.remove(&key).unwrap()),
        ShareFault::WrongValue => {
            let (i, bit) = (1 + rng.index(32), 1 << rng.below(8));
            qsfs::internals::custody::edit_record(&v.root, &Default::default(), &kind, &obj, |p| {
                p[i] ^= bit;
            })
            .unwrap();
        }
        ShareFault::Junk => edit_store(&keys, |db| db.insert(&key, b"not a share record").unwrap()),
    }
    let (warning, issue) = match fault {
        ShareFault::Missing => (
            format!("/a: R{which} is missing from the keystore"),
            format!("r{which}-missing"),
        ),
        ShareFault::WrongValue => (
            format!("/a: R{which} is corrupt (it fails its check M{which}4"),
            format!("r{which}-corrupt"),
        ),
        ShareFault::Junk => (
            format!("/a: R{which} record is damaged"),
            format!("r{which}-corrupt"),
        ),
    };

    // Still readable, with a warning that names the share; stdout too.
    v.assert_reads("/a", &a)
        .stderr_has(&[&warning, "qsfs keys repair"]);
    let r = v.run("get", &["/a", "-"]);
    r.success().stderr_has(&[&warning]);
    assert!(r.stdout == a, "get to stdout returned other bytes");
    v.assert_reads("/b", &b).quiet();

    verify_repair_verify(&v, "/a", &obj, &issue);
    let healed = record(&v, &kind, &obj);
    assert_eq!(
        healed.as_deref(),
        Some(&original[..]),
        "the healed share differs from the original"
    );
    v.assert_reads("/a", &a).quiet();
    v.assert_reads("/b", &b).quiet();
}

#[test]
fn r1_missing() {
    share_fault(1, ShareFault::Missing);
}

#[test]
fn r1_wrong_value() {
    share_fault(1, ShareFault::WrongValue);
}

#[test]
fn r1_damaged_record() {
    share_fault(1, ShareFault::Junk);
}

#[test]
fn r2_missing() {
    share_fault(2, ShareFault::Missing);
}

#[test]
fn r2_wrong_value() {
    share_fault(2, ShareFault::WrongValue);
}

#[test]
fn r2_damaged_record() {
    share_fault(2, ShareFault::Junk);
}

#[derive(Debug, Clone, Copy)]
enum BackupFault {
    Missing,
    /// One bit flipped in bytes `start..end` of B (R4 is 0..33, n2 33..41,
    /// M14 41..73, M24 73..105).
    Flip(usize, usize),
}

fn backup_fault(fault: BackupFault) {
    let mut rng = Rng::from_env(&format!("backup_fault_{fault:?}"));
    let v = TestVault::new(&[]);
    let a = rng.bytes(33_333);
    let b = rng.bytes(1_000);
    v.put_bytes(&a, "/dir-less a").success();
    v.put_bytes(&b, "/b").success();
    let obj = v.object_of("/dir-less a");
    let ec = v.root.join("meta/ec");
    let key = record_key(b'b', &obj);
    let original = record(&v, "B", &obj).expect("backup record");
    assert_eq!(original.len(), 105, "a 105-byte B");
    match fault {
        BackupFault::Missing => edit_store(&ec, |db| db.remove(&key).unwrap()),
        BackupFault::Flip(start, end) => {
            let (i, bit) = (start + rng.index(end - start), 1 << rng.below(8));
            qsfs::internals::custody::edit_record(&v.root, &Default::default(), "B", &obj, |p| {
                p[i] ^= bit;
            })
            .unwrap();
        }
    }
    let (warning, issue) = match fault {
        BackupFault::Missing => ("backup record B is missing", "backup-missing"),
        BackupFault::Flip(..) => ("backup record B is corrupt", "backup-corrupt"),
    };
    // Both shares are fine: the file reads, and the damage is reported.
    v.assert_reads("/dir-less a", &a)
        .stderr_has(&["/dir-less a: ", warning]);
    v.assert_reads("/b", &b).quiet();
    verify_repair_verify(&v, "/dir-less a", &obj, issue);
    let rebuilt = record(&v, "B", &obj);
    assert_eq!(
        rebuilt.as_deref(),
        Some(&original[..]),
        "the rebuilt backup record differs from the original"
    );
    v.assert_reads("/dir-less a", &a).quiet();
}

#[test]
fn backup_missing() {
    backup_fault(BackupFault::Missing);
}

#[test]
fn backup_corrupt_in_r4() {
    backup_fault(BackupFault::Flip(0, 33));
}

#[test]
fn backup_corrupt_in_n2() {
    backup_fault(BackupFault::Flip(33, 41));
}

#[test]
fn backup_corrupt_in_m14() {
    backup_fault(BackupFault::Flip(41, 73));
}

#[test]
fn backup_corrupt_in_m24() {
    backup_fault(BackupFault::Flip(73, 105));
}

#[test]
fn both_local_shares_lost_is_a_clear_error() {
    let mut rng = Rng::from_env("both_local_shares_lost");
    let v = TestVault::new(&[]);
    let a = rng.bytes(4_000);
    v.put_bytes(&a, "/a").success();
    let obj = v.object_of("/a");
    edit_store(&v.root.join("keys"), |db| {
        db.remove(record_key(b'1', &obj)).unwrap();
        db.remove(record_key(b'2', &obj)).unwrap();
    });
    let (r, out) = v.get_bytes("/a");
    r.failure().stderr_has(&[
        &format!("cannot read /a (object {obj})"),
        "not enough key shares",
    ]);
    assert!(out.is_none());
    let (r, report) = v.keys_repair();
    assert_eq!(
        r.code,
        Some(1),
        "repair cannot heal an object without both shares"
    );
    let issues = single_problem(&report, "/a", &obj);
    assert_eq!(
        issues,
        vec!["r1-missing".to_string(), "r2-missing".to_string()]
    );
    assert_eq!(report["problems"][0]["repaired"], false);
    assert!(
        report["problems"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not enough key shares"),
        "{report:#}"
    );
}

#[test]
fn separate_r2_store_unplugged_and_back() {
    let mut rng = Rng::from_env("separate_r2_store");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let r2 = tmp.path().join("usb-stick/qsfs-r2");
    let r2s = r2.display().to_string();
    let v = TestVault::new_in(tmp, &["--r2-path", &r2s]);
    assert!(r2.is_dir(), "init creates the R2 store");
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/f{i}"), rng.bytes([0, 1, 5_000, 300_000][i])))
        .collect();
    for (p, d) in &files {
        v.put_bytes(d, p).success().quiet();
    }
    let st = v.status();
    assert_eq!(st["keystore_r2"], r2s.as_str());
    assert_eq!(st["keystore_r2_available"], true);

    // Unplug the drive.
    let away = v.tmp.path().join("drawer");
    std::fs::rename(r2.parent().unwrap(), &away).unwrap();
    for (p, d) in &files {
        let r = v.assert_reads(p, d);
        if !d.is_empty() {
            r.stderr_has(&[&format!("{p}: R2 is missing from the keystore")]);
        }
    }
    let st = v.status();
    assert_eq!(st["keystore_r2_available"], false, "{st:#}");
    let r = v.run("status", &[]);
    r.success()
        .stdout_has(&[&format!("R2 {r2s} (NOT AVAILABLE)")]);
    let shards_before = v.shards().len();
    let ls_before = v.run("ls", &["/", "-l"]).out();
    let r = v.put_bytes(&rng.bytes(2_000), "/new");
    r.failure().stderr_has(&[
        &format!("the R2 keystore at {r2s} is not available"),
        "cannot store /new",
        "is its drive mounted?",
    ]);
    let r = v.put_bytes(&rng.bytes(2_000), "/f2");
    r.failure()
        .stderr_has(&[&format!("the R2 keystore at {r2s} is not available")]);
    assert_eq!(
        v.shards().len(),
        shards_before,
        "a refused write left shards on the nodes"
    );
    assert_eq!(
        v.run("ls", &["/", "-l"]).out(),
        ls_before,
        "a refused write changed the namespace"
    );
    assert!(
        !r2.exists(),
        "qsfs recreated the missing R2 store behind the user's back"
    );

    // Plug it back in: quiet reads, writes work, keys are whole.
    std::fs::rename(&away, r2.parent().unwrap()).unwrap();
    for (p, d) in &files {
        v.assert_reads(p, d).quiet();
    }
    let new = rng.bytes(9_999);
    v.put_bytes(&new, "/new").success().quiet();
    v.assert_reads("/new", &new).quiet();
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["problems"], json!([]));
    assert_eq!(v.status()["keystore_r2_available"], true);
}

/// A separate R2 drive that is lost for good. A plain `keys repair` must
/// not build a new R2 store on whatever disk holds the (empty) mount point
/// — that would put R1 and R2 on one disk behind the user's back — but say
/// how; `keys repair --rebuild-r2` then rebuilds every R2 share (from R1,
/// R3 and R4), verify is clean, and writes work again.
#[test]
fn lost_r2_store_is_rebuilt_by_keys_repair() {
    let mut rng = Rng::from_env("lost_r2_store");
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let r2 = tmp.path().join("usb-stick/qsfs-r2");
    let v = TestVault::new_in(tmp, &["--r2-path", r2.to_str().unwrap()]);
    let a = rng.bytes(20_000);
    v.put_bytes(&a, "/a").success();
    std::fs::remove_dir_all(r2.parent().unwrap()).unwrap();
    // An empty mount point where the drive used to be.
    std::fs::create_dir_all(&r2).unwrap();
    let (r, report) = v.keys_repair();
    r.failure();
    assert_eq!(report["problems"][0]["repaired"], false, "{report:#}");
    assert!(
        report["problems"][0]["error"]
            .as_str()
            .unwrap()
            .contains("--rebuild-r2"),
        "{report:#}"
    );
    assert!(
        !r2.join("conf").exists(),
        "a plain repair created an R2 store"
    );
    let (r, report) = v.keys_repair_with(&["--rebuild-r2"]);
    r.success();
    assert_eq!(
        report["problems"][0]["issues"],
        json!(["r2-missing"]),
        "{report:#}"
    );
    assert_eq!(report["problems"][0]["repaired"], true, "{report:#}");
    let (r, _) = v.keys_verify();
    r.success();
    v.assert_reads("/a", &a).quiet();
    v.put_bytes(&rng.bytes(100), "/b").success();
}
