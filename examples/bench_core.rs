//! Core benchmark of qsfs: seal (durable `put`) and open (`read_file`)
//! throughput, per-file latency, peak RSS, storage overhead and the cost of
//! the same writes on the bare disk (the "I/O floor"), for several file
//! sizes and erasure-coding parameters; plus a small group-commit table.
//!
//! Run it through `scripts/bench-core.sh` (see docs/BENCHMARKS.md). The
//! binary has three subcommands:
//!
//! ```text
//! bench_core run   --dir DIR [--quick] [--json FILE] [--sizes ..] [--ec ..]
//! bench_core case  --dir DIR --src FILE --size B --count C --k K --n N ...
//! bench_core group --dir DIR --src FILE --files F --k K --n N --mode many|each
//! ```
//! `run` prepares the source files and starts every case as a fresh child
//! process (`case` or `group`), so each case's peak RSS is its own; a child
//! prints one `RESULT {json}` line on stdout, which the parent collects into
//! the tables.
//!
//! Only the public vault API is used (`init`, `Vault::open`, `put`,
//! `put_many`, `read_file`, `status`), so the benchmark keeps working when
//! the internals change.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use qsfs::VaultPath;
use qsfs::vault::{self, InitOptions, OpenOptions, PutSource, Vault};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// Throughput unit: decimal megabytes, as in "100 MB in 0.25 s".
const MB: f64 = 1e6;

/// Files per `put_many` group commit (documented behaviour of the vault;
/// used only to label the number of barriers in the group-commit table).
const GROUP: u64 = 64;

#[derive(Parser, Debug)]
#[command(about = "qsfs core benchmark (use scripts/bench-core.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs the whole benchmark and prints the tables.
    Run(RunArgs),
    /// One size x EC case (run in a child process by `run`).
    Case(CaseArgs),
    /// One group-commit case (run in a child process by `run`).
    Group(GroupArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Work folder for sources, vaults and floor files (on the disk to
    /// measure; not tmpfs). Everything the run creates in it is removed.
    #[arg(long)]
    dir: PathBuf,
    /// Fast subset: smaller counts, no 1 GiB, one repetition.
    #[arg(long)]
    quick: bool,
    /// Only these sizes (comma-separated: 1K,100K,1M,100M,1G).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<String>>,
    /// Only these EC parameters (comma-separated k/n, e.g. 3/5,4/6).
    #[arg(long, value_delimiter = ',')]
    ec: Option<Vec<String>>,
    /// Skip the group-commit table.
    #[arg(long)]
    no_group: bool,
    /// Skip the size table (only the group-commit table).
    #[arg(long)]
    no_sizes: bool,
    /// Also write the raw results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
struct CaseArgs {
    /// Work folder of this case (created, removed at the end).
    #[arg(long)]
    dir: PathBuf,
    /// Source file to put.
    #[arg(long)]
    src: PathBuf,
    /// Its size in bytes.
    #[arg(long)]
    size: u64,
    /// Files put per repetition (one durable `put` each).
    #[arg(long)]
    count: u64,
    #[arg(long)]
    k: usize,
    #[arg(long)]
    n: usize,
    /// Repetitions (each into a fresh vault); the best is reported.
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Warm reads per repetition.
    #[arg(long, default_value_t = 3)]
    open_reps: u32,
    /// Also read once with cold caches per repetition (needs root).
    #[arg(long)]
    cold: bool,
    /// Skip the I/O floor (for profiling the seal alone).
    #[arg(long)]
    no_floor: bool,
    /// Also read with one data shard's node offline (RS rebuild).
    #[arg(long)]
    degraded: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct GroupArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    src: PathBuf,
    /// Number of files.
    #[arg(long)]
    files: u64,
    #[arg(long)]
    k: usize,
    #[arg(long)]
    n: usize,
    /// `many`: one `put_many` of all files; `each`: one `put` per file.
    #[arg(long)]
    mode: String,
    #[arg(long, default_value_t = 1)]
    reps: u32,
}

/// What a `case` child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaseResult {
    size: u64,
    count: u64,
    k: usize,
    n: usize,
    reps: u32,
    /// Best (shortest) seal time of all files, seconds.
    seal_s: f64,
    /// All repetitions' seal times.
    seal_all_s: Vec<f64>,
    /// Per-file put latency over all repetitions, ms.
    lat_mean_ms: f64,
    lat_p50_ms: f64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    /// Best I/O-floor time, seconds, and all of them.
    floor_s: Option<f64>,
    floor_all_s: Vec<f64>,
    /// Best warm open time of all files, seconds.
    open_warm_s: f64,
    /// Best cold open time (None when not measured or not permitted).
    open_cold_s: Option<f64>,
    open_cold_all_s: Vec<f64>,
    /// Best read with one data shard's node offline (warm cache).
    open_degraded_s: Option<f64>,
    /// Peak RSS of the child, MiB.
    rss_mib: f64,
    logical_bytes: u64,
    stored_bytes: u64,
    overhead: f64,
    /// Stored bytes of one shard file (as written by the floor).
    shard_bytes: u64,
    /// Device flush requests during a seal (device-wide: the fewest seen
    /// over the repetitions, as other processes only add to it).
    seal_flushes: Option<u64>,
    wall_s: f64,
}

/// What a `group` child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupResult {
    files: u64,
    k: usize,
    n: usize,
    mode: String,
    secs: f64,
    all_s: Vec<f64>,
    flushes: Option<u64>,
    rss_mib: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Case(a) => {
            let r = case(&a)?;
            println!("RESULT {}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Group(a) => {
            let r = group(&a)?;
            println!("RESULT {}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Peak resident set size of this process in MiB.
fn peak_rss_mib() -> f64 {
    qsfs_sys::peak_rss_kib().map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// A sink that counts and discards.
struct Discard(u64);

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`. False if not permitted.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Reads a file once so it is in the page cache.
fn warm(path: &Path) -> Result<()> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    io::copy(&mut f, &mut Discard(0))?;
    Ok(())
}

/// Writes `len` pseudo-random bytes (ChaCha8 stream) to `path`, fsynced.
fn make_source(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..k]);
        f.write_all(&buf[..k])?;
        left -= k as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Flush requests completed by the block device holding `path` so far
/// (field 16 of /sys/block/DEV/stat; counts every process on the device).
fn device_flushes(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    // A partition's flushes are counted on its disk.
    let stat = if base.join("partition").exists() {
        base.join("../stat")
    } else {
        base.join("stat")
    };
    let text = fs::read_to_string(stat).ok()?;
    text.split_whitespace().nth(15)?.parse().ok()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A new vault at `dir/vault` whose `n` node folders are `dir/nodes/node-i`
/// (named by us, so a degraded read can take one offline).
fn fresh_vault(dir: &Path, k: usize, n: usize) -> Result<(Vault, Vec<PathBuf>)> {
    let root = dir.join("vault");
    let nodes_dir = dir.join("nodes");
    for d in [&root, &nodes_dir] {
        if d.exists() {
            fs::remove_dir_all(d)?;
        }
    }
    let nodes: Vec<PathBuf> = (0..n)
        .map(|i| nodes_dir.join(format!("node-{i}")))
        .collect();
    // QSFS_BENCH_DIRECT=1 (bench-core.sh --direct): node folders without
    // the in-process QKD-keyed links, as before links existed.
    let opts = InitOptions {
        k,
        n,
        nodes: Some(nodes.clone()),
        direct: std::env::var_os("QSFS_BENCH_DIRECT").is_some_and(|v| v == "1"),
        // A key file beside the vault, as `qsfs init` makes without a
        // terminal (the sealed keystore is part of what is measured).
        unlock: Some(qsfs::unlock::NewMethod::KeyFile(dir.join("vault.key"))),
        ..InitOptions::default()
    };
    vault::init(&root, &opts).with_context(|| format!("init {}", root.display()))?;
    Ok((Vault::open(&root, &OpenOptions::default())?, nodes))
}

/// Removes what `fresh_vault` made.
fn remove_vault(v: Vault, dir: &Path) -> Result<()> {
    drop(v);
    fs::remove_dir_all(dir.join("vault"))?;
    fs::remove_dir_all(dir.join("nodes"))?;
    Ok(())
}

fn vault_paths(count: u64) -> Result<Vec<VaultPath>> {
    (0..count)
        .map(|i| Ok(VaultPath::parse(&format!("/f{i:06}"))?))
        .collect()
}

// ---------------------------------------------------------------- I/O floor

/// The bare-disk cost of a seal: `n` node folders, one writer thread per
/// node, each writing `files` files of `len` bytes (the shard files of the
/// case), each file fsynced and then its folder fsynced. With `lockstep`
/// (one durable put per file) the threads wait for each other after every
/// file, like successive puts do.
fn io_floor(dir: &Path, n: usize, files: u64, len: u64, lockstep: bool) -> Result<Duration> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    let nodes: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("node-{i}"))).collect();
    for d in &nodes {
        fs::create_dir_all(d)?;
    }
    let mut pattern = vec![0u8; MIB as usize];
    ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut pattern);
    let pattern = Arc::new(pattern);
    let barrier = Arc::new(Barrier::new(n));
    let t = Instant::now();
    let handles: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            let (pattern, barrier) = (Arc::clone(&pattern), Arc::clone(&barrier));
            std::thread::spawn(move || -> io::Result<()> {
                for f in 0..files {
                    let mut file = File::create(node.join(format!("shard-{f}")))?;
                    let mut left = len;
                    while left > 0 {
                        let k = left.min(pattern.len() as u64) as usize;
                        file.write_all(&pattern[..k])?;
                        left -= k as u64;
                    }
                    file.sync_all()?;
                    File::open(&node)?.sync_all()?;
                    if lockstep {
                        barrier.wait();
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("floor writer panicked"))??;
    }
    let took = t.elapsed();
    fs::remove_dir_all(dir)?;
    Ok(took)
}

// ---------------------------------------------------------------- one case

fn case(a: &CaseArgs) -> Result<CaseResult> {
    let wall = Instant::now();
    fs::create_dir_all(&a.dir)?;
    let paths = vault_paths(a.count)?;
    let src = PutSource::File(a.src.clone());
    ensure!(
        fs::metadata(&a.src)?.len() == a.size,
        "{} is not {} bytes",
        a.src.display(),
        a.size
    );
    let shard_files = a.count * a.n as u64;

    let mut seal_all = Vec::new();
    let mut floor_all = Vec::new();
    let mut warm_all = Vec::new();
    let mut cold_all = Vec::new();
    let mut degraded_all = Vec::new();
    let mut lat = Vec::new();
    let mut flushes_all = Vec::new();
    let mut cold_ok = a.cold;
    let (mut logical, mut stored, mut overhead, mut shard_bytes) = (0u64, 0u64, 0f64, 0u64);

    for rep in 0..a.reps {
        let (v, nodes) = fresh_vault(&a.dir, a.k, a.n)?;
        warm(&a.src)?;

        // Seal: one durable put per file.
        let f0 = device_flushes(&a.dir);
        let t = Instant::now();
        for p in &paths {
            let t1 = Instant::now();
            v.put(&src, p).with_context(|| format!("put {p}"))?;
            lat.push(secs(t1.elapsed()) * 1e3);
        }
        let seal = secs(t.elapsed());
        if let (Some(f0), Some(f1)) = (f0, device_flushes(&a.dir)) {
            flushes_all.push(f1 - f0);
        }
        seal_all.push(seal);

        // What was stored.
        let st = v.status()?;
        ensure!(
            st.logical_bytes == a.size * a.count,
            "status reports {} logical bytes after storing {} x {}",
            st.logical_bytes,
            a.count,
            a.size
        );
        logical = st.logical_bytes;
        stored = st.stored_bytes;
        overhead = st.overhead;
        // All shards of equal objects have the same size.
        shard_bytes = stored.div_ceil(shard_files);

        // The same shard files on the bare disk.
        if !a.no_floor {
            floor_all.push(secs(io_floor(
                &a.dir.join("floor"),
                a.n,
                a.count,
                shard_bytes,
                a.count > 1,
            )?));
        }

        // Open, warm: everything is still in the page cache after the seal.
        for _ in 0..a.open_reps {
            warm_all.push(read_all(&v, &paths, a.size)?);
        }
        // Open, cold.
        if cold_ok {
            if drop_caches() {
                cold_all.push(read_all(&v, &paths, a.size)?);
            } else {
                eprintln!("bench_core: cannot drop caches (not root?); skipping cold reads");
                cold_ok = false;
            }
        }
        // Open with a data shard's node offline: every stripe is rebuilt.
        if a.degraded
            && let Some(d) = read_degraded(&v, &nodes, &paths, a.size)?
        {
            degraded_all.push(d);
        }
        remove_vault(v, &a.dir)?;
        eprintln!(
            "    rep {}: seal {:.3} s, floor {:.3} s, open warm {:.3} s{}{}",
            rep + 1,
            seal,
            floor_all.last().copied().unwrap_or(f64::NAN),
            min(&warm_all[warm_all.len() - a.open_reps as usize..]),
            cold_all
                .last()
                .filter(|_| cold_ok)
                .map(|c| format!(", cold {c:.3} s"))
                .unwrap_or_default(),
            degraded_all
                .last()
                .filter(|_| a.degraded)
                .map(|c| format!(", degraded {c:.3} s"))
                .unwrap_or_default()
        );
    }
    fs::remove_dir_all(&a.dir)?;

    lat.sort_by(f64::total_cmp);
    let opt_min = |v: &[f64]| if v.is_empty() { None } else { Some(min(v)) };
    Ok(CaseResult {
        size: a.size,
        count: a.count,
        k: a.k,
        n: a.n,
        reps: a.reps,
        seal_s: min(&seal_all),
        seal_all_s: seal_all,
        lat_mean_ms: lat.iter().sum::<f64>() / lat.len() as f64,
        lat_p50_ms: percentile(&lat, 0.5),
        lat_p99_ms: percentile(&lat, 0.99),
        lat_max_ms: lat.last().copied().unwrap_or(f64::NAN),
        floor_s: opt_min(&floor_all),
        floor_all_s: floor_all,
        open_warm_s: min(&warm_all),
        open_cold_s: opt_min(&cold_all),
        open_cold_all_s: cold_all,
        open_degraded_s: opt_min(&degraded_all),
        rss_mib: peak_rss_mib(),
        logical_bytes: logical,
        stored_bytes: stored,
        overhead,
        shard_bytes,
        seal_flushes: flushes_all.iter().copied().min(),
        wall_s: secs(wall.elapsed()),
    })
}

/// Takes node folders offline one at a time (renaming them) until a read
/// has to rebuild a data shard from parity; returns that read's time (warm
/// cache). The shard placement is random, so a node may hold only parity.
fn read_degraded(
    v: &Vault,
    nodes: &[PathBuf],
    paths: &[VaultPath],
    size: u64,
) -> Result<Option<f64>> {
    for node in nodes {
        let off = node.with_extension("offline");
        fs::rename(node, &off)?;
        let t = Instant::now();
        let mut rebuilt = true;
        for p in paths {
            let mut sink = Discard(0);
            let out = v.read_file(p, &mut sink, false);
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    fs::rename(&off, node)?;
                    return Err(e).with_context(|| format!("degraded read of {p}"));
                }
            };
            ensure!(
                sink.0 == size,
                "degraded read of {p}: got {} bytes, expected {size}",
                sink.0
            );
            rebuilt &= !out.bad_shards.is_empty();
        }
        let took = secs(t.elapsed());
        fs::rename(&off, node)?;
        if rebuilt {
            return Ok(Some(took));
        }
    }
    Ok(None)
}

/// Reads every file (verifying everything) into a discarding sink.
fn read_all(v: &Vault, paths: &[VaultPath], size: u64) -> Result<f64> {
    let t = Instant::now();
    for p in paths {
        let mut sink = Discard(0);
        let out = v
            .read_file(p, &mut sink, false)
            .with_context(|| format!("read {p}"))?;
        ensure!(
            sink.0 == size && out.bytes == size,
            "read {p}: got {} bytes, expected {size}",
            sink.0
        );
        ensure!(
            out.bad_shards.is_empty() && out.key_warnings.is_empty(),
            "read {p}: {out:?}"
        );
    }
    Ok(secs(t.elapsed()))
}

// ---------------------------------------------------------------- group commit

fn group(a: &GroupArgs) -> Result<GroupResult> {
    fs::create_dir_all(&a.dir)?;
    let paths = vault_paths(a.files)?;
    let size = fs::metadata(&a.src)?.len();
    let mut all = Vec::new();
    let mut flushes_all = Vec::new();
    for _ in 0..a.reps {
        let (v, _) = fresh_vault(&a.dir, a.k, a.n)?;
        warm(&a.src)?;
        let f0 = device_flushes(&a.dir);
        let t = Instant::now();
        match a.mode.as_str() {
            "many" => {
                let items: Vec<(PutSource, VaultPath)> = paths
                    .iter()
                    .map(|p| (PutSource::File(a.src.clone()), p.clone()))
                    .collect();
                for (r, p) in v.put_many(&items).into_iter().zip(&paths) {
                    r.with_context(|| format!("put_many {p}"))?;
                }
            }
            "each" => {
                let src = PutSource::File(a.src.clone());
                for p in &paths {
                    v.put(&src, p).with_context(|| format!("put {p}"))?;
                }
            }
            m => bail!("unknown mode {m:?} (many or each)"),
        }
        all.push(secs(t.elapsed()));
        if let (Some(f0), Some(f1)) = (f0, device_flushes(&a.dir)) {
            flushes_all.push(f1 - f0);
        }
        ensure!(
            v.status()?.logical_bytes == a.files * size,
            "not all files were stored"
        );
        remove_vault(v, &a.dir)?;
    }
    fs::remove_dir_all(&a.dir)?;
    Ok(GroupResult {
        files: a.files,
        k: a.k,
        n: a.n,
        mode: a.mode.clone(),
        secs: min(&all),
        all_s: all,
        flushes: flushes_all.iter().copied().min(),
        rss_mib: peak_rss_mib(),
    })
}

// ---------------------------------------------------------------- the run

/// One row of the plan.
struct Plan {
    size: u64,
    count: u64,
    reps: u32,
    open_reps: u32,
    /// Cold and degraded reads too.
    big: bool,
}

fn size_label(size: u64) -> String {
    match size {
        s if s >= GIB && s % GIB == 0 => format!("{} GiB", s / GIB),
        s if s >= MIB && s % MIB == 0 => format!("{} MiB", s / MIB),
        s if s >= KIB && s % KIB == 0 => format!("{} KiB", s / KIB),
        s => format!("{s} B"),
    }
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_uppercase();
    let s = s.trim_end_matches("IB").trim_end_matches('B');
    let (num, mul) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], KIB),
        Some('M') => (&s[..s.len() - 1], MIB),
        Some('G') => (&s[..s.len() - 1], GIB),
        _ => (s, 1),
    };
    Ok(num
        .trim()
        .parse::<u64>()
        .with_context(|| format!("bad size {s:?}"))?
        * mul)
}

fn plans(quick: bool) -> Vec<Plan> {
    if quick {
        vec![
            Plan {
                size: KIB,
                count: 100,
                reps: 1,
                open_reps: 1,
                big: false,
            },
            Plan {
                size: 100 * KIB,
                count: 20,
                reps: 1,
                open_reps: 1,
                big: false,
            },
            Plan {
                size: MIB,
                count: 20,
                reps: 1,
                open_reps: 1,
                big: false,
            },
            Plan {
                size: 100 * MIB,
                count: 1,
                reps: 1,
                open_reps: 2,
                big: true,
            },
        ]
    } else {
        vec![
            Plan {
                size: KIB,
                count: 500,
                reps: 3,
                open_reps: 3,
                big: false,
            },
            Plan {
                size: 100 * KIB,
                count: 100,
                reps: 3,
                open_reps: 3,
                big: false,
            },
            Plan {
                size: MIB,
                count: 50,
                reps: 3,
                open_reps: 3,
                big: false,
            },
            Plan {
                size: 100 * MIB,
                count: 1,
                reps: 3,
                open_reps: 3,
                big: true,
            },
            Plan {
                size: GIB,
                count: 1,
                reps: 2,
                open_reps: 2,
                big: true,
            },
        ]
    }
}

/// Runs this binary as a child with `args` and returns its RESULT line.
fn child<T: for<'de> Deserialize<'de>>(args: &[String]) -> Result<T> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(&exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {}", exe.display()))?;
    let mut result = None;
    if let Some(out) = c.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            match line.strip_prefix("RESULT ") {
                Some(j) => result = Some(serde_json::from_str(j)?),
                None => eprintln!("{line}"),
            }
        }
    }
    let status = c.wait()?;
    ensure!(status.success(), "case {args:?} failed ({status})");
    result.context("the case printed no result")
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let features: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|f| {
            let have: Vec<&str> = f.split_whitespace().collect();
            ["aes", "vaes", "pclmulqdq", "avx2", "avx512f", "sha_ni"]
                .into_iter()
                .filter(|x| have.contains(x))
                .collect()
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_string()))
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        ("CPU".into(), cpu),
        ("CPU features used by the codecs".into(), features.join(" ")),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("date".into(), date),
    ]
}

fn disk_of(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=source,fstype", &dir.display().to_string()])
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn parse_ec(s: &str) -> Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("EC must be k/n, e.g. 3/5")?;
    Ok((k.trim().parse()?, n.trim().parse()?))
}

fn run(a: RunArgs) -> Result<()> {
    let wall = Instant::now();
    let work = a.dir.clone();
    fs::create_dir_all(&work)?;
    let ecs: Vec<(usize, usize)> = match &a.ec {
        Some(v) => v.iter().map(|s| parse_ec(s)).collect::<Result<_>>()?,
        None => vec![(2, 3), (3, 5), (4, 6)],
    };
    let mut plan = plans(a.quick);
    if let Some(sizes) = &a.sizes {
        let want: Vec<u64> = sizes.iter().map(|s| parse_size(s)).collect::<Result<_>>()?;
        plan.retain(|p| want.contains(&p.size));
    }
    if a.no_sizes {
        plan.clear();
    }
    let group_files = if a.quick { 200 } else { 1000 };

    println!(
        "# qsfs core benchmark ({})",
        if a.quick { "quick" } else { "full" }
    );
    for (k, v) in machine() {
        println!("- {k}: {v}");
    }
    println!("- work folder: {} ({})", work.display(), disk_of(&work));

    // Sources, on the same disk, created once and reused by every EC.
    let src_dir = work.join("src");
    fs::create_dir_all(&src_dir)?;
    let mut sources = Vec::new();
    let mut need: Vec<u64> = plan.iter().map(|p| p.size).collect();
    if !a.no_group {
        need.push(KIB);
    }
    need.sort_unstable();
    need.dedup();
    for size in need {
        let p = src_dir.join(format!("src-{size}"));
        let t = Instant::now();
        make_source(&p, size, size)?;
        if size >= GIB {
            eprintln!(
                "created the {} source in {:.1} s",
                size_label(size),
                secs(t.elapsed())
            );
        }
        sources.push((size, p));
    }
    let src_of = |size: u64| {
        sources
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, p)| p.clone())
    };

    let mut results: Vec<CaseResult> = Vec::new();
    for p in &plan {
        for &(k, n) in &ecs {
            eprintln!(
                "== {} x {} with EC ({k},{n}), best of {}",
                size_label(p.size),
                p.count,
                p.reps
            );
            let src = src_of(p.size).context("no source")?;
            let mut args: Vec<String> = vec![
                "case".into(),
                "--dir".into(),
                work.join("case").display().to_string(),
                "--src".into(),
                src.display().to_string(),
                "--size".into(),
                p.size.to_string(),
                "--count".into(),
                p.count.to_string(),
                "--k".into(),
                k.to_string(),
                "--n".into(),
                n.to_string(),
                "--reps".into(),
                p.reps.to_string(),
                "--open-reps".into(),
                p.open_reps.to_string(),
            ];
            if p.big {
                args.push("--cold".into());
                args.push("--degraded".into());
            }
            results.push(child(&args)?);
        }
    }

    let mut groups: Vec<GroupResult> = Vec::new();
    if !a.no_group {
        let src = src_of(KIB).context("no 1 KiB source")?;
        for mode in ["many", "each"] {
            eprintln!("== group commit: {group_files} x 1 KiB, {mode}, EC (3,5)");
            let args: Vec<String> = vec![
                "group".into(),
                "--dir".into(),
                work.join("group").display().to_string(),
                "--src".into(),
                src.display().to_string(),
                "--files".into(),
                group_files.to_string(),
                "--k".into(),
                "3".into(),
                "--n".into(),
                "5".into(),
                "--mode".into(),
                mode.into(),
                "--reps".into(),
                if a.quick { "1" } else { "3" }.into(),
            ];
            groups.push(child(&args)?);
        }
    }
    fs::remove_dir_all(&src_dir)?;

    print_tables(&results, &groups);
    println!();
    println!("Total run time: {:.0} s", secs(wall.elapsed()));
    if let Some(j) = &a.json {
        let body =
            serde_json::json!({ "machine": machine(), "cases": results, "group_commit": groups });
        fs::write(j, serde_json::to_string_pretty(&body)?)?;
    }
    Ok(())
}

/// MB/s with enough digits to be readable for tiny files too.
fn fmt_rate(bytes: u64, s: f64) -> String {
    let r = bytes as f64 / s / MB;
    match r {
        r if r >= 100.0 => format!("{r:.0}"),
        r if r >= 10.0 => format!("{r:.1}"),
        r => format!("{r:.2}"),
    }
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn print_tables(results: &[CaseResult], groups: &[GroupResult]) {
    if !results.is_empty() {
        println!();
        println!("## Seal and open");
        println!();
        println!(
            "Seal = one durable `put` per file into a fresh vault; open = `read_file` into a discarding sink \
             (everything verified). MB = 10^6 bytes. Times are the best of the repetitions (worst in brackets)."
        );
        println!();
        println!(
            "| size x files | EC (k,n) | reps | seal MB/s | put ms/file mean / p99 | seal s | floor s | seal/floor | \
             disk flushes/file | open warm MB/s | open ms/file | open cold MB/s | open degraded MB/s | peak RSS MiB | overhead |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in results {
            let total = r.size * r.count;
            println!(
                "| {} x {} | ({},{}) | {} | {} | {:.2} / {:.2} | {:.3} ({:.3}) | {} | {} | {} | {} | {:.2} | {} | {} | {:.0} | {:.3} |",
                size_label(r.size),
                r.count,
                r.k,
                r.n,
                r.reps,
                fmt_rate(total, r.seal_s),
                r.lat_mean_ms,
                r.lat_p99_ms,
                r.seal_s,
                worst(&r.seal_all_s),
                opt(r
                    .floor_s
                    .map(|f| format!("{f:.3} ({:.3})", worst(&r.floor_all_s)))),
                opt(r.floor_s.map(|f| format!("{:.2}", r.seal_s / f))),
                opt(r
                    .seal_flushes
                    .map(|f| format!("{:.1}", f as f64 / r.count as f64))),
                fmt_rate(total, r.open_warm_s),
                r.open_warm_s * 1e3 / r.count as f64,
                opt(r.open_cold_s.map(|c| fmt_rate(total, c))),
                opt(r.open_degraded_s.map(|c| fmt_rate(total, c))),
                r.rss_mib,
                r.overhead,
            );
        }
        println!();
        println!("## Targets");
        println!();
        println!("100 MiB = 104.9 MB, so the times are also given per 100 MB.");
        println!();
        println!("| target | case | measured | met? |");
        println!("|---|---|---:|---|");
        let per100 = |r: &CaseResult, s: f64| s / (r.size as f64 / 1e8);
        for r in results.iter().filter(|r| r.size == 100 * MIB) {
            let s = per100(r, r.seal_s);
            println!(
                "| seal 100 MB < 0.25 s | EC ({},{}) | {:.3} s per 100 MB | {} |",
                r.k,
                r.n,
                s,
                yes(s < 0.25)
            );
        }
        for r in results.iter().filter(|r| r.size == 100 * MIB) {
            let w = per100(r, r.open_warm_s);
            let c = r.open_cold_s.map(|c| per100(r, c));
            println!(
                "| open 100 MB < 0.2 s | EC ({},{}) | {:.3} s warm, {} cold | {} |",
                r.k,
                r.n,
                w,
                opt(c.map(|c| format!("{c:.3} s"))),
                yes(w < 0.2 && c.is_none_or(|c| c < 0.2))
            );
        }
        for r in results.iter().filter(|r| r.floor_s.is_some()) {
            let ratio = r.seal_s / r.floor_s.unwrap_or(f64::NAN);
            println!(
                "| seal within 1.5x of the I/O floor | {} x {}, EC ({},{}) | {:.2}x | {} |",
                size_label(r.size),
                r.count,
                r.k,
                r.n,
                ratio,
                yes(ratio <= 1.5)
            );
        }
        let mut sizes: Vec<u64> = results.iter().map(|r| r.size).collect();
        sizes.dedup();
        let rss: Vec<String> = sizes
            .iter()
            .map(|s| {
                let m = results
                    .iter()
                    .filter(|r| r.size == *s)
                    .map(|r| r.rss_mib)
                    .fold(0.0, f64::max);
                format!("{} {:.0}", size_label(*s), m)
            })
            .collect();
        let big = results
            .iter()
            .filter(|r| r.size >= GIB)
            .map(|r| r.rss_mib)
            .fold(f64::NAN, f64::max);
        println!(
            "| peak RSS flat in file size, < 200 MiB at 1 GiB | max per size (MiB): {} | {} | {} |",
            rss.join(", "),
            if big.is_nan() {
                "-".into()
            } else {
                format!("{big:.0} MiB at 1 GiB")
            },
            if big.is_nan() { "-" } else { yes(big < 200.0) }
        );
        for r in results.iter().filter(|r| r.size == 100 * MIB) {
            println!(
                "| paper: 3 s to fragment, 2 s to rebuild 100 MB | EC ({},{}) | {:.3} s seal, {:.3} s open, {} degraded open (per 100 MB) | {} |",
                r.k,
                r.n,
                per100(r, r.seal_s),
                per100(r, r.open_warm_s),
                opt(r.open_degraded_s.map(|d| format!("{:.3} s", per100(r, d)))),
                yes(per100(r, r.seal_s) < 3.0
                    && per100(r, r.open_degraded_s.unwrap_or(r.open_warm_s)) < 2.0)
            );
        }
    }
    if !groups.is_empty() {
        println!();
        println!("## Group commit (1 KiB files, EC (3,5))");
        println!();
        println!(
            "One `put_many` (group commit: one durability barrier per group of up to {GROUP} files) \
             against one durable `put` per file. Best of the repetitions."
        );
        println!();
        println!(
            "| files | how | reps | seconds | files/s | commit groups | ms per group | disk flushes (device-wide) | flushes/file | peak RSS MiB |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for g in groups {
            let barriers = if g.mode == "many" {
                g.files.div_ceil(GROUP)
            } else {
                g.files
            };
            println!(
                "| {} | {} | {} | {:.2} | {:.0} | {} | {:.1} | {} | {} | {:.0} |",
                g.files,
                if g.mode == "many" {
                    "one put_many"
                } else {
                    "one put each"
                },
                g.all_s.len(),
                g.secs,
                g.files as f64 / g.secs,
                barriers,
                g.secs * 1e3 / barriers as f64,
                opt(g.flushes.map(|f| f.to_string())),
                opt(g
                    .flushes
                    .map(|f| format!("{:.1}", f as f64 / g.files as f64))),
                g.rss_mib
            );
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
