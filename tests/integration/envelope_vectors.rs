//! Conformance: every expectation of tests/vectors/envelope/vectors.json, for every vector.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::path::PathBuf;

use qsfs::envelope::{
    Backup, EnvelopeError, LocalShares, MacStatus, ObjectReader, Recovered, Recovery, SealKeys,
    Share, open_bytes, open_stream, recover_keys, seal_bytes, seal_stream, verify_stream,
};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/envelope")
}

/// One vector with its files loaded.
struct Vector {
    name: String,
    d: Vec<u8>,
    n: Vec<u8>,
    n_tampered: Vec<u8>,
    k: [u8; 32],
    r: [u8; 32],
    shares: [Share; 4],
    b: Vec<u8>,
    b_tampered: Vec<u8>,
    r1_corrupted: Share,
    len_e: u64,
    len_n: u64,
    n1: u64,
    n2: u64,
    expect: Vec<String>,
}

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn load() -> Vec<Vector> {
    let text = std::fs::read_to_string(dir().join("vectors.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let file = |v: &Value| std::fs::read(dir().join(v.as_str().unwrap())).unwrap();
    let share = |v: &Value| Share::from_hex(v.as_str().unwrap()).unwrap();
    let vectors: Vec<Vector> = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().to_string(),
            d: file(&v["D"]),
            n: file(&v["N"]),
            n_tampered: file(&v["N_tampered"]),
            k: hex32(&v["K"]),
            r: hex32(&v["R"]),
            shares: [
                share(&v["R1"]),
                share(&v["R2"]),
                share(&v["R3"]),
                share(&v["R4"]),
            ],
            b: hex::decode(v["B"].as_str().unwrap()).unwrap(),
            b_tampered: hex::decode(v["B_tampered"].as_str().unwrap()).unwrap(),
            r1_corrupted: share(&v["R1_corrupted"]),
            len_e: v["len_E"].as_u64().unwrap(),
            len_n: v["len_N"].as_u64().unwrap(),
            n1: v["n1"].as_u64().unwrap(),
            n2: v["n2"].as_u64().unwrap(),
            expect: v["expect"].as_object().unwrap().keys().cloned().collect(),
        })
        .collect();
    assert!(vectors.len() >= 9, "expected the full vector set");
    for v in &vectors {
        assert_eq!(v.d.len() as u64, json_len(&json, &v.name));
    }
    vectors
}

fn json_len(json: &Value, name: &str) -> u64 {
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()["plaintext_len"]
        .as_u64()
        .unwrap()
}

fn keys(v: &Vector) -> SealKeys {
    SealKeys::new(v.k, v.r, v.shares.clone()).unwrap()
}

fn r1(v: &Vector) -> Share {
    v.shares[0].clone()
}

fn r2(v: &Vector) -> Share {
    v.shares[1].clone()
}

/// The expectations this test knows how to check; a new one in the JSON fails the test.
const KNOWN: [&str; 7] = [
    "seal(D,K,R,R1..R4)",
    "open(N,R1,R2)",
    "open(N,R1,B)",
    "open(N,R2,B)",
    "open(N,R1_corrupted,R2,B)",
    "open(N_tampered,R1,R2)",
    "open(N,R2,B_tampered)",
];

#[test]
fn every_vector_lists_only_known_expectations() {
    for v in load() {
        let mut got = v.expect.clone();
        got.sort();
        let mut want: Vec<String> = KNOWN.iter().map(std::string::ToString::to_string).collect();
        want.sort();
        assert_eq!(got, want, "{}", v.name);
    }
}

#[test]
fn seal_gives_exactly_n_and_b() {
    for v in load() {
        let keys = keys(&v);
        let (n, b) = seal_bytes(&v.d, &keys).unwrap();
        assert!(n == v.n, "{}: seal_bytes N differs", v.name);
        assert_eq!(
            b.to_bytes().to_vec(),
            v.b,
            "{}: seal_bytes B differs",
            v.name
        );
        for threads in [1, 2] {
            let mut out = Vec::new();
            let sealed = seal_stream(&keys, v.d.len() as u64, &v.d[..], &mut out, threads).unwrap();
            assert!(out == v.n, "{}: seal_stream({threads}) N differs", v.name);
            assert_eq!(
                sealed.backup.to_bytes().to_vec(),
                v.b,
                "{}: seal_stream B",
                v.name
            );
            let g = &sealed.geometry;
            assert_eq!(
                (g.len_e(), g.len_n(), g.n1(), g.n2()),
                (v.len_e, v.len_n, v.n1, v.n2),
                "{}: geometry",
                v.name
            );
        }
    }
}

#[test]
fn lengths_and_positions_match() {
    for v in load() {
        assert_eq!(v.n.len() as u64, v.len_n, "{}", v.name);
        assert_eq!(
            qsfs::envelope::sealed_len(v.d.len() as u64),
            v.len_n,
            "{}",
            v.name
        );
        let mut src: &[u8] = &v.n;
        let rec =
            recover_keys(&mut src, v.len_n, &LocalShares::both(r1(&v), r2(&v)), None).unwrap();
        let g = rec.geometry();
        assert_eq!(
            (g.len_e(), g.len_n(), g.n1(), g.n2()),
            (v.len_e, v.len_n, v.n1, v.n2),
            "{}",
            v.name
        );
        assert_eq!(rec.k(), &v.k);
        assert_eq!(rec.r(), &v.r);
    }
}

/// Opens every segment of `n` with an [`ObjectReader`], last segment
/// first, into the plaintext; fails at the first failing visit.
fn read_backwards(n: &[u8], rec: Recovered) -> Result<(Vec<u8>, MacStatus), EnvelopeError> {
    let r = ObjectReader::new(rec);
    let g = r.geometry().clone();
    let mut d = vec![0u8; g.plain_len() as usize];
    let mut src: &[u8] = n;
    for i in (0..g.segments()).rev() {
        let seg = r.open_segment(i, &mut src)?;
        let p = g.segment_span_in_plain(i);
        d[p.start as usize..p.end as usize].copy_from_slice(&seg);
    }
    Ok((d, r.mac_status()))
}

#[test]
fn open_with_r1_r2_gives_d() {
    for v in load() {
        let local = LocalShares::both(r1(&v), r2(&v));
        let o = open_bytes(&v.n, &local, None).unwrap();
        assert!(o.plaintext == v.d, "{}", v.name);
        assert!(!o.bad.any());
        // Streaming, with 1 and 2 workers, and verify-only.
        let mut src: &[u8] = &v.n;
        let rec = recover_keys(&mut src, v.len_n, &local, None).unwrap();
        verify_stream(&v.n[..], &rec).unwrap();
        for threads in [1, 2] {
            let mut out = Vec::new();
            open_stream(&v.n[..], &rec, &mut out, threads).unwrap();
            assert!(out == v.d, "{}: open_stream({threads})", v.name);
        }
        // Random access, last segment first: D, and M verified.
        let (d, status) = read_backwards(&v.n, rec).unwrap();
        assert!(d == v.d, "{}: ObjectReader", v.name);
        assert_eq!(status, MacStatus::Verified, "{}", v.name);
    }
}

#[test]
fn open_with_one_share_and_b_gives_d() {
    for v in load() {
        let b = Backup::parse(&v.b).unwrap();
        let only1 = LocalShares {
            r1: Some(r1(&v)),
            r2: None,
        };
        let o = open_bytes(&v.n, &only1, Some(&b)).unwrap();
        assert!(o.plaintext == v.d, "{}: open(N,R1,B)", v.name);
        assert_eq!(o.recovered.recovery(), Recovery::R1WithBackup);
        let only2 = LocalShares {
            r1: None,
            r2: Some(r2(&v)),
        };
        let o = open_bytes(&v.n, &only2, Some(&b)).unwrap();
        assert!(o.plaintext == v.d, "{}: open(N,R2,B)", v.name);
        assert_eq!(o.recovered.recovery(), Recovery::R2WithBackup);
        // The lost share can be regenerated exactly.
        assert_eq!(o.recovered.regenerate(1).unwrap(), v.shares[0]);
        assert_eq!(o.recovered.regenerate(3).unwrap(), v.shares[2]);
        assert_eq!(o.recovered.regenerate(4).unwrap(), v.shares[3]);
        // Streaming path with the backup.
        let mut src: &[u8] = &v.n;
        let rec = recover_keys(&mut src, v.len_n, &only2, Some(&b)).unwrap();
        let mut out = Vec::new();
        open_stream(&v.n[..], &rec, &mut out, 2).unwrap();
        assert!(out == v.d, "{}: open_stream(N,R2,B)", v.name);
    }
}

#[test]
fn open_with_corrupted_r1_reports_r1_bad() {
    for v in load() {
        let b = Backup::parse(&v.b).unwrap();
        let local = LocalShares::both(v.r1_corrupted.clone(), r2(&v));
        let o = open_bytes(&v.n, &local, Some(&b)).unwrap();
        assert!(o.plaintext == v.d, "{}", v.name);
        assert!(
            o.bad.r1 && !o.bad.r2 && !o.bad.backup,
            "{}: {:?}",
            v.name,
            o.bad
        );
        assert_eq!(o.recovered.recovery(), Recovery::R2WithBackup);
        // Healing: the regenerated R1 is the original one.
        assert_eq!(
            o.recovered.regenerate(1).unwrap(),
            v.shares[0],
            "{}",
            v.name
        );
    }
}

#[test]
fn open_tampered_n_is_an_integrity_error_without_plaintext() {
    for v in load() {
        let local = LocalShares::both(r1(&v), r2(&v));
        let e = open_bytes(&v.n_tampered, &local, None).unwrap_err();
        assert!(e.is_integrity(), "{}: {e}", v.name);
        // The streaming paths refuse it too.
        let mut src: &[u8] = &v.n_tampered;
        if let Ok(rec) = recover_keys(&mut src, v.n_tampered.len() as u64, &local, None) {
            let e = verify_stream(&v.n_tampered[..], &rec).unwrap_err();
            assert!(e.is_integrity(), "{}: {e}", v.name);
            let e = open_stream(&v.n_tampered[..], &rec, &mut std::io::sink(), 2).unwrap_err();
            assert!(e.is_integrity(), "{}: {e}", v.name);
            // A full random-access read fails too.
            let e = read_backwards(&v.n_tampered, rec).unwrap_err();
            assert!(e.is_integrity(), "{}: {e}", v.name);
        }
    }
}

#[test]
fn open_with_tampered_b_names_the_backup_record() {
    for v in load() {
        let only2 = LocalShares {
            r1: None,
            r2: Some(r2(&v)),
        };
        let e = match Backup::parse(&v.b_tampered) {
            Ok(bt) => open_bytes(&v.n, &only2, Some(&bt)).unwrap_err(),
            Err(e) => e,
        };
        assert!(e.names_backup(), "{}: {e}", v.name);
        assert!(e.to_string().contains("backup record B"), "{}: {e}", v.name);
        assert!(!matches!(e, EnvelopeError::MacMismatch));
    }
}
