//! The edge server: hyper 1.x on a multi-threaded tokio runtime.
//!
//! - HTTP/1.1 with keep-alive and pipelining, and HTTP/2 over cleartext with prior knowledge
//!   (hyper-util's auto builder picks per connection).
//! - A header-read timer on every connection (slowloris connections close; it also bounds idle
//!   keep-alive), a cap on request-head size (431), a connection cap (more wait in the accept
//!   queue), and the pipeline's own limits (414, 413).
//! - When a response is sent before the body was read (a rejection, a cache hit), hyper either
//!   drains the body or closes the connection: body bytes are never parsed as the next request.
//! - Graceful shutdown: stop accepting, take the connections already in the kernel's accept queue
//!   (closing the listener would reset them), answer every request that has started or is about
//!   to (a just-accepted connection gets its first request served), close idle keep-alive
//!   connections, and wait up to the grace period; then close what remains.
//! - The plan is an `ArcSwap`: `reload` swaps a new one in without touching connections.
//! - TLS (rustls, see [`tls`]): the handshake runs on the connection's task under the header
//!   timeout; the acceptor comes from the current plan, so a reload renews the certificate.

pub mod access_log;
pub mod bridge;
pub mod matcher;
pub mod metrics;
pub mod pipeline;
pub mod plan;
pub mod proxy;
pub mod purge;
pub mod template;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use self::bridge::Bridge;
use self::pipeline::Shared;
use self::plan::Plan;
use self::proxy::Body;
use self::proxy::Proxy;
use crate::error::{Error, Result};

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    grace: Duration,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Swaps in a new plan; requests already running finish with the old one. Response caches
    /// carry over for cache rules whose identity (the rule, origins, rewrites and header
    /// templates) is unchanged. A plan that
    /// would switch TLS on or off is refused (that needs a restart); one with a renewed
    /// certificate applies to connections accepted from now on.
    pub fn reload(&self, plan: Plan) -> Result<()> {
        let current = self.shared.plan.load();
        if plan.tls.is_some() != current.tls.is_some() {
            return Err(Error::config(
                "a reload cannot switch TLS on or off; restart the server to change that",
            ));
        }
        if (&plan.server.purge_redis, &plan.server.purge_channel)
            != (&current.server.purge_redis, &current.server.purge_channel)
        {
            return Err(Error::config(
                "a reload cannot change the purge broadcast (Redis URL or channel); restart the server to change that",
            ));
        }
        // Keep what is cached where nothing it depends on changed (a certificate renewal or a
        // new rate limit must not empty the caches); a changed rule starts empty.
        let mut plan = plan;
        for rule in plan.cache.iter_mut() {
            if let Some(old) = current.cache.iter().find(|o| o.identity == rule.identity) {
                rule.cache = old.cache.clone();
                rule.coalescer = old.coalescer.clone();
            }
        }
        self.shared.plan.store(Arc::new(plan));
        Ok(())
    }

    /// What purges this server's caches (and broadcasts purges), usable from any thread.
    pub fn purger(&self) -> Result<Purger> {
        let rt = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::config("the server is stopped"))?;
        Ok(Purger {
            shared: self.shared.clone(),
            rt: rt.handle().clone(),
        })
    }

    /// Moves the pipeline's clock forward by `seconds` (tests: token expiry, cache freshness,
    /// in-process rate limits).
    pub fn advance_clock(&self, seconds: f64) {
        let ns = (seconds.max(0.0) * 1e9) as u64;
        self.shared
            .clock_offset_ns
            .fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.metrics.arrivals()
    }

    /// Stops accepting, drains in-flight requests for up to the grace period, then stops.
    /// Blocks the calling thread (call it off the runtime).
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(self.grace + Duration::from_secs(1));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

/// Purges a running server's caches; see [`ServerHandle::purger`].
pub struct Purger {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

impl Purger {
    /// Purges `prefix` from the server's response caches and, when a purge broadcast is
    /// configured, publishes it to every node (this one included). Returns (entries removed
    /// here, nodes that received the broadcast). Blocks: call it off the runtime.
    pub fn purge(&self, prefix: &str) -> Result<(usize, Option<u64>)> {
        let removed = self.shared.purge_local(prefix);
        let Some(b) = self.shared.purge.clone() else {
            return Ok((removed, None));
        };
        let prefix = prefix.to_owned();
        let nodes = self.rt.block_on(async move { b.publish(&prefix).await })?;
        Ok((removed, Some(nodes)))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts serving `plan` on `listener` (already bound). Python handlers go through `bridge`.
pub fn start(plan: Plan, bridge: Option<Arc<dyn Bridge>>, listener: std::net::TcpListener) -> Result<ServerHandle> {
    let s = plan.server.clone();
    let threads = if s.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        s.threads
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("edgecore-worker")
        .enable_all()
        .build()
        .map_err(|e| Error::config(format!("starting the server runtime: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::config(format!("listener: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config(format!("listener: {e}")))?;
    let access_log = s.access_log.as_deref().map(access_log::AccessLog::open).transpose()?;
    let shared = Arc::new(Shared {
        access_log,
        metrics: Default::default(),
        clock_offset_ns: AtomicU64::new(0),
        plan: ArcSwap::from_pointee(plan),
        proxy: Proxy::new(
            Duration::from_secs_f64(s.origin_connect_timeout),
            Duration::from_secs_f64(s.origin_timeout),
        ),
        bridge,
        uid_counter: AtomicU64::new(0),
        uid_seed: Default::default(),
        purge: s
            .purge_redis
            .as_deref()
            .map(|url| purge::Broadcast::new(url, &s.purge_channel))
            .transpose()?,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let grace = Duration::from_secs_f64(s.grace_period);
    let accept_shared = shared.clone();
    if let Some(b) = shared.purge.clone() {
        runtime.spawn(b.run(shared.clone(), stop_rx.clone()));
    }
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::config(format!("listener: {e}")))?;
    runtime.spawn(async move {
        accept_loop(listener, accept_shared, stop_rx, s).await;
        let _ = done_tx.send(());
    });
    drop(_guard);
    Ok(ServerHandle {
        addr,
        shared,
        stop: stop_tx,
        done: Some(done_rx),
        runtime: Some(runtime),
        grace,
    })
}

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
        let conns: &Connections = $conns;
        let state: &Arc<ConnState> = $state;
        tokio::pin!(conn);
        let mut ended = conns.drive(state, conn.as_mut()).await;
        if ended == Ended::Stopped && !state.started.load(Ordering::Relaxed) {
            tokio::select! {
                _ = conn.as_mut() => ended = Ended::Finished,
                _ = state.first_request.notified() => {}
                _ = tokio::time::sleep($header_timeout) => {}
            }
        }
        if ended == Ended::Stopped {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }};
}

/// How [`Connections::drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The connection finished (closed by either side, or failed).
    Finished,
    /// The server is stopping.
    Stopped,
    /// No request head arrived within the header timeout (idle keep-alive, or a slow client).
    TimedOut,
}

/// Every open connection, for what reaches all of them: the stop signal and the header timeout.
///
/// The header timeout is a watchdog, not a timer per request: hyper's own header timer
/// allocated, registered and cancelled a timer on tokio's wheel for every request. Here each
/// connection keeps a deadline in coarse ticks, set when its last response was handed over
/// (or when it opened), and one task per server wakes every tick and closes the connections
/// that are idle past their deadline. A connection is closed between the timeout and the
/// timeout plus two ticks (a tick is a tenth of the timeout, between 10 ms and 1 s) after it
/// went idle; a connection with a request in flight is never timed out by it (the handler and
/// origin timeouts bound those).
struct Connections {
    stopped: AtomicBool,
    clock: Arc<Ticks>,
    tick: Duration,
    slots: parking_lot::Mutex<Slots>,
}

/// The watchdog's coarse clock.
struct Ticks {
    /// Ticks since the server started (advanced by the watchdog).
    now: AtomicU64,
    /// The header timeout in ticks, plus one: `now` lags real time by up to a tick, so a
    /// deadline is never earlier than the timeout.
    timeout: u64,
}

impl Ticks {
    fn deadline(&self) -> u64 {
        self.now.load(Ordering::Relaxed) + self.timeout
    }
}

#[derive(Default)]
struct Slots {
    conns: Vec<Option<Arc<ConnState>>>,
    free: Vec<usize>,
}

/// Per connection: whether a request has started yet (see [`serve_connection`]), and what the
/// watchdog needs.
struct ConnState {
    started: AtomicBool,
    first_request: Notify,
    /// Requests whose response has not been handed to hyper yet (HTTP/2 has several).
    in_flight: AtomicU32,
    /// When the connection times out if it is still idle (watchdog ticks). Written before
    /// `in_flight` drops to zero, so the watchdog never pairs a zero with an old deadline.
    deadline: AtomicU64,
    expired: AtomicBool,
    /// The task driving the connection (stored only when it changes).
    waker: parking_lot::Mutex<Option<std::task::Waker>>,
    clock: Arc<Ticks>,
}

impl ConnState {
    fn new(clock: Arc<Ticks>) -> Self {
        ConnState {
            started: AtomicBool::new(false),
            first_request: Notify::new(),
            in_flight: AtomicU32::new(0),
            deadline: AtomicU64::new(clock.deadline()),
            expired: AtomicBool::new(false),
            waker: parking_lot::Mutex::new(None),
            clock,
        }
    }

    /// A request head arrived: the connection is busy until the guard's response is handed over.
    fn request(self: &Arc<Self>) -> InFlight {
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
            self.first_request.notify_one();
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection; dropped when hyper has taken its whole response (or
/// gave up on it), which starts the wait for the next request head.
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.deadline.store(c.clock.deadline(), Ordering::Relaxed);
        c.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The server's response body: the pipeline's body, holding its request's [`InFlight`].
pub(crate) struct Tracked {
    pub(crate) body: Body,
    pub(crate) _request: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = proxy::BoxError;

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

impl Connections {
    fn new(header_timeout: Duration) -> Self {
        let tick = (header_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let timeout = header_timeout.as_nanos().div_ceil(tick.as_nanos()) as u64 + 1;
        Connections {
            stopped: AtomicBool::new(false),
            clock: Arc::new(Ticks {
                now: AtomicU64::new(0),
                timeout,
            }),
            tick,
            slots: Default::default(),
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake_where(|_| true);
    }

    fn is_stopped(&self) -> bool {
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
    async fn watchdog(&self) {
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
    async fn drive<F: std::future::Future>(&self, state: &Arc<ConnState>, mut conn: std::pin::Pin<&mut F>) -> Ended {
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
            if conn.as_mut().poll(cx).is_ready() {
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

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    s: plan::ServerSpec,
) {
    let max_connections = s.max_connections.clamp(1, Semaphore::MAX_PERMITS) as u32;
    let permits = Arc::new(Semaphore::new(max_connections as usize));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper timer for HTTP/1: the header timeout is the connections' watchdog (see
    // [`Connections`]), not a timer allocated and registered per request.
    builder
        .http1()
        .header_read_timeout(None)
        // Headroom above the configured limit, so an oversized head gets a 431 from the
        // pipeline; a head beyond even this is an attack and the connection is closed.
        .max_buf_size(s.max_header_bytes.saturating_mul(2).max(64 * 1024))
        .keep_alive(true)
        // Half-close is legal HTTP/1.1 (a client may shut down its sending side and read the
        // answer). It also stops hyper's end-of-file probe read while a request is in flight,
        // a recv that cost a syscall and, because the request still holds its slice of the read
        // buffer, a fresh 8 KiB buffer per request. A client that leaves is then noticed when
        // the answer is written.
        .half_close(true)
        .pipeline_flush(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(s.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let header_timeout = Duration::from_secs_f64(s.header_read_timeout);
    let conns = Arc::new(Connections::new(header_timeout));
    let watchdog = tokio::spawn({
        let conns = conns.clone();
        async move { conns.watchdog().await }
    });
    let spawn = |stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit| {
        let _ = stream.set_nodelay(true);
        // Read per connection: a reload that renewed the certificate applies to the next one
        // (a reload cannot switch TLS on or off, so every connection agrees on `secure`).
        let tls = shared.plan.load().tls.clone();
        let secure = tls.is_some();
        let (shared, builder, conns) = (shared.clone(), builder.clone(), conns.clone());
        tokio::spawn(async move {
            let state = Arc::new(ConnState::new(conns.clock.clone()));
            let seen = state.clone();
            let service = service_fn(move |req| shared.clone().handle(req, peer, secure, seen.request()));
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    serve_connection!(conn, &conns, &state, header_timeout);
                }
                // The handshake runs on the connection's task, bounded by the header timeout,
                // so a slow or silent client never holds up the accept loop. The wait for the
                // first request head starts after it.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        state.deadline.store(conns.clock.deadline(), Ordering::Relaxed);
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        serve_connection!(conn, &conns, &state, header_timeout);
                    }
                }
            }
            drop(permit);
        });
    };
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        spawn(stream, peer, permit);
    }
    conns.stop();
    // Connections the kernel already completed sit in the accept queue, their requests possibly
    // sent: closing the listener would reset them. Take them all first; they get their request
    // answered (with `Connection: close`) like any other connection that is open now.
    if let Ok(std_listener) = listener.into_std() {
        while let Ok((stream, peer)) = std_listener.accept() {
            // Accepted sockets do not inherit O_NONBLOCK; tokio needs it.
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                continue;
            };
            match permits.clone().try_acquire_owned() {
                Ok(permit) => spawn(stream, peer, permit),
                Err(_) => break,
            }
        }
    }
    // Every connection holds a permit until it closes: all of them back means all drained.
    let _ = tokio::time::timeout(
        Duration::from_secs_f64(s.grace_period),
        permits.acquire_many(max_connections),
    )
    .await;
    watchdog.abort();
}
