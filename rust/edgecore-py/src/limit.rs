//! Python adapters for rate limiting: `RateLimiter` and `Decision`.
//!
//! An in-process check is ~100 ns of Rust, so it runs without detaching (releasing and retaking
//! the GIL would cost more than the check). A shared (Redis) check detaches while it waits.

use std::time::Duration;

use edgecore_core::limit::{Decision, FailurePolicy, LimiterConfig, RateLimiter};
use edgecore_core::rt;
use pyo3::prelude::*;

use crate::errors::{config_error, CoreError};

/// The answer of a limiter. Truthy when the request may pass.
#[pyclass(frozen, module = "edgecore._core", name = "Decision")]
pub struct PyDecision {
    pub(crate) inner: Decision,
}

#[pymethods]
impl PyDecision {
    /// Whether the request may pass.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed
    }
    /// The configured limit.
    #[getter]
    fn limit(&self) -> u64 {
        self.inner.limit
    }
    /// Requests left now.
    #[getter]
    fn remaining(&self) -> u64 {
        self.inner.remaining
    }
    /// Seconds until the bucket is full again.
    #[getter]
    fn reset_after(&self) -> f64 {
        self.inner.reset_after
    }
    /// Seconds until a request of this cost would pass (0.0 when allowed).
    #[getter]
    fn retry_after(&self) -> f64 {
        self.inner.retry_after
    }
    /// Which path decided: "local", "redis", "fail_open", "fail_closed" or "local_fallback".
    #[getter]
    fn source(&self) -> &'static str {
        self.inner.source.as_str()
    }
    /// The rate-limit header fields (and Retry-After when refused), as a response would carry
    /// them: `fields="draft"` (the current IETF draft: `RateLimit-Policy`, `RateLimit`),
    /// `"legacy"` (`RateLimit-Limit/Remaining/Reset`) or `"both"`.
    #[pyo3(signature = (fields="draft"))]
    fn headers(&self, fields: &str) -> PyResult<Vec<(String, String)>> {
        let which = edgecore_core::server::respond::RateFields::from_name(fields).ok_or_else(|| {
            crate::errors::config_error(format!(
                "fields must be \"draft\", \"legacy\" or \"both\", not {fields:?}"
            ))
        })?;
        let d = &self.inner;
        let mut map = http::HeaderMap::new();
        edgecore_core::server::respond::rate_headers(d, which, None, &mut map);
        let mut h: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (canonical_case(k.as_str()), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        if !d.allowed {
            h.push((
                "Retry-After".to_owned(),
                (d.retry_after.ceil() as u64).max(1).to_string(),
            ));
        }
        Ok(h)
    }
    fn __bool__(&self) -> bool {
        self.inner.allowed
    }
    fn __repr__(&self) -> String {
        let d = &self.inner;
        format!(
            "Decision(allowed={}, limit={}, remaining={}, reset_after={:.3}, retry_after={:.3}, source={:?})",
            if d.allowed { "True" } else { "False" },
            d.limit,
            d.remaining,
            d.reset_after,
            d.retry_after,
            d.source.as_str()
        )
    }
}

/// A token-bucket rate limiter (GCRA), in process or shared through Redis.
#[pyclass(frozen, module = "edgecore._core", name = "RateLimiter")]
pub struct PyRateLimiter {
    pub(crate) inner: std::sync::Arc<RateLimiter>,
    repr: String,
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (limit, period, *, burst=None, store=None, timeout=0.05, on_store_error="open", max_keys=2_000_000, sync=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        limit: u64,
        period: f64,
        burst: Option<u64>,
        store: Option<String>,
        timeout: f64,
        on_store_error: &str,
        max_keys: usize,
        sync: Option<f64>,
    ) -> PyResult<Self> {
        let sync = sync
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .ok()
                    .ok_or_else(|| config_error("sync must be between 0.001 and 60 seconds"))
            })
            .transpose()?;
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| config_error("timeout must be a positive number of seconds"))?;
        let config = LimiterConfig {
            limit,
            period,
            burst,
            max_keys,
            store: store.clone(),
            timeout,
            on_store_error: FailurePolicy::parse(on_store_error).map_err(CoreError)?,
            sync,
        };
        let inner = RateLimiter::new(&config).map_err(CoreError)?;
        let repr = format!(
            "RateLimiter(limit={limit}, period={period}, burst={}, store={}, on_store_error={on_store_error:?}{})",
            inner.gcra().burst,
            store
                .as_deref()
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "None".into()),
            sync.map(|s| format!(", sync={}", s.as_secs_f64())).unwrap_or_default(),
        );
        Ok(PyRateLimiter {
            inner: std::sync::Arc::new(inner),
            repr,
        })
    }

    /// Checks `key` and, when allowed, consumes `cost` tokens. `now` (seconds, in-process
    /// limiters only) replaces the clock, for tests.
    #[pyo3(signature = (key, cost=1, *, now=None))]
    fn check(&self, py: Python<'_>, key: &str, cost: u64, now: Option<f64>) -> PyResult<PyDecision> {
        if let (Some(d), None) = (self.inner.check_synced(key, cost), now) {
            // Local-first: decided in process, no runtime hop.
            return Ok(PyDecision {
                inner: d.map_err(CoreError)?,
            });
        }
        let inner = if self.inner.is_shared() {
            if now.is_some() {
                return Err(config_error(
                    "now= is only for in-process limiters (Redis uses its own clock)",
                ));
            }
            py.detach(|| rt::block_on(self.inner.check(key, cost)))
                .ok_or_else(|| config_error("RateLimiter.check called from inside an async runtime"))?
                .map_err(CoreError)?
        } else {
            let now = match now {
                Some(t) if t.is_finite() && t > 0.0 => Some((t * 1e9).round() as u64),
                Some(_) => return Err(config_error("now must be a positive number of seconds")),
                None => None,
            };
            self.inner.check_local(key.as_bytes(), cost, now).map_err(CoreError)?
        };
        Ok(PyDecision { inner })
    }

    /// Moves an in-process limiter's clock forward by `seconds` (tests: buckets refill with no
    /// sleeping; `edgecore.testing.TestClient.advance` does it for the app's limiters). Returns
    /// whether it moved: a Redis-backed limiter keeps Redis's clock.
    fn advance_clock(&self, seconds: f64) -> PyResult<bool> {
        let by = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|_| config_error("seconds must be a non-negative number"))?;
        self.inner.advance_clock(by);
        Ok(!self.inner.is_shared())
    }

    /// Whether checks go to Redis.
    #[getter]
    fn shared(&self) -> bool {
        self.inner.is_shared()
    }

    /// Local-first (`sync=`): (reconciliations done, calls in them that failed); None otherwise.
    #[getter]
    fn sync_rounds(&self) -> Option<(u64, u64)> {
        self.inner.synced().map(|s| s.rounds())
    }

    /// Checks decided by the failure policy because Redis could not answer.
    #[getter]
    fn fallbacks(&self) -> u64 {
        self.inner.fallbacks()
    }

    fn __repr__(&self) -> &str {
        &self.repr
    }
}

/// `ratelimit-policy` as `RateLimit-Policy`.
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "ratelimit" => "RateLimit".to_owned(),
            _ => {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
