//! Forwarding to the origin: a keep-alive connection pool driven by the request's own task.
//!
//! - Bodies stream both ways (the request body goes up as it arrives unless a policy already read
//!   it; the response body comes down as it arrives unless it is being cached).
//! - Hop-by-hop fields (RFC 9110 §7.6.1) and any field named in `Connection` are stripped in both
//!   directions; `X-Forwarded-For/Proto/Host` and `Via` are set. `Host` becomes the origin's.
//! - A connect timeout, or no response head within `origin_timeout` → 504; any other failure
//!   (refused, reset, malformed response) → 502. A connection that failed is dropped, never
//!   pooled, and requests are never retried, so a POST is sent at most once.
//!
//! Why not hyper-util's pooled client: it runs each origin connection as a task of its own, so
//! every proxied request crosses tasks (and often threads) three times: the request to the
//! connection task, the response head back, and each body chunk back. Here the request's task
//! polls the origin connection itself (while it waits for the head, then inside the response
//! body as the server writes it out), and the connection goes back to its origin's idle list
//! when the body has been read to the end. A connection given back early (the client went away
//! mid-body) is closed instead. A background task per origin closes idle connections that the
//! origin hung up on or that sat idle past the idle timeout.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::Limited;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tower_service::Service;

use super::plan::Origin;
use crate::error::{Error, ErrorKind, ErrorSource, Result};

/// The body of every response the server sends and of every request it forwards: a whole body,
/// the origin's body streaming down, or the client's body streaming up (bounded). An enum rather
/// than a boxed trait object: no allocation and no dynamic call per message.
pub enum Body {
    /// A body in memory (None once sent, or when empty).
    Full(Option<Bytes>),
    /// The origin's response body.
    Origin(OriginBody),
    /// The client's request body, at most the configured size.
    Upload(Limited<Incoming>),
}

impl Body {
    /// A body in memory.
    pub fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Body::Origin(o) => Pin::new(o)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
            Body::Upload(l) => Pin::new(l).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Origin(o) => o.is_end_stream(),
            Body::Upload(l) => l.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Origin(o) => o.size_hint(),
            Body::Upload(l) => l.size_hint(),
        }
    }
}
/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `X-Forwarded-For` (the pipeline reads it too).
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const VIA: HeaderValue = HeaderValue::from_static("1.1 edgecore");

/// The hop-by-hop fields (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Whether a (lower-case) field name is hop-by-hop.
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Removes hop-by-hop fields and the fields `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names finds the few present (each name appears once in `keys`, so
    // there are at most as many as HOP_BY_HOP has); only those are removed. Most messages carry
    // none, or just `Connection`.
    let mut found: [Option<HeaderName>; HOP_BY_HOP.len()] = Default::default();
    let mut n = 0;
    for k in h.keys() {
        if is_hop_by_hop(k.as_str()) {
            found[n] = Some(k.clone());
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    // Fields named in Connection. The usual values, `keep-alive` and `close`, name nothing else
    // to remove: that case is two comparisons, no parsing.
    let names_others = || {
        h.get_all(http::header::CONNECTION).iter().any(|v| {
            let v = v.as_bytes();
            !(v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close"))
        })
    };
    if found.iter().flatten().any(|k| k == http::header::CONNECTION) && names_others() {
        let named: Vec<HeaderName> = h
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("close") && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for name in found.into_iter().flatten() {
        h.remove(name);
    }
}

/// Idle connections kept per origin.
const MAX_IDLE: usize = 256;
/// How often each origin's idle list is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Sweeps an idle connection survives: 18 × 5 s, so it is closed after 90–95 s idle.
const IDLE_SWEEPS: u32 = 18;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// One HTTP/1.1 connection to an origin: the request side and the connection state machine,
/// which whoever holds it must poll for anything to happen.
struct OriginConn {
    sender: http1::SendRequest<Body>,
    conn: http1::Connection<Io, Body>,
    /// The pool's sweep count when it went idle (sweeps, not a clock: no clock read per request).
    idle_since: u32,
    /// The origin-timeout timer, re-armed for each request: resetting a registered timer costs
    /// less than creating, registering and dropping one per request.
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl OriginConn {
    /// Drives the connection's I/O; false once it has ended (closed by either side, or failed).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_pending()
    }

    /// Drives the connection, then asks whether it can take a request: Ready(false) once it has
    /// ended or failed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if !self.drive(cx) {
            return Poll::Ready(false);
        }
        self.sender.poll_ready(cx).map(|r| r.is_ok())
    }
}

/// One worker's idle connections to an origin. Boxed: a connection is a large struct, and it
/// moves between the pool, the exchange and the response body on every request.
#[allow(clippy::vec_box)]
type Idle = Mutex<Vec<Box<OriginConn>>>;

/// The idle connections to one origin (scheme and authority), one list per worker thread (a
/// connection's I/O belongs to the runtime that opened it), most recently used last.
pub struct OriginPool {
    idle: Box<[Idle]>,
    /// `scheme://authority/`, what the connector dials.
    dial: http::Uri,
    /// The `Host` field sent upstream.
    host: HeaderValue,
    /// Sweeps so far.
    sweeps: AtomicU32,
}

impl OriginPool {
    /// This worker's idle list.
    fn idle(&self) -> &Idle {
        &self.idle[super::worker_index() % self.idle.len()]
    }

    fn put(&self, mut c: Box<OriginConn>) {
        c.idle_since = self.sweeps.load(Ordering::Relaxed);
        let mut idle = self.idle().lock();
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Closes connections the origin has closed or that idled too long.
    fn sweep(&self) {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        for idle in &self.idle {
            idle.lock()
                .retain_mut(|c| now.wrapping_sub(c.idle_since) < IDLE_SWEEPS && c.drive(&mut cx));
        }
    }
}

/// The response body from the origin. It polls the origin connection as it is read, and gives
/// the connection back to the pool once the body has been read to its end.
pub struct OriginBody {
    body: Incoming,
    conn: Option<Box<OriginConn>>,
    pool: Arc<OriginPool>,
}

impl hyper::body::Body for OriginBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The body first: a small response arrives with its head, already read by the drive that
        // produced the head, so most bodies need no further drive of the connection. (Whoever
        // checks the connection out next drives it back to idle.)
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            if let Some(c) = &mut this.conn {
                if !c.drive(cx) {
                    this.conn = None;
                }
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        if let Poll::Ready(None) = frame {
            if let Some(c) = this.conn.take() {
                this.pool.put(c);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for OriginBody {
    fn drop(&mut self) {
        // The server stops polling once `is_end_stream` says so: that is a complete body too.
        // Anything else (the client went away mid-body) leaves the connection mid-response, so
        // it is closed.
        if let Some(c) = self.conn.take() {
            if hyper::body::Body::is_end_stream(&self.body) {
                self.pool.put(c);
            }
        }
    }
}

/// The origin client.
pub struct Proxy {
    connector: HttpsConnector<HttpConnector>,
    pools: Mutex<Vec<Arc<OriginPool>>>,
    timeout: Duration,
    /// Worker threads (an idle list each).
    workers: usize,
}

impl Proxy {
    /// A client with these timeouts, for `workers` worker threads.
    pub fn new(connect_timeout: Duration, timeout: Duration, workers: usize) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Proxy {
            connector,
            pools: Mutex::new(Vec::new()),
            timeout,
            workers: workers.max(1),
        }
    }

    /// The pool for `origin`: found once per plan origin, then kept in it. Pools outlive plans,
    /// so a reload keeps the warm connections.
    fn pool<'o>(&self, origin: &'o Origin) -> &'o Arc<OriginPool> {
        origin.pool.get_or_init(|| {
            let mut pools = self.pools.lock();
            if let Some(p) = pools
                .iter()
                .find(|p| p.dial.scheme() == Some(&origin.scheme) && p.dial.authority() == Some(&origin.authority))
            {
                return p.clone();
            }
            let dial = http::Uri::builder()
                .scheme(origin.scheme.clone())
                .authority(origin.authority.clone())
                .path_and_query("/")
                .build()
                .expect("scheme and authority were parsed");
            let host = HeaderValue::from_str(origin.authority.as_str()).expect("an authority is a valid field");
            let pool = Arc::new(OriginPool {
                idle: (0..self.workers).map(|_| Mutex::new(Vec::new())).collect(),
                dial,
                host,
                sweeps: AtomicU32::new(0),
            });
            let weak: Weak<OriginPool> = Arc::downgrade(&pool);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    match weak.upgrade() {
                        Some(p) => p.sweep(),
                        None => return,
                    }
                }
            });
            pools.push(pool.clone());
            pool
        })
    }

    /// A ready connection: the most recently used idle one that is still open, else a new one.
    async fn checkout(&self, pool: &OriginPool) -> Result<Box<OriginConn>> {
        loop {
            // (Connections idle too long are closed by the sweeper.)
            let Some(mut c) = pool.idle().lock().pop() else { break };
            // One poll of the connection notices a hang-up from the origin and, after a
            // complete response, moves it back to idle, which makes the sender ready. One that
            // is not ready at once is not waited for: it is closed and the next one tried.
            let ready = std::future::poll_fn(|cx| Poll::Ready(c.poll_ready(cx) == Poll::Ready(true))).await;
            if ready {
                return Ok(c);
            }
        }
        // Boxed: dialling (TCP, maybe TLS, the handshake) is the rare path and its future is
        // large; inline, every request's future would carry (and move) its space. Bounded by
        // the origin timeout as a whole (the connect timeout bounds the TCP part).
        match tokio::time::timeout(self.timeout, Box::pin(self.dial(pool))).await {
            Ok(dialled) => dialled,
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                ErrorSource::Upstream,
                "connecting to the origin took longer than the origin timeout",
            )),
        }
    }

    /// A new connection to the pool's origin, ready to send.
    async fn dial(&self, pool: &OriginPool) -> Result<Box<OriginConn>> {
        let io = self.connector.clone().call(pool.dial.clone()).await.map_err(|e| {
            let kind = if timed_out(&*e) {
                ErrorKind::UpstreamTimeout
            } else {
                ErrorKind::Upstream
            };
            Error::new(
                kind,
                ErrorSource::Upstream,
                format!("connecting to the origin: {}", error_chain(&*e)),
            )
        })?;
        let (sender, conn) = http1::handshake(io).await.map_err(upstream_error)?;
        let mut c = Box::new(OriginConn {
            sender,
            conn,
            idle_since: 0,
            timer: Box::pin(tokio::time::sleep(self.timeout)),
        });
        if !std::future::poll_fn(|cx| c.poll_ready(cx)).await {
            return Err(Error::new(
                ErrorKind::Upstream,
                ErrorSource::Upstream,
                "the origin closed the connection at once",
            ));
        }
        Ok(c)
    }

    /// Sends `parts` + `body` to `origin`. `client_ip` and the original scheme/host feed the
    /// X-Forwarded-* fields (`scheme`: how the client reached us); `prior_xff` is the
    /// X-Forwarded-For chain we trust (from a trusted peer).
    pub async fn forward(
        &self,
        origin: &Origin,
        mut parts: http::request::Parts,
        body: Body,
        client_ip: IpAddr,
        scheme: &'static str,
        prior_xff: Option<String>,
    ) -> Result<http::Response<OriginBody>> {
        let pool = self.pool(origin);
        // The host the client asked for: its Host field, or the target's authority (HTTP/2's
        // :authority, or an absolute-form target), read before the target is rewritten.
        let original_host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // HTTP/1.1 to the origin: the target in origin form, the origin's Host.
        parts.uri = match parts.uri.path_and_query() {
            Some(pq) if origin.base_path.is_empty() => http::Uri::from(pq.clone()),
            pq => {
                let pq = pq.map_or("/", |p| p.as_str());
                http::Uri::try_from(format!("{}{pq}", origin.base_path)).map_err(|e| {
                    Error::new(
                        ErrorKind::Internal,
                        ErrorSource::Internal,
                        format!("building the origin URI: {e}"),
                    )
                })?
            }
        };
        let h = &mut parts.headers;
        strip_hop_by_hop(h);
        h.insert(http::header::HOST, pool.host.clone());
        let xff = match prior_xff {
            Some(mut chain) if !chain.is_empty() => {
                chain.push_str(", ");
                crate::geo::client_ip::push_ip(&mut chain, client_ip);
                chain
            }
            _ => {
                let mut s = String::with_capacity(40);
                crate::geo::client_ip::push_ip(&mut s, client_ip);
                s
            }
        };
        // From a String: the buffer becomes the value without another copy.
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::try_from(xff).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        );
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
        if let Some(host) = original_host {
            h.insert(X_FORWARDED_HOST, host);
        }
        h.append(http::header::VIA, VIA);
        parts.version = http::Version::HTTP_11;
        let req = http::Request::from_parts(parts, body);
        let mut c = self.checkout(pool).await?;
        c.timer.as_mut().reset(tokio::time::Instant::now() + self.timeout);
        let mut response = std::pin::pin!(c.sender.send_request(req));
        let mut alive = true;
        let head = std::future::poll_fn(|cx| {
            // The connection writes the request and reads the response head as it is driven.
            if alive && !c.drive(cx) {
                alive = false;
            }
            if let Poll::Ready(r) = response.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            c.timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match head {
            // The connection is dropped with the exchange: it is mid-request.
            None => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                ErrorSource::Upstream,
                "the origin did not answer in time",
            )),
            Some(Err(e)) => Err(upstream_error(e)),
            Some(Ok(resp)) => {
                let conn = alive.then_some(c);
                let mut resp = resp.map(|body| OriginBody {
                    body,
                    conn,
                    pool: pool.clone(),
                });
                strip_hop_by_hop(resp.headers_mut());
                resp.headers_mut().append(http::header::VIA, VIA);
                Ok(resp)
            }
        }
    }
}

fn upstream_error(e: hyper::Error) -> Error {
    Error::new(
        ErrorKind::Upstream,
        ErrorSource::Upstream,
        format!("origin request failed: {}", error_chain(&e)),
    )
}

/// Whether an error or one of its sources is an I/O timeout (how the connector reports its
/// connect timeout).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_found_anywhere_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timeout = Wrapper(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"));
        let refused = Wrapper(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "timed out"));
        assert!(timed_out(&timeout));
        // The kind decides, not the wording.
        assert!(!timed_out(&refused));
    }

    #[test]
    fn many_hop_by_hop_fields_all_go() {
        let mut h = HeaderMap::new();
        for n in [
            "te",
            "trailer",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "x-kept",
        ] {
            h.insert(HeaderName::from_static(n), "1".parse().unwrap());
        }
        h.append("x-kept", "2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
        assert_eq!(h.get_all("x-kept").iter().count(), 2);
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
    }
}
