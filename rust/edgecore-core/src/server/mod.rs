//! The edge server: hyper 1.x on tokio, one single-threaded runtime per core.
//!
//! - Thread per core, as nginx, Envoy and Pingora (without work stealing) run: each worker
//!   thread has its own runtime and accepts on the shared listening socket, and a connection
//!   stays on the thread that accepted it, with that thread's origin connections. Side by side
//!   on the proxy benchmark, tokio's work-stealing scheduler used ~3% more CPU per request and
//!   served no more (connection-per-request traffic is the exception: see the README).
//! - HTTP/1.1 with keep-alive and pipelining, and HTTP/2 over cleartext with prior knowledge
//!   (hyper-util's auto builder picks per connection).
//! - Header and keep-alive timeouts on every connection, kept by one watchdog rather than a
//!   timer per request (slowloris and idle connections close, HTTP/2 included), a cap on
//!   request-head size (431), a connection cap (more wait in the accept queue), and the
//!   pipeline's own limits (414, 413).
//! - When a response is sent before the body was read (a rejection, a cache hit), hyper either
//!   drains the body or closes the connection: body bytes are never parsed as the next request.
//! - Graceful shutdown: stop accepting, take the connections already in the kernel's accept queue
//!   (closing the listener would reset them; the last worker to let go of it does this), answer
//!   every request that has started or is about to (a just-accepted connection gets its first
//!   request served), close idle keep-alive connections, and wait up to the grace period; then
//!   close what remains.
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

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
    /// One message per worker thread when it has drained and stopped.
    done: Option<std::sync::mpsc::Receiver<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    grace: Duration,
}

thread_local! {
    /// The worker thread's index (0 elsewhere): each worker keeps its own origin connections.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker thread running this code (0 off the server's threads).
pub(crate) fn worker_index() -> usize {
    WORKER.with(|w| w.get())
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
        if self.done.is_none() {
            return Err(Error::config("the server is stopped"));
        }
        Ok(Purger {
            shared: self.shared.clone(),
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
            // Each worker drains, then closes what remains after the grace period.
            let deadline = std::time::Instant::now() + self.grace + Duration::from_secs(2);
            let all = (0..self.workers.len()).all(|_| {
                done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                    .is_ok()
            });
            if all {
                for w in self.workers.drain(..) {
                    let _ = w.join();
                }
            }
        }
    }
}

/// Purges a running server's caches; see [`ServerHandle::purger`].
pub struct Purger {
    shared: Arc<Shared>,
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
        let nodes = crate::rt::block_on(async move { b.publish(&prefix).await })
            .ok_or_else(|| Error::config("purge called from an async runtime; call it from a plain thread"))??;
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
            threads,
        ),
        bridge,
        uid_counter: AtomicU64::new(0),
        uid_seed: Default::default(),
        open_connections: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
        purge: s
            .purge_redis
            .as_deref()
            .map(|url| purge::Broadcast::new(url, &s.purge_channel))
            .transpose()?,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let grace = Duration::from_secs_f64(s.grace_period);
    if let Some(b) = shared.purge.clone() {
        crate::rt::background().spawn(b.run(shared.clone(), stop_rx.clone()));
    }
    // What every worker shares: the connection cap, the connections (stop signal, header
    // timeout) and hyper's settings.
    let max_connections = s.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
    let common = Arc::new(Common {
        permits: Arc::new(Semaphore::new(max_connections)),
        conns: Arc::new(Connections::new(
            Duration::from_secs_f64(s.header_read_timeout),
            Duration::from_secs_f64(s.keep_alive_timeout),
        )),
        builder: http_builder(&s),
        spec: s,
        inboxes,
        letting_go: AtomicUsize::new(0),
        let_go: AtomicUsize::new(0),
    });
    let mut workers = Vec::with_capacity(threads);
    for (index, inbox) in receivers.into_iter().enumerate() {
        // Built here, so that a failure is an error of `start`, not of a thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::config(format!("starting the server runtime: {e}")))?;
        let listener = listener
            .try_clone()
            .map_err(|e| Error::config(format!("listener: {e}")))?;
        let (shared, common, stop, done) = (shared.clone(), common.clone(), stop_rx.clone(), done_tx.clone());
        let worker = std::thread::Builder::new()
            .name(format!("edgecore-worker-{index}"))
            .spawn(move || {
                WORKER.with(|w| w.set(index));
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(index, listener, inbox, shared, stop, common).await,
                        Err(e) => eprintln!("edgecore: worker {index} cannot use the listener: {e}"),
                    }
                });
                // What outlived the grace period is dropped here (its connections close).
                runtime.shutdown_timeout(Duration::from_millis(500));
                let _ = done.send(());
            })
            .map_err(|e| Error::config(format!("starting a server thread: {e}")))?;
        workers.push(worker);
    }
    Ok(ServerHandle {
        addr,
        shared,
        stop: stop_tx,
        done: Some(done_rx),
        workers,
        grace,
    })
}

/// What the worker threads share.
struct Common {
    permits: Arc<Semaphore>,
    conns: Arc<Connections>,
    builder: auto::Builder<TokioExecutor>,
    spec: plan::ServerSpec,
    /// Each worker's inbox of connections another worker accepted for it.
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
    /// Workers that stopped accepting, and those of them that closed their descriptor of the
    /// listening socket (see the end of [`accept_loop`]).
    letting_go: AtomicUsize,
    let_go: AtomicUsize,
}

/// Counts a connection open on a worker until it is dropped (also when a runtime shuts down
/// with the connection still open).
struct Open(Arc<Shared>, usize);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection handed to another worker.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// The worker that should serve a connection worker `index` accepted, given the open
/// connections per worker: itself, unless another has at least two fewer (then the least
/// loaded). Every worker accepts on the shared socket and whoever wakes first wins, so a burst
/// of connections can land on one; this keeps the counts within one of each other at the cost
/// of a hand-off only when they drift.
fn assign(loads: &[AtomicUsize], index: usize) -> usize {
    let mine = loads[index].load(Ordering::Relaxed);
    let (least, load) = loads
        .iter()
        .enumerate()
        .map(|(i, l)| (i, l.load(Ordering::Relaxed)))
        .min_by_key(|&(_, l)| l)
        .expect("at least one worker");
    if load + 1 < mine {
        least
    } else {
        index
    }
}

/// hyper's settings for every connection.
fn http_builder(s: &plan::ServerSpec) -> auto::Builder<TokioExecutor> {
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
    builder
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
    /// The header and keep-alive timeouts in ticks, plus one: `now` lags real time by up to a
    /// tick, so a deadline is never earlier than its timeout.
    header: u64,
    keep_alive: u64,
}

impl Ticks {
    fn header_deadline(&self) -> u64 {
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
struct ConnState {
    started: AtomicBool,
    first_request: Notify,
    /// Requests whose response has not been handed to hyper yet (HTTP/2 has several).
    in_flight: AtomicU32,
    /// When the connection times out if no request is in flight (watchdog ticks). Written
    /// before `in_flight` drops to zero, so the watchdog never pairs a zero with an old deadline.
    deadline: AtomicU64,
    /// A request head is being read (from its first byte, or from the connection's start):
    /// the deadline is the header timeout's, not the keep-alive timeout's.
    reading: AtomicBool,
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
            deadline: AtomicU64::new(clock.header_deadline()),
            reading: AtomicBool::new(true),
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

/// A connection's socket, watched for the first byte of each request head: from then on the
/// head has the header timeout to arrive whole, however long the connection sat idle before.
struct Watched<T> {
    io: T,
    state: Arc<ConnState>,
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

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.deadline.store(c.clock.idle_deadline(), Ordering::Relaxed);
        c.reading.store(false, Ordering::Relaxed);
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
    fn new(header_timeout: Duration, keep_alive_timeout: Duration) -> Self {
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

/// One worker's accept loop: accepts on the shared listening socket until the server stops,
/// then drains (see [`serve_connection`]). Worker 0 also runs the header-timeout watchdog.
async fn accept_loop(
    index: usize,
    listener: tokio::net::TcpListener,
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    common: Arc<Common>,
) {
    let (permits, s) = (&common.permits, &common.spec);
    let header_timeout = Duration::from_secs_f64(s.header_read_timeout);
    let conns = &common.conns;
    let watchdog = (index == 0).then(|| {
        let conns = conns.clone();
        tokio::spawn(async move { conns.watchdog().await })
    });
    let spawn = |stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit| {
        let _ = stream.set_nodelay(true);
        shared.open_connections[index].fetch_add(1, Ordering::Relaxed);
        let open = Open(shared.clone(), index);
        // Read per connection: a reload that renewed the certificate applies to the next one
        // (a reload cannot switch TLS on or off, so every connection agrees on `secure`).
        let tls = shared.plan.load().tls.clone();
        let secure = tls.is_some();
        let (shared, common) = (shared.clone(), common.clone());
        tokio::spawn(async move {
            let (builder, conns) = (&common.builder, &common.conns);
            let state = Arc::new(ConnState::new(conns.clock.clone()));
            let seen = state.clone();
            let service = service_fn(move |req| shared.clone().handle(req, peer, secure, seen.request()));
            let stream = Watched {
                io: stream,
                state: state.clone(),
            };
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    serve_connection!(conn, conns, &state, header_timeout);
                }
                // The handshake runs on the connection's task, bounded by the header timeout,
                // so a slow or silent client never holds up the accept loop. The wait for the
                // first request head starts after it.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        state.deadline.store(conns.clock.header_deadline(), Ordering::Relaxed);
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        serve_connection!(conn, conns, &state, header_timeout);
                    }
                }
            }
            drop((open, permit));
        });
    };
    // Connections other workers accepted for this one (registered with this thread's runtime).
    // `reserved`: the worker the sender counted the connection on (`spawn` counts it again).
    let adopt = |h: Handoff, reserved: usize| {
        shared.open_connections[reserved].fetch_sub(1, Ordering::Relaxed);
        match tokio::net::TcpStream::from_std(h.stream) {
            Ok(stream) => spawn(stream, h.peer, h.permit),
            Err(e) => eprintln!("edgecore: worker {index} cannot take over a connection: {e}"),
        }
    };
    // Sends an accepted connection to the worker that should serve it.
    let place = |stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit| {
        let target = assign(&shared.open_connections, index);
        if target == index {
            return spawn(stream, peer, permit);
        }
        // Counted at once, so that the next accepts see the new balance.
        match stream.into_std() {
            Ok(stream) => {
                shared.open_connections[target].fetch_add(1, Ordering::Relaxed);
                let handoff = Handoff { stream, peer, permit };
                // The target has stopped taking hand-offs (the server is stopping): keep it.
                if let Err(mpsc::error::SendError(h)) = common.inboxes[target].send(handoff) {
                    adopt(h, target);
                }
            }
            Err(e) => eprintln!("edgecore: worker {index} cannot hand over a connection: {e}"),
        }
    };
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            Some(h) = inbox.recv() => { adopt(h, index); continue }
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
            Some(h) = inbox.recv() => { adopt(h, index); continue }
            _ = stop.changed() => break,
        };
        place(stream, peer, permit);
    }
    conns.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(s.grace_period);
    // Connections handed over just before the stop are served like the rest; later hand-offs
    // fail and stay with the worker that accepted them.
    inbox.close();
    while let Ok(h) = inbox.try_recv() {
        adopt(h, index);
    }
    // Connections the kernel already completed sit in the accept queue, their requests possibly
    // sent: closing the listening socket would reset them. Every worker holds a descriptor of
    // it, and the socket closes with the last one; so the others let go of theirs first, and
    // the last takes what is queued, then closes it. They get their request answered (with
    // `Connection: close`) like any other connection that is open now.
    if let Ok(std_listener) = listener.into_std() {
        let workers = common.inboxes.len();
        if common.letting_go.fetch_add(1, Ordering::AcqRel) + 1 < workers {
            drop(std_listener);
            common.let_go.fetch_add(1, Ordering::AcqRel);
        } else {
            while common.let_go.load(Ordering::Acquire) + 1 < workers && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
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
    }
    // This worker's connections finish (each on this thread), or the grace period ends and
    // the runtime's shutdown closes what remains.
    while shared.open_connections[index].load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(counts: &[usize]) -> Vec<AtomicUsize> {
        counts.iter().map(|&n| AtomicUsize::new(n)).collect()
    }

    #[test]
    fn a_worker_keeps_its_connection_unless_another_has_two_fewer() {
        assert_eq!(assign(&loads(&[0]), 0), 0);
        assert_eq!(assign(&loads(&[3, 3]), 0), 0);
        assert_eq!(assign(&loads(&[3, 2]), 0), 0);
        assert_eq!(assign(&loads(&[3, 1]), 0), 1);
        assert_eq!(assign(&loads(&[5, 4, 1, 2]), 1), 2);
        assert_eq!(assign(&loads(&[0, 9]), 1), 0);
    }

    #[test]
    fn a_burst_on_one_worker_ends_balanced() {
        // Worker 0 wins every accept; the hand-offs keep the counts within one.
        let l = loads(&[0, 0, 0]);
        for _ in 0..31 {
            let t = assign(&l, 0);
            l[t].fetch_add(1, Ordering::Relaxed);
        }
        let counts: Vec<usize> = l.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        assert_eq!(counts.iter().sum::<usize>(), 31);
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
    }

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
