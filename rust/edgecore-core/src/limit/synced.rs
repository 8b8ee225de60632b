//! Local-first shared limits (`sync=` seconds): each node decides from its own GCRA state, so a
//! check never waits on Redis, and reconciles with the shared store in the background every
//! `sync` seconds.
//!
//! Per key the node keeps its theoretical arrival time (TAT, on its own clock) and the cost it
//! admitted since the last reconciliation. A reconciliation sends every key with admitted cost
//! to Redis at once (concurrent commands on the one multiplexed connection: one round trip), each
//! as an atomic script that adds the cost to the key's shared TAT (never refusing: the requests
//! were admitted already) and answers how far that TAT is ahead of Redis's clock. The node then
//! takes the shared TAT plus what it admitted meanwhile as its own, never less than it had. So
//! every node learns, each interval, what all of them admitted.
//!
//! The bound (README): over any window, N nodes admit at most what one strict limiter would plus,
//! for each other node, what it admits before its admissions reach the others: a burst when a
//! key is new to it, and the limit's rate over two intervals (`2 · sync · limit/period`).
//! If Redis is unreachable, nodes keep deciding alone (each enforces the limit on its own) and
//! the admitted cost waits for the next reconciliation that succeeds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::gcra::{Gcra, Outcome};
use crate::store::RedisConn;

const SHARDS: usize = 32;

/// Adds ARGV[2] requests' worth (µs, ARGV[1] each) to the key's TAT; returns TAT - now (µs).
const CONSUME: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return tat - now
"#;

type Table = HashMap<Box<str>, Entry, foldhash::fast::RandomState>;

#[derive(Clone, Copy)]
struct Entry {
    /// On this node's clock (ns).
    tat: u64,
    /// Cost admitted here since the last reconciliation.
    pending: u64,
}

/// A local-first limiter: local decisions, background reconciliation.
pub struct SyncedLimiter {
    gcra: Gcra,
    epoch: Instant,
    shards: Box<[Mutex<Table>]>,
    max_per_shard: usize,
    conn: Arc<RedisConn>,
    prefix: String,
    /// Reconciliations that failed. Relaxed: a statistic.
    failures: AtomicU64,
    /// Reconciliations done. Relaxed: a statistic.
    rounds: AtomicU64,
}

impl SyncedLimiter {
    /// A limiter for `gcra` reconciling through `conn` every `sync` (the task runs on the
    /// background runtime and ends when the limiter is dropped). `period_ms` names the key space,
    /// as for the strict limiter: both modes of one limit share the same Redis keys.
    pub fn start(gcra: Gcra, period_ms: u64, conn: Arc<RedisConn>, sync: Duration, max_keys: usize) -> Arc<Self> {
        let me = Arc::new(SyncedLimiter {
            gcra,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            max_per_shard: (max_keys / SHARDS).max(1),
            conn,
            prefix: format!("edgecore:rl:{}/{}/{}:", gcra.limit, period_ms, gcra.burst),
            failures: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&me);
        crate::rt::background().spawn(reconcile_every(weak, sync));
        me
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn shard(&self, key: &str) -> &Mutex<Table> {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        &self.shards[(h >> 59) as usize % SHARDS]
    }

    /// Decides here, now (never waits on Redis).
    pub fn check(&self, key: &str, cost: u64) -> Outcome {
        let now = self.now();
        let mut shard = self.shard(key).lock();
        if let Some(e) = shard.get_mut(key) {
            let (outcome, new_tat) = self.gcra.check(e.tat, now, cost);
            if outcome.allowed {
                e.tat = new_tat;
                e.pending += cost;
            }
            return outcome;
        }
        let (outcome, new_tat) = self.gcra.check(0, now, cost);
        if outcome.allowed {
            if shard.len() >= self.max_per_shard {
                // Full: idle keys go first; a key that still finds no room is decided alone.
                shard.retain(|_, e| e.pending > 0 || e.tat > now);
                if shard.len() >= self.max_per_shard {
                    return outcome;
                }
            }
            shard.insert(
                key.into(),
                Entry {
                    tat: new_tat,
                    pending: cost,
                },
            );
        }
        outcome
    }

    /// Reconciliations done and failed so far.
    pub fn rounds(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// Sends what was admitted since the last round and takes in what every node admitted.
    pub async fn reconcile(&self) {
        let mut batch: Vec<(Box<str>, u64)> = Vec::new();
        for shard in self.shards.iter() {
            let mut s = shard.lock();
            let now = self.now();
            s.retain(|_, e| e.pending > 0 || e.tat > now);
            for (k, e) in s.iter_mut().filter(|(_, e)| e.pending > 0) {
                batch.push((k.clone(), std::mem::take(&mut e.pending)));
            }
        }
        if batch.is_empty() {
            return;
        }
        let interval_us = (self.gcra.interval / 1000).max(1);
        let calls = batch.iter().map(|(key, cost)| {
            let rkey = format!("{}{{{key}}}", self.prefix);
            let cost = *cost;
            self.conn.run(move |mut c| async move {
                redis::cmd("EVAL")
                    .arg(CONSUME)
                    .arg(1)
                    .arg(rkey)
                    .arg(interval_us)
                    .arg(cost)
                    .query_async::<i64>(&mut c)
                    .await
            })
        });
        let replies = futures_util::future::join_all(calls).await;
        self.rounds.fetch_add(1, Ordering::Relaxed);
        for ((key, cost), reply) in batch.into_iter().zip(replies) {
            let mut s = self.shard(&key).lock();
            let now = self.now();
            let e = s.entry(key).or_insert(Entry { tat: now, pending: 0 });
            match reply {
                // The shared TAT, plus what this node admitted since the batch was taken.
                Ok(ahead_us) => {
                    let shared = now + ahead_us.max(0) as u64 * 1000 + e.pending * self.gcra.interval;
                    e.tat = e.tat.max(shared);
                }
                // Not sent: it goes with the next round.
                Err(_) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    e.pending += cost;
                }
            }
        }
    }
}

async fn reconcile_every(limiter: Weak<SyncedLimiter>, sync: Duration) {
    let mut tick = tokio::time::interval(sync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(l) = limiter.upgrade() else { return };
        l.reconcile().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_keys: usize) -> Arc<SyncedLimiter> {
        let conn = RedisConn::new("redis://127.0.0.1:1/0", Duration::from_millis(20)).unwrap();
        SyncedLimiter::start(
            Gcra::new(3, 60_000_000_000, 3),
            60_000,
            conn,
            Duration::from_secs(60),
            max_keys,
        )
    }

    #[test]
    fn decisions_are_local_and_admitted_cost_waits_for_the_next_round() {
        let l = limiter(1000);
        let allowed: Vec<bool> = (0..5).map(|_| l.check("k", 1).allowed).collect();
        assert_eq!(allowed, [true, true, true, false, false]);
        assert!(l.check("other", 1).allowed);
        let pending: u64 = l
            .shards
            .iter()
            .flat_map(|s| s.lock().values().map(|e| e.pending).collect::<Vec<_>>())
            .sum();
        assert_eq!(pending, 4, "three for k, one for other: refusals cost nothing");
        // Redis is unreachable: the round fails and the cost is kept for the next one.
        crate::rt::background().block_on(l.reconcile());
        let pending: u64 = l
            .shards
            .iter()
            .flat_map(|s| s.lock().values().map(|e| e.pending).collect::<Vec<_>>())
            .sum();
        assert_eq!(pending, 4);
        assert_eq!(l.rounds(), (1, 2));
    }

    #[test]
    fn the_table_is_bounded_and_a_key_without_room_is_decided_alone() {
        let l = limiter(SHARDS);
        for i in 0..1000 {
            assert!(l.check(&format!("key-{i}"), 1).allowed);
        }
        let held: usize = l.shards.iter().map(|s| s.lock().len()).sum();
        assert!(held <= SHARDS, "{held}");
    }
}
