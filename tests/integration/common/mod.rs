//! Shared helpers of the integration tests: temp vaults, running the real
//! `qsfs` binary, random data, folder-tree snapshots, node and shard
//! inspection, and guards that undo mounts and immutable flags.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

/// The qsfs binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_qsfs")
}

/// Removes ANSI escape sequences (log colours) from `s`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// What one qsfs run produced.
#[derive(Debug)]
pub struct Run {
    /// The arguments, for messages.
    pub args: Vec<String>,
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error, without colour codes.
    pub stderr: String,
}

impl Run {
    /// True on exit status 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics unless the run succeeded.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert!(
            self.ok(),
            "qsfs {:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.args,
            self.code,
            self.out(),
            self.stderr
        );
        self
    }

    /// Panics unless the run failed with exit code 1 and an `qsfs: error:`
    /// line on stderr.
    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(1),
            "qsfs {:?} should fail with exit 1:\nstdout: {}\nstderr: {}",
            self.args,
            self.out(),
            self.stderr
        );
        assert!(
            self.stderr.contains("qsfs: error:"),
            "qsfs {:?}: no error line on stderr: {}",
            self.args,
            self.stderr
        );
        self
    }

    /// Panics unless stderr contains every fragment.
    #[track_caller]
    pub fn stderr_has(&self, fragments: &[&str]) -> &Self {
        for f in fragments {
            assert!(
                self.stderr.contains(f),
                "qsfs {:?}: stderr lacks {f:?}:\n{}",
                self.args,
                self.stderr
            );
        }
        self
    }

    /// Panics unless stdout contains every fragment.
    #[track_caller]
    pub fn stdout_has(&self, fragments: &[&str]) -> &Self {
        let out = self.out();
        for f in fragments {
            assert!(
                out.contains(f),
                "qsfs {:?}: stdout lacks {f:?}:\n{out}",
                self.args
            );
        }
        self
    }

    /// Panics if stderr holds a warning or error line.
    #[track_caller]
    pub fn quiet(&self) -> &Self {
        assert!(
            !self.stderr.contains("WARN")
                && !self.stderr.contains("warning")
                && !self.stderr.contains("error"),
            "qsfs {:?}: unexpected messages on stderr:\n{}",
            self.args,
            self.stderr
        );
        self
    }
}

/// Where `qsfs init` puts the key files of the test run's vaults (its
/// default is ~/.config/qsfs, which tests must not fill).
pub fn key_dir() -> PathBuf {
    std::env::temp_dir().join(format!("qsfs-test-keys-{}", std::process::id()))
}

fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("RUST_LOG")
        .env_remove("QSFS_PASSPHRASE_FILE")
        .env_remove("QSFS_KEY_FILE")
        .env("XDG_CONFIG_HOME", key_dir())
        .env("NO_COLOR", "1");
    c
}

fn collect<S: AsRef<OsStr>>(args: &[S], out: std::process::Output) -> Run {
    Run {
        args: args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect(),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// Runs qsfs with `args` (stdin closed).
pub fn qsfs<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let out = command(args)
        .stdin(Stdio::null())
        .output()
        .expect("run qsfs");
    collect(args, out)
}

/// Runs qsfs with `input` on stdin.
pub fn qsfs_stdin<S: AsRef<OsStr>>(args: &[S], input: &[u8]) -> Run {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qsfs");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for qsfs");
    feeder.join().unwrap();
    collect(args, out)
}

/// Runs qsfs with `args` and returns the raw output, for tests that read
/// bytes from stdout.
pub fn qsfs_output<S: AsRef<OsStr>>(args: &[S]) -> std::process::Output {
    command(args).output().expect("run qsfs")
}

/// The files of a fixture: each path in `spec` with that many random bytes.
pub fn sample_files(rng: &mut Rng, spec: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    spec.iter()
        .map(|(path, len)| (path.to_string(), rng.bytes(*len)))
        .collect()
}

/// The status fields of node `name` in `qsfs status --json` output.
pub fn node_status<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["nodes"]
        .as_array()
        .expect("status has a nodes array")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {st:#}"))
}

/// A command line for qsfs, for tests that manage the child themselves.
pub fn qsfs_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    command(args)
}

// ---------------------------------------------------------------- random

/// A small deterministic generator (splitmix64): reproducible test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `QSFS_TEST_SEED` if set, else from the clock; the seed
    /// is printed so a failure can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("QSFS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: QSFS_TEST_SEED={seed}");
        Rng(seed)
    }

    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform index into a slice of length `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// `k` distinct indices below `n`, in random order.
    pub fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.index(i + 1);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
}

// -------------------------------------------------------------- snapshot

/// One entry of a folder-tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder (with its permission bits).
    Dir(u32),
    /// A file: permission bits, size and BLAKE3 of its contents.
    File(u32, u64, String),
    /// A symbolic link and its target.
    Link(PathBuf),
}

/// Every path under `root` (relative), with sizes and content hashes.
pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Takes a snapshot of the tree at `root`, skipping paths for which
/// `skip` returns true (relative paths).
pub fn snapshot_filtered(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Snapshot {
    fn walk(root: &Path, dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if skip(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&p).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Entry::Dir(mode));
                walk(root, &p, skip, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    Entry::File(
                        mode,
                        data.len() as u64,
                        blake3::hash(&data).to_hex().to_string(),
                    ),
                );
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, skip, &mut out);
    out
}

/// Snapshot of a whole tree.
pub fn snapshot(root: &Path) -> Snapshot {
    snapshot_filtered(root, &|_| false)
}

/// Snapshot of a vault folder. `.lock` is left out: every command
/// rewrites the holder's pid in it, by design.
pub fn vault_snapshot(root: &Path) -> Snapshot {
    snapshot_filtered(root, &|p| p == Path::new(".lock"))
}

/// Panics with a readable difference unless the snapshots are equal.
#[track_caller]
pub fn assert_same_tree(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut diff = Vec::new();
    for (p, e) in before {
        match after.get(p) {
            None => diff.push(format!("  removed {}", p.display())),
            Some(a) if a != e => diff.push(format!("  changed {}: {e:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            diff.push(format!("  added   {}", p.display()));
        }
    }
    panic!("{what}: the tree changed:\n{}", diff.join("\n"));
}

// ----------------------------------------------------------------- vault

/// A vault in its own temp folder, with a scratch folder for local files.
pub struct TestVault {
    /// Holds everything; removed on drop.
    pub tmp: tempfile::TempDir,
    /// The vault folder.
    pub root: PathBuf,
    /// Local scratch files.
    pub scratch: PathBuf,
    counter: std::cell::Cell<u64>,
    guards: std::cell::RefCell<Vec<Box<dyn std::any::Any>>>,
}

impl Drop for TestVault {
    fn drop(&mut self) {
        // Undo mounts inside the temp folder before it is removed.
        while let Some(g) = self.guards.borrow_mut().pop() {
            drop(g);
        }
    }
}

impl TestVault {
    /// `qsfs init` of a fresh vault with extra `args` (e.g. `--k 2`).
    pub fn new(args: &[&str]) -> TestVault {
        let tmp = tempfile::Builder::new()
            .prefix("qsfs-test-")
            .tempdir()
            .unwrap();
        Self::new_in(tmp, args)
    }

    /// Like [`TestVault::new`] inside an existing temp folder (for tests
    /// that prepare node folders first).
    pub fn new_in(tmp: tempfile::TempDir, args: &[&str]) -> TestVault {
        let root = tmp.path().join("vault");
        let scratch = tmp.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut a: Vec<String> = vec!["init".into(), root.display().to_string()];
        // A file per shard unless a test asks for packs: these tests find,
        // count, damage and remove shard files by path (`shards()`), which
        // a pack does not have. Packs, the default of `qsfs init`, have
        // their own fault tests (node/packs.rs, case-mount-packs), and the
        // shell cases of the mount run on them.
        if !args.contains(&"--packs") {
            a.push("--no-packs".into());
        }
        a.extend(args.iter().map(std::string::ToString::to_string));
        qsfs(&a).success().stdout_has(&["created vault"]);
        TestVault {
            tmp,
            root,
            scratch,
            counter: std::cell::Cell::new(0),
            guards: Default::default(),
        }
    }

    /// Keeps a guard (a mount, an immutable flag) alive until the vault is
    /// dropped, and drops it before the temp folder is removed.
    pub fn keep<T: 'static>(&self, guard: T) {
        self.guards.borrow_mut().push(Box::new(guard));
    }

    /// The vault folder as a string argument.
    pub fn arg(&self) -> String {
        self.root.display().to_string()
    }

    /// Runs `qsfs CMD VAULT REST...`.
    pub fn run(&self, cmd: &str, rest: &[&str]) -> Run {
        let mut a: Vec<String> = vec![cmd.into(), self.arg()];
        a.extend(rest.iter().map(std::string::ToString::to_string));
        qsfs(&a)
    }

    /// A fresh scratch path.
    pub fn scratch_path(&self, hint: &str) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        self.scratch.join(format!("{n}-{hint}"))
    }

    /// Writes `data` to a scratch file and stores it at `vpath`.
    pub fn put_bytes(&self, data: &[u8], vpath: &str) -> Run {
        self.put_bytes_with(data, vpath, &[])
    }

    /// [`TestVault::put_bytes`] with more arguments (an unlock option).
    pub fn put_bytes_with(&self, data: &[u8], vpath: &str, extra: &[&str]) -> Run {
        let local = self.scratch_path("src");
        std::fs::write(&local, data).unwrap();
        let mut args = vec![local.to_str().unwrap(), vpath];
        args.extend_from_slice(extra);
        let r = self.run("put", &args);
        std::fs::remove_file(&local).unwrap();
        r
    }

    /// Reads `vpath` into a scratch file; returns the run and the bytes
    /// (None if no output file was created).
    pub fn get_bytes(&self, vpath: &str) -> (Run, Option<Vec<u8>>) {
        let local = self.scratch_path("out");
        let r = self.run("get", &[vpath, local.to_str().unwrap()]);
        let data = std::fs::read(&local).ok();
        if data.is_some() {
            std::fs::remove_file(&local).unwrap();
        }
        (r, data)
    }

    /// Reads `vpath` and asserts it succeeds with exactly `want`.
    #[track_caller]
    pub fn assert_reads(&self, vpath: &str, want: &[u8]) -> Run {
        let (r, data) = self.get_bytes(vpath);
        r.success();
        let data = data.unwrap_or_else(|| panic!("get {vpath} succeeded but wrote no file"));
        assert_eq!(data.len(), want.len(), "{vpath}: length differs");
        assert!(data == want, "{vpath}: content differs");
        r
    }

    /// `qsfs status --json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        let r = self.run("status", &["--json"]);
        r.success();
        serde_json::from_slice(&r.stdout).unwrap()
    }

    /// `qsfs keys verify --json` (run and parsed report).
    pub fn keys_verify(&self) -> (Run, Value) {
        let r = qsfs(&["keys", "verify", &self.arg(), "--json"]);
        let v = serde_json::from_slice(&r.stdout).unwrap_or(Value::Null);
        (r, v)
    }

    /// `qsfs keys repair --json`.
    pub fn keys_repair(&self) -> (Run, Value) {
        self.keys_repair_with(&[])
    }

    /// `qsfs keys repair --json` with extra arguments.
    pub fn keys_repair_with(&self, extra: &[&str]) -> (Run, Value) {
        let vault = self.arg();
        let mut args = vec!["keys", "repair", vault.as_str(), "--json"];
        args.extend_from_slice(extra);
        let r = qsfs(&args);
        let v = serde_json::from_slice(&r.stdout).unwrap_or(Value::Null);
        (r, v)
    }

    /// The object id (hex) holding the content of file `vpath`.
    #[track_caller]
    pub fn object_of(&self, vpath: &str) -> String {
        let r = self.run("ls", &[vpath, "--json"]);
        r.success();
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        let ext = &v[0]["inode"]["extents"];
        assert_eq!(
            ext.as_array().map(std::vec::Vec::len),
            Some(1),
            "{vpath}: expected one extent: {v}"
        );
        ext[0]["object"].as_str().unwrap().to_string()
    }

    /// The parsed `qsfs.toml`.
    pub fn config(&self) -> toml::Table {
        std::fs::read_to_string(self.root.join("qsfs.toml"))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// (name, folder) of every node, in config order.
    pub fn nodes(&self) -> Vec<(String, PathBuf)> {
        let cfg = self.config();
        cfg["node"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let p = PathBuf::from(n["path"].as_str().unwrap());
                (
                    n["name"].as_str().unwrap().to_string(),
                    if p.is_absolute() {
                        p
                    } else {
                        self.root.join(p)
                    },
                )
            })
            .collect()
    }

    /// Folder of node `name`.
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.nodes().into_iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Every committed shard file on every node.
    pub fn shards(&self) -> Vec<ShardFile> {
        self.nodes()
            .iter()
            .flat_map(|(name, dir)| shards_in(name, dir))
            .collect()
    }

    /// The shard files of one object, by shard index.
    pub fn shards_of(&self, object: &str) -> Vec<ShardFile> {
        let mut v: Vec<ShardFile> = self
            .shards()
            .into_iter()
            .filter(|s| s.object == object)
            .collect();
        v.sort_by_key(|s| s.index);
        v
    }

    /// Temporary shard files (`.<id>.<i>.<tag>.tmp`) on every node.
    pub fn temp_shards(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (_, dir) in self.nodes() {
            for f in files_under(&dir.join("shards")) {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    out.push(f);
                }
            }
        }
        out
    }
}

/// A committed shard file found on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFile {
    /// Node name.
    pub node: String,
    /// The file.
    pub path: PathBuf,
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub index: u8,
}

impl ShardFile {
    /// (chunk size, stripes) from the shard's 64-byte header.
    pub fn geometry(&self) -> (u64, u64) {
        let data = std::fs::read(&self.path).unwrap();
        assert_eq!(
            &data[..8],
            b"QSFSSHRD",
            "{}: not a shard file",
            self.path.display()
        );
        let chunk = u32::from_le_bytes(data[32..36].try_into().unwrap()) as u64;
        let stripes = u64::from_le_bytes(data[36..44].try_into().unwrap());
        (chunk, stripes)
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Committed shard files in the node folder `dir` of node `name`.
pub fn shards_in(name: &str, dir: &Path) -> Vec<ShardFile> {
    files_under(&dir.join("shards"))
        .into_iter()
        .filter_map(|p| {
            let file = p.file_name()?.to_str()?.to_string();
            if file.starts_with('.') {
                return None;
            }
            let (hex, idx) = file.split_once('.')?;
            if hex.len() != 32 {
                return None;
            }
            Some(ShardFile {
                node: name.to_string(),
                path: p.clone(),
                object: hex.to_string(),
                index: idx.parse().ok()?,
            })
        })
        .collect()
}

/// Parses the `shard I of object X on NODE is bad (WHY)` warnings of a
/// read into (object, shard index, node) triples.
pub fn bad_shard_warnings(stderr: &str) -> BTreeSet<(String, u8, String)> {
    let mut out = BTreeSet::new();
    for line in stderr.lines() {
        let Some(rest) = line.split_once(": shard ").map(|x| x.1) else {
            continue;
        };
        if !line.contains(" is bad (") {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        // "I of object X on NODE is bad (...)"
        if words.len() >= 6 && words[1] == "of" && words[2] == "object" && words[4] == "on" {
            out.insert((
                words[3].to_string(),
                words[0].parse().unwrap(),
                words[5].to_string(),
            ));
        }
    }
    out
}

// ------------------------------------------------------- privileged guards

/// True when the tests run as root (mounts, chattr).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Tests that mount things or flip immutable flags take this lock.
pub static PRIV_LOCK: Mutex<()> = Mutex::new(());

/// Takes [`PRIV_LOCK`], surviving a panicked holder.
pub fn priv_lock() -> std::sync::MutexGuard<'static, ()> {
    PRIV_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sh(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A mount that is undone when dropped (lazily if busy).
pub struct Mounted {
    /// Mount point.
    pub path: PathBuf,
}

impl Mounted {
    /// Mounts a tmpfs of `size` (e.g. "256k") at `path`.
    pub fn tmpfs(path: &Path, size: &str) -> Mounted {
        std::fs::create_dir_all(path).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "qsfs-test",
                path.to_str().unwrap(),
            ],
        )
        .unwrap();
        Mounted {
            path: path.to_path_buf(),
        }
    }

    /// Makes `path` read-only by bind-mounting it onto itself read-only.
    pub fn read_only_bind(path: &Path) -> Mounted {
        let p = path.to_str().unwrap();
        sh("mount", &["--bind", p, p]).unwrap();
        let m = Mounted {
            path: path.to_path_buf(),
        };
        sh("mount", &["-o", "remount,bind,ro", p]).unwrap();
        m
    }

    /// Remounts this mount read-only.
    pub fn remount_ro(&self) {
        sh("mount", &["-o", "remount,ro", self.path.to_str().unwrap()]).unwrap();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let p = self.path.to_str().unwrap();
        if sh("umount", &[p]).is_err() {
            let _ = sh("umount", &["-l", p]);
        }
    }
}

/// Immutable flags (`chattr +i`) that are cleared when dropped.
pub struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    /// Sets `+i` on each path.
    pub fn set(paths: &[PathBuf]) -> Immutable {
        let mut guard = Immutable { paths: Vec::new() };
        for p in paths {
            sh("chattr", &["+i", p.to_str().unwrap()]).unwrap();
            guard.paths.push(p.clone());
        }
        guard
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in self.paths.iter().rev() {
            let _ = sh("chattr", &["-i", p.to_str().unwrap()]);
        }
    }
}

/// Skips the calling test (returns true) when not running as root.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED {test}: needs root (mount, chattr); run the suite as root to exercise it");
    true
}

/// Searches `hay` for `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A running `qsfs node serve`, stopped (SIGKILL) when dropped.
pub struct NodeServer {
    /// The server process.
    pub child: std::process::Child,
    /// `127.0.0.1:port` it listens on.
    pub addr: String,
    /// Its node folder.
    pub dir: PathBuf,
}

impl NodeServer {
    /// Starts a plaintext server on an ephemeral port and waits for
    /// `listening on`.
    pub fn start(dir: &Path) -> NodeServer {
        NodeServer::start_with(dir, &["--insecure-plaintext"])
    }

    /// Starts a server with `link` (its link options) on an ephemeral port.
    pub fn start_with(dir: &Path, link: &[&str]) -> NodeServer {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut args = vec![
            "node",
            "serve",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "-v",
        ];
        args.extend_from_slice(link);
        let mut child = qsfs_command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the server never writes into a closed pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("node server for {} did not start", dir.display()));
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        NodeServer {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// Kills the server (by its PID) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM and returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        qsfs_sys::terminate(self.child.id()).expect("signal the node server");
        let start = std::time::Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "node server ignored SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Flips bit `bit` of the byte at `pos` of the file at `path`.
pub fn flip_bit(path: &Path, pos: u64, bit: u8) {
    let mut data = std::fs::read(path).unwrap();
    data[pos as usize] ^= 1 << bit;
    std::fs::write(path, data).unwrap();
}

/// Cuts the file at `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The frozen vault written by format v1 (tests/fixtures/vault-v1.tar.gz),
/// unpacked into a fresh temp folder: the folder and the vault path.
pub fn unpack_v1_vault() -> (tempfile::TempDir, PathBuf) {
    unpack_fixture("vault-v1.tar.gz", "vault-v1")
}

/// Unpacks `tests/fixtures/FILE` into a temp folder; returns the folder
/// and its `vault` inside, made owner-only (tar applies the umask; a
/// vault's key stores must be owner-only, the fix `qsfs` names when it
/// refuses an old vault).
pub fn unpack_fixture(file: &str, vault: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "cannot unpack {}", fixture.display());
    let vault = dir.path().join(vault);
    let st = Command::new("chmod")
        .arg("-R")
        .arg("go-rwx")
        .arg(&vault)
        .status()
        .unwrap();
    assert!(st.success());
    (dir, vault)
}

/// Kills the child process it holds (one this test started, by its PID)
/// when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line `child` prints on stdout (piped), with `prefix` removed.
pub fn first_line_after(child: &mut std::process::Child, prefix: &str) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}..., got {line:?}"))
        .to_string()
}

/// `qsfs keypool gen` of a link from QKD equipment (never refilled): end
/// A at `a`, end B at `b`.
pub fn gen_pool_pair(link: &str, keys: u64, a: &Path, b: &Path) {
    qsfs(&[
        "keypool",
        "gen",
        "--link",
        link,
        "--keys",
        &keys.to_string(),
        "--no-refill",
        "--out",
        a.to_str().unwrap(),
        "--peer-out",
        b.to_str().unwrap(),
    ])
    .success();
}

/// A `qsfs kme serve` on 127.0.0.1 that keys link `link` between the SAE
/// `vault` (end A) and the SAE `peer` (end B), with a test CA and
/// certificates for both in `dir/pki`; killed when dropped.
pub struct KmeServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pki: PathBuf,
    _child: Killed,
}

impl KmeServer {
    /// Makes the certificates and the KME's pool, and starts it.
    pub fn start(dir: &Path, link: &str, peer: &str) -> KmeServer {
        let pki = dir.join("pki");
        qsfs(&[
            "kme",
            "certs",
            "--out",
            pki.to_str().unwrap(),
            "--sae",
            "vault",
            "--sae",
            peer,
        ])
        .success();
        let pool = dir.join("kme.pool");
        gen_pool_pair(link, 2000, &pool, &dir.join("kme-peer.pool"));
        let pem = |n: &str| pki.join(n).to_str().unwrap().to_string();
        let mut child = qsfs_command(&[
            "kme",
            "serve",
            "--pool",
            pool.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--cert",
            &pem("kme.pem"),
            "--key",
            &pem("kme-key.pem"),
            "--ca",
            &pem("ca.pem"),
            "--sae",
            "vault=A",
            "--sae",
            &format!("{peer}=end-B"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let addr = first_line_after(&mut child, "listening on ");
        KmeServer {
            url: format!("https://{addr}"),
            pki,
            _child: Killed(child),
        }
    }

    /// A PEM file of its test PKI (`ca.pem`, `vault.pem`, `vault-key.pem`,
    /// `PEER.pem`, `PEER-key.pem`).
    pub fn pem(&self, name: &str) -> String {
        self.pki.join(name).to_str().unwrap().to_string()
    }
}
