//! Python adapter for the KV store: `KV`. The in-process store answers directly; the Redis
//! store detaches from the interpreter while it waits for the network.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgecore_core::kv::{MemoryKv, RedisKv};
use edgecore_core::store::RedisConn;
use edgecore_core::{rt, Error};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{config_error, CoreError};
use crate::http::body_from_py;

pub(crate) enum Backend {
    Memory(MemoryKv),
    Redis(RedisKv),
}

/// A key-value store with time-to-live: in process (url=None) or Redis ("redis://…").
#[pyclass(frozen, module = "edgecore._core", name = "KV")]
pub struct PyKV {
    pub(crate) backend: Arc<Backend>,
    repr: String,
}

fn ttl_of(ttl: Option<f64>) -> PyResult<Option<Duration>> {
    ttl.map(|t| {
        Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| config_error("ttl must be a positive number of seconds"))
    })
    .transpose()
}

fn wait<T>(py: Python<'_>, fut: impl std::future::Future<Output = edgecore_core::Result<T>> + Send) -> PyResult<T>
where
    T: Send,
{
    py.detach(|| rt::block_on(fut))
        .ok_or_else(|| CoreError(Error::store("KV called from inside an async runtime")))?
        .map_err(|e| CoreError(e).into())
}

#[pymethods]
impl PyKV {
    #[new]
    #[pyo3(signature = (url=None, *, max_bytes=None, namespace="edgecore:kv:", timeout=0.5, cache_ttl=None, cache_entries=100_000))]
    fn new(
        url: Option<String>,
        max_bytes: Option<usize>,
        namespace: &str,
        timeout: f64,
        cache_ttl: Option<f64>,
        cache_entries: usize,
    ) -> PyResult<Self> {
        let cache_ttl =
            ttl_of(cache_ttl).map_err(|_| config_error("cache_ttl must be a positive number of seconds"))?;
        if cache_ttl.is_some() && url.is_none() {
            return Err(config_error(
                "cache_ttl is for a Redis KV (an in-process one is read from memory already)",
            ));
        }
        let (backend, repr) = match url {
            None => (
                Backend::Memory(MemoryKv::new(max_bytes)),
                format!("KV(None, max_bytes={max_bytes:?})"),
            ),
            Some(u) => {
                let t = Duration::try_from_secs_f64(timeout)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| config_error("timeout must be a positive number of seconds"))?;
                let conn = RedisConn::new(&u, t).map_err(CoreError)?;
                let mut kv = RedisKv::new(conn, namespace);
                if let Some(ttl) = cache_ttl {
                    kv = kv.with_memo(&u, ttl, cache_entries).map_err(CoreError)?;
                }
                let memo = cache_ttl
                    .map(|t| format!(", cache_ttl={}", t.as_secs_f64()))
                    .unwrap_or_default();
                (Backend::Redis(kv), format!("KV({u:?}, namespace={namespace:?}{memo})"))
            }
        };
        Ok(PyKV {
            backend: Arc::new(backend),
            repr,
        })
    }

    /// Moves an in-process store's clock forward by `seconds` (tests: TTLs run out with no
    /// sleeping; `edgecore.testing.TestClient.advance` does it for the app's stores). Returns
    /// whether it moved: a Redis store keeps Redis's clock.
    fn advance_clock(&self, seconds: f64) -> PyResult<bool> {
        let by =
            Duration::try_from_secs_f64(seconds).map_err(|_| config_error("seconds must be a non-negative number"))?;
        match &*self.backend {
            Backend::Memory(m) => {
                m.advance_clock(by);
                Ok(true)
            }
            Backend::Redis(_) => Ok(false),
        }
    }

    /// The value of `key` (bytes), or None when absent or expired.
    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let v = match &*self.backend {
            Backend::Memory(m) => m.get(key),
            Backend::Redis(r) => wait(py, r.get(key))?,
        };
        Ok(v.map(|b| PyBytes::new(py, &b)))
    }

    /// Stores `value` (bytes, or str as UTF-8), expiring after `ttl` seconds when given.
    #[pyo3(signature = (key, value, ttl=None))]
    fn put(&self, py: Python<'_>, key: &str, value: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let value: Bytes = body_from_py(value)?;
        let ttl = ttl_of(ttl)?;
        match &*self.backend {
            Backend::Memory(m) => m.put(key, value, ttl).map_err(|e| CoreError(e).into()),
            Backend::Redis(r) => wait(py, r.put(key, value, ttl)),
        }
    }

    /// `get` for async handlers: an awaitable that never blocks the event loop (a read served
    /// from the memo, or from memory, is ready at once).
    fn get_async<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let fut = event_loop.call_method0("create_future")?;
        let ready = match &*self.backend {
            Backend::Memory(m) => Some(m.get(key)),
            Backend::Redis(r) => r.get_memoised(key),
        };
        if let Some(v) = ready {
            fut.call_method1("set_result", (v.map(|b| PyBytes::new(py, &b)),))?;
            return Ok(fut);
        }
        let (backend, key) = (self.backend.clone(), key.to_owned());
        let (loop_ref, fut_ref) = (event_loop.unbind(), fut.clone().unbind());
        rt::background().spawn(async move {
            let Backend::Redis(r) = &*backend else { return };
            let result = r.get(&key).await;
            Python::attach(|py| {
                let (value, error) = match result {
                    Ok(v) => (v.map(|b| PyBytes::new(py, &b).into_any().unbind()), None),
                    Err(e) => (None, Some(PyErr::from(CoreError(e)).into_value(py))),
                };
                let resolve = py.import("edgecore._aio").and_then(|m| m.getattr("resolve"));
                if let Ok(resolve) = resolve {
                    let _ = loop_ref.call_method1(py, "call_soon_threadsafe", (resolve, fut_ref, value, error));
                }
            });
        });
        Ok(fut)
    }

    /// Adds `by` to the integer at `key` and returns the sum, atomically across every node
    /// sharing the store; a new key expires after `ttl` seconds when given, an existing one
    /// keeps its deadline.
    #[pyo3(signature = (key, by=1, ttl=None))]
    fn incr(&self, py: Python<'_>, key: &str, by: i64, ttl: Option<f64>) -> PyResult<i64> {
        let ttl = ttl_of(ttl)?;
        match &*self.backend {
            Backend::Memory(m) => m.incr(key, by, ttl).map_err(|e| CoreError(e).into()),
            Backend::Redis(r) => wait(py, r.incr(key, by, ttl)),
        }
    }

    /// Read-memo statistics: (invalidations heard, subscribed now); None without `cache_ttl`.
    #[getter]
    fn cache_stats(&self) -> Option<(u64, bool)> {
        match &*self.backend {
            Backend::Redis(r) => r.memo().map(|m| m.stats()),
            Backend::Memory(_) => None,
        }
    }

    /// Removes `key`; returns whether it was there.
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.delete(key)),
            Backend::Redis(r) => wait(py, r.delete(key)),
        }
    }

    /// Keys starting with `prefix`, sorted.
    #[pyo3(signature = (prefix=""))]
    fn list(&self, py: Python<'_>, prefix: &str) -> PyResult<Vec<String>> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.list(prefix)),
            Backend::Redis(r) => wait(py, r.list(prefix)),
        }
    }

    fn __repr__(&self) -> &str {
        &self.repr
    }
}
