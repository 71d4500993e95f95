//! The file commands (`ls`, `get`, `put`, `rm`, `mkdir`) and `keys` on a
//! mounted vault: the mount process runs them on its own state, asked
//! through its control socket (control.rs; what it does is in
//! fs/live.rs), so that what they report and what the mount shows agree.
//! Each function answers `Ok(None)` when no mount process answers: the
//! command then opens the vault itself (and the vault lock notices a
//! mount whose process died, vault/lock.rs).
//!
//! A failure the mount reports is printed as the command prints it
//! without a mount (the mount words it so), and exit statuses are the
//! same.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{self, ControlError, Event, MAX_CHUNK, Upload};
use crate::fs::live::{
    GetArgs, GetDone, IsDir, MkdirArgs, PathArgs, PutDone, PutItem, RmArgs, WirePath,
};
use crate::maint::{KeyReport, KeysOptions};
use crate::namespace::{Time, VaultPath};
use crate::vault::{ListEntry, LocalSource, PutSource, VaultError};

/// A failure the mount reported, worded as the command prints it without
/// a mount; any other as it is.
fn plain(e: ControlError) -> anyhow::Error {
    match e {
        ControlError::Remote(text) => anyhow::Error::msg(text),
        other => other.into(),
    }
}

/// The error of a command whose mount went away between two requests.
pub fn mount_ended(root: &Path) -> anyhow::Error {
    anyhow!(
        "the mount of {} ended while the command ran; run it again",
        root.display()
    )
}

/// Runs `op` through the mount; `None` when no mount answers.
fn call<A: Serialize, R: DeserializeOwned>(root: &Path, op: &str, args: &A) -> Result<Option<R>> {
    let args = serde_json::to_value(args)?;
    match control::call(root, op, args, &|_| {}) {
        Ok(v) => Ok(Some(serde_json::from_value(v).map_err(|e| {
            anyhow!("undecodable {op} answer from the mount process: {e}")
        })?)),
        Err(ControlError::NotMounted(_)) => Ok(None),
        Err(e) => Err(plain(e)),
    }
}

/// `qsfs ls`: the entries of `path`.
pub fn ls(root: &Path, path: &VaultPath) -> Result<Option<Vec<ListEntry>>> {
    call(
        root,
        "ls",
        &PathArgs {
            path: WirePath::of(path),
        },
    )
}

/// Whether `path` is a folder (`put` decides where its sources go).
pub fn is_dir(root: &Path, path: &VaultPath) -> Result<Option<bool>> {
    let answer: Option<IsDir> = call(
        root,
        "is-dir",
        &PathArgs {
            path: WirePath::of(path),
        },
    )?;
    Ok(answer.map(|d| d.dir))
}

/// `qsfs mkdir` of one folder.
pub fn mkdir(root: &Path, path: &VaultPath, parents: bool, mode: u32) -> Result<Option<()>> {
    let answer: Option<serde_json::Value> = call(
        root,
        "mkdir",
        &MkdirArgs {
            path: WirePath::of(path),
            parents,
            mode,
        },
    )?;
    Ok(answer.map(|_| ()))
}

/// `qsfs rm` of one path.
pub fn rm(root: &Path, path: &VaultPath, recursive: bool) -> Result<Option<()>> {
    let answer: Option<serde_json::Value> = call(
        root,
        "rm",
        &RmArgs {
            path: WirePath::of(path),
            recursive,
        },
    )?;
    Ok(answer.map(|_| ()))
}

/// `qsfs keys verify|repair`.
pub fn keys(root: &Path, repair: bool) -> Result<Option<KeyReport>> {
    call(root, "keys", &KeysOptions { repair })
}

/// `qsfs get`: the content of `path` into the local file `local`, or to
/// stdout for `None` (everything authenticated before the first byte, as
/// without a mount). The content comes in chunks as the mount sends it.
pub fn get(root: &Path, path: &VaultPath, local: Option<&Path>) -> Result<Option<()>> {
    let mut client = match control::connect(root) {
        Ok(c) => c,
        Err(ControlError::NotMounted(_)) => return Ok(None),
        Err(e) => return Err(plain(e)),
    };
    let mut fetch = |out: &mut dyn Write, verify_first: bool| -> Result<u32> {
        let args = GetArgs {
            path: WirePath::of(path),
            verify_first,
        };
        client
            .start("get", serde_json::to_value(args)?)
            .map_err(plain)?;
        let mut buf = Vec::new();
        loop {
            match client.next(&mut buf).map_err(plain)? {
                Event::Data => out.write_all(&buf).map_err(|source| VaultError::Io {
                    what: "write the output".into(),
                    source,
                })?,
                Event::Progress(_) => {}
                Event::Done(v) => {
                    let done: GetDone = serde_json::from_value(v).map_err(|e| {
                        anyhow!("undecodable get answer from the mount process: {e}")
                    })?;
                    return Ok(done.mode);
                }
            }
        }
    };
    match local {
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            fetch(&mut out, true)?;
            out.flush().context("cannot write to standard output")?;
        }
        Some(dest) => crate::vault::write_local(dest, fetch)?,
    }
    Ok(Some(()))
}

/// Reads until `buf` is full or the source ends (fewer, larger chunks).
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `qsfs put` of `items` (their folders made already): each source is
/// opened here and its content sent in chunks, so neither process holds
/// a whole file. Per item, why it was not stored (`None`: stored).
pub fn put(root: &Path, items: &[(PutSource, VaultPath)]) -> Result<Option<Vec<Option<String>>>> {
    let mut client = match control::connect(root) {
        Ok(c) => c,
        Err(ControlError::NotMounted(_)) => return Ok(None),
        Err(e) => return Err(plain(e)),
    };
    client
        .start("put", serde_json::Value::Null)
        .map_err(plain)?;
    let mut up = client.upload().map_err(plain)?;
    let mut errors: Vec<Option<String>> = vec![None; items.len()];
    let mut sent = Vec::new();
    let mut buf = vec![0u8; MAX_CHUNK];
    for (i, (src, path)) in items.iter().enumerate() {
        let (mut reader, mode, mtime, stdin, what): (Box<dyn Read>, u32, Time, bool, String) =
            match src {
                PutSource::File(p) => match LocalSource::open(p) {
                    Ok(l) => (
                        Box::new(l.file),
                        l.mode,
                        l.mtime,
                        false,
                        format!("read {}", p.display()),
                    ),
                    Err(e) => {
                        errors[i] = Some(e.to_string());
                        continue;
                    }
                },
                // As without a mount: a new file from stdin is 0644, now.
                PutSource::Stdin => (
                    Box::new(std::io::stdin().lock()),
                    0o644,
                    Time::now(),
                    true,
                    "read standard input".into(),
                ),
                PutSource::Received(r) => {
                    errors[i] = Some(format!(
                        "{} is a spool of the mount process, not a source",
                        r.spool.display()
                    ));
                    continue;
                }
            };
        let item = PutItem {
            path: WirePath::of(path),
            mode,
            mtime,
            stdin,
        };
        up.send(&Upload::Item(serde_json::to_value(item)?))
            .map_err(plain)?;
        sent.push(i);
        loop {
            match fill(&mut *reader, &mut buf) {
                Ok(0) => {
                    up.send(&Upload::End(())).map_err(plain)?;
                    break;
                }
                Ok(n) => up.send_data(&buf[..n]).map_err(plain)?,
                Err(source) => {
                    let why = source.to_string();
                    errors[i] = Some(VaultError::Io { what, source }.to_string());
                    up.send(&Upload::Abort(why)).map_err(plain)?;
                    break;
                }
            }
        }
    }
    let done: PutDone = serde_json::from_value(up.finish().map_err(plain)?)
        .map_err(|e| anyhow!("undecodable put answer from the mount process: {e}"))?;
    for (k, &i) in sent.iter().enumerate() {
        if errors[i].is_none() {
            errors[i] = done.errors.get(k).cloned().flatten();
        }
    }
    Ok(Some(errors))
}
