//! Python adapters for the HTTP types: `Headers`, `URL`, `Request`, `Response`, `ParserLimits`,
//! `parse_request`, `redirect`.
//!
//! Each adapter owns the core value and converts on access. `Headers` is the one mutable object:
//! a frozen pyclass with a lock inside, because users edit response headers in place and a request's
//! headers object must be the same object on every access (created lazily, on first access).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use edgecore_core::http::{self as core, Limits};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use parking_lot::RwLock;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::convert::{geo_to_py, json_map_to_py};
use crate::errors::{config_error, CoreError, CoreResult};

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

/// The parts of a request URL.
#[pyclass(frozen, module = "edgecore._core", name = "URL")]
pub struct PyURL {
    inner: core::Url,
}

#[pymethods]
impl PyURL {
    /// `http` or `https`.
    #[getter]
    fn scheme(&self) -> &str {
        &self.inner.scheme
    }
    /// The host, without port.
    #[getter]
    fn host(&self) -> &str {
        &self.inner.host
    }
    /// The explicit port, or None.
    #[getter]
    fn port(&self) -> Option<u16> {
        self.inner.port
    }
    /// The path.
    #[getter]
    fn path(&self) -> &str {
        &self.inner.path
    }
    /// The query without `?`.
    #[getter]
    fn query(&self) -> &str {
        &self.inner.query
    }
    fn __str__(&self) -> String {
        self.inner.to_string()
    }
    fn __repr__(&self) -> String {
        format!("URL({:?})", self.inner.to_string())
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<PyURL>() {
            Ok(o) => o.get().inner == self.inner,
            Err(_) => other
                .extract::<String>()
                .map(|s| s == self.inner.to_string())
                .unwrap_or(false),
        }
    }
}

/// An HTTP request as edgecore sees it: the message and what the edge learned about the client.
#[pyclass(frozen, module = "edgecore._core", name = "Request")]
pub struct PyRequest {
    pub(crate) inner: core::Request,
    headers: OnceLock<Py<PyHeaders>>,
}

impl PyRequest {
    pub(crate) fn from_core(inner: core::Request) -> Self {
        PyRequest {
            inner,
            headers: OnceLock::new(),
        }
    }

    /// The request with the headers Python may have edited.
    pub(crate) fn to_core(&self) -> core::Request {
        let mut r = self.inner.clone();
        if let Some(h) = self.headers.get() {
            r.headers = h.get().inner.read().clone().into();
        }
        r
    }
}

#[pymethods]
impl PyRequest {
    /// A request built by hand (for tests and for calling policies directly).
    #[new]
    #[pyo3(signature = (method="GET", url="/", headers=None, body=None))]
    fn new(
        method: &str,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| config_error(format!("invalid HTTP method {method:?}")))?;
        let uri: http::Uri = url.parse().map_err(|_| config_error(format!("invalid URL {url:?}")))?;
        let mut r = core::Request::new(method, uri);
        r.headers = headers_from_py(headers)?.into();
        if let Some(body) = body {
            r.body = body_from_py(body)?;
        }
        Ok(Self::from_core(r))
    }

    /// The method (`GET`, `POST`, …).
    #[getter]
    fn method(&self) -> &str {
        self.inner.method.as_str()
    }
    /// The URL (scheme and host from the target or the Host header).
    #[getter]
    fn url(&self) -> PyURL {
        PyURL {
            inner: self.inner.url(self.inner.edge.scheme()),
        }
    }
    /// The path of the target.
    #[getter]
    fn path(&self) -> &str {
        self.inner.path()
    }
    /// The query string, without `?`.
    #[getter]
    fn query(&self) -> &str {
        self.inner.query()
    }
    /// The request target as sent.
    #[getter]
    fn target(&self) -> String {
        self.inner.target()
    }
    /// "1.0", "1.1" or "2".
    #[getter]
    fn http_version(&self) -> &'static str {
        match self.inner.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        }
    }
    /// The header fields (the same object on every access).
    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<PyHeaders> {
        self.headers
            .get_or_init(|| Py::new(py, PyHeaders::from_map(self.inner.headers.to_map())).expect("allocating Headers"))
            .clone_ref(py)
    }
    /// The decoded body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.body)
    }
    /// The client IP after trusted-proxy resolution (None outside the server).
    #[getter]
    fn client_ip(&self) -> Option<String> {
        self.inner.edge.client_ip.map(|ip| ip.to_string())
    }
    /// Geo data for the client, when a geo database is configured and knows the IP.
    #[getter]
    fn geo(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner.edge.geo.as_deref().map(|g| geo_to_py(py, g)).transpose()
    }
    /// The verified JWT claims, when a JWT policy matched.
    #[getter]
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .edge
            .claims
            .as_deref()
            .map(|c| json_map_to_py(py, c))
            .transpose()
    }
    /// The bot detector's verdict.
    #[getter]
    fn is_bot(&self) -> bool {
        self.inner.edge.is_bot
    }
    /// Path parameters captured by `/users/:id` patterns.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.inner.edge.params {
            d.set_item(&**k, v)?;
        }
        Ok(d)
    }
    /// The A/B variant assigned for `experiment`, or None.
    fn variant(&self, experiment: &str) -> Option<&str> {
        self.inner.edge.variant(experiment)
    }
    /// Serializes the request as HTTP/1.1 bytes with Content-Length framing.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.to_core().to_bytes())
    }
    fn __repr__(&self) -> String {
        format!("<Request {} {}>", self.inner.method, self.inner.target())
    }
}

pub(crate) fn body_from_py(body: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(s) = body.cast::<PyString>() {
        Ok(Bytes::copy_from_slice(s.to_str()?.as_bytes()))
    } else if let Ok(b) = body.extract::<PyBackedBytes>() {
        Ok(Bytes::copy_from_slice(&b))
    } else {
        Err(PyTypeError::new_err(format!(
            "body must be bytes or str, not {}",
            body.get_type().name()?
        )))
    }
}

/// An HTTP response.
#[pyclass(frozen, module = "edgecore._core", name = "Response")]
pub struct PyResponse {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: Py<PyHeaders>,
    pub(crate) body: Bytes,
}

impl PyResponse {
    pub(crate) fn from_core(py: Python<'_>, r: core::Response) -> PyResult<Self> {
        Ok(PyResponse {
            status: r.status,
            headers: Py::new(py, PyHeaders::from_map(r.headers))?,
            body: r.body,
        })
    }

    pub(crate) fn to_core(&self, py: Python<'_>) -> core::Response {
        core::Response {
            status: self.status,
            headers: self.headers.bind(py).get().inner.read().clone(),
            body: self.body.clone(),
        }
    }

    fn build(py: Python<'_>, body: Bytes, status: u16, headers: HeaderMap) -> PyResult<Self> {
        let mut r = core::Response::new(status, body).map_err(CoreError)?;
        r.headers = headers;
        Self::from_core(py, r)
    }
}

#[pymethods]
impl PyResponse {
    /// `body` may be bytes or str (str is UTF-8 encoded and defaults to text/plain).
    #[new]
    #[pyo3(signature = (body=None, status=200, headers=None))]
    fn new(
        py: Python<'_>,
        body: Option<&Bound<'_, PyAny>>,
        status: u16,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut map = headers_from_py(headers)?;
        let body = match body {
            None => Bytes::new(),
            Some(b) => {
                if b.is_instance_of::<PyString>() && !map.contains_key(http::header::CONTENT_TYPE) {
                    map.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                }
                body_from_py(b)?
            }
        };
        Self::build(py, body, status, map)
    }

    /// A JSON response (serialized with orjson when installed, else the json module).
    #[staticmethod]
    #[pyo3(signature = (obj, status=200, headers=None))]
    fn json(py: Python<'_>, obj: &Bound<'_, PyAny>, status: u16, headers: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut map = headers_from_py(headers)?;
        map.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = crate::convert::dumps_json(py, obj)?;
        Self::build(py, body, status, map)
    }

    /// The status code.
    #[getter]
    fn status(&self) -> u16 {
        self.status.as_u16()
    }
    /// The header fields (editable in place).
    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<PyHeaders> {
        self.headers.clone_ref(py)
    }
    /// The body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }
    /// The body decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn __repr__(&self) -> String {
        format!("<Response {} {} bytes>", self.status.as_u16(), self.body.len())
    }
}

/// Limits for `parse_request`: header count, header bytes, URI length, body size.
#[pyclass(frozen, module = "edgecore._core", name = "ParserLimits")]
pub struct PyParserLimits {
    pub(crate) inner: Limits,
}

#[pymethods]
impl PyParserLimits {
    #[new]
    #[pyo3(signature = (*, max_headers=None, max_header_bytes=None, max_uri_bytes=None, max_body_bytes=None))]
    fn new(
        max_headers: Option<usize>,
        max_header_bytes: Option<usize>,
        max_uri_bytes: Option<usize>,
        max_body_bytes: Option<usize>,
    ) -> CoreResult<Self> {
        let d = Limits::default();
        let inner = Limits {
            max_headers: max_headers.unwrap_or(d.max_headers),
            max_header_bytes: max_header_bytes.unwrap_or(d.max_header_bytes),
            max_uri_bytes: max_uri_bytes.unwrap_or(d.max_uri_bytes),
            max_body_bytes: max_body_bytes.unwrap_or(d.max_body_bytes),
        };
        inner.validate()?;
        Ok(PyParserLimits { inner })
    }
    #[getter]
    fn max_headers(&self) -> usize {
        self.inner.max_headers
    }
    #[getter]
    fn max_header_bytes(&self) -> usize {
        self.inner.max_header_bytes
    }
    #[getter]
    fn max_uri_bytes(&self) -> usize {
        self.inner.max_uri_bytes
    }
    #[getter]
    fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
    fn __repr__(&self) -> String {
        let l = &self.inner;
        format!(
            "ParserLimits(max_headers={}, max_header_bytes={}, max_uri_bytes={}, max_body_bytes={})",
            l.max_headers, l.max_header_bytes, l.max_uri_bytes, l.max_body_bytes
        )
    }
}

/// Parses from the Python buffer without copying it: the `Bytes` owns a reference to the
/// Python object, and header offsets, target and body all point into it.
fn parse(data: PyBackedBytes, limits: Option<&Bound<'_, PyParserLimits>>) -> CoreResult<core::Parsed> {
    let default = Limits::default();
    let limits = limits.map(|l| &l.get().inner).unwrap_or(&default);
    Ok(core::parse_request(&Bytes::from_owner(data), limits)?)
}

/// Parses exactly one HTTP/1.1 request; trailing bytes are an error.
#[pyfunction]
#[pyo3(signature = (data, limits=None))]
pub fn parse_request(data: PyBackedBytes, limits: Option<&Bound<'_, PyParserLimits>>) -> PyResult<PyRequest> {
    let len = data.len();
    let parsed = parse(data, limits)?;
    if parsed.consumed != len {
        return Err(CoreError(edgecore_core::Error::bad_request(format!(
            "{} unexpected bytes after the end of the message (use parse_request_prefix for pipelined input)",
            len - parsed.consumed
        )))
        .into());
    }
    Ok(PyRequest::from_core(parsed.request))
}

/// Parses the first request in `data`; returns it and the number of bytes it used.
#[pyfunction]
#[pyo3(signature = (data, limits=None))]
pub fn parse_request_prefix(
    data: PyBackedBytes,
    limits: Option<&Bound<'_, PyParserLimits>>,
) -> PyResult<(PyRequest, usize)> {
    let parsed = parse(data, limits)?;
    Ok((PyRequest::from_core(parsed.request), parsed.consumed))
}

/// A redirect response to `url` (301, 302, 303, 307 or 308).
#[pyfunction]
#[pyo3(signature = (url, status=302))]
pub fn redirect(py: Python<'_>, url: &str, status: u16) -> PyResult<PyResponse> {
    PyResponse::from_core(py, core::redirect(url, status).map_err(CoreError)?)
}
