//! Several targets behind one origin name: [`OriginSet`] (compiled once, in the plan) and
//! [`SetHealth`] (its runtime state, in [`crate::server::state::Active`]).
//!
//! - **Balancing**: round robin over the targets that are not ejected.
//! - **Passive outlier detection**: `eject_after` consecutive failures (a connect failure, a
//!   timeout, a broken exchange or a 5xx answer) eject a target for `eject_for`, doubled on each
//!   ejection that follows without a success in between, up to `eject_max`; at most
//!   `max_ejected_percent` of the targets (and never the last one) are out at once. An ejected
//!   target comes back when its time is up; one success resets it.
//! - **Retry budget**: retries on a set stay under `budget_ratio` of the requests it has taken,
//!   plus a burst of 10, so a failing origin never sees a retry storm.
//!
//! A set of one target (a plain origin URL) skips all of it: nothing is counted, and a request
//! costs what it did before sets existed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        }
    }
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
    /// Ejection and retries.
    pub policy: SetPolicy,
}

impl OriginSet {
    /// A set of one: a plain origin URL.
    pub fn single(origin: Origin, id: usize) -> OriginSet {
        OriginSet {
            name: None,
            targets: Box::new([origin]),
            id,
            policy: SetPolicy::default(),
        }
    }

    /// Whether there is a choice to make (and health to keep).
    pub fn is_balanced(&self) -> bool {
        self.targets.len() > 1
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
}

/// A set's runtime state: its targets' health, the round-robin position and the retries spent.
#[derive(Debug)]
pub struct SetHealth {
    /// By position in [`OriginSet::targets`].
    pub targets: Box<[TargetHealth]>,
    next: AtomicU64,
    retries: AtomicU64,
}

impl SetHealth {
    /// Fresh health for `set` (every target in).
    pub fn new(set: &OriginSet) -> SetHealth {
        SetHealth {
            targets: set.targets.iter().map(|_| TargetHealth::default()).collect(),
            next: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// The target for the next request: round robin over those not ejected, skipping `avoid`
    /// (the position that just failed). With every other target out, the least bad choice: the
    /// next one that is not `avoid`.
    pub fn pick<'s>(&self, set: &'s OriginSet, avoid: Option<usize>) -> (usize, &'s Origin) {
        let n = set.targets.len();
        if n == 1 {
            return (0, &set.targets[0]);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let now = now_ms();
        // The k-th of the usable targets, so the healthy ones share evenly what an ejected one
        // would have taken (skipping to the next one would give its share to its neighbour).
        let usable = |i: &usize| Some(*i) != avoid && !self.targets[*i].ejected_at(now);
        let count = (0..n).filter(usable).count();
        let chosen = if count > 0 {
            (0..n).filter(usable).nth(start % count).expect("count of them")
        } else {
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| Some(i) != avoid)
                .unwrap_or(start % n)
        };
        (chosen, &set.targets[chosen])
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
            if t.ejections.load(Ordering::Relaxed) != 0 && !t.is_ejected() {
                t.ejections.store(0, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize, policy: SetPolicy) -> OriginSet {
        OriginSet {
            name: Some("api".into()),
            targets: (0..n)
                .map(|i| Origin::parse(&format!("http://10.0.0.{i}:80"), i).unwrap())
                .collect(),
            id: 0,
            policy,
        }
    }

    #[test]
    fn round_robin_skips_ejected_targets_and_the_one_that_failed() {
        let s = set(3, SetPolicy::default());
        let h = SetHealth::new(&s);
        let picks: Vec<usize> = (0..6).map(|_| h.pick(&s, None).0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        for _ in 0..3 {
            h.report(&s, 1, false);
        }
        assert!(h.targets[1].is_ejected());
        assert_eq!(h.targets[1].ejected_total.load(Ordering::Relaxed), 1);
        assert!(
            (0..30).all(|_| h.pick(&s, None).0 != 1),
            "an ejected target gets no traffic"
        );
        assert!((0..30).all(|_| h.pick(&s, Some(0)).0 == 2));
        // A success in between resets the count: two failures, a success, two failures stay in.
        h.report(&s, 0, false);
        h.report(&s, 0, false);
        h.report(&s, 0, true);
        h.report(&s, 0, false);
        h.report(&s, 0, false);
        assert!(!h.targets[0].is_ejected());
    }

    #[test]
    fn never_more_than_the_cap_and_never_the_last_target() {
        let s = set(2, SetPolicy::default());
        let h = SetHealth::new(&s);
        for at in [0, 1] {
            for _ in 0..10 {
                h.report(&s, at, false);
            }
        }
        assert_eq!(h.targets.iter().filter(|t| t.is_ejected()).count(), 1);
        // With the other target out, requests still go somewhere.
        assert_eq!(h.pick(&s, None).0, 1);
        assert_eq!(h.pick(&s, Some(1)).0, 0, "the least bad choice");
    }

    #[test]
    fn ejections_grow_and_one_target_keeps_no_health() {
        let p = SetPolicy {
            eject_after: 1,
            eject_for: Duration::from_millis(1),
            eject_max: Duration::from_millis(3),
            ..SetPolicy::default()
        };
        let s = set(3, p);
        let h = SetHealth::new(&s);
        h.report(&s, 0, false);
        let first = h.targets[0].until_ms.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        h.report(&s, 0, false);
        let second = h.targets[0].until_ms.load(Ordering::Relaxed);
        assert!(second >= first + 2, "the second ejection is longer");
        let one = OriginSet::single(Origin::parse("http://a:1", 0).unwrap(), 0);
        let h1 = SetHealth::new(&one);
        for _ in 0..10 {
            h1.report(&one, 0, false);
        }
        assert!(!h1.targets[0].is_ejected());
    }

    #[test]
    fn the_retry_budget_is_a_share_of_the_requests() {
        let s = set(2, SetPolicy::default());
        let h = SetHealth::new(&s);
        // 100 requests that all fail and ask for a retry (each retry picks a target too).
        let mut granted = 0;
        for _ in 0..100 {
            h.pick(&s, None);
            if h.take_retry(&s) {
                granted += 1;
                h.pick(&s, Some(0));
            }
        }
        assert!(
            (28..=30).contains(&granted),
            "20% of 100 requests plus the burst of 10: {granted}"
        );
        assert_eq!(h.retries(), granted);
    }
}
