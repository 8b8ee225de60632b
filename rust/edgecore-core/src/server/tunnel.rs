//! Upgraded connections (WebSockets, RFC 6455 over HTTP/1.1): the request went through every
//! policy like any other; the proxy then opened a connection of its own to the origin, sent the
//! upgrade, and got `101 Switching Protocols`. What is left is a [`Tunnel`]: once hyper has
//! written the 101 to the client and handed the client's connection over, bytes are copied both
//! ways until either side closes, the tunnel sits idle past `upgrade_idle_timeout`, or the
//! server stops. The connection's task runs the tunnel, so the connection keeps its place under
//! `max_connections` and in the open-connection metrics for as long as it lives.
//!
//! An HTTP/2 client's WebSocket (RFC 8441: extended CONNECT with `:protocol: websocket`) goes to
//! the origin as the same HTTP/1.1 upgrade, with a key the edge makes and checks; the client gets
//! `200` and its stream carries the bytes.
//!
//! Only `Upgrade: websocket` is proxied. Any other upgrade (`h2c` among them) is not: the
//! request goes on as a plain HTTP/1.1 request with the upgrade fields removed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::upstream::Busy;

/// Whether `headers` (of an HTTP/1.1 GET) ask for a WebSocket upgrade: `Upgrade: websocket` and
/// `Connection: upgrade`.
pub fn wants_websocket(headers: &http::HeaderMap) -> bool {
    let token_in = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    token_in(http::header::UPGRADE, "websocket") && token_in(http::header::CONNECTION, "upgrade")
}

/// The fields `Sec-WebSocket-Accept` must answer for `key` (RFC 6455 §4.2.2).
fn accept_for(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Turns an HTTP/2 extended CONNECT for `websocket` (RFC 8441) into the HTTP/1.1 upgrade the
/// origin gets: GET, `Upgrade: websocket`, `Connection: upgrade`, and a fresh
/// `Sec-WebSocket-Key` (an HTTP/2 client sends none; the edge checks the origin's answer to it).
pub fn as_http1_upgrade(req: &mut http::Request<hyper::body::Incoming>) -> String {
    use base64::Engine;
    *req.method_mut() = http::Method::GET;
    let mut nonce = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut nonce);
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let h = req.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    h.insert(
        http::header::SEC_WEBSOCKET_KEY,
        http::HeaderValue::from_str(&key).expect("base64"),
    );
    h.entry(http::header::SEC_WEBSOCKET_VERSION)
        .or_insert(http::HeaderValue::from_static("13"));
    key
}

/// The origin's `101` for an HTTP/2 client: `200` (RFC 8441 §5), without the HTTP/1.1
/// upgrade fields, once its `Sec-WebSocket-Accept` matched `key`, the key the edge sent (502 if
/// not). Any other answer goes back as it is.
pub fn as_http2_answer(resp: &mut http::Response<super::body::Body>, key: &str) -> crate::error::Result<()> {
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    let sent = accept_for(key.as_bytes());
    let got = resp.headers().get(http::header::SEC_WEBSOCKET_ACCEPT);
    if got.map(|g| g.as_bytes()) != Some(sent.as_bytes()) {
        resp.extensions_mut().remove::<PendingTunnel>();
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::Upstream,
            crate::error::ErrorSource::Upstream,
            "the origin's Sec-WebSocket-Accept does not answer the key the edge sent",
        ));
    }
    *resp.status_mut() = http::StatusCode::OK;
    let h = resp.headers_mut();
    for name in [
        http::header::UPGRADE,
        http::header::CONNECTION,
        http::header::SEC_WEBSOCKET_ACCEPT,
    ] {
        h.remove(name);
    }
    Ok(())
}

/// A tunnel ready to run: the origin's upgraded connection and the client's, once hyper hands
/// it over.
pub struct Tunnel {
    client: OnUpgrade,
    origin: Upgraded,
    /// Milliseconds since `start` at the last byte either way.
    last: Arc<AtomicU64>,
    start: Instant,
    /// The tunnel's place in its upstream's circuit breaker count, released when it closes.
    _busy: Option<Busy>,
}

/// The tunnel a 101 response carries to the connection's task (an `http` extension: it must be
/// `Clone + Sync`, which the tunnel is not, hence the shared slot).
#[derive(Clone)]
pub struct PendingTunnel(pub Arc<Mutex<Option<Tunnel>>>);

impl Tunnel {
    /// A tunnel between the client's connection (once upgraded) and the origin's.
    pub fn new(client: OnUpgrade, origin: Upgraded, busy: Option<Busy>) -> Tunnel {
        Tunnel {
            client,
            origin,
            last: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
            _busy: busy,
        }
    }

    /// Copies both ways until a side closes, no byte moves for `idle`, or `stopped()` says so.
    pub async fn run(self, idle: Duration, stopped: impl Fn() -> bool) {
        let Ok(client) = self.client.await else { return };
        let (last, start) = (self.last, self.start);
        let touch = |last: &AtomicU64| last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        touch(&last);
        let mut client = Active {
            io: TokioIo::new(client),
            last: last.clone(),
            start,
        };
        let mut origin = Active {
            io: TokioIo::new(self.origin),
            last: last.clone(),
            start,
        };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut origin);
        tokio::pin!(copy);
        let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut copy => return,
                _ = tokio::time::sleep(tick) => {
                    let quiet = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                    if quiet >= idle || stopped() {
                        return;
                    }
                }
            }
        }
    }
}

/// A side of the tunnel, noting when bytes move.
struct Active<T> {
    io: T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Active<T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_a_websocket_upgrade() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            wants_websocket(&m)
        };
        assert!(h(&[("upgrade", "websocket"), ("connection", "Upgrade")]));
        assert!(h(&[("upgrade", "WebSocket"), ("connection", "keep-alive, upgrade")]));
        assert!(!h(&[("upgrade", "h2c"), ("connection", "upgrade")]));
        assert!(!h(&[("upgrade", "websocket")]));
        assert!(!h(&[("connection", "upgrade")]));
    }

    #[test]
    fn an_http2_client_gets_200_only_when_the_origin_answered_the_edges_key() {
        // RFC 6455 §1.3's example.
        assert_eq!(accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let answer = |accept: &str| {
            let mut r = http::Response::new(super::super::body::Body::full(""));
            *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("connection", "upgrade".parse().unwrap());
            h.insert("sec-websocket-accept", accept.parse().unwrap());
            h.insert("sec-websocket-protocol", "chat".parse().unwrap());
            r
        };
        let mut ok = answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        as_http2_answer(&mut ok, "dGhlIHNhbXBsZSBub25jZQ==").unwrap();
        assert_eq!(ok.status(), 200);
        let names: Vec<&str> = ok.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["sec-websocket-protocol"]);
        let mut wrong = answer("not-the-answer");
        let e = as_http2_answer(&mut wrong, "dGhlIHNhbXBsZSBub25jZQ==").unwrap_err();
        assert_eq!(e.http_status(), 502);
        // Anything but a 101 goes back as it is.
        let mut refused = http::Response::new(super::super::body::Body::full("no"));
        *refused.status_mut() = http::StatusCode::FORBIDDEN;
        as_http2_answer(&mut refused, "k").unwrap();
        assert_eq!(refused.status(), 403);
    }
}
