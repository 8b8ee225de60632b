//! A sharded LRU bounded by bytes (and optionally by entry count), with per-entry expiry.
//!
//! Invariants:
//! - each shard holds at most `max_bytes / shards` bytes (sum of entry weights, which count the
//!   key, the value and a fixed per-entry overhead), so the whole cache never exceeds `max_bytes`;
//! - an entry heavier than one shard's budget is refused rather than emptying the shard;
//! - `get` never returns an expired entry (expired entries found on the way are dropped);
//! - one shard lock per operation; shards are cache-line aligned; `purge` visits every shard.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

/// Bytes charged per entry beyond key and value (LRU node, map slot, expiry, allocation headers).
pub const ENTRY_OVERHEAD: usize = 96;

/// Something with a size in bytes.
pub trait Weighted {
    /// Bytes this value holds.
    fn weight(&self) -> usize;
}

struct Slot<V> {
    value: V,
    expires: f64,
    weight: usize,
}

struct Shard<V> {
    lru: LruCache<Box<str>, Slot<V>>,
    bytes: usize,
}

#[repr(align(128))]
struct Padded<V>(Mutex<Shard<V>>);

/// The cache store. `V` is cheap to clone (an `Arc` or a `Py`).
pub struct ShardedLru<V> {
    shards: Box<[Padded<V>]>,
    hasher: foldhash::fast::RandomState,
    shard_bytes: usize,
    shard_entries: Option<usize>,
    /// Entries evicted to make room. Relaxed: a statistic.
    evictions: AtomicU64,
}

impl<V: Weighted> ShardedLru<V> {
    /// A store of at most `max_bytes` (and `max_entries` when given). Small caches get fewer
    /// shards so that one shard can still hold a large response.
    pub fn new(max_bytes: usize, max_entries: Option<usize>) -> Self {
        let n = (max_bytes / (4 << 20)).clamp(1, 16).next_power_of_two().min(16);
        let shards = (0..n)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    lru: LruCache::unbounded(),
                    bytes: 0,
                }))
            })
            .collect();
        ShardedLru {
            shards,
            hasher: Default::default(),
            shard_bytes: max_bytes / n,
            shard_entries: max_entries.map(|m| m.div_ceil(n).max(1)),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard<V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)].0
    }

    /// Applies `f` to the value for `key` if it has not expired at `now` (seconds; None: the
    /// wall clock, read cheaply but exactly), under the shard lock (no clone of the value);
    /// marks it recently used.
    pub fn get_map<R>(&self, key: &str, now: Option<f64>, f: impl FnOnce(&V) -> R) -> Option<R> {
        let mut s = self.shard(key).lock();
        let live = |exp: f64| match now {
            Some(t) => t < exp,
            None => crate::clock::before(exp),
        };
        s.lru
            .get(key)
            .filter(|slot| live(slot.expires))
            .map(|slot| f(&slot.value))
    }

    /// Stores `value` until `expires` (seconds). Returns false when it is too large to store.
    pub fn put(&self, key: &str, value: V, expires: f64) -> bool {
        let weight = value.weight() + key.len() + ENTRY_OVERHEAD;
        if weight > self.shard_bytes {
            return false;
        }
        let mut s = self.shard(key).lock();
        if let Some(old) = s.lru.put(key.into(), Slot { value, expires, weight }) {
            s.bytes -= old.weight;
        }
        s.bytes += weight;
        let mut evicted = 0;
        while s.bytes > self.shard_bytes || self.shard_entries.is_some_and(|m| s.lru.len() > m) {
            match s.lru.pop_lru() {
                Some((_, slot)) => {
                    s.bytes -= slot.weight;
                    evicted += 1;
                }
                None => break,
            }
        }
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        true
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&self, key: &str) -> bool {
        let mut s = self.shard(key).lock();
        match s.lru.pop(key) {
            Some(slot) => {
                s.bytes -= slot.weight;
                true
            }
            None => false,
        }
    }

    /// Removes every key starting with `prefix`; returns how many.
    pub fn purge(&self, prefix: &str) -> usize {
        self.purge_where(|k| k.starts_with(prefix))
    }

    /// Removes every key for which `doomed` is true; returns how many.
    pub fn purge_where(&self, doomed: impl Fn(&str) -> bool) -> usize {
        let mut n = 0;
        for p in self.shards.iter() {
            let mut s = p.0.lock();
            let doomed: Vec<Box<str>> = s
                .lru
                .iter()
                .filter(|(k, _)| doomed(k))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(slot) = s.lru.pop(&k) {
                    s.bytes -= slot.weight;
                    n += 1;
                }
            }
        }
        n
    }

    /// Number of entries (expired ones included until they are found or evicted).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().lru.len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged against the budget.
    pub fn size_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().bytes).sum()
    }

    /// Entries evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.shard_bytes * self.shards.len()
    }
}

impl<V: Clone + Weighted> ShardedLru<V> {
    /// The value for `key` if it has not expired at `now` (seconds); marks it recently used.
    pub fn get(&self, key: &str, now: f64) -> Option<V> {
        self.get_map(key, Some(now), V::clone)
    }

    /// The value and its expiry time, expired or not (for stale serving); marks it recently used.
    pub fn get_with_expiry(&self, key: &str) -> Option<(V, f64)> {
        let mut s = self.shard(key).lock();
        s.lru.get(key).map(|slot| (slot.value.clone(), slot.expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct W(usize);
    impl Weighted for W {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn lru_order_and_byte_bound() {
        let c = ShardedLru::new(1000, None);
        assert!(c.put("a", W(300), 10.0));
        assert!(c.put("b", W(300), 10.0));
        assert!(c.get("a", 0.0).is_some()); // a is now most recent
        assert!(c.put("c", W(300), 10.0)); // evicts b
        assert!(c.get("b", 0.0).is_none());
        assert!(c.get("a", 0.0).is_some());
        assert!(c.size_bytes() <= 1000);
        assert!(!c.put("huge", W(5000), 10.0));
    }

    #[test]
    fn expiry_purge_and_entry_cap() {
        let c = ShardedLru::new(1 << 20, Some(2));
        c.put("x/1", W(1), 5.0);
        c.put("x/2", W(1), 50.0);
        assert!(c.get("x/1", 6.0).is_none());
        assert!(c.get("x/2", 6.0).is_some());
        c.put("y/1", W(1), 50.0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.purge("x/"), 1);
        assert_eq!(c.purge(""), 1);
        assert_eq!(c.size_bytes(), 0);
    }
}
