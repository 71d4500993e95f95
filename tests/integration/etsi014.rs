//! ETSI GS QKD 014: the KME server and the `Etsi014Source` client talking
//! real TLS with client certificates on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use qsfs::qkd::etsi014::testkeys::MemoryKeys;
use qsfs::qkd::etsi014::{self, Etsi014Config, Etsi014Source, KmeHandle, SaeMap};
use qsfs::qkd::{Direction, End, KeyError, KeyId, KeySource};

const SAES: [&str; 3] = ["sae-a", "sae-b", "sae-x"];

fn pki(dir: &Path) {
    let saes: Vec<String> = SAES.iter().map(std::string::ToString::to_string).collect();
    etsi014::certs::write_pki(dir, &saes, &["127.0.0.1".into(), "localhost".into()]).unwrap();
}

struct Lab {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    other_pki: PathBuf,
    kme: KmeHandle,
}

impl Lab {
    fn new(keys_per_direction: usize) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let other = tmp.path().join("other-pki");
        pki(&dir);
        pki(&other);
        let tls = etsi014::tls::server_config(
            &dir.join("kme.pem"),
            &dir.join("kme-key.pem"),
            &dir.join("ca.pem"),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let source = Arc::new(MemoryKeys::random("lab", keys_per_direction).unwrap());
        let kme = etsi014::spawn(
            source,
            SaeMap::new("sae-a", "sae-b").unwrap(),
            tls,
            listener,
        )
        .unwrap();
        Lab {
            _tmp: tmp,
            pki: dir,
            other_pki: other,
            kme,
        }
    }

    fn config(&self, end: End, own: &str, peer: &str) -> Etsi014Config {
        Etsi014Config::new(
            "lab",
            end,
            self.kme.url(),
            own,
            peer,
            self.pki.join(format!("{own}.pem")),
            self.pki.join(format!("{own}-key.pem")),
            self.pki.join("ca.pem"),
        )
    }

    fn a(&self) -> Etsi014Source {
        Etsi014Source::new(self.config(End::A, "sae-a", "sae-b")).unwrap()
    }

    fn b(&self) -> Etsi014Source {
        Etsi014Source::new(self.config(End::B, "sae-b", "sae-a")).unwrap()
    }
}

fn source_detail(e: KeyError) -> String {
    eprintln!("message: {e}");
    match e {
        KeyError::Source { detail, .. } => detail,
        other => panic!("expected a source error, got {other:?}"),
    }
}

#[test]
fn keys_drawn_by_one_end_are_fetched_identical_by_the_other() {
    let lab = Lab::new(20);
    let (a, b) = (lab.a(), lab.b());
    let mut seen = Vec::new();
    // 10 keys span two enc_keys batches of 8.
    for _ in 0..10 {
        let sent = a.next_key(Direction::AToB).unwrap();
        let got = b.take_key(Direction::AToB, &sent.id).unwrap();
        assert_eq!(sent.id, got.id);
        assert_eq!(*sent.key, *got.key);
        seen.push(sent.id);
    }
    for _ in 0..5 {
        let sent = b.next_key(Direction::BToA).unwrap();
        let got = a.take_key(Direction::BToA, &sent.id).unwrap();
        assert_eq!(*sent.key, *got.key);
        assert!(!seen.contains(&sent.id), "directions share key {}", sent.id);
        seen.push(sent.id);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len());
    lab.kme.shutdown().unwrap();
}

#[test]
fn each_key_is_delivered_once_to_each_side() {
    let lab = Lab::new(20);
    let (a, b) = (lab.a(), lab.b());
    let k = a.next_key(Direction::AToB).unwrap();
    b.take_key(Direction::AToB, &k.id).unwrap();
    match b.take_key(Direction::AToB, &k.id) {
        Err(KeyError::Used { id, link }) => assert_eq!((id, link.as_str()), (k.id, "lab")),
        other => panic!("second dec_keys: {other:?}"),
    }
    let unknown = KeyId([7; 16]);
    assert!(matches!(
        b.take_key(Direction::AToB, &unknown),
        Err(KeyError::Unknown { .. })
    ));
    // The master cannot fetch its own key through dec_keys.
    let mine = a.next_key(Direction::AToB).unwrap();
    let e = source_detail(a.take_key(Direction::BToA, &mine.id).unwrap_err());
    assert!(e.contains("itself") && e.contains("400"), "{e}");
    // ... and the slave still gets it once.
    assert_eq!(
        *b.take_key(Direction::AToB, &mine.id).unwrap().key,
        *mine.key
    );
}

#[test]
fn directions_are_checked_against_the_end() {
    let lab = Lab::new(4);
    let a = lab.a();
    let e = source_detail(a.next_key(Direction::BToA).unwrap_err());
    assert!(e.contains("end A") && e.contains("enc_keys"), "{e}");
    let e = source_detail(a.take_key(Direction::AToB, &KeyId([1; 16])).unwrap_err());
    assert!(e.contains("dec_keys"), "{e}");
}

#[test]
fn exhaustion_is_reported_as_exhausted() {
    let lab = Lab::new(3);
    let a = lab.a();
    for _ in 0..3 {
        a.next_key(Direction::AToB).unwrap();
    }
    let e = a.next_key(Direction::AToB).unwrap_err();
    let text = e.to_string();
    eprintln!("message: {text}");
    assert!(matches!(e, KeyError::Exhausted { .. }), "{text}");
    assert!(
        text.contains("lab") && text.contains(&lab.kme.url()),
        "{text}"
    );
    // The other direction still has its keys.
    lab.b().next_key(Direction::BToA).unwrap();
}

#[test]
fn status_counts_go_down() {
    let lab = Lab::new(10);
    let (a, b) = (lab.a(), lab.b());
    let before = a.counts().unwrap();
    assert_eq!((before.left, before.used, before.total), (20, 0, 20));
    let k = a.next_key(Direction::AToB).unwrap();
    b.take_key(Direction::AToB, &k.id).unwrap();
    let after_a = a.counts().unwrap();
    // 8 drawn from the KME in one batch: 12 at the KME + 7 buffered here.
    assert_eq!((after_a.left, after_a.used), (19, 1));
    let after_b = b.counts().unwrap();
    assert_eq!((after_b.left, after_b.used), (12, 1));
    assert!(!a.refills());
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let lab = Lab::new(4);
    let mut cfg = lab.config(End::A, "sae-a", "sae-b");
    cfg.cert = lab.other_pki.join("sae-a.pem");
    cfg.key = lab.other_pki.join("sae-a-key.pem");
    let e = source_detail(
        Etsi014Source::new(cfg)
            .unwrap()
            .next_key(Direction::AToB)
            .unwrap_err(),
    );
    assert!(
        e.contains("refused the client certificate") && e.contains("other-pki"),
        "{e}"
    );
}

#[test]
fn a_kme_certificate_from_another_ca_is_refused() {
    let lab = Lab::new(4);
    let mut cfg = lab.config(End::A, "sae-a", "sae-b");
    cfg.ca = lab.other_pki.join("ca.pem");
    let e = source_detail(Etsi014Source::new(cfg).unwrap().counts().unwrap_err());
    assert!(e.contains("server certificate is not trusted"), "{e}");
}

#[test]
fn a_client_without_certificate_is_refused() {
    let lab = Lab::new(4);
    let ca =
        ureq::tls::Certificate::from_pem(&std::fs::read(lab.pki.join("ca.pem")).unwrap()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                .build(),
        )
        .build()
        .into();
    let e = agent
        .get(format!("{}/api/v1/keys/sae-b/status", lab.kme.url()))
        .call()
        .unwrap_err();
    let text = e.to_string();
    eprintln!("message: {text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[test]
fn an_unconfigured_sae_gets_401() {
    let lab = Lab::new(4);
    let x = Etsi014Source::new(lab.config(End::A, "sae-x", "sae-b")).unwrap();
    let e = source_detail(x.next_key(Direction::AToB).unwrap_err());
    assert!(e.contains("401") && e.contains("sae-x"), "{e}");
}

#[test]
fn an_unreachable_kme_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let a = Etsi014Source::new(Etsi014Config::new(
        "lab",
        End::A,
        &url,
        "sae-a",
        "sae-b",
        tmp.path().join("sae-a.pem"),
        tmp.path().join("sae-a-key.pem"),
        tmp.path().join("ca.pem"),
    ))
    .unwrap();
    let e = source_detail(a.next_key(Direction::AToB).unwrap_err());
    assert!(e.contains("unreachable") && e.contains(&url), "{e}");
}

#[test]
fn bad_client_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    pki(tmp.path());
    let cfg = |cert: PathBuf, url: &str| {
        Etsi014Config::new(
            "lab",
            End::A,
            url,
            "sae-a",
            "sae-b",
            cert,
            tmp.path().join("sae-a-key.pem"),
            tmp.path().join("ca.pem"),
        )
    };
    let e = Etsi014Source::new(cfg(tmp.path().join("missing.pem"), "https://127.0.0.1:1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.pem") && e.contains("client certificate"),
        "{e}"
    );
    let e = Etsi014Source::new(cfg(tmp.path().join("ca.pem"), "http://127.0.0.1:1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("https://"), "{e}");
}

#[test]
fn get_variants_of_the_api_work() {
    let lab = Lab::new(4);
    let agent = |sae: &str| -> ureq::Agent {
        let pem = |f: String| std::fs::read(lab.pki.join(f)).unwrap();
        let ca = ureq::tls::Certificate::from_pem(&pem("ca.pem".into())).unwrap();
        let cert = ureq::tls::Certificate::from_pem(&pem(format!("{sae}.pem"))).unwrap();
        let key = ureq::tls::PrivateKey::from_pem(&pem(format!("{sae}-key.pem"))).unwrap();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                    .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)))
                    .build(),
            )
            .build()
            .into()
    };
    let (a, b) = (agent("sae-a"), agent("sae-b"));
    let base = format!("{}/api/v1/keys", lab.kme.url());
    let mut r = a
        .get(format!("{base}/sae-b/enc_keys?number=2&size=256"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = json(&mut r);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let id = keys[0]["key_ID"].as_str().unwrap();
    let mut r = b
        .get(format!("{base}/sae-a/dec_keys?key_ID={id}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let w: serde_json::Value = json(&mut r);
    assert_eq!(w["keys"][0]["key"], keys[0]["key"]);
    let mut r = b
        .get(format!("{base}/sae-a/dec_keys?key_ID={id}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = json(&mut r);
    assert!(err["message"].as_str().unwrap().contains("already"));
    // A bad size and an unknown slave are 400 with an ETSI error body.
    let mut r = a
        .get(format!("{base}/sae-b/enc_keys?size=128"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = json(&mut r);
    assert!(err["message"].as_str().unwrap().contains("size"));
    let r = a.get(format!("{base}/sae-q/status")).call().unwrap();
    assert_eq!(r.status(), 400);
    let mut r = a.get(format!("{base}/sae-b/status")).call().unwrap();
    let s: serde_json::Value = json(&mut r);
    assert_eq!(s["master_SAE_ID"], "sae-a");
    assert_eq!(s["slave_SAE_ID"], "sae-b");
    assert_eq!(s["stored_key_count"], 6);
    assert_eq!(s["key_size"], 256);
}

fn json(r: &mut ureq::http::Response<ureq::Body>) -> serde_json::Value {
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Kills the child it holds (started by this test) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_kme_serves_keys_to_two_saes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let out = Command::new(env!("CARGO_BIN_EXE_qsfs"))
        .args(["kme", "certs", "--out"])
        .arg(&dir)
        .args(["--sae", "vault", "--sae", "node1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = |n: &str| dir.join(n);
    let serve = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_qsfs"));
        c.args(["kme", "serve", "--listen", "127.0.0.1:0", "--cert"])
            .arg(f("kme.pem"))
            .arg("--key")
            .arg(f("kme-key.pem"))
            .arg("--ca")
            .arg(f("ca.pem"))
            .args(["--sae", "vault=A", "--sae", "node1=end-B"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // No pool support in this build: a clear error.
    let pool = tmp.path().join("link.pool");
    let out = serve(&["--pool", pool.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("link.pool"), "{err}");

    let mut child = Kill(serve(&["--memory-keys", "5"]).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(!addr.ends_with(":0"), "{addr}");
    let url = format!("https://{addr}");
    let cfg = |end, own: &str, peer: &str| {
        Etsi014Config::new(
            "cli",
            end,
            &url,
            own,
            peer,
            f(&format!("{own}.pem")),
            f(&format!("{own}-key.pem")),
            f("ca.pem"),
        )
    };
    let vault = Etsi014Source::new(cfg(End::A, "vault", "node1")).unwrap();
    let node = Etsi014Source::new(cfg(End::B, "node1", "vault")).unwrap();
    for _ in 0..5 {
        let k = vault.next_key(Direction::AToB).unwrap();
        assert_eq!(*node.take_key(Direction::AToB, &k.id).unwrap().key, *k.key);
    }
    assert!(matches!(
        vault.next_key(Direction::AToB),
        Err(KeyError::Exhausted { .. })
    ));
    let k = node.next_key(Direction::BToA).unwrap();
    assert_eq!(*vault.take_key(Direction::BToA, &k.id).unwrap().key, *k.key);
}
