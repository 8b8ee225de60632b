//! Python adapters for caching: `ResponseCache` (the byte-bounded LRU), `HTTPCache` (the RFC 9111
//! shared cache the server uses), `cache_policy` and `cache_key`.
//!
//! `ResponseCache` stores the Python `Response` object itself (behind an `Arc`, so the store needs
//! no interpreter to move it): a hit returns that same object without copying. Treat cached
//! responses as read-only.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use edgecore_core::cache::{
    self, cache_key as core_key, Entry, HttpCache, KeyOptions, Lookup, ShardedLru, StoreDecision, Weighted,
};
use edgecore_core::http as core;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt};

use crate::errors::config_error;
use crate::http::{PyRequest, PyResponse};

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Cached {
    response: Py<PyResponse>,
    weight: usize,
}

impl Weighted for Cached {
    fn weight(&self) -> usize {
        self.weight
    }
}

/// Bytes a cached Python response really holds: body, header fields (each with its map entry)
/// and the fixed cost of the two Python objects, their lock and the map's tables (measured:
/// ~400 bytes for a response with a few headers). The budget is only honest if this is.
fn response_weight(py: Python<'_>, r: &PyResponse) -> usize {
    const PY_OBJECTS: usize = 400;
    r.body.len() + r.headers.bind(py).get().weight() + PY_OBJECTS
}

/// A number of seconds: an exact int or float read directly (an int through `float()` would
/// allocate a float object on every call), anything else through `__float__`.
fn seconds(v: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(f) = v.cast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    if let Ok(i) = v.cast_exact::<PyInt>() {
        if let Ok(n) = i.extract::<i64>() {
            return Ok(n as f64);
        }
    }
    v.extract::<f64>()
}

/// An LRU cache of responses bounded by bytes (and optionally entries), with a TTL per entry.
#[pyclass(frozen, module = "edgecore._core", name = "ResponseCache")]
pub struct PyResponseCache {
    inner: ShardedLru<Cached>,
}

#[pymethods]
impl PyResponseCache {
    #[new]
    #[pyo3(signature = (max_bytes, max_entries=None))]
    fn new(max_bytes: usize, max_entries: Option<usize>) -> PyResult<Self> {
        if max_bytes < 1024 {
            return Err(config_error("max_bytes must be at least 1024"));
        }
        if max_entries == Some(0) {
            return Err(config_error("max_entries must be positive"));
        }
        Ok(PyResponseCache {
            inner: ShardedLru::new(max_bytes, max_entries),
        })
    }

    /// The response stored under `key`, unless absent or expired. `now` replaces the clock.
    #[pyo3(signature = (key, *, now=None))]
    fn get(&self, py: Python<'_>, key: &str, now: Option<f64>) -> Option<Py<PyResponse>> {
        self.inner.get_map(key, now, |c| c.response.clone_ref(py))
    }

    /// Stores `response` for `ttl` seconds. Returns False when it is too large to store.
    #[pyo3(signature = (key, response, ttl, *, now=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        response: Bound<'_, PyResponse>,
        ttl: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<bool> {
        let ttl = seconds(ttl)?;
        if !(ttl.is_finite() && ttl > 0.0) {
            return Err(config_error("ttl must be a positive number of seconds"));
        }
        let weight = response_weight(py, response.get());
        let cached = Cached {
            response: response.unbind(),
            weight,
        };
        // Deadlines from the coarse clock may come one tick early, never late.
        Ok(self
            .inner
            .put(key, cached, now.unwrap_or_else(edgecore_core::clock::now_floor) + ttl))
    }

    /// Removes `key`; returns whether it was there.
    fn delete(&self, key: &str) -> bool {
        self.inner.delete(key)
    }

    /// Removes every key starting with `prefix` (all keys by default); returns how many.
    #[pyo3(signature = (prefix=""))]
    fn purge(&self, prefix: &str) -> usize {
        self.inner.purge(prefix)
    }

    /// Bytes charged against the budget (responses, keys and per-entry overhead).
    #[getter]
    fn size_bytes(&self) -> usize {
        self.inner.size_bytes()
    }

    /// The byte budget.
    #[getter]
    fn max_bytes(&self) -> usize {
        self.inner.max_bytes()
    }

    /// Entries evicted to make room so far.
    #[getter]
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "ResponseCache(max_bytes={}, entries={}, size_bytes={})",
            self.inner.max_bytes(),
            self.inner.len(),
            self.inner.size_bytes()
        )
    }
}

/// What the caching policy decided about a response.
#[pyclass(frozen, module = "edgecore._core", name = "CachePolicy")]
pub struct PyCachePolicy {
    inner: StoreDecision,
}

#[pymethods]
impl PyCachePolicy {
    /// Whether a shared cache may store the response.
    #[getter]
    fn storable(&self) -> bool {
        self.inner.storable
    }
    /// Why (or why not).
    #[getter]
    fn reason(&self) -> &'static str {
        self.inner.reason
    }
    /// Freshness lifetime in seconds.
    #[getter]
    fn ttl(&self) -> f64 {
        self.inner.ttl
    }
    /// Seconds it may be served stale while revalidating.
    #[getter]
    fn stale_while_revalidate(&self) -> f64 {
        self.inner.stale_while_revalidate
    }
    /// Seconds it may be served stale when the origin fails.
    #[getter]
    fn stale_if_error(&self) -> f64 {
        self.inner.stale_if_error
    }
    /// Whether stale copies must never be served.
    #[getter]
    fn must_revalidate(&self) -> bool {
        self.inner.must_revalidate
    }
    /// Whether every reuse needs revalidation (no-cache).
    #[getter]
    fn no_cache(&self) -> bool {
        self.inner.no_cache
    }
    /// Request fields named by Vary (lower-case).
    #[getter]
    fn vary(&self) -> Vec<String> {
        self.inner.vary.clone()
    }
    fn __bool__(&self) -> bool {
        self.inner.storable
    }
    fn __repr__(&self) -> String {
        format!(
            "CachePolicy(storable={}, reason={:?}, ttl={})",
            if self.inner.storable { "True" } else { "False" },
            self.inner.reason,
            self.inner.ttl
        )
    }
}

/// Decides whether a shared cache may store `response` to `request`, and for how long.
#[pyfunction]
#[pyo3(signature = (request, response, *, now=None, default_ttl=None))]
pub fn cache_policy(
    py: Python<'_>,
    request: &Bound<'_, PyRequest>,
    response: &Bound<'_, PyResponse>,
    now: Option<f64>,
    default_ttl: Option<f64>,
) -> PyCachePolicy {
    let req = request.get().to_core();
    let resp = response.get().to_core(py);
    PyCachePolicy {
        inner: cache::storable(&req, &resp, now.unwrap_or_else(wall_now), default_ttl),
    }
}

fn dims(d: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(d) = d {
        for (k, v) in d.iter() {
            out.push((k.extract::<String>()?, v.str()?.to_str()?.to_owned()));
        }
    }
    out.sort();
    Ok(out)
}

fn build_key(req: &core::Request, scheme: &str, opts: &KeyOptions, d: &[(String, String)]) -> String {
    let d: Vec<(&str, &str)> = d.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    core_key(req, scheme, opts, &d)
}

/// The cache key of `request`: URL with a normalized query, the method, and the dimensions.
#[pyfunction]
#[pyo3(signature = (request, *, scheme="http", ignore_query=false, ignore_params=vec![], dimensions=None))]
pub fn cache_key(
    request: &Bound<'_, PyRequest>,
    scheme: &str,
    ignore_query: bool,
    ignore_params: Vec<String>,
    dimensions: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let opts = KeyOptions {
        ignore_query,
        ignore_params,
    };
    Ok(build_key(&request.get().to_core(), scheme, &opts, &dims(dimensions)?))
}

/// The result of an `HTTPCache.lookup`.
#[pyclass(frozen, module = "edgecore._core", name = "CacheLookup")]
pub struct PyCacheLookup {
    status: &'static str,
    response: Option<Py<PyResponse>>,
    conditional: Vec<(String, String)>,
    entry: Option<Arc<Entry>>,
    request: core::Request,
    key: String,
}

#[pymethods]
impl PyCacheLookup {
    /// "HIT", "STALE", "REVALIDATE", "MISS" or "BYPASS".
    #[getter]
    fn status(&self) -> &'static str {
        self.status
    }
    /// The response to serve (HIT, STALE), with Age and X-Cache.
    #[getter]
    fn response(&self, py: Python<'_>) -> Option<Py<PyResponse>> {
        self.response.as_ref().map(|r| r.clone_ref(py))
    }
    /// Headers to add to the origin request to revalidate (REVALIDATE).
    #[getter]
    fn conditional_headers(&self) -> Vec<(String, String)> {
        self.conditional.clone()
    }
    /// Whether a stored entry exists (usable for stale-if-error).
    #[getter]
    fn has_entry(&self) -> bool {
        self.entry.is_some()
    }
    /// The cache key used.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }
    fn __repr__(&self) -> String {
        format!("CacheLookup(status={:?})", self.status)
    }
}

/// The shared HTTP cache (RFC 9111) the server uses, for direct use and testing.
#[pyclass(frozen, module = "edgecore._core", name = "HTTPCache")]
pub struct PyHTTPCache {
    inner: HttpCache,
    scheme: String,
    opts: KeyOptions,
}

impl PyHTTPCache {
    fn key(&self, req: &core::Request, d: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        Ok(build_key(req, &self.scheme, &self.opts, &dims(d)?))
    }
}

#[pymethods]
impl PyHTTPCache {
    #[new]
    #[pyo3(signature = (max_bytes=64 << 20, *, default_ttl=None, max_variants=32, scheme="http", ignore_query=false, ignore_params=vec![]))]
    fn new(
        max_bytes: usize,
        default_ttl: Option<f64>,
        max_variants: usize,
        scheme: &str,
        ignore_query: bool,
        ignore_params: Vec<String>,
    ) -> PyResult<Self> {
        if max_bytes < 1024 {
            return Err(config_error("max_bytes must be at least 1024"));
        }
        if default_ttl.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            return Err(config_error("default_ttl must be a positive number of seconds"));
        }
        Ok(PyHTTPCache {
            inner: HttpCache::new(max_bytes, default_ttl, max_variants),
            scheme: scheme.to_owned(),
            opts: KeyOptions {
                ignore_query,
                ignore_params,
            },
        })
    }

    /// The key `request` is stored under.
    #[pyo3(signature = (request, *, dimensions=None))]
    fn key_for(&self, request: &Bound<'_, PyRequest>, dimensions: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        self.key(&request.get().to_core(), dimensions)
    }

    /// Looks `request` up.
    #[pyo3(signature = (request, *, dimensions=None, now=None))]
    fn lookup(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyRequest>,
        dimensions: Option<&Bound<'_, PyDict>>,
        now: Option<f64>,
    ) -> PyResult<PyCacheLookup> {
        let req = request.get().to_core();
        let key = self.key(&req, dimensions)?;
        let found = self.inner.lookup(&req, &key, now.unwrap_or_else(wall_now));
        let status = found.status();
        let (response, entry, conditional) = match found {
            Lookup::Hit(r) => (Some(r), None, vec![]),
            Lookup::Stale(r, e) => (Some(r), Some(e), vec![]),
            Lookup::Revalidate(e, h) => (
                None,
                Some(e),
                h.into_iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
            ),
            Lookup::Miss(e) => (None, e, vec![]),
            Lookup::Bypass => (None, None, vec![]),
        };
        let response = response
            .map(|r| Py::new(py, PyResponse::from_core(py, r)?))
            .transpose()?;
        Ok(PyCacheLookup {
            status,
            response,
            conditional,
            entry,
            request: req,
            key,
        })
    }

    /// Stores `response` to `request` if the policy allows; returns the policy decision.
    #[pyo3(signature = (request, response, *, dimensions=None, now=None))]
    fn store(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyRequest>,
        response: &Bound<'_, PyResponse>,
        dimensions: Option<&Bound<'_, PyDict>>,
        now: Option<f64>,
    ) -> PyResult<PyCachePolicy> {
        let req = request.get().to_core();
        let key = self.key(&req, dimensions)?;
        let inner = self
            .inner
            .store(&req, &key, &response.get().to_core(py), now.unwrap_or_else(wall_now));
        Ok(PyCachePolicy { inner })
    }

    /// Applies the origin's 304 to the entry a REVALIDATE lookup found; returns the response to serve.
    #[pyo3(signature = (lookup, not_modified, *, now=None))]
    fn revalidated(
        &self,
        py: Python<'_>,
        lookup: &Bound<'_, PyCacheLookup>,
        not_modified: &Bound<'_, PyResponse>,
        now: Option<f64>,
    ) -> PyResult<PyResponse> {
        let l = lookup.get();
        let entry = l
            .entry
            .as_ref()
            .ok_or_else(|| config_error("this lookup found no entry to revalidate"))?;
        let t = now.unwrap_or_else(wall_now);
        let r = self
            .inner
            .revalidated(&l.request, &l.key, entry, &not_modified.get().to_core(py), (t, t));
        PyResponse::from_core(py, r)
    }

    /// The stale response to serve because the origin failed, if stale-if-error allows it.
    #[pyo3(signature = (lookup, *, now=None))]
    fn stale_on_error(
        &self,
        py: Python<'_>,
        lookup: &Bound<'_, PyCacheLookup>,
        now: Option<f64>,
    ) -> PyResult<Option<PyResponse>> {
        match &lookup.get().entry {
            Some(e) => self
                .inner
                .stale_on_error(e, now.unwrap_or_else(wall_now))
                .map(|r| PyResponse::from_core(py, r))
                .transpose(),
            None => Ok(None),
        }
    }

    /// After a response to an unsafe method, drops the target URL (all variants); returns how many.
    fn invalidate(&self, request: &Bound<'_, PyRequest>, response: &Bound<'_, PyResponse>) -> PyResult<usize> {
        let req = request.get().to_core();
        let url = cache::url_key(&req, &self.scheme, &self.opts);
        Ok(self.inner.invalidate(&req.method, response.get().status, &url))
    }

    /// Removes every entry under `prefix`: a path prefix when it starts with `/` (that path on any
    /// scheme and host), else a URL prefix; `""` removes everything. Returns how many.
    #[pyo3(signature = (prefix=""))]
    fn purge(&self, prefix: &str) -> usize {
        self.inner.purge(prefix)
    }

    /// Bytes held.
    #[getter]
    fn size_bytes(&self) -> usize {
        self.inner.size_bytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}
