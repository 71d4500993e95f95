//! `MemoryKeys`: a key source held in memory, for tests and development of
//! the KME without a key pool file. Keys are used once; nothing persists.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::qkd::{Direction, KEY_LEN, KeyCounts, KeyError, KeyId, KeySource, LinkKey};

struct State {
    a_to_b: VecDeque<LinkKey>,
    b_to_a: VecDeque<LinkKey>,
    used: HashSet<KeyId>,
    total: u64,
}

impl State {
    fn queue(&mut self, dir: Direction) -> &mut VecDeque<LinkKey> {
        match dir {
            Direction::AToB => &mut self.a_to_b,
            Direction::BToA => &mut self.b_to_a,
        }
    }
}

/// An in-memory key source with fixed keys per direction.
pub struct MemoryKeys {
    link: String,
    state: Mutex<State>,
}

/// A random key with a random (version 4) UUID.
pub fn random_key() -> Result<LinkKey, getrandom::Error> {
    let mut id = [0u8; 16];
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut key[..])?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(LinkKey { id: KeyId(id), key })
}

impl MemoryKeys {
    /// A source holding these keys.
    pub fn new(link: impl Into<String>, a_to_b: Vec<LinkKey>, b_to_a: Vec<LinkKey>) -> MemoryKeys {
        let total = (a_to_b.len() + b_to_a.len()) as u64;
        MemoryKeys {
            link: link.into(),
            state: Mutex::new(State {
                a_to_b: a_to_b.into(),
                b_to_a: b_to_a.into(),
                used: HashSet::new(),
                total,
            }),
        }
    }

    /// A source with `per_direction` random keys each way.
    pub fn random(
        link: impl Into<String>,
        per_direction: usize,
    ) -> Result<MemoryKeys, getrandom::Error> {
        let gen_keys = || {
            (0..per_direction)
                .map(|_| random_key())
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(MemoryKeys::new(link, gen_keys()?, gen_keys()?))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, KeyError> {
        self.state.lock().map_err(|_| KeyError::Source {
            link: self.link.clone(),
            source_name: self.describe(),
            detail: "lock poisoned".into(),
        })
    }
}

impl KeySource for MemoryKeys {
    fn link(&self) -> &str {
        &self.link
    }

    fn describe(&self) -> String {
        "in-memory test keys".into()
    }

    fn next_key(&self, dir: Direction) -> Result<LinkKey, KeyError> {
        let mut s = self.lock()?;
        let key = s
            .queue(dir)
            .pop_front()
            .ok_or_else(|| KeyError::Exhausted {
                link: self.link.clone(),
                detail: format!("in-memory keys, {dir:?}"),
                remedy: "make a source with more keys".into(),
            })?;
        s.used.insert(key.id);
        Ok(key)
    }

    fn take_key(&self, dir: Direction, id: &KeyId) -> Result<LinkKey, KeyError> {
        let mut s = self.lock()?;
        let link = self.link.clone();
        if let Some(i) = s.queue(dir).iter().position(|k| k.id == *id) {
            let key = s.queue(dir).remove(i);
            s.used.insert(*id);
            return key.ok_or(KeyError::Unknown { link, id: *id });
        }
        if s.queue(dir.reverse()).iter().any(|k| k.id == *id) {
            return Err(KeyError::WrongDirection { link, id: *id });
        }
        if s.used.contains(id) {
            return Err(KeyError::Used { link, id: *id });
        }
        Err(KeyError::Unknown { link, id: *id })
    }

    fn counts(&self) -> Result<KeyCounts, KeyError> {
        let s = self.lock()?;
        let left = (s.a_to_b.len() + s.b_to_a.len()) as u64;
        Ok(KeyCounts {
            left,
            used: s.total - left,
            total: s.total,
        })
    }
}
