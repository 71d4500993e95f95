//! qsfs-fsx: a random-operation exerciser for one file, in the spirit of
//! fsx (written here from its idea, not its code).
//!
//! It applies random writes, reads, truncates up and down, fallocate modes
//! (allocate, keep size, punch hole, zero range), writes and reads through
//! a shared mmap with msync, close and reopen (sometimes with O_TRUNC),
//! fsync, dropping the file's cached pages and, with `--remount CMD`,
//! remounts, to one file, and checks every read against an in-memory model
//! of the file's bytes. On a mismatch it prints where, the bytes expected
//! and found, and the operations that led there, writes the whole history
//! next to the file (`FILE.fsxlog`), and exits 1. The same `--seed`
//! replays the same operations.
//!
//! ```text
//! qsfs-fsx FILE [--seed N] [--ops N] [--max-size BYTES] [--max-op BYTES]
//!               [--remount CMD] [--remount-every N] [--close-every N]
//!               [--no-mmap] [--no-fallocate] [--quiet]
//! ```

mod sys;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A small deterministic generator (splitmix64): the same seed gives the
/// same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        one_in > 0 && self.below(one_in) == 0
    }
}

struct Config {
    path: PathBuf,
    seed: u64,
    ops: u64,
    max_size: u64,
    max_op: u64,
    remount: Option<String>,
    remount_every: u64,
    close_every: u64,
    mmap: bool,
    fallocate: bool,
    quiet: bool,
}

const USAGE: &str = "usage: qsfs-fsx FILE [--seed N] [--ops N] [--max-size BYTES] [--max-op BYTES] \
[--remount CMD] [--remount-every N] [--close-every N] [--no-mmap] [--no-fallocate] [--quiet]";

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let mut c = Config {
        path: PathBuf::new(),
        seed: 1,
        ops: 10_000,
        max_size: 256 * 1024,
        max_op: 64 * 1024,
        remount: None,
        remount_every: 2000,
        close_every: 20,
        mmap: true,
        fallocate: true,
        quiet: false,
    };
    let mut path = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: '{v}' is not a whole number"))
        };
        match a.as_str() {
            "--seed" => c.seed = num("--seed")?,
            "--ops" => c.ops = num("--ops")?,
            "--max-size" => c.max_size = num("--max-size")?.max(1),
            "--max-op" => c.max_op = num("--max-op")?.max(1),
            "--remount-every" => c.remount_every = num("--remount-every")?,
            "--close-every" => c.close_every = num("--close-every")?,
            "--remount" => {
                c.remount = Some(args.next().ok_or("--remount needs a command")?);
            }
            "--no-mmap" => c.mmap = false,
            "--no-fallocate" => c.fallocate = false,
            "--quiet" => c.quiet = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => path = Some(PathBuf::from(s)),
        }
    }
    c.path = path.ok_or(USAGE)?;
    Ok(c)
}

/// One operation, as logged.
#[derive(Debug, Clone)]
enum Op {
    Read(u64, u64),
    Write(u64, u64),
    Truncate(u64),
    Fallocate(&'static str, u64, u64),
    MapWrite(u64, u64, bool),
    MapRead(u64, u64),
    Reopen { trunc: bool },
    Fsync,
    DropCache,
    Remount,
    Check,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read(o, l) => write!(f, "read      {o:#x} len {l:#x}"),
            Op::Write(o, l) => write!(f, "write     {o:#x} len {l:#x}"),
            Op::Truncate(s) => write!(f, "truncate  to {s:#x}"),
            Op::Fallocate(m, o, l) => write!(f, "fallocate {m} {o:#x} len {l:#x}"),
            Op::MapWrite(o, l, sync) => write!(
                f,
                "mapwrite  {o:#x} len {l:#x} msync({})",
                if *sync { "MS_SYNC" } else { "MS_ASYNC" }
            ),
            Op::MapRead(o, l) => write!(f, "mapread   {o:#x} len {l:#x}"),
            Op::Reopen { trunc } => write!(f, "reopen{}", if *trunc { " O_TRUNC" } else { "" }),
            Op::Fsync => write!(f, "fsync"),
            Op::DropCache => write!(f, "drop cached pages"),
            Op::Remount => write!(f, "remount"),
            Op::Check => write!(f, "check whole file"),
        }
    }
}

struct Run {
    c: Config,
    rng: Rng,
    file: Option<File>,
    model: Vec<u8>,
    history: Vec<(u64, Op, u64)>,
}

/// What went wrong.
enum Failure {
    Mismatch {
        op: u64,
        offset: u64,
        expected: Vec<u8>,
        got: Vec<u8>,
        what: &'static str,
    },
    Io(String),
}

impl Run {
    fn file(&self) -> Result<&File, Failure> {
        self.file
            .as_ref()
            .ok_or_else(|| Failure::Io("the file is not open".into()))
    }

    fn open(&mut self, trunc: bool) -> Result<(), Failure> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(trunc)
            .open(&self.c.path)
            .map_err(|e| Failure::Io(format!("open {}: {e}", self.c.path.display())))?;
        if trunc {
            self.model.clear();
        }
        self.file = Some(f);
        Ok(())
    }

    fn io<T>(&self, what: &str, r: std::io::Result<T>) -> Result<T, Failure> {
        r.map_err(|e| Failure::Io(format!("{what}: {e}")))
    }

    /// Bytes for a write: a pattern of the op number and the offset, so
    /// stale bytes are told apart from fresh ones.
    fn pattern(op: u64, offset: u64, len: u64) -> Vec<u8> {
        (0..len)
            .map(|i| {
                let x = (offset + i)
                    .wrapping_mul(31)
                    .wrapping_add(op.wrapping_mul(7));
                (x % 251) as u8 + 1
            })
            .collect()
    }

    fn compare(&self, op: u64, offset: u64, got: &[u8], what: &'static str) -> Result<(), Failure> {
        let end = (offset as usize + got.len()).min(self.model.len());
        let expected = if (offset as usize) < end {
            &self.model[offset as usize..end]
        } else {
            &[][..]
        };
        if got != expected {
            return Err(Failure::Mismatch {
                op,
                offset,
                expected: expected.to_vec(),
                got: got.to_vec(),
                what,
            });
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.model.len() as u64
    }

    fn pick_range(&mut self, past_end: bool) -> (u64, u64) {
        let limit = if past_end {
            self.c.max_size
        } else {
            self.size().max(1)
        };
        let offset = self.rng.below(limit);
        let len = 1 + self.rng.below(self.c.max_op);
        let len = len.min(self.c.max_size.saturating_sub(offset)).max(1);
        (offset, len)
    }

    fn step(&mut self, n: u64) -> Result<Op, Failure> {
        if self.c.close_every > 0 && self.rng.chance(self.c.close_every) {
            let trunc = self.rng.chance(10);
            self.file = None;
            self.open(trunc)?;
            return Ok(Op::Reopen { trunc });
        }
        if self.c.remount.is_some()
            && self.c.remount_every > 0
            && self.rng.chance(self.c.remount_every)
        {
            self.remount()?;
            return Ok(Op::Remount);
        }
        let pick = self.rng.below(100);
        let op = match pick {
            0..=24 => {
                let (o, l) = self.pick_range(false);
                let mut buf = vec![0u8; l as usize];
                let got = self.io("pread", read_at(self.file()?, &mut buf, o))?;
                buf.truncate(got);
                self.compare(n, o, &buf, "read")?;
                Op::Read(o, l)
            }
            25..=54 => {
                let append = self.rng.chance(4);
                let (mut o, l) = self.pick_range(true);
                if append {
                    o = self.size();
                }
                let l = l.min(self.c.max_size.saturating_sub(o));
                if l == 0 {
                    return Ok(Op::Check);
                }
                let data = Self::pattern(n, o, l);
                self.io("pwrite", self.file()?.write_all_at(&data, o))?;
                let end = (o + l) as usize;
                if self.model.len() < end {
                    self.model.resize(end, 0);
                }
                self.model[o as usize..end].copy_from_slice(&data);
                Op::Write(o, l)
            }
            55..=64 => {
                let s = if self.rng.chance(2) {
                    self.rng.below(self.size() + 1)
                } else {
                    self.rng.below(self.c.max_size + 1)
                };
                self.io("ftruncate", self.file()?.set_len(s))?;
                self.model.resize(s as usize, 0);
                Op::Truncate(s)
            }
            65..=74 if self.c.fallocate => {
                let past_end = self.rng.chance(2);
                let (o, l) = self.pick_range(past_end);
                let modes: [(&'static str, i32); 5] = [
                    ("alloc", 0),
                    ("keep-size", libc::FALLOC_FL_KEEP_SIZE),
                    (
                        "punch-hole",
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    ),
                    ("zero-range", libc::FALLOC_FL_ZERO_RANGE),
                    (
                        "zero-range-keep",
                        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                    ),
                ];
                let (name, mode) = modes[self.rng.below(modes.len() as u64) as usize];
                self.io(
                    &format!("fallocate {name}"),
                    sys::fallocate(self.file()?, mode, o, l),
                )?;
                let end = (o + l) as usize;
                let size = self.model.len();
                if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0
                    && (o as usize) < size
                {
                    self.model[o as usize..end.min(size)].fill(0);
                }
                if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > size {
                    self.model.resize(end, 0);
                }
                Op::Fallocate(name, o, l)
            }
            75..=82 if self.c.mmap => {
                // Within the file's size, as a mapping must be.
                if self.size() == 0 {
                    return Ok(Op::Check);
                }
                let (o, l) = self.pick_range(false);
                let l = l.min(self.size() - o);
                let data = Self::pattern(n, o, l);
                // msync(MS_SYNC) is an fsync of the range; MS_ASYNC leaves
                // the pages for writeback (at the latest at close).
                let sync = self.rng.chance(3);
                self.io("mmap write", sys::map_write(self.file()?, o, &data, sync))?;
                self.model[o as usize..(o + l) as usize].copy_from_slice(&data);
                Op::MapWrite(o, l, sync)
            }
            83..=88 if self.c.mmap => {
                if self.size() == 0 {
                    return Ok(Op::Check);
                }
                let (o, l) = self.pick_range(false);
                let l = l.min(self.size() - o);
                let got = self.io("mmap read", sys::map_read(self.file()?, o, l as usize))?;
                self.compare(n, o, &got, "mapread")?;
                Op::MapRead(o, l)
            }
            89 => {
                self.io("fsync", self.file()?.sync_all())?;
                Op::Fsync
            }
            90..=95 => {
                self.io("posix_fadvise", sys::drop_cache(self.file()?))?;
                Op::DropCache
            }
            _ => {
                self.check_all(n)?;
                Op::Check
            }
        };
        Ok(op)
    }

    fn check_all(&mut self, n: u64) -> Result<(), Failure> {
        let f = self.file()?;
        let len = self.io("fstat", f.metadata())?.len();
        if len != self.size() {
            return Err(Failure::Io(format!(
                "op {n}: the file is {len} bytes, the model {} (size mismatch)",
                self.size()
            )));
        }
        let mut buf = vec![0u8; len as usize];
        let got = self.io("pread", read_at(f, &mut buf, 0))?;
        buf.truncate(got);
        self.compare(n, 0, &buf, "whole-file read")
    }

    fn remount(&mut self) -> Result<(), Failure> {
        self.file = None;
        let cmd = self.c.remount.clone().unwrap_or_default();
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .map_err(|e| Failure::Io(format!("remount command '{cmd}': {e}")))?;
        if !st.success() {
            return Err(Failure::Io(format!("remount command '{cmd}' failed: {st}")));
        }
        self.open(false)
    }
}

/// pread until `buf` is full or EOF; the bytes read.
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(run: &Run, failure: &Failure, log: &Path) {
    let seed = run.c.seed;
    match failure {
        Failure::Mismatch {
            op,
            offset,
            expected,
            got,
            what,
        } => {
            eprintln!("qsfs-fsx: BAD DATA at op {op} ({what} at {offset:#x}), seed {seed}");
            if got.len() != expected.len() {
                eprintln!(
                    "  read returned {} bytes, the model has {} there",
                    got.len(),
                    expected.len()
                );
            }
            if let Some(i) = got.iter().zip(expected.iter()).position(|(a, b)| a != b) {
                let bad = got
                    .iter()
                    .zip(expected.iter())
                    .filter(|(a, b)| a != b)
                    .count();
                let end = (i + 16).min(got.len()).min(expected.len());
                eprintln!(
                    "  first bad byte at file offset {:#x}; {bad} bytes differ",
                    *offset as usize + i
                );
                eprintln!("  expected: {}", hex(&expected[i..end]));
                eprintln!("  got:      {}", hex(&got[i..end]));
            }
        }
        Failure::Io(e) => eprintln!("qsfs-fsx: {e} (seed {seed})"),
    }
    eprintln!("  last operations (op number: operation, file size after):");
    let from = run.history.len().saturating_sub(40);
    for (n, op, size) in &run.history[from..] {
        eprintln!("    {n:6}: {op}  -> {size:#x}");
    }
    let mut text = String::new();
    for (n, op, size) in &run.history {
        text.push_str(&format!("{n:6}: {op}  -> {size:#x}\n"));
    }
    match std::fs::File::create(log).and_then(|mut f| f.write_all(text.as_bytes())) {
        Ok(()) => eprintln!(
            "  the whole history is in {}; replay with --seed {seed}",
            log.display()
        ),
        Err(e) => eprintln!("  cannot write the history to {}: {e}", log.display()),
    }
}

fn main() -> ExitCode {
    let c = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let log = PathBuf::from(format!("{}.fsxlog", c.path.display()));
    let mut run = Run {
        rng: Rng(c.seed),
        c,
        file: None,
        model: Vec::new(),
        history: Vec::new(),
    };
    let result = (|| {
        run.open(true)?;
        for n in 1..=run.c.ops {
            let op = run.step(n)?;
            let size = run.size();
            run.history.push((n, op, size));
        }
        run.check_all(run.c.ops + 1)?;
        run.history.push((run.c.ops + 1, Op::Check, run.size()));
        // Once more after closing and dropping the cache: what a later
        // reader sees.
        run.file = None;
        run.open(false)?;
        run.io("posix_fadvise", sys::drop_cache(run.file()?))?;
        run.check_all(run.c.ops + 2)
    })();
    match result {
        Ok(()) => {
            if !run.c.quiet {
                println!(
                    "qsfs-fsx: {} operations on {} passed (seed {}, final size {})",
                    run.c.ops,
                    run.c.path.display(),
                    run.c.seed,
                    run.size()
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            report(&run, &f, &log);
            ExitCode::from(1)
        }
    }
}
