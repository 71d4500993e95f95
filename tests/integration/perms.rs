//! Key-bearing files are owner-only whatever the umask, and a vault whose
//! key stores others can reach is refused with the `chmod` that fixes it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{bin, strip_ansi};

/// Runs qsfs under `umask 022` (what most shells have), so a file made
/// without an explicit mode would be 0644 and a folder 0755.
fn qsfs_umask022(args: &[&str]) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

/// Every folder and file under `root` (itself included) with group or
/// other permission bits.
fn exposed(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut bad = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            bad.push((p.clone(), mode));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    bad
}

#[test]
fn key_stores_and_node_folders_are_owner_only_and_checked_on_open() {
    let tmp = tempfile::Builder::new()
        .prefix("qsfs-test-")
        .tempdir()
        .unwrap();
    let vault = tmp.path().join("vault");
    let r2 = tmp.path().join("usb/qsfs-r2");
    let nodes: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("disk{i}/n")))
        .collect();
    let node_list = nodes
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let v = vault.to_str().unwrap();
    let (ok, err) = qsfs_umask022(&[
        "init",
        v,
        "--k",
        "2",
        "--n",
        "3",
        "--r2-path",
        r2.to_str().unwrap(),
        "--nodes",
        &node_list,
    ]);
    assert!(ok, "init: {err}");
    let src = tmp.path().join("src");
    std::fs::write(&src, vec![7u8; 200_000]).unwrap();
    let (ok, err) = qsfs_umask022(&["put", v, src.to_str().unwrap(), "/f"]);
    assert!(ok, "put: {err}");

    // The vault folder itself (its config and lock file hold no keys).
    let root_mode = std::fs::metadata(&vault).unwrap().permissions().mode() & 0o777;
    assert_eq!(root_mode, 0o700, "vault folder");
    let mut bad = Vec::new();
    for p in [
        vault.join("keys"),
        vault.join("meta/ec"),
        vault.join("links"),
        r2.clone(),
    ]
    .iter()
    .chain(&nodes)
    {
        assert!(p.exists(), "{} was made", p.display());
        bad.extend(exposed(p));
    }
    assert!(
        std::fs::read_dir(vault.join("links")).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "pool")),
        "the links have key pools"
    );
    assert!(bad.is_empty(), "group/other bits on {bad:#?}");

    // The keystore opened up to others: refused, naming it and the fix.
    let keys = vault.join("keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("out");
    for args in [
        vec!["ls", v, "/"],
        vec!["get", v, "/f", out.to_str().unwrap()],
    ] {
        let (ok, err) = qsfs_umask022(&args);
        assert!(!ok, "{args:?} must fail");
        let want = format!("chmod -R go-rwx {}", keys.display());
        assert!(
            err.contains(&keys.display().to_string()) && err.contains(&want),
            "{args:?}: {err}"
        );
    }
    assert!(!out.exists());
    // So is a separate R2 store others can reach.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&r2, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (ok, err) = qsfs_umask022(&["ls", v, "/"]);
    assert!(
        !ok && err.contains(&format!("chmod -R go-rwx {}", r2.display())),
        "{err}"
    );
    std::fs::set_permissions(&r2, std::fs::Permissions::from_mode(0o700)).unwrap();

    let (ok, err) = qsfs_umask022(&["get", v, "/f", out.to_str().unwrap()]);
    assert!(ok, "get after the chmod: {err}");
    assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 200_000]);
}
