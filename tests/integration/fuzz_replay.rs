//! The fuzz corpus and every crash the fuzzer ever found, replayed on the
//! stable toolchain through the same entry points the cargo-fuzz targets
//! call (`qsfs::internals::fuzz::TARGETS`): a decoder that panics on one
//! of these files fails the suite, naming the file.
//!
//! `write_seeds` (ignored) rebuilds the seed files of `fuzz/corpus/` from
//! the real encoders, the conformance vectors and the frozen fixtures:
//! `cargo test --release --test integration -- --ignored fuzz_replay::write_seeds`.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use qsfs::internals::fuzz::{ENVELOPE_PREFIX, TARGETS, seeds};
use serde_json::Value;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `entry` on every file, returning the files it panicked on.
fn replay(entry: fn(&[u8]), inputs: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for f in inputs {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            // A fuzzer running in this checkout merges its corpus and
            // removes inputs while the suite lists them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", f.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failed.push(f.display().to_string());
        }
    }
    failed
}

#[test]
fn corpus_and_regressions_replay_without_panics() {
    let mut failed = Vec::new();
    let mut total = 0;
    for (name, entry) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name}/ is missing or empty: run the ignored test \
             fuzz_replay::write_seeds (or scripts/fuzz.sh) to seed it"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        total += corpus.len() + regressions.len();
        failed.extend(replay(*entry, &corpus));
        failed.extend(replay(*entry, &regressions));
    }
    assert!(total > TARGETS.len());
    assert!(
        failed.is_empty(),
        "the decoders panicked on these inputs:\n{}",
        failed.join("\n")
    );
}

/// The fuzz crate, the corpus folders and the table agree: every target
/// has its binary (calling its own entry) and no folder names a target
/// that no longer exists, so nothing is fuzzed or replayed by half.
#[test]
fn fuzz_crate_matches_the_target_table() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            src.contains(&format!("qsfs::internals::fuzz::{name}(")),
            "fuzz/fuzz_targets/{name}.rs does not call its entry"
        );
    }
    for sub in ["corpus", "regressions", "fuzz_targets"] {
        // No regressions folder until the first crash is kept.
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(sub)) else {
            assert_eq!(sub, "regressions", "fuzz/{sub} is missing");
            continue;
        };
        for p in entries {
            let p = p.unwrap().path();
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(n, _)| *n == stem),
                "{} names no target of qsfs::internals::fuzz::TARGETS",
                p.display()
            );
        }
    }
}

/// Every seed the encoders make decodes through its target without a
/// panic (the round-trip checks run on them too).
#[test]
fn generated_seeds_pass_their_targets() {
    let seeds = seeds::seeds().unwrap();
    for (name, _) in TARGETS {
        let entry = TARGETS.iter().find(|(n, _)| n == name).unwrap().1;
        for (_, file, data) in seeds.iter().filter(|(t, _, _)| t == name) {
            assert!(
                catch_unwind(AssertUnwindSafe(|| entry(data))).is_ok(),
                "{name}: seed {file} panicked"
            );
        }
    }
}

fn write(target: &str, file: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{file}")), data).unwrap();
}

/// The envelope inputs of one vector: mode byte, R1, R2, B, then `N`.
fn envelope_inputs(v: &Value, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let hexf = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let name = v["name"].as_str().unwrap();
    let mut out = Vec::new();
    for (label, file) in [("N", "N"), ("N-tampered", "N_tampered")] {
        let n = std::fs::read(dir.join(v[file].as_str().unwrap())).unwrap();
        // Small objects in every key mode; large ones once (size, not
        // variety, is what they add).
        let small = n.len() <= 8192;
        for mode in [3u8, 5, 6, 7] {
            if (label == "N-tampered" || !small) && mode != 3 {
                continue;
            }
            if label == "N-tampered" && !small {
                continue;
            }
            let mut data = vec![mode];
            data.extend(hexf("R1"));
            data.extend(hexf("R2"));
            data.extend(hexf("B"));
            assert_eq!(data.len(), ENVELOPE_PREFIX);
            data.extend(&n);
            out.push((format!("{name}-{label}-mode{mode}"), data));
        }
    }
    out
}

#[test]
#[ignore = "writes the seed files of fuzz/corpus/; run by hand when a format changes"]
fn write_seeds() {
    for (target, file, data) in seeds::seeds().unwrap() {
        write(target, &file, &data);
    }
    // Envelope: the conformance vectors up to 64 KiB + 1 (the larger ones
    // would only make the corpus heavy).
    let vdir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/envelope");
    let vectors: Value =
        serde_json::from_slice(&std::fs::read(vdir.join("vectors.json")).unwrap()).unwrap();
    for v in vectors["vectors"].as_array().unwrap() {
        if v["plaintext_len"].as_u64().unwrap() > 65_537 {
            continue;
        }
        for (file, data) in envelope_inputs(v, &vdir) {
            write("envelope_open", &file, &data);
            write("object_reader", &file, &data);
        }
    }
    // The frozen fixtures: key pool files, and the v1 vault's shard
    // headers (the first bytes of each shard file) and configuration.
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for end in ["A", "B"] {
        let pool = std::fs::read(fixtures.join(format!("keypool/frozen.{end}.pool"))).unwrap();
        write("key_pool", &format!("frozen-{end}"), &pool);
    }
    let tmp = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(fixtures.join("vault-v1.tar.gz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let vault = tmp.path().join("vault-v1");
    write(
        "vault_config",
        "frozen-v1",
        &std::fs::read(vault.join("qsfs.toml")).unwrap(),
    );
    let node = vault.join("nodes/node-0/shards");
    for sub in std::fs::read_dir(&node).unwrap() {
        for shard in files(&sub.unwrap().path()) {
            let bytes = std::fs::read(&shard).unwrap();
            let head = &bytes[..bytes.len().min(256)];
            let name = shard.file_name().unwrap().to_string_lossy().into_owned();
            write("shard_header", &format!("frozen-{name}"), head);
        }
    }
}
