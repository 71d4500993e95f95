//! Integration tests of the random sources: config parsing, OS RNG, devices (files, FIFOs) and pool files.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use qsfs::entropy::{
    DeviceSource, EntropyConfig, EntropyError, EntropySource, OsSource, PoolSource, open_source,
};

/// The error of a constructor that was expected to fail.
fn open_err<T>(res: Result<T, EntropyError>) -> EntropyError {
    match res {
        Ok(_) => panic!("expected the source to fail to open"),
        Err(e) => e,
    }
}

fn draw(src: &dyn EntropySource, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    src.fill(&mut buf).expect("draw");
    buf
}

/// Random pool bytes, as a QRNG would deliver them.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("os rng");
    buf
}

fn write_pool(dir: &Path, n: usize) -> (PathBuf, Vec<u8>) {
    let path = dir.join("qrng.bin");
    let bytes = random_bytes(n);
    fs::write(&path, &bytes).expect("write pool");
    (path, bytes)
}

fn sidecar(pool: &Path) -> PathBuf {
    let mut s = pool.as_os_str().to_owned();
    s.push(".pos");
    PathBuf::from(s)
}

/// Offsets (in the original pool) of 32-byte draws; panics on a draw that
/// is not a 32-aligned window of the pool.
fn offsets_of(original: &[u8], draws: &[Vec<u8>]) -> Vec<usize> {
    let index: HashMap<&[u8], usize> = original
        .chunks_exact(32)
        .enumerate()
        .map(|(i, c)| (c, i * 32))
        .collect();
    draws
        .iter()
        .map(|d| *index.get(d.as_slice()).expect("draw is not pool bytes"))
        .collect()
}

fn assert_disjoint(offsets: &[usize]) {
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let before = sorted.len();
    sorted.dedup();
    assert_eq!(before, sorted.len(), "a pool byte was handed out twice");
}

mod config {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vault {
        random: EntropyConfig,
    }

    fn parse(toml_text: &str) -> Result<EntropyConfig, toml::de::Error> {
        toml::from_str::<Vault>(toml_text).map(|v| v.random)
    }

    #[test]
    fn parses_the_random_table() {
        assert_eq!(
            parse("[random]\nsource = \"pool\"\npath = \"qrng.bin\"\n").expect("pool"),
            EntropyConfig::Pool {
                path: "qrng.bin".into()
            }
        );
        assert_eq!(
            parse("[random]\nsource = \"device\"\npath = \"/dev/hwrng\"\n").expect("device"),
            EntropyConfig::Device {
                path: "/dev/hwrng".into(),
                timeout_ms: 5000
            }
        );
        assert_eq!(
            parse("[random]\nsource = \"device\"\npath = \"/dev/qrandom0\"\ntimeout_ms = 250\n")
                .expect("device"),
            EntropyConfig::Device {
                path: "/dev/qrandom0".into(),
                timeout_ms: 250
            }
        );
        assert_eq!(
            parse("[random]\nsource = \"os\"\n").expect("os"),
            EntropyConfig::Os
        );
        assert_eq!(EntropyConfig::default(), EntropyConfig::Os);
    }

    #[test]
    fn rejects_typos() {
        assert!(parse("[random]\nsource = \"qrng\"\n").is_err());
        assert!(
            parse("[random]\nsource = \"pool\"\n").is_err(),
            "pool needs a path"
        );
        assert!(parse("[random]\nsource = \"pool\"\npath = \"p\"\ntimeout = 5\n").is_err());
        assert!(parse("[random]\nsource = \"os\"\npath = \"p\"\n").is_err());
    }

    #[test]
    fn round_trips_through_toml() {
        let cfg = EntropyConfig::Device {
            path: "/dev/hwrng".into(),
            timeout_ms: 99,
        };
        let text = toml::to_string(&cfg).expect("serialize");
        assert_eq!(toml::from_str::<EntropyConfig>(&text).expect("parse"), cfg);
    }

    #[test]
    fn relative_paths_resolve_against_the_vault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, bytes) = write_pool(dir.path(), 8192);
        let cfg = EntropyConfig::Pool {
            path: "qrng.bin".into(),
        };
        let src = open_source(&cfg, dir.path()).expect("open pool");
        assert_eq!(draw(src.as_ref(), 32), bytes[..32]);
        assert_eq!(
            src.describe().path.as_deref(),
            Some(dir.path().join("qrng.bin").as_path())
        );

        let dev = EntropyConfig::Device {
            path: "qrng.bin".into(),
            timeout_ms: 1000,
        };
        let src = open_source(&dev, dir.path()).expect("open device");
        assert_eq!(src.describe().kind, "device");

        let os = open_source(&EntropyConfig::Os, dir.path()).expect("open os");
        assert_eq!(os.describe().kind, "os");
        assert_ne!(draw(os.as_ref(), 32), vec![0u8; 32]);
    }
}

mod os {
    use super::*;

    #[test]
    fn fills_any_length() {
        let src = OsSource::new();
        for n in [0, 1, 32, 4097] {
            assert_eq!(draw(&src, n).len(), n);
        }
    }
}

mod device {
    use super::*;

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
    }

    #[test]
    fn missing_path_is_named() {
        let err = open_err(DeviceSource::open(
            Path::new("/nonexistent/hwrng-qsfs-test"),
            1000,
        ));
        assert!(matches!(err, EntropyError::DeviceMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/hwrng-qsfs-test") && msg.contains("does not exist"),
            "{msg}"
        );
        assert!(msg.contains("source = \"os\""), "{msg}");
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_err(DeviceSource::open(dir.path(), 1000));
        assert!(
            matches!(err, EntropyError::DeviceIsDirectory { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn regular_file_serves_its_bytes_then_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        let bytes = random_bytes(10_000);
        fs::write(&path, &bytes).expect("write");
        let src = DeviceSource::open(&path, 1000).expect("open");
        let mut got = Vec::new();
        for n in [32, 1, 4096, 5000, 871] {
            got.extend(draw(&src, n));
        }
        assert_eq!(got, bytes);
        let err = src
            .fill(&mut [0u8; 1])
            .expect_err("device should have ended");
        assert!(matches!(err, EntropyError::DeviceEnded { .. }), "{err:?}");
        assert!(
            err.to_string().contains("ended") && err.to_string().contains(&*path.to_string_lossy())
        );
        // The cause sticks.
        assert!(matches!(
            src.fill(&mut [0u8; 1]),
            Err(EntropyError::DeviceEnded { .. })
        ));
        assert!(src.describe().note.expect("note").contains("ended"));
    }

    #[test]
    fn empty_file_ends_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty");
        fs::write(&path, b"").expect("write");
        let src = DeviceSource::open(&path, 1000).expect("open");
        let mut buf = [7u8; 32];
        assert!(matches!(
            src.fill(&mut buf),
            Err(EntropyError::DeviceEnded { .. })
        ));
        assert_eq!(buf, [0u8; 32], "a failed draw leaves no bytes behind");
    }

    #[test]
    fn fifo_without_writer_stalls_within_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        mkfifo(&path);
        let t0 = Instant::now();
        let err = open_err(DeviceSource::open(&path, 300));
        let took = t0.elapsed();
        assert!(
            matches!(
                err,
                EntropyError::DeviceStalled {
                    timeout_ms: 300,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "took {took:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&*path.to_string_lossy()) && msg.contains("300 ms"),
            "{msg}"
        );
    }

    #[test]
    fn fifo_fed_by_a_writer_delivers_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        mkfifo(&path);
        let bytes = random_bytes(100_000);
        let (wpath, wbytes) = (path.clone(), bytes.clone());
        let writer = thread::spawn(move || {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&wpath)
                .expect("open fifo for writing");
            for piece in wbytes.chunks(777) {
                f.write_all(piece).expect("write fifo");
            }
        });
        let src = DeviceSource::open(&path, 5000).expect("open");
        let mut got = Vec::new();
        while got.len() < bytes.len() {
            let n = (bytes.len() - got.len()).min(32 + got.len() % 3000);
            got.extend(draw(&src, n));
        }
        assert_eq!(got, bytes);
        writer.join().expect("writer");
        assert!(matches!(
            src.fill(&mut [0u8; 1]),
            Err(EntropyError::DeviceEnded { .. })
        ));
    }

    #[test]
    fn stalled_read_errors_then_recovers_when_bytes_come() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        mkfifo(&path);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let wpath = path.clone();
        let writer = thread::spawn(move || {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&wpath)
                .expect("open fifo for writing");
            f.write_all(&[1u8; 16]).expect("write");
            go_rx.recv().expect("go");
            f.write_all(&[2u8; 16]).expect("write");
        });
        // Each 16-byte write reaches the FIFO whole, so a draw that stalls
        // took none of it and may be repeated: the writer thread may be
        // slow to run on a loaded machine.
        let patiently = |src: &DeviceSource| {
            let t0 = Instant::now();
            loop {
                let mut buf = [0u8; 16];
                match src.fill(&mut buf) {
                    Ok(()) => return buf,
                    Err(EntropyError::DeviceStalled { .. })
                        if t0.elapsed() < Duration::from_secs(30) => {}
                    Err(e) => panic!("draw: {e}"),
                }
            }
        };
        let src = DeviceSource::open(&path, 200).expect("open");
        assert_eq!(patiently(&src), [1u8; 16]);
        let t0 = Instant::now();
        let err = src.fill(&mut [0u8; 16]).expect_err("should stall");
        assert!(
            matches!(
                err,
                EntropyError::DeviceStalled {
                    timeout_ms: 200,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(3));
        go_tx.send(()).expect("go");
        assert_eq!(patiently(&src), [2u8; 16]);
        writer.join().expect("writer");
    }
}

mod pool {
    use super::*;

    #[test]
    fn draws_are_consecutive_pool_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 50_000);
        let src = PoolSource::open(&path).expect("open");
        let st = src.describe();
        assert_eq!(
            (st.kind.as_str(), st.remaining, st.total),
            ("pool", Some(50_000), Some(50_000))
        );
        let mut got = Vec::new();
        for n in [32, 12, 1, 5000, 4096, 3, 8192, 32] {
            got.extend(draw(&src, n));
        }
        assert_eq!(got, bytes[..got.len()]);
        assert_eq!(src.describe().remaining, Some(50_000 - got.len() as u64));
    }

    #[test]
    fn consumed_bytes_are_zeroed_on_disk_before_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 20_000);
        let src = PoolSource::open(&path).expect("open");
        draw(&src, 100);
        let on_disk = fs::read(&path).expect("read pool");
        assert!(
            on_disk[..4096].iter().all(|&b| b == 0),
            "reserved block not zeroed"
        );
        assert_eq!(
            on_disk[4096..],
            bytes[4096..],
            "unreserved bytes must stay intact"
        );
        draw(&src, 5000);
        let on_disk = fs::read(&path).expect("read pool");
        assert!(on_disk[..8192].iter().all(|&b| b == 0));
        assert_eq!(on_disk[8192..], bytes[8192..]);
    }

    #[test]
    fn sources_opened_one_after_another_never_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 64 * 1024);
        let mut draws = Vec::new();
        for round in 0..5 {
            let src = PoolSource::open(&path).expect("open");
            for _ in 0..=round {
                draws.push(draw(&src, 32));
            }
        }
        let offsets = offsets_of(&bytes, &draws);
        assert_disjoint(&offsets);
        // Each reopen starts at the next unreserved block.
        assert_eq!(offsets[0], 0);
        assert_eq!(offsets[1], 4096);
    }

    #[test]
    fn concurrent_sources_and_threads_never_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 256 * 1024);
        let a = Arc::new(PoolSource::open(&path).expect("open a"));
        let b = Arc::new(PoolSource::open(&path).expect("open b"));
        let handles: Vec<_> = [a.clone(), a, b.clone(), b]
            .into_iter()
            .map(|src| {
                thread::spawn(move || (0..300).map(|_| draw(src.as_ref(), 32)).collect::<Vec<_>>())
            })
            .collect();
        let draws: Vec<Vec<u8>> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(draws.len(), 1200);
        assert_disjoint(&offsets_of(&bytes, &draws));
    }

    #[test]
    fn crash_then_reopen_never_repeats_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 64 * 1024);
        let mut draws = Vec::new();
        for _ in 0..3 {
            let src = PoolSource::open(&path).expect("open");
            for _ in 0..10 {
                draws.push(draw(&src, 32));
            }
            // A crash: no destructor, no clean shutdown.
            std::mem::forget(src);
        }
        let src = PoolSource::open(&path).expect("reopen");
        draws.push(draw(&src, 32));
        assert_disjoint(&offsets_of(&bytes, &draws));
    }

    #[test]
    fn exhaustion_consumes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 5000);
        let src = PoolSource::open(&path).expect("open");
        assert_eq!(draw(&src, 4000), bytes[..4000]);
        let err = src.fill(&mut [0u8; 1001]).expect_err("should be exhausted");
        assert!(
            matches!(
                err,
                EntropyError::PoolExhausted {
                    needed: 1001,
                    left: 1000,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&*path.to_string_lossy()) && msg.contains("1001") && msg.contains("1000"),
            "{msg}"
        );
        assert!(
            msg.contains("load a new pool file") && msg.contains("source = \"os\""),
            "{msg}"
        );
        assert_eq!(src.describe().remaining, Some(1000));
        assert_eq!(
            draw(&src, 1000),
            bytes[4000..],
            "the failed draw must not consume"
        );
        assert_eq!(src.describe().remaining, Some(0));
        assert!(matches!(
            src.fill(&mut [0u8; 1]),
            Err(EntropyError::PoolExhausted {
                needed: 1,
                left: 0,
                ..
            })
        ));
        assert!(src.fill(&mut []).is_ok());
    }

    #[test]
    fn missing_sidecar_resumes_after_the_zeroed_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 64 * 1024);
        {
            let src = PoolSource::open(&path).expect("open");
            draw(&src, 100);
            draw(&src, 5000);
        }
        fs::remove_file(sidecar(&path)).expect("remove sidecar");
        let src = PoolSource::open(&path).expect("reopen without sidecar");
        assert!(
            sidecar(&path).exists(),
            "the recovered position is recorded"
        );
        assert_eq!(draw(&src, 32), bytes[8192..8192 + 32]);
        assert_eq!(src.describe().remaining, Some(64 * 1024 - 8192 - 32));
    }

    #[test]
    fn fresh_pool_without_sidecar_starts_at_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, bytes) = write_pool(dir.path(), 10_000);
        let src = PoolSource::open(&path).expect("open");
        assert_eq!(draw(&src, 64), bytes[..64]);
    }

    #[test]
    fn stale_sidecar_is_caught_by_the_zero_guard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = write_pool(dir.path(), 64 * 1024);
        let old = {
            let src = PoolSource::open(&path).expect("open");
            draw(&src, 10);
            let old = fs::read(sidecar(&path)).expect("sidecar");
            draw(&src, 5000);
            old
        };
        // The position file is restored from a backup: it lags the pool.
        fs::write(sidecar(&path), old).expect("restore sidecar");
        let src = PoolSource::open(&path).expect("open");
        let mut buf = [0u8; 32];
        let err = src
            .fill(&mut buf)
            .expect_err("zeroed bytes must be refused");
        assert!(
            matches!(err, EntropyError::PoolAlreadyConsumed { offset: 4096, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("already consumed"), "{err}");
    }

    #[test]
    fn copied_pool_without_sidecar_skips_its_zeroed_prefix() {
        // A copy of a pool taken after its first block was consumed.
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut bytes) = write_pool(dir.path(), 16 * 1024);
        bytes[..4096].fill(0);
        fs::write(&path, &bytes).expect("write");
        let src = PoolSource::open(&path).expect("open");
        assert_eq!(draw(&src, 32), bytes[4096..4128]);
    }

    #[test]
    fn pool_shorter_than_recorded_position_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = write_pool(dir.path(), 64 * 1024);
        {
            let src = PoolSource::open(&path).expect("open");
            draw(&src, 5000); // position 8192
        }
        fs::write(&path, random_bytes(6000)).expect("replace pool");
        let err = open_err(PoolSource::open(&path));
        assert!(
            matches!(
                err,
                EntropyError::PoolShorter {
                    len: 6000,
                    position: 8192,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&*path.to_string_lossy()) && msg.contains("delete the position file"),
            "{msg}"
        );
    }

    #[test]
    fn damaged_sidecar_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = write_pool(dir.path(), 8192);
        fs::write(sidecar(&path), b"garbage").expect("write");
        let err = open_err(PoolSource::open(&path));
        assert!(
            matches!(err, EntropyError::PoolStateCorrupt { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_pool_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.bin");
        let err = open_err(PoolSource::open(&path));
        assert!(matches!(err, EntropyError::PoolMissing { .. }), "{err:?}");
        assert!(err.to_string().contains(&*path.to_string_lossy()));
    }
}
