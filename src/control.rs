//! The control socket of a mounted vault: how `qsfs status`, `scrub`,
//! `audit`, `fsck`, `node drain`, `rebalance` and `node list` run while
//! the vault is mounted. The stores are single-process (the mount holds the vault
//! lock), so the command asks the mount process to run the operation on
//! its open vault and streams back progress and the report.
//!
//! `VAULT/control.sock`, a Unix socket, mode 0600; only the user who runs
//! the mount (or root) may connect (checked with SO_PEERCRED). Protocol
//! v1, one JSON object per line:
//! ```text
//! client -> server  {"version":1,"op":"scrub","args":{...}}
//! server -> client  {"progress":{"event":"phase","name":"scrub","total":123}}   (any number)
//!                   {"done":{...report...}}  or  {"error":"what went wrong"}     (last line)
//! ```
//! One maintenance operation runs at a time; a second one waits for the
//! first (`status` and `node-list` only read and answer at once). A
//! client that goes away does not stop the operation: it finishes and its
//! result is logged.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::vault::Vault;
use crate::vault::maint::Progress;

/// Protocol version.
pub const VERSION: u32 = 1;
/// File name of the socket in the vault folder.
pub const SOCKET: &str = "control.sock";
/// Operations that only read, and so do not wait for a running one.
const READ_ONLY_OPS: &[&str] = &["status", "node-list"];

/// Control socket failures (client side).
#[derive(Debug, Error)]
pub enum ControlError {
    /// No mount process answers on the socket.
    #[error("no mounted qsfs answers on {0}")]
    NotMounted(PathBuf),
    /// Talking to the mount process failed.
    #[error("control socket {path}: {detail}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The mount process ran the operation and it failed.
    #[error("{0} (reported by the qsfs process serving the mount)")]
    Remote(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Call {
    version: u32,
    op: String,
    args: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Progress(Progress),
    Done(serde_json::Value),
    Error(String),
}

/// Runs one operation on an open vault: the mount's dispatcher.
pub type Handler = dyn Fn(
        &Vault,
        &str,
        serde_json::Value,
        &(dyn Fn(Progress) + Sync),
    ) -> Result<serde_json::Value, String>
    + Send
    + Sync;

/// The socket path of the vault at `root`.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join(SOCKET)
}

/// A listening control socket; removes its file when dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts serving the control socket of `vault` (in the mount process).
pub fn serve(vault: Arc<Vault>, handler: Arc<Handler>) -> std::io::Result<ControlServer> {
    let path = socket_path(vault.root());
    // A socket file left by a mount that died; the vault lock we hold
    // proves no live process owns it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let owner = crate::sys::euid();
    let busy = Arc::new(Mutex::new(()));
    // Weak: the socket must not keep the vault open after the unmount (its
    // drop stops the links and cleans the node stock).
    let vault = Arc::downgrade(&vault);
    std::thread::Builder::new()
        .name("qsfs-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let Some(vault) = vault.upgrade() else { break };
                let handler = Arc::clone(&handler);
                let busy = Arc::clone(&busy);
                let _ = std::thread::Builder::new()
                    .name("qsfs-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &vault, &*handler, &busy, owner) {
                            tracing::warn!("control socket: {e}");
                        }
                    });
            }
        })?;
    Ok(ControlServer { path })
}

fn send(w: &Mutex<UnixStream>, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(&line)
}

fn handle(
    conn: UnixStream,
    vault: &Vault,
    handler: &Handler,
    busy: &Mutex<()>,
    owner: u32,
) -> std::io::Result<()> {
    let peer = crate::sys::peer_uid(&conn);
    // A client that stops reading (suspended) must not stall the run.
    conn.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
    let writer = Mutex::new(conn.try_clone()?);
    if peer != Some(owner) && peer != Some(0) {
        return send(
            &writer,
            &Reply::Error(format!(
                "permission denied: only uid {owner} (who mounted the vault) or root may run maintenance on it"
            )),
        );
    }
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    let call: Call = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => return send(&writer, &Reply::Error(format!("bad request: {e}"))),
    };
    if call.version != VERSION {
        return send(
            &writer,
            &Reply::Error(format!(
                "control protocol version {} is not supported (this qsfs speaks {VERSION}); use the same qsfs binary as the mount",
                call.version
            )),
        );
    }
    // Reports (status) read only and answer at once; maintenance runs one
    // at a time.
    let read_only = READ_ONLY_OPS.contains(&call.op.as_str());
    let _one_at_a_time = (!read_only).then(|| busy.lock().unwrap_or_else(|p| p.into_inner()));
    // A report polled in a loop would fill the log; maintenance is logged.
    if read_only {
        tracing::debug!(op = %call.op, "control socket: running");
    } else {
        tracing::info!(op = %call.op, "control socket: running");
    }
    // A client that left must not stop the run: progress errors are dropped.
    let gone = std::sync::atomic::AtomicBool::new(false);
    let progress = |p: Progress| {
        use std::sync::atomic::Ordering;
        if !gone.load(Ordering::Relaxed) && send(&writer, &Reply::Progress(p)).is_err() {
            gone.store(true, Ordering::Relaxed);
        }
    };
    let reply = match handler(vault, &call.op, call.args, &progress) {
        Ok(v) => Reply::Done(v),
        Err(e) => {
            tracing::warn!(op = %call.op, "control socket: failed: {e}");
            Reply::Error(e)
        }
    };
    send(&writer, &reply)
}

/// Runs `op` on the mounted vault at `root`. `Err(NotMounted)` when no
/// mount process answers (then open the vault directly).
pub fn call(
    root: &Path,
    op: &str,
    args: serde_json::Value,
    progress: &dyn Fn(Progress),
) -> Result<serde_json::Value, ControlError> {
    let path = socket_path(root);
    let conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        // (A vault path on a dead FUSE mount fails with ENOTCONN: no
        // mount answers, and opening the vault then explains.)
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) || crate::sys::is_dead_mount_error(&e) =>
        {
            return Err(ControlError::NotMounted(path));
        }
        Err(e) => {
            return Err(ControlError::Io {
                path,
                detail: format!("cannot connect: {e}"),
            });
        }
    };
    let io = |e: std::io::Error| ControlError::Io {
        path: path.clone(),
        detail: e.to_string(),
    };
    let mut line = serde_json::to_vec(&Call {
        version: VERSION,
        op: op.to_string(),
        args,
    })
    .map_err(|e| ControlError::Io {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    line.push(b'\n');
    (&conn).write_all(&line).map_err(io)?;
    let reader = BufReader::new(&conn);
    for line in reader.lines() {
        let line = line.map_err(io)?;
        let reply: Reply = serde_json::from_str(&line).map_err(|e| ControlError::Io {
            path: path.clone(),
            detail: format!("undecodable reply: {e}"),
        })?;
        match reply {
            Reply::Progress(p) => progress(p),
            Reply::Done(v) => return Ok(v),
            Reply::Error(e) => return Err(ControlError::Remote(e)),
        }
    }
    Err(ControlError::Io {
        path,
        detail: "the mount process closed the connection before answering (did it exit? see VAULT/qsfs.log)"
            .into(),
    })
}
