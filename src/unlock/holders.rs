//! t-of-n key holders (seed 003): the vault key is wrapped under a
//! per-vault wrapping key `W`, and `W` is split with Shamir secret sharing
//! (`blahaj`, GF(256)) into one share per holder. Any `t` holders give `W`
//! back; `t - 1` learn nothing about it, and no holder ever sees the vault
//! key itself.
//!
//! Holders are reached over QKD-keyed links ([`crate::qkd::link`]),
//! exactly as remote nodes are: a key pool pair per holder (the vault
//! keeps end A, the holder end B), or an ETSI GS QKD 014 KME that hands
//! both ends their keys (the link is named after the holder). The keys are
//! what authenticate the vault to the holder, so end A (or the vault's
//! KME client certificate) belongs with the QKD key source, not in the
//! vault folder.
//!
//! Protocol version 1, one JSON message each way per request:
//!
//! ```text
//! vault -> holder  {"v":1,"op":"enroll","vault":"<id>","share":"<hex: x || y>"}
//! vault -> holder  {"v":1,"op":"release","vault":"<id>"}
//! vault -> holder  {"v":1,"op":"ping","vault":"<id>"}      (status: holds a share? no release)
//! holder -> vault  {"ok":true,"share":"<hex>"}            (release)
//!                  {"ok":true}                             (enroll)
//!                  {"ok":false,"error":"...","retry_after_secs":N}
//! ```
//!
//! A holder names each share by `x` in its append-only log; the vault
//! checks each share it gets against `BLAKE3(vault id || share)` recorded
//! at enrollment, so a holder answering with a wrong share is named.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::qkd::etsi014::KmeConfig;
use crate::qkd::link::{Link, LinkConfig};
use crate::qkd::pool::PoolFile;
use crate::qkd::{Channel, End, KeySource};

/// Protocol version.
pub const VERSION: u32 = 1;
/// How long a holder may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a holder may take per read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message either side accepts.
pub const MAX_MESSAGE: usize = 4096;

/// A request to a holder.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Keep this share of the vault's wrapping key.
    Enroll {
        /// Protocol version.
        v: u32,
        /// The vault's id.
        vault: String,
        /// The share, hex (`x` then `y`).
        share: String,
    },
    /// Say whether this holder keeps a share of the vault for this link
    /// (for `qsfs status`; releases nothing).
    Ping {
        /// Protocol version.
        v: u32,
        /// The vault's id.
        vault: String,
    },
    /// Give back the vault's share.
    Release {
        /// Protocol version.
        v: u32,
        /// The vault's id.
        vault: String,
    },
}

/// A holder's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was granted.
    pub ok: bool,
    /// The released share, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a rate-limited request may be tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// One holder as the vault records it in `unlock.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRef {
    /// Its name.
    pub name: String,
    /// Where it listens (`host:port`).
    pub addr: String,
    /// The vault's end (A) of the link's key pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PathBuf>,
    /// Or the KME that keys the link (ETSI 014; link named `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kme: Option<KmeConfig>,
    /// `x` of its share.
    pub x: u8,
    /// BLAKE3 of (vault id, share): names a holder that answers wrong.
    pub check: String,
}

/// Where the vault's end of a holder link gets its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderKeys {
    /// A key pool file (end A).
    Pool(PathBuf),
    /// A KME (ETSI GS QKD 014); the link is named after the holder.
    Kme(KmeConfig),
}

impl HolderKeys {
    /// The same with relative paths made absolute (as `unlock.toml`
    /// records them).
    pub fn absolute(&self) -> std::io::Result<HolderKeys> {
        let abs = |p: &Path| std::path::absolute(p);
        Ok(match self {
            HolderKeys::Pool(p) => HolderKeys::Pool(abs(p)?),
            HolderKeys::Kme(k) => HolderKeys::Kme(KmeConfig {
                cert: abs(&k.cert)?,
                key: abs(&k.key)?,
                ca: abs(&k.ca)?,
                ..k.clone()
            }),
        })
    }

    /// The key source and link settings of the link named `link`, at end
    /// `end`.
    pub fn open(&self, link: &str, end: End) -> Result<(Arc<dyn KeySource>, LinkConfig), String> {
        let mut cfg = LinkConfig::new(link);
        let keys: Arc<dyn KeySource> = match self {
            HolderKeys::Pool(p) => {
                let pool = PoolFile::open(p).map_err(|e| e.to_string())?;
                cfg = LinkConfig::for_pool(&pool);
                Arc::new(pool)
            }
            HolderKeys::Kme(k) => Arc::new(
                k.source(link, end, Path::new("/"))
                    .map_err(|e| format!("its KME {}: {e}", k.url))?,
            ),
        };
        cfg.max_message = MAX_MESSAGE;
        Ok((keys, cfg))
    }
}

impl HolderRef {
    /// How its link is keyed.
    pub fn keys(&self) -> Result<HolderKeys, HolderFailure> {
        match (&self.pool, &self.kme) {
            (Some(p), None) => Ok(HolderKeys::Pool(p.clone())),
            (None, Some(k)) => Ok(HolderKeys::Kme(k.clone())),
            _ => Err(HolderFailure::Unreachable(
                "unlock.toml must name exactly one of pool and kme for it".into(),
            )),
        }
    }
}

/// Why one holder did not give its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderFailure {
    /// It could not be reached or the link failed.
    Unreachable(String),
    /// It refused (no share for this vault, another vault's link ...).
    Refused(String),
    /// It is rate-limiting releases.
    RateLimited(u64),
    /// Its share does not match the one given at enrollment.
    WrongShare,
}

impl std::fmt::Display for HolderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HolderFailure::Unreachable(d) => write!(f, "unreachable ({d})"),
            HolderFailure::Refused(d) => write!(f, "refused ({d})"),
            HolderFailure::RateLimited(s) => {
                write!(f, "is rate-limiting releases; try again in {s} s")
            }
            HolderFailure::WrongShare => f.write_str(
                "answered with a wrong share (not the one it was given at enrollment): its store is damaged or it is not the holder it claims to be",
            ),
        }
    }
}

/// The check value of a share.
pub fn share_check(vault_id: &str, share: &[u8]) -> String {
    let mut h = blake3::Hasher::new_derive_key("qsfs 2026-12 holder share check v1");
    h.update(vault_id.as_bytes());
    h.update(&[0]);
    h.update(share);
    h.finalize().to_hex().to_string()
}

/// Splits the 32-byte `secret` into `n` shares (`x = 1..=n`), any `t` of
/// which rebuild it.
pub fn split(secret: &[u8; 32], t: u8, n: u8) -> Result<Vec<Zeroizing<Vec<u8>>>, String> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|e| e.to_string())?;
    crate::envelope::pieces::split(secret, t, n.into(), *seed).map_err(|e| e.to_string())
}

/// Rebuilds the secret from `t` or more shares.
pub fn combine(shares: &[Zeroizing<Vec<u8>>], t: u8) -> Result<Zeroizing<[u8; 32]>, String> {
    let refs: Vec<&[u8]> = shares.iter().map(|s| &s[..]).collect();
    let secret = crate::envelope::pieces::combine(&refs, t).map_err(|e| e.to_string())?;
    let arr: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| "the shares rebuild a secret of the wrong length".to_string())?;
    Ok(Zeroizing::new(arr))
}

fn connect(name: &str, addr: &str, keys: &HolderKeys) -> Result<Link<TcpStream>, HolderFailure> {
    let unreachable = |d: String| HolderFailure::Unreachable(d);
    let (keys, cfg) = keys
        .open(name, End::A)
        .map_err(|e| unreachable(format!("its link's keys: {e}")))?;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {addr}: {e}")))?
        .collect();
    let mut last = format!("{addr} resolves to nothing");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).ok();
                s.set_write_timeout(Some(IO_TIMEOUT)).ok();
                s.set_nodelay(true).ok();
                return Link::new(s, End::A, keys, cfg)
                    .map_err(|e| unreachable(format!("the link to {addr} failed: {e}")));
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(unreachable(last))
}

/// Sends `req` to the holder at `addr` over the link of `pool`.
pub fn call<S: Read + Write + Send>(
    link: &mut Link<S>,
    req: &Request,
) -> Result<Reply, HolderFailure> {
    let bytes = serde_json::to_vec(req).map_err(|e| HolderFailure::Refused(e.to_string()))?;
    link.send(&bytes)
        .map_err(|e| HolderFailure::Unreachable(e.to_string()))?;
    let answer = Zeroizing::new(
        link.recv()
            .map_err(|e| HolderFailure::Unreachable(e.to_string()))?,
    );
    serde_json::from_slice(&answer)
        .map_err(|e| HolderFailure::Refused(format!("an undecodable answer: {e}")))
}

/// Gives the holder `name` at `addr` its share of the vault `vault_id`.
pub fn enroll(
    name: &str,
    addr: &str,
    keys: &HolderKeys,
    vault_id: &str,
    share: &[u8],
) -> Result<(), HolderFailure> {
    let mut link = connect(name, addr, keys)?;
    let reply = call(
        &mut link,
        &Request::Enroll {
            v: VERSION,
            vault: vault_id.into(),
            share: hex::encode(share),
        },
    )?;
    if reply.ok {
        Ok(())
    } else {
        Err(HolderFailure::Refused(reply.error.unwrap_or_default()))
    }
}

/// Whether the holder `h` answers and keeps a share of `vault_id`.
pub fn ping(h: &HolderRef, vault_id: &str) -> Result<(), HolderFailure> {
    let mut link = connect(&h.name, &h.addr, &h.keys()?)?;
    let reply = call(
        &mut link,
        &Request::Ping {
            v: VERSION,
            vault: vault_id.into(),
        },
    )?;
    if reply.ok {
        Ok(())
    } else {
        Err(HolderFailure::Refused(reply.error.unwrap_or_default()))
    }
}

/// Asks the holder `h` for its share of vault `vault_id`.
pub fn release(h: &HolderRef, vault_id: &str) -> Result<Zeroizing<Vec<u8>>, HolderFailure> {
    let mut link = connect(&h.name, &h.addr, &h.keys()?)?;
    let reply = call(
        &mut link,
        &Request::Release {
            v: VERSION,
            vault: vault_id.into(),
        },
    )?;
    if !reply.ok {
        return Err(match reply.retry_after_secs {
            Some(s) => HolderFailure::RateLimited(s),
            None => HolderFailure::Refused(reply.error.unwrap_or_default()),
        });
    }
    let share = Zeroizing::new(
        hex::decode(reply.share.unwrap_or_default())
            .map_err(|_| HolderFailure::Refused("a share that is not hex".into()))?,
    );
    if share_check(vault_id, &share) != h.check || share.first() != Some(&h.x) {
        return Err(HolderFailure::WrongShare);
    }
    Ok(share)
}

/// A share as received.
pub type ShareBytes = Zeroizing<Vec<u8>>;
/// Holders that gave no share, and why.
pub type Failures = Vec<(String, HolderFailure)>;

/// Asks `need` holders at once, then the others if some of those failed
/// (each release counts against a holder's rate limit, so no more are
/// asked than an unlock needs); returns the shares of those that gave one
/// and the failures of the others.
pub fn gather(holders: &[HolderRef], vault_id: &str, need: usize) -> (Vec<ShareBytes>, Failures) {
    let first = need.min(holders.len());
    let (mut shares, mut failed) = ask_all(&holders[..first], vault_id);
    if shares.len() < need {
        let (more, why) = ask_all(&holders[first..], vault_id);
        shares.extend(more);
        failed.extend(why);
    }
    (shares, failed)
}

fn ask_all(holders: &[HolderRef], vault_id: &str) -> (Vec<ShareBytes>, Failures) {
    let results: Vec<(String, Result<ShareBytes, HolderFailure>)> = std::thread::scope(|s| {
        let handles: Vec<_> = holders
            .iter()
            .map(|h| (h.name.clone(), s.spawn(move || release(h, vault_id))))
            .collect();
        handles
            .into_iter()
            .map(|(n, j)| {
                (
                    n,
                    j.join().unwrap_or_else(|_| {
                        Err(HolderFailure::Unreachable("the request failed".into()))
                    }),
                )
            })
            .collect()
    });
    let mut shares = Vec::new();
    let mut failed = Vec::new();
    for (name, r) in results {
        match r {
            Ok(s) => shares.push(s),
            Err(e) => failed.push((name, e)),
        }
    }
    (shares, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_t_shares_rebuild_the_secret_and_fewer_do_not() {
        let secret = [42u8; 32];
        let shares = split(&secret, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        for pick in [[0, 1, 2], [0, 3, 4], [1, 2, 4], [4, 2, 0]] {
            let some: Vec<_> = pick.iter().map(|i| shares[*i].clone()).collect();
            assert_eq!(*combine(&some, 3).unwrap(), secret);
        }
        let two: Vec<_> = shares[..2].to_vec();
        assert!(combine(&two, 3).map_or(true, |s| *s != secret));
        assert!(split(&secret, 4, 3).is_err());
    }
}
