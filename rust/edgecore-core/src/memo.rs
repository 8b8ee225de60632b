//! A bounded memo of verdicts that cost a lookup to compute and repeat from request to request:
//! the geo record of a client IP, whether a User-Agent is a bot.
//!
//! - 16 shards behind their own locks, chosen by a hash seeded per process (a client cannot aim
//!   its keys at one shard); one lock on one shard per lookup, never a global one.
//! - Keys are compared in full after the hash, so a collision never returns another key's value.
//! - Bounded: a full shard drops every other entry (amortised O(1) per insert, whatever a flood
//!   of new keys does), so memory is at most `capacity` entries.
//! - Each entry carries the generation of the data it was computed from; a lookup under another
//!   generation misses (a reloaded database makes every older entry stale at once).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use parking_lot::Mutex;

struct Entry<K, V> {
    hash: u64,
    generation: u64,
    key: K,
    value: V,
}

const SHARDS: usize = 16;

type Shard<K, V> = Mutex<HashTable<Entry<K, V>>>;

/// A bounded, sharded map from keys to cloned values.
pub struct Memo<K, V> {
    shards: Box<[Shard<K, V>]>,
    per_shard: usize,
    seed: foldhash::quality::RandomState,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// A memo of at most `capacity` entries (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Memo {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(2),
            seed: Default::default(),
        }
    }

    fn slot<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &Shard<K, V>) {
        let h = self.seed.hash_one(key);
        (h, &self.shards[(h >> 60) as usize % SHARDS])
    }

    /// The value remembered for `key` under `generation`.
    pub fn get<Q>(&self, key: &Q, generation: u64) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (h, shard) = self.slot(key);
        let shard = shard.lock();
        let e = shard.find(h, |e| e.key.borrow() == key)?;
        (e.generation == generation).then(|| e.value.clone())
    }

    /// Remembers `value` for `key`, computed under `generation` (read before computing it).
    pub fn insert(&self, key: K, generation: u64, value: V) {
        let (h, shard) = self.slot(&key);
        let mut shard = shard.lock();
        let entry = Entry {
            hash: h,
            generation,
            key,
            value,
        };
        match shard.entry(h, |e| e.key == entry.key, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(_) => {
                if shard.len() >= self.per_shard {
                    let mut keep = false;
                    shard.retain(|_| {
                        keep = !keep;
                        keep
                    });
                }
                shard.insert_unique(h, entry, |e| e.hash);
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_key_and_generation() {
        let m: Memo<Box<str>, bool> = Memo::new(64);
        m.insert("curl/8".into(), 0, true);
        assert_eq!(m.get("curl/8", 0), Some(true));
        assert_eq!(m.get("curl/8", 1), None, "another generation misses");
        assert_eq!(m.get("curl/9", 0), None);
        m.insert("curl/8".into(), 1, false);
        assert_eq!(m.get("curl/8", 1), Some(false));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_capacity() {
        let m: Memo<u64, u64> = Memo::new(256);
        for i in 0..100_000u64 {
            m.insert(i, 0, i);
            assert!(m.len() <= 256);
        }
        // The latest key is always there.
        assert_eq!(m.get(&99_999, 0), Some(99_999));
    }
}
