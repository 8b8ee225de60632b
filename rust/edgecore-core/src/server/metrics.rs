//! Prometheus metrics, kept in atomics (Relaxed ordering: these are statistics, read together
//! only approximately by a scrape).
//!
//! The counters are sharded: each thread writes to its own cache-line-aligned shard, and a scrape
//! sums them. With one shared set, every request on every worker did its handful of increments
//! on the same few cache lines, which then bounced between cores on each request.
//!
//! Served by the pipeline on `metrics_path` (off by default) in the text exposition format:
//! requests by decision and status class, a request-latency histogram, origin latency and errors,
//! cache hits/misses and bytes held, limiter decisions, and the Python queue depth.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What answered a request (the access log's `decision`, the metrics' `decision` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Outcome {
    Proxied,
    Handler,
    Middleware,
    NotFound,
    MethodNotAllowed,
    CacheHit,
    CacheMiss,
    CacheStale,
    CacheRevalidated,
    BotBlocked,
    Redirect,
    JwtRejected,
    RateLimited,
    Rejected,
    Error,
    Cors,
    Upgraded,
}

impl Outcome {
    /// Whether the edge wrote this response itself as a refusal or an error (what
    /// `error_response` pages replace), rather than the origin, the cache or user code.
    pub fn is_edge_rejection(self) -> bool {
        use Outcome::*;
        matches!(
            self,
            NotFound | MethodNotAllowed | BotBlocked | JwtRejected | RateLimited | Rejected | Error
        )
    }

    /// The label.
    pub fn as_str(self) -> &'static str {
        DECISIONS[self as usize]
    }
}

/// Labels, in the order of [`Outcome`].
const DECISIONS: [&str; 17] = [
    "proxied",
    "handler",
    "middleware",
    "not_found",
    "method_not_allowed",
    "cache_hit",
    "cache_miss",
    "cache_stale",
    "cache_revalidated",
    "bot_blocked",
    "redirect",
    "jwt_rejected",
    "rate_limited",
    "rejected",
    "error",
    "cors_preflight",
    "upgraded",
];

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram (one shard's).
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; 13],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// One thread's counters, alone on their cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    requests: [[AtomicU64; 5]; DECISIONS.len()],
    served: AtomicU64,
    latency: Histogram,
    origin_latency: Histogram,
    origin_errors: AtomicU64,
    limiter: [AtomicU64; 2],
    /// Shadow-mode decisions: [policy][allow, reject].
    shadow: [[AtomicU64; 2]; SHADOW_POLICIES.len()],
}

/// The policies that have a shadow mode, as [`Metrics::shadow`] takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `app.jwt(..., shadow=True)`.
    Jwt,
    /// `app.rate_limit(..., shadow=True)`.
    RateLimit,
    /// `app.bots(..., shadow=True)`.
    Bots,
    /// `app.access(..., shadow=True)`.
    Access,
}

impl Policy {
    /// The label (`jwt`, `rate_limit`, `bots`, `access`).
    pub fn as_str(self) -> &'static str {
        SHADOW_POLICIES[self as usize]
    }
}

const SHADOW_POLICIES: [&str; 4] = ["jwt", "rate_limit", "bots", "access"];

/// Shards: more than the cores of most edge nodes; threads beyond share them.
const SHARDS: usize = 16;

/// This thread's shard index, handed out round-robin on first use.
fn shard_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// Every counter of the server.
#[derive(Default)]
pub struct Metrics {
    shards: Box<[Shard; SHARDS]>,
}

fn sum(shards: &[Shard], f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
    shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
}

impl Metrics {
    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// Counts one request that was answered, with its latency (head to head).
    pub fn request(&self, decision: Outcome, status: u16, latency: Duration) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        let s = self.shard();
        s.requests[decision as usize][class].fetch_add(1, Ordering::Relaxed);
        s.latency.observe(latency);
    }

    /// Counts one request as it arrives.
    pub fn arrived(&self) {
        self.shard().served.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests received so far.
    pub fn arrivals(&self) -> u64 {
        sum(&self.shards[..], |s| &s.served)
    }

    /// One origin exchange: its time to the response head, and whether it failed.
    pub fn origin(&self, latency: Duration, failed: bool) {
        let s = self.shard();
        s.origin_latency.observe(latency);
        if failed {
            s.origin_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One decision of a policy in shadow mode: whether it would have rejected the request.
    pub fn shadow(&self, policy: Policy, would_reject: bool) {
        self.shard().shadow[policy as usize][usize::from(would_reject)].fetch_add(1, Ordering::Relaxed);
    }

    /// One rate-limit decision.
    pub fn limiter(&self, allowed: bool) {
        self.shard().limiter[usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
    }

    fn render_histogram(&self, h: impl Fn(&Shard) -> &Histogram, name: &str, help: &str, out: &mut String) {
        let shards = &self.shards[..];
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += sum(shards, |s| &h(s).buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = sum(shards, |s| &h(s).count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", sum(shards, |s| &h(s).sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }

    /// The text exposition. `gauges` are (name, help, value) computed at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let shards = &self.shards[..];
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP edgecore_requests_total Requests by what answered them and status class.\n");
        out.push_str("# TYPE edgecore_requests_total counter\n");
        for (d, label) in DECISIONS.iter().enumerate() {
            for class in 0..5 {
                let n = sum(shards, |s| &s.requests[d][class]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "edgecore_requests_total{{decision=\"{label}\",status=\"{}xx\"}} {n}",
                        class + 1
                    );
                }
            }
        }
        self.render_histogram(
            |s| &s.latency,
            "edgecore_request_duration_seconds",
            "Time from request head to response head.",
            &mut out,
        );
        self.render_histogram(
            |s| &s.origin_latency,
            "edgecore_origin_duration_seconds",
            "Time until the origin's response head.",
            &mut out,
        );
        let _ = writeln!(
            out,
            "# HELP edgecore_origin_errors_total Origin requests that failed or timed out.\n# TYPE edgecore_origin_errors_total counter\nedgecore_origin_errors_total {}",
            sum(shards, |s| &s.origin_errors)
        );
        let _ = writeln!(
            out,
            "# HELP edgecore_ratelimit_decisions_total Rate-limit checks by outcome.\n# TYPE edgecore_ratelimit_decisions_total counter\nedgecore_ratelimit_decisions_total{{outcome=\"allowed\"}} {}\nedgecore_ratelimit_decisions_total{{outcome=\"denied\"}} {}",
            sum(shards, |s| &s.limiter[0]),
            sum(shards, |s| &s.limiter[1])
        );
        let shadowed = |p: usize, o: usize| sum(shards, |s| &s.shadow[p][o]);
        if (0..SHADOW_POLICIES.len()).any(|p| shadowed(p, 0) + shadowed(p, 1) > 0) {
            out.push_str("# HELP edgecore_shadow_decisions_total What policies in shadow mode would have done.\n");
            out.push_str("# TYPE edgecore_shadow_decisions_total counter\n");
            for (p, policy) in SHADOW_POLICIES.iter().enumerate() {
                for (o, outcome) in ["allow", "reject"].iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "edgecore_shadow_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}} {}",
                        shadowed(p, o)
                    );
                }
            }
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = std::sync::Arc::new(Metrics::default());
        m.request(Outcome::CacheHit, 200, Duration::from_micros(300));
        // Other threads write to other shards; a scrape sums them all.
        let other = m.clone();
        std::thread::spawn(move || {
            other.request(Outcome::RateLimited, 429, Duration::from_millis(30));
            other.request(Outcome::Error, 500, Duration::from_secs(60));
            other.arrived();
        })
        .join()
        .unwrap();
        m.arrived();
        assert_eq!(m.arrivals(), 2);
        let text = m.render(&[("edgecore_python_queue_depth", "Jobs waiting.", 3.0)]);
        assert!(text.contains("edgecore_requests_total{decision=\"cache_hit\",status=\"2xx\"} 1"));
        assert!(text.contains("edgecore_requests_total{decision=\"rate_limited\",status=\"4xx\"} 1"));
        assert!(text.contains("edgecore_requests_total{decision=\"error\",status=\"5xx\"} 1"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("edgecore_request_duration_seconds_count 3"));
        assert!(text.contains("edgecore_python_queue_depth 3"));
    }
}
