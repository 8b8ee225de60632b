//! The in-process KV store: sharded maps with per-entry deadlines and an optional byte budget.
//!
//! Expiry is checked on every read (exact to the clock); expired entries are also swept when a
//! put would exceed the budget. When the budget is still exceeded after the sweep, the put fails
//! with a `StoreError` — a KV store does not silently drop live data to make room (unlike a cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::{Error, Result};

const SHARDS: usize = 16;
/// Bytes charged per entry beyond key and value (map slot, deadline, allocation headers).
const ENTRY_OVERHEAD: usize = 64;

struct Entry {
    value: Bytes,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

/// The in-process store.
pub struct MemoryKv {
    shards: Box<[Mutex<HashMap<String, Entry>>]>,
    hasher: foldhash::fast::RandomState,
    max_bytes: Option<usize>,
    /// Bytes charged. Relaxed is enough: each update happens under the shard lock of its key,
    /// and the budget check tolerates concurrent puts overshooting by one value each.
    used: AtomicUsize,
    /// Nanoseconds the store's clock was moved forward ([`MemoryKv::advance_clock`]; tests).
    skew: AtomicU64,
}

/// The integer a KV value holds (ASCII decimal, as Redis stores counters).
fn parse_int(key: &str, value: &[u8]) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Error::store(format!("KV value of {key:?} is not an integer")))
}

fn charge(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl MemoryKv {
    /// A store holding at most `max_bytes` (None: unbounded).
    pub fn new(max_bytes: Option<usize>) -> Self {
        MemoryKv {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            max_bytes,
            used: AtomicUsize::new(0),
            skew: AtomicU64::new(0),
        }
    }

    /// The store's clock: monotonic time, plus what tests moved it by.
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_nanos(self.skew.load(Ordering::Relaxed))
    }

    /// Moves the store's clock forward by `by` (a test's virtual time: TTLs run out).
    pub fn advance_clock(&self, by: Duration) {
        self.skew.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Entry>> {
        use std::hash::BuildHasher;
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Bytes charged against the budget.
    pub fn size_bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The value of `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let now = self.now();
        let mut map = self.shard(key).lock();
        match map.get(key) {
            Some(e) if e.live(now) => Some(e.value.clone()),
            Some(_) => {
                let e = map.remove(key).expect("present");
                self.used.fetch_sub(charge(key, &e.value), Ordering::Relaxed);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key`, expiring after `ttl` when given.
    pub fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let now = self.now();
        let expires = ttl.map(|t| now + t);
        let cost = charge(key, &value);
        if let Some(max) = self.max_bytes {
            if cost > max {
                return Err(Error::store(format!(
                    "value of {} bytes exceeds the KV budget of {max} bytes",
                    value.len()
                )));
            }
            if self.used.load(Ordering::Relaxed) + cost > max {
                self.sweep(now);
                let replacing = self
                    .shard(key)
                    .lock()
                    .get(key)
                    .map(|e| charge(key, &e.value))
                    .unwrap_or(0);
                if self.used.load(Ordering::Relaxed) - replacing + cost > max {
                    return Err(Error::store(format!("KV byte budget of {max} bytes is full")));
                }
            }
        }
        let mut map = self.shard(key).lock();
        if let Some(old) = map.insert(key.to_owned(), Entry { value, expires }) {
            self.used.fetch_sub(charge(key, &old.value), Ordering::Relaxed);
        }
        self.used.fetch_add(cost, Ordering::Relaxed);
        Ok(())
    }

    /// Adds `by` to the integer stored at `key` (absent or expired: 0) and returns the sum,
    /// atomically; a new key gets `ttl`, an existing one keeps its deadline (as Redis's
    /// `INCRBY` does).
    pub fn incr(&self, key: &str, by: i64, ttl: Option<Duration>) -> Result<i64> {
        let now = self.now();
        let mut map = self.shard(key).lock();
        let (current, expires, old_cost) = match map.get(key) {
            Some(e) if e.live(now) => (parse_int(key, &e.value)?, e.expires, charge(key, &e.value)),
            Some(e) => (0, ttl.map(|t| now + t), charge(key, &e.value)),
            None => (0, ttl.map(|t| now + t), 0),
        };
        let sum = current
            .checked_add(by)
            .ok_or_else(|| Error::store(format!("KV incr of {key:?} would overflow")))?;
        let value = Bytes::from(sum.to_string());
        let cost = charge(key, &value);
        if let Some(max) = self.max_bytes {
            if self.used.load(Ordering::Relaxed) - old_cost + cost > max {
                return Err(Error::store(format!("KV byte budget of {max} bytes is full")));
            }
        }
        map.insert(key.to_owned(), Entry { value, expires });
        self.used.fetch_sub(old_cost, Ordering::Relaxed);
        self.used.fetch_add(cost, Ordering::Relaxed);
        Ok(sum)
    }

    /// Removes `key`; returns whether a live value was there.
    pub fn delete(&self, key: &str) -> bool {
        let now = self.now();
        match self.shard(key).lock().remove(key) {
            Some(e) => {
                self.used.fetch_sub(charge(key, &e.value), Ordering::Relaxed);
                e.live(now)
            }
            None => false,
        }
    }

    /// Live keys starting with `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let now = self.now();
        let mut keys: Vec<String> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        keys
    }

    fn sweep(&self, now: Instant) {
        for s in self.shards.iter() {
            s.lock().retain(|k, e| {
                let live = e.live(now);
                if !live {
                    self.used.fetch_sub(charge(k, &e.value), Ordering::Relaxed);
                }
                live
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_exact_and_budget_refuses() {
        let kv = MemoryKv::new(Some(1000));
        kv.put("a", Bytes::from_static(b"1"), Some(Duration::from_millis(30)))
            .unwrap();
        assert_eq!(kv.get("a").as_deref(), Some(&b"1"[..]));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.size_bytes(), 0);
        kv.put("big", Bytes::from(vec![0u8; 800]), None).unwrap();
        assert!(kv
            .put("big2", Bytes::from(vec![0u8; 800]), None)
            .unwrap_err()
            .context
            .contains("budget"));
        kv.put("big", Bytes::from(vec![0u8; 900]), None).unwrap();
        assert_eq!(kv.list(""), vec!["big".to_owned()]);
        assert!(kv.delete("big"));
        assert_eq!(kv.size_bytes(), 0);
    }
}
