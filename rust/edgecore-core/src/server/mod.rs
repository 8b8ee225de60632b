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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Serves one connection until it ends or the server stops. On stop: a connection that has not
/// started a request yet (just accepted; its request may be on the wire) gets up to the header
/// timeout for its first request, which is answered; then hyper's graceful shutdown ends it
/// (an idle keep-alive connection closes, a request in progress finishes with
/// `Connection: close`, HTTP/2 gets GOAWAY). A macro, not a function: hyper's connection type
/// with our service closure cannot be named in a generic bound without tripping a
/// higher-ranked lifetime limitation of the compiler.
macro_rules! serve_connection {
    ($conn:expr, $stop:expr, $state:expr, $header_timeout:expr) => {{
        let conn = $conn;
        let stop: &StopSignal = $stop;
        let state: &ConnState = $state;
        tokio::pin!(conn);
        let mut finished = stop.until_stopped(conn.as_mut()).await;
        if !finished && !state.started.load(Ordering::Relaxed) {
            tokio::select! {
                _ = conn.as_mut() => finished = true,
                _ = state.first_request.notified() => {}
                _ = tokio::time::sleep($header_timeout) => {}
            }
        }
        if !finished {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }};
}

/// Tells every open connection that the server is stopping. A connection checks one flag when it
/// wakes up, and registers its waker only when that waker changes; a channel polled in a
/// `select!` cost a lock and a waker registration on every wake-up of every connection.
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    /// Wakers of the connections waiting, in slots reused as connections close.
    wakers: parking_lot::Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<std::task::Waker>>,
    free: Vec<usize>,
}

impl StopSignal {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let wakers: Vec<_> = self.wakers.lock().wakers.iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Drives `conn` until it finishes (true) or the server stops (false).
    async fn until_stopped<F: std::future::Future>(&self, mut conn: std::pin::Pin<&mut F>) -> bool {
        struct Registration<'a> {
            signal: &'a StopSignal,
            slot: Option<usize>,
            waker: Option<std::task::Waker>,
        }
        impl Drop for Registration<'_> {
            fn drop(&mut self) {
                if let Some(i) = self.slot {
                    let mut slots = self.signal.wakers.lock();
                    slots.wakers[i] = None;
                    slots.free.push(i);
                }
            }
        }
        let mut reg = Registration {
            signal: self,
            slot: None,
            waker: None,
        };
        std::future::poll_fn(|cx| {
            if self.is_stopped() {
                return std::task::Poll::Ready(false);
            }
            if conn.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(true);
            }
            if !reg.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                let mut slots = self.wakers.lock();
                let i = match reg.slot {
                    Some(i) => i,
                    None => {
                        let i = slots.free.pop().unwrap_or_else(|| {
                            slots.wakers.push(None);
                            slots.wakers.len() - 1
                        });
                        reg.slot = Some(i);
                        i
                    }
                };
                slots.wakers[i] = Some(waker.clone());
                drop(slots);
                reg.waker = Some(waker);
                // A stop between the first check and the registration would have found no waker.
                if self.is_stopped() {
                    return std::task::Poll::Ready(false);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Per connection: whether a request has started yet (see [`serve_connection`]).
#[derive(Default)]
struct ConnState {
    started: AtomicBool,
    first_request: Notify,
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs_f64(s.header_read_timeout))
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
    let conn_stop = Arc::new(StopSignal::default());
    let spawn = |stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit| {
        let _ = stream.set_nodelay(true);
        // Read per connection: a reload that renewed the certificate applies to the next one
        // (a reload cannot switch TLS on or off, so every connection agrees on `secure`).
        let tls = shared.plan.load().tls.clone();
        let secure = tls.is_some();
        let (shared, builder, stop) = (shared.clone(), builder.clone(), conn_stop.clone());
        let state = Arc::new(ConnState::default());
        let seen = state.clone();
        let service = service_fn(move |req| {
            if !seen.started.load(Ordering::Relaxed) {
                seen.started.store(true, Ordering::Relaxed);
                seen.first_request.notify_one();
            }
            let shared = shared.clone();
            async move { Ok::<_, std::convert::Infallible>(shared.handle(req, peer, secure).await) }
        });
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    serve_connection!(conn, &stop, &state, header_timeout);
                }
                // The handshake runs on the connection's task, bounded by the header timeout,
                // so a slow or silent client never holds up the accept loop.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        serve_connection!(conn, &stop, &state, header_timeout);
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
    conn_stop.stop();
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
}
