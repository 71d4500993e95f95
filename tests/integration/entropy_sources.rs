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

/// True if `needle` (at least 8 bytes) occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(8).any(|w| w == &needle[..8])
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
        let src = open_source(&cfg, dir.path(), None).expect("open pool");
        let key = draw(src.as_ref(), 32);
        // Mixed with the OS RNG: not the pool bytes themselves.
        assert!(!contains(&bytes, &key), "a pool byte run came out as is");
        assert_eq!(
            src.describe().path.as_deref(),
            Some(dir.path().join("qrng.bin").as_path())
        );
        assert!(
            src.describe()
                .note
                .unwrap()
                .contains("mixed with the OS RNG")
        );
        // The startup test and the draw consumed one block of the pool.
        assert!(
            fs::read(dir.path().join("qrng.bin")).unwrap()[..4096]
                .iter()
                .all(|&b| b == 0)
        );

        let dev = EntropyConfig::Device {
            path: "null".into(),
            timeout_ms: 1000,
        };
        std::os::unix::fs::symlink("/dev/null", dir.path().join("null")).unwrap();
        let src = open_source(&dev, dir.path(), None).expect("open device");
        assert_eq!(src.describe().kind, "device");
        assert_eq!(
            src.describe().path.as_deref(),
            Some(dir.path().join("null").as_path())
        );

        let os = open_source(&EntropyConfig::Os, dir.path(), None).expect("open os");
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
            matches!(
                err,
                EntropyError::DeviceWrongType {
                    found: "a directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// A regular file would give every process the same bytes from its
    /// start: refused, naming the file and the alternatives. Also through
    /// a symlink, and an empty file.
    #[test]
    fn regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev");
        fs::write(&path, random_bytes(10_000)).expect("write");
        let link = dir.path().join("hwrng");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        let empty = dir.path().join("empty");
        fs::write(&empty, b"").expect("write");
        for p in [&path, &link, &empty] {
            let err = open_err(DeviceSource::open(p, 1000));
            assert!(
                matches!(
                    err,
                    EntropyError::DeviceWrongType {
                        found: "a regular file",
                        ..
                    }
                ),
                "{err:?}"
            );
            let msg = err.to_string();
            for want in [
                &*p.to_string_lossy(),
                "not a character device or FIFO",
                "/dev/hwrng",
                "FIFO",
                "pool:",
            ] {
                assert!(msg.contains(want), "{want:?} missing from: {msg}");
            }
        }
        // Through open_source (what the vault uses) too.
        let cfg = EntropyConfig::Device {
            path: "dev".into(),
            timeout_ms: 1000,
        };
        assert!(matches!(
            open_err(open_source(&cfg, dir.path(), None)),
            EntropyError::DeviceWrongType { .. }
        ));
    }

    #[test]
    fn character_device_is_accepted() {
        let src = DeviceSource::open(Path::new("/dev/urandom"), 1000).expect("open");
        let (a, b) = (draw(&src, 32), draw(&src, 32));
        assert_ne!(a, b);
        // /dev/null is a character device that ends at once.
        let null = DeviceSource::open(Path::new("/dev/null"), 1000).expect("open");
        assert!(matches!(
            null.fill(&mut [0u8; 1]),
            Err(EntropyError::DeviceEnded { .. })
        ));
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

/// The random source as the vault uses it, through real `qsfs` runs.
mod vault {
    use std::os::unix::fs::OpenOptionsExt;
    use std::thread::JoinHandle;

    use super::*;
    use crate::common::{Rng, TestVault};

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
    }

    /// A writer thread that feeds the FIFO at `path` once a reader opens it:
    /// `bytes` once (ending with end of file) or, with `forever`, over and
    /// over until the reader closes its end (EPIPE).
    fn feed(path: &Path, bytes: Vec<u8>, forever: bool) -> (PathBuf, JoinHandle<()>) {
        let wpath = path.to_path_buf();
        let handle = thread::spawn(move || {
            let Ok(mut f) = OpenOptions::new().write(true).open(&wpath) else {
                return;
            };
            loop {
                for piece in bytes.chunks(4096) {
                    if f.write_all(piece).is_err() {
                        return;
                    }
                }
                if !forever {
                    return;
                }
            }
        });
        (path.to_path_buf(), handle)
    }

    /// Waits for a writer started by [`feed`]; if no reader ever opened the
    /// FIFO (the run failed before), opens it briefly so the writer's own
    /// open returns and it sees the closed end.
    fn finish((path, handle): (PathBuf, JoinHandle<()>)) {
        let t0 = Instant::now();
        while !handle.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(60), "FIFO writer stuck");
            if let Ok(r) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                thread::sleep(Duration::from_millis(50));
                drop(r);
            }
            thread::sleep(Duration::from_millis(20));
        }
        handle.join().expect("FIFO writer");
    }

    /// Shard bodies (after the 64-byte header) of the object at `vpath`.
    fn shard_bodies(v: &TestVault, vpath: &str) -> Vec<Vec<u8>> {
        let shards = v.shards_of(&v.object_of(vpath));
        assert!(!shards.is_empty(), "{vpath} has no shards");
        shards
            .iter()
            .map(|s| fs::read(&s.path).expect("read shard")[64..].to_vec())
            .collect()
    }

    /// A stuck or replayed source (here a FIFO that delivers the very same
    /// bytes to each run) must not repeat keys: K, R and the share seed mix
    /// in the OS RNG, so the same data sealed twice gives different shards.
    #[test]
    fn identical_fifo_bytes_still_give_different_shards() {
        let tmp = tempfile::Builder::new()
            .prefix("qsfs-test-")
            .tempdir()
            .unwrap();
        let fifo = tmp.path().join("qrng.fifo");
        mkfifo(&fifo);
        // Random-looking (passes the health tests) yet the same every run.
        let stream = Rng::new(7).bytes(256 * 1024);
        let spec = format!("device:{}", fifo.display());
        let w = feed(&fifo, stream.clone(), false);
        let v = TestVault::new_in(tmp, &["--random", &spec]);
        finish(w);
        let data = Rng::new(8).bytes(300 * 1024);
        for vpath in ["/a", "/b"] {
            let w = feed(&fifo, stream.clone(), false);
            v.put_bytes(&data, vpath).success();
            finish(w);
        }
        let (a, b) = (shard_bodies(&v, "/a"), shard_bodies(&v, "/b"));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x != y, "shard {i} repeated: the keys repeated");
        }
        v.assert_reads("/a", &data);
        v.assert_reads("/b", &data);
        // Status opens the device too (and draws nothing from it).
        let w = feed(&fifo, stream.clone(), false);
        let st = v.status();
        finish(w);
        assert_eq!(st["random"]["kind"], "device", "{st:#}");
        assert!(
            st["random"]["note"]
                .as_str()
                .unwrap()
                .contains("mixed with the OS RNG"),
            "{st:#}"
        );
    }

    /// A device that delivers constant bytes fails the health tests: the
    /// put fails and names the FIFO and the test.
    #[test]
    fn fifo_of_zeros_fails_the_health_test() {
        let tmp = tempfile::Builder::new()
            .prefix("qsfs-test-")
            .tempdir()
            .unwrap();
        let fifo = tmp.path().join("zeros.fifo");
        mkfifo(&fifo);
        let spec = format!("device:{}", fifo.display());
        // Opening at init checks nothing is wrong with the path; the bytes
        // are tested when the first key is drawn.
        let w = feed(&fifo, Rng::new(1).bytes(64 * 1024), false);
        let v = TestVault::new_in(tmp, &["--random", &spec]);
        finish(w);
        let w = feed(&fifo, vec![0u8; 4096], true);
        let r = v.put_bytes(b"secret", "/f");
        finish(w);
        r.failure().stderr_has(&[
            &fifo.display().to_string(),
            "Repetition Count Test",
            "health test",
        ]);
        assert!(v.run("ls", &[]).success().out().trim().is_empty());
    }

    /// A regular file given as `device:` is refused at init, with a message
    /// that names it and says what to use instead.
    #[test]
    fn regular_file_as_device_is_refused_by_init() {
        let tmp = tempfile::Builder::new()
            .prefix("qsfs-test-")
            .tempdir()
            .unwrap();
        let file = tmp.path().join("random.bin");
        fs::write(&file, random_bytes(64 * 1024)).unwrap();
        let root = tmp.path().join("vault");
        let r = crate::common::qsfs(&[
            "init",
            root.to_str().unwrap(),
            "--random",
            &format!("device:{}", file.display()),
        ]);
        r.failure().stderr_has(&[
            &file.display().to_string(),
            "not a character device or FIFO",
            "pool:",
        ]);
        assert!(!root.join("qsfs.toml").exists());
    }

    /// A pool file and its position file restored from a backup would hand
    /// out the same bytes again; the vault remembers how far it consumed
    /// the pool and refuses. A fresh pool file still works.
    #[test]
    fn restored_pool_is_refused_and_a_fresh_pool_works() {
        let tmp = tempfile::Builder::new()
            .prefix("qsfs-test-")
            .tempdir()
            .unwrap();
        let pool = tmp.path().join("qrng.bin");
        let pos = sidecar(&pool);
        fs::write(&pool, random_bytes(64 * 1024)).unwrap();
        let p = pool.display().to_string();
        let v = TestVault::new_in(tmp, &["--random", &format!("pool:{p}")]);
        v.put_bytes(b"first", "/first").success();
        // The backup: taken after one put, before the next.
        let (pool_bak, pos_bak) = (fs::read(&pool).unwrap(), fs::read(&pos).unwrap());
        v.put_bytes(b"second", "/second").success();
        fs::write(&pool, &pool_bak).unwrap();
        fs::write(&pos, &pos_bak).unwrap();
        let r = v.put_bytes(b"third", "/third");
        r.failure().stderr_has(&[&p, "restored"]);
        assert!(!v.run("ls", &[]).success().out().contains("third"));
        // Without its position file the restored pool is refused too.
        fs::remove_file(&pos).unwrap();
        v.put_bytes(b"third", "/third")
            .failure()
            .stderr_has(&[&p, "restored"]);
        // A new pool file (new bytes, same path and size) is accepted.
        fs::write(&pool, random_bytes(64 * 1024)).unwrap();
        fs::remove_file(&pos).unwrap_or(());
        v.put_bytes(b"third", "/third").success();
        v.put_bytes(b"fourth", "/fourth").success();
        v.assert_reads("/third", b"third");
        v.assert_reads("/first", b"first");
    }
}
