//! GCRA (the generic cell rate algorithm), the token bucket expressed as one timestamp.
//!
//! State: the theoretical arrival time `tat` (ns). With emission interval `T = period / limit` and
//! tolerance `tau = T * burst`, a request of `cost` is allowed iff `now >= max(tat, now) + T*cost - tau`,
//! and then `tat` becomes `max(tat, now) + T*cost`. This admits a burst of `burst` at once and
//! `limit` per `period` after that — exactly a token bucket of capacity `burst` refilled at
//! `limit/period` — with one integer of state and no floating point.
//!
//! Invariant used for eviction: a state with `tat <= now` decides exactly like no state at all,
//! so idle entries can be dropped at any moment without changing any decision.

/// Limiter parameters in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds per token (`period / limit`).
    pub interval: u64,
    /// Bucket capacity in tokens.
    pub burst: u64,
    /// Configured limit (tokens per period), reported in decisions.
    pub limit: u64,
}

/// The outcome of one check, before it is turned into a `Decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Tokens left after this request (after a denial: tokens available now).
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_after: u64,
    /// Nanoseconds until a request of this cost would be admitted (0 when allowed).
    pub retry_after: u64,
}

impl Gcra {
    /// Parameters for `limit` tokens per `period_ns`, with a bucket of `burst`.
    pub fn new(limit: u64, period_ns: u64, burst: u64) -> Gcra {
        Gcra {
            interval: (period_ns / limit.max(1)).max(1),
            burst,
            limit,
        }
    }

    fn tau(&self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// Decides a request of `cost` at `now` against state `tat` (0 = no state).
    /// Returns the outcome and the new state (unchanged when denied).
    pub fn check(&self, tat: u64, now: u64, cost: u64) -> (Outcome, u64) {
        let tau = self.tau();
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.interval.saturating_mul(cost));
        let allow_at = new_tat.saturating_sub(tau);
        if now < allow_at {
            let used = base - now;
            let outcome = Outcome {
                allowed: false,
                remaining: (tau.saturating_sub(used)) / self.interval,
                reset_after: used,
                retry_after: allow_at - now,
            };
            return (outcome, tat);
        }
        let used = new_tat - now;
        let outcome = Outcome {
            allowed: true,
            remaining: (tau.saturating_sub(used)) / self.interval,
            reset_after: used,
            retry_after: 0,
        };
        (outcome, new_tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_rate() {
        let g = Gcra::new(10, SEC, 5);
        let mut tat = 0;
        let mut allowed = 0;
        for _ in 0..20 {
            let (o, t) = g.check(tat, 100 * SEC, 1);
            tat = t;
            allowed += o.allowed as u32;
        }
        assert_eq!(allowed, 5, "a burst of 5 at one instant");
        let (o, _) = g.check(tat, 100 * SEC, 1);
        assert_eq!(o.retry_after, SEC / 10);
        let (o, _) = g.check(tat, 100 * SEC + SEC / 10, 1);
        assert!(o.allowed, "one token after one interval");
    }

    #[test]
    fn remaining_and_reset() {
        let g = Gcra::new(10, SEC, 10);
        let (o, tat) = g.check(0, SEC, 1);
        assert_eq!((o.allowed, o.remaining, o.reset_after), (true, 9, SEC / 10));
        let (o, _) = g.check(tat, SEC, 4);
        assert_eq!((o.remaining, o.reset_after), (5, SEC / 2));
    }

    #[test]
    fn idle_state_equals_no_state() {
        let g = Gcra::new(3, SEC, 3);
        for now in [SEC, 5 * SEC] {
            assert_eq!(g.check(now - 1, now, 2).0, g.check(0, now, 2).0);
        }
    }
}
