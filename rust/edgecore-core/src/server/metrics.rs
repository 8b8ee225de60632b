//! Prometheus metrics, kept in atomics (one increment per request per metric; Relaxed ordering:
//! these are statistics, read together only approximately by a scrape).
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
pub enum Decision {
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
}

impl Decision {
    /// The label.
    pub fn as_str(self) -> &'static str {
        DECISIONS[self as usize]
    }
}

/// Labels, in the order of [`Decision`].
const DECISIONS: [&str; 15] = [
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
];

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 13],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every counter of the server.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 15],
    /// Request latency.
    pub latency: Histogram,
    /// Origin latency (until the response head).
    pub origin_latency: Histogram,
    /// Origin failures (502/504).
    pub origin_errors: AtomicU64,
    /// Limiter decisions: allowed, denied.
    pub limiter: [AtomicU64; 2],
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, decision: Decision, status: u16) {
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.requests[decision as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition. `gauges` are (name, help, value) computed at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP edgecore_requests_total Requests by what answered them and status class.\n");
        out.push_str("# TYPE edgecore_requests_total counter\n");
        for (d, row) in DECISIONS.iter().zip(&self.requests) {
            for (i, c) in row.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "edgecore_requests_total{{decision=\"{d}\",status=\"{}xx\"}} {n}",
                        i + 1
                    );
                }
            }
        }
        self.latency.render(
            "edgecore_request_duration_seconds",
            "Time from request head to response head.",
            &mut out,
        );
        self.origin_latency.render(
            "edgecore_origin_duration_seconds",
            "Time until the origin's response head.",
            &mut out,
        );
        let _ = writeln!(
            out,
            "# HELP edgecore_origin_errors_total Origin requests that failed or timed out.\n# TYPE edgecore_origin_errors_total counter\nedgecore_origin_errors_total {}",
            self.origin_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP edgecore_ratelimit_decisions_total Rate-limit checks by outcome.\n# TYPE edgecore_ratelimit_decisions_total counter\nedgecore_ratelimit_decisions_total{{outcome=\"allowed\"}} {}\nedgecore_ratelimit_decisions_total{{outcome=\"denied\"}} {}",
            self.limiter[0].load(Ordering::Relaxed),
            self.limiter[1].load(Ordering::Relaxed)
        );
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
        let m = Metrics::default();
        m.request(Decision::CacheHit, 200);
        m.request(Decision::RateLimited, 429);
        m.request(Decision::Error, 500);
        m.latency.observe(Duration::from_micros(300));
        m.latency.observe(Duration::from_millis(30));
        let text = m.render(&[("edgecore_python_queue_depth", "Jobs waiting.", 3.0)]);
        assert!(text.contains("edgecore_requests_total{decision=\"cache_hit\",status=\"2xx\"} 1"));
        assert!(text.contains("edgecore_requests_total{decision=\"rate_limited\",status=\"4xx\"} 1"));
        assert!(text.contains("edgecore_requests_total{decision=\"error\",status=\"5xx\"} 1"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("edgecore_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("edgecore_request_duration_seconds_count 2"));
        assert!(text.contains("edgecore_python_queue_depth 3"));
    }
}
