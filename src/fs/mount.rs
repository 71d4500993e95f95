//! Mounting and unmounting: options, checks with clear errors, the session
//! loop with signal handling, and finding the process behind a mount.
//!
//! A mount shows up in /proc/self/mountinfo with the vault folder as its
//! source, as type `fuse.qsfs` when mounted through fusermount3 and plain
//! `fuse` when root mounts directly (fuser then drops the subtype); a qsfs
//! mount is recognised by its source being a vault. The vault's lock file
//! names the process serving it, which `qsfs umount` waits for so that
//! every pending seal is finished when it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};
use thiserror::Error;

use super::Qsfs;
use crate::vault::{OpenOptions, Vault, VaultError};

/// Mounting or unmounting failed.
#[derive(Debug, Error)]
pub enum MountError {
    /// The mount point is not usable.
    #[error("mount point {path}: {why}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The mount point (or a folder above it) is a FUSE mount whose
    /// process has ended.
    #[error("{}", .mount.explain(.path))]
    Dead {
        /// The path given.
        path: PathBuf,
        /// The dead mount.
        mount: crate::sys::DeadMount,
    },
    /// A `-o` option qsfs does not know.
    #[error(
        "unknown mount option {0:?} (known: allow_other, allow_root, default_permissions, ro, rw, dev, nodev, suid, nosuid, exec, noexec, atime, noatime, sync, async, dirsync, auto_unmount)"
    )]
    Option(String),
    /// The vault could not be opened.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The kernel refused the mount or the session failed.
    #[error("FUSE mount of {path} failed: {source}")]
    Fuse {
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Unmounting failed.
    #[error("cannot unmount {path}: {why}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// What `-o` and the command line ask for.
#[derive(Debug, Clone, Default)]
pub struct MountSettings {
    /// Mount options for the kernel.
    pub options: Vec<MountOption>,
    /// Who may use the mount.
    pub acl: SessionACL,
    /// Read-only mount.
    pub read_only: bool,
    /// FUSE worker threads.
    pub threads: usize,
}

/// Parses `-o` option lists (comma-separated, possibly several).
pub fn parse_options(lists: &[String], threads: usize) -> Result<MountSettings, MountError> {
    let mut s = MountSettings {
        threads: threads.max(1),
        ..Default::default()
    };
    for opt in lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let o = match opt {
            "allow_other" => {
                s.acl = SessionACL::All;
                continue;
            }
            "allow_root" => {
                s.acl = SessionACL::RootAndOwner;
                continue;
            }
            // Always on: the kernel enforces permissions.
            "default_permissions" => continue,
            // mount(8)/fstab words that are not for the filesystem.
            "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "nofail" | "_netdev" => {
                continue;
            }
            o if o.starts_with("x-") || o.starts_with("comment=") => continue,
            "ro" => {
                s.read_only = true;
                MountOption::RO
            }
            "rw" => MountOption::RW,
            "dev" => MountOption::Dev,
            "nodev" => MountOption::NoDev,
            "suid" => MountOption::Suid,
            "nosuid" => MountOption::NoSuid,
            "exec" => MountOption::Exec,
            "noexec" => MountOption::NoExec,
            "atime" | "relatime" | "strictatime" => MountOption::Atime,
            "noatime" => MountOption::NoAtime,
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            "auto_unmount" => MountOption::AutoUnmount,
            other => return Err(MountError::Option(other.to_string())),
        };
        s.options.push(o);
    }
    Ok(s)
}

pub use crate::sys::{MountEntry, mounted_at};

/// True if `entry` is a qsfs mount: a FUSE mount whose source is a vault.
pub fn is_qsfs(entry: &MountEntry) -> bool {
    (entry.fstype == "fuse.qsfs" || entry.fstype == "fuse")
        && Path::new(&entry.source).join("qsfs.toml").is_file()
}

/// Checks that `mountpoint` can take a mount; returns it canonicalised.
pub fn check_mountpoint(mountpoint: &Path) -> Result<PathBuf, MountError> {
    let bad = |why: String| MountError::MountPoint {
        path: mountpoint.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(mountpoint).map_err(|e| {
        if crate::sys::is_dead_mount_error(&e)
            && let Some(mount) = crate::sys::dead_mount(mountpoint)
        {
            return MountError::Dead {
                path: mountpoint.to_path_buf(),
                mount,
            };
        }
        if e.kind() == std::io::ErrorKind::NotFound {
            bad("does not exist; create the folder first".into())
        } else {
            bad(format!("cannot be used: {e}"))
        }
    })?;
    if !meta.is_dir() {
        return Err(bad("is not a folder".into()));
    }
    let path = mountpoint
        .canonicalize()
        .map_err(|e| bad(format!("cannot be resolved: {e}")))?;
    if let Some(m) = mounted_at(&path) {
        return Err(bad(format!(
            "is busy: {} ({}) is already mounted there",
            m.source, m.fstype
        )));
    }
    Ok(path)
}

/// Opens the vault, mounts it at `mountpoint` and serves it until it is
/// unmounted (or SIGTERM/SIGINT/SIGHUP unmounts it); `ready` runs once the
/// mount is live. Pending seals are finished before this returns.
pub fn serve(
    vault_path: &Path,
    mountpoint: &Path,
    settings: &MountSettings,
    unlock: &crate::unlock::Unlock,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    let target = check_mountpoint(mountpoint)?;
    // A command talking to the control socket may go away in the middle
    // of an answer; the write must fail, not end the mount.
    crate::sys::ignore_sigpipe();
    let vault = Vault::open(
        vault_path,
        &OpenOptions {
            wait: Duration::from_secs(2),
            rebuild_r2: false,
            unlock: unlock.clone(),
        },
    )?;
    let source = vault.root().display().to_string();
    let vault = Arc::new(vault);
    // Commands run in this process while mounted, through the control
    // socket, which goes away with the mount: maintenance (scrub, audit,
    // drain ...) on the vault, and the file commands (ls, get, put, rm,
    // mkdir) on the filesystem's own state, once it exists (weak: the
    // socket must not keep it alive). `status` adds what the mount holds
    // unsealed.
    let core_slot: Arc<std::sync::OnceLock<std::sync::Weak<super::FsCore>>> = Arc::default();
    let core_for_socket = Arc::clone(&core_slot);
    let handler = move |v: &crate::vault::Vault,
                        op: &str,
                        args: serde_json::Value,
                        session: &crate::control::Session|
          -> Result<serde_json::Value, String> {
        let core = || core_for_socket.get().and_then(std::sync::Weak::upgrade);
        if super::live::OPS.contains(&op) {
            let core = core().ok_or_else(|| {
                "the mount is starting or stopping; try again in a moment".to_string()
            })?;
            return super::live::run(&core, op, args, session);
        }
        let progress = |p| session.progress(p);
        let mut reply = crate::maint::dispatch(v, op, args, &progress)?;
        if op == "status"
            && let Some(core) = core()
        {
            let s = core.staged_summary();
            let m = crate::maint::MountStatus {
                staged_files: s.files,
                staged_bytes: s.bytes,
                failing_files: s.failing,
            };
            reply["mount"] = serde_json::to_value(m).map_err(|e| e.to_string())?;
        }
        Ok(reply)
    };
    let _control = match crate::control::serve(Arc::clone(&vault), Arc::new(handler)) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "cannot open the control socket ({e}); scrub, audit and drain need the vault unmounted"
            );
            None
        }
    };
    let for_summaries = Arc::clone(&vault);
    // Every change from here on (the staged files recovery seals first)
    // reaches the nodes' journal once backups are started.
    vault.start_journal();
    let fs = Qsfs::new(vault, settings.read_only)?;
    let _ = core_slot.set(fs.core_weak());
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(source),
        MountOption::Subtype("qsfs".into()),
        MountOption::DefaultPermissions,
    ];
    config
        .mount_options
        .extend(settings.options.iter().cloned());
    config.acl = settings.acl;
    config.n_threads = Some(settings.threads);
    config.clone_fd = true;
    let notifier = fs.notifier_slot();
    let mut session = fuser::Session::new(fs, &target, &config).map_err(|e| MountError::Fuse {
        path: target.clone(),
        source: e,
    })?;
    let _ = notifier.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(mut signals) => {
            let t = target.clone();
            std::thread::Builder::new()
                .name("qsfs-signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        tracing::info!("signal {sig}: unmounting {}", t.display());
                        if let Err(e) = unmounter.unmount() {
                            tracing::error!("unmount of {} failed: {e}", t.display());
                        }
                    }
                })
                .map_err(|e| MountError::Fuse {
                    path: target.clone(),
                    source: e,
                })?;
        }
        Err(e) => tracing::warn!("cannot watch for signals ({e}); unmount with `qsfs umount`"),
    }
    spawn_meta_backups(Arc::downgrade(&for_summaries));
    tracing::info!("mounted at {}", target.display());
    ready();
    session.run().map_err(|e| MountError::Fuse {
        path: target.clone(),
        source: e,
    })?;
    // What the log's summaries of repeated warnings still hold.
    for_summaries.flush_warnings();
    // The vault as the mount leaves it, backed up to the nodes (once the
    // user started backups with `qsfs backup`).
    let backing_up = for_summaries.last_meta_backup().ok().flatten().is_some();
    match if backing_up {
        for_summaries.backup_metadata()
    } else {
        Ok(None)
    } {
        Ok(Some(b)) => tracing::info!(
            generation = b.generation,
            bytes = b.bytes,
            "metadata backed up to the nodes"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "the metadata could not be backed up to the nodes at unmount ({e}); the vault folder is fine, and the next mount or command backs it up"
        ),
    }
    match super::staged_left(&for_summaries.staging()) {
        0 => tracing::info!("unmounted {}; every seal is finished", target.display()),
        left => tracing::warn!(
            "unmounted {}; {left} file(s) stay staged in {} because their seal failed (see the errors above); the next mount seals them",
            target.display(),
            for_summaries.staging().display()
        ),
    }
    Ok(())
}

/// The process serving the qsfs mount at `target` (from its vault lock).
fn server_pid(entry: &MountEntry) -> Option<u32> {
    let text = std::fs::read_to_string(Path::new(&entry.source).join(".lock")).ok()?;
    text.strip_prefix("pid ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How an unmount went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// The mount was live; its process finished pending seals and exited.
    /// `staged_left` files stay staged because their seal failed (nodes
    /// unreachable): the next mount seals them.
    Live {
        /// Files left staged in the vault.
        staged_left: usize,
    },
    /// The mount was dead (its process had ended, killed or crashed): only
    /// the kernel's mount was cleared. What that process had staged but
    /// not sealed is sealed at the next mount of the vault.
    Dead,
}

/// Unmounts the qsfs mount at `mountpoint` and waits (up to `wait`) for
/// its process to finish pending seals and exit. A dead mount (its
/// process gone, every access failing with ENOTCONN) is cleared too.
pub fn unmount(mountpoint: &Path, wait: Duration) -> Result<Unmounted, MountError> {
    let bad = |why: String| MountError::Unmount {
        path: mountpoint.to_path_buf(),
        why,
    };
    let target = match mountpoint.canonicalize() {
        Ok(t) => t,
        // Below a dead mount nothing resolves (stat fails there).
        Err(e) if crate::sys::is_dead_mount_error(&e) => crate::sys::resolve_lenient(mountpoint),
        Err(e) => return Err(bad(format!("cannot be resolved: {e}"))),
    };
    let entry = mounted_at(&target).ok_or_else(|| bad("nothing is mounted there".into()))?;
    // Its process is gone when the kernel answers a stat with ENOTCONN.
    let dead = matches!(std::fs::symlink_metadata(&target),
        Err(e) if crate::sys::is_dead_mount_error(&e));
    if !is_qsfs(&entry) {
        return Err(bad(format!(
            "it is a {} mount of {}, not a qsfs vault",
            entry.fstype, entry.source
        )));
    }
    // A dead mount's lock names a process that is gone (its pid may even
    // be in use by another one by now): nothing to wait for.
    let pid = if dead { None } else { server_pid(&entry) };
    let root = crate::sys::umount(&target);
    if let Err(e) = root {
        // Not root: the setuid helper does it for the mount's owner.
        let out = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&target)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
                let why = if e.raw_os_error() == Some(libc::EBUSY) || msg.contains("busy") {
                    "it is busy: a process has a file or folder open there (close it, or `umount -l`)".to_string()
                } else {
                    format!("{e}; fusermount3: {msg}")
                };
                return Err(bad(why));
            }
            Err(_) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(bad(
                    "it is busy: a process has a file or folder open there".into()
                ));
            }
            Err(f) => return Err(bad(format!("{e}; and fusermount3 could not run: {f}"))),
        }
    }
    if let Some(pid) = pid {
        let start = Instant::now();
        while crate::sys::process_alive(pid) {
            if start.elapsed() > wait {
                return Err(bad(format!(
                    "unmounted, but qsfs (pid {pid}) is still finishing pending seals after {} s; it goes on in the background",
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(if dead {
        Unmounted::Dead
    } else {
        Unmounted::Live {
            staged_left: super::staged_left(&Path::new(&entry.source).join("staging")),
        }
    })
}

/// How often a mount backs up changed metadata to the nodes (a journal
/// entry, or a snapshot when one is due): recovery on a new machine is at
/// most this stale (and exact after an unmount).
pub const META_BACKUP_EVERY: Duration = Duration::from_secs(1);

/// A thread that writes the metadata journal every [`META_BACKUP_EVERY`]
/// while the stores change, once the vault has a snapshot (the first is
/// the user's `qsfs backup`: it adds an object and shards to every count;
/// then the mount's first tick writes a snapshot, and later ones journal
/// entries); it ends with the vault.
fn spawn_meta_backups(vault: std::sync::Weak<Vault>) {
    let spawned = std::thread::Builder::new()
        .name("qsfs-meta-backup".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(META_BACKUP_EVERY);
                let Some(v) = vault.upgrade() else { return };
                match v.journal_metadata() {
                    Ok(w) => {
                        if failing {
                            tracing::info!("metadata backups to the nodes work again");
                        }
                        failing = false;
                        match w {
                            Some(crate::vault::MetaWrite::Snapshot(b)) => tracing::debug!(
                                generation = b.generation,
                                bytes = b.bytes,
                                "metadata snapshot written"
                            ),
                            Some(crate::vault::MetaWrite::Entry { base, seq, bytes }) => {
                                tracing::debug!(base, seq, bytes, "metadata journal entry written");
                            }
                            None => {}
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "the metadata could not be backed up to the nodes ({e}); retried every {} s",
                                META_BACKUP_EVERY.as_secs()
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(
            "cannot start the metadata backup thread ({e}); backups happen at unmount only"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject() {
        let s = parse_options(
            &[
                "allow_other,ro".into(),
                "noatime".into(),
                "defaults,x-systemd.automount".into(),
            ],
            4,
        )
        .unwrap();
        assert!(s.read_only);
        assert_eq!(s.acl, SessionACL::All);
        assert!(s.options.contains(&MountOption::RO) && s.options.contains(&MountOption::NoAtime));
        assert!(
            matches!(parse_options(&["bogus".into()], 1), Err(MountError::Option(o)) if o == "bogus")
        );
    }
}
