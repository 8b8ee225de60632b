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
    #[pyo3(signature = (url=None, *, max_bytes=None, namespace="edgecore:kv:", timeout=0.5))]
    fn new(url: Option<String>, max_bytes: Option<usize>, namespace: &str, timeout: f64) -> PyResult<Self> {
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
                (
                    Backend::Redis(RedisKv::new(conn, namespace)),
                    format!("KV({u:?}, namespace={namespace:?})"),
                )
            }
        };
        Ok(PyKV {
            backend: Arc::new(backend),
            repr,
        })
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
