//! Accepting connections: one loop per worker thread on the shared listening socket, with
//! hand-offs that keep the workers' connection counts within one of each other, and the drain at
//! shutdown that takes what is queued in the kernel instead of resetting it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::conn::{serve_connection, ConnState, Connections, Watched};
use super::guarded::Guarded;
use super::plan::Timeouts;
use super::service::serve;
use super::state::ServerState;

/// What the worker threads share.
pub(crate) struct Workers {
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) conns: Arc<Connections>,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) timeouts: Timeouts,
    /// Each worker's inbox of connections another worker accepted for it.
    pub(crate) inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
    /// Workers that stopped accepting, and those of them that closed their descriptor of the
    /// listening socket (see the end of [`accept_loop`]).
    pub(crate) letting_go: AtomicUsize,
    pub(crate) let_go: AtomicUsize,
}

/// Counts a connection open on a worker until it is dropped (also when a runtime shuts down
/// with the connection still open).
struct Open(Arc<ServerState>, usize);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection handed to another worker.
pub(crate) struct Handoff {
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
pub(crate) fn http_builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper timer for HTTP/1: the header timeout is the connections' watchdog (see
    // [`super::conn::Connections`]), not a timer allocated and registered per request.
    builder
        .http1()
        .header_read_timeout(None)
        // Headroom above the configured limit, so an oversized head gets a 431 from the
        // pipeline; a head beyond even this is an attack and the connection is closed.
        .max_buf_size(max_header_bytes.saturating_mul(2).max(64 * 1024))
        .keep_alive(true)
        // Half-close is legal HTTP/1.1 (a client may shut down its sending side and read the
        // answer). It also stops hyper's end-of-file probe read while a request is in flight,
        // a recv that cost a syscall and, because the request still holds its slice of the read
        // buffer, a fresh 8 KiB buffer per request. A client that leaves is then noticed when
        // the answer is written.
        .half_close(true)
        // One buffer per response (the head and small bodies copied in, one write), rather than
        // a queue of buffers: fewer instructions per proxied request (~300 of ~40k, callgrind)
        // and a write buffer bounded by `max_buf_size`.
        .writev(false)
        // Not `pipeline_flush(true)`: it skips the flush while unparsed bytes sit in the read
        // buffer, so the 400 answering a malformed head (still in that buffer) was dropped with
        // the connection, and the write buffer could grow past its bound for a slow reader.
        .pipeline_flush(false);
    builder
        .http2()
        // RFC 8441: WebSockets over HTTP/2 (extended CONNECT with `:protocol`), proxied to the
        // origin as HTTP/1.1 upgrades (`tunnel`).
        .enable_connect_protocol()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header_bytes as u32);
    builder
}

/// One worker: what its accept loop needs to start, adopt and hand over connections.
struct Worker<'a> {
    index: usize,
    shared: &'a Arc<ServerState>,
    common: &'a Arc<Workers>,
}

impl Worker<'_> {
    /// Serves an accepted connection on this worker's runtime.
    fn spawn(&self, stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let (index, shared) = (self.index, self.shared);
        let _ = stream.set_nodelay(true);
        shared.open_connections[index].fetch_add(1, Ordering::Relaxed);
        let open = Open(shared.clone(), index);
        // Read per connection: a reload that renewed the certificate applies to the next one
        // (a reload cannot switch TLS on or off, so every connection agrees on `secure`).
        let tls = shared
            .active
            .load()
            .plan
            .tls
            .clone()
            .map(tokio_rustls::TlsAcceptor::from);
        let secure = tls.is_some();
        let (shared, common) = (shared.clone(), self.common.clone());
        tokio::spawn(async move {
            let (builder, conns) = (&common.builder, &common.conns);
            let header_timeout = common.timeouts.header_read;
            let state = Arc::new(ConnState::new(conns.clock.clone(), peer));
            let seen = state.clone();
            let service = service_fn(move |req| serve(shared.clone(), req, peer, secure, seen.request()));
            let stream = Watched {
                io: stream,
                state: state.clone(),
            };
            match tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(Guarded::new(stream, state.clone())), service)
                        .into_owned();
                    serve_connection!(conn, conns, &state, header_timeout);
                    run_tunnel(&state, conns, common.timeouts.upgrade_idle).await;
                }
                // The handshake runs on the connection's task, bounded by the header timeout,
                // so a slow or silent client never holds up the accept loop. The wait for the
                // first request head starts after it.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        state.deadline.store(conns.clock.header_deadline(), Ordering::Relaxed);
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(Guarded::new(stream, state.clone())), service)
                            .into_owned();
                        serve_connection!(conn, conns, &state, header_timeout);
                        run_tunnel(&state, conns, common.timeouts.upgrade_idle).await;
                    }
                }
            }
            drop((open, permit));
        });
    }

    /// Serves a connection another worker accepted for this one (registered with this thread's
    /// runtime). `reserved`: the worker the sender counted it on (`spawn` counts it again).
    fn adopt(&self, h: Handoff, reserved: usize) {
        self.shared.open_connections[reserved].fetch_sub(1, Ordering::Relaxed);
        match tokio::net::TcpStream::from_std(h.stream) {
            Ok(stream) => self.spawn(stream, h.peer, h.permit),
            Err(e) => eprintln!("edgecore: worker {} cannot take over a connection: {e}", self.index),
        }
    }

    /// Sends an accepted connection to the worker that should serve it.
    fn place(&self, stream: tokio::net::TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        let target = assign(&self.shared.open_connections, self.index);
        if target == self.index {
            return self.spawn(stream, peer, permit);
        }
        // Counted at once, so that the next accepts see the new balance.
        match stream.into_std() {
            Ok(stream) => {
                self.shared.open_connections[target].fetch_add(1, Ordering::Relaxed);
                let handoff = Handoff { stream, peer, permit };
                // The target has stopped taking hand-offs (the server is stopping): keep it.
                if let Err(mpsc::error::SendError(h)) = self.common.inboxes[target].send(handoff) {
                    self.adopt(h, target);
                }
            }
            Err(e) => eprintln!("edgecore: worker {} cannot hand over a connection: {e}", self.index),
        }
    }

    /// After the stop: serves what was handed over or queued in the kernel, then waits for this
    /// worker's connections until the grace period ends.
    async fn drain(&self, listener: tokio::net::TcpListener, mut inbox: mpsc::UnboundedReceiver<Handoff>) {
        let (common, shared, index) = (self.common, self.shared, self.index);
        let permits = &common.permits;
        common.conns.stop();
        let deadline = tokio::time::Instant::now() + common.timeouts.grace;
        // Connections handed over just before the stop are served like the rest; later
        // hand-offs fail and stay with the worker that accepted them.
        inbox.close();
        while let Ok(h) = inbox.try_recv() {
            self.adopt(h, index);
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
                        Ok(permit) => self.spawn(stream, peer, permit),
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
    }
}

/// One worker's accept loop: accepts on the shared listening socket until the server stops,
/// then drains (see [`serve_connection!`]). Worker 0 also runs the header-timeout watchdog.
pub(crate) async fn accept_loop(
    index: usize,
    listener: tokio::net::TcpListener,
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    shared: Arc<ServerState>,
    mut stop: watch::Receiver<bool>,
    common: Arc<Workers>,
) {
    let worker = Worker {
        index,
        shared: &shared,
        common: &common,
    };
    let watchdog = (index == 0).then(|| {
        let conns = common.conns.clone();
        tokio::spawn(async move { conns.watchdog().await })
    });
    loop {
        let permit = tokio::select! {
            p = common.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            Some(h) = inbox.recv() => { worker.adopt(h, index); continue }
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
            Some(h) = inbox.recv() => { worker.adopt(h, index); continue }
            _ = stop.changed() => break,
        };
        worker.place(stream, peer, permit);
    }
    worker.drain(listener, inbox).await;
    if let Some(w) = watchdog {
        w.abort();
    }
}
/// Runs the connection's tunnel, if its last response switched protocols (a WebSocket).
async fn run_tunnel(state: &ConnState, conns: &Connections, idle: std::time::Duration) {
    let tunnel = state.tunnel.lock().take();
    if let Some(t) = tunnel {
        t.run(idle, || conns.is_stopped()).await;
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
}
