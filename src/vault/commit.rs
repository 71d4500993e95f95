//! The commit seam: the one place that writes the durability order of a
//! batch of sealed objects, for the mount's group committer and for `put`
//! alike. Per batch, one barrier per step:
//!
//! 1. intents durable, then side by side: shards durable at quorum, and
//!    key shares (one keystore flush),
//! 3. manifests and backup records `B` (one flush),
//! 4. names, a step the caller supplies ([`Namer`]),
//! 5. the namespace made durable (one flush),
//! 6. intents settled: named objects are kept, every other one destroyed,
//! 7. replaced versions destroyed (garbage collection).
//!
//! A crash between any two steps leaves the old or the new version plus
//! garbage the intent log or the gc queue accounts for, never a name that
//! points at a broken object. Keeping the order in one function is what
//! makes that hold for every writer.
//!
//! Why shards and shares go side by side: until a name points at an
//! object, its open intent makes a crash destroy whatever of it reached the
//! disk, so neither has to wait for the other (one after the other they
//! were two barriers in a row on every fsync). The manifest waits for the
//! shards: scrub, audit and fsck take a manifest to mean its shards are
//! committed, and its missing-shard mask is final only then.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use super::{SealedObject, Vault, VaultError};
use crate::ObjectId;
use crate::dispersal::WrittenObject;
use crate::keystore::ShareBytes;
use crate::namespace::NamespaceError;

/// What a [`Namer`] did with an item whose objects are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A name points at the new version now (once the namespace is durable).
    Named,
    /// The file was deleted while its seal was committing: nothing names
    /// the new objects, so they are destroyed like failed ones.
    Gone,
}

/// Shards of an item's objects that became durable, for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shards {
    /// Shards written.
    pub written: usize,
    /// Shards the item's objects have in all.
    pub total: usize,
}

/// An item that reached the disk in full: objects, name, namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Whether it was named or its file was gone.
    pub fate: Fate,
    /// Its shards.
    pub shards: Shards,
}

/// Why an item was not published. The variants keep the step that failed,
/// so callers map them to their own errors (errno, `put`'s messages).
#[derive(Debug, thiserror::Error)]
pub enum PublishError<E: std::error::Error + 'static> {
    /// Its objects could not be made durable; what of them was written is
    /// destroyed.
    #[error(transparent)]
    Commit(VaultError),
    /// The caller's naming step failed; its objects are destroyed.
    #[error(transparent)]
    Name(E),
    /// The names may or may not have reached the disk. The objects'
    /// intents stay open, so the next open of the vault keeps whichever
    /// objects are named and destroys the rest.
    #[error("the namespace could not be made durable: {0}")]
    NotDurable(Arc<NamespaceError>),
}

/// One item's outcome.
pub type ItemOutcome<E> = Result<Published, PublishError<E>>;

/// The naming step of [`Vault::publish`], and what the caller wants done
/// between durability and clean-up.
pub trait Namer {
    /// What naming fails with.
    type Error: std::error::Error + 'static;

    /// Names item `item`, whose objects `objs` are durable (an item may
    /// have none: an empty file). Objects of versions it replaces go to
    /// `replaced`. Not made durable here: one namespace flush follows for
    /// the whole batch.
    fn name(
        &mut self,
        item: usize,
        objs: &[SealedObject],
        replaced: &mut Vec<ObjectId>,
    ) -> Result<Fate, Self::Error>;

    /// Called once with every item's outcome as soon as it is known to be
    /// durable or not, before the clean-up: waiters (fsync) need
    /// durability only, not the destruction of garbage.
    fn durable(&mut self, _outcomes: &[ItemOutcome<Self::Error>]) {}

    /// Whether [`Vault::publish`] destroys what a durable batch replaced
    /// before it returns. The mount says no: its own thread collects
    /// garbage (fs/reaper.rs), so the next group commit, and the fsyncs
    /// waiting for it, never wait for deletions.
    fn collects_garbage(&self) -> bool {
        true
    }
}

/// How long each step of a [`Vault::publish`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Shards, keys, manifests.
    pub objects: Duration,
    /// The naming step.
    pub names: Duration,
    /// The namespace flush.
    pub durable: Duration,
    /// The `durable` call, settling and garbage collection.
    pub gc: Duration,
}

/// What [`Vault::publish`] did.
#[derive(Debug)]
pub struct Publication<E: std::error::Error + 'static> {
    /// One outcome per item, in order.
    pub items: Vec<ItemOutcome<E>>,
    /// Whether the namespace flush succeeded (settling and garbage
    /// collection ran only then).
    pub names_durable: bool,
    /// What collecting garbage found, if it ran; its failure is left to
    /// the caller to report (the next run retries).
    pub gc: Option<Result<usize, VaultError>>,
    /// Step times, for the caller's debug line.
    pub timing: Timing,
}

impl Vault {
    /// Makes `items` (each the sealed objects of one file's new version)
    /// durable and named, in the durability order above, with `namer`
    /// doing the naming. Returns one outcome per item.
    pub fn publish<N: Namer>(
        &self,
        items: Vec<Vec<SealedObject>>,
        namer: &mut N,
    ) -> Publication<N::Error> {
        let t0 = Instant::now();
        let mut objs: Vec<SealedObject> = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(items.len());
        for group in items {
            let start = objs.len();
            objs.extend(group);
            spans.push(start..objs.len());
        }
        let committed = self.commit_objects(&mut objs);
        let t_objects = t0.elapsed();
        // Objects whose commit failed were destroyed by it; the rest of a
        // failed item is destroyed once the batch is durable.
        let durable: Vec<bool> = committed.iter().map(std::result::Result::is_ok).collect();
        let mut first_err: Vec<Option<VaultError>> = spans.iter().map(|_| None).collect();
        let mut item = 0;
        for (k, r) in committed.into_iter().enumerate() {
            while !spans[item].contains(&k) {
                item += 1;
            }
            if let Err(e) = r {
                first_err[item].get_or_insert(e);
            }
        }
        let n = self.config().n;
        let shards: Vec<Shards> = spans
            .iter()
            .map(|s| Shards {
                written: objs[s.clone()]
                    .iter()
                    .map(|o| n - o.missing_shards().count_ones() as usize)
                    .sum(),
                total: n * s.len(),
            })
            .collect();

        let mut replaced = Vec::new();
        let mut outcomes: Vec<ItemOutcome<N::Error>> = Vec::with_capacity(spans.len());
        for (i, (span, err)) in spans.iter().zip(first_err).enumerate() {
            outcomes.push(match err {
                Some(e) => Err(PublishError::Commit(e)),
                None => namer
                    .name(i, &objs[span.clone()], &mut replaced)
                    .map(|fate| Published {
                        fate,
                        shards: shards[i],
                    })
                    .map_err(PublishError::Name),
            });
        }
        let t_names = t0.elapsed();

        if let Err(e) = self.ns.flush_durable() {
            let e = Arc::new(e);
            for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(PublishError::NotDurable(Arc::clone(&e)));
            }
            namer.durable(&outcomes);
            let t_durable = t0.elapsed();
            return Publication {
                items: outcomes,
                names_durable: false,
                gc: None,
                timing: Timing {
                    objects: t_objects,
                    names: t_names.saturating_sub(t_objects),
                    durable: t_durable.saturating_sub(t_names),
                    gc: Duration::ZERO,
                },
            };
        }
        let mut named = Vec::new();
        let mut discarded = Vec::new();
        for (span, o) in spans.iter().zip(&outcomes) {
            let ids = span.clone().filter(|k| durable[*k]).map(|k| objs[k].id());
            match o {
                Ok(Published {
                    fate: Fate::Named, ..
                }) => named.extend(ids),
                _ => discarded.extend(ids),
            }
        }
        let t_durable = t0.elapsed();
        namer.durable(&outcomes);
        self.settle_named(&named);
        self.settle_failed(&discarded);
        let gc = (namer.collects_garbage() && !replaced.is_empty()).then(|| self.collect_garbage());
        Publication {
            items: outcomes,
            names_durable: true,
            gc,
            timing: Timing {
                objects: t_objects,
                names: t_names.saturating_sub(t_objects),
                durable: t_durable.saturating_sub(t_names),
                gc: t0.elapsed().saturating_sub(t_durable),
            },
        }
    }

    /// Commits a group of sealed objects: their shards (one commit per
    /// node), their shares (one keystore flush), and their manifests and
    /// backup records (one flush), the three at once. Returns one result
    /// per object; a failed object leaves nothing behind that a name could
    /// point at.
    fn commit_objects(&self, objs: &mut [SealedObject]) -> Vec<Result<(), VaultError>> {
        // Every shard and share about to become durable has its intent
        // durable first (an fsync's seal has usually synced it already).
        if let Err(source) = self.intents.sync() {
            let e = Arc::new(VaultError::Io {
                what: "sync the intent log".into(),
                source,
            });
            return objs
                .iter()
                .map(|_| Err(VaultError::Commit(Arc::clone(&e))))
                .collect();
        }
        // The shares, copied before the shard commit borrows the objects
        // (wiped when dropped, a panic included).
        let shares = ShareCopies(objs.iter().map(|o| (o.id(), o.r1, o.r2)).collect());
        let (mut results, keys) = std::thread::scope(|scope| {
            let keys = scope.spawn(|| self.keys.put_many(&shares.0).map_err(VaultError::from));
            let synced = self.sync_shards(objs);
            (synced, join(keys, "make the key shares durable"))
        });
        drop(shares);
        let ok: Vec<usize> = (0..objs.len()).filter(|i| results[*i].is_ok()).collect();
        let records = keys.and_then(|()| {
            if ok.is_empty() {
                return Ok(());
            }
            let ok_objs: Vec<&SealedObject> = ok.iter().map(|i| &objs[*i]).collect();
            self.publish_records(&ok_objs)
        });
        if let Err(e) = records {
            let e = Arc::new(e);
            for i in &ok {
                results[*i] = Err(VaultError::Commit(Arc::clone(&e)));
            }
        }
        let failed: Vec<ObjectId> = (0..objs.len())
            .filter(|i| results[*i].is_err())
            .map(|i| objs[i].id())
            .collect();
        self.settle_failed(&failed);
        for (o, r) in objs.iter().zip(&results) {
            if r.is_ok() && o.missing_shards() != 0 {
                self.warn_missing(o);
            }
        }
        results
    }

    /// The shard step: every node's commit.
    fn sync_shards(&self, objs: &mut [SealedObject]) -> Vec<Result<(), VaultError>> {
        let mut written: Vec<&mut WrittenObject> =
            objs.iter_mut().map(|o| &mut o.written).collect();
        self.ec
            .sync(&mut written)
            .into_iter()
            .map(|r| r.map_err(VaultError::from))
            .collect()
    }

    /// The record step: manifests and backup records, durably.
    fn publish_records(&self, objs: &[&SealedObject]) -> Result<(), VaultError> {
        // Sealed and applied under one hold of the current epoch (see
        // `keystore::Writer`).
        let w = self.keys.writer()?;
        let stored: Vec<Vec<u8>> = objs
            .iter()
            .map(|o| match o.dispersed {
                true => Ok(vec![crate::dispersal::DISPERSED_BACKUP]),
                false => self.backup_form(w.as_ref(), &o.id(), &o.backup),
            })
            .collect::<Result<_, _>>()?;
        let items: Vec<(&crate::dispersal::Manifest, &[u8])> = objs
            .iter()
            .zip(&stored)
            .map(|(o, b)| (&o.written.manifest, &b[..]))
            .collect();
        self.ec.publish(&items).map_err(VaultError::from)?;
        drop(w);
        Ok(())
    }

    /// Warns, per node that missed a shard of `o`: in full the first time,
    /// then summarised (a node that is down fails every write).
    fn warn_missing(&self, o: &SealedObject) {
        let m = &o.written.manifest;
        for (idx, node) in m.placement.iter().enumerate() {
            if !m.is_missing(idx) {
                continue;
            }
            self.warnings().warn(
                node,
                crate::logsum::Cause::WriteFailed,
                crate::logsum::item(&o.id(), None),
                || {
                    format!(
                        "object {}: written with {} of {} shards; the missing ones are recorded as repair debt (see `qsfs status`): {}",
                        o.id(),
                        m.present(),
                        m.layout.n,
                        o.failures()
                    )
                },
            );
        }
    }

    /// Destroys objects whose write failed (whatever of them became
    /// durable) and settles their intents; if that fails too, the intents
    /// stay open and the next open's sweep finishes the job.
    pub(crate) fn settle_failed(&self, ids: &[ObjectId]) {
        if ids.is_empty() {
            return;
        }
        match self.destroy_objects(ids) {
            Ok(()) => {
                let _ = self.intents.done(ids);
            }
            Err(e) => tracing::warn!(
                "could not clean up after a failed write ({e}); the next qsfs command retries"
            ),
        }
    }

    /// Settles the intents of objects now named durably.
    pub(crate) fn settle_named(&self, ids: &[ObjectId]) {
        if let Err(e) = self.intents.done(ids) {
            tracing::warn!(
                "cannot update the intent log {} ({e})",
                self.intents.path().display()
            );
        }
    }
}

/// Copies of key shares, wiped when dropped.
struct ShareCopies(Vec<(ObjectId, ShareBytes, ShareBytes)>);

impl Drop for ShareCopies {
    fn drop(&mut self) {
        for (_, r1, r2) in &mut self.0 {
            r1.zeroize();
            r2.zeroize();
        }
    }
}

/// The result of step `what` run on a scoped thread; a panic there is an
/// error of the commit, not of the process.
fn join<T>(
    h: std::thread::ScopedJoinHandle<'_, Result<T, VaultError>>,
    what: &str,
) -> Result<T, VaultError> {
    h.join().unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(VaultError::Io {
            what: format!("{what} (its thread panicked)"),
            source: std::io::Error::other(why),
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Names every item; the objects stay unnamed in any namespace.
    struct NameAll;

    impl Namer for NameAll {
        type Error = NamespaceError;

        fn name(
            &mut self,
            _item: usize,
            _objs: &[SealedObject],
            _replaced: &mut Vec<ObjectId>,
        ) -> Result<Fate, NamespaceError> {
            Ok(Fate::Named)
        }
    }

    /// A shard whose node fails the commit (after its write succeeded)
    /// ends up recorded as missing in the manifest (repair debt), or scrub
    /// and reads would count on a shard that is not there.
    #[test]
    fn a_shard_lost_at_commit_is_recorded_missing_in_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        // A file per shard: the finished shard is a file to take away.
        super::super::init(
            &root,
            &super::super::InitOptions {
                direct: true,
                packs: false,
                link_keys: 0,
                unlock: Some(crate::unlock::NewMethod::None),
                ..Default::default()
            },
        )
        .unwrap();
        let v = Vault::open(&root, &super::super::OpenOptions::default()).unwrap();
        let data = vec![7u8; 600 * 1024];
        let sealed = v.seal(&data[..], data.len() as u64, "/f").unwrap();
        let id = sealed.id();
        // The node's finished shard is gone before its commit renames it.
        let hex = id.to_hex();
        let mut removed = 0;
        for entry in walk(&root.join("nodes")) {
            let name = entry.file_name().unwrap().to_string_lossy().into_owned();
            if removed == 0 && name.starts_with(&format!(".{hex}.")) && name.ends_with(".tmp") {
                std::fs::remove_file(&entry).unwrap();
                removed += 1;
            }
        }
        assert_eq!(removed, 1, "a temporary shard file of {hex} to remove");
        let done = v.publish(vec![vec![sealed]], &mut NameAll);
        assert!(done.items[0].is_ok(), "{:?}", done.items[0]);
        let m = v.ec.store().manifest(&id).unwrap().unwrap();
        assert_eq!(m.missing.count_ones(), 1, "mask {:#b}", m.missing);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
