//! What middleware returns to let a request through: `ec.next(...)` (continue, optionally
//! editing the request's fields and adding fields to whatever answers) and `ec.rewrite(path)`
//! (continue with another path, as Next.js's `NextResponse.rewrite`).

use edgecore_core::http as core;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::headers::headers_from_py;

/// A middleware's decision to continue (made by `ec.next()` or `ec.rewrite()`).
#[pyclass(frozen, module = "edgecore._core", name = "Next")]
pub struct PyNext {
    request_headers: HeaderMap,
    response_headers: Vec<(HeaderName, HeaderValue)>,
    rewrite: Option<http::uri::PathAndQuery>,
}

impl PyNext {
    /// `request` continued as this decision says, and the fields to add to its response.
    pub(crate) fn apply(&self, mut request: core::Request) -> (core::Request, Vec<(HeaderName, HeaderValue)>) {
        let map = request.headers.as_map_mut();
        let mut last: Option<&HeaderName> = None;
        for (name, value) in &self.request_headers {
            // The first value of a name replaces the client's; later ones are appended.
            if last == Some(name) {
                map.append(name.clone(), value.clone());
            } else {
                map.insert(name.clone(), value.clone());
            }
            last = Some(name);
        }
        if let Some(target) = &self.rewrite {
            let keep_query = target
                .query()
                .is_none()
                .then(|| request.uri.query().map(str::to_owned))
                .flatten();
            let pq = match keep_query {
                Some(q) => format!("{}?{q}", target.path())
                    .parse()
                    .unwrap_or_else(|_| target.clone()),
                None => target.clone(),
            };
            let mut parts = request.uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                request.uri = uri;
            }
        }
        (request, self.response_headers.clone())
    }
}

fn decision(
    request_headers: Option<&Bound<'_, PyAny>>,
    response_headers: Option<&Bound<'_, PyAny>>,
    rewrite: Option<http::uri::PathAndQuery>,
) -> PyResult<PyNext> {
    let response_headers = headers_from_py(response_headers)?;
    Ok(PyNext {
        request_headers: headers_from_py(request_headers)?,
        response_headers: response_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        rewrite,
    })
}

#[pymethods]
impl PyNext {
    /// The path the request continues with, if rewritten.
    #[getter]
    fn rewrite(&self) -> Option<String> {
        self.rewrite.as_ref().map(|p| p.to_string())
    }
    fn __repr__(&self) -> String {
        match &self.rewrite {
            Some(p) => format!("<Next rewrite={:?}>", p.as_str()),
            None => "<Next>".to_owned(),
        }
    }
}

/// Middleware: continue to the cache, the routes and the origin. `request_headers` are set on
/// the request (replacing the client's values), `response_headers` are added to whatever
/// answers it (a cache hit, a handler or the origin).
#[pyfunction]
#[pyo3(name = "next", signature = (*, request_headers=None, response_headers=None))]
pub fn next_(
    request_headers: Option<&Bound<'_, PyAny>>,
    response_headers: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyNext> {
    decision(request_headers, response_headers, None)
}

/// Middleware: continue with another path (and query, if `path` has one; otherwise the
/// request's own query is kept), without the client seeing a redirect. The routes, the cache
/// and the origin see the new path; the policies before middleware saw the client's.
#[pyfunction]
#[pyo3(signature = (path, *, request_headers=None, response_headers=None))]
pub fn rewrite(
    path: &str,
    request_headers: Option<&Bound<'_, PyAny>>,
    response_headers: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyNext> {
    let target = (path.starts_with('/') && !path.starts_with("//"))
        .then(|| path.parse::<http::uri::PathAndQuery>().ok())
        .flatten()
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "rewrite target must be a path starting with a single / (with an optional ?query), not {path:?}"
            ))
        })?;
    decision(request_headers, response_headers, Some(target))
}
