//! The CLI on healthy vaults: a tree of a few hundred files stored with one
//! `put -r` (group commits) reads back identical and `rm -r` leaves no
//! shard, key or record behind; replacing a file destroys the old object;
//! plaintext and names never reach a node folder; stdin/stdout, `ls`,
//! `mkdir`, `status` and `rm` behave.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use qsfs::internals::Db;
use serde_json::json;

/// Number of records in a vault store whose key starts with `prefix`.
fn records(path: &Path, prefix: u8) -> usize {
    let db = Db::open(path, "test read").unwrap();
    db.scan_prefix([prefix]).count()
}

/// A local tree of `count` files in nested folders, with odd names; returns
/// (relative path -> content).
fn make_tree(root: &Path, count: usize, rng: &mut Rng) -> BTreeMap<PathBuf, Vec<u8>> {
    let dirs = [
        "",
        "a",
        "a/b",
        "a/b/c",
        "a/b/c/deep folder",
        "with space",
        "ünïcødé",
        "ünïcødé/日本語",
        "x/y",
        "x/z",
    ];
    let mut files = BTreeMap::new();
    for i in 0..count {
        let dir = dirs[rng.index(dirs.len())];
        let name = match i % 5 {
            0 => format!("file {i}.txt"),
            1 => format!("ファイル-{i}"),
            2 => format!(".hidden-{i}"),
            3 => format!("{i}"),
            _ => format!("name-with-ümlaut-{i}.bin"),
        };
        let rel = Path::new(dir).join(name);
        let size = match rng.below(10) {
            0 => 0,
            1 => 1,
            2..=7 => rng.below(4096) as usize,
            _ => 4096 + rng.below(60_000) as usize,
        };
        let data = rng.bytes(size);
        std::fs::create_dir_all(root.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(root.join(&rel), &data).unwrap();
        files.insert(rel, data);
    }
    // An empty folder too.
    std::fs::create_dir_all(root.join("empty dir")).unwrap();
    files
}

#[test]
fn many_files_in_one_put_then_rm_r() {
    let mut rng = Rng::from_env("many_files_in_one_put");
    let v = TestVault::new(&[]);
    let src = v.tmp.path().join("src");
    let files = make_tree(&src, 300, &mut rng);
    let r = v.run("put", &["-r", src.to_str().unwrap(), "/dst"]);
    r.success().quiet();

    // Every file reads back identical.
    for (rel, data) in &files {
        v.assert_reads(&format!("/dst/{}", rel.display()), data);
    }
    // Every folder lists exactly its local entries.
    let mut dirs: Vec<PathBuf> = files
        .keys()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.push(PathBuf::from("empty dir"));
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let mut local: Vec<String> = std::fs::read_dir(src.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        local.sort();
        let vpath = format!("/dst/{}", d.display());
        let r = v.run("ls", &[vpath.trim_end_matches('/')]);
        r.success();
        let mut listed: Vec<String> = r.out().lines().map(String::from).collect();
        listed.sort();
        assert_eq!(listed, local, "ls {vpath}");
    }

    let objects = files.values().filter(|d| !d.is_empty()).count();
    let st = v.status();
    assert_eq!(st["files"], files.len(), "{st:#}");
    assert_eq!(st["objects"], objects, "{st:#}");
    assert_eq!(
        st["logical_bytes"],
        files.values().map(std::vec::Vec::len).sum::<usize>(),
        "{st:#}"
    );
    assert_eq!(st["degraded_objects"], 0);
    assert_eq!(
        v.shards().len(),
        objects * 5,
        "one shard per object per node"
    );
    for n in st["nodes"].as_array().unwrap() {
        assert_eq!(n["shards_found"], objects, "{n:#}");
        assert_eq!(n["shards_expected"], objects, "{n:#}");
        assert_eq!(n["leftovers"], 0, "{n:#}");
    }
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["checked"], objects);

    // rm -r: no shard on any node, no key, no manifest, no backup record.
    v.run("rm", &["-r", "/dst"]).success().quiet();
    assert_eq!(v.run("ls", &["/"]).out(), "");
    assert!(
        v.shards().is_empty(),
        "shards left after rm -r: {}",
        v.shards().len()
    );
    assert!(v.temp_shards().is_empty());
    let st = v.status();
    assert_eq!(
        (st["files"].as_u64(), st["objects"].as_u64()),
        (Some(0), Some(0)),
        "{st:#}"
    );
    assert_eq!(st["directories"], 1, "only the root is left: {st:#}");
    assert_eq!(st["pending_deletions"], 0);
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["checked"], 0, "{report:#}");
    assert_eq!(report["stray_shares"], json!([]), "{report:#}");
    assert_eq!(records(&v.root.join("keys"), b'1'), 0, "R1 records left");
    assert_eq!(records(&v.root.join("keys"), b'2'), 0, "R2 records left");
    assert_eq!(records(&v.root.join("meta/ec"), b'm'), 0, "manifests left");
    assert_eq!(
        records(&v.root.join("meta/ec"), b'b'),
        0,
        "backup records left"
    );
}

#[test]
fn replacing_a_file_destroys_the_old_object() {
    let mut rng = Rng::from_env("replacing_a_file");
    let v = TestVault::new(&[]);
    let a = rng.bytes(250_000);
    v.put_bytes(&a, "/p").success();
    let old = v.object_of("/p");
    assert_eq!(v.shards_of(&old).len(), 5);

    let b = rng.bytes(3_000);
    v.put_bytes(&b, "/p").success().quiet();
    v.assert_reads("/p", &b).quiet();
    let new = v.object_of("/p");
    assert_ne!(new, old, "a replaced file gets a new object");
    assert!(
        v.shards_of(&old).is_empty(),
        "old shards left: {:?}",
        v.shards_of(&old)
    );
    assert_eq!(v.shards_of(&new).len(), 5);
    assert_eq!(v.shards().len(), 5, "only the new object's shards remain");
    let (r, report) = v.keys_verify();
    r.success();
    assert_eq!(report["checked"], 1);
    assert_eq!(report["stray_shares"], json!([]));
    let ls = v.run("ls", &["/p", "-l"]).out();
    assert!(
        ls.contains(&format!(" {} ", b.len())),
        "ls -l shows the new size: {ls}"
    );

    // From stdin.
    let c = rng.bytes(70_000);
    qsfs_stdin(&["put", &v.arg(), "-", "/p"], &c)
        .success()
        .quiet();
    v.assert_reads("/p", &c);
    assert!(v.shards_of(&new).is_empty());
    assert!(
        std::fs::read_dir(v.root.join("staging"))
            .unwrap()
            .next()
            .is_none(),
        "the stdin spool was left in staging"
    );

    // With an empty file: no object at all.
    v.put_bytes(b"", "/p").success();
    v.assert_reads("/p", b"");
    assert!(v.shards().is_empty(), "an empty file keeps no shards");
    assert_eq!(v.status()["objects"], 0);
    assert_eq!(records(&v.root.join("keys"), b'1'), 0);
}

#[test]
fn plaintext_and_names_never_reach_a_node() {
    let mut rng = Rng::from_env("plaintext_never_reaches_a_node");
    let v = TestVault::new(&["--max-chunk", "4096"]);
    let marker: &[u8; 16] = b"QSFS-PLAINTEXT!!";
    let folder = "Project-Kx7Q-secret";
    let names = [
        "payroll-Zq9w.xlsx",
        "tiny-Mv3r.txt",
        "many-Pp8t.bin",
        "mixed-Jd2k.dat",
        "stdin-Wn5c.tar",
    ];
    // Marker alone (smaller than a chunk), a file of many markers, markers
    // scattered in random data, a marker run through stdin.
    let mut mixed = rng.bytes(300_000);
    for _ in 0..50 {
        let at = rng.index(mixed.len() - 16);
        mixed[at..at + 16].copy_from_slice(marker);
    }
    let contents: Vec<Vec<u8>> = vec![
        marker.repeat(20),
        marker.to_vec(),
        marker.repeat(100_000),
        mixed,
        marker.repeat(5_000),
    ];
    v.run("mkdir", &[&format!("/{folder}")]).success();
    for (i, (name, data)) in names.iter().zip(&contents).enumerate() {
        let vpath = format!("/{folder}/{name}");
        if i == 4 {
            qsfs_stdin(&["put", &v.arg(), "-", &vpath], data).success();
        } else {
            v.put_bytes(data, &vpath).success();
        }
        v.assert_reads(&vpath, data);
    }
    let mut needles: Vec<Vec<u8>> = vec![marker.to_vec(), folder.as_bytes().to_vec()];
    needles.extend(names.iter().map(|n| n.as_bytes().to_vec()));
    // A shorter piece of the marker too (a chunk boundary could cut it).
    needles.push(marker[..12].to_vec());

    let mut scanned = 0u64;
    for (node, dir) in v.nodes() {
        for f in files_under(&dir) {
            let data = std::fs::read(&f).unwrap();
            scanned += data.len() as u64;
            let path = f.to_string_lossy().into_owned();
            for n in &needles {
                assert!(
                    !contains(&data, n),
                    "{node}: {} holds {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                );
                assert!(
                    !path.contains(std::str::from_utf8(n).unwrap()),
                    "{node}: a file name holds a vault name: {path}"
                );
            }
        }
    }
    let total: usize = contents.iter().map(std::vec::Vec::len).sum();
    assert!(
        scanned as usize > total,
        "the nodes hold less than the plaintext ({scanned} < {total})"
    );
    // Plaintext nowhere in the vault folder either; names only in the
    // namespace (and in `.lock`, which shows the holder's command line).
    for f in files_under(&v.root) {
        let data = std::fs::read(&f).unwrap();
        assert!(
            !contains(&data, marker),
            "plaintext found in {}",
            f.display()
        );
        if !f.starts_with(v.root.join("meta/ns")) && f != v.root.join(".lock") {
            for n in &needles[1..] {
                assert!(
                    !contains(&data, n),
                    "{} holds the name {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                );
            }
        }
    }
}

#[test]
fn ls_mkdir_rm_and_stdout() {
    let mut rng = Rng::from_env("ls_mkdir_rm_and_stdout");
    let v = TestVault::new(&["--k", "2", "--n", "4"]);
    v.run("mkdir", &["-p", "/a/b/c"]).success();
    v.run("mkdir", &["-p", "/a/b"]).success();
    v.run("mkdir", &["--mode", "700", "/private"]).success();
    let data = rng.bytes(100_000);
    let local = v.scratch_path("report.pdf");
    std::fs::write(&local, &data).unwrap();
    std::fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    // Several sources into a folder.
    let other = v.scratch_path("notes.txt");
    std::fs::write(&other, b"notes").unwrap();
    v.run(
        "put",
        &[local.to_str().unwrap(), other.to_str().unwrap(), "/a/b"],
    )
    .success();
    let ln = local.file_name().unwrap().to_str().unwrap();
    let on = other.file_name().unwrap().to_str().unwrap();

    let r = v.run("ls", &["/a/b", "-l"]);
    r.success();
    let out = r.out();
    let line = out.lines().find(|l| l.ends_with(ln)).unwrap();
    assert!(line.starts_with("-rw-r-----"), "mode kept: {line}");
    assert!(line.contains(" 100000 "), "size shown: {line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("drwxr-xr-x") && l.ends_with(" c")),
        "{out}"
    );
    let r = v.run("ls", &["/", "-l"]);
    assert!(
        r.out()
            .lines()
            .any(|l| l.starts_with("drwx------") && l.ends_with(" private")),
        "{}",
        r.out()
    );

    // get to stdout and into a local folder (keeps the name).
    let r = v.run("get", &[&format!("/a/b/{ln}"), "-"]);
    r.success().quiet();
    assert!(r.stdout == data);
    let into = v.tmp.path().join("into");
    std::fs::create_dir(&into).unwrap();
    v.run("get", &[&format!("/a/b/{on}"), into.to_str().unwrap()])
        .success();
    assert_eq!(std::fs::read(into.join(on)).unwrap(), b"notes");

    // status counts.
    let st = v.status();
    assert_eq!(
        (
            st["files"].as_u64(),
            st["directories"].as_u64(),
            st["objects"].as_u64()
        ),
        (Some(2), Some(5), Some(2))
    );
    assert_eq!(
        (
            st["k"].as_u64(),
            st["n"].as_u64(),
            st["write_quorum"].as_u64()
        ),
        (Some(2), Some(4), Some(3))
    );
    let text = v.run("status", &[]).out();
    assert!(
        text.contains("content   2 files, 5 folders, 2 objects"),
        "{text}"
    );
    assert!(
        text.contains("any 2 of 4 shards rebuild a file; write quorum 3"),
        "{text}"
    );
    assert!(text.contains("repair    nothing owed"), "{text}");

    // rm of a file, then of the tree.
    v.run("rm", &[&format!("/a/b/{on}")]).success();
    v.run("ls", &[&format!("/a/b/{on}")])
        .failure()
        .stderr_has(&["no such file or directory"]);
    v.run("rm", &["-r", "/a"]).success();
    assert_eq!(v.run("ls", &[]).out(), "private\n");
    assert!(v.shards().is_empty());
}

#[test]
fn warnings_redirected_to_a_file_are_plain_text() {
    let v = TestVault::new(&[]);
    v.put_bytes(b"some content", "/f").success();
    let obj = v.object_of("/f");
    // Remove shard 0 so the read has to warn.
    let shard0 = v
        .shards_of(&obj)
        .into_iter()
        .find(|s| s.index == 0)
        .unwrap();
    std::fs::remove_file(&shard0.path).unwrap();
    let out = v.scratch.join("out");
    let raw = std::process::Command::new(bin())
        .args(["get", &v.arg(), "/f", out.to_str().unwrap()])
        .env("XDG_CONFIG_HOME", crate::common::key_dir())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(raw.status.success());
    let stderr = String::from_utf8(raw.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "/f: shard 0 of object {obj} on {} is bad (missing)",
            shard0.node
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in redirected warnings: {stderr:?}"
    );
}
