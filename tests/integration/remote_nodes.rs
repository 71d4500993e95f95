//! Remote nodes end to end: real `qsfs node serve --insecure-plaintext`
//! processes on 127.0.0.1, a vault whose qsfs.toml names them, and the
//! real `qsfs` CLI. A killed server leaves files readable (k of n) and a
//! put records repair debt; a server that accepts but never answers costs
//! a timeout, not a hang; a node server of another vault is refused.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{NodeServer, Rng, TestVault, node_status, qsfs};

/// Committed shard files in a server's folder.
trait ShardFiles {
    fn shard_files(&self) -> usize;
}

impl ShardFiles for NodeServer {
    fn shard_files(&self) -> usize {
        common::files_under(&self.dir.join("shards"))
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .count()
    }
}

/// Starts `count` servers over fresh folders inside `v`'s temp folder.
pub(crate) fn servers(v: &TestVault, tag: &str, count: usize) -> Vec<NodeServer> {
    (0..count)
        .map(|i| NodeServer::start(&v.tmp.path().join(format!("{tag}-{i}"))))
        .collect()
}

/// Points the vault's nodes at `addrs` (node-i -> addrs[i]) over
/// unencrypted links, with extra settings on every node, and removes its
/// own node folders.
pub(crate) fn use_remote_nodes(v: &TestVault, addrs: &[String], extra: &[(&str, toml::Value)]) {
    set_nodes(v, addrs, |_, t| {
        t.insert("insecure_plaintext".into(), true.into());
        for (k, val) in extra {
            t.insert(k.to_string(), val.clone());
        }
    });
}

/// Rewrites the vault's node tables: node-i at `addrs[i]`, with what
/// `settings` adds; removes its own node folders.
fn set_nodes(v: &TestVault, addrs: &[String], settings: impl Fn(usize, &mut toml::Table)) {
    let mut cfg = v.config();
    let nodes: Vec<toml::Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut t = toml::Table::new();
            t.insert("name".into(), format!("node-{i}").into());
            t.insert("address".into(), a.clone().into());
            settings(i, &mut t);
            toml::Value::Table(t)
        })
        .collect();
    cfg.insert("node".into(), toml::Value::Array(nodes));
    std::fs::write(v.root.join("qsfs.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(v.root.join("nodes"));
}

#[test]
fn five_node_servers_put_get_and_survive_a_killed_one() {
    let mut rng = Rng::from_env("five_node_servers");
    let v = TestVault::new(&[]);
    let mut srv = servers(&v, "srv", 5);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_remote_nodes(&v, &addrs, &[]);

    let files: Vec<(String, Vec<u8>)> = [1usize, 300 << 10, 5 << 20]
        .iter()
        .map(|&len| (format!("/f-{len}"), rng.bytes(len)))
        .collect();
    for (path, data) in &files {
        v.put_bytes(data, path).success().quiet();
    }
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
    // Every server holds one shard of every file; status shows addresses.
    for s in &srv {
        assert_eq!(s.shard_files(), files.len(), "{}", s.dir.display());
    }
    let st = v.status();
    for (i, a) in addrs.iter().enumerate() {
        let n = node_status(&st, &format!("node-{i}"));
        assert_eq!(n["location"], a.as_str(), "{st:#}");
        assert_eq!(n["health"]["state"], "ok", "{st:#}");
        assert_eq!(n["shards_found"], files.len() as u64, "{st:#}");
    }
    v.run("status", &[])
        .success()
        .stdout_has(&[addrs[0].as_str(), addrs[4].as_str()]);

    // One server dies: every file still reads (3 of 5 suffice); a read
    // that needed a shard of the dead node records it as repair debt.
    srv[2].kill();
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
    let before = v.status();
    // A put reaches 4 of 5 (the write quorum): success with repair debt.
    let late = rng.bytes(200_000);
    v.put_bytes(&late, "/late").success().stderr_has(&[
        "written with 4 of 5 shards",
        "repair debt",
        "node-2",
        addrs[2].as_str(),
    ]);
    v.assert_reads("/late", &late);
    let st = v.status();
    for counter in ["degraded_objects", "missing_shards"] {
        assert_eq!(
            st[counter].as_u64().unwrap(),
            before[counter].as_u64().unwrap() + 1,
            "{counter}: {st:#}"
        );
    }
    let n2 = node_status(&st, "node-2");
    assert_eq!(n2["health"]["state"], "offline", "{st:#}");
    assert!(
        n2["health"]["detail"]
            .as_str()
            .unwrap()
            .contains(addrs[2].as_str()),
        "{st:#}"
    );

    // A second dead server: below the quorum of 4, the put fails and the
    // old version stays.
    srv[4].kill();
    v.put_bytes(&rng.bytes(1000), "/late")
        .failure()
        .stderr_has(&["node-2", "node-4"]);
    v.assert_reads("/late", &late);

    // SIGTERM stops a server cleanly.
    assert!(srv[0].terminate().success());
}

/// Issue 10 over node servers: the servers' `shards/` folders of two nodes
/// removed by hand while they run (their markers left). Files still read;
/// scrub and `node list` both count the shards missing; `scrub --repair`
/// has the servers make their folders again and rebuilds every shard on
/// its own node; the next scrub is clean and `node list` agrees.
#[test]
fn node_servers_that_lost_their_shards_folder_are_rebuilt() {
    let mut rng = Rng::from_env("node_servers_lost_shards_folder");
    let v = TestVault::new(&["--max-chunk", "4096"]);
    let srv = servers(&v, "srv", 5);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_remote_nodes(&v, &addrs, &[]);
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let len = 1 + rng.index(40_000);
            (format!("/f{i}"), rng.bytes(len))
        })
        .collect();
    for (path, data) in &files {
        v.put_bytes(data, path).success().quiet();
    }
    let lost = rng.choose(5, 2);
    for &i in &lost {
        std::fs::remove_dir_all(srv[i].dir.join("shards")).unwrap();
        assert!(srv[i].dir.join("qsfs-node").is_file());
    }
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
    let scrub = |extra: &[&str]| -> (common::Run, serde_json::Value) {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let r = v.run("scrub", &args);
        let j = serde_json::from_slice(&r.stdout)
            .unwrap_or_else(|e| panic!("scrub {extra:?}: {e}: {}", r.out()));
        (r, j)
    };
    let list = || -> serde_json::Value {
        let r = qsfs(&["node", "list", &v.arg(), "--json"]);
        r.success();
        serde_json::from_slice(&r.stdout).unwrap()
    };
    let row = |j: &serde_json::Value, name: &str| -> serde_json::Value {
        j.as_array()
            .unwrap_or_else(|| j["nodes"].as_array().unwrap())
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()
            .clone()
    };
    let (r, j) = scrub(&[]);
    assert_eq!(r.code, Some(1), "{j:#}");
    let nodes = list();
    for i in 0..5 {
        let name = format!("node-{i}");
        let (s, n) = (row(&j, &name), row(&nodes, &name));
        let want = if lost.contains(&i) { files.len() } else { 0 };
        assert_eq!(s["missing"], want, "{name}: {j:#}");
        assert_eq!(n["missing"], want, "{name}: {nodes:#}");
        assert_eq!(n["shards"], s["ok"], "{name}: {nodes:#} {j:#}");
        let (sh, nh) = if want > 0 {
            (format!("damaged: {want} shards missing"), "damaged")
        } else {
            ("ok".to_string(), "ok")
        };
        assert_eq!(s["health"], sh, "{j:#}");
        assert_eq!(n["health"], nh, "{nodes:#}");
    }

    let (r, j) = scrub(&["--repair"]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert!(!r.out().contains("internal error"), "{}", r.out());
    assert_eq!(j["repaired"], files.len() * 2, "{j:#}");
    for f in j["findings"].as_array().unwrap() {
        assert_eq!(f["outcome"], "repaired", "{f:#}");
        assert_eq!(f["repaired_on"], f["node"], "{f:#}");
    }
    let (r, j) = scrub(&[]);
    assert_eq!(r.code, Some(0), "{j:#}");
    assert_eq!(j["findings"], serde_json::json!([]), "{j:#}");
    let nodes = list();
    for i in 0..5 {
        let name = format!("node-{i}");
        let n = row(&nodes, &name);
        assert_eq!(
            (
                n["health"].as_str(),
                n["shards"].as_u64(),
                n["missing"].as_u64()
            ),
            (Some("ok"), Some(files.len() as u64), Some(0)),
            "{nodes:#}"
        );
        assert_eq!(n["shards"], row(&j, &name)["ok"], "{nodes:#} {j:#}");
    }
    for &i in &lost {
        assert_eq!(
            srv[i].shard_files(),
            files.len(),
            "{}",
            srv[i].dir.display()
        );
    }
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
}

#[test]
fn a_node_that_never_answers_costs_a_timeout() {
    let mut rng = Rng::from_env("a_node_that_never_answers");
    let v = TestVault::new(&[]);
    let srv = servers(&v, "srv", 4);
    // Accepts connections (the kernel does) and never reads or answers.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    addrs.push(hung.local_addr().unwrap().to_string());
    // Short timeouts for the hung node only: a slow fsync on a loaded
    // machine must not make a working server look dead.
    set_nodes(&v, &addrs, |i, t| {
        t.insert("insecure_plaintext".into(), true.into());
        if i == 4 {
            t.insert("connect_timeout_ms".into(), 2000.into());
            t.insert("io_timeout_ms".into(), 2000.into());
        }
    });
    let data = rng.bytes(300 << 10);
    let start = Instant::now();
    v.put_bytes(&data, "/a").success().stderr_has(&[
        "written with 4 of 5 shards",
        "node-4",
        "no answer",
    ]);
    v.assert_reads("/a", &data);
    let st = v.status();
    assert_eq!(node_status(&st, "node-4")["health"]["state"], "offline");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    drop(hung);
}

#[test]
fn a_node_server_of_another_vault_is_refused() {
    let mut rng = Rng::from_env("a_node_server_of_another_vault");
    let a = TestVault::new(&[]);
    let srv = servers(&a, "srv", 5);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_remote_nodes(&a, &addrs, &[]);
    let data = rng.bytes(10_000);
    a.put_bytes(&data, "/mine").success().quiet();
    let a_id = a.config()["vault_id"].as_str().unwrap().to_string();

    // Vault B is pointed at vault A's node servers.
    let b = TestVault::new(&[]);
    use_remote_nodes(&b, &addrs, &[]);
    b.put_bytes(&rng.bytes(5000), "/theirs")
        .failure()
        .stderr_has(&["node-0", "belongs to another vault"]);
    // Which vault the folder belongs to stays on the server.
    let r = b.put_bytes(&rng.bytes(5000), "/theirs2");
    assert!(!r.stderr.contains(a_id.as_str()), "{}", r.stderr);
    let st = b.status();
    for i in 0..5 {
        let n = node_status(&st, &format!("node-{i}"));
        assert_eq!(n["health"]["state"], "foreign", "{st:#}");
    }
    // Vault A is untouched and still reads.
    a.assert_reads("/mine", &data);
    for s in &srv {
        assert_eq!(s.shard_files(), 1);
    }
    // A server refuses to start on a folder that is neither empty nor a node.
    let busy = a.tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("photo.jpg"), b"x").unwrap();
    qsfs(&[
        "node",
        "serve",
        "--dir",
        busy.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--insecure-plaintext",
    ])
    .failure()
    .stderr_has(&["no qsfs node marker"]);
}

/// Makes the key pool pair of link `node-i`: the vault's end in
/// `VAULT/links/node-i.pool`, the node's end returned.
fn pool_pair(v: &TestVault, i: usize, keys: u64) -> PathBuf {
    std::fs::create_dir_all(v.root.join("links")).unwrap();
    // Key pools live in an owner-only folder, or the vault is refused.
    std::fs::set_permissions(
        v.root.join("links"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let b = v.tmp.path().join(format!("node-{i}.b.pool"));
    let a = v.root.join(format!("links/node-{i}.pool"));
    common::gen_pool_pair(&format!("node-{i}"), keys, &a, &b);
    b
}

/// Five node servers over fresh folders, each behind a key pool link
/// (`keys` keys) whose vault end is in `VAULT/links/`.
fn linked_servers(v: &TestVault, keys: u64) -> Vec<NodeServer> {
    (0..5)
        .map(|i| {
            let b = pool_pair(v, i, keys);
            let dir = v.tmp.path().join(format!("qsrv-{i}"));
            NodeServer::start_with(&dir, &["--keypool", b.to_str().unwrap()])
        })
        .collect()
}

/// Points node-i at `addrs[i]` through its key pool link.
fn use_linked_nodes(v: &TestVault, addrs: &[String]) {
    set_nodes(v, addrs, |i, t| {
        t.insert("keypool".into(), format!("links/node-{i}.pool").into());
    });
}

fn link_status<'a>(st: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    st["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("no link {node} in {st:#}"))
}

#[test]
fn qkd_keyed_node_servers_round_trip_and_refuse_a_wrong_pool() {
    let mut rng = Rng::from_env("qkd_keyed_node_servers");
    let v = TestVault::new(&["--direct"]);
    let mut srv = linked_servers(&v, 4000);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_linked_nodes(&v, &addrs);
    let files: Vec<(String, Vec<u8>)> = [1usize, 300 << 10, 3 << 20]
        .iter()
        .map(|&len| (format!("/q-{len}"), rng.bytes(len)))
        .collect();
    for (path, data) in &files {
        v.put_bytes(data, path).success().quiet();
    }
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
    let st = v.status();
    for (i, server) in srv.iter().enumerate() {
        let l = link_status(&st, &format!("node-{i}"));
        assert_eq!(l["kind"], "pool-file", "{st:#}");
        assert!(l["counts"]["used"].as_u64().unwrap() > 0, "{st:#}");
        assert_eq!(server.shard_files(), files.len());
    }

    // Node 0's server restarted with the pool of another link: refused at
    // connect; the write goes on with 4 of 5 and names the link.
    srv[0].kill();
    let other = v.tmp.path().join("node-1.b.pool");
    let wrong = v.tmp.path().join("wrong.b.pool");
    std::fs::copy(&other, &wrong).unwrap();
    srv[0] = NodeServer::start_with(&srv[0].dir.clone(), &["--keypool", wrong.to_str().unwrap()]);
    let mut cfg = v.config();
    cfg["node"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("address".into(), srv[0].addr.clone().into());
    std::fs::write(v.root.join("qsfs.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    let d = rng.bytes(50_000);
    v.put_bytes(&d, "/after")
        .success()
        .stderr_has(&["written with 4 of 5 shards", "node-0"]);
    v.assert_reads("/after", &d);
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
}

#[test]
fn an_exhausted_link_fails_writes_at_quorum_and_keeps_what_was_written() {
    let mut rng = Rng::from_env("exhausted_link");
    let v = TestVault::new(&["--direct"]);
    // Two links with few keys: once both are dry a write reaches only 3
    // of 5 nodes, below the write quorum of 4.
    let srv: Vec<NodeServer> = (0..5)
        .map(|i| {
            let b = pool_pair(&v, i, if i < 2 { 80 } else { 20_000 });
            let dir = v.tmp.path().join(format!("xsrv-{i}"));
            NodeServer::start_with(&dir, &["--keypool", b.to_str().unwrap()])
        })
        .collect();
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_linked_nodes(&v, &addrs);
    let first = rng.bytes(20_000);
    v.put_bytes(&first, "/first").success().quiet();
    let mut failed = None;
    for round in 0..60 {
        let d = rng.bytes(10_000);
        let r = v.put_bytes(&d, "/first");
        if !r.ok() {
            failed = Some((round, r));
            break;
        }
    }
    let (_, r) = failed.expect("writes never ran out of keys");
    r.failure().stderr_has(&["exhausted", "refill"]);
    // The last version that was written still reads (three links have keys).
    let (got, data) = v.get_bytes("/first");
    got.success();
    assert!(data.is_some());
    let st = v.status();
    let low: Vec<_> = (0..2)
        .map(|i| {
            link_status(&st, &format!("node-{i}"))["low"]
                .as_bool()
                .unwrap()
        })
        .collect();
    assert_eq!(low, vec![true, true], "{st:#}");
    v.run("status", &[]).success().stdout_has(&["LOW"]);
}

#[test]
fn a_kme_keys_the_link_to_a_node_server() {
    let mut rng = Rng::from_env("kme_keyed_link");
    let v = TestVault::new(&["--direct"]);
    let t = v.tmp.path();
    let kme = common::KmeServer::start(t, "node-0", "node0");
    let (url, p) = (kme.url.clone(), |n: &str| kme.pem(n));
    let node0 = NodeServer::start_with(
        &t.join("ksrv-0"),
        &[
            "--kme",
            &url,
            "--link",
            "node-0",
            "--sae-id",
            "node0",
            "--peer-sae-id",
            "vault",
            "--cert",
            &p("node0.pem"),
            "--key",
            &p("node0-key.pem"),
            "--ca",
            &p("ca.pem"),
        ],
    );
    let others: Vec<NodeServer> = (1..5)
        .map(|i| {
            let b = pool_pair(&v, i, 4000);
            NodeServer::start_with(
                &t.join(format!("ksrv-{i}")),
                &["--keypool", b.to_str().unwrap()],
            )
        })
        .collect();
    let mut addrs = vec![node0.addr.clone()];
    addrs.extend(others.iter().map(|s| s.addr.clone()));
    use_linked_nodes(&v, &addrs);
    let mut cfg = v.config();
    let n0 = cfg["node"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    n0.remove("keypool");
    let mut k = toml::Table::new();
    for (key, val) in [
        ("url", url.clone()),
        ("sae_id", "vault".into()),
        ("peer_sae_id", "node0".into()),
        ("cert", p("vault.pem")),
        ("key", p("vault-key.pem")),
        ("ca", p("ca.pem")),
    ] {
        k.insert(key.into(), val.into());
    }
    n0.insert("kme".into(), toml::Value::Table(k));
    std::fs::write(v.root.join("qsfs.toml"), toml::to_string(&cfg).unwrap()).unwrap();

    let d = rng.bytes(700_000);
    v.put_bytes(&d, "/k").success().quiet();
    v.assert_reads("/k", &d);
    assert_eq!(node0.shard_files(), 1);
    let st = v.status();
    assert_eq!(link_status(&st, "node-0")["kind"], "kme", "{st:#}");
    assert_eq!(link_status(&st, "node-0")["refills"], false, "{st:#}");
}

/// Files under `dir` holding any of the 32-byte `keys` anywhere.
fn key_hits(dir: &std::path::Path, keys: &std::collections::HashSet<Vec<u8>>) -> Vec<String> {
    let files = common::files_under(dir);
    assert!(files.len() > 10, "nothing to scan under {}", dir.display());
    files
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(32)
                .any(|w| keys.contains(w))
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// The unused keys of a clear pool file, read raw (what a thief would
/// read): record layout from `qkd::pool::format`.
fn clear_pool_keys(path: &std::path::Path) -> std::collections::HashSet<Vec<u8>> {
    use qsfs::qkd::pool::format::{HEADER_LEN, KEY_AT, RECORD_LEN, STATE_AT, STATE_UNUSED};
    let raw = std::fs::read(path).unwrap();
    raw[HEADER_LEN..]
        .chunks_exact(RECORD_LEN)
        .filter(|r| r[STATE_AT] == STATE_UNUSED)
        .map(|r| r[KEY_AT..KEY_AT + 32].to_vec())
        .collect()
}

#[test]
fn a_stolen_vault_folder_holds_no_link_key_and_cannot_reach_the_node_servers() {
    let v = TestVault::new(&["--direct"]);
    let mut srv = linked_servers(&v, 2000);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_linked_nodes(&v, &addrs);
    // The pools as `keypool gen` wrote them into the vault folder: clear.
    let mut keys = std::collections::HashSet::new();
    for i in 0..5 {
        keys.extend(clear_pool_keys(
            &v.root.join(format!("links/node-{i}.pool")),
        ));
    }
    assert_eq!(keys.len(), 5 * 2000);
    // The first open seals them under the vault key (a key file outside
    // the vault folder); the links keep working.
    let data = Rng::from_env("stolen links").bytes(200_000);
    v.put_bytes(&data, "/f").success();
    v.assert_reads("/f", &data);
    let st = v.status();
    for i in 0..5 {
        let l = link_status(&st, &format!("node-{i}"));
        assert_eq!(l["sealed"], true, "{st:#}");
        assert!(l["counts"]["used"].as_u64().unwrap() > 0, "{st:#}");
    }
    v.run("status", &[]).success().stdout_has(&["sealed"]);

    // The thief's copy: no link key in clear anywhere in it.
    let copy = crate::custody::steal(&v);
    let hits = key_hits(&copy, &keys);
    assert!(hits.is_empty(), "link keys in clear in {hits:?}");
    // Its pools are refused by everything but their vault: a node server,
    // and another vault that points a link at one.
    let stolen = copy.join("links/node-0.pool");
    let out = common::qsfs_output(&[
        "node",
        "serve",
        "--dir",
        copy.join("thief-node").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--keypool",
        stolen.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sealed") && err.contains("node-0.pool"),
        "{err}"
    );
    let thief = TestVault::new(&["--direct"]);
    set_nodes(&thief, &addrs, |i, t| {
        t.insert(
            "keypool".into(),
            copy.join(format!("links/node-{i}.pool"))
                .display()
                .to_string()
                .into(),
        );
    });
    let st = thief.status();
    for i in 0..5 {
        let l = link_status(&st, &format!("node-{i}"));
        let p = l["problem"].as_str().unwrap_or_default();
        assert!(p.contains("sealed under another vault"), "{st:#}");
    }
    thief.put_bytes(b"x", "/x").failure();

    // A remote pool given to `node add` is taken in sealed, and goes with
    // the node.
    let b = v.tmp.path().join("node-5.b.pool");
    let a = v.tmp.path().join("node-5.a.pool");
    common::gen_pool_pair("node-5", 2000, &a, &b);
    let fresh = clear_pool_keys(&a);
    srv.push(NodeServer::start_with(
        &v.tmp.path().join("qsrv-5"),
        &["--keypool", b.to_str().unwrap()],
    ));
    qsfs(&[
        "node",
        "add",
        &v.arg(),
        "node-5",
        "--address",
        &srv[5].addr,
        "--keypool",
        a.to_str().unwrap(),
    ])
    .success()
    .stdout_has(&["links/node-5.a.pool", "sealed", "shred -u"]);
    let kept = v.root.join("links/node-5.a.pool");
    assert!(key_hits(&v.root, &fresh).is_empty());
    let st = v.status();
    assert_eq!(link_status(&st, "node-5")["sealed"], true, "{st:#}");
    // Draining node-0 moves its shard to node-5, through the sealed pool.
    qsfs(&["node", "drain", &v.arg(), "node-0"]).success();
    assert_eq!(
        srv[5].shard_files(),
        1,
        "node-0's shard did not reach node-5"
    );
    v.assert_reads("/f", &data);
    let st = v.status();
    assert!(
        link_status(&st, "node-5")["counts"]["used"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(kept.exists());
    // A pool in the vault's links/ goes with its node.
    qsfs(&["node", "remove", &v.arg(), "node-0"]).success();
    assert!(
        !v.root.join("links/node-0.pool").exists(),
        "the pool outlived its node"
    );
    v.assert_reads("/f", &data);
}

/// A fresh pool pair in `dir`: (the vault's end A, the server's end B).
fn fresh_pair(dir: &std::path::Path, link: &str) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join(format!("{link}.a")), dir.join(format!("{link}.b")));
    common::gen_pool_pair(link, 4000, &a, &b);
    (a, b)
}

#[test]
fn a_lost_client_is_recovered_from_node_servers_alone() {
    let secrets = tempfile::tempdir().unwrap();
    let pass = secrets.path().join("pass");
    std::fs::write(&pass, "servers only\n").unwrap();
    let pass = pass.to_str().unwrap().to_string();
    let v = TestVault::new(&["--direct", "--passphrase-file", &pass]);
    let mut srv = linked_servers(&v, 4000);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    use_linked_nodes(&v, &addrs);
    let mut rng = Rng::from_env("recover from servers");
    let files: Vec<(String, Vec<u8>)> = [10usize, 70_000, 1 << 20]
        .iter()
        .map(|&len| (format!("/r-{len}"), rng.bytes(len)))
        .collect();
    for (p, data) in &files {
        v.put_bytes_with(data, p, &["--passphrase-file", &pass])
            .success();
    }
    v.run("backup", &["--passphrase-file", &pass])
        .success()
        .stdout_has(&["metadata snapshot"]);
    let vault_id = v.config()["vault_id"].as_str().unwrap().to_string();

    // The client is gone, and with it the vault's ends of the links. New
    // keys are installed at both ends (a new pool pair per link); node-4
    // now serves without link encryption, node-3 is lost.
    std::fs::remove_dir_all(&v.root).unwrap();
    let keys = v.tmp.path().join("new-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let mut specs = Vec::new();
    for (i, s) in srv.iter_mut().enumerate() {
        s.kill();
        let dir = s.dir.clone();
        match i {
            3 => {}
            4 => {
                *s = NodeServer::start(&dir);
                specs.push(format!(
                    "addr={},plaintext,vault={vault_id},name=node-4",
                    s.addr
                ));
            }
            _ => {
                let (a, b) = fresh_pair(&keys, &format!("node-{i}"));
                *s = NodeServer::start_with(&dir, &["--keypool", b.to_str().unwrap()]);
                specs.push(format!("addr={},pool={}", s.addr, a.display()));
            }
        }
    }
    let new = v.tmp.path().join("v2");
    let recover = |specs: &[String], extra: &[&str]| {
        let mut args = vec!["recover".to_string(), new.display().to_string()];
        for s in specs {
            args.push("--node".into());
            args.push(s.clone());
        }
        args.extend(extra.iter().map(std::string::ToString::to_string));
        qsfs(&args)
    };
    // Bad input first: each is named, and nothing is left behind.
    recover(&specs[..1], &["--passphrase-file", &pass])
        .failure()
        .stderr_has(&["only 1 of the 3 shards", "give at least 3"]);
    assert!(!new.join("qsfs.toml").exists());
    // (A copy: the server holds its own file under a lock.)
    let end_b = keys.join("copy-of-node-0.b");
    std::fs::copy(keys.join("node-0.b"), &end_b).unwrap();
    recover(
        &[format!("addr={},pool={}", srv[0].addr, end_b.display())],
        &["--passphrase-file", &pass],
    )
    .failure()
    .stderr_has(&["end B", "copy-of-node-0.b"]);
    recover(
        &[specs[0].clone(), specs[0].clone()],
        &["--passphrase-file", &pass],
    )
    .failure()
    .stderr_has(&["given twice"]);
    let plain = format!("addr={},plaintext", srv[4].addr);
    recover(&[plain], &["--passphrase-file", &pass])
        .failure()
        .stderr_has(&["vault=ID,name=NODE"]);
    // The pool of another link: the server cannot even read the hello.
    let (wrong_a, _) = fresh_pair(&keys, "node-0-other");
    recover(
        &[format!("addr={},pool={}", srv[0].addr, wrong_a.display())],
        &["--passphrase-file", &pass],
    )
    .failure()
    .stderr_has(&["does not say whose node it is", &srv[0].addr]);

    let r = recover(&specs, &["--passphrase-file", &pass]);
    r.success().stdout_has(&[
        "recovered vault",
        "node-0: ",
        "shred -u",
        "links/node-0.a.pool",
    ]);
    let v2 = new.display().to_string();
    for (p, data) in &files {
        let o = common::qsfs_output(&["get", &v2, p, "-", "--passphrase-file", &pass]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout == *data, "{p} differs after recovery");
    }
    let st = qsfs(&["status", &v2, "--json", "--passphrase-file", &pass]);
    st.success();
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    for i in [0, 1, 2] {
        let l = link_status(&st, &format!("node-{i}"));
        assert_eq!(l["kind"], "pool-file", "{st:#}");
        assert_eq!(l["sealed"], true, "{st:#}");
    }
    assert_eq!(link_status(&st, "node-4")["kind"], "plaintext", "{st:#}");
    // The recovered vault writes through the new links.
    let more = rng.bytes(50_000);
    let local = v.scratch_path("more");
    std::fs::write(&local, &more).unwrap();
    qsfs(&[
        "put",
        &v2,
        local.to_str().unwrap(),
        "/more",
        "--passphrase-file",
        &pass,
    ])
    .success();
    let o = common::qsfs_output(&["get", &v2, "/more", "-", "--passphrase-file", &pass]);
    assert!(o.stdout == more);
}
