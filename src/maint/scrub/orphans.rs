//! Which files on a node belong to no object: pure rules over a node's
//! listing, the manifests and the objects in flight.
//!
//! The caller lists the nodes first and reads the intent log and the
//! manifests afterwards. A shard listed then belongs to an object that was
//! in flight when the log was read (its `+` precedes its first shard), or
//! that was named before, and then has a manifest (the manifest is
//! published before the intent is settled), or that was destroyed (its
//! files are garbage anyway). So "no manifest and not in flight" is a
//! sound orphan test, never a race with a write.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::ObjectId;
use crate::dispersal::Manifest;
use crate::node::{Listing, ShardKey};

/// A file on a node that no manifest accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// A committed shard file.
    Shard {
        /// The shard.
        key: ShardKey,
        /// Why it is an orphan.
        why: String,
    },
    /// A temporary file of a write that is not in flight.
    Leftover {
        /// Its path on the node.
        path: PathBuf,
        /// The object its name carries, if it parses.
        object: Option<ObjectId>,
        /// True when purging its object on this node is safe (no manifest:
        /// the purge cannot take a live shard with it).
        removable: bool,
    },
}

/// The object id in a temporary shard file name `.<hex>.<i>.<tag>.tmp`.
pub fn leftover_object(path: &Path) -> Option<ObjectId> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (hex, _) = rest.split_once('.')?;
    ObjectId::from_hex(hex)
}

/// The orphans on node `node` given its `listing`. `unreadable` are
/// objects whose manifest record is damaged: their files are never
/// orphans (the manifest may be restored from a backup).
pub fn find(
    node: &str,
    listing: &Listing,
    manifests: &HashMap<ObjectId, &Manifest>,
    in_flight: &BTreeSet<ObjectId>,
    unreadable: &HashSet<ObjectId>,
) -> Vec<Orphan> {
    let mut out = Vec::new();
    for s in &listing.shards {
        let id = s.key.object;
        if in_flight.contains(&id) || unreadable.contains(&id) {
            continue;
        }
        let why = match manifests.get(&id) {
            None => "no object has this id (no manifest, not being written)".to_string(),
            Some(m) => match m.placement.get(s.key.index as usize) {
                None => format!(
                    "the object has {} shards, not {}",
                    m.layout.n,
                    s.key.index + 1
                ),
                Some(p) if p != node => format!("the manifest places this shard on {p}"),
                Some(_) => continue,
            },
        };
        out.push(Orphan::Shard { key: s.key, why });
    }
    for path in &listing.leftovers {
        let object = leftover_object(path);
        if object.is_some_and(|id| in_flight.contains(&id)) {
            continue;
        }
        let removable =
            object.is_some_and(|id| !manifests.contains_key(&id) && !unreadable.contains(&id));
        out.push(Orphan::Leftover {
            path: path.clone(),
            object,
            removable,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::StripeLayout;
    use crate::node::StoredShard;

    fn manifest(id: ObjectId) -> Manifest {
        let layout = StripeLayout::plan(3, 5, 1000, 4096).expect("a valid layout");
        Manifest {
            id,
            layout,
            plain_len: 900,
            created: 0,
            placement: (0..5).map(|i| format!("node-{i}")).collect(),
            missing: 0,
            hashes: vec![[0; 32]; 5],
            block: 4096,
            roots: vec![[0; 32]; 5],
            piece: 0,
        }
    }

    fn shard(id: ObjectId, index: u8) -> StoredShard {
        StoredShard {
            key: ShardKey { object: id, index },
            size: 100,
        }
    }

    #[test]
    fn orphans_by_rule() {
        let (known, gone, flying, damaged) = (
            ObjectId([1; 16]),
            ObjectId([2; 16]),
            ObjectId([3; 16]),
            ObjectId([4; 16]),
        );
        let m = manifest(known);
        let manifests: HashMap<ObjectId, &Manifest> = [(known, &m)].into_iter().collect();
        let in_flight: BTreeSet<ObjectId> = [flying].into_iter().collect();
        let unreadable: HashSet<ObjectId> = [damaged].into_iter().collect();
        let tmp = |id: ObjectId| PathBuf::from(format!("/n/shards/01/.{id}.2.77.tmp"));
        let listing = Listing {
            shards: vec![
                shard(known, 2),   // where the manifest says: fine
                shard(known, 3),   // shard 3 belongs on node-3: orphan
                shard(known, 9),   // no such index: orphan
                shard(gone, 0),    // unknown object: orphan
                shard(flying, 0),  // being written: not an orphan
                shard(damaged, 0), // manifest damaged: kept
            ],
            leftovers: vec![
                tmp(gone),
                tmp(known),
                tmp(flying),
                PathBuf::from("/n/shards/01/.junk.tmp"),
            ],
            dead_bytes: 0,
        };
        let found = find("node-2", &listing, &manifests, &in_flight, &unreadable);
        let shards: Vec<ShardKey> = found
            .iter()
            .filter_map(|o| match o {
                Orphan::Shard { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(
            shards,
            vec![shard(known, 3).key, shard(known, 9).key, shard(gone, 0).key]
        );
        let leftovers: Vec<(Option<ObjectId>, bool)> = found
            .iter()
            .filter_map(|o| match o {
                Orphan::Leftover {
                    object, removable, ..
                } => Some((*object, *removable)),
                _ => None,
            })
            .collect();
        assert_eq!(
            leftovers,
            vec![(Some(gone), true), (Some(known), false), (None, false)]
        );
    }
}
