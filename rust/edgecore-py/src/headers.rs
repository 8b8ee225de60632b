//! Python adapter for `Headers`, the one mutable HTTP object: a frozen pyclass with a lock
//! inside, because users edit response headers in place and a request's headers object must be
//! the same object on every access (created lazily, on first access). Also the conversions of
//! header names, values and header collections from Python.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use parking_lot::RwLock;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::config_error;

/// A header value as `str`: UTF-8 when valid (what a `str` setter stored), else Latin-1 (obs-text).
pub(crate) fn value_str<'py>(py: Python<'py>, v: &HeaderValue) -> Bound<'py, PyString> {
    match std::str::from_utf8(v.as_bytes()) {
        Ok(s) => PyString::new(py, s),
        Err(_) => PyString::new(py, &v.as_bytes().iter().map(|&b| b as char).collect::<String>()),
    }
}

fn name_of(name: &str) -> PyResult<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| config_error(format!("invalid header name {name:?}")))
}

fn value_of(name: &str, value: &Bound<'_, PyAny>) -> PyResult<HeaderValue> {
    let bytes: Vec<u8> = if let Ok(s) = value.cast::<PyString>() {
        s.to_str()?.as_bytes().to_vec()
    } else if let Ok(b) = value.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if value.is_instance_of::<pyo3::types::PyInt>() {
        value.str()?.to_str()?.as_bytes().to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "header {name:?}: value must be str or bytes"
        )));
    };
    HeaderValue::from_bytes(&bytes).map_err(|_| {
        config_error(format!(
            "header {name:?}: value contains a control character (CR, LF, NUL…)"
        ))
    })
}

/// Fills `map` from a dict, a `Headers`, or an iterable of (name, value) pairs.
pub(crate) fn headers_from_py(obj: Option<&Bound<'_, PyAny>>) -> PyResult<HeaderMap> {
    let Some(obj) = obj else { return Ok(HeaderMap::new()) };
    if obj.is_none() {
        return Ok(HeaderMap::new());
    }
    // Sized to the contents: a default HeaderMap reserves room for several fields, which is
    // most of a small cached response's memory.
    let mut map = HeaderMap::with_capacity(obj.len().unwrap_or(0) + 1);
    if let Ok(h) = obj.cast::<PyHeaders>() {
        return Ok(h.get().inner.read().clone());
    }
    let pairs = if let Ok(d) = obj.cast::<PyDict>() {
        d.items().into_any()
    } else {
        obj.clone()
    };
    for item in pairs.try_iter()? {
        let item = item?;
        let (name, value): (String, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err("headers must be a dict, a Headers, or an iterable of (name, value) pairs")
        })?;
        map.append(name_of(&name)?, value_of(&name, &value)?);
    }
    Ok(map)
}

/// A case-insensitive multi-map of HTTP header fields. Names are returned in lower case; values of
/// one name keep their order, fields of different names are grouped by name (RFC 9110 §5.3: their
/// relative order carries no meaning).
#[pyclass(frozen, module = "edgecore._core", name = "Headers")]
pub struct PyHeaders {
    pub(crate) inner: RwLock<HeaderMap>,
    /// The bytes the fields hold, as [`PyHeaders::weight`] computes them; `STALE` after a change.
    /// Written only while holding the lock (read side: the computed value; write side: `STALE`),
    /// so a value computed before a change can never be stored after it.
    weight: AtomicUsize,
}

const STALE: usize = usize::MAX;

impl PyHeaders {
    pub(crate) fn from_map(map: HeaderMap) -> Self {
        PyHeaders {
            inner: RwLock::new(map),
            weight: AtomicUsize::new(STALE),
        }
    }

    /// Bytes the fields really hold (each with its map entry, plus the map's tables); computed
    /// once and kept until the headers change (a cache stores the same response many times).
    pub(crate) fn weight(&self) -> usize {
        const PER_FIELD: usize = 112;
        let w = self.weight.load(Ordering::Relaxed);
        if w != STALE {
            return w;
        }
        let map = self.inner.read();
        let fields: usize = map.iter().map(|(n, v)| n.as_str().len() + v.len() + PER_FIELD).sum();
        let w = fields + map.capacity() * 8;
        self.weight.store(w, Ordering::Relaxed);
        w
    }

    fn write(&self) -> parking_lot::RwLockWriteGuard<'_, HeaderMap> {
        let guard = self.inner.write();
        self.weight.store(STALE, Ordering::Relaxed);
        guard
    }
}

#[pymethods]
impl PyHeaders {
    #[new]
    #[pyo3(signature = (headers=None))]
    fn new(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Self::from_map(headers_from_py(headers)?))
    }

    /// The first value of `name`, or `default`.
    #[pyo3(signature = (name, default=None))]
    fn get<'py>(&self, py: Python<'py>, name: &str, default: Option<Bound<'py, PyAny>>) -> Option<Bound<'py, PyAny>> {
        match self.inner.read().get(name) {
            Some(v) => Some(value_str(py, v).into_any()),
            None => default,
        }
    }

    /// Every value of `name`, in order.
    fn get_all<'py>(&self, py: Python<'py>, name: &str) -> Vec<Bound<'py, PyString>> {
        self.inner
            .read()
            .get_all(name)
            .iter()
            .map(|v| value_str(py, v))
            .collect()
    }

    /// All (name, value) pairs, repeated names included.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let map = self.inner.read();
        let list = PyList::empty(py);
        for (n, v) in map.iter() {
            list.append(PyTuple::new(py, [PyString::new(py, n.as_str()), value_str(py, v)])?)?;
        }
        Ok(list)
    }

    /// The distinct names.
    fn keys(&self) -> Vec<String> {
        self.inner.read().keys().map(|k| k.as_str().to_owned()).collect()
    }

    /// Replaces every value of `name` with `value`.
    fn set(&self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (n, v) = (name_of(name)?, value_of(name, value)?);
        self.write().insert(n, v);
        Ok(())
    }

    /// Adds a value for `name`, keeping existing ones.
    fn append(&self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (n, v) = (name_of(name)?, value_of(name, value)?);
        self.write().append(n, v);
        Ok(())
    }

    /// Removes every value of `name`; returns whether there was one.
    fn delete(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// A copy that shares nothing with this one.
    fn copy(&self) -> Self {
        Self::from_map(self.inner.read().clone())
    }

    fn __contains__(&self, name: &str) -> bool {
        self.inner.read().contains_key(name)
    }

    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyString>> {
        self.inner
            .read()
            .get(name)
            .map(|v| value_str(py, v))
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    }

    fn __setitem__(&self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set(name, value)
    }

    fn __delitem__(&self, name: &str) -> PyResult<()> {
        if self.delete(name) {
            Ok(())
        } else {
            Err(PyKeyError::new_err(name.to_owned()))
        }
    }

    /// The number of fields (repeated names count once per value).
    fn __len__(&self) -> usize {
        self.inner.read().len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, self.keys())?.try_iter().map(|i| i.into_any())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<PyHeaders>() {
            Ok(o) => {
                let (a, b) = (self.inner.read().clone(), o.get().inner.read().clone());
                a == b
            }
            Err(_) => false,
        }
    }

    fn __repr__(&self) -> String {
        let map = self.inner.read();
        let items: Vec<String> = map
            .iter()
            .map(|(n, v)| format!("({:?}, {:?})", n.as_str(), String::from_utf8_lossy(v.as_bytes())))
            .collect();
        format!("Headers([{}])", items.join(", "))
    }
}
