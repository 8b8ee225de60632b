//! Upgraded connections (WebSockets, RFC 6455 over HTTP/1.1): the request went through every
//! policy like any other; the proxy then opened a connection of its own to the origin, sent the
//! upgrade, and got `101 Switching Protocols`. What is left is a [`Tunnel`]: once hyper has
//! written the 101 to the client and handed the client's connection over, bytes are copied both
//! ways until either side closes, the tunnel sits idle past `upgrade_idle_timeout`, or the
//! server stops. The connection's task runs the tunnel, so the connection keeps its place under
//! `max_connections` and in the open-connection metrics for as long as it lives.
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

/// A tunnel ready to run: the origin's upgraded connection and the client's, once hyper hands
/// it over.
pub struct Tunnel {
    client: OnUpgrade,
    origin: Upgraded,
    /// Milliseconds since `start` at the last byte either way.
    last: Arc<AtomicU64>,
    start: Instant,
}

/// The tunnel a 101 response carries to the connection's task (an `http` extension: it must be
/// `Clone + Sync`, which the tunnel is not, hence the shared slot).
#[derive(Clone)]
pub struct PendingTunnel(pub Arc<Mutex<Option<Tunnel>>>);

impl Tunnel {
    /// A tunnel between the client's connection (once upgraded) and the origin's.
    pub fn new(client: OnUpgrade, origin: Upgraded) -> Tunnel {
        Tunnel {
            client,
            origin,
            last: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
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
}
