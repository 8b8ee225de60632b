//! Rate limiting: a token bucket (GCRA) per key, in process or shared through Redis.
//!
//! - [`gcra`]: the algorithm, one timestamp of state per key, integer nanoseconds.
//! - [`local`]: the sharded in-process table (exact under concurrency, bounded in memory).
//! - [`redis`]: the same algorithm as one atomic Lua script on Redis's clock.
//! - [`synced`]: local-first shared limits: decided in process, reconciled through Redis every
//!   `sync` seconds in the background.
//!
//! [`RateLimiter`] puts them together with the failure policy for a shared limiter whose Redis is
//! down or slow: fail open (default), fail closed, or fall back to a local limiter. Which path
//! decided is visible in [`Decision::source`].

pub mod gcra;
pub mod local;
pub mod redis;
pub mod synced;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use self::gcra::{Gcra, Outcome};
use self::local::LocalLimiter;
use self::redis::RedisLimiter;
use crate::error::{Error, Result};
use crate::store::RedisConn;

/// What a shared limiter does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Admit the request (availability first). The default.
    Open,
    /// Refuse the request (protection first).
    Closed,
    /// Decide with an in-process limiter of the same parameters (per-node limits meanwhile).
    Local,
}

impl FailurePolicy {
    /// Parses "open", "closed" or "local".
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(FailurePolicy::Open),
            "closed" => Ok(FailurePolicy::Closed),
            "local" => Ok(FailurePolicy::Local),
            other => Err(Error::config(format!(
                "on_store_error must be \"open\", \"closed\" or \"local\", not {other:?}"
            ))),
        }
    }
}

/// Which path made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The in-process limiter.
    Local,
    /// Redis.
    Redis,
    /// Redis failed; admitted by policy.
    FailOpen,
    /// Redis failed; refused by policy.
    FailClosed,
    /// Redis failed; decided by the local fallback limiter.
    LocalFallback,
    /// Decided in process by a local-first shared limiter (`sync`).
    LocalFirst,
}

impl DecisionSource {
    /// The name Python sees.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Local => "local",
            DecisionSource::Redis => "redis",
            DecisionSource::FailOpen => "fail_open",
            DecisionSource::FailClosed => "fail_closed",
            DecisionSource::LocalFallback => "local_fallback",
            DecisionSource::LocalFirst => "local_first",
        }
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The configured limit (requests per period).
    pub limit: u64,
    /// The bucket's capacity (`burst`, `limit` by default): what `remaining` counts down from.
    pub burst: u64,
    /// The period, in seconds.
    pub period: f64,
    /// Requests left in the bucket now.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_after: f64,
    /// Seconds until a request of this cost would pass (0.0 when allowed).
    pub retry_after: f64,
    /// Which path decided.
    pub source: DecisionSource,
}

/// Configuration of a limiter.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Requests per period.
    pub limit: u64,
    /// The period in seconds.
    pub period: f64,
    /// Bucket capacity (defaults to `limit`).
    pub burst: Option<u64>,
    /// Most keys held in process.
    pub max_keys: usize,
    /// `redis://…` for a shared limiter.
    pub store: Option<String>,
    /// Redis timeout per check.
    pub timeout: Duration,
    /// What to do when Redis fails.
    pub on_store_error: FailurePolicy,
    /// Local-first: decide in process and reconcile with `store` this often (None: every check
    /// goes to Redis).
    pub sync: Option<Duration>,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            limit: 1,
            period: 1.0,
            burst: None,
            max_keys: 2_000_000,
            store: None,
            timeout: Duration::from_millis(50),
            on_store_error: FailurePolicy::Open,
            sync: None,
        }
    }
}

/// A rate limiter: in process, or shared through Redis with a failure policy.
pub struct RateLimiter {
    /// Local-first decisions (`sync`), reconciled through `redis`'s store in the background.
    synced: Option<Arc<synced::SyncedLimiter>>,
    gcra: Gcra,
    /// The period in seconds (for the `RateLimit-Policy` field).
    period: f64,
    local: Option<LocalLimiter>,
    redis: Option<RedisLimiter>,
    policy: FailurePolicy,
    /// Checks decided by the failure policy. Relaxed: a statistic.
    fallbacks: AtomicU64,
}

impl RateLimiter {
    /// Validates `config` and builds the limiter (a shared one connects lazily).
    pub fn new(config: &LimiterConfig) -> Result<Self> {
        if config.limit == 0 {
            return Err(Error::config("limit must be at least 1"));
        }
        if !(config.period.is_finite() && config.period > 0.0) {
            return Err(Error::config("period must be a positive number of seconds"));
        }
        let burst = config.burst.unwrap_or(config.limit);
        if burst == 0 {
            return Err(Error::config("burst must be at least 1"));
        }
        let period_ns = (config.period * 1e9).round() as u64;
        if period_ns / config.limit < 1000 {
            return Err(Error::config(
                "limit/period is too fine (more than one request per microsecond)",
            ));
        }
        let gcra = Gcra::new(config.limit, period_ns, burst);
        let synced = match (config.sync, &config.store) {
            (None, _) => None,
            (Some(_), None) => return Err(Error::config("sync needs a store (redis://...) to reconcile with")),
            (Some(s), Some(url)) => {
                if s < Duration::from_millis(1) || s > Duration::from_secs(60) {
                    return Err(Error::config("sync must be between 0.001 and 60 seconds"));
                }
                let conn = RedisConn::new(url, config.timeout.max(Duration::from_millis(500)))?;
                Some(synced::SyncedLimiter::start(
                    gcra,
                    period_ns / 1_000_000,
                    conn,
                    s,
                    config.max_keys,
                ))
            }
        };
        let (local, redis) = match &config.store {
            None => (Some(LocalLimiter::new(gcra, config.max_keys)), None),
            Some(url) => {
                let conn = RedisConn::new(url, config.timeout)?;
                let redis = RedisLimiter::new(gcra, period_ns / 1_000_000, conn);
                let fallback =
                    (config.on_store_error == FailurePolicy::Local).then(|| LocalLimiter::new(gcra, config.max_keys));
                (fallback, Some(redis))
            }
        };
        Ok(RateLimiter {
            synced,
            gcra,
            period: config.period,
            local,
            redis,
            policy: config.on_store_error,
            fallbacks: AtomicU64::new(0),
        })
    }

    /// The algorithm parameters.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Whether checks go to Redis.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// The Redis connection of a shared limiter.
    pub fn redis_conn(&self) -> Option<&Arc<RedisConn>> {
        self.redis.as_ref().map(|r| r.conn())
    }

    /// The in-process limiter's clock (ns), or None for a shared limiter.
    pub fn local_now(&self) -> Option<u64> {
        if self.redis.is_some() {
            return None;
        }
        self.local.as_ref().map(LocalLimiter::now)
    }

    /// Moves an in-process limiter's clock forward by `by` (a test's virtual time: buckets
    /// refill); a shared or local-first limiter keeps Redis's clock and is not moved.
    pub fn advance_clock(&self, by: std::time::Duration) {
        if self.redis.is_none() {
            if let Some(local) = &self.local {
                local.advance_clock(by.as_nanos() as u64);
            }
        }
    }

    /// Checks decided by the failure policy so far.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn check_cost(&self, cost: u64) -> Result<()> {
        if cost > self.gcra.burst {
            return Err(Error::config(format!(
                "cost {cost} is larger than the burst {}: such a request could never be allowed",
                self.gcra.burst
            )));
        }
        Ok(())
    }

    /// Requests allowed per period.
    pub fn limit(&self) -> u64 {
        self.gcra.limit
    }

    /// The period in seconds.
    pub fn period(&self) -> f64 {
        self.period
    }

    fn decision(&self, o: Outcome, source: DecisionSource) -> Decision {
        Decision {
            allowed: o.allowed,
            limit: self.gcra.limit,
            burst: self.gcra.burst,
            period: self.period,
            remaining: o.remaining,
            reset_after: o.reset_after as f64 / 1e9,
            retry_after: o.retry_after as f64 / 1e9,
            source,
        }
    }

    /// An in-process check at `now` (ns on the limiter's clock; None: the real clock).
    /// Only for in-process limiters.
    pub fn check_local(&self, key: &[u8], cost: u64, now: Option<u64>) -> Result<Decision> {
        self.check_cost(cost)?;
        let local = self
            .local
            .as_ref()
            .ok_or_else(|| Error::config("check_local on a shared limiter"))?;
        let now = now.unwrap_or_else(|| local.now());
        Ok(self.decision(local.check_at(key, cost, now), DecisionSource::Local))
    }

    /// A local-first limiter's check, decided at once (None for any other limiter).
    pub fn check_synced(&self, key: &str, cost: u64) -> Option<Result<Decision>> {
        let s = self.synced.as_ref()?;
        Some(
            self.check_cost(cost)
                .map(|_| self.decision(s.check(key, cost), DecisionSource::LocalFirst)),
        )
    }

    /// The local-first limiter, when `sync` is set.
    pub fn synced(&self) -> Option<&Arc<synced::SyncedLimiter>> {
        self.synced.as_ref()
    }

    /// A check on whichever path the limiter uses (in process for a local-first one; Redis with
    /// the failure policy; or in process).
    pub async fn check(&self, key: &str, cost: u64) -> Result<Decision> {
        if let Some(s) = &self.synced {
            self.check_cost(cost)?;
            return Ok(self.decision(s.check(key, cost), DecisionSource::LocalFirst));
        }
        let Some(redis) = &self.redis else {
            return self.check_local(key.as_bytes(), cost, None);
        };
        self.check_cost(cost)?;
        match redis.check(key, cost).await {
            Ok(o) => Ok(self.decision(o, DecisionSource::Redis)),
            Err(_) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                Ok(match self.policy {
                    FailurePolicy::Open => Decision {
                        allowed: true,
                        limit: self.gcra.limit,
                        burst: self.gcra.burst,
                        period: self.period,
                        remaining: 0,
                        reset_after: 0.0,
                        retry_after: 0.0,
                        source: DecisionSource::FailOpen,
                    },
                    FailurePolicy::Closed => Decision {
                        allowed: false,
                        limit: self.gcra.limit,
                        burst: self.gcra.burst,
                        period: self.period,
                        remaining: 0,
                        reset_after: 1.0,
                        retry_after: 1.0,
                        source: DecisionSource::FailClosed,
                    },
                    FailurePolicy::Local => {
                        let local = self
                            .local
                            .as_ref()
                            .expect("fallback limiter exists for the local policy");
                        self.decision(
                            local.check_at(key.as_bytes(), cost, local.now()),
                            DecisionSource::LocalFallback,
                        )
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let bad = |c: LimiterConfig| RateLimiter::new(&c).err().unwrap().context;
        assert!(bad(LimiterConfig {
            limit: 0,
            ..Default::default()
        })
        .contains("limit"));
        assert!(bad(LimiterConfig {
            period: -1.0,
            ..Default::default()
        })
        .contains("period"));
        assert!(bad(LimiterConfig {
            burst: Some(0),
            ..Default::default()
        })
        .contains("burst"));
        let l = RateLimiter::new(&LimiterConfig {
            limit: 5,
            ..Default::default()
        })
        .unwrap();
        assert!(l
            .check_local(b"k", 6, Some(1))
            .unwrap_err()
            .context
            .contains("larger than the burst"));
    }

    #[test]
    fn decisions_report_seconds() {
        let l = RateLimiter::new(&LimiterConfig {
            limit: 2,
            period: 1.0,
            ..Default::default()
        })
        .unwrap();
        let d = l.check_local(b"k", 1, Some(1_000_000_000)).unwrap();
        assert_eq!(
            (d.allowed, d.remaining, d.reset_after, d.source),
            (true, 1, 0.5, DecisionSource::Local)
        );
        l.check_local(b"k", 1, Some(1_000_000_000)).unwrap();
        let d = l.check_local(b"k", 1, Some(1_000_000_000)).unwrap();
        assert_eq!((d.allowed, d.retry_after), (false, 0.5));
    }

    #[tokio::test]
    async fn dead_redis_follows_the_policy_quickly() {
        // (policy, checks admitted out of 100, source): the local fallback enforces the limit of 10.
        for (policy, admitted, source) in [
            (FailurePolicy::Open, 100, DecisionSource::FailOpen),
            (FailurePolicy::Closed, 0, DecisionSource::FailClosed),
            (FailurePolicy::Local, 10, DecisionSource::LocalFallback),
        ] {
            let c = LimiterConfig {
                limit: 10,
                store: Some("redis://127.0.0.1:1/0".into()),
                on_store_error: policy,
                ..Default::default()
            };
            let l = RateLimiter::new(&c).unwrap();
            let start = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..100 {
                let d = l.check("k", 1).await.unwrap();
                assert_eq!(d.source, source);
                n += d.allowed as u32;
            }
            assert_eq!(n, admitted);
            assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        }
    }
}
