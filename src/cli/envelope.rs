//! `qsfs envelope seal|open|inspect`: one object by hand, in the spirit of
//! gocryptfs-xray, for recovery and interoperability tests. Hex arguments
//! are as in the conformance vectors (`tests/vectors/envelope/vectors.json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::envelope::{self, Backup, LocalShares, SealKeys, Share};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum EnvelopeCommand {
    /// Seal a file with given keys and shares (deterministic).
    Seal(SealArgs),
    /// Open a sealed object with R1 and R2, or one of them plus B.
    Open(OpenArgs),
    /// Show an object's layout (and with shares, where R3 and KR sit).
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct SealArgs {
    /// Plaintext file.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// K, 64 hex digits (visible to every user in /proc: prefer --keys-file).
    #[arg(long)]
    k: Option<String>,
    /// R, 64 hex digits (visible to every user in /proc: prefer --keys-file).
    #[arg(long)]
    r: Option<String>,
    /// R1,R2,R3,R4, each 66 hex digits (x then y).
    #[arg(long, value_delimiter = ',', value_name = "HEX,HEX,HEX,HEX")]
    shares: Vec<String>,
    /// Read the keys from FILE (`-`: stdin), one `name = hex` a line:
    /// `k`, `r`, `shares` (comma-separated) for seal; `r1`, `r2` for open.
    #[arg(long, value_name = "FILE")]
    keys_file: Option<PathBuf>,
    /// Where to write the sealed object N.
    #[arg(long, value_name = "FILE")]
    object_out: PathBuf,
    /// Where to write the backup record B (105 raw bytes).
    #[arg(long, value_name = "FILE")]
    backup_out: PathBuf,
}

/// The local shares, as given on the command line.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// R1, 66 hex digits.
    #[arg(long)]
    r1: Option<String>,
    /// R2, 66 hex digits.
    #[arg(long)]
    r2: Option<String>,
    /// Read the shares from FILE (`-`: stdin), lines `r1 = hex`, `r2 = hex`,
    /// instead of the command line, where every user can read them.
    #[arg(long, value_name = "FILE")]
    keys_file: Option<PathBuf>,
}

impl ShareArgs {
    fn parse(&self) -> Result<LocalShares> {
        let file = KeysFile::load(self.keys_file.as_deref())?;
        warn_argv(&[("r1", self.r1.is_some()), ("r2", self.r2.is_some())]);
        let r1 = file.pick("r1", self.r1.as_deref())?;
        let r2 = file.pick("r2", self.r2.as_deref())?;
        Ok(LocalShares {
            r1: r1.as_deref().map(|s| share("r1", s)).transpose()?,
            r2: r2.as_deref().map(|s| share("r2", s)).transpose()?,
        })
    }
}

/// Key material read from `--keys-file`: `name = hex` lines, `#` comments.
/// Values are wiped from memory when dropped.
#[derive(Default)]
struct KeysFile(BTreeMap<String, Zeroizing<String>>);

impl KeysFile {
    fn load(path: Option<&Path>) -> Result<KeysFile> {
        let Some(path) = path else {
            return Ok(KeysFile::default());
        };
        let mut text = Zeroizing::new(String::new());
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("--keys-file -: cannot read the keys from stdin")?;
        } else {
            File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .with_context(|| format!("--keys-file: cannot read {}", path.display()))?;
        }
        let mut keys = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                bail!(
                    "--keys-file {} line {}: expected `name = hex`",
                    path.display(),
                    i + 1
                );
            };
            keys.insert(
                name.trim().to_ascii_lowercase(),
                Zeroizing::new(value.trim().to_string()),
            );
        }
        Ok(KeysFile(keys))
    }

    /// The value of `name` from the command line or the file (not both).
    fn pick(&self, name: &str, argv: Option<&str>) -> Result<Option<Zeroizing<String>>> {
        match (argv, self.0.get(name)) {
            (Some(_), Some(_)) => {
                bail!("--{name} is given both on the command line and in --keys-file; give it once")
            }
            (Some(v), None) => Ok(Some(Zeroizing::new(v.to_string()))),
            (None, Some(v)) => Ok(Some(v.clone())),
            (None, None) => Ok(None),
        }
    }
}

/// Warns that keys given as arguments are readable by every local user
/// (in `/proc/PID/cmdline`, `ps`) for as long as the command runs.
fn warn_argv(given: &[(&str, bool)]) {
    let on_argv: Vec<String> = given
        .iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| format!("--{n}"))
        .collect();
    if !on_argv.is_empty() {
        eprintln!(
            "qsfs: warning: {} on the command line can be read by every user on this machine \
             (/proc/PID/cmdline); use --keys-file FILE or --keys-file - (stdin) instead",
            on_argv.join(", ")
        );
    }
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// Sealed object N.
    #[arg(long, value_name = "FILE")]
    object: PathBuf,
    #[command(flatten)]
    shares: ShareArgs,
    /// Backup record B, 210 hex digits.
    #[arg(long, conflicts_with = "backup_file")]
    backup: Option<String>,
    /// Backup record B as a 105-byte file.
    #[arg(long, value_name = "FILE")]
    backup_file: Option<PathBuf>,
    /// Where to write the plaintext (`-` for stdout); written only after
    /// the whole object verified.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Sealed object N.
    #[arg(long, value_name = "FILE")]
    object: PathBuf,
    #[command(flatten)]
    shares: ShareArgs,
}

pub fn run(c: EnvelopeCommand) -> Result<i32> {
    match c {
        EnvelopeCommand::Seal(a) => seal(a),
        EnvelopeCommand::Open(a) => open(a),
        EnvelopeCommand::Inspect(a) => inspect(a),
    }
}

fn hex32(name: &str, s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .with_context(|| format!("--{name}: expected 64 hex digits"))?;
    Ok(out)
}

fn share(name: &str, s: &str) -> Result<Share> {
    Share::from_hex(s.trim())
        .with_context(|| format!("--{name}: expected a 33-byte share as 66 hex digits"))
}

fn seal(a: SealArgs) -> Result<i32> {
    let file = KeysFile::load(a.keys_file.as_deref())?;
    warn_argv(&[
        ("k", a.k.is_some()),
        ("r", a.r.is_some()),
        ("shares", !a.shares.is_empty()),
    ]);
    let k = file
        .pick("k", a.k.as_deref())?
        .context("give K with --keys-file (line `k = hex`) or --k")?;
    let r = file
        .pick("r", a.r.as_deref())?
        .context("give R with --keys-file (line `r = hex`) or --r")?;
    let listed = (!a.shares.is_empty()).then(|| a.shares.join(","));
    let shares = file
        .pick("shares", listed.as_deref())?
        .context("give the shares with --keys-file (line `shares = R1,R2,R3,R4`) or --shares")?;
    let shares: Vec<Share> = shares
        .split(',')
        .enumerate()
        .map(|(i, s)| share(&format!("shares (R{})", i + 1), s))
        .collect::<Result<_>>()?;
    let shares: [Share; 4] = shares
        .try_into()
        .map_err(|_| anyhow::anyhow!("--shares needs exactly four shares"))?;
    let keys = SealKeys::new(hex32("k", &k)?, hex32("r", &r)?, shares)?;
    let input =
        File::open(&a.input).with_context(|| format!("cannot open {}", a.input.display()))?;
    let len = input
        .metadata()
        .with_context(|| format!("cannot stat {}", a.input.display()))?
        .len();
    let mut tmp = temp_beside(&a.object_out)?;
    let sealed = {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        let s = envelope::seal_stream(&keys, len, input, &mut out, threads())
            .with_context(|| format!("cannot seal {}", a.input.display()))?;
        out.flush()
            .with_context(|| format!("cannot write {}", a.object_out.display()))?;
        s
    };
    tmp.persist(&a.object_out)
        .with_context(|| format!("cannot write {}", a.object_out.display()))?;
    std::fs::write(&a.backup_out, sealed.backup.to_bytes())
        .with_context(|| format!("cannot write {}", a.backup_out.display()))?;
    let g = &sealed.geometry;
    eprintln!(
        "sealed {} bytes into {} bytes (segments {}, n1 {}, n2 {})",
        g.plain_len(),
        g.len_n(),
        g.segments(),
        g.n1(),
        g.n2()
    );
    Ok(0)
}

fn open(a: OpenArgs) -> Result<i32> {
    let local = a.shares.parse()?;
    let backup = match (&a.backup, &a.backup_file) {
        (Some(h), _) => {
            let bytes =
                hex::decode(h.trim()).context("--backup: the backup record B is not valid hex")?;
            Some(Backup::parse(&bytes).context("--backup: the backup record B is malformed")?)
        }
        (None, Some(f)) => {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            Some(
                Backup::parse(&bytes).with_context(|| {
                    format!("{}: the backup record B is malformed", f.display())
                })?,
            )
        }
        (None, None) => None,
    };
    // One descriptor (or, for a pipe, one read into memory) for both the
    // check of M and the decryption: reopening the path could decrypt
    // other bytes than the ones that verified.
    let mut obj =
        File::open(&a.object).with_context(|| format!("cannot open {}", a.object.display()))?;
    let meta = obj
        .metadata()
        .with_context(|| format!("cannot stat {}", a.object.display()))?;
    let mem = if meta.is_file() {
        None
    } else {
        let mut v = Vec::new();
        obj.read_to_end(&mut v)
            .with_context(|| format!("cannot read {}", a.object.display()))?;
        Some(v)
    };
    let len = mem.as_ref().map_or(meta.len(), |v| v.len() as u64);
    let what = a.object.display().to_string();
    let rec = match &mem {
        Some(v) => envelope::recover_keys(&mut v.as_slice(), len, &local, backup.as_ref()),
        None => envelope::recover_keys(&mut &obj, len, &local, backup.as_ref()),
    }
    .with_context(|| format!("cannot open {what}"))?;
    let bad = rec.bad_shares();
    if bad.r1 {
        eprintln!(
            "qsfs: warning: R1 is corrupt (fails M14 of the backup record); opened with R2 and B"
        );
    }
    if bad.r2 {
        eprintln!(
            "qsfs: warning: R2 is corrupt (fails M24 of the backup record); opened with R1 and B"
        );
    }
    if bad.backup {
        eprintln!(
            "qsfs: warning: the backup record B verifies with neither share; opened with R1 and R2"
        );
    }
    // Authenticate the whole object (M) before a single byte is written.
    let src: Box<dyn Read + Send + '_> = match &mem {
        Some(v) => {
            envelope::verify_stream(v.as_slice(), &rec)
                .with_context(|| format!("cannot open {what}"))?;
            Box::new(v.as_slice())
        }
        None => {
            (&obj)
                .seek(SeekFrom::Start(0))
                .with_context(|| format!("cannot read {what}"))?;
            envelope::verify_stream(std::io::BufReader::new(&obj), &rec)
                .with_context(|| format!("cannot open {what}"))?;
            (&obj)
                .seek(SeekFrom::Start(0))
                .with_context(|| format!("cannot read {what}"))?;
            Box::new(std::io::BufReader::with_capacity(1 << 20, &obj))
        }
    };
    // A FIFO or device (e.g. /dev/null) is written in place, never replaced.
    let special = std::fs::metadata(&a.out).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if a.out.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        envelope::open_stream(src, &rec, &mut out, threads())
            .with_context(|| format!("cannot open {what}"))?;
        out.flush()?;
    } else if special {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(&a.out)
            .with_context(|| format!("cannot open {}", a.out.display()))?;
        envelope::open_stream(src, &rec, &mut out, threads())
            .with_context(|| format!("cannot open {what}"))?;
    } else {
        let mut tmp = temp_beside(&a.out)?;
        {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            envelope::open_stream(src, &rec, &mut out, threads())
                .with_context(|| format!("cannot open {what}"))?;
            out.flush()
                .with_context(|| format!("cannot write {}", a.out.display()))?;
        }
        tmp.persist(&a.out)
            .with_context(|| format!("cannot write {}", a.out.display()))?;
    }
    Ok(0)
}

fn inspect(a: InspectArgs) -> Result<i32> {
    let obj =
        File::open(&a.object).with_context(|| format!("cannot open {}", a.object.display()))?;
    let len = obj.metadata()?.len();
    let plain = envelope::Geometry::plain_len_of_sealed(len)
        .with_context(|| format!("{}", a.object.display()))?;
    println!("object      {}", a.object.display());
    println!("length      {len} bytes (N)");
    println!(
        "plaintext   {plain} bytes in {} segments",
        envelope::segment_count(plain)
    );
    let local = a.shares.parse()?;
    if local.r1.is_some() && local.r2.is_some() {
        let rec = envelope::recover_keys(&mut &obj, len, &local, None)?;
        let g = rec.geometry();
        println!("n1          {} (KR in E')", g.n1());
        println!("n2          {} (R3 in E'')", g.n2());
        match envelope::verify_stream(std::io::BufReader::new(&obj), &rec) {
            Ok(()) => println!("integrity   M verifies"),
            Err(e) => {
                println!("integrity   FAILED: {e}");
                return Ok(1);
            }
        }
    } else if local.r1.is_some() || local.r2.is_some() {
        bail!("give both --r1 and --r2 to locate R3 and KR");
    }
    Ok(0)
}

fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".qsfs-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(2)
}
