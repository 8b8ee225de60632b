//! The idle connections to one origin, one list per worker thread, and the response body that
//! drives its connection and gives it back when read to the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
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

/// One HTTP/1.1 connection to an origin: the request side and the connection state machine,
/// which whoever holds it must poll for anything to happen.
pub(crate) struct OriginConn<B: SendBody> {
    pub(crate) sender: http1::SendRequest<B>,
    pub(crate) conn: http1::Connection<Io, B>,
    /// The pool's sweep count when it went idle (sweeps, not a clock: no clock read per request).
    pub(crate) idle_since: u32,
    /// The origin-timeout timer, re-armed for each request: resetting a registered timer costs
    /// less than creating, registering and dropping one per request.
    pub(crate) timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B: SendBody> OriginConn<B> {
    /// Drives the connection's I/O; false once it has ended (closed by either side, or failed).
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
