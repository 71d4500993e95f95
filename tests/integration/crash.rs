//! kill -9 at random moments of a stream of `put`s (and a few `rm`s).
//!
//! Every put that exited 0 must read back identical (the latest successful
//! content of its path, or the content of a later put that was killed after
//! it committed, never anything else), every name `qsfs ls` shows must be
//! readable without a single bad shard, every object a file points at must
//! have all its shards on the nodes, `qsfs status` and `qsfs keys verify`
//! must work and find no damage.
//!
//! `QSFS_STRESS=1` (`scripts/test.sh --stress`) runs a much longer stream.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// What a path may hold: None (absent) or (length, BLAKE3).
type Content = Option<(usize, [u8; 32])>;

fn content_of(data: &[u8]) -> Content {
    Some((data.len(), *blake3::hash(data).as_bytes()))
}

/// The knowledge about one vault path.
#[derive(Debug, Default)]
struct PathState {
    /// What the last operation that exited 0 left (None: absent).
    confirmed: Content,
    /// Operations killed after it, oldest first: any of them may have
    /// committed before the kill.
    killed: Vec<Content>,
}

impl PathState {
    fn allowed(&self) -> Vec<&Content> {
        std::iter::once(&self.confirmed)
            .chain(self.killed.iter())
            .collect()
    }

    /// Learns what the path holds now: nothing killed after that can have
    /// committed, so the state is exact again.
    fn observed(&mut self, now: Content) {
        self.confirmed = now;
        self.killed.clear();
    }
}

struct Stream {
    v: TestVault,
    rng: Rng,
    /// Only small single-file puts killed within 20 ms (mostly while the
    /// process opens its stores).
    early: bool,
    paths: BTreeMap<String, PathState>,
    ok: usize,
    killed: usize,
}

const SIZES: [usize; 9] = [
    0, 1, 700, 4096, 65_536, 300_000, 1_500_000, 6_000_000, 14_000_000,
];

impl Stream {
    fn new(rng: Rng, early: bool) -> Stream {
        let v = TestVault::new(&["--max-chunk", "65536"]);
        v.run("mkdir", &["/d"]).success();
        let mut paths = BTreeMap::new();
        for p in ["/a", "/b", "/big", "/d/e", "/d/f", "/d/g"] {
            paths.insert(p.to_string(), PathState::default());
        }
        Stream {
            v,
            rng,
            early,
            paths,
            ok: 0,
            killed: 0,
        }
    }

    /// Runs qsfs with `args` and kills it with SIGKILL after `delay` (if
    /// it is still running; `None`: never). Returns Ok(true) on exit 0,
    /// Ok(false) when killed, Err(stderr) on any other outcome.
    fn run_and_kill(&self, args: &[String], delay: Option<Duration>) -> Result<bool, String> {
        let mut child = qsfs_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(delay) = delay {
            std::thread::sleep(delay);
            // SIGKILL; harmless if it already exited (it is a zombie until waited for).
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => Ok(true),
            None => Ok(false),
            Some(c) => Err(format!(
                "exit {c}: {}",
                strip_ansi(&String::from_utf8_lossy(&out.stderr))
            )),
        }
    }

    fn step(&mut self, i: usize) {
        // Half the kills land early (while small files are being stored),
        // half anywhere in 0-300 ms.
        // Every tenth runs to the end, so the stream sees completions
        // however slow the machine is.
        let delay = Duration::from_millis(if self.early {
            self.rng.below(20)
        } else if self.rng.below(2) == 0 {
            self.rng.below(30)
        } else {
            self.rng.below(300)
        });
        let delay = (self.early || i % 10 != 9).then_some(delay);
        let dir = self.v.scratch.join(format!("it-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let op = if self.early { 19 } else { self.rng.below(20) };
        let (args, targets): (Vec<String>, Vec<(String, Content)>) = if op == 0 {
            // rm of one path
            let keys: Vec<String> = self.paths.keys().cloned().collect();
            let p = keys[self.rng.index(keys.len())].clone();
            (vec!["rm".into(), self.v.arg(), p.clone()], vec![(p, None)])
        } else if op <= 3 {
            // several files into /d in one process (one group commit)
            let mut args = vec!["put".to_string(), self.v.arg()];
            let mut targets = Vec::new();
            for name in ["e", "f", "g"] {
                let size = SIZES[self.rng.index(6)];
                let data = self.rng.bytes(size);
                let local = dir.join(name);
                std::fs::write(&local, &data).unwrap();
                args.push(local.display().to_string());
                targets.push((format!("/d/{name}"), content_of(&data)));
            }
            args.push("/d".into());
            (args, targets)
        } else {
            let keys = ["/a", "/b", "/big", "/d/e"];
            let p = keys[self.rng.index(keys.len())].to_string();
            let size = if self.early {
                SIZES[self.rng.index(6)]
            } else if p == "/big" {
                SIZES[5 + self.rng.index(4)]
            } else {
                SIZES[self.rng.index(SIZES.len())]
            };
            let data = self.rng.bytes(size);
            let local = dir.join("src");
            std::fs::write(&local, &data).unwrap();
            (
                vec![
                    "put".into(),
                    self.v.arg(),
                    local.display().to_string(),
                    p.clone(),
                ],
                vec![(p, content_of(&data))],
            )
        };
        match self.run_and_kill(&args, delay) {
            Ok(true) => {
                self.ok += 1;
                for (p, c) in targets {
                    self.paths.get_mut(&p).unwrap().observed(c);
                }
            }
            Ok(false) => {
                self.killed += 1;
                for (p, c) in targets {
                    self.paths.get_mut(&p).unwrap().killed.push(c);
                }
            }
            Err(e) => {
                // rm of a path that does not exist is the only allowed failure.
                let absent =
                    args[0] == "rm" && e.contains("no such file or directory in the vault");
                assert!(
                    absent,
                    "iteration {i}: qsfs {args:?} failed without being killed: {e}"
                );
                self.ok += 1;
                for (p, c) in targets {
                    self.paths.get_mut(&p).unwrap().observed(c);
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Reads every tracked path and every name `ls` shows.
    fn verify(&mut self, when: &str) {
        let v = &self.v;
        for (p, state) in &mut self.paths {
            let (r, data) = v.get_bytes(p);
            let now: Content = if r.ok() {
                r.quiet();
                content_of(&data.unwrap_or_else(|| panic!("{when}: get {p} wrote no file")))
            } else {
                r.failure()
                    .stderr_has(&[&format!("{p}: no such file or directory in the vault")]);
                assert!(data.is_none());
                None
            };
            assert!(
                state.allowed().contains(&&now),
                "{when}: {p} holds {} but only {} are possible (last confirmed {}, {} killed since)",
                describe(&now),
                state
                    .allowed()
                    .iter()
                    .map(|c| describe(c))
                    .collect::<Vec<_>>()
                    .join(" or "),
                describe(&state.confirmed),
                state.killed.len()
            );
            state.observed(now);
            if now.is_some_and(|(len, _)| len > 0) {
                let obj = v.object_of(p);
                let shards = v.shards_of(&obj);
                assert_eq!(
                    shards.len(),
                    5,
                    "{when}: {p} (object {obj}) has only {} shard files",
                    shards.len()
                );
            }
        }
        // Every name in the namespace is readable.
        let mut stack = vec!["/".to_string()];
        while let Some(dir) = stack.pop() {
            let r = v.run("ls", &[&dir, "--json"]);
            r.success();
            let entries: Value = serde_json::from_slice(&r.stdout).unwrap();
            for e in entries.as_array().unwrap() {
                let name = e["name"].as_str().unwrap();
                let path = if dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir}/{name}")
                };
                if e["inode"]["kind"] == "dir" {
                    stack.push(path);
                    continue;
                }
                assert!(
                    self.paths.contains_key(&path),
                    "{when}: unexpected name {path} in the vault"
                );
                let (r, _) = v.get_bytes(&path);
                r.success().quiet();
            }
        }
    }

    fn final_checks(&mut self) {
        self.verify("at the end");
        let st = self.v.status();
        assert_eq!(
            st["degraded_objects"], 0,
            "a kill caused repair debt: {st:#}"
        );
        assert_eq!(st["pending_deletions"], 0, "{st:#}");
        let files_with_objects = self
            .paths
            .values()
            .filter(|s| s.confirmed.is_some_and(|(l, _)| l > 0))
            .count() as u64;
        let objects = st["objects"].as_u64().unwrap();
        // The first open after a kill swept what the killed writes left:
        // objects never named, stray records, temporary shard files.
        assert_eq!(
            objects, files_with_objects,
            "orphan objects survived the sweep: {st:#}"
        );
        let mut leftovers = 0;
        for n in st["nodes"].as_array().unwrap() {
            assert_eq!(n["health"]["state"], "ok", "{n:#}");
            assert_eq!(
                n["shards_found"].as_u64(),
                n["shards_expected"].as_u64(),
                "a committed shard is missing, or an orphan shard survived, on {}: {n:#}",
                n["name"]
            );
            leftovers += n["leftovers"].as_u64().unwrap();
        }
        assert_eq!(
            leftovers, 0,
            "temporary shard files survived the sweep: {st:#}"
        );
        let (r, report) = self.v.keys_verify();
        r.success();
        assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
        assert_eq!(report["stray_shares"], serde_json::json!([]), "{report:#}");
        eprintln!(
            "{} puts/rms exited 0, {} killed; afterwards {} objects for {} files with content, {} stray key records, \
             {} temp shard files of interrupted writes",
            self.ok,
            self.killed,
            objects,
            files_with_objects,
            report["stray_shares"].as_array().unwrap().len(),
            leftovers
        );
        assert!(self.killed > 0, "the stream should see kills");
        assert!(
            self.early || self.ok > 0,
            "the stream should see completions"
        );
    }
}

fn describe(c: &Content) -> String {
    match c {
        None => "nothing".to_string(),
        Some((len, h)) => format!("{len} bytes ({})", &hex::encode(h)[..12]),
    }
}

fn run_stream(test: &str, iterations: usize, verify_every: usize, early: bool) {
    let mut s = Stream::new(Rng::from_env(test), early);
    for i in 0..iterations {
        s.step(i);
        if (i + 1) % verify_every == 0 {
            s.verify(&format!("after iteration {i}"));
        }
    }
    s.final_checks();
}

#[test]
fn kill_9_during_a_stream_of_puts() {
    run_stream("kill_9_during_a_stream_of_puts", 50, 10, false);
}

/// Many quick kills, mostly while qsfs opens its stores: a killed open
/// must never leave a store that cannot be opened again.
#[test]
fn kill_9_early_in_many_small_puts() {
    run_stream("kill_9_early_in_many_small_puts", 150, 50, true);
}

#[test]
fn kill_9_stress() {
    if std::env::var("QSFS_STRESS").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED kill_9_stress: set QSFS_STRESS=1 (scripts/test.sh --stress) for the long run"
        );
        return;
    }
    run_stream("kill_9_stress", 600, 25, false);
    run_stream("kill_9_stress (early kills)", 1500, 100, true);
}
