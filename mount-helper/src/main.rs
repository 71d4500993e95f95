//! `mount.qsfs`: the mount(8) helper for qsfs.
//!
//! Built as `mount-qsfs` (Cargo cannot name a binary `mount.qsfs`, see
//! Cargo.toml), installed as `mount.qsfs` with `/sbin/mount.fuse.qsfs` (type
//! `fuse.qsfs`) and `/sbin/mount.qsfs` (type `qsfs`) linked to it
//! (scripts/install.sh), it makes `mount -t fuse.qsfs VAULT DIR
//! -o OPTS` and fstab lines such as
//!
//! ```text
//! /srv/vault  /mnt/vault  fuse.qsfs  defaults,allow_other  0 0
//! ```
//!
//! work: it parses what mount(8) passes (see `args`), drops mount(8)'s own
//! options, finds the `qsfs` binary (`$QSFS_BIN`, next to this executable,
//! `$PATH`, /usr/local/bin, /usr/bin) and runs `qsfs mount -o OPTS -- VAULT
//! DIR`. qsfs daemonises itself and returns once the mount is live; the
//! helper returns qsfs's exit status, and qsfs's error messages (stderr)
//! pass straight through.
#![deny(unsafe_code)]

mod args;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use args::{Parsed, Request, USAGE};

const HELP: &str = "\
mount.qsfs: mount(8) helper for qsfs vaults.

usage: mount.qsfs VAULT DIR [-sfnv] [-o OPTIONS] [-t fuse.qsfs]

Runs `qsfs mount VAULT DIR -o OPTIONS`, so that `mount -t fuse.qsfs VAULT DIR`
and /etc/fstab lines like
    /srv/vault  /mnt/vault  fuse.qsfs  defaults,allow_other  0 0
work. Install it as /sbin/mount.fuse.qsfs and /sbin/mount.qsfs
(scripts/install.sh does).

  -o OPTIONS  comma-separated; may repeat. qsfs options: allow_other, allow_root,
              default_permissions, ro, rw, dev, nodev, suid, nosuid, exec, noexec,
              atime, relatime, strictatime, noatime, sync, async, dirsync,
              auto_unmount. Helper options: threads=N (FUSE worker threads),
              log_level=LEVEL (VAULT/qsfs.log), setuid=USER (run qsfs as USER).
              mount(8)'s own words (defaults, noauto, nofail, _netdev, x-*, ...)
              are ignored.
  -s          sloppy: ignore unknown options instead of failing
  -f          fake: do everything but the mount
  -n          do not write /etc/mtab (qsfs never does)
  -v          verbose: print the qsfs command
  -t TYPE     fuse.qsfs or qsfs

QSFS_BIN=/path/to/qsfs overrides where the qsfs binary is found.
";

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1)) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mount.qsfs: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(argv: impl Iterator<Item = OsString>) -> Result<ExitCode, String> {
    let req = match args::parse(argv) {
        Ok(Parsed::Mount(r)) => r,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Parsed::Version) => {
            println!("mount.qsfs {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(format!("{e}\n{USAGE}")),
    };
    if req.verbose {
        for (opt, why) in &req.dropped {
            println!("mount.qsfs: option {opt}: {why}");
        }
    }
    let qsfs = find_qsfs()?;
    let qsfs_args = qsfs_args(&req);
    let user = req.setuid.as_deref().map(lookup_user).transpose()?;

    if req.verbose || req.fake {
        let as_user = user
            .as_ref()
            .map(|u| format!(" (as user {})", u.name))
            .unwrap_or_default();
        let shown: Vec<String> = std::iter::once(qsfs.as_os_str())
            .chain(qsfs_args.iter().map(OsString::as_os_str))
            .map(quote)
            .collect();
        let what = if req.fake { "would run" } else { "running" };
        println!("mount.qsfs: {what}{as_user}: {}", shown.join(" "));
    }
    if req.fake {
        return Ok(ExitCode::SUCCESS);
    }

    let mut cmd = Command::new(&qsfs);
    cmd.args(&qsfs_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(u) = &user {
        cmd.uid(u.uid)
            .gid(u.gid)
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
    // qsfs's own stdout is one "mounted ... (log: ...)" line, shown with -v
    // only (mount helpers are quiet when all is well). The daemon it starts
    // does not hold this pipe, so this returns when the mount is live.
    let out = cmd.output().map_err(|e| {
        let who = user
            .as_ref()
            .map(|u| format!(" as user {}", u.name))
            .unwrap_or_default();
        format!("cannot run {}{who}: {e}", qsfs.display())
    })?;
    if req.verbose {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    match out.status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))),
        None => Err(format!(
            "{} ended by a signal ({})",
            qsfs.display(),
            out.status
        )),
    }
}

/// `mount [-o OPTS] [--threads N] [--log-level L] -- SPEC DIR`.
fn qsfs_args(req: &Request) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["mount".into()];
    if !req.options.is_empty() {
        a.push("-o".into());
        a.push(req.options.join(",").into());
    }
    if let Some(n) = req.threads {
        a.push("--threads".into());
        a.push(n.to_string().into());
    }
    if let Some(l) = &req.log_level {
        a.push("--log-level".into());
        a.push(l.into());
    }
    // Vault and mount point after `--`: a path may start with a dash.
    a.push("--".into());
    a.push(req.spec.clone());
    a.push(req.dir.clone());
    a
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `$QSFS_BIN`, then `qsfs` next to this executable (symlinks resolved),
/// then `$PATH`, then /usr/local/bin and /usr/bin.
fn find_qsfs() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("QSFS_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !is_executable(&bin) {
            return Err(format!(
                "QSFS_BIN={} is not an executable file",
                bin.display()
            ));
        }
        return Ok(bin);
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join("qsfs"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    tried.extend(
        std::env::split_paths(&path)
            .filter(|d| d.is_absolute())
            .map(|d| d.join("qsfs")),
    );
    tried.extend(["/usr/local/bin/qsfs", "/usr/bin/qsfs"].map(PathBuf::from));
    if let Some(found) = tried.iter().find(|p| is_executable(p)) {
        return Ok(found.clone());
    }
    let here = tried
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unknown)".into());
    Err(format!(
        "cannot find the qsfs binary (not at {here}, not in PATH, /usr/local/bin or /usr/bin); install it with scripts/install.sh or set QSFS_BIN"
    ))
}

/// A user from the passwd database.
#[derive(Debug, PartialEq, Eq)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// Looks `user` (a name or a uid) up with getent(1), so NSS sources such as
/// LDAP count too.
fn lookup_user(user: &str) -> Result<User, String> {
    let out = Command::new("getent")
        .arg("passwd")
        .arg(user)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("setuid={user}: cannot run getent to look the user up: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout);
    let line = line.lines().next().unwrap_or("");
    if !out.status.success() || line.is_empty() {
        return Err(format!("setuid={user}: no such user"));
    }
    parse_passwd(line)
        .ok_or_else(|| format!("setuid={user}: cannot read the passwd entry {line:?}"))
}

/// `name:x:uid:gid:gecos:home:shell`.
fn parse_passwd(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || f[0].is_empty() {
        return None;
    }
    Some(User {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_string(),
    })
}

/// Shell-quotes `s` for display when it needs it.
fn quote(s: &OsStr) -> String {
    let text = s.to_string_lossy();
    let plain = !text.is_empty()
        && s.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,=:+@%".contains(b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn req(a: &[&str]) -> Request {
        match args::parse(a.iter().map(OsString::from)) {
            Ok(Parsed::Mount(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builds_the_qsfs_command() {
        let r = req(&[
            "/srv/vault",
            "/mnt/x",
            "-o",
            "defaults,noatime,allow_other,threads=2,log_level=debug",
        ]);
        let a: Vec<String> = qsfs_args(&r)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            a,
            [
                "mount",
                "-o",
                "noatime,allow_other",
                "--threads",
                "2",
                "--log-level",
                "debug",
                "--",
                "/srv/vault",
                "/mnt/x"
            ]
        );
        let r = req(&["v", "m", "-o", "defaults"]);
        assert_eq!(qsfs_args(&r), ["mount", "--", "v", "m"].map(OsString::from));
    }

    #[test]
    fn passwd_lines() {
        assert_eq!(
            parse_passwd("alice:x:1000:100:Alice,,,:/home/alice:/bin/bash"),
            Some(User {
                name: "alice".into(),
                uid: 1000,
                gid: 100,
                home: "/home/alice".into()
            })
        );
        assert_eq!(parse_passwd("bad:x:one:100::/:/bin/sh"), None);
        assert_eq!(parse_passwd("short:x:1"), None);
    }

    #[test]
    fn root_is_found() {
        // getent is part of libc-bin on every Debian.
        if let Ok(u) = lookup_user("0") {
            assert_eq!((u.uid, u.gid), (0, 0));
        }
        assert!(
            lookup_user("no-such-user-qsfs-test")
                .unwrap_err()
                .contains("no such user")
        );
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(quote(OsStr::new("/srv/vault")), "/srv/vault");
        assert_eq!(quote(OsStr::new("a b")), "'a b'");
        assert_eq!(quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(quote(OsStr::new("")), "''");
    }
}
