//! The sealed-object format through the `qsfs envelope` commands: sealing
//! reproduces the conformance vectors byte for byte, opening works with
//! R1+R2, R1+B, R2+B and a corrupted R1, a tampered B is named, and any
//! single flipped bit of a sealed object (in R3, KR, M, the segment tags or
//! anywhere else) is an integrity error that writes no output at all.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const SEG: u64 = 65_536;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/envelope")
}

struct Vector {
    name: String,
    d: PathBuf,
    n: PathBuf,
    n_tampered: PathBuf,
    k: String,
    r: String,
    shares: [String; 4],
    b: String,
    b_tampered: String,
    r1_corrupted: String,
    n1: u64,
    n2: u64,
    plain_len: u64,
}

fn vectors() -> Vec<Vector> {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).unwrap())
            .unwrap();
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let vs: Vec<Vector> = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: s(&v["name"]),
            d: dir().join(s(&v["D"])),
            n: dir().join(s(&v["N"])),
            n_tampered: dir().join(s(&v["N_tampered"])),
            k: s(&v["K"]),
            r: s(&v["R"]),
            shares: [s(&v["R1"]), s(&v["R2"]), s(&v["R3"]), s(&v["R4"])],
            b: s(&v["B"]),
            b_tampered: s(&v["B_tampered"]),
            r1_corrupted: s(&v["R1_corrupted"]),
            n1: v["n1"].as_u64().unwrap(),
            n2: v["n2"].as_u64().unwrap(),
            plain_len: v["plaintext_len"].as_u64().unwrap(),
        })
        .collect();
    assert!(vs.len() >= 9, "the full vector set is expected");
    vs
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn seal_reproduces_every_vector_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for v in vectors() {
        let n_out = tmp.path().join(format!("{}.N", v.name));
        let b_out = tmp.path().join(format!("{}.B", v.name));
        let shares = v.shares.join(",");
        qsfs(&[
            "envelope",
            "seal",
            "--in",
            p(&v.d),
            "--k",
            &v.k,
            "--r",
            &v.r,
            "--shares",
            &shares,
            "--object-out",
            p(&n_out),
            "--backup-out",
            p(&b_out),
        ])
        .success();
        let want = std::fs::read(&v.n).unwrap();
        let got = std::fs::read(&n_out).unwrap();
        assert_eq!(got.len(), want.len(), "{}: N length", v.name);
        assert!(
            got == want,
            "{}: sealed object differs from the vector",
            v.name
        );
        assert_eq!(
            hex::encode(std::fs::read(&b_out).unwrap()),
            v.b,
            "{}: backup record differs",
            v.name
        );
    }
    // Three shares are refused, and nothing is written.
    let v = &vectors()[1];
    let n_out = tmp.path().join("three.N");
    let three = v.shares[..3].join(",");
    qsfs(&[
        "envelope",
        "seal",
        "--in",
        p(&v.d),
        "--k",
        &v.k,
        "--r",
        &v.r,
        "--shares",
        &three,
        "--object-out",
        p(&n_out),
        "--backup-out",
        p(&tmp.path().join("three.B")),
    ])
    .failure()
    .stderr_has(&["--shares needs exactly four shares"]);
    assert!(!n_out.exists());
}

/// Runs `envelope open` on `object` with `args`; returns the run and the
/// output (None when no output file exists). Asserts that nothing else was
/// left in the output folder.
fn open(object: &Path, args: &[&str]) -> (Run, Option<Vec<u8>>) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("plain");
    let mut a = vec!["envelope", "open", "--object", p(object), "--out", p(&out)];
    a.extend_from_slice(args);
    let r = qsfs(&a);
    let data = std::fs::read(&out).ok();
    let others: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "plain")
        .collect();
    assert!(
        others.is_empty(),
        "envelope open {a:?} left files behind: {others:?}"
    );
    (r, data)
}

#[test]
fn open_with_every_allowed_combination_of_shares() {
    let tmp = tempfile::tempdir().unwrap();
    for v in vectors() {
        let d = std::fs::read(&v.d).unwrap();
        let [r1, r2, _, _] = &v.shares;
        let b_file = tmp.path().join(format!("{}.B", v.name));
        std::fs::write(&b_file, hex::decode(&v.b).unwrap()).unwrap();
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("R1+R2", vec!["--r1", r1, "--r2", r2]),
            ("R1+B", vec!["--r1", r1, "--backup", &v.b]),
            ("R2+B", vec!["--r2", r2, "--backup", &v.b]),
            ("R2+B file", vec!["--r2", r2, "--backup-file", p(&b_file)]),
        ];
        for (what, args) in cases {
            let (r, out) = open(&v.n, &args);
            r.success()
                .stderr_has(&["on the command line can be read by every user"]);
            assert!(
                out.as_deref() == Some(&d[..]),
                "{} {what}: wrong plaintext",
                v.name
            );
        }
        // Corrupted R1 with R2 and B: opened, and the warning names R1.
        let (r, out) = open(
            &v.n,
            &["--r1", &v.r1_corrupted, "--r2", r2, "--backup", &v.b],
        );
        r.success().stderr_has(&["warning: R1 is corrupt", "M14"]);
        assert!(
            out.as_deref() == Some(&d[..]),
            "{} corrupted R1: wrong plaintext",
            v.name
        );
        // Tampered B with one share: an error naming the backup record.
        for (share, val) in [("--r2", r2), ("--r1", r1)] {
            let (r, out) = open(&v.n, &[share, val, "--backup", &v.b_tampered]);
            r.failure().stderr_has(&["backup record B"]);
            assert!(
                out.is_none(),
                "{} tampered B with {share}: output written",
                v.name
            );
        }
        // Tampered N: integrity error, no plaintext.
        let (r, out) = open(&v.n_tampered, &["--r1", r1, "--r2", r2]);
        r.failure().stderr_has(&["cannot open", "integrity"]);
        assert!(out.is_none(), "{} tampered N: output written", v.name);
        // To stdout: a refused object writes not a single byte.
        let r = qsfs(&[
            "envelope",
            "open",
            "--object",
            p(&v.n_tampered),
            "--r1",
            r1,
            "--r2",
            r2,
            "--out",
            "-",
        ]);
        r.failure();
        assert!(
            r.stdout.is_empty(),
            "{} tampered N to stdout: {} bytes written",
            v.name,
            r.stdout.len()
        );
        // Only one share and no B: refused, naming what is missing.
        let (r, out) = open(&v.n, &["--r1", r1]);
        r.failure().stderr_has(&["not enough key shares"]);
        assert!(out.is_none());
    }
}

#[test]
fn inspect_locates_r3_and_kr() {
    for v in vectors().iter().filter(|v| v.plain_len < 100_000) {
        let [r1, r2, _, _] = &v.shares;
        let r = qsfs(&[
            "envelope",
            "inspect",
            "--object",
            p(&v.n),
            "--r1",
            r1,
            "--r2",
            r2,
        ]);
        r.success().stdout_has(&[
            &format!("n1          {} ", v.n1),
            &format!("n2          {} ", v.n2),
            "M verifies",
        ]);
        let r = qsfs(&[
            "envelope",
            "inspect",
            "--object",
            p(&v.n_tampered),
            "--r1",
            r1,
            "--r2",
            r2,
        ]);
        assert_eq!(
            r.code,
            Some(1),
            "{}: inspect of a tampered object must fail: {}",
            v.name,
            r.out()
        );
        r.stdout_has(&["integrity   FAILED"]);
    }
}

/// Position in N of position `e` of E (before KR and R3 were inserted).
fn n_pos_of_e(e: u64, n1: u64, n2: u64) -> u64 {
    let e1 = e + if e >= n1 { 32 } else { 0 };
    n_pos_of_e1(e1, n2)
}

/// Position in N of position `e1` of E' (before R3 was inserted).
fn n_pos_of_e1(e1: u64, n2: u64) -> u64 {
    e1 + if e1 >= n2 { 33 } else { 0 }
}

/// Interesting positions of a sealed object: every byte of R3, KR, M and
/// of every segment tag, the first and last bytes, and `random` others.
fn positions(v: &Vector, len_n: u64, rng: &mut Rng, random: usize) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for j in 0..33 {
        out.push(("R3".to_string(), v.n2 + j));
    }
    for j in 0..32 {
        out.push(("KR".to_string(), n_pos_of_e1(v.n1 + j, v.n2)));
    }
    for j in 0..32 {
        out.push(("M".to_string(), len_n - 32 + j));
    }
    let segments = v.plain_len.div_ceil(SEG).max(1);
    for i in 0..segments {
        let plain = (v.plain_len - i * SEG).min(SEG);
        let tag_at = i * (SEG + 16) + plain;
        for j in 0..16 {
            out.push((
                format!("tag of segment {i}"),
                n_pos_of_e(tag_at + j, v.n1, v.n2),
            ));
        }
    }
    out.push(("first byte".to_string(), 0));
    out.push(("last byte of E''".to_string(), len_n - 33));
    for _ in 0..random {
        out.push(("random".to_string(), rng.below(len_n)));
    }
    out
}

#[test]
fn any_flipped_bit_is_an_integrity_error_and_releases_nothing() {
    let mut rng = Rng::from_env("any_flipped_bit");
    let tmp = tempfile::tempdir().unwrap();
    let all = vectors();
    let mut jobs: Vec<(String, Vec<u8>, Vec<String>)> = Vec::new();
    for name in ["v1-0", "v1-1", "v1-4096", "v1-65537", "v1-200003"] {
        let v = all.iter().find(|v| v.name == name).unwrap();
        let n = std::fs::read(&v.n).unwrap();
        let len = n.len() as u64;
        // Check the position maths against the vector: R3 is where n2 says.
        assert_eq!(
            hex::encode(&n[v.n2 as usize..v.n2 as usize + 33]),
            v.shares[2],
            "{name}: R3 position"
        );
        let mut pos = positions(v, len, &mut rng, 40);
        if len < 200 {
            // Small objects: every byte.
            pos.extend((0..len).map(|i| ("every byte".to_string(), i)));
        }
        let [r1, r2, _, r4] = &v.shares;
        let _ = r4;
        for (k, (region, at)) in pos.into_iter().enumerate() {
            let bit = rng.below(8) as u8;
            let mut bad = n.clone();
            bad[at as usize] ^= 1 << bit;
            // Most opens use R1+R2; every fourth uses R2 and B (the other
            // recovery path must be just as strict).
            let args = if k % 4 == 3 {
                vec![
                    "--r2".to_string(),
                    r2.clone(),
                    "--backup".to_string(),
                    v.b.clone(),
                ]
            } else {
                vec![
                    "--r1".to_string(),
                    r1.clone(),
                    "--r2".to_string(),
                    r2.clone(),
                ]
            };
            jobs.push((
                format!("{name}: bit {bit} of byte {at} ({region})"),
                bad,
                args,
            ));
        }
    }
    eprintln!("{} flipped objects", jobs.len());
    let tmp_path = tmp.path().to_path_buf();
    let jobs = std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let Some((i, (what, bad, args))) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let obj = tmp_path.join(format!("obj-{i}"));
                    std::fs::write(&obj, &bad).unwrap();
                    let a: Vec<&str> = args.iter().map(std::string::String::as_str).collect();
                    let (r, out) = open(&obj, &a);
                    assert_eq!(r.code, Some(1), "{what}: open did not fail:\n{}", r.stderr);
                    assert!(out.is_none(), "{what}: plaintext was written");
                    assert!(r.stdout.is_empty(), "{what}: stdout not empty");
                    let integrity = [
                        "integrity check (M)",
                        "failed authentication (GCM tag)",
                        "key share R3 has x =",
                        "does not verify with",
                        "layout is invalid",
                    ];
                    assert!(
                        integrity.iter().any(|m| r.stderr.contains(m)),
                        "{what}: not reported as an integrity error:\n{}",
                        r.stderr
                    );
                    std::fs::remove_file(&obj).unwrap();
                }
            });
        }
    });
}

/// Keys on argv are readable by every user (/proc/PID/cmdline): they are
/// accepted from `--keys-file FILE` or stdin (`--keys-file -`), and given
/// on argv they draw a warning. `open` reads the object through one
/// descriptor (or, for a pipe, once into memory), never by its path again.
#[test]
fn keys_come_from_a_file_or_stdin_and_argv_keys_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let v = &vectors()[1];
    let keys = tmp.path().join("keys");
    std::fs::write(
        &keys,
        format!(
            "# seal keys\nk = {}\nr = {}\nshares = {}\nr1 = {}\nr2 = {}\n",
            v.k,
            v.r,
            v.shares.join(","),
            v.shares[0],
            v.shares[1]
        ),
    )
    .unwrap();
    let n_out = tmp.path().join("N");
    let b_out = tmp.path().join("B");
    let r = qsfs(&[
        "envelope",
        "seal",
        "--in",
        p(&v.d),
        "--keys-file",
        p(&keys),
        "--object-out",
        p(&n_out),
        "--backup-out",
        p(&b_out),
    ]);
    r.success();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert!(std::fs::read(&n_out).unwrap() == std::fs::read(&v.n).unwrap());

    // On argv: works, with a warning naming the options.
    let shares = v.shares.join(",");
    qsfs(&[
        "envelope",
        "seal",
        "--in",
        p(&v.d),
        "--k",
        &v.k,
        "--r",
        &v.r,
        "--shares",
        &shares,
        "--object-out",
        p(&tmp.path().join("N2")),
        "--backup-out",
        p(&tmp.path().join("B2")),
    ])
    .success()
    .stderr_has(&["warning", "--k", "/proc", "--keys-file"]);

    // Shares from stdin.
    let want = std::fs::read(&v.d).unwrap();
    let out = tmp.path().join("plain");
    let r = qsfs_stdin(
        &[
            "envelope",
            "open",
            "--object",
            p(&n_out),
            "--keys-file",
            "-",
            "--out",
            p(&out),
        ],
        format!("r1 = {}\nr2 = {}\n", v.shares[0], v.shares[1]).as_bytes(),
    );
    r.success();
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    assert!(std::fs::read(&out).unwrap() == want);

    // The object itself through a pipe: read once, checked and opened.
    let out2 = tmp.path().join("plain2");
    qsfs_stdin(
        &[
            "envelope",
            "open",
            "--object",
            "/dev/stdin",
            "--keys-file",
            p(&keys),
            "--out",
            p(&out2),
        ],
        &std::fs::read(&n_out).unwrap(),
    )
    .success();
    assert!(std::fs::read(&out2).unwrap() == want);
}
