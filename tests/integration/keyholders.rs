//! t-of-n key holders (seed 003) as real `qsfs keyholder serve` processes
//! on loopback, each behind its own QKD-keyed link (a key pool pair): any
//! t unlock, fewer give a clear error naming each holder, a holder's
//! store holds no vault key, a wrong share is named, releases are
//! rate-limited and logged.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::common::{self, Rng, TestVault, qsfs};

/// One running holder.
struct Holder {
    name: String,
    dir: PathBuf,
    pool_a: PathBuf,
    pool_b: PathBuf,
    addr: String,
    child: Option<Child>,
}

impl Holder {
    fn new(base: &Path, name: &str) -> Holder {
        let dir = base.join(name);
        let pool_a = base.join(format!("{name}.a.pool"));
        let pool_b = base.join(format!("{name}.b.pool"));
        common::gen_pool_pair(name, 2000, &pool_a, &pool_b);
        let mut h = Holder {
            name: name.into(),
            dir,
            pool_a,
            pool_b,
            addr: "127.0.0.1:0".into(),
            child: None,
        };
        h.start(&[]);
        h
    }

    /// Starts the holder (on its old port once it had one).
    fn start(&mut self, extra: &[&str]) {
        let mut args = vec![
            "keyholder",
            "serve",
            "--dir",
            self.dir.to_str().unwrap(),
            "--listen",
            &self.addr,
            "--keypool",
            self.pool_b.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut child = common::qsfs_command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.addr = common::first_line_after(&mut child, "key holder listening on ");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spec(&self) -> String {
        format!(
            "name={},addr={},pool={}",
            self.name,
            self.addr,
            self.pool_a.display()
        )
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn holder_args(holders: &[Holder], t: u8) -> Vec<String> {
    let mut a = vec![
        "--unlock".to_string(),
        "holders".into(),
        "--threshold".into(),
        t.to_string(),
    ];
    for h in holders {
        a.push("--holder".into());
        a.push(h.spec());
    }
    a
}

#[test]
fn any_three_of_five_holders_unlock_and_two_do_not() {
    let base = tempfile::tempdir().unwrap();
    let mut holders: Vec<Holder> = (1..=5)
        .map(|i| Holder::new(base.path(), &format!("h{i}")))
        .collect();
    let args = holder_args(&holders, 3);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = TestVault::new(&args);
    let mut rng = Rng::from_env("holders");
    let data = rng.bytes(50_000);
    v.put_bytes(&data, "/a").success();
    v.assert_reads("/a", &data);
    qsfs(&["unlock", "list", &v.arg()]).success().stdout_has(&[
        "holders",
        "any 3 of 5",
        "h1 at 127.0.0.1:",
    ]);

    // No holder's store holds the vault key (nor its hex).
    let vk = qsfs::internals::custody::vault_key(&v.root, &Default::default()).unwrap();
    let vk_hex = vk.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for h in &holders {
        let mut files = Vec::new();
        walk(&h.dir, &mut files);
        assert!(!files.is_empty(), "holder {} stored nothing", h.name);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(32).any(|w| w == vk),
                "vault key in {}",
                f.display()
            );
            assert!(!String::from_utf8_lossy(&bytes).contains(&vk_hex));
        }
        let log = std::fs::read_to_string(h.dir.join("releases.log")).unwrap();
        assert!(log.contains("enroll vault="), "{log}");
    }
    // Every release is logged; an unlock asks only as many holders as it
    // needs (each release counts against a holder's rate limit).
    let released = holders
        .iter()
        .filter(|h| {
            std::fs::read_to_string(h.dir.join("releases.log"))
                .unwrap()
                .contains("release vault=")
        })
        .count();
    assert_eq!(
        released, 3,
        "an unlock asks exactly t holders when they answer"
    );

    // Two holders gone: the vault still unlocks.
    holders[0].stop();
    holders[3].stop();
    v.assert_reads("/a", &data);
    // Status names the holders that answer and those that do not.
    let st = v.status();
    let hs = st["holders"].as_array().unwrap();
    assert_eq!(hs.len(), 5, "{st:#}");
    let down: Vec<&str> = hs
        .iter()
        .filter(|h| !h["problem"].is_null())
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(down, ["h1", "h4"], "{st:#}");
    // A third gone: a clear error naming what failed; nothing changed.
    holders[4].stop();
    let r = v.run("get", &["/a", "-"]);
    r.failure().stderr_has(&[
        "cannot unlock vault",
        "only 2 of the 3 key holders needed gave their share",
        "holder \"h1\" unreachable",
        "holder \"h5\" unreachable",
    ]);
    assert!(r.stdout.is_empty());
    holders[4].start(&[]);
    v.assert_reads("/a", &data);
}

#[test]
fn a_holder_with_a_wrong_share_is_named_and_releases_are_rate_limited() {
    let base = tempfile::tempdir().unwrap();
    let mut holders: Vec<Holder> = (1..=3)
        .map(|i| Holder::new(base.path(), &format!("k{i}")))
        .collect();
    let args = holder_args(&holders, 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = TestVault::new(&args);
    v.put_bytes(b"held", "/a").success();
    // Holder k2's store is damaged: one byte of its share changed.
    let share_file = std::fs::read_dir(holders[1].dir.join("vaults"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "share"))
        .unwrap();
    let text = std::fs::read_to_string(&share_file).unwrap();
    let i = text.find("share ").unwrap() + 6 + 10;
    let mut bytes = text.into_bytes();
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&share_file, bytes).unwrap();
    // With k1 and k3 it still opens; with k1 gone, k2 is named.
    v.assert_reads("/a", b"held");
    holders[0].stop();
    v.run("get", &["/a", "-"]).failure().stderr_has(&[
        "holder \"k2\" answered with a wrong share",
        "holder \"k1\" unreachable",
    ]);

    // Rate limit: one release a minute at k3 and k1.
    holders[0].start(&["--releases-per-minute", "1"]);
    holders[2].stop();
    holders[2].start(&["--releases-per-minute", "1"]);
    v.assert_reads("/a", b"held");
    v.run("get", &["/a", "-"])
        .failure()
        .stderr_has(&["is rate-limiting releases; try again in"]);
    let log = std::fs::read_to_string(holders[2].dir.join("releases.log")).unwrap();
    assert!(log.contains("refused:"), "{log}");
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

#[test]
fn a_holder_keyed_by_an_etsi_014_kme_unlocks_beside_pool_keyed_ones() {
    let base = tempfile::tempdir().unwrap();
    let t = base.path();
    let kme = common::KmeServer::start(t, "h1", "h1");
    let (url, p) = (kme.url.clone(), |n: &str| kme.pem(n));
    // h1 gets its link keys from the KME, h2 and h3 from pool pairs.
    let h1_dir = t.join("h1");
    let mut h1 = common::qsfs_command(&[
        "keyholder",
        "serve",
        "--dir",
        h1_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--kme",
        &url,
        "--link",
        "h1",
        "--sae-id",
        "h1",
        "--peer-sae-id",
        "vault",
        "--cert",
        &p("h1.pem"),
        "--key",
        &p("h1-key.pem"),
        "--ca",
        &p("ca.pem"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let h1_addr = common::first_line_after(&mut h1, "key holder listening on ");
    let h1 = common::Killed(h1);
    let mut others: Vec<Holder> = ["h2", "h3"].iter().map(|n| Holder::new(t, n)).collect();
    let h1_spec = format!(
        "name=h1,addr={h1_addr},kme={url},sae=vault,peer=h1,cert={},key={},ca={}",
        p("vault.pem"),
        p("vault-key.pem"),
        p("ca.pem")
    );
    let v = TestVault::new(&[
        "--unlock",
        "holders",
        "--threshold",
        "2",
        "--holder",
        &h1_spec,
        "--holder",
        &others[0].spec(),
        "--holder",
        &others[1].spec(),
    ]);
    let data = Rng::from_env("kme holder").bytes(20_000);
    v.put_bytes(&data, "/a").success();
    v.assert_reads("/a", &data);
    let unlock = std::fs::read_to_string(v.root.join("unlock.toml")).unwrap();
    assert!(unlock.contains(&url), "{unlock}");
    // The KME-keyed holder and one pool-keyed holder unlock together.
    others[0].stop();
    v.assert_reads("/a", &data);
    let log = std::fs::read_to_string(h1_dir.join("releases.log")).unwrap();
    assert!(log.contains("release vault="), "{log}");
    // Without the KME holder, one holder is not enough; the error names h1.
    drop(h1);
    let r = v.run("get", &["/a", "-"]);
    r.failure().stderr_has(&[
        "cannot unlock vault",
        "holder \"h1\" unreachable",
        "holder \"h2\" unreachable",
    ]);
    others[0].start(&[]);
    v.assert_reads("/a", &data);
    // A holder keeps one share per vault: a second holders method naming
    // one of them is refused (it would break the first), as is a holder
    // named twice.
    qsfs(&[
        "unlock",
        "add",
        &v.arg(),
        "holders",
        "--threshold",
        "1",
        "--holder",
        &others[0].spec(),
    ])
    .failure()
    .stderr_has(&[
        "already keeps a share",
        "\"holders\"",
        "nothing was changed",
    ]);
    let twice = [others[1].spec(), others[1].spec()];
    qsfs(&[
        "init",
        t.join("v2").to_str().unwrap(),
        "--unlock",
        "holders",
        "--holder",
        &twice[0],
        "--holder",
        &twice[1],
    ])
    .failure()
    .stderr_has(&["named twice"]);
    v.assert_reads("/a", &data);
}
