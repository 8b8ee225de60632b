//! The origin client: a keep-alive connection pool driven by the request's own task.
//!
//! - Bodies stream both ways (the request body goes up as it arrives unless a policy already read
//!   it; the response body comes down as it arrives unless it is being cached).
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
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use http::header::HeaderValue;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use tower_service::Service;

use super::forwarding::{prepare_request, prepare_response};
use super::origin::Origin;
use super::pool::{OriginBody, OriginConn, OriginPool, SendBody, SWEEP_EVERY};
use crate::error::{Error, ErrorKind, ErrorSource, Result};

/// The origin client.
pub struct Upstreams<B: SendBody> {
    connector: HttpsConnector<HttpConnector>,
    pools: Mutex<Vec<Arc<OriginPool<B>>>>,
    timeout: Duration,
    /// Worker threads (an idle list each).
    workers: usize,
}

/// What dials origins: TCP (no delay, `connect_timeout`), then TLS for `https://`.
pub(crate) fn connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

impl<B: SendBody> Upstreams<B> {
    /// A client with these timeouts, for `workers` worker threads.
    pub fn new(connect_timeout: Duration, timeout: Duration, workers: usize) -> Self {
        Upstreams {
            connector: connector(connect_timeout),
            pools: Mutex::new(Vec::new()),
            timeout,
            workers: workers.max(1),
        }
    }

    /// The pool for `origin` (by scheme and authority), made on first use. Pools outlive plans:
    /// a reload keeps the warm connections. Called when a plan is installed, not per request.
    pub fn pool(&self, origin: &Origin) -> Arc<OriginPool<B>> {
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
            retired: Default::default(),
        });
        let weak: Weak<OriginPool<B>> = Arc::downgrade(&pool);
        crate::rt::background().spawn(async move {
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
    }

    /// Drains the pools not in `keep` (a reload removed their origins): see
    /// [`OriginPool::retire`]. A later plan that names the origin again gets a new pool.
    pub fn retire_others(&self, keep: &[Arc<OriginPool<B>>]) {
        self.pools.lock().retain(|p| {
            let kept = keep.iter().any(|k| Arc::ptr_eq(k, p));
            if !kept {
                p.retire();
            }
            kept
        });
    }

    /// A ready connection: the most recently used idle one that is still open, else a new one.
    async fn checkout(&self, pool: &OriginPool<B>) -> Result<Box<OriginConn<B>>> {
        loop {
            // (Connections idle too long are closed by the sweeper.)
            let Some(mut c) = pool.idle().lock().pop() else { break };
            // One poll of the connection notices a hang-up from the origin and, after a
            // complete response, moves it back to idle, which makes the sender ready. One that
            // is not ready at once is not waited for: it is closed and the next one tried.
            let ready = std::future::poll_fn(|cx| {
                Poll::Ready(c.poll_inline(cx, |link, cx| link.poll_ready(cx)) == Poll::Ready(true))
            })
            .await;
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
    async fn dial(&self, pool: &OriginPool<B>) -> Result<Box<OriginConn<B>>> {
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
        let mut c = Box::new(OriginConn::new(sender, conn, self.timeout));
        if !std::future::poll_fn(|cx| c.poll_inline(cx, |link, cx| link.poll_ready(cx))).await {
            return Err(Error::new(
                ErrorKind::Upstream,
                ErrorSource::Upstream,
                "the origin closed the connection at once",
            ));
        }
        Ok(c)
    }

    /// Sends `parts` + `body` to `origin` through `pool` (the origin's, from [`Self::pool`]).
    /// `client_ip` and the original scheme/host feed the X-Forwarded-* fields (`scheme`: how the
    /// client reached us); `prior_xff` is the X-Forwarded-For chain we trust (from a trusted peer).
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        origin: &Origin,
        pool: &Arc<OriginPool<B>>,
        parts: http::request::Parts,
        body: B,
        client_ip: IpAddr,
        scheme: &'static str,
        prior_xff: Option<String>,
    ) -> Result<http::Response<OriginBody<B>>> {
        let c = self.connect(pool).await?;
        self.send(c, origin, pool, parts, body, client_ip, scheme, prior_xff)
            .await
    }

    /// A connection to the pool's origin, ready for a request: when this fails, nothing was
    /// sent (the request may go to another target as it is).
    pub(crate) async fn connect(&self, pool: &OriginPool<B>) -> Result<Box<OriginConn<B>>> {
        self.checkout(pool).await
    }

    /// Sends the request on `c` (from [`Self::connect`]) and waits for the response head.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send(
        &self,
        mut c: Box<OriginConn<B>>,
        origin: &Origin,
        pool: &Arc<OriginPool<B>>,
        mut parts: http::request::Parts,
        body: B,
        client_ip: IpAddr,
        scheme: &'static str,
        prior_xff: Option<String>,
    ) -> Result<http::Response<OriginBody<B>>> {
        prepare_request(&mut parts, origin, &pool.host, client_ip, scheme, prior_xff)?;
        let req = http::Request::from_parts(parts, body);
        c.link.timer.as_mut().reset(tokio::time::Instant::now() + self.timeout);
        // The connection takes the request up when it is driven, just below.
        let mut response = std::pin::pin!(c.handing(|link| link.sender.send_request(req)));
        let mut alive = true;
        let head = std::future::poll_fn(|cx| {
            c.poll_inline(cx, |link, cx| {
                // The connection writes the request and reads the response head as it is driven.
                if alive && !link.drive(cx) {
                    alive = false;
                }
                if let Poll::Ready(r) = response.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                link.timer.as_mut().poll(cx).map(|()| None)
            })
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
            // Both framings: hyper reads the body by Transfer-Encoding, but the origin's
            // Content-Length would go on to the client with a body of another length. RFC 9112
            // §6.3 says to treat it as an error: 502, and the connection is not reused.
            Some(Ok(resp)) if framed_two_ways(resp.headers()) => Err(Error::new(
                ErrorKind::Upstream,
                ErrorSource::Upstream,
                "the origin's response has both Content-Length and Transfer-Encoding",
            )),
            Some(Ok(resp)) => {
                let conn = alive.then_some(c);
                let mut resp = resp.map(|body| OriginBody {
                    body,
                    conn,
                    pool: pool.clone(),
                    busy: None,
                });
                prepare_response(resp.headers_mut());
                Ok(resp)
            }
        }
    }
}

impl<B: SendBody> Upstreams<B> {
    /// Sends a WebSocket upgrade to `origin` on a connection of its own (an upgraded connection
    /// never goes back to a pool): the origin's response, and its upgraded connection when it
    /// answered `101 Switching Protocols`. Another answer comes back whole (its body read up
    /// to 64 KiB), for the client to see why.
    #[allow(clippy::too_many_arguments)]
    pub async fn upgrade(
        &self,
        origin: &Origin,
        pool: &OriginPool<B>,
        mut parts: http::request::Parts,
        client_ip: IpAddr,
        scheme: &'static str,
        prior_xff: Option<String>,
        protocol: HeaderValue,
    ) -> Result<(http::Response<bytes::Bytes>, Option<hyper::upgrade::Upgraded>)> {
        prepare_request(&mut parts, origin, &pool.host, client_ip, scheme, prior_xff)?;
        parts
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(http::header::UPGRADE, protocol);
        let req = http::Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
        let exchange = async {
            let io = self.connector.clone().call(pool.dial.clone()).await.map_err(|e| {
                Error::new(
                    ErrorKind::Upstream,
                    ErrorSource::Upstream,
                    format!("connecting to the origin: {}", error_chain(&*e)),
                )
            })?;
            let (mut sender, conn) = http1::handshake(io).await.map_err(upstream_error)?;
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
            sender.send_request(req).await.map_err(upstream_error)
        };
        let mut resp = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::UpstreamTimeout,
                    ErrorSource::Upstream,
                    "the origin did not answer the upgrade in time",
                ))
            }
        };
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upgraded = hyper::upgrade::on(&mut resp).await.map_err(upstream_error)?;
            let upgrade_to = resp.headers().get(http::header::UPGRADE).cloned();
            let (mut parts, _) = resp.into_parts();
            prepare_response(&mut parts.headers);
            parts
                .headers
                .insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(u) = upgrade_to {
                parts.headers.insert(http::header::UPGRADE, u);
            }
            return Ok((http::Response::from_parts(parts, bytes::Bytes::new()), Some(upgraded)));
        }
        let (mut parts, body) = resp.into_parts();
        prepare_response(&mut parts.headers);
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 << 10))
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Ok((http::Response::from_parts(parts, body), None))
    }
}

/// The error of a failed exchange with the origin. A failure of the request body the client
/// was streaming up is the client's: 413 past the body limit, 400 for broken framing (a bad
/// chunk size, a connection cut mid-body). Anything else is the origin's: 502.
fn upstream_error(e: hyper::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return Error::downstream(ErrorKind::BodyTooLarge, "request body too large");
        }
        // Another hyper error inside this one is the server side's: the client's body (hyper's
        // Incoming) failed while it streamed up.
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if !std::ptr::eq(h, &e) {
                return Error::bad_request(format!("reading the request body: {h}"));
            }
        }
        source = s.source();
    }
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

/// Whether a head has both `Content-Length` and `Transfer-Encoding`: one pass over the names
/// (a few, compared as known names), not two hashed lookups, on every origin response.
fn framed_two_ways(h: &http::HeaderMap) -> bool {
    let (mut cl, mut te) = (false, false);
    for name in h.keys() {
        if name == http::header::CONTENT_LENGTH {
            cl = true;
        } else if name == http::header::TRANSFER_ENCODING {
            te = true;
        }
    }
    cl && te
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
}
