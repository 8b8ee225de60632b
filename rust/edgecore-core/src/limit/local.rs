//! The in-process limiter: a sharded table of GCRA states.
//!
//! - Keys are stored as a 128-bit seeded hash, not as strings: 24 bytes per key, no allocation
//!   per new key, and a client cannot pick keys that collide (the seeds are random per process).
//!   Two live keys would have to collide on 128 bits to share a bucket.
//! - 64 shards, each a `parking_lot::Mutex` on its own cache line: a check locks one shard, so
//!   checks are exact under concurrency (read-decide-write is atomic per key) and there is no
//!   global lock. Contention only happens between checks that land on the same shard.
//! - Memory is bounded: a shard that reaches its sweep threshold drops idle entries (`tat <= now`,
//!   which decide exactly like absent ones — see `gcra`); if a flood of distinct active keys
//!   still fills it to `max_keys / shards`, the entries closest to idle are dropped first (those
//!   clients get a fresh bucket: bounded memory wins over exactness for a flood beyond the cap).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::gcra::{Gcra, Outcome};

const SHARDS: usize = 64;

/// A cache-line-aligned shard, so two cores updating neighbouring shards do not share a line.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// Keys are already uniform hashes: the map uses them as they are.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

#[derive(Default, Clone, Copy)]
struct PassThroughState;

impl BuildHasher for PassThroughState {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

struct Shard {
    map: HashMap<(u64, u64), u64, PassThroughState>,
    sweep_at: usize,
}

/// The in-process limiter.
pub struct LocalLimiter {
    gcra: Gcra,
    shards: Box<[Padded]>,
    seeds: (foldhash::quality::RandomState, foldhash::quality::RandomState),
    cap_per_shard: usize,
    epoch: Instant,
    /// Nanoseconds the clock was moved forward ([`LocalLimiter::advance_clock`]; tests).
    skew: AtomicU64,
}

/// Smallest sweep threshold per shard.
const MIN_SWEEP: usize = 1024;

impl LocalLimiter {
    /// A limiter for `gcra` holding at most `max_keys` keys.
    pub fn new(gcra: Gcra, max_keys: usize) -> Self {
        let cap_per_shard = (max_keys / SHARDS).max(16);
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    map: HashMap::with_hasher(PassThroughState),
                    sweep_at: MIN_SWEEP.min(cap_per_shard),
                }))
            })
            .collect();
        LocalLimiter {
            gcra,
            shards,
            seeds: Default::default(),
            cap_per_shard,
            epoch: Instant::now(),
            skew: AtomicU64::new(0),
        }
    }

    /// The algorithm parameters.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Nanoseconds on the limiter's monotonic clock (never 0: 0 means "no state").
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1 + self.skew.load(Ordering::Relaxed)
    }

    /// Moves the limiter's clock forward by `ns` (a test's virtual time: buckets refill).
    pub fn advance_clock(&self, ns: u64) {
        self.skew.fetch_add(ns, Ordering::Relaxed);
    }

    fn key(&self, key: &[u8]) -> (u64, u64) {
        (self.seeds.0.hash_one(key), self.seeds.1.hash_one(key))
    }

    /// Checks and, when allowed, consumes `cost` tokens for `key` at `now` (ns).
    pub fn check_at(&self, key: &[u8], cost: u64, now: u64) -> Outcome {
        let k = self.key(key);
        let shard = &self.shards[(k.1 >> 58) as usize % SHARDS].0;
        let mut s = shard.lock();
        let tat = s.map.get(&k).copied().unwrap_or(0);
        let (outcome, new_tat) = self.gcra.check(tat, now, cost);
        if outcome.allowed && new_tat != tat {
            if tat == 0 && s.map.len() >= s.sweep_at {
                s.sweep(now, self.gcra, self.cap_per_shard);
            }
            s.map.insert(k, new_tat);
        }
        outcome
    }

    /// Number of keys held (including idle ones not yet swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle entry now (a sweep normally runs when a shard grows).
    pub fn sweep(&self, now: u64) {
        for s in self.shards.iter() {
            s.0.lock().sweep(now, self.gcra, self.cap_per_shard);
        }
    }
}

impl Shard {
    fn sweep(&mut self, now: u64, gcra: Gcra, cap: usize) {
        self.map.retain(|_, tat| *tat > now);
        if self.map.len() >= cap {
            // Still full of active keys: drop the half-refilled ones first, then anything.
            let half = gcra.interval.saturating_mul(gcra.burst) / 2;
            self.map.retain(|_, tat| *tat > now.saturating_add(half));
            if self.map.len() >= cap {
                let mut n = 0;
                self.map.retain(|_, _| {
                    n += 1;
                    n % 2 == 0
                });
            }
        }
        self.map.shrink_to(self.map.len() * 2);
        self.sweep_at = (self.map.len() * 2).clamp(MIN_SWEEP.min(cap), cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn keys_are_independent() {
        let l = LocalLimiter::new(Gcra::new(2, SEC, 2), 1000);
        assert!(l.check_at(b"a", 2, SEC).allowed);
        assert!(!l.check_at(b"a", 1, SEC).allowed);
        assert!(l.check_at(b"b", 1, SEC).allowed);
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_unique_keys() {
        let l = LocalLimiter::new(Gcra::new(10, SEC, 10), 10_000);
        for i in 0..200_000u64 {
            l.check_at(&i.to_le_bytes(), 1, SEC);
        }
        assert!(l.len() <= 10_000 + SHARDS, "{}", l.len());
    }

    #[test]
    fn idle_keys_are_swept() {
        let l = LocalLimiter::new(Gcra::new(10, SEC, 10), 1 << 20);
        for i in 0..5000u64 {
            l.check_at(&i.to_le_bytes(), 1, SEC);
        }
        l.sweep(10 * SEC);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn exact_under_real_thread_concurrency() {
        // 4 threads hammer one key over a simulated 2 s: admitted == burst + rate * elapsed.
        let l = Arc::new(LocalLimiter::new(Gcra::new(1000, SEC, 50), 1000));
        let clock = Arc::new(AtomicU64::new(SEC));
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, clock, admitted) = (l.clone(), clock.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..200_000 {
                        let now = clock.fetch_add(2_500, Ordering::Relaxed);
                        if l.check_at(b"k", 1, now).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let elapsed = clock.load(Ordering::Relaxed) - SEC;
        let expected = 50 + elapsed / (SEC / 1000);
        let got = admitted.load(Ordering::Relaxed);
        // Clock values interleave between threads, so allow one interval of slack.
        assert!(
            got <= expected + 1 && got + 4 >= expected,
            "admitted {got}, expected {expected}"
        );
    }
}
