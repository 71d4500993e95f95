//! The pure core of fsck: from what the nodes, the stores and the
//! namespace hold, decide what is an orphan, what is broken and what must
//! be looked at more closely. No I/O, so every rule is tested here.
//!
//! Objects in `busy` (an open intent: a write in flight; or a queued
//! deletion) are never judged: their pieces come and go on their own.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use super::report::{FileProblem, OrphanReason, ShardFault};
use crate::ObjectId;
use crate::dispersal::Manifest;
use crate::maint::nodes::NotChecked;
use crate::node::{Listing, ShardKey};

/// What fsck read, in the order that makes the judgement safe against a
/// concurrent writer (see fsck.rs).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each node's listing, in config order (Err: why it could not be
    /// checked).
    pub listings: Vec<(String, Result<Listing, NotChecked>)>,
    /// Objects with an R1 or R2 record.
    pub keys: BTreeSet<ObjectId>,
    /// Objects with a backup record.
    pub backups: BTreeSet<ObjectId>,
    /// Every manifest record (Err: undecodable, with the reason).
    pub manifests: BTreeMap<ObjectId, Result<Manifest, String>>,
    /// Objects some inode points at.
    pub named: HashSet<ObjectId>,
    /// Objects in flight or queued for deletion.
    pub busy: HashSet<ObjectId>,
    /// This process: temporary files it is writing carry its pid.
    pub own_pid: u32,
}

/// A shard file that belongs nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Node holding it.
    pub node: String,
    /// The shard.
    pub key: ShardKey,
    /// Why it is an orphan.
    pub reason: OrphanReason,
    /// Why it must be kept for now (None: safe to delete).
    pub keep: Option<String>,
}

/// A temporary file of a write that never committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temp {
    /// Node holding it.
    pub node: String,
    /// The file as the node lists it.
    pub path: PathBuf,
    /// Its object, when the name says.
    pub object: Option<ObjectId>,
}

/// A shard at its proper place whose header is still to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Node holding it.
    pub node: String,
    /// The shard.
    pub key: ShardKey,
    /// File size.
    pub size: u64,
}

/// What the snapshot shows.
#[derive(Debug, Default)]
pub struct Plan {
    /// Manifests no name points at.
    pub orphan_objects: Vec<ObjectId>,
    /// Key records with neither manifest nor name.
    pub orphan_keys: Vec<ObjectId>,
    /// Backup records with neither manifest nor name.
    pub orphan_backups: Vec<ObjectId>,
    /// Shard files that belong nowhere.
    pub strays: Vec<Stray>,
    /// Temporary files.
    pub temps: Vec<Temp>,
    /// Every object whose pieces are destroyed as a whole on repair.
    pub destroy: BTreeSet<ObjectId>,
    /// Shards at their proper place, size right: headers to check.
    pub placed: Vec<Placed>,
    /// Shards at their proper place with a fault found without I/O.
    pub faults: Vec<(String, ShardKey, ShardFault)>,
    /// Shards a manifest places on a listed node that does not list them
    /// (to be confirmed: the listing is older than the manifest).
    pub absent: Vec<(String, ShardKey)>,
    /// Named objects already known to be broken.
    pub broken: BTreeMap<ObjectId, Vec<FileProblem>>,
    /// Named objects with a usable manifest (their keys are checked next).
    pub named_live: Vec<ObjectId>,
}

/// Object and writer pid of a temporary shard file name
/// (`.<object hex>.<index>.<pid>-<counter>.tmp`, node/dir.rs).
pub fn parse_temp(name: &str) -> (Option<ObjectId>, Option<u32>) {
    let inner = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .unwrap_or("");
    let mut parts = inner.split('.');
    let object = parts.next().and_then(ObjectId::from_hex);
    let _index = parts.next();
    let pid = parts
        .next()
        .and_then(|tag| tag.split('-').next())
        .and_then(|p| p.parse().ok());
    (object, pid)
}

/// Expected size of every shard file of `m`.
pub fn shard_file_len(m: &Manifest) -> u64 {
    m.shard_file_len()
}

/// Judges the snapshot.
pub fn plan(s: &Snapshot) -> Plan {
    let mut p = Plan::default();
    let listed: HashMap<&str, HashMap<ShardKey, u64>> = s
        .listings
        .iter()
        .filter_map(|(node, l)| {
            let l = l.as_ref().ok()?;
            Some((
                node.as_str(),
                l.shards.iter().map(|x| (x.key, x.size)).collect(),
            ))
        })
        .collect();
    let orphan_id = |id: &ObjectId| {
        !s.manifests.contains_key(id) && !s.named.contains(id) && !s.busy.contains(id)
    };

    for (node, listing) in &s.listings {
        let Ok(listing) = listing else { continue };
        for shard in &listing.shards {
            let id = shard.key.object;
            if s.busy.contains(&id) {
                continue;
            }
            let stray = |reason, keep| Stray {
                node: node.clone(),
                key: shard.key,
                reason,
                keep,
            };
            match s.manifests.get(&id) {
                // A named object without manifest is a broken file; its
                // shards are all that is left of it and are kept.
                None if s.named.contains(&id) => {}
                None => {
                    p.strays.push(stray(OrphanReason::NoManifest, None));
                    p.destroy.insert(id);
                }
                // An undecodable manifest: judged as an object below.
                Some(Err(_)) => {}
                Some(Ok(m)) => {
                    let i = shard.key.index as usize;
                    if i >= m.layout.n {
                        p.strays.push(stray(OrphanReason::BadIndex, None));
                    } else if m.placement[i] != *node {
                        // A stale copy (a move whose source delete failed).
                        // Deleted only while the real one is in place.
                        let home = &m.placement[i];
                        let real = !m.is_missing(i)
                            && listed
                                .get(home.as_str())
                                .and_then(|l| l.get(&shard.key))
                                .is_some_and(|size| *size == shard_file_len(m));
                        let keep = (!real).then(|| {
                            format!(
                                "the copy the manifest places on {home} is missing or unchecked; \
                                 kept until `qsfs scrub --repair` has rebuilt it"
                            )
                        });
                        p.strays.push(stray(OrphanReason::WrongNode, keep));
                    } else if m.is_missing(i) {
                        // Known repair debt: scrub's business.
                    } else if shard.size != shard_file_len(m) {
                        p.faults.push((
                            node.clone(),
                            shard.key,
                            ShardFault::WrongSize {
                                size: shard.size,
                                expected: shard_file_len(m),
                            },
                        ));
                    } else {
                        p.placed.push(Placed {
                            node: node.clone(),
                            key: shard.key,
                            size: shard.size,
                        });
                    }
                }
            }
        }
        for path in &listing.leftovers {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (object, pid) = parse_temp(&name);
            if object.is_some_and(|id| s.busy.contains(&id)) || pid == Some(s.own_pid) {
                // Being written now (by this process, e.g. a repair).
                continue;
            }
            if let Some(id) = object
                && orphan_id(&id)
            {
                p.destroy.insert(id);
            }
            p.temps.push(Temp {
                node: node.clone(),
                path: path.clone(),
                object,
            });
        }
    }

    for (id, m) in &s.manifests {
        if s.busy.contains(id) {
            continue;
        }
        if !s.named.contains(id) {
            p.orphan_objects.push(*id);
            p.destroy.insert(*id);
            continue;
        }
        let m = match m {
            Ok(m) => m,
            Err(detail) => {
                p.broken.insert(
                    *id,
                    vec![FileProblem::ManifestDamaged {
                        detail: detail.clone(),
                    }],
                );
                continue;
            }
        };
        p.named_live.push(*id);
        let (mut present, mut unknown) = (0u64, 0u64);
        for i in 0..m.layout.n {
            // A shard recorded missing (a write or read that could not
            // reach its node) may be back with its node: what the listing
            // shows counts, as scrub clears such a record once the shard
            // verifies. Only its absence is no news.
            let recorded_missing = m.is_missing(i);
            let key = ShardKey {
                object: *id,
                index: i as u8,
            };
            let node = &m.placement[i];
            match listed.get(node.as_str()) {
                None if recorded_missing => {}
                None => unknown += 1,
                Some(l) => match l.get(&key) {
                    Some(size) if *size == shard_file_len(m) => present += 1,
                    Some(_) => {}
                    None if recorded_missing => {}
                    None => p.absent.push((node.clone(), key)),
                },
            }
        }
        let k = m.layout.k as u64;
        if present + unknown < k {
            p.broken
                .insert(*id, vec![FileProblem::TooFewShards { present, k }]);
        }
    }

    let mut named: Vec<&ObjectId> = s.named.iter().collect();
    named.sort();
    for id in named {
        if !s.manifests.contains_key(id) && !s.busy.contains(id) {
            p.broken.insert(*id, vec![FileProblem::ManifestMissing]);
        }
    }
    for id in s.keys.iter().filter(|id| orphan_id(id)) {
        p.orphan_keys.push(*id);
        p.destroy.insert(*id);
    }
    for id in s.backups.iter().filter(|id| orphan_id(id)) {
        p.orphan_backups.push(*id);
        p.destroy.insert(*id);
    }
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;
    use crate::node::StoredShard;

    fn id(b: u8) -> ObjectId {
        ObjectId([b; 16])
    }

    fn manifest(object: ObjectId) -> Manifest {
        let layout = StripeLayout::plan(2, 3, 1000, 4096).unwrap();
        Manifest {
            id: object,
            layout,
            plain_len: 900,
            created: 0,
            placement: vec!["a".into(), "b".into(), "c".into()],
            missing: 0,
            hashes: vec![[0; 32]; layout.stripes as usize * 3],
            block: 4096,
            roots: vec![[0; 32]; 3],
            piece: 0,
        }
    }

    fn shard(m: &Manifest, index: u8) -> StoredShard {
        StoredShard {
            key: ShardKey {
                object: m.id,
                index,
            },
            size: shard_file_len(m),
        }
    }

    /// Three nodes a, b, c holding the shards of `ms` where they belong.
    fn snapshot(ms: &[Manifest]) -> Snapshot {
        let mut s = Snapshot {
            own_pid: 42,
            ..Default::default()
        };
        for (n, name) in ["a", "b", "c"].iter().enumerate() {
            let mut l = Listing::default();
            for m in ms {
                l.shards.push(shard(m, n as u8));
            }
            s.listings.push((name.to_string(), Ok(l)));
        }
        for m in ms {
            s.manifests.insert(m.id, Ok(m.clone()));
            s.keys.insert(m.id);
            s.backups.insert(m.id);
            s.named.insert(m.id);
        }
        s
    }

    fn listing(s: &mut Snapshot, node: usize) -> &mut Listing {
        s.listings[node].1.as_mut().unwrap()
    }

    #[test]
    fn a_consistent_vault_has_no_findings() {
        let s = snapshot(&[manifest(id(1)), manifest(id(2))]);
        let p = plan(&s);
        assert!(p.orphan_objects.is_empty() && p.orphan_keys.is_empty());
        assert!(p.strays.is_empty() && p.temps.is_empty() && p.destroy.is_empty());
        assert!(p.faults.is_empty() && p.absent.is_empty() && p.broken.is_empty());
        assert_eq!(p.placed.len(), 6);
        assert_eq!(p.named_live, vec![id(1), id(2)]);
    }

    #[test]
    fn unnamed_pieces_are_orphans_unless_busy() {
        let m = manifest(id(1));
        let mut s = snapshot(std::slice::from_ref(&m));
        s.named.clear();
        // A shard of an unknown object, keys and B of others.
        listing(&mut s, 0).shards.push(StoredShard {
            key: ShardKey {
                object: id(7),
                index: 0,
            },
            size: 10,
        });
        s.keys.insert(id(8));
        s.backups.insert(id(9));
        // In flight: nothing of it is judged.
        s.keys.insert(id(5));
        s.busy.insert(id(5));
        listing(&mut s, 1).shards.push(StoredShard {
            key: ShardKey {
                object: id(5),
                index: 1,
            },
            size: 10,
        });
        let p = plan(&s);
        assert_eq!(p.orphan_objects, vec![id(1)]);
        assert_eq!(p.orphan_keys, vec![id(8)]);
        assert_eq!(p.orphan_backups, vec![id(9)]);
        assert_eq!(p.strays.len(), 1);
        assert_eq!(p.strays[0].reason, OrphanReason::NoManifest);
        assert_eq!(
            p.destroy,
            [id(1), id(7), id(8), id(9)].into_iter().collect()
        );
    }

    #[test]
    fn broken_files_keep_their_pieces() {
        let m = manifest(id(1));
        let mut s = snapshot(std::slice::from_ref(&m));
        s.manifests.clear();
        s.named.insert(id(2));
        s.manifests.insert(id(2), Err("bad version".into()));
        let p = plan(&s);
        assert!(p.destroy.is_empty(), "{:?}", p.destroy);
        assert!(p.strays.is_empty());
        assert_eq!(p.broken[&id(1)], vec![FileProblem::ManifestMissing]);
        assert!(matches!(
            p.broken[&id(2)][0],
            FileProblem::ManifestDamaged { .. }
        ));
        assert!(p.orphan_keys.is_empty() && p.orphan_backups.is_empty());
    }

    #[test]
    fn stale_copies_wrong_sizes_and_absent_shards() {
        let m = manifest(id(1));
        let mut s = snapshot(std::slice::from_ref(&m));
        // Shard 0 also on c (stale copy): deletable, the real one is on a.
        listing(&mut s, 2).shards.push(shard(&m, 0));
        // Shard 9 does not exist.
        listing(&mut s, 2).shards.push(StoredShard {
            key: ShardKey {
                object: m.id,
                index: 9,
            },
            size: 5,
        });
        // Shard 1 on b has the wrong size; shard 2 is absent from c.
        listing(&mut s, 1).shards[0].size -= 1;
        listing(&mut s, 2).shards.retain(|x| x.key.index != 2);
        let p = plan(&s);
        let reasons: Vec<_> = p
            .strays
            .iter()
            .map(|x| (x.reason.clone(), x.keep.is_none()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (OrphanReason::WrongNode, true),
                (OrphanReason::BadIndex, true)
            ]
        );
        assert_eq!(p.faults.len(), 1);
        assert_eq!(
            p.absent,
            vec![(
                "c".to_string(),
                ShardKey {
                    object: m.id,
                    index: 2
                }
            )]
        );
        // Only shard 0 is sound: 1 of k=2, broken.
        assert_eq!(
            p.broken[&m.id],
            vec![FileProblem::TooFewShards { present: 1, k: 2 }]
        );
        // Without the real shard 0 the stale copy is kept.
        listing(&mut s, 0).shards.clear();
        let p = plan(&s);
        assert!(p.strays[0].keep.is_some());
    }

    /// Shards recorded missing during an outage but back on their nodes
    /// count: fsck must not call a readable file unreadable.
    #[test]
    fn shards_recorded_missing_but_listed_count_as_present() {
        let mut m = manifest(id(1));
        m.missing = 0b011;
        let mut s = snapshot(std::slice::from_ref(&m));
        let p = plan(&s);
        assert!(p.broken.is_empty(), "{:?}", p.broken);
        assert!(p.absent.is_empty());
        // Truly gone: no news for the recorded ones, and 1 of k=2 is broken.
        listing(&mut s, 0).shards.clear();
        listing(&mut s, 1).shards.clear();
        let p = plan(&s);
        assert!(p.absent.is_empty());
        assert_eq!(
            p.broken[&m.id],
            vec![FileProblem::TooFewShards { present: 1, k: 2 }]
        );
    }

    #[test]
    fn temp_files() {
        let m = manifest(id(1));
        let mut s = snapshot(std::slice::from_ref(&m));
        let t = |o: ObjectId, pid: u32| PathBuf::from(format!("/n/shards/01/.{o}.0.{pid}-3.tmp"));
        listing(&mut s, 0).leftovers = vec![
            t(id(1), 7),  // live object, dead writer: remove the file only
            t(id(3), 7),  // unknown object: destroyed as a whole
            t(id(4), 42), // written by this process now: left alone
            PathBuf::from("/n/shards/01/.junk.tmp"),
        ];
        let p = plan(&s);
        assert_eq!(p.temps.len(), 3);
        assert_eq!(p.destroy, [id(3)].into_iter().collect());
        assert_eq!(
            parse_temp(&format!(".{}.2.99-1.tmp", id(3))),
            (Some(id(3)), Some(99))
        );
        assert_eq!(parse_temp(".junk.tmp"), (None, None));
    }
}
