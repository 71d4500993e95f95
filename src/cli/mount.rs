//! `qsfs mount` and `qsfs umount`.
//!
//! Without `--foreground`, `mount` starts itself again as a daemon (new
//! session, no terminal) and returns once that process reports the mount
//! live, or prints why it failed. Logs go to `VAULT/qsfs.log`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::fs::mount;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Vault folder.
    vault: PathBuf,
    /// Where to mount it (an existing folder).
    mountpoint: PathBuf,
    /// Stay in the foreground (logs also go to stderr).
    #[arg(short, long)]
    foreground: bool,
    /// Mount options, comma-separated: allow_other, ro, noatime, ...
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// FUSE worker threads (a seal on close occupies one while it runs).
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Log level for VAULT/qsfs.log (error, warn, info, debug, trace);
    /// RUST_LOG overrides.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Internal: run as the daemon of a background mount.
    #[arg(long, hide = true)]
    daemon: bool,
    /// Internal: read the unwrapped vault key (hex) from stdin; the
    /// parent unlocked it, asking on the terminal if need be.
    #[arg(long, hide = true)]
    vault_key_stdin: bool,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mount point.
    mountpoint: PathBuf,
    /// Seconds to wait for pending seals to finish.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Logs to VAULT/qsfs.log, and warnings also to stderr in the foreground.
fn init_logging(vault: &Path, level: &str, to_stderr: bool) -> Result<PathBuf> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let path = vault.join("qsfs.log");
    // One old log is kept: a log past this size is renamed qsfs.log.1
    // (replacing the one before) when a mount starts.
    const ROTATE_AT: u64 = 64 << 20;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let old = vault.join("qsfs.log.1");
        std::fs::rename(&path, &old).with_context(|| {
            format!(
                "cannot rotate the log file {} to {}",
                path.display(),
                old.display()
            )
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    // fuser warns when the kernel side was already unmounted by umount(8);
    // that is the normal way to stop, not a problem.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sled=info,fuser=error")));
    let file_layer = fmt::layer()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_filter(filter);
    let stderr_layer = to_stderr.then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .with_filter(tracing_subscriber::filter::LevelFilter::WARN)
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    Ok(path)
}

pub fn mount(ctx: &super::Ctx, args: MountArgs) -> Result<i32> {
    let settings = mount::parse_options(&args.options, args.threads)?;
    if !args.foreground && !args.daemon {
        return spawn_daemon(ctx, &args);
    }
    let unlock = if args.vault_key_stdin {
        read_key_from_stdin()?
    } else {
        ctx.unlock()?
    };
    // Fail fast, with the message on the terminal, before any logging.
    mount::check_mountpoint(&args.mountpoint)?;
    if !args.vault.join("qsfs.toml").is_file() {
        // Let the vault open produce the precise error.
        crate::vault::Config::load(&args.vault)?;
    }
    if args.daemon {
        qsfs_sys::setsid();
    }
    // One arena per core keeps the mount's peak memory near what it holds
    // (see qsfs_sys::cap_malloc_arenas); the environment's
    // MALLOC_ARENA_MAX, if set, wins.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        qsfs_sys::cap_malloc_arenas(i32::try_from(cores.max(2)).unwrap_or(2));
    }
    init_logging(&args.vault, &args.log_level, args.foreground)?;
    let daemon = args.daemon;
    mount::serve(&args.vault, &args.mountpoint, &settings, &unlock, || {
        if daemon {
            // Tell the parent, then let go of its pipes.
            println!("ok");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let _ = qsfs_sys::detach_stdio();
        }
    })?;
    Ok(0)
}

/// The vault key the parent of a background mount unlocked.
fn read_key_from_stdin() -> Result<crate::unlock::Unlock> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the vault key from the parent process")?;
    let bytes = zeroize::Zeroizing::new(
        hex::decode(line.trim()).context("the parent process sent no vault key")?,
    );
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the parent process sent a vault key of the wrong length"))?;
    Ok(crate::unlock::Unlock::Key(
        crate::unlock::VaultKey::from_bytes(arr),
    ))
}

/// Starts `qsfs mount --daemon ...` and waits for it to say the mount is
/// live (or why it is not).
fn spawn_daemon(ctx: &super::Ctx, args: &MountArgs) -> Result<i32> {
    // Unlocked here, where the terminal is: the daemon has none. A vault
    // that cannot even be read is left to the daemon to explain.
    let key = match crate::vault::Config::load(&args.vault) {
        Ok(cfg) => crate::unlock::open(&args.vault, &cfg.vault_id, &ctx.unlock()?)?,
        Err(_) => None,
    };
    let exe = std::env::current_exe().context("cannot find the qsfs executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg("--daemon")
        .arg(&args.vault)
        .arg(&args.mountpoint);
    for o in &args.options {
        cmd.arg("-o").arg(o);
    }
    cmd.arg("--threads")
        .arg(args.threads.to_string())
        .arg("--log-level")
        .arg(&args.log_level);
    if key.is_some() {
        cmd.arg("--vault-key-stdin");
    }
    cmd.stdin(if key.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start the qsfs mount process")?;
    if let (Some(k), Some(mut pipe)) = (&key, child.stdin.take()) {
        let line = zeroize::Zeroizing::new(format!("{}\n", hex::encode(k.bytes())));
        std::io::Write::write_all(&mut pipe, line.as_bytes())
            .context("cannot hand the vault key to the mount process")?;
    }
    let stdout = child
        .stdout
        .take()
        .context("no pipe from the mount process")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("cannot read from the mount process")?;
    if line.trim() == "ok" {
        println!(
            "mounted {} at {} (qsfs pid {}; log: {})",
            args.vault.display(),
            args.mountpoint.display(),
            child.id(),
            args.vault.join("qsfs.log").display()
        );
        return Ok(0);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = child.wait();
    let err = err.trim();
    if err.is_empty() {
        bail!(
            "the qsfs mount process ended without mounting; see {}",
            args.vault.join("qsfs.log").display()
        );
    }
    // The child already printed "qsfs: error: ..." lines.
    eprintln!("{err}");
    Ok(1)
}

pub fn umount(args: UmountArgs) -> Result<i32> {
    match mount::unmount(&args.mountpoint, Duration::from_secs(args.timeout))? {
        mount::Unmounted::Dead => {
            println!(
                "cleared the dead mount at {} (its qsfs process had ended); what it had not sealed yet is sealed at the next mount",
                args.mountpoint.display()
            );
            Ok(0)
        }
        mount::Unmounted::Live { staged_left: 0 } => Ok(0),
        // Unmounted, but not every seal finished: a script that goes on
        // to copy or retire the vault must know (exit 3).
        mount::Unmounted::Live { staged_left } => {
            eprintln!(
                "qsfs: unmounted {}, but {staged_left} file(s) could not be sealed (too few nodes reachable; the vault's qsfs.log says which); their data is safe in the vault's staging folder and the next mount seals it. Check the nodes with `qsfs node list VAULT`",
                args.mountpoint.display()
            );
            Ok(3)
        }
    }
}
