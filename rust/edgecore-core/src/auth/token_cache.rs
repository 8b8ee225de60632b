//! A cache of verified tokens, as Envoy's `jwt_cache_config`: the same token comes with every
//! request of a session, and its signature need not be checked again.
//!
//! - Keyed by the token bytes themselves (one seeded hash, then a comparison), so no collision
//!   can hand one token's claims to another.
//! - Only verified tokens are stored. The time claims (`exp`, `nbf`, `iat`) are kept as numbers and
//!   checked against the clock on every hit, with the verifier's leeway; an expired entry is
//!   dropped.
//! - Each entry records the key-set generation it was verified with: a JWK Set rotation makes
//!   every older entry a miss (the token is verified again against the new keys).
//! - Bounded: 16 shards of `capacity / 16` entries, one lock on one shard per lookup; a full shard
//!   drops its expired entries, then (if still full) every other entry.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

/// A verified token's cached result: whatever the caller derived from the claims.
struct Entry<V> {
    hash: u64,
    token: Box<[u8]>,
    generation: u64,
    /// `exp` (seconds since the epoch), for eviction.
    exp: Option<f64>,
    value: Arc<V>,
}

const SHARDS: usize = 16;

/// A bounded map from token bytes to a verified result.
pub struct TokenCache<V> {
    shards: Box<[Mutex<HashTable<Entry<V>>>]>,
    per_shard: usize,
    /// Random per process: a client cannot aim its tokens at one shard.
    seed: foldhash::quality::RandomState,
}

impl<V> TokenCache<V> {
    /// A cache of at most `capacity` tokens (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            seed: Default::default(),
        }
    }

    fn slot(&self, token: &[u8]) -> (u64, &Mutex<HashTable<Entry<V>>>) {
        let h = self.seed.hash_one(token);
        (h, &self.shards[(h >> 60) as usize % SHARDS])
    }

    /// The cached result for `token` verified under key-set `generation`, if any.
    pub fn get(&self, token: &[u8], generation: u64) -> Option<Arc<V>> {
        let (h, shard) = self.slot(token);
        let shard = shard.lock();
        let e = shard.find(h, |e| *e.token == *token)?;
        (e.generation == generation).then(|| e.value.clone())
    }

    /// Stores the result of a successful verification. `exp` is the token's expiry, used to
    /// choose what to evict (the caller still checks the time claims on every hit).
    pub fn insert(&self, token: &[u8], generation: u64, exp: Option<f64>, value: Arc<V>, now: f64) {
        let (h, shard) = self.slot(token);
        let mut shard = shard.lock();
        let entry = Entry {
            hash: h,
            token: token.into(),
            generation,
            exp,
            value,
        };
        match shard.entry(h, |e| *e.token == *token, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(_) => {
                if shard.len() >= self.per_shard {
                    shard.retain(|e| e.exp.is_none_or(|exp| exp > now));
                }
                if shard.len() >= self.per_shard {
                    // Every other one: amortised O(1) per insert whatever a flood does.
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

    /// Drops `token` (its time claims failed on a hit).
    pub fn remove(&self, token: &[u8]) {
        let (h, shard) = self.slot(token);
        if let Ok(o) = shard.lock().find_entry(h, |e| *e.token == *token) {
            o.remove();
        }
    }

    /// Tokens held.
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
    fn a_hit_needs_the_same_token_and_generation() {
        let c = TokenCache::new(64);
        c.insert(b"a.b.c", 1, None, Arc::new("alice"), 0.0);
        assert_eq!(c.get(b"a.b.c", 1).as_deref(), Some(&"alice"));
        assert!(c.get(b"a.b.c", 2).is_none(), "a rotated key set misses");
        assert!(c.get(b"a.b.d", 1).is_none());
        c.remove(b"a.b.c");
        assert!(c.get(b"a.b.c", 1).is_none());
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_go_first() {
        let c = TokenCache::new(32);
        for i in 0..10_000u32 {
            c.insert(format!("t{i}").as_bytes(), 0, Some(100.0), Arc::new(i), 50.0);
        }
        assert!(c.len() <= 32, "{}", c.len());
        // Once time passes every expiry, a new token evicts the expired ones from its shard.
        let c = TokenCache::new(16);
        for i in 0..16u32 {
            c.insert(format!("t{i}").as_bytes(), 0, Some(100.0), Arc::new(i), 50.0);
        }
        c.insert(b"fresh", 0, Some(1000.0), Arc::new(99), 200.0);
        assert_eq!(c.get(b"fresh", 0).as_deref(), Some(&99));
    }
}
