//! Choosing the `n` distinct nodes of a new object, at random per object
//! (the paper sends the blocks "randomly" to the node cluster), preferring
//! nodes that currently look healthy.

use std::sync::Arc;

use crate::node::{Node, NodeHealth};

/// A uniform random index below `bound` (OS RNG, rejection sampling).
fn below(bound: usize) -> usize {
    let bound = bound as u64;
    let zone = u64::MAX - u64::MAX % bound;
    loop {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            return 0;
        }
        let v = u64::from_le_bytes(b);
        if v < zone {
            return (v % bound) as usize;
        }
    }
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, below(i + 1));
    }
}

/// `n` distinct nodes: healthy ones first, each group in random order.
/// Shard `i` goes to the `i`-th node returned.
///
/// Health the nodes checked recently is taken as it is; the others are
/// checked at once, one thread per node: a node that is unreachable costs
/// one connect timeout per write, not one per such node. (Almost every
/// write finds every answer fresh, and then starts no thread.)
pub(super) fn choose(nodes: &[Arc<dyn Node>], n: usize) -> Vec<Arc<dyn Node>> {
    let cached: Vec<Option<bool>> = nodes
        .iter()
        .map(|node| node.cached_health().map(|h| h == NodeHealth::Ok))
        .collect();
    let unknown = cached.iter().filter(|c| c.is_none()).count();
    let ok: Vec<bool> = if unknown <= 1 {
        nodes
            .iter()
            .zip(&cached)
            .map(|(node, c)| c.unwrap_or_else(|| node.health() == NodeHealth::Ok))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let checks: Vec<_> = nodes
                .iter()
                .zip(&cached)
                .map(|(node, c)| match c {
                    Some(ok) => Ok(*ok),
                    None => Err(scope.spawn(move || node.health() == NodeHealth::Ok)),
                })
                .collect();
            checks
                .into_iter()
                .map(|c| match c {
                    Ok(ok) => ok,
                    Err(h) => h.join().unwrap_or(false),
                })
                .collect()
        })
    };
    let mut healthy: Vec<Arc<dyn Node>> = Vec::with_capacity(nodes.len());
    let mut other: Vec<Arc<dyn Node>> = Vec::new();
    for (node, ok) in nodes.iter().zip(ok) {
        if ok {
            healthy.push(Arc::clone(node));
        } else {
            other.push(Arc::clone(node));
        }
    }
    shuffle(&mut healthy);
    shuffle(&mut other);
    healthy.extend(other);
    healthy.truncate(n);
    // Shard positions must not reveal which nodes were healthy.
    shuffle(&mut healthy);
    healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_shuffle_permutes() {
        for b in 1..20 {
            assert!(below(b) < b);
        }
        let mut v: Vec<u32> = (0..50).collect();
        shuffle(&mut v);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }
}
