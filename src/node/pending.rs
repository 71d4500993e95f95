//! Pending shards: plain values a node issues at the end of a write and
//! takes back at its commit.
//!
//! The caller holds only a key and a token; what the write left behind
//! (a temporary file, a token on a node server) stays in a table of the
//! node that issued it. So a commit never has to guess the type of what
//! it was handed, and a token brought to another node is refused instead
//! of being taken for one of its own. A pending shard dropped without a
//! commit tells its node to discard the write; a node dropped first
//! discards everything still in its table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::ShardKey;

/// Node instances, numbered so a token names the one that issued it.
static NEXT_ISSUER: AtomicU64 = AtomicU64::new(1);

/// Names a pending write: which node instance issued it, and which of its
/// writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingToken {
    issuer: u64,
    serial: u64,
}

impl std::fmt::Display for PendingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.issuer, self.serial)
    }
}

/// A fully written shard waiting for its commit on the node that wrote
/// it. Dropping it without a commit discards it.
pub struct PendingShard {
    key: ShardKey,
    token: PendingToken,
    /// Where a drop without commit goes; `None` once the node took it back.
    /// Weak: a pending shard does not keep a gone node's table alive.
    owner: Option<Weak<dyn Discard>>,
}

impl PendingShard {
    /// Which shard.
    pub fn key(&self) -> ShardKey {
        self.key
    }

    /// The token its node issued.
    pub fn token(&self) -> PendingToken {
        self.token
    }
}

impl std::fmt::Debug for PendingShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingShard")
            .field("key", &self.key)
            .field("token", &self.token)
            .finish()
    }
}

impl Drop for PendingShard {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take().and_then(|w| w.upgrade()) {
            owner.discard(self.token);
        }
    }
}

/// How a dropped pending shard reaches its node's table.
trait Discard: Send + Sync {
    fn discard(&self, token: PendingToken);
}

/// A pending shard was handed to a node that did not issue it (or that
/// no longer holds its write).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("pending shard {token} was not written through this node")]
pub struct NotIssued {
    /// The token that was refused.
    pub token: PendingToken,
}

/// One node instance's pending writes, by token. `T` is the node's own
/// record of a write; dropping a `T` must discard that write, which is
/// all a discard does here.
pub(crate) struct PendingTable<T> {
    issuer: u64,
    inner: Mutex<Entries<T>>,
}

impl<T> std::fmt::Debug for PendingTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingTable")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

struct Entries<T> {
    next: u64,
    map: HashMap<u64, T>,
}

impl<T: Send + 'static> PendingTable<T> {
    /// An empty table with an identity of its own.
    pub(crate) fn new() -> Arc<PendingTable<T>> {
        Arc::new(PendingTable {
            issuer: NEXT_ISSUER.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Entries {
                next: 0,
                map: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `write` and hands out the pending shard that stands for it.
    pub(crate) fn issue(self: &Arc<Self>, key: ShardKey, write: T) -> PendingShard {
        let serial = {
            let mut e = self.lock();
            let serial = e.next;
            e.next += 1;
            e.map.insert(serial, write);
            serial
        };
        let owner: Arc<dyn Discard> = Arc::clone(self) as Arc<dyn Discard>;
        PendingShard {
            key,
            token: PendingToken {
                issuer: self.issuer,
                serial,
            },
            owner: Some(Arc::downgrade(&owner)),
        }
    }

    /// Takes a pending shard back for its commit: the node's record of the
    /// write, now the committer's to finish or drop. A shard of another
    /// node is refused (and, dropped here, discarded by its own node).
    pub(crate) fn claim(&self, mut p: PendingShard) -> Result<T, NotIssued> {
        let token = p.token;
        if token.issuer != self.issuer {
            return Err(NotIssued { token });
        }
        let write = self.lock().map.remove(&token.serial);
        p.owner = None;
        write.ok_or(NotIssued { token })
    }
}

impl<T: Send + 'static> Discard for PendingTable<T> {
    fn discard(&self, token: PendingToken) {
        if token.issuer == self.issuer {
            // Removed under the lock, dropped after it: dropping a write
            // may cost a round trip to a node server.
            let write = self.lock().map.remove(&token.serial);
            drop(write);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ObjectId;
    use std::sync::atomic::AtomicUsize;

    /// A write that counts its discards.
    struct Probe(Arc<AtomicUsize>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn key(index: u8) -> ShardKey {
        ShardKey {
            object: ObjectId([7; 16]),
            index,
        }
    }

    #[test]
    fn a_dropped_pending_shard_is_discarded_by_its_node() {
        let gone = Arc::new(AtomicUsize::new(0));
        let table = PendingTable::new();
        let p = table.issue(key(0), Probe(Arc::clone(&gone)));
        assert_eq!(p.key(), key(0));
        drop(p);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
        assert!(table.lock().map.is_empty());
    }

    #[test]
    fn a_claimed_shard_is_the_committers_and_not_discarded_twice() {
        let gone = Arc::new(AtomicUsize::new(0));
        let table = PendingTable::new();
        let p = table.issue(key(1), Probe(Arc::clone(&gone)));
        let write = table.claim(p).unwrap();
        assert_eq!(gone.load(Ordering::SeqCst), 0);
        drop(write);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn another_nodes_token_is_refused_and_discarded_by_its_own_node() {
        let gone = Arc::new(AtomicUsize::new(0));
        let mine = PendingTable::<Probe>::new();
        let theirs = PendingTable::new();
        let p = theirs.issue(key(2), Probe(Arc::clone(&gone)));
        let token = p.token();
        let e = mine.claim(p).err().unwrap();
        assert_eq!(e.token, token);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
        assert!(theirs.lock().map.is_empty());
    }

    #[test]
    fn a_gone_node_discards_what_it_still_holds() {
        let gone = Arc::new(AtomicUsize::new(0));
        let table = PendingTable::new();
        let p = table.issue(key(3), Probe(Arc::clone(&gone)));
        drop(table);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
        drop(p);
        assert_eq!(gone.load(Ordering::SeqCst), 1);
    }
}
