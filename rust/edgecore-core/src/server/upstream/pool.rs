//! The idle connections to one origin, one list per worker thread, and the response body that
//! drives its connection and gives it back when read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::HeaderValue;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::super::worker::worker_index;

/// What a request body sent to an origin must be: a body hyper can send from any worker.
pub trait SendBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + Unpin + 'static
{
}

impl<T> SendBody for T where
    T: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + Unpin + 'static
{
}

/// Idle connections kept per origin.
const MAX_IDLE: usize = 256;
/// How often each origin's idle list is swept.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Sweeps an idle connection survives: 18 × 5 s, so it is closed after 90–95 s idle.
const IDLE_SWEEPS: u32 = 18;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// One HTTP/1.1 connection to an origin: its [`Link`] and what drives it inside a request.
pub(crate) struct OriginConn<B: SendBody> {
    pub(crate) link: Link<B>,
    /// The pool's sweep count when it went idle (sweeps, not a clock: no clock read per request).
    pub(crate) idle_since: u32,
    /// The waker everything on this connection is polled with (see [`Inline`]).
    inline: Arc<Inline>,
    waker: Waker,
}

/// The request side and the connection state machine, which whoever holds it must poll for
/// anything to happen.
pub(crate) struct Link<B: SendBody> {
    pub(crate) sender: http1::SendRequest<B>,
    pub(crate) conn: http1::Connection<Io, B>,
    /// The origin-timeout timer, re-armed for each request: resetting a registered timer costs
    /// less than creating, registering and dropping one per request.
    pub(crate) timer: Pin<Box<tokio::time::Sleep>>,
}

/// The waker of a connection driven inside the request that uses it. The connection hands its
/// results to the request through hyper's channels (the request into the connection, the
/// response head and body back out), and each hand-off wakes the other side: the request's own
/// task, while it is running. A wake that comes while the task is polling its connection is one
/// the same poll takes up (it polls the response after driving the connection, and drives
/// again if something woke it meanwhile), so it is noted, not sent to the scheduler: sent, it
/// would poll the whole client connection twice more per proxied request for nothing. A wake
/// from outside that (the origin's socket, the timer) reaches the task as usual.
struct Inline {
    /// The task polling the connection now (its last poll).
    task: AtomicWaker,
    /// The task is polling the connection: a wake now is noted in `woken`.
    polling: AtomicBool,
    woken: AtomicBool,
}

impl Wake for Inline {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::Acquire) {
            self.woken.store(true, Ordering::Release);
        } else {
            self.task.wake();
        }
    }
}

/// Passes over a connection a poll makes while something keeps waking it, before it leaves the
/// rest to the scheduler (hyper yields this way after a run of work, to let other tasks run).
const INLINE_PASSES: usize = 2;

impl<B: SendBody> OriginConn<B> {
    pub(crate) fn new(sender: http1::SendRequest<B>, conn: http1::Connection<Io, B>, timeout: Duration) -> Self {
        let inline = Arc::new(Inline {
            task: AtomicWaker::new(),
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        });
        OriginConn {
            link: Link {
                sender,
                conn,
                timer: Box::pin(tokio::time::sleep(timeout)),
            },
            idle_since: 0,
            waker: Waker::from(inline.clone()),
            inline,
        }
    }

    /// Polls `pass` (which drives the connection and polls what waits on it) with the
    /// connection's own waker, for the task of `cx`: again while a wake came during the pass
    /// (at most [`INLINE_PASSES`] times; then the task is woken to come back).
    pub(crate) fn poll_inline<R>(
        &mut self,
        cx: &Context<'_>,
        mut pass: impl FnMut(&mut Link<B>, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        let OriginConn {
            link, inline, waker, ..
        } = self;
        inline.task.register(cx.waker());
        let mut inner = Context::from_waker(waker);
        for _ in 0..INLINE_PASSES {
            inline.woken.store(false, Ordering::Relaxed);
            inline.polling.store(true, Ordering::Release);
            let r = pass(link, &mut inner);
            inline.polling.store(false, Ordering::Release);
            if r.is_ready() {
                return r;
            }
            if !inline.woken.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Runs `f` (which hands the connection work, such as a request) with the connection's
    /// wakes noted rather than sent: the poll that follows takes the work up.
    pub(crate) fn handing<R>(&mut self, f: impl FnOnce(&mut Link<B>) -> R) -> R {
        self.inline.polling.store(true, Ordering::Release);
        let r = f(&mut self.link);
        self.inline.polling.store(false, Ordering::Release);
        r
    }

    /// Drives the connection with a waker that wakes no one (the sweeper's check for a hang-up).
    fn drive_unwatched(&mut self) -> bool {
        self.link
            .drive(&mut Context::from_waker(futures_util::task::noop_waker_ref()))
    }
}

impl<B: SendBody> Link<B> {
    /// Drives the connection's I/O; false once it has ended (closed by either side, or failed).
    /// `cx` is the connection's own (inside [`OriginConn::poll_inline`]).
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_pending()
    }

    /// Drives the connection, then asks whether it can take a request: Ready(false) once it has
    /// ended or failed.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if !self.drive(cx) {
            return Poll::Ready(false);
        }
        self.sender.poll_ready(cx).map(|r| r.is_ok())
    }
}

/// One worker's idle connections to an origin. Boxed: a connection is a large struct, and it
/// moves between the pool, the exchange and the response body on every request.
#[allow(clippy::vec_box)]
type Idle<B> = Mutex<Vec<Box<OriginConn<B>>>>;

/// The idle connections to one origin (scheme and authority), one list per worker thread (a
/// connection's I/O belongs to the runtime that opened it), most recently used last.
pub struct OriginPool<B: SendBody> {
    pub(crate) idle: Box<[Idle<B>]>,
    /// `scheme://authority/`, what the connector dials.
    pub(crate) dial: http::Uri,
    /// The `Host` field sent upstream.
    pub(crate) host: HeaderValue,
    /// Sweeps so far.
    pub(crate) sweeps: AtomicU32,
    /// No plan uses this origin any more: connections are closed instead of kept.
    pub(crate) retired: AtomicBool,
}

impl<B: SendBody> OriginPool<B> {
    /// This worker's idle list.
    pub(crate) fn idle(&self) -> &Idle<B> {
        &self.idle[worker_index() % self.idle.len()]
    }

    pub(crate) fn put(&self, mut c: Box<OriginConn<B>>) {
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        c.idle_since = self.sweeps.load(Ordering::Relaxed);
        let mut idle = self.idle().lock();
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Drains the pool of an origin no plan uses: its idle connections close now, and those in
    /// use close when their exchange ends.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        for idle in &self.idle {
            idle.lock().clear();
        }
    }

    /// Closes connections the origin has closed or that idled too long.
    pub(crate) fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        for idle in &self.idle {
            idle.lock()
                .retain_mut(|c| now.wrapping_sub(c.idle_since) < IDLE_SWEEPS && c.drive_unwatched());
        }
    }
}

/// The response body from the origin. It polls the origin connection as it is read, and gives
/// the connection back to the pool once the body has been read to its end.
pub struct OriginBody<B: SendBody> {
    pub(crate) body: Incoming,
    pub(crate) conn: Option<Box<OriginConn<B>>>,
    pub(crate) pool: Arc<OriginPool<B>>,
    /// The request's place in its upstream's count of requests in flight, given up with the body.
    pub(crate) busy: Option<super::balance::Busy>,
}

impl<B: SendBody> hyper::body::Body for OriginBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        // The body first: a small response arrives with its head, already read by the drive that
        // produced the head, so most bodies need no further drive of the connection. (Whoever
        // checks the connection out next drives it back to idle.)
        let body = &mut this.body;
        let frame = match &mut this.conn {
            Some(c) => {
                let mut alive = true;
                let frame = c.poll_inline(cx, |link, cx| {
                    let frame = Pin::new(&mut *body).poll_frame(cx);
                    if frame.is_ready() || !alive {
                        return frame;
                    }
                    alive = link.drive(cx);
                    Pin::new(&mut *body).poll_frame(cx)
                });
                if !alive {
                    this.conn = None;
                }
                frame
            }
            None => Pin::new(body).poll_frame(cx),
        };
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

impl<B: SendBody> Drop for OriginBody<B> {
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

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
