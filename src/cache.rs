//! A small, thread-safe LRU cache bounded by the bytes it holds, for
//! verified chunks and decrypted segments on the mount's read path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

struct Entry<V> {
    value: Arc<V>,
    cost: usize,
    used: u64,
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    bytes: usize,
    clock: u64,
}

/// LRU cache holding at most `budget` bytes of values.
pub struct ByteLru<K, V> {
    inner: Mutex<Inner<K, V>>,
    budget: usize,
}

impl<K: Eq + Hash + Clone, V> ByteLru<K, V> {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        ByteLru {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value for `key`, if cached (and marks it recently used).
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        g.map.get_mut(key).map(|e| {
            e.used = now;
            Arc::clone(&e.value)
        })
    }

    /// Caches `value` (of `cost` bytes) under `key`, evicting the least
    /// recently used entries beyond the budget.
    pub fn put(&self, key: K, value: Arc<V>, cost: usize) {
        if cost > self.budget {
            return;
        }
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        if let Some(old) = g.map.insert(
            key,
            Entry {
                value,
                cost,
                used: now,
            },
        ) {
            g.bytes -= old.cost;
        }
        g.bytes += cost;
        while g.bytes > self.budget {
            let Some(oldest) = g
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = g.map.remove(&oldest) {
                g.bytes -= e.cost;
            }
        }
    }

    /// Drops every entry whose key matches.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        let mut g = self.lock();
        let drop: Vec<K> = g.map.keys().filter(|k| !keep(k)).cloned().collect();
        for k in drop {
            if let Some(e) = g.map.remove(&k) {
                g.bytes -= e.cost;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_beyond_budget() {
        let c: ByteLru<u32, Vec<u8>> = ByteLru::new(30);
        c.put(1, Arc::new(vec![0; 10]), 10);
        c.put(2, Arc::new(vec![0; 10]), 10);
        c.put(3, Arc::new(vec![0; 10]), 10);
        assert!(c.get(&1).is_some());
        c.put(4, Arc::new(vec![0; 10]), 10);
        assert!(c.get(&2).is_none(), "2 was least recently used");
        assert!(c.get(&1).is_some() && c.get(&3).is_some() && c.get(&4).is_some());
        c.put(5, Arc::new(vec![0; 100]), 100);
        assert!(c.get(&5).is_none(), "larger than the whole budget");
        c.retain(|k| *k != 1);
        assert!(c.get(&1).is_none());
    }
}
