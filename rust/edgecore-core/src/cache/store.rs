//! A sharded LRU bounded by bytes (and optionally by entry count), with per-entry expiry.
//!
//! Invariants:
//! - each shard holds at most `max_bytes / shards` bytes (sum of entry weights, which count the
//!   key, the value and a fixed per-entry overhead), so the whole cache never exceeds `max_bytes`;
//! - an entry heavier than one shard's budget is refused rather than emptying the shard;
//! - `get` never returns an expired entry;
//! - one shard lock per operation; shards are cache-line aligned; `purge` visits every shard.
//!
//! Layout: each shard is a slab of nodes (a `Vec`) linked into an LRU list by `u32` indices, with
//! a `hashbrown::HashTable` of indices as the map (keys are compared in the slab, hashes are
//! stored with the nodes). A full cache evicts before it inserts and reuses the evicted node and
//! its key buffer, so a steady stream of puts allocates nothing: no per-entry node, no per-key
//! string. Deleted and purged nodes give their key buffers back and wait on a free list.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use parking_lot::Mutex;

/// Bytes charged per entry beyond key and value (slab node, table slot, allocation headers).
pub const ENTRY_OVERHEAD: usize = 96;

/// Something with a size in bytes.
pub trait Weighted {
    /// Bytes this value holds.
    fn weight(&self) -> usize;
}

const NIL: u32 = u32::MAX;

struct Node<V> {
    /// The key; its buffer is kept when the node is evicted, for the next key.
    key: String,
    hash: u64,
    /// None while the node is on the free list.
    value: Option<V>,
    expires: f64,
    weight: usize,
    /// Toward the most recently used end.
    prev: u32,
    /// Toward the least recently used end.
    next: u32,
}

struct Shard<V> {
    table: HashTable<u32>,
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    bytes: usize,
    len: usize,
    /// Entries evicted to make room (summed over shards when read).
    evictions: u64,
}

impl<V> Shard<V> {
    fn new() -> Self {
        Shard {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            len: 0,
            evictions: 0,
        }
    }

    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&i| {
                let n = &nodes[i as usize];
                n.hash == hash && n.key == key
            })
            .copied()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Takes node `i` out of the map and the list; its value is returned (dropped by the caller,
    /// possibly after the lock). `keep_key` keeps the key buffer for reuse.
    fn remove(&mut self, i: u32, keep_key: bool) -> Option<V> {
        let hash = self.nodes[i as usize].hash;
        if let Ok(entry) = self.table.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.unlink(i);
        let n = &mut self.nodes[i as usize];
        self.bytes -= n.weight;
        self.len -= 1;
        if !keep_key {
            n.key = String::new();
        }
        self.free.push(i);
        n.value.take()
    }

    /// A node for a new entry: a free one (its key buffer reused) or a new one.
    fn insert(&mut self, hash: u64, key: &str, value: V, expires: f64, weight: usize) {
        let i = match self.free.pop() {
            Some(i) => {
                let n = &mut self.nodes[i as usize];
                n.key.clear();
                n.key.push_str(key);
                n.hash = hash;
                n.value = Some(value);
                n.expires = expires;
                n.weight = weight;
                i
            }
            None => {
                let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 entries per shard");
                self.nodes.push(Node {
                    key: key.to_owned(),
                    hash,
                    value: Some(value),
                    expires,
                    weight,
                    prev: NIL,
                    next: NIL,
                });
                i
            }
        };
        let nodes = &self.nodes;
        self.table.insert_unique(hash, i, |&j| nodes[j as usize].hash);
        self.push_front(i);
        self.bytes += weight;
        self.len += 1;
    }
}

#[repr(align(128))]
struct Padded<V>(Mutex<Shard<V>>);

/// The cache store. `V` is cheap to clone (an `Arc` or a `Py`).
pub struct ShardedLru<V> {
    shards: Box<[Padded<V>]>,
    hasher: foldhash::fast::RandomState,
    shard_bytes: usize,
    shard_entries: Option<usize>,
}

impl<V: Weighted> ShardedLru<V> {
    /// A store of at most `max_bytes` (and `max_entries` when given). Small caches get fewer
    /// shards so that one shard can still hold a large response.
    pub fn new(max_bytes: usize, max_entries: Option<usize>) -> Self {
        let n = (max_bytes / (4 << 20)).clamp(1, 16).next_power_of_two().min(16);
        let shards = (0..n).map(|_| Padded(Mutex::new(Shard::new()))).collect();
        ShardedLru {
            shards,
            hasher: Default::default(),
            shard_bytes: max_bytes / n,
            shard_entries: max_entries.map(|m| m.div_ceil(n).max(1)),
        }
    }

    fn locate(&self, key: &str) -> (u64, &Mutex<Shard<V>>) {
        let hash = self.hasher.hash_one(key);
        // The top bits pick the shard; the table uses the low bits (and its control bytes the
        // top 7), so shard choice and bucket choice stay independent.
        let shard = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, &self.shards[shard].0)
    }

    /// Applies `f` to the value for `key` if it has not expired at `now` (seconds; None: the
    /// wall clock, read cheaply but exactly), under the shard lock (no clone of the value);
    /// marks it recently used.
    pub fn get_map<R>(&self, key: &str, now: Option<f64>, f: impl FnOnce(&V) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let mut s = shard.lock();
        let i = s.find(hash, key)?;
        let expires = s.nodes[i as usize].expires;
        let live = match now {
            Some(t) => t < expires,
            None => crate::clock::before(expires),
        };
        if !live {
            return None;
        }
        s.touch(i);
        s.nodes[i as usize].value.as_ref().map(f)
    }

    /// Stores `value` until `expires` (seconds). Returns false when it is too large to store.
    pub fn put(&self, key: &str, value: V, expires: f64) -> bool {
        let weight = value.weight() + key.len() + ENTRY_OVERHEAD;
        if weight > self.shard_bytes {
            return false;
        }
        let (hash, shard) = self.locate(key);
        let mut s = shard.lock();
        let old = if let Some(i) = s.find(hash, key) {
            // Replace in place: same node, same key.
            s.touch(i);
            let n = &mut s.nodes[i as usize];
            let old_weight = std::mem::replace(&mut n.weight, weight);
            n.expires = expires;
            let old = n.value.replace(value);
            s.bytes = s.bytes - old_weight + weight;
            old
        } else {
            // Make room first, so the node just evicted (and its key buffer) takes the new key.
            while s.tail != NIL
                && (s.bytes + weight > self.shard_bytes || self.shard_entries.is_some_and(|m| s.len + 1 > m))
            {
                let t = s.tail;
                drop(s.remove(t, true));
                s.evictions += 1;
            }
            s.insert(hash, key, value, expires, weight);
            None
        };
        // A replaced value that grew may have pushed the shard over: trim from the cold end
        // (never the entry just written, which is at the head).
        while s.bytes > self.shard_bytes && s.tail != s.head {
            let t = s.tail;
            drop(s.remove(t, true));
            s.evictions += 1;
        }
        drop(s);
        drop(old);
        true
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&self, key: &str) -> bool {
        let (hash, shard) = self.locate(key);
        let mut s = shard.lock();
        match s.find(hash, key) {
            Some(i) => {
                let v = s.remove(i, false);
                drop(s);
                drop(v);
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
        self.purge_entries_where(|key, _| doomed(key))
    }

    /// Removes every entry for which `doomed(key, value)` is true; returns how many.
    pub fn purge_entries_where(&self, doomed: impl Fn(&str, &V) -> bool) -> usize {
        let mut n = 0;
        for p in self.shards.iter() {
            let mut s = p.0.lock();
            let mut gone = Vec::new();
            let mut i = s.head;
            while i != NIL {
                let node = &s.nodes[i as usize];
                let next = node.next;
                if node.value.as_ref().is_some_and(|v| doomed(&node.key, v)) {
                    gone.push(i);
                }
                i = next;
            }
            let values: Vec<V> = gone.into_iter().filter_map(|i| s.remove(i, false)).collect();
            n += values.len();
            if s.len == 0 {
                // Everything went: give the slab back too.
                s.nodes = Vec::new();
                s.free = Vec::new();
                s.table = HashTable::new();
            }
            drop(s);
            drop(values);
        }
        n
    }

    /// Number of entries (expired ones included until they are evicted or replaced).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len).sum()
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
        self.shards.iter().map(|s| s.0.lock().evictions).sum()
    }

    /// The largest entry weight that can be stored (a shard's budget).
    pub fn max_entry_bytes(&self) -> usize {
        self.shard_bytes
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
        let (hash, shard) = self.locate(key);
        let mut s = shard.lock();
        let i = s.find(hash, key)?;
        s.touch(i);
        let n = &s.nodes[i as usize];
        n.value.clone().map(|v| (v, n.expires))
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

    /// The slab LRU against a plain model (a list, most recent first) over random operations
    /// on a small key space: same contents, same order of eviction, same bytes.
    #[test]
    fn matches_a_simple_model() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..50 {
            let budget = 2000 + 100 * round;
            let cap = (round % 3 == 0).then_some(5 + round % 7);
            let c = ShardedLru::new(budget, cap);
            assert_eq!(c.shards.len(), 1);
            let mut model: Vec<(String, usize)> = Vec::new(); // (key, value weight), MRU first
            let weight = |k: &str, w: usize| w + k.len() + ENTRY_OVERHEAD;
            for _ in 0..2000 {
                let key = format!("k{}", rand(24));
                match rand(10) {
                    0..=4 => {
                        let w = rand(400) as usize;
                        let stored = c.put(&key, W(w), 100.0);
                        assert_eq!(stored, weight(&key, w) <= budget);
                        if stored {
                            model.retain(|(k, _)| *k != key);
                            model.insert(0, (key.clone(), w));
                            // Evict from the cold end until it fits (never the new entry).
                            let total = |m: &Vec<(String, usize)>| m.iter().map(|(k, w)| weight(k, *w)).sum::<usize>();
                            while model.len() > 1 && (total(&model) > budget || cap.is_some_and(|m| model.len() > m)) {
                                model.pop();
                            }
                        }
                    }
                    5..=7 => {
                        let got = c.get(&key, 0.0).map(|w| w.0);
                        let pos = model.iter().position(|(k, _)| *k == key);
                        assert_eq!(got, pos.map(|p| model[p].1));
                        if let Some(p) = pos {
                            let e = model.remove(p);
                            model.insert(0, e);
                        }
                    }
                    8 => {
                        let was = model.iter().position(|(k, _)| *k == key);
                        assert_eq!(c.delete(&key), was.is_some());
                        if let Some(p) = was {
                            model.remove(p);
                        }
                    }
                    _ => {
                        let prefix = format!("k{}", rand(3) + 1);
                        let before = model.len();
                        model.retain(|(k, _)| !k.starts_with(&prefix));
                        assert_eq!(c.purge(&prefix), before - model.len());
                    }
                }
                assert_eq!(c.len(), model.len());
                assert_eq!(c.size_bytes(), model.iter().map(|(k, w)| weight(k, *w)).sum::<usize>());
                assert!(c.size_bytes() <= budget);
            }
            // The LRU order agrees: walking the list from the head gives the model's order.
            let s = c.shards[0].0.lock();
            let mut order = Vec::new();
            let mut i = s.head;
            while i != NIL {
                order.push(s.nodes[i as usize].key.clone());
                i = s.nodes[i as usize].next;
            }
            assert_eq!(order, model.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
        }
    }
}
