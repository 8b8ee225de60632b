//! Several targets behind one origin name: [`OriginSet`] (compiled once, in the plan) and
//! [`SetHealth`] (its runtime state, in [`crate::server::state::Active`], kept across reloads
//! that leave the set as it was).
//!
//! - **Balancing** ([`super::choose`]): among the targets that are neither ejected nor marked
//!   down by the active health check.
//! - **Passive outlier detection**: `eject_after` consecutive failures (a connect failure, a
//!   timeout, a broken exchange or a 5xx answer) eject a target for `eject_for`, doubled on each
//!   ejection that follows without a success in between, up to `eject_max`; at most
//!   `max_ejected_percent` of the targets (and never the last one) are out at once. An ejected
//!   target comes back when its time is up; one success resets it.
//! - **Retry budget**: retries on a set stay under `budget_ratio` of the requests it has taken,
//!   plus a burst of 10, so a failing origin never sees a retry storm.
//! - **Circuit breaking**: at most `max_requests` requests in flight (until their response
//!   body has been read) and `max_pending` waiting for a connection; over either, the edge
//!   answers 503 at once.
//!
//! A set of one target (a plain origin URL) skips all of it: nothing is counted, and a request
//! costs what it did before sets existed. Requests in flight are counted only when something
//! reads the count (`least_conn`, `random_two`, `max_requests`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::choose::{less_busy, mix, rendezvous, Balance};
use super::origin::Origin;

/// How a set treats failing targets and retries.
#[derive(Debug, Clone)]
pub struct SetPolicy {
    /// Consecutive failures that eject a target (0: never eject).
    pub eject_after: u32,
    /// How long the first ejection lasts; each further one doubles it.
    pub eject_for: Duration,
    /// The longest ejection.
    pub eject_max: Duration,
    /// The share of targets that may be ejected at once, in percent.
    pub max_ejected_percent: u32,
    /// Further targets a failed request may be retried on.
    pub retries: u32,
    /// Retries allowed per request taken (0.2: at most 20% extra), beyond a burst of 10.
    pub budget_ratio: f64,
    /// Requests in flight at most (0: no limit).
    pub max_requests: u32,
    /// Requests waiting for a connection at most (0: no limit).
    pub max_pending: u32,
}

impl Default for SetPolicy {
    fn default() -> Self {
        SetPolicy {
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            eject_max: Duration::from_secs(300),
            max_ejected_percent: 50,
            retries: 1,
            budget_ratio: 0.2,
            max_requests: 0,
            max_pending: 0,
        }
    }
}

/// An active health check: what to ask and how often (run by [`super::checks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The path (and query) asked for, e.g. `/healthz`.
    pub path: http::uri::PathAndQuery,
    /// Time between rounds.
    pub interval: Duration,
    /// Longest wait for an answer.
    pub timeout: Duration,
    /// Successes in a row that bring a down target back.
    pub healthy: u32,
    /// Failures in a row that mark a target down.
    pub unhealthy: u32,
}

/// The targets one origin name stands for.
#[derive(Debug, Clone)]
pub struct OriginSet {
    /// The upstream's name (None for a plain origin URL).
    pub name: Option<String>,
    /// Its targets; each has its own pool (by [`Origin::index`]).
    pub targets: Box<[Origin]>,
    /// Its index among the plan's sets (selects its [`SetHealth`]).
    pub id: usize,
    /// Ejection, retries and circuit breaking.
    pub policy: SetPolicy,
    /// How a target is chosen.
    pub balance: Balance,
    /// Each target's weight (None: all equal).
    pub weights: Option<Box<[u32]>>,
    /// The weighted round-robin order (empty without weights).
    pub schedule: Box<[u16]>,
    /// Each target's hashing seed (from its URL, so order does not matter).
    pub seeds: Box<[u64]>,
    /// The active health check.
    pub check: Option<HealthCheck>,
}

impl OriginSet {
    /// A set of one: a plain origin URL.
    pub fn single(origin: Origin, id: usize) -> OriginSet {
        OriginSet::new(None, Box::new([origin]), id)
    }

    /// A set of `targets`, balanced round robin with the default policy.
    pub fn new(name: Option<String>, targets: Box<[Origin]>, id: usize) -> OriginSet {
        let seeds = targets
            .iter()
            .map(|t| xxhash_rust::xxh3::xxh3_64(format!("{t:?}").as_bytes()))
            .collect();
        OriginSet {
            name,
            targets,
            id,
            policy: SetPolicy::default(),
            balance: Balance::RoundRobin,
            weights: None,
            schedule: Box::new([]),
            seeds,
            check: None,
        }
    }

    /// Whether there is a choice to make (and health to keep).
    pub fn is_balanced(&self) -> bool {
        self.targets.len() > 1
    }

    /// Whether requests in flight are counted (something reads the count).
    pub fn counts(&self) -> bool {
        self.policy.max_requests > 0 || (self.is_balanced() && self.balance.counts())
    }

    /// Whether `other` is this set as a new plan states it (same targets and settings): its
    /// health carries over a reload.
    pub fn same_as(&self, other: &OriginSet) -> bool {
        format!(
            "{:?}",
            (
                &self.name,
                &self.targets,
                &self.policy,
                &self.balance,
                &self.weights,
                &self.check
            )
        ) == format!(
            "{:?}",
            (
                &other.name,
                &other.targets,
                &other.policy,
                &other.balance,
                &other.weights,
                &other.check
            )
        )
    }

    fn weight(&self, i: usize) -> u32 {
        self.weights.as_ref().map_or(1, |w| w[i])
    }

    /// The name shown in metrics: the upstream's, or the single target's URL.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{:?}", self.targets[0]))
    }
}

/// Bursts of retries allowed on top of the budget ratio.
const RETRY_BURST: f64 = 10.0;

/// One target's health.
#[derive(Debug, Default)]
pub struct TargetHealth {
    /// Failures in a row.
    failures: AtomicU32,
    /// Ejections in a row (without a success between them).
    ejections: AtomicU32,
    /// Ejected until this many milliseconds after [`epoch`] (0: not ejected).
    until_ms: AtomicU64,
    /// Ejections so far (metrics).
    pub ejected_total: AtomicU64,
    /// Marked down by the active health check.
    pub down: AtomicBool,
    /// Requests in flight (counted only when [`OriginSet::counts`]).
    pub active: AtomicU32,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

impl TargetHealth {
    /// Whether the target is out at `now` (milliseconds after the epoch).
    fn ejected_at(&self, now: u64) -> bool {
        self.until_ms.load(Ordering::Relaxed) > now
    }

    /// Whether the target is out now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_at(now_ms())
    }

    /// Whether the target takes requests at `now`: not ejected, not down.
    fn usable_at(&self, now: u64) -> bool {
        !self.ejected_at(now) && !self.down.load(Ordering::Relaxed)
    }

    /// Whether the target takes requests now.
    pub fn is_usable(&self) -> bool {
        self.usable_at(now_ms())
    }
}

/// A set's runtime state: its targets' health, the round-robin position, the retries spent and
/// the requests in flight.
#[derive(Debug)]
pub struct SetHealth {
    /// By position in [`OriginSet::targets`].
    pub targets: Box<[TargetHealth]>,
    next: AtomicU64,
    retries: AtomicU64,
    /// Requests in flight (counted only when [`OriginSet::counts`]).
    active: AtomicU32,
    /// Requests waiting for a connection (counted only with `max_pending`).
    pending: AtomicU32,
    /// Requests refused by the circuit breaker (metrics).
    pub overflows: AtomicU64,
}

/// Why the circuit breaker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `max_requests` are in flight.
    Requests,
    /// `max_pending` wait for a connection.
    Pending,
}

/// A request in flight on a set (and on its target once picked): released when dropped, which
/// the response body does when it has been read or abandoned.
#[derive(Debug)]
pub struct Busy {
    health: Arc<SetHealth>,
    at: Option<usize>,
}

impl Busy {
    /// The request goes to target `at` now (a retry moves it).
    pub fn assign(&mut self, at: usize) {
        if let Some(prev) = self.at.replace(at) {
            self.health.targets[prev].active.fetch_sub(1, Ordering::Relaxed);
        }
        self.health.targets[at].active.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(at) = self.at {
            self.health.targets[at].active.fetch_sub(1, Ordering::Relaxed);
        }
        self.health.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request waiting for a connection: released when dropped.
pub struct Pending<'h>(Option<&'h SetHealth>);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.0 {
            h.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl SetHealth {
    /// Fresh health for `set` (every target in).
    pub fn new(set: &OriginSet) -> SetHealth {
        SetHealth {
            targets: set.targets.iter().map(|_| TargetHealth::default()).collect(),
            next: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            active: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    /// Admits a request to the set: None when nothing counts requests, Err when `max_requests`
    /// are in flight already.
    pub fn admit(self: &Arc<Self>, set: &OriginSet) -> Result<Option<Busy>, Overflow> {
        if !set.counts() {
            return Ok(None);
        }
        let before = self.active.fetch_add(1, Ordering::Relaxed);
        let busy = Busy {
            health: self.clone(),
            at: None,
        };
        let max = set.policy.max_requests;
        if max > 0 && before >= max {
            drop(busy);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return Err(Overflow::Requests);
        }
        Ok(Some(busy))
    }

    /// Marks a request as waiting for a connection: Err when `max_pending` wait already.
    pub fn wait(&self, set: &OriginSet) -> Result<Pending<'_>, Overflow> {
        let max = set.policy.max_pending;
        if max == 0 {
            return Ok(Pending(None));
        }
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        let pending = Pending(Some(self));
        if before >= max {
            drop(pending);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return Err(Overflow::Pending);
        }
        Ok(pending)
    }

    /// Requests in flight on the set (0 when not counted).
    pub fn in_flight(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// The target for the next request by the set's balancing, among those usable (not
    /// ejected, not down), skipping `avoid` (the position that just failed); `key` is the
    /// request's hashed key for a hashing balancer. With every other target out, the least bad
    /// choice: the next one that is not `avoid`.
    pub fn pick<'s>(&self, set: &'s OriginSet, avoid: Option<usize>, key: Option<u64>) -> (usize, &'s Origin) {
        let n = set.targets.len();
        if n == 1 {
            return (0, &set.targets[0]);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        // The clock only while some target has an ejection on record (a success clears it).
        let recorded = self.targets.iter().any(|t| t.until_ms.load(Ordering::Relaxed) != 0);
        let now = if recorded { now_ms() } else { 0 };
        let all_in = !recorded && avoid.is_none() && self.targets.iter().all(|t| !t.down.load(Ordering::Relaxed));
        if all_in && set.balance == Balance::RoundRobin {
            // The common case: every target in, plain turns.
            let at = if set.schedule.is_empty() {
                start % n
            } else {
                set.schedule[start % set.schedule.len()] as usize
            };
            return (at, &set.targets[at]);
        }
        let usable = |i: usize| Some(i) != avoid && self.targets[i].usable_at(now);
        let chosen = match (&set.balance, key) {
            (Balance::Hash(_), Some(key)) => rendezvous(key, &set.seeds, set.weights.as_deref(), usable),
            (Balance::LeastConn, _) => self.least_busy(set, (0..n).map(|k| (start + k) % n).filter(|&i| usable(i))),
            (Balance::RandomTwo, _) => {
                let r = mix(start as u64 ^ set.seeds[0]);
                let (a, b) = ((r as usize) % n, ((r >> 32) as usize) % n);
                let both = [a, if b == a { (a + 1) % n } else { b }];
                self.least_busy(set, both.into_iter().filter(|&i| usable(i)))
                    .or_else(|| in_turn(set, start, usable))
            }
            _ => in_turn(set, start, usable),
        };
        let chosen = chosen.unwrap_or_else(|| {
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| Some(i) != avoid)
                .unwrap_or(start % n)
        });
        (chosen, &set.targets[chosen])
    }

    /// The least busy of `candidates` for their weights (the first of equals).
    fn least_busy(&self, set: &OriginSet, candidates: impl Iterator<Item = usize>) -> Option<usize> {
        candidates.fold(None, |best, i| match best {
            Some(b)
                if !less_busy(
                    (
                        self.targets[i].active.load(Ordering::Relaxed),
                        self.targets[b].active.load(Ordering::Relaxed),
                    ),
                    (set.weight(i), set.weight(b)),
                ) =>
            {
                Some(b)
            }
            _ => Some(i),
        })
    }

    /// Records how the target at `at` did. Only balanced sets keep health.
    pub fn report(&self, set: &OriginSet, at: usize, ok: bool) {
        if !set.is_balanced() {
            return;
        }
        let t = &self.targets[at];
        if ok {
            // Reads first: a healthy target's line is not written on every request.
            if t.failures.load(Ordering::Relaxed) != 0 {
                t.failures.store(0, Ordering::Relaxed);
            }
            if t.until_ms.load(Ordering::Relaxed) != 0 && !t.is_ejected() {
                t.ejections.store(0, Ordering::Relaxed);
                t.until_ms.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failures = t.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let p = &set.policy;
        if p.eject_after == 0 || failures < p.eject_after {
            return;
        }
        let now = now_ms();
        if t.ejected_at(now) {
            return;
        }
        let out = self.targets.iter().filter(|h| h.ejected_at(now)).count();
        let n = self.targets.len();
        let cap = (n * p.max_ejected_percent as usize / 100).clamp(1, n - 1);
        if out >= cap {
            return;
        }
        let k = t.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = p.eject_for.saturating_mul(1 << k).min(p.eject_max);
        t.until_ms.store(now + length.as_millis() as u64, Ordering::Relaxed);
        t.failures.store(0, Ordering::Relaxed);
        t.ejected_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget: false when retries would exceed `budget_ratio` of the
    /// requests taken (plus the burst).
    pub fn take_retry(&self, set: &OriginSet) -> bool {
        // Every pick advances `next`, a retry's too: the requests are the picks less the retries.
        let spent = self.retries.fetch_add(1, Ordering::Relaxed);
        let requests = self.next.load(Ordering::Relaxed).saturating_sub(spent) as f64;
        let allowed = requests * set.policy.budget_ratio + RETRY_BURST;
        if (spent as f64) < allowed {
            return true;
        }
        self.retries.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Retries spent so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Round robin over the usable targets: the `start`-th of them (so the usable ones share evenly
/// what an ejected one would have taken), or with weights the next usable one in the schedule.
fn in_turn(set: &OriginSet, start: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    let n = set.targets.len();
    if set.schedule.is_empty() {
        let count = (0..n).filter(|&i| usable(i)).count();
        return (count > 0).then(|| (0..n).filter(|&i| usable(i)).nth(start % count).expect("counted"));
    }
    let len = set.schedule.len();
    (0..len)
        .map(|k| set.schedule[(start + k) % len] as usize)
        .find(|&i| usable(i))
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
