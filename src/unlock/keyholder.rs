//! `qsfs keyholder serve`: one key holder (seed 003). It keeps one share
//! of a vault's wrapping key and releases it only over the vault's
//! QKD-keyed link, at a limited rate, logging every release.
//!
//! ```text
//! DIR/vaults/<vault id>.share   the share: "share <hex>\nlink <hex link id>\n" (0600)
//! DIR/releases.log              append-only, one line per request:
//!                               <HTTP date> <unix secs> <op> vault=<id> x=<x> peer=<addr> <outcome>
//! ```
//!
//! A share is bound to the link it was enrolled over (its link id: the
//! pool's, or with a KME the one derived from the link's name): another
//! link, even one this holder serves, never gets it.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use zeroize::Zeroizing;

use super::holders::{Reply, Request, VERSION};
use crate::qkd::link::{Link, LinkConfig};
use crate::qkd::{Channel, End};

/// How a holder runs.
#[derive(Debug, Clone)]
pub struct HolderOptions {
    /// Its folder (shares and the release log).
    pub dir: PathBuf,
    /// Where to listen (`host:port`).
    pub listen: String,
    /// How its end (B) of the vault link is keyed.
    pub keys: super::holders::HolderKeys,
    /// The link's name (with a KME; a pool names its own link).
    pub link: Option<String>,
    /// Releases per vault in any 60 s.
    pub releases_per_minute: usize,
}

/// Why a holder cannot run.
#[derive(Debug, Error)]
pub enum HolderError {
    /// Its folder cannot be used.
    #[error("key holder folder {}: {source}", .dir.display())]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Its link's keys cannot be had.
    #[error("key holder link keys ({what}): {detail}")]
    Pool {
        /// The pool file or KME.
        what: String,
        /// The cause.
        detail: String,
    },
    /// It cannot listen.
    #[error("key holder cannot listen on {addr}: {source} (is another process using the port?)")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

struct Holder {
    dir: PathBuf,
    keys: Arc<dyn crate::qkd::KeySource>,
    cfg: LinkConfig,
    per_minute: usize,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    log: Mutex<std::fs::File>,
}

const WINDOW: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: usize = 16;

/// Runs the holder until the process ends; `ready` gets the address it
/// listens on.
pub fn serve(opts: &HolderOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), HolderError> {
    let dir_err = |source| HolderError::Dir {
        dir: opts.dir.clone(),
        source,
    };
    crate::perms::create_private_dir_all(&opts.dir.join("vaults")).map_err(dir_err)?;
    crate::perms::make_private(&opts.dir).map_err(dir_err)?;
    let what = match &opts.keys {
        super::holders::HolderKeys::Pool(p) => p.display().to_string(),
        super::holders::HolderKeys::Kme(k) => k.url.clone(),
    };
    let (keys, cfg) = opts
        .keys
        .open(opts.link.as_deref().unwrap_or("key holder"), End::B)
        .map_err(|detail| HolderError::Pool { what, detail })?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(opts.dir.join("releases.log"))
        .map_err(dir_err)?;
    let listener = TcpListener::bind(&opts.listen).map_err(|source| HolderError::Listen {
        addr: opts.listen.clone(),
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| HolderError::Listen {
            addr: opts.listen.clone(),
            source,
        })?;
    let holder = Arc::new(Holder {
        dir: opts.dir.clone(),
        keys,
        cfg,
        per_minute: opts.releases_per_minute.max(1),
        recent: Mutex::new(HashMap::new()),
        log: Mutex::new(log),
    });
    ready(addr);
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if busy.load(std::sync::atomic::Ordering::Acquire) >= MAX_CONNECTIONS {
            continue;
        }
        busy.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let (h, b) = (Arc::clone(&holder), Arc::clone(&busy));
        std::thread::spawn(move || {
            h.handle(stream);
            b.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }
    Ok(())
}

fn valid_vault_id(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Holder {
    fn handle(&self, stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        stream.set_write_timeout(Some(Duration::from_secs(5))).ok();
        let mut link = match Link::new(stream, End::B, Arc::clone(&self.keys), self.cfg.clone()) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!("key holder: a link from {peer} failed: {e}");
                return;
            }
        };
        let Ok(msg) = link.recv().map(Zeroizing::new) else {
            return;
        };
        let link_id = hex::encode(self.cfg.link_id);
        let reply = match serde_json::from_slice::<Request>(&msg) {
            Err(e) => refuse(format!("undecodable request: {e}")),
            Ok(Request::Enroll { v, vault, share }) => {
                let r = self.enroll(v, &vault, &share, &link_id);
                self.log("enroll", &vault, share.get(..2).unwrap_or("?"), &peer, &r);
                r
            }
            Ok(Request::Ping { v, vault }) => self.ping(v, &vault, &link_id),
            Ok(Request::Release { v, vault }) => {
                let r = self.release(v, &vault, &link_id);
                let x = r.share.as_deref().and_then(|s| s.get(..2)).unwrap_or("-");
                self.log("release", &vault, x, &peer, &r);
                r
            }
        };
        if let Ok(bytes) = serde_json::to_vec(&reply).map(Zeroizing::new) {
            let _ = link.send(&bytes);
        }
    }

    fn share_path(&self, vault: &str) -> PathBuf {
        self.dir.join("vaults").join(format!("{vault}.share"))
    }

    fn enroll(&self, v: u32, vault: &str, share: &str, link_id: &str) -> Reply {
        if v != VERSION {
            return refuse(format!("protocol version {v} is not {VERSION}"));
        }
        if !valid_vault_id(vault) || hex::decode(share).map_or(true, |s| s.len() != 33) {
            return refuse("a malformed enrollment".into());
        }
        let text = Zeroizing::new(format!("share {share}\nlink {link_id}\n"));
        match write_private(&self.share_path(vault), text.as_bytes()) {
            Ok(()) => Reply {
                ok: true,
                ..Default::default()
            },
            Err(e) => refuse(format!("cannot store the share: {e}")),
        }
    }

    fn ping(&self, v: u32, vault: &str, link_id: &str) -> Reply {
        if v != VERSION || !valid_vault_id(vault) {
            return refuse("a malformed request".into());
        }
        match std::fs::read_to_string(self.share_path(vault)).map(Zeroizing::new) {
            Ok(t)
                if t.lines()
                    .any(|l| l.strip_prefix("link ").map(str::trim) == Some(link_id)) =>
            {
                Reply {
                    ok: true,
                    ..Default::default()
                }
            }
            Ok(_) => refuse("this link is not the one the vault enrolled over".into()),
            Err(_) => refuse(format!("this holder keeps no share of vault {vault}")),
        }
    }

    fn release(&self, v: u32, vault: &str, link_id: &str) -> Reply {
        if v != VERSION {
            return refuse(format!("protocol version {v} is not {VERSION}"));
        }
        if !valid_vault_id(vault) {
            return refuse("a malformed vault id".into());
        }
        let Ok(text) = std::fs::read_to_string(self.share_path(vault)).map(Zeroizing::new) else {
            return refuse(format!("this holder keeps no share of vault {vault}"));
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if field("link ").as_deref() != Some(link_id) {
            return refuse("this link is not the one the vault enrolled over".into());
        }
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let q = recent.entry(vault.to_string()).or_default();
            let now = Instant::now();
            while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                q.pop_front();
            }
            if q.len() >= self.per_minute {
                let wait = q
                    .front()
                    .map_or(WINDOW, |t| WINDOW.saturating_sub(now.duration_since(*t)));
                return Reply {
                    ok: false,
                    error: Some(format!(
                        "{} releases of this vault's share in the last minute",
                        q.len()
                    )),
                    retry_after_secs: Some(wait.as_secs().max(1)),
                    share: None,
                };
            }
            q.push_back(now);
        }
        Reply {
            ok: true,
            share: field("share "),
            ..Default::default()
        }
    }

    fn log(&self, op: &str, vault: &str, x: &str, peer: &str, r: &Reply) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let outcome = if r.ok {
            "ok".to_string()
        } else {
            format!("refused: {}", r.error.as_deref().unwrap_or(""))
        };
        let line = format!(
            "{} {secs} {op} vault={vault} x={x} peer={peer} {outcome}\n",
            httpdate::fmt_http_date(now)
        );
        let mut f = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .is_err()
        {
            tracing::error!("key holder: cannot write its release log");
        }
    }
}

fn refuse(error: String) -> Reply {
    Reply {
        ok: false,
        error: Some(error),
        ..Default::default()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        crate::sys::fsync_dir(parent)?;
    }
    Ok(())
}
