//! The service hyper calls for each request: the metrics page, or the pipeline; then what
//! applies to every response (cookies, `RateLimit-*`, `X-Cache`), the metrics and the access log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;

use super::admin::metrics_response;
use super::body::{Body, BoxError};
use super::conn::InFlight;
use super::ctx::{Notes, TraceId};
use super::metrics::Outcome;
use super::pipeline;
use super::respond::{error_response, rate_headers, status_response};
use super::state::ServerState;
use crate::cache::http_cache::X_CACHE;

/// Serves one request. `request` marks the connection busy until hyper has taken the response
/// body. (The future is the service's own, with no wrapper around it: every layer of futures
/// costs a copy of the inner one per request.)
pub(crate) async fn serve(
    state: Arc<ServerState>,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
    request: InFlight,
) -> Result<http::Response<Tracked>, Infallible> {
    let unsupported_version = request.version_unsupported();
    fn tracked(r: http::Response<Body>, request: InFlight) -> Result<http::Response<Tracked>, Infallible> {
        Ok(r.map(|body| Tracked {
            body,
            _request: request,
        }))
    }
    state.metrics.arrived();
    if unsupported_version {
        let mut r = status_response(
            http::StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "HTTP Version Not Supported",
        );
        r.headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        return tracked(r, request);
    }
    let active = state.active.load_full();
    let t0 = std::time::Instant::now();
    let plan = &active.plan;
    // On the public port only for the allowed peers, and not at all with an admin listener:
    // for anyone else the path is like any other (every policy applies).
    if let Some(p) = &plan.server.metrics_path {
        if req.uri().path() == p
            && plan.server.admin_addr.is_none()
            && plan
                .request
                .metrics_allow
                .contains(crate::geo::client_ip::normalize(peer.ip()))
        {
            return tracked(metrics_response(&state, plan), request);
        }
    }
    let logged = state.access_log.as_ref().map(|_| {
        let ua = req
            .headers()
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        (req.method().clone(), req.uri().path().to_owned(), ua)
    });
    let (result, mut notes) = pipeline::run(&state, &active, req, peer, secure).await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if let Some(t) = resp.extensions_mut().remove::<super::tunnel::PendingTunnel>() {
        if let Some(t) = t.0.lock().take() {
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // HTTP/1.1: the connection's task runs it once hyper hands the connection over.
                request.start_tunnel(t);
            } else {
                // HTTP/2 (RFC 8441): one stream of a shared connection; a task of its own.
                tokio::spawn(t.run(active.plan.timeouts.upgrade_idle, || false));
            }
        }
    }
    let outcome = finish(&mut notes, &mut resp);
    for (policy, would_reject) in &notes.shadow {
        state.metrics.shadow(*policy, *would_reject);
    }
    if !plan.error_pages.is_empty() && outcome.is_edge_rejection() {
        if let Some(page) = super::error_pages::page_for(&plan.error_pages, &resp) {
            let rate = notes.rate.as_ref().map(|n| &n.decision);
            page.apply(&mut resp, notes.request_id.as_ref().and_then(|v| v.to_str().ok()), rate);
        }
    }
    if let Some(trace) = notes.trace.take() {
        resp = super::explain::finish(*trace, outcome, resp);
    }
    let elapsed = t0.elapsed();
    state.metrics.request(outcome, resp.status().as_u16(), elapsed);
    if let (Some(log), Some(logged)) = (&state.access_log, logged) {
        log.write(log_line(logged, &notes, &resp, outcome, elapsed, peer));
    }
    tracked(resp, request)
}

/// What the access log keeps of a request before the pipeline takes it: method, path,
/// User-Agent.
type Logged = (http::Method, String, Option<String>);

/// One access-log line (JSON).
fn log_line(
    (method, path, user_agent): Logged,
    notes: &Notes,
    resp: &http::Response<Body>,
    outcome: Outcome,
    elapsed: std::time::Duration,
    peer: SocketAddr,
) -> String {
    // The body's exact size when known (full bodies, or a Content-Length from the origin);
    // null for a streamed body of unknown length.
    let bytes = hyper::body::Body::size_hint(resp.body()).exact();
    let now = crate::clock::now();
    let shadow: Vec<&str> = notes
        .shadow
        .iter()
        .filter(|(_, r)| *r)
        .map(|(p, _)| p.as_str())
        .collect();
    serde_json::json!({
        "time": now,
        "timestamp": crate::clock::rfc3339(now),
        "request_id": notes.request_id.as_ref().and_then(|v| v.to_str().ok()),
        "trace_id": notes.trace_id.as_ref().map(TraceId::as_str),
        "user_agent": user_agent,
        "shadow": shadow,
        "client_ip": notes.client_ip.unwrap_or(peer.ip()).to_string(),
        "method": method.as_str(),
        "path": path,
        "status": resp.status().as_u16(),
        "bytes": bytes,
        "duration_ms": elapsed.as_secs_f64() * 1000.0,
        "decision": outcome.as_str(),
    })
    .to_string()
}

/// Applies what every response gets from the notes; returns what answered (for the metrics).
fn finish(notes: &mut Notes, resp: &mut http::Response<Body>) -> Outcome {
    let h = resp.headers_mut();
    for (name, v) in notes.always.drain(..) {
        if name == http::header::VARY {
            h.append(name, v);
        } else {
            h.insert(name, v);
        }
    }
    for c in notes.set_cookies.drain(..) {
        h.append(http::header::SET_COOKIE, c);
    }
    if let Some(n) = &notes.rate {
        rate_headers(&n.decision, n.fields, Some(&n.policy), h);
    }
    if let Some(s) = notes.cache_status.filter(|s| !s.from_store()) {
        h.entry(X_CACHE).or_insert_with(|| s.as_header());
    }
    notes
        .outcome
        .or(notes.cache_status.and_then(|s| s.outcome()))
        .unwrap_or(if resp.status().is_server_error() {
            Outcome::Error
        } else {
            Outcome::Rejected
        })
}

/// The server's response body: the pipeline's body, holding its request's [`InFlight`].
pub struct Tracked {
    body: Body,
    _request: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
