//! Hostile peers and local users against the node links, played for real:
//! a fake node server in this process that answers a listing without end,
//! a proxy in front of a real node server that drips or delays its
//! answers, strangers flooding a real `qsfs node serve` with garbage, and
//! a look at the sockets of a real mount of the default vault.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::{NodeServer, Rng, TestVault, node_status, qsfs_command};
use qsfs::ObjectId;
use qsfs::node::plain::PlainChannel;
use qsfs::node::wire::{ErrorKind, Request, Response, VERSION, WireError};
use qsfs::node::{NodeHealth, ShardKey, StoredShard};
use qsfs::qkd::Channel;

/// Points the vault's nodes at `addrs` over unencrypted links, with
/// `settings` per node; removes its own node folders.
fn set_nodes(v: &TestVault, addrs: &[String], settings: impl Fn(usize, &mut toml::Table)) {
    let mut cfg = v.config();
    let nodes: Vec<toml::Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut t = toml::Table::new();
            t.insert("name".into(), format!("node-{i}").into());
            t.insert("address".into(), a.clone().into());
            t.insert("insecure_plaintext".into(), true.into());
            settings(i, &mut t);
            toml::Value::Table(t)
        })
        .collect();
    cfg.insert("node".into(), toml::Value::Array(nodes));
    std::fs::write(v.root.join("qsfs.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(v.root.join("nodes"));
}

fn servers(v: &TestVault, count: usize) -> Vec<NodeServer> {
    (0..count)
        .map(|i| NodeServer::start(&v.tmp.path().join(format!("srv-{i}"))))
        .collect()
}

/// A node server that says hello as node `node` of `vault`, answers
/// health, and answers a listing with pages that never end.
fn endless_lister(vault: String, node: String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let (vault, node) = (vault.clone(), node.clone());
            std::thread::spawn(move || {
                let mut c = PlainChannel::new(conn, "fake");
                while let Ok(msg) = c.recv() {
                    let reply = match Request::decode(&msg) {
                        Ok(Request::Hello { .. }) => Response::HelloOk {
                            version: VERSION,
                            vault_id: vault.clone(),
                            node: node.clone(),
                            adopted: false,
                        },
                        Ok(Request::Health) => Response::Health(NodeHealth::Ok),
                        Ok(Request::List) => {
                            let shards: Vec<StoredShard> = (0..16_000u32)
                                .map(|i| StoredShard {
                                    key: ShardKey {
                                        object: ObjectId([(i % 251) as u8; 16]),
                                        index: 0,
                                    },
                                    size: 4096,
                                })
                                .collect();
                            let page = Response::ListPage {
                                last: false,
                                shards,
                                leftovers: Vec::new(),
                            }
                            .encode();
                            loop {
                                if c.send(&page).is_err() {
                                    return;
                                }
                            }
                        }
                        _ => Response::Error(WireError::new(ErrorKind::Io, "not supported")),
                    };
                    if c.send(&reply.encode()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Peak resident memory (VmHWM, KiB) of a running process.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Security finding 3: `List` appended pages without limit; a fake node
/// pushed `qsfs status` to 4.8 GB. Now the listing is cut off at its caps,
/// the node is reported as misbehaving, and memory stays bounded.
#[test]
fn a_node_with_an_endless_listing_is_cut_off_and_reported() {
    let v = TestVault::new(&[]);
    let srv = servers(&v, 4);
    let vault_id = v.config()["vault_id"].as_str().unwrap().to_string();
    let mut addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    addrs.push(endless_lister(vault_id, "node-4".into()));
    set_nodes(&v, &addrs, |_, _| {});

    let mut child = qsfs_command(&["status", &v.arg(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("qsfs status still running after 120 s with {peak} KiB resident");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "status failed: {out}");
    // The default cap is 4 Mi entries (about 130 MB of entries).
    assert!(peak < 700 * 1024, "qsfs status peaked at {peak} KiB");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = node_status(&st, "node-4");
    assert_eq!(n["health"]["state"], "offline", "{n:#}");
    assert!(n.to_string().contains("misbehav"), "{n:#}");
    for i in 0..4 {
        assert_eq!(
            node_status(&st, &format!("node-{i}"))["health"]["state"],
            "ok"
        );
    }
}

/// How the proxy treats the node's answers.
const PASS: u8 = 0;
const DRIP: u8 = 1;
const DELAY: u8 = 2;

/// A TCP proxy to `to`: requests pass at once; answers pass, drip one
/// byte every 5 s, or wait 1.5 s per chunk, as `mode` says at the time.
fn proxy(to: String, mode: Arc<AtomicU8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&to) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            let mode = Arc::clone(&mode);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let sent = match mode.load(Ordering::SeqCst) {
                        DRIP => buf[..n].iter().try_for_each(|b| {
                            std::thread::sleep(Duration::from_secs(5));
                            client.write_all(&[*b])
                        }),
                        DELAY => {
                            std::thread::sleep(Duration::from_millis(1500));
                            client.write_all(&buf[..n])
                        }
                        _ => client.write_all(&buf[..n]),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Security finding 4: a node dripping one byte every 5 s kept `qsfs get`
/// blocked for over 75 s although the others held enough shards. Reads
/// now go around a node that lags its peers (hedged reads), every request
/// has an absolute deadline, and status shows the slow node as degraded.
#[test]
fn a_dripping_node_cannot_hold_a_read() {
    let mut rng = Rng::from_env("a_dripping_node");
    let v = TestVault::new(&[]);
    let srv = servers(&v, 5);
    let mode = Arc::new(AtomicU8::new(PASS));
    let mut addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    addrs[0] = proxy(addrs[0].clone(), Arc::clone(&mode));
    set_nodes(&v, &addrs, |_, _| {});
    // Several files, so node-0 holds data shards of some of them.
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/f{i}"), rng.bytes(3 << 20)))
        .collect();
    for (path, data) in &files {
        v.put_bytes(data, path).success().quiet();
    }

    mode.store(DRIP, Ordering::SeqCst);
    for (path, data) in &files {
        let start = Instant::now();
        v.assert_reads(path, data);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "reading {path} with a dripping node took {took:?}"
        );
    }

    // A node slower than its peers by a clear margin (1.5 s per answer)
    // is degraded in status, not offline, and its shards not lost.
    mode.store(DELAY, Ordering::SeqCst);
    let st = v.status();
    let n = node_status(&st, "node-0");
    assert_eq!(n["health"]["state"], "ok", "{n:#}");
    assert!(
        n["degraded"].as_str().is_some_and(|d| d.contains("slow")),
        "{n:#}"
    );
    assert_eq!(n["shards_missing"], 0, "{n:#}");
    assert!(node_status(&st, "node-1")["degraded"].is_null(), "{st:#}");
    mode.store(PASS, Ordering::SeqCst);
    for (path, data) in &files {
        v.assert_reads(path, data);
    }
}

/// Security finding 2: failed handshakes were each logged, and the log
/// grew by 37,000 warnings in seconds. Refusals are now logged at a
/// limited rate, and garbage never costs the vault its connection.
#[test]
fn node_serve_logs_refusals_at_a_limited_rate() {
    let v = TestVault::new(&[]);
    let mut srv = servers(&v, 5);
    let addrs: Vec<String> = srv.iter().map(|s| s.addr.clone()).collect();
    set_nodes(&v, &addrs, |_, _| {});
    let mut rng = Rng::from_env("refusals");
    let data = rng.bytes(100_000);
    v.put_bytes(&data, "/before").success().quiet();
    let log = srv[0].dir.with_extension("log");
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    for _ in 0..300 {
        if let Ok(mut s) = TcpStream::connect(&srv[0].addr) {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\nthis is not a link hello at all");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    v.put_bytes(&data, "/after").success().quiet();
    v.assert_reads("/after", &data);
    let text = std::fs::read_to_string(&log).unwrap();
    let refusals = text
        .lines()
        .skip(before)
        .filter(|l| l.contains("refusing"))
        .count();
    assert!(
        (1..=3).contains(&refusals),
        "{refusals} refusal lines for 300 bad connections:\n{text}"
    );
    srv[0].terminate();
}

/// The inodes of the sockets `pid` holds.
fn socket_inodes(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect()
}

/// The inodes of listening TCP sockets (IPv4 and IPv6).
fn listening_tcp_inodes() -> HashSet<String> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" {
                out.insert(cols[9].to_owned());
            }
        }
    }
    out
}

fn is_mounted(at: &Path) -> bool {
    let at = at.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(at))
}

/// Security finding 2: the default vault's in-process node servers
/// listened on TCP 127.0.0.1, so any local user could tie them up and make
/// every close(2) in the mount fail. They now have no address at all: the
/// mount process holds no listening socket, and writes work.
#[test]
fn the_default_vault_listens_on_no_port() {
    let v = TestVault::new(&[]);
    assert!(
        v.config()["node"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("keypool").is_some()),
        "the default vault's nodes sit behind in-process links"
    );
    let mnt = v.tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut child = qsfs_command(&["mount", "-f", &v.arg(), mnt.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Unmount<'a>(&'a Path, &'a mut std::process::Child);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("fusermount")
                .arg("-u")
                .arg(self.0)
                .status();
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
            let _ = self.1.wait();
        }
    }
    let pid = child.id();
    let guard = Unmount(&mnt, &mut child);
    let start = Instant::now();
    while !is_mounted(&mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "mount never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Use the links, so every in-process node server is running.
    let data = Rng::from_env("no_port").bytes(200_000);
    std::fs::write(mnt.join("f"), &data).unwrap();
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), data);
    let ours = socket_inodes(pid);
    let listening: Vec<String> = listening_tcp_inodes()
        .intersection(&ours)
        .cloned()
        .collect();
    assert!(
        listening.is_empty(),
        "the mount process listens on TCP (socket inodes {listening:?}): any local user can reach it"
    );
    drop(guard);
}
