//! Reading one shard end to end and checking it against its manifest: the
//! header must describe the shard the manifest expects, every chunk must
//! hash to the manifest's chunk hash, and the file must have the expected
//! size. One chunk is in memory at a time, so a node's worker uses one
//! chunk of memory whatever the object size.

use crate::dispersal::Manifest;
use crate::maint::{Progress, ProgressFn};
use crate::node::{HEADER_LEN, Node, NodeErrorKind, ShardKey};
use crate::rmht;

/// Which stripes of a shard are unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadStripes {
    /// Every stripe (the shard is gone or unreachable).
    All,
    /// Only these (sorted); empty when the shard is fine chunk by chunk.
    Some(Vec<u64>),
}

/// What a shard turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Every chunk verified, header and size right.
    Ok,
    /// No shard file (or its node is gone); why.
    Missing(String),
    /// The file is there but damaged; what is wrong.
    Corrupt(String),
}

/// The result of checking one shard.
#[derive(Debug, Clone)]
pub struct ShardCheck {
    /// Index of the object in the scrub's manifest list.
    pub object: usize,
    /// Shard index.
    pub index: usize,
    /// Verdict.
    pub state: ShardState,
    /// Stripes whose chunk from this shard cannot be used.
    pub bad: BadStripes,
    /// RMHT root over the verified payload, when asked for and every
    /// chunk verified (adds audit roots to v1 manifests).
    pub root: Option<[u8; 32]>,
    /// Bytes read from the node.
    pub bytes_read: u64,
    /// The key piece this shard should hold, when scrub rebuilt it from
    /// the keystore's `B` (its own piece was found damaged).
    pub piece: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl ShardCheck {
    /// A shard that could not be read at all.
    pub fn missing(object: usize, index: usize, why: String) -> ShardCheck {
        ShardCheck {
            object,
            index,
            state: ShardState::Missing(why),
            bad: BadStripes::All,
            root: None,
            bytes_read: 0,
            piece: None,
        }
    }
}

/// One shard to check.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// Its object's manifest.
    pub manifest: &'a Manifest,
    /// Index of that manifest in the scrub's list.
    pub object: usize,
    /// Shard index.
    pub index: usize,
    /// File size from the node's listing, if the listing had the shard.
    pub listed_size: Option<u64>,
}

/// Reads the shard of `job` from `node` and checks it. `offline` is the
/// node's health problem, if any (named in "missing" verdicts);
/// `want_root` asks for the shard's RMHT root. Every chunk, read or not,
/// advances `progress` by its size so the bar ends at its total.
pub fn check_shard(
    node: &dyn Node,
    job: &Job<'_>,
    offline: Option<&str>,
    want_root: bool,
    progress: ProgressFn<'_>,
) -> ShardCheck {
    let Job {
        manifest: m,
        object,
        index,
        listed_size,
    } = *job;
    let layout = &m.layout;
    let key = ShardKey {
        object: m.id,
        index: index as u8,
    };
    // The node's own problem is in its row of the report; name it briefly.
    let gone = |why: &str| match offline {
        Some(h) => format!("{why} (node {})", h.split(':').next().unwrap_or(h)),
        None => why.to_string(),
    };
    let shard_bytes = layout.shard_len();
    let mut problems = Vec::new();
    match node.read_header(key) {
        Ok(h) => {
            let want = m.shard_header(index as u8);
            if h != want {
                problems.push(format!(
                    "its header describes k={} n={} chunk={} stripes={} length={} key piece={}, the manifest k={} n={} chunk={} stripes={} length={} key piece={}",
                    h.k,
                    h.n,
                    h.chunk,
                    h.stripes,
                    h.object_len,
                    h.piece,
                    want.k,
                    want.n,
                    want.chunk,
                    want.stripes,
                    want.object_len,
                    want.piece
                ));
            }
        }
        Err(e) if e.is_not_found() => {
            progress(Progress::Advance { bytes: shard_bytes });
            return ShardCheck::missing(object, index, gone("no shard file"));
        }
        Err(e) => match e.kind.unreachable() {
            Some(why) => {
                progress(Progress::Advance { bytes: shard_bytes });
                return ShardCheck::missing(object, index, gone(&format!("node offline: {why}")));
            }
            None => problems.push(format!("header: {}", e.kind)),
        },
    }
    let expected = m.shard_file_len();
    if let Some(size) = listed_size.filter(|s| *s != expected) {
        problems.push(format!(
            "the file is {size} bytes, {expected} expected ({})",
            if size < expected {
                "truncated"
            } else {
                "data past its end"
            }
        ));
    }
    let chunk = layout.chunk as usize;
    let mut buf = vec![0u8; chunk];
    let mut tree = want_root.then(|| rmht::Builder::new(rmht::BLOCK));
    let mut bad = Vec::new();
    let mut hash_fails = 0u64;
    let mut read_fails: Vec<String> = Vec::new();
    let mut bytes_read = 0u64;
    let mut s = 0u64;
    while s < layout.stripes {
        match node.read_at(key, layout.chunk_offset(s), &mut buf) {
            Ok(()) => {
                bytes_read += chunk as u64;
                if blake3::hash(&buf).as_bytes() == m.hash(s, index) {
                    if let Some(t) = tree.as_mut() {
                        t.update(&buf);
                    }
                } else {
                    hash_fails += 1;
                    bad.push(s);
                    tree = None;
                }
            }
            Err(e) if e.is_not_found() => {
                // Gone while being read (deleted meanwhile).
                let rest = (layout.stripes - s) * chunk as u64;
                progress(Progress::Advance { bytes: rest });
                return ShardCheck {
                    bytes_read,
                    ..ShardCheck::missing(object, index, gone("the shard file disappeared"))
                };
            }
            Err(e) => {
                // Past the end of a file the listing showed shorter: every
                // later chunk is missing too (decided from the size, not
                // from the node's message).
                let chunk_end = HEADER_LEN as u64 + layout.chunk_offset(s) + chunk as u64;
                let truncated = matches!(&e.kind, NodeErrorKind::Corrupt(_))
                    && listed_size.is_some_and(|size| size < chunk_end);
                if let Some(why) = e.kind.unreachable() {
                    let rest = (layout.stripes - s) * chunk as u64;
                    progress(Progress::Advance { bytes: rest });
                    return ShardCheck {
                        bytes_read,
                        ..ShardCheck::missing(object, index, format!("node offline: {why}"))
                    };
                }
                tree = None;
                if truncated {
                    // Every later chunk is past the end too.
                    read_fails.push(format!("truncated: stripes {s}.. are past its end"));
                    bad.extend(s..layout.stripes);
                    progress(Progress::Advance {
                        bytes: (layout.stripes - s) * chunk as u64,
                    });
                    break;
                }
                if read_fails.len() < 3 {
                    read_fails.push(format!("stripe {s}: {}", e.kind));
                }
                bad.push(s);
            }
        }
        progress(Progress::Advance {
            bytes: chunk as u64,
        });
        s += 1;
    }
    if hash_fails > 0 {
        problems.push(format!(
            "{hash_fails} of {} chunks fail their hash (stripes {})",
            layout.stripes,
            list_some(&bad, 8)
        ));
    }
    problems.extend(read_fails);
    let state = if problems.is_empty() {
        ShardState::Ok
    } else {
        ShardState::Corrupt(problems.join("; "))
    };
    let root = match (&state, tree) {
        (ShardState::Ok, Some(t)) => Some(t.finish().0),
        _ => None,
    };
    ShardCheck {
        object,
        index,
        state,
        bad: BadStripes::Some(bad),
        root,
        bytes_read,
        piece: None,
    }
}

/// `1, 5, 9 ...` (at most `max` numbers).
fn list_some(v: &[u64], max: usize) -> String {
    let mut s: Vec<String> = v
        .iter()
        .take(max)
        .map(std::string::ToString::to_string)
        .collect();
    if v.len() > max {
        s.push("...".into());
    }
    s.join(", ")
}

/// The first stripe of an object that has fewer than `k` usable chunks,
/// with how many it has, given each shard's bad stripes (`None`: shard
/// unknown, counted as bad everywhere).
pub fn first_short_stripe(
    k: usize,
    n: usize,
    stripes: u64,
    bad: &[Option<&BadStripes>],
) -> Option<(u64, usize)> {
    let all = bad
        .iter()
        .filter(|b| matches!(b, None | Some(BadStripes::All)))
        .count();
    let base = n.saturating_sub(all);
    if base < k {
        return (stripes > 0).then_some((0, base));
    }
    let mut counts: std::collections::BTreeMap<u64, usize> = Default::default();
    for b in bad.iter().flatten() {
        if let BadStripes::Some(v) = b {
            for s in v {
                *counts.entry(*s).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .find(|(_, c)| base - c < k)
        .map(|(s, c)| (s, base - c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_stripes_are_found() {
        let ok = BadStripes::Some(vec![]);
        let some = BadStripes::Some(vec![2, 7]);
        let other = BadStripes::Some(vec![7]);
        // 3 of 5: two whole shards gone is survivable.
        let bad = [
            Some(&BadStripes::All),
            None,
            Some(&ok),
            Some(&ok),
            Some(&ok),
        ];
        assert_eq!(first_short_stripe(3, 5, 10, &bad), None);
        // ... plus one chunk of stripe 2 is not.
        let bad = [
            Some(&BadStripes::All),
            None,
            Some(&some),
            Some(&ok),
            Some(&ok),
        ];
        assert_eq!(first_short_stripe(3, 5, 10, &bad), Some((2, 2)));
        // Scattered damage, at most two per stripe: fine; three in stripe 7: short.
        let bad = [Some(&some), Some(&other), Some(&ok), Some(&ok), Some(&ok)];
        assert_eq!(first_short_stripe(3, 5, 10, &bad), None);
        let bad = [
            Some(&some),
            Some(&other),
            Some(&other),
            Some(&ok),
            Some(&ok),
        ];
        assert_eq!(first_short_stripe(3, 5, 10, &bad), Some((7, 2)));
        // Three whole shards gone.
        let all = [
            Some(&BadStripes::All),
            Some(&BadStripes::All),
            None,
            Some(&ok),
            Some(&ok),
        ];
        assert_eq!(first_short_stripe(3, 5, 10, &all), Some((0, 2)));
    }
}
