//! Python adapters for the HTTP types: `URL`, `Request`, `Response`, `ParserLimits`,
//! `parse_request`, `redirect` (`Headers` is in [`crate::headers`]).
//!
//! Each adapter owns the core value and converts on access.

use std::sync::OnceLock;

use bytes::Bytes;
use edgecore_core::http::{self as core, Limits};
use http::header::HeaderValue;
use http::HeaderMap;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::convert::{geo_to_py, json_map_to_py};
use crate::errors::{config_error, CoreError, CoreResult};
use crate::headers::{headers_from_py, PyHeaders};

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
    /// The cookies sent (`Cookie` fields), by name; the first of a name sent twice wins.
    #[getter]
    fn cookies<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.cookies() {
            if !d.contains(k)? {
                d.set_item(k, v)?;
            }
        }
        Ok(d)
    }
    /// The device class: "mobile", "tablet", "desktop" or "bot" (from the bot verdict,
    /// `Sec-CH-UA-Mobile` when sent, and the User-Agent).
    #[getter]
    fn device(&self) -> &'static str {
        self.inner.device().as_str()
    }
    /// Where this edge runs (`Edge(location=...)`, `EDGECORE_LOCATION` or the host name), like
    /// Cloudflare's `request.cf.colo`; None outside the server.
    #[getter]
    fn location(&self) -> Option<&str> {
        self.inner.edge.location.as_deref()
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
