//! Every open connection, and the watchdog that times them out.
//!
//! The header and keep-alive timeouts are a watchdog, not a timer per request (see
//! [`Connections`]); the stop signal reaches every connection through the same registry. A
//! connection is served by [`serve_connection!`], which also decides what a stop means for a
//! connection that has not sent its first request yet.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Serves one connection until it ends, times out or the server stops. On stop: a connection
/// that has not started a request yet (just accepted; its request may be on the wire) gets up to
/// the header timeout for its first request, which is answered; then hyper's graceful shutdown
/// ends it (an idle keep-alive connection closes, a request in progress finishes with
/// `Connection: close`, HTTP/2 gets GOAWAY). A connection the watchdog timed out is closed. A
/// macro, not a function: hyper's connection type with our service closure cannot be named in a
/// generic bound without tripping a higher-ranked lifetime limitation of the compiler.
macro_rules! serve_connection {
    ($conn:expr, $conns:expr, $state:expr, $header_timeout:expr) => {{
        let conn = $conn;
        let conns: &$crate::server::conn::Connections = $conns;
        let state: &std::sync::Arc<$crate::server::conn::ConnState> = $state;
        tokio::pin!(conn);
        let mut ended = conns.drive(state, conn.as_mut()).await;
        if ended == $crate::server::conn::Ended::Stopped && !state.started.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::select! {
                _ = conn.as_mut() => ended = $crate::server::conn::Ended::Finished,
                _ = state.first_request.notified() => {}
                _ = tokio::time::sleep($header_timeout) => {}
            }
        }
        if ended == $crate::server::conn::Ended::Stopped {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }};
}

/// How [`Connections::drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The connection finished (closed by either side, or failed).
    Finished,
    /// The server is stopping.
    Stopped,
    /// Idle past the keep-alive timeout, or a request head not complete within the header
    /// timeout (a slow client).
    TimedOut,
}

/// Every open connection, for what reaches all of them: the stop signal and the header and
/// keep-alive timeouts.
///
/// The timeouts are a watchdog, not a timer per request: hyper's own header timer allocated,
/// registered and cancelled a timer on tokio's wheel for every request. Here each connection
/// keeps a deadline in coarse ticks: the header timeout from when it opened or from the first
/// byte of a request head, the keep-alive timeout from when its last response was handed over.
/// One task per server wakes every tick and closes the connections past their deadline, between
/// the timeout and the timeout plus two ticks (a tick is a tenth of the shorter timeout, between
/// 10 ms and 1 s). A connection with a request in flight is never timed out by it (the handler
/// and origin timeouts bound those).
pub(crate) struct Connections {
    stopped: AtomicBool,
    pub(crate) clock: Arc<Ticks>,
    tick: Duration,
    slots: parking_lot::Mutex<Slots>,
}

/// The watchdog's coarse clock.
pub(crate) struct Ticks {
    /// Ticks since the server started (advanced by the watchdog).
    now: AtomicU64,
    /// The header and keep-alive timeouts in ticks, plus one: `now` lags real time by up to a
    /// tick, so a deadline is never earlier than its timeout.
    header: u64,
    keep_alive: u64,
}

impl Ticks {
    pub(crate) fn header_deadline(&self) -> u64 {
        self.now.load(Ordering::Relaxed) + self.header
    }

    fn idle_deadline(&self) -> u64 {
        self.now.load(Ordering::Relaxed) + self.keep_alive
    }
}

#[derive(Default)]
struct Slots {
    conns: Vec<Option<Arc<ConnState>>>,
    free: Vec<usize>,
}

/// Per connection: whether a request has started yet (see [`serve_connection`]), and what the
/// watchdog needs.
pub(crate) struct ConnState {
    pub(crate) started: AtomicBool,
    pub(crate) first_request: Notify,
    /// Requests whose response has not been handed to hyper yet (HTTP/2 has several).
    in_flight: AtomicU32,
    /// When the connection times out if no request is in flight (watchdog ticks). Written
    /// before `in_flight` drops to zero, so the watchdog never pairs a zero with an old deadline.
    pub(crate) deadline: AtomicU64,
    /// A request head is being read (from its first byte, or from the connection's start):
    /// the deadline is the header timeout's, not the keep-alive timeout's.
    reading: AtomicBool,
    expired: AtomicBool,
    /// The task driving the connection (stored only when it changes).
    waker: parking_lot::Mutex<Option<std::task::Waker>>,
    clock: Arc<Ticks>,
    /// The client's address, for the log line of a refused request.
    peer: std::net::SocketAddr,
    /// Why the framing guard refused this connection's request, if it did.
    pub(crate) refused: std::sync::OnceLock<&'static str>,
    /// The request line named an HTTP version this server does not speak (answered 505).
    pub(crate) version_unsupported: AtomicBool,
    /// The connection was upgraded (a WebSocket): its bytes are no longer HTTP.
    pub(crate) upgraded: AtomicBool,
    /// The tunnel to run once hyper hands the upgraded connection over.
    pub(crate) tunnel: parking_lot::Mutex<Option<super::tunnel::Tunnel>>,
}

impl ConnState {
    pub(crate) fn new(clock: Arc<Ticks>, peer: std::net::SocketAddr) -> Self {
        ConnState {
            peer,
            refused: std::sync::OnceLock::new(),
            version_unsupported: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            tunnel: parking_lot::Mutex::new(None),
            started: AtomicBool::new(false),
            first_request: Notify::new(),
            in_flight: AtomicU32::new(0),
            deadline: AtomicU64::new(clock.header_deadline()),
            reading: AtomicBool::new(true),
            expired: AtomicBool::new(false),
            waker: parking_lot::Mutex::new(None),
            clock,
        }
    }

    /// A request head arrived: the connection is busy until the guard's response is handed over.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
            self.first_request.notify_one();
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A connection's socket, watched for the first byte of each request head: from then on the
/// head has the header timeout to arrive whole, however long the connection sat idle before.
pub(crate) struct Watched<T> {
    pub(crate) io: T,
    pub(crate) state: Arc<ConnState>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
        let s = &this.state;
        if buf.filled().len() > before && !s.reading.load(Ordering::Relaxed) && s.in_flight.load(Ordering::Relaxed) == 0
        {
            s.deadline.store(s.clock.header_deadline(), Ordering::Relaxed);
            s.reading.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request in flight on a connection; dropped when hyper has taken its whole response (or
/// gave up on it), which starts the wait for the next request head.
pub(crate) struct InFlight(Arc<ConnState>);

impl InFlight {
    /// The request line named a major HTTP version other than 1 (the guard made it parse).
    pub(crate) fn version_unsupported(&self) -> bool {
        self.0.version_unsupported.load(Ordering::Relaxed)
    }

    /// The response switches protocols: the framing guard stands down, and the connection's
    /// task runs `tunnel` once hyper has handed the connection over.
    pub(crate) fn start_tunnel(&self, tunnel: super::tunnel::Tunnel) {
        self.0.upgraded.store(true, Ordering::Release);
        *self.0.tunnel.lock() = Some(tunnel);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.deadline.store(c.clock.idle_deadline(), Ordering::Relaxed);
        c.reading.store(false, Ordering::Relaxed);
        c.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Connections {
    pub(crate) fn new(header_timeout: Duration, keep_alive_timeout: Duration) -> Self {
        let tick =
            (header_timeout.min(keep_alive_timeout) / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let ticks = |t: Duration| t.as_nanos().div_ceil(tick.as_nanos()) as u64 + 1;
        Connections {
            stopped: AtomicBool::new(false),
            clock: Arc::new(Ticks {
                now: AtomicU64::new(0),
                header: ticks(header_timeout),
                keep_alive: ticks(keep_alive_timeout),
            }),
            tick,
            slots: Default::default(),
        }
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake_where(|_| true);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Wakes the connections for which `select` is true (outside the lock).
    fn wake_where(&self, mut select: impl FnMut(&ConnState) -> bool) {
        let wakers: Vec<_> = self
            .slots
            .lock()
            .conns
            .iter()
            .flatten()
            .filter(|c| select(c))
            .filter_map(|c| c.waker.lock().take())
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Advances the clock every tick and times out the connections idle past their deadline.
    pub(crate) async fn watchdog(&self) {
        let start = tokio::time::Instant::now();
        let mut every = tokio::time::interval(self.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = (start.elapsed().as_nanos() / self.tick.as_nanos()) as u64;
            self.clock.now.store(now, Ordering::Relaxed);
            self.wake_where(|c| {
                c.in_flight.load(Ordering::Acquire) == 0
                    && c.deadline.load(Ordering::Relaxed) <= now
                    && !c.expired.swap(true, Ordering::AcqRel)
            });
        }
    }

    /// Drives `conn` until it finishes, the server stops or the watchdog times it out.
    pub(crate) async fn drive<F, E>(&self, state: &Arc<ConnState>, mut conn: std::pin::Pin<&mut F>) -> Ended
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: std::ops::Deref<Target = dyn std::error::Error + Send + Sync>,
    {
        struct Registration<'a> {
            conns: &'a Connections,
            slot: usize,
        }
        impl Drop for Registration<'_> {
            fn drop(&mut self) {
                let mut slots = self.conns.slots.lock();
                slots.conns[self.slot] = None;
                slots.free.push(self.slot);
            }
        }
        let slot = {
            let mut slots = self.slots.lock();
            match slots.free.pop() {
                Some(i) => {
                    slots.conns[i] = Some(state.clone());
                    i
                }
                None => {
                    slots.conns.push(Some(state.clone()));
                    slots.conns.len() - 1
                }
            }
        };
        let _reg = Registration { conns: self, slot };
        let mut known: Option<std::task::Waker> = None;
        let ended = || {
            if self.is_stopped() {
                Some(Ended::Stopped)
            } else if state.expired.load(Ordering::Acquire) {
                Some(Ended::TimedOut)
            } else {
                None
            }
        };
        std::future::poll_fn(|cx| {
            if let Some(e) = ended() {
                return std::task::Poll::Ready(e);
            }
            if let std::task::Poll::Ready(out) = conn.as_mut().poll(cx) {
                log_refusal(state, out.as_ref().err().map(|e| &**e));
                return std::task::Poll::Ready(Ended::Finished);
            }
            if !known.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                *state.waker.lock() = Some(waker.clone());
                known = Some(waker);
                // A stop or a time-out between the first check and the registration found no
                // waker to wake.
                if let Some(e) = ended() {
                    return std::task::Poll::Ready(e);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

pub(crate) use serve_connection;

/// Writes one log line for a connection whose request was refused as malformed: by the framing
/// guard (its reason) or by hyper's parser. At most [`REFUSALS_PER_SECOND`] lines a second are
/// written, so a flood of bad requests cannot flood the log; the lines left out are counted in
/// the next one written.
fn log_refusal(state: &ConnState, error: Option<&(dyn std::error::Error + Send + Sync + 'static)>) {
    let hyper_parse = error
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .filter(|e| e.is_parse() || e.is_parse_too_large());
    let why: std::borrow::Cow<'_, str> = match (state.refused.get(), hyper_parse) {
        (Some(why), _) => (*why).into(),
        (None, Some(e)) => e.to_string().into(),
        (None, None) => return,
    };
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static WRITTEN: AtomicU32 = AtomicU32::new(0);
    static SKIPPED: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if WINDOW.swap(second, Ordering::Relaxed) != second {
        WRITTEN.store(0, Ordering::Relaxed);
    }
    if WRITTEN.fetch_add(1, Ordering::Relaxed) >= REFUSALS_PER_SECOND {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let skipped = SKIPPED.swap(0, Ordering::Relaxed);
    let more = if skipped > 0 {
        format!(" ({skipped} more refusals not logged)")
    } else {
        String::new()
    };
    eprintln!("edgecore: refused a malformed request from {}: {why}{more}", state.peer);
}

/// Log lines for refused requests, at most, per second (see [`log_refusal`]).
const REFUSALS_PER_SECOND: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_never_make_a_deadline_early() {
        let c = Connections::new(Duration::from_millis(500), Duration::from_secs(2));
        assert_eq!(c.tick, Duration::from_millis(50));
        // 10 ticks of timeout, plus one for the clock's lag.
        assert_eq!((c.clock.header, c.clock.keep_alive), (11, 41));
        let c = Connections::new(Duration::from_secs(60), Duration::from_secs(75));
        assert_eq!(c.tick, Duration::from_secs(1));
        assert_eq!((c.clock.header, c.clock.keep_alive), (61, 76));
        // The shorter timeout sets the tick.
        let c = Connections::new(Duration::from_secs(10), Duration::from_millis(15));
        assert_eq!(c.tick, Duration::from_millis(10));
        assert_eq!((c.clock.header, c.clock.keep_alive), (1001, 3));
    }
}
