//! Who a node server lets in, and how many.
//!
//! Anybody who can reach the port can open a connection, but only a peer
//! holding the link's keys gets past the hello. So connections are
//! counted in two pools: *handshaking* ones (not yet authenticated: a
//! small cap overall and a smaller one per source address, each with a
//! deadline of a few seconds) and *authenticated* ones (the server's
//! `max_connections`). A stranger who opens silent connections fills the
//! first pool at most, never the capacity the vault's own connections
//! need. Refusals are logged at a limited rate, so a flood cannot fill
//! the disk with warnings either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;

/// How many connections of each kind a server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Authenticated connections at once.
    pub authenticated: usize,
    /// Connections still in their handshake, from everyone.
    pub handshaking: usize,
    /// Connections still in their handshake, from one address.
    pub handshaking_per_source: usize,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Refusal {
    /// Too many connections are in their handshake.
    #[error("{0} connections are already in their handshake (--max-handshakes)")]
    Handshakes(usize),
    /// Too many connections from one address are in their handshake.
    #[error("{limit} connections from {peer} are already in their handshake")]
    Source {
        /// The address.
        peer: IpAddr,
        /// Its cap.
        limit: usize,
    },
    /// The authenticated connections are all taken.
    #[error("{0} authenticated connections already (--max-connections)")]
    Full(usize),
    /// The peer failed its handshake (wrong keys, garbage, too slow).
    #[error("failed handshake: {0}")]
    Handshake(String),
}

#[derive(Debug, Default)]
struct Counts {
    handshaking: usize,
    per_source: HashMap<IpAddr, usize>,
    authenticated: usize,
}

/// The server's connection counts.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    log: RefusalLog,
}

/// One admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    source: Option<IpAddr>,
    authenticated: bool,
}

impl Admission {
    /// Counts against `limits`.
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
            log: RefusalLog::new(Duration::from_secs(10)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place among the handshaking connections for a peer at `source`
    /// (none: in-process, never capped per source).
    pub fn admit(self: &Arc<Self>, source: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let mut c = self.lock();
        if c.handshaking >= self.limits.handshaking {
            return Err(Refusal::Handshakes(self.limits.handshaking));
        }
        if let Some(ip) = source {
            let n = c.per_source.entry(ip).or_insert(0);
            if *n >= self.limits.handshaking_per_source {
                return Err(Refusal::Source {
                    peer: ip,
                    limit: self.limits.handshaking_per_source,
                });
            }
            *n += 1;
        }
        c.handshaking += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            source,
            authenticated: false,
        })
    }

    /// Logs a refusal, at most once per interval, with how many were
    /// refused in between.
    pub fn refused(&self, peer: &str, why: &Refusal) {
        self.log.note(peer, why);
    }

    /// Connections counted now: (handshaking, authenticated).
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        let c = self.lock();
        (c.handshaking, c.authenticated)
    }
}

impl Ticket {
    /// Whether the peer got past its handshake.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The peer proved it holds the link's keys: the connection moves to
    /// the authenticated pool, if that has room.
    pub fn authenticate(&mut self) -> Result<(), Refusal> {
        if self.authenticated {
            return Ok(());
        }
        let limits = self.admission.limits;
        let mut c = self.admission.lock();
        if c.authenticated >= limits.authenticated {
            return Err(Refusal::Full(limits.authenticated));
        }
        c.authenticated += 1;
        release_handshake(&mut c, self.source);
        self.authenticated = true;
        Ok(())
    }
}

fn release_handshake(c: &mut Counts, source: Option<IpAddr>) {
    c.handshaking = c.handshaking.saturating_sub(1);
    if let Some(ip) = source
        && let Some(n) = c.per_source.get_mut(&ip)
    {
        *n = n.saturating_sub(1);
        if *n == 0 {
            c.per_source.remove(&ip);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        if self.authenticated {
            c.authenticated = c.authenticated.saturating_sub(1);
        } else {
            release_handshake(&mut c, self.source);
        }
    }
}

/// Warnings about refused connections, at most one per interval.
#[derive(Debug)]
struct RefusalLog {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    fn new(every: Duration) -> RefusalLog {
        RefusalLog {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    fn note(&self, peer: &str, why: &Refusal) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = s.0.is_none_or(|at| at.elapsed() >= self.every);
        if !due {
            s.1 += 1;
            return;
        }
        let skipped = std::mem::take(&mut s.1);
        s.0 = Some(Instant::now());
        drop(s);
        if skipped == 0 {
            tracing::warn!("refusing a connection from {peer}: {why}");
        } else {
            tracing::warn!(
                "refusing a connection from {peer}: {why} ({skipped} more refused in the last {} s)",
                self.every.as_secs()
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn strangers_never_take_the_authenticated_places() {
        let a = Admission::new(Limits {
            authenticated: 2,
            handshaking: 3,
            handshaking_per_source: 2,
        });
        let s1 = a.admit(ip(9)).unwrap();
        let _s2 = a.admit(ip(9)).unwrap();
        assert_eq!(
            a.admit(ip(9)).unwrap_err(),
            Refusal::Source {
                peer: IpAddr::from([127, 0, 0, 9]),
                limit: 2
            }
        );
        let _s3 = a.admit(ip(8)).unwrap();
        assert_eq!(a.admit(ip(7)).unwrap_err(), Refusal::Handshakes(3));
        // A stranger gives up: its place is free again.
        drop(s1);
        let mut v1 = a.admit(ip(1)).unwrap();
        v1.authenticate().unwrap();
        let mut v2 = a.admit(ip(1)).unwrap();
        v2.authenticate().unwrap();
        assert_eq!(a.counts(), (2, 2));
        let mut v3 = a.admit(None).unwrap();
        assert_eq!(v3.authenticate().unwrap_err(), Refusal::Full(2));
        drop(v3);
        drop(v1);
        let mut v4 = a.admit(None).unwrap();
        v4.authenticate().unwrap();
        assert_eq!(a.counts(), (2, 2));
    }
}
