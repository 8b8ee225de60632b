//! The bridge between the Rust server and Python handlers (granian's shape).
//!
//! Tokio hands each job to a bounded crossbeam queue (`try_send`: a full queue is a 503 at once,
//! never a wait). Python worker threads call `Server.next_jobs()`, which detaches from the
//! interpreter while it blocks and returns every job waiting (up to a batch size) in one go, so
//! under load one interpreter acquisition serves many requests. Each `PendingJob` carries the
//! request (built lazily: headers are only copied if Python reads them) and the oneshot reply;
//! Python answers with `respond(...)` or `fail(...)` — from the worker thread for a `def`
//! handler, or from the asyncio loop thread for an `async def` one. A job dropped unanswered
//! closes its oneshot and the pipeline answers 500.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use edgecore_core::http as core;
use edgecore_core::server::bridge::{Bridge, Job, JobKind, Reply};
use edgecore_core::server::fetch::Fetcher;
use edgecore_core::server::{self, ServerHandle};
use edgecore_core::server::{AppSpec, Objects, Plan};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use tokio::sync::oneshot;

use crate::auth::PyJWTVerifier;
use crate::classify::PyBotDetector;
use crate::errors::{config_error, CoreError};
use crate::flow::PyNext;
use crate::geo::PyGeoDB;
use crate::http::{PyRequest, PyResponse};
use crate::limit::PyRateLimiter;

struct QueueBridge {
    tx: Sender<Job>,
}

impl Bridge for QueueBridge {
    fn submit(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }
    fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// Builds the plan from the spec (JSON text) and the library objects it refers to.
fn build_plan(
    spec: &str,
    verifiers: &[PyRef<'_, PyJWTVerifier>],
    limiters: &[PyRef<'_, PyRateLimiter>],
    geo: &[PyRef<'_, PyGeoDB>],
    bots: Option<&PyRef<'_, PyBotDetector>>,
) -> PyResult<Plan> {
    let spec: AppSpec =
        serde_json::from_str(spec).map_err(|e| config_error(format!("invalid app configuration: {e}")))?;
    let objects = Objects {
        verifiers: verifiers.iter().map(|v| v.inner.clone()).collect(),
        limiters: limiters.iter().map(|l| l.inner.clone()).collect(),
        geo: geo.iter().map(|g| g.inner.clone()).collect(),
        bots: bots.map(|b| b.inner.clone()),
    };
    Plan::build(spec, objects).map_err(|e| CoreError(e).into())
}

/// Binds the listening socket. With `reuse_port`, several processes can bind the same port and
/// the kernel spreads connections between them (SO_REUSEPORT: `edgecore serve --workers N`).
fn bind(host: &str, port: u16, reuse_port: bool) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What a purge removes: `prefix`, or with `tag` every entry carrying that tag (the message
/// `tag:NAME`); both at once is an error.
fn purge_target(prefix: &str, tag: Option<&str>) -> PyResult<String> {
    match tag {
        None => Ok(prefix.to_owned()),
        Some(_) if !prefix.is_empty() => Err(config_error("purge takes a prefix or a tag, not both")),
        Some(t) if t.is_empty() || t.contains(|c: char| c == ',' || c.is_whitespace()) => Err(config_error(format!(
            "invalid cache tag {t:?}: a tag is one word (no commas or whitespace)"
        ))),
        Some(t) => Ok(format!("tag:{t}")),
    }
}

/// Publishes a cache purge of `prefix` (or of every entry tagged `tag`) on the Redis at `url`
/// to every subscribed edgecore node; returns how many nodes received it.
#[pyfunction]
#[pyo3(signature = (url, prefix="", *, tag=None, channel="edgecore:purge"))]
pub fn publish_purge(py: Python<'_>, url: &str, prefix: &str, tag: Option<&str>, channel: &str) -> PyResult<u64> {
    let target = purge_target(prefix, tag)?;
    let b = edgecore_core::server::purge::Broadcast::new(url, channel).map_err(CoreError)?;
    py.detach(|| {
        edgecore_core::rt::block_on(async move { b.publish(&target).await }).unwrap_or_else(|| {
            Err(edgecore_core::Error::config(
                "publish_purge called from an async runtime",
            ))
        })
    })
    .map_err(|e| CoreError(e).into())
}

/// Compiles a custom rejection (`{"status", "body", "content_type"}` as JSON) as the plan
/// would: raises ConfigError naming what is wrong.
#[pyfunction]
pub fn check_error_page(page: &str, location: &str) -> PyResult<()> {
    #[derive(serde::Deserialize)]
    struct Page {
        status: u16,
        body: String,
        content_type: String,
    }
    let p: Page = serde_json::from_str(page).map_err(|e| config_error(format!("error_response: {e}")))?;
    edgecore_core::server::error_pages::ErrorPage::new(p.status, &p.body, &p.content_type, location)
        .map(drop)
        .map_err(|e| CoreError(e).into())
}

/// Compiles path patterns and their exclusions as a rule would: raises ConfigError naming the
/// pattern that cannot be compiled, and why.
#[pyfunction]
pub fn check_paths(paths: Vec<String>, exclude: Vec<String>) -> PyResult<()> {
    edgecore_core::server::matcher::Matcher::excluding(&paths, &exclude)
        .map(drop)
        .map_err(|e| CoreError(e).into())
}

/// Checks server settings (a JSON object, as `app.configure(...)` takes them): raises
/// ConfigError naming an unknown setting (and the closest known one), a wrong type or a value
/// out of range.
#[pyfunction]
pub fn check_settings(settings: &str) -> PyResult<()> {
    edgecore_core::server::plan::check_settings(settings).map_err(|e| CoreError(e).into())
}

/// Every server setting with its default, as a JSON object (what `app.configure(...)` accepts).
#[pyfunction]
pub fn default_settings() -> String {
    serde_json::to_string(&edgecore_core::server::spec::ServerSpec::default()).expect("the settings serialise")
}

/// Compiles an app without serving it: returns (active policies, warnings); a bad configuration
/// raises ConfigError. `edgecore check` uses it.
#[pyfunction]
#[pyo3(signature = (spec, *, verifiers=vec![], limiters=vec![], geo=vec![], bots=None))]
pub fn check_app(
    spec: &str,
    verifiers: Vec<PyRef<'_, PyJWTVerifier>>,
    limiters: Vec<PyRef<'_, PyRateLimiter>>,
    geo: Vec<PyRef<'_, PyGeoDB>>,
    bots: Option<PyRef<'_, PyBotDetector>>,
) -> PyResult<(Vec<String>, Vec<String>)> {
    let plan = build_plan(spec, &verifiers, &limiters, &geo, bots.as_ref())?;
    Ok((plan.summary(), plan.warnings()))
}

/// A running edge server.
#[pyclass(frozen, module = "edgecore._core", name = "Server")]
pub struct PyServer {
    fetcher: Fetcher,
    handle: Mutex<Option<ServerHandle>>,
    rx: Receiver<Job>,
    bridge: Arc<QueueBridge>,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    summary: Vec<String>,
    warnings: Vec<String>,
    tls: bool,
}

#[pymethods]
impl PyServer {
    /// Compiles the app and starts serving on host:port (port 0: any free port).
    #[new]
    #[pyo3(signature = (spec, *, host="127.0.0.1", port=0, verifiers=vec![], limiters=vec![], geo=vec![], bots=None, reuse_port=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec: &str,
        host: &str,
        port: u16,
        verifiers: Vec<PyRef<'_, PyJWTVerifier>>,
        limiters: Vec<PyRef<'_, PyRateLimiter>>,
        geo: Vec<PyRef<'_, PyGeoDB>>,
        bots: Option<PyRef<'_, PyBotDetector>>,
        reuse_port: bool,
    ) -> PyResult<Self> {
        let plan = build_plan(spec, &verifiers, &limiters, &geo, bots.as_ref())?;
        let summary = plan.summary();
        let warnings = plan.warnings();
        let queue = plan.server.python_queue.max(1);
        let tls = plan.tls.is_some();
        let listener =
            bind(host, port, reuse_port).map_err(|e| config_error(format!("cannot listen on {host}:{port}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| config_error(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let bridge = Arc::new(QueueBridge { tx });
        let dyn_bridge: Arc<dyn Bridge> = bridge.clone();
        let handle = py
            .detach(|| server::start(plan, Some(dyn_bridge), listener))
            .map_err(CoreError)?;
        let admin = handle.admin_addr();
        let fetcher = handle.fetcher();
        Ok(PyServer {
            fetcher,
            handle: Mutex::new(Some(handle)),
            rx,
            bridge,
            addr,
            admin,
            summary,
            warnings,
            tls,
        })
    }

    /// Sends `request` to its origin through the server's proxy (`env.fetch`) in the
    /// background; `done(response, error)` is called with the Response (body read up to
    /// `max_bytes`) or the exception, on a background thread.
    fn fetch(&self, request: PyRef<'_, PyRequest>, max_bytes: usize, done: Py<PyAny>) {
        let fetcher = self.fetcher.clone();
        let request = request.to_core();
        edgecore_core::rt::background().spawn(async move {
            let result = fetcher.fetch(request, max_bytes).await;
            Python::attach(|py| {
                let args = match result.map(|r| PyResponse::from_core(py, r)) {
                    Ok(Ok(r)) => (Py::new(py, r).map(|r| r.into_any()), None),
                    Ok(Err(e)) => (Ok(py.None()), Some(e)),
                    Err(e) => (Ok(py.None()), Some(PyErr::from(CoreError(e)))),
                };
                let (resp, err) = match args {
                    (Ok(r), e) => (r, e.map(|e| e.into_value(py).into_any())),
                    (Err(e), _) => (py.None(), Some(e.into_value(py).into_any())),
                };
                if let Err(e) = done.call1(py, (resp, err)) {
                    e.print(py);
                }
            });
        });
    }

    /// `fetch`, waiting for the answer (from a worker thread; the interpreter is released).
    fn fetch_blocking(&self, py: Python<'_>, request: PyRef<'_, PyRequest>, max_bytes: usize) -> PyResult<PyResponse> {
        let fetcher = self.fetcher.clone();
        let request = request.to_core();
        let result = py
            .detach(|| edgecore_core::rt::block_on(fetcher.fetch(request, max_bytes)))
            .ok_or_else(|| config_error("fetch_blocking called from an async runtime"))?;
        PyResponse::from_core(py, result.map_err(CoreError)?)
    }

    /// Waits up to `timeout` seconds for Python work; returns every job waiting (at most `max`).
    #[pyo3(signature = (max=64, timeout=0.1))]
    fn next_jobs(&self, py: Python<'_>, max: usize, timeout: f64) -> PyResult<Vec<PyPendingJob>> {
        let wait = Duration::from_secs_f64(timeout.max(0.0));
        let jobs: Vec<Job> = py.detach(|| {
            let mut jobs = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(j) => jobs.push(j),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return jobs,
            }
            while jobs.len() < max.max(1) {
                match self.rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        });
        Ok(jobs
            .into_iter()
            .map(|j| PyPendingJob {
                kind: j.kind,
                request: Py::new(py, PyRequest::from_core(j.request)).expect("allocating a Request"),
                reply: Mutex::new(Some(j.reply)),
            })
            .collect())
    }

    /// Swaps in a new configuration without dropping connections; an invalid one raises
    /// ConfigError and the running one stays.
    #[pyo3(signature = (spec, *, verifiers=vec![], limiters=vec![], geo=vec![], bots=None))]
    fn reload(
        &self,
        spec: &str,
        verifiers: Vec<PyRef<'_, PyJWTVerifier>>,
        limiters: Vec<PyRef<'_, PyRateLimiter>>,
        geo: Vec<PyRef<'_, PyGeoDB>>,
        bots: Option<PyRef<'_, PyBotDetector>>,
    ) -> PyResult<()> {
        let plan = build_plan(spec, &verifiers, &limiters, &geo, bots.as_ref())?;
        match &*self.handle.lock() {
            Some(h) => h.reload(plan).map_err(|e| CoreError(e).into()),
            None => Err(config_error("the server is stopped")),
        }
    }

    /// Purges `prefix` from this server's response caches and, with a purge broadcast
    /// configured, publishes it to every node. Returns (entries removed here, nodes reached or
    /// None without a broadcast); a broadcast that fails raises StoreError after the local purge.
    #[pyo3(signature = (prefix="", *, tag=None))]
    fn purge(&self, py: Python<'_>, prefix: &str, tag: Option<&str>) -> PyResult<(usize, Option<u64>)> {
        let target = purge_target(prefix, tag)?;
        let purger = match &*self.handle.lock() {
            Some(h) => h.purger().map_err(CoreError)?,
            None => return Err(config_error("the server is stopped")),
        };
        py.detach(|| purger.purge(&target)).map_err(|e| CoreError(e).into())
    }

    /// Stops accepting, drains in-flight requests (up to the grace period), and stops.
    fn stop(&self, py: Python<'_>) {
        let handle = self.handle.lock().take();
        if let Some(mut h) = handle {
            py.detach(move || h.shutdown());
        }
    }

    /// Moves the server's clock forward by `seconds`, for tests (token expiry, cache freshness,
    /// in-process rate limits). `edgecore.testing.TestClient.advance` calls it.
    fn advance_clock(&self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(config_error("seconds must be a non-negative number"));
        }
        match &*self.handle.lock() {
            Some(h) => {
                h.advance_clock(seconds);
                Ok(())
            }
            None => Err(config_error("the server is stopped")),
        }
    }

    /// The bound port.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://host:port` of the admin listener (metrics off the public port), when
    /// `admin_addr` is set.
    #[getter]
    fn admin_url(&self) -> Option<String> {
        self.admin.map(|a| format!("http://{a}"))
    }

    /// The bound host.
    #[getter]
    fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// `http://host:port`.
    #[getter]
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.addr {
            SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
        }
    }

    /// Requests served so far.
    #[getter]
    fn requests(&self) -> u64 {
        self.handle.lock().as_ref().map_or(0, |h| h.requests())
    }

    /// Python jobs waiting now.
    #[getter]
    fn queued(&self) -> usize {
        self.bridge.queued()
    }

    /// The active policies.
    #[getter]
    fn summary(&self) -> Vec<String> {
        self.summary.clone()
    }

    /// Warnings about risky configuration.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

/// A request waiting for a Python answer.
#[pyclass(frozen, module = "edgecore._core", name = "PendingJob")]
pub struct PyPendingJob {
    kind: JobKind,
    request: Py<PyRequest>,
    reply: Mutex<Option<oneshot::Sender<Reply>>>,
}

fn to_response(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Option<core::Response>> {
    if let Ok(r) = obj.cast::<PyResponse>() {
        return Ok(Some(r.get().to_core(py)));
    }
    let text = |body: bytes::Bytes, ct: &'static str| {
        let mut r = core::Response::new(200, body).expect("200 is valid");
        r.headers
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
        r
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Some(text(
            bytes::Bytes::copy_from_slice(s.to_str()?.as_bytes()),
            "text/plain; charset=utf-8",
        )));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(text(
            bytes::Bytes::copy_from_slice(b.as_bytes()),
            "application/octet-stream",
        )));
    }
    if obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyList>() {
        return Ok(Some(text(crate::convert::dumps_json(py, obj)?, "application/json")));
    }
    Ok(None)
}

#[pymethods]
impl PyPendingJob {
    /// "route" or "middleware".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.name()
    }
    /// The handler's index.
    #[getter]
    fn handler(&self) -> usize {
        self.kind.handler()
    }
    /// The request.
    #[getter]
    fn request(&self, py: Python<'_>) -> Py<PyRequest> {
        self.request.clone_ref(py)
    }

    /// Answers with what the handler returned: a Response, str, bytes, dict/list (JSON), or —
    /// for middleware — None to continue with the (possibly edited) request. Anything else raises
    /// `TypeError` naming the type (the caller logs it and answers 500 with `fail`). Returns
    /// False when the request already had its answer.
    fn respond(&self, py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<bool> {
        let middleware = matches!(self.kind, JobKind::Middleware(_));
        let reply = match to_response(py, result)? {
            Some(r) => Reply::Respond(r),
            None if result.is_none() && middleware => {
                Reply::Continue(self.request.bind(py).get().to_core(), Vec::new())
            }
            None if middleware && result.is_instance_of::<PyNext>() => {
                let next = result.cast::<PyNext>()?;
                let (request, add) = next.get().apply(self.request.bind(py).get().to_core());
                Reply::Continue(request, add)
            }
            None => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{} handler returned {}, expected a Response, str, bytes or dict{}",
                    self.kind.name(),
                    result.get_type().name()?,
                    if middleware {
                        " (or None, ec.next() or ec.rewrite())"
                    } else {
                        ""
                    }
                )));
            }
        };
        let Some(tx) = self.reply.lock().take() else {
            return Ok(false);
        };
        Ok(tx.send(reply).is_ok())
    }

    /// Answers 500 (the handler raised); `message` is for the log.
    fn fail(&self, message: String) -> bool {
        match self.reply.lock().take() {
            Some(tx) => tx.send(Reply::Failed(message)).is_ok(),
            None => false,
        }
    }
}
