//! The server's lifecycle: [`start`] spawns one worker thread per core on a bound listener;
//! the [`ServerHandle`] reloads the plan, moves the test clock, purges and shuts down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};

use super::bridge::Bridge;
use super::conn::Connections;
use super::listener::{accept_loop, http_builder, Workers};
use super::plan::Plan;
use super::state::{Active, ServerState};
use super::worker::set_worker_index;
use crate::error::{Error, Result};

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    /// The admin listener's address, when `admin_addr` is set.
    admin_addr: Option<SocketAddr>,
    shared: Arc<ServerState>,
    stop: watch::Sender<bool>,
    /// One message per worker thread when it has drained and stopped.
    done: Option<std::sync::mpsc::Receiver<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    grace: Duration,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address (metrics off the public port), when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Swaps in a new plan; requests already running finish with the old one. Response caches
    /// carry over for cache rules whose identity (the rule, origins, rewrites and header
    /// templates) is unchanged. A plan that
    /// would switch TLS on or off is refused (that needs a restart); one with a renewed
    /// certificate applies to connections accepted from now on.
    pub fn reload(&self, plan: Plan) -> Result<()> {
        let current = self.shared.active.load();
        let current = &current.plan;
        if plan.tls.is_some() != current.tls.is_some() {
            return Err(Error::config(
                "a reload cannot switch TLS on or off; restart the server to change that",
            ));
        }
        if plan.server.admin_addr != current.server.admin_addr {
            return Err(Error::config(
                "a reload cannot change admin_addr; restart the server to change that",
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
        let active = Arc::new(Active::new(
            plan,
            &self.shared.upstreams,
            Some(&self.shared.active.load()),
        ));
        self.shared.upstreams.retire_others(&active.pools);
        self.shared.active.store(active);
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

    /// What calls the origin through this server's proxy (`env.fetch`), usable from any thread.
    pub fn fetcher(&self) -> crate::server::fetch::Fetcher {
        crate::server::fetch::Fetcher {
            shared: self.shared.clone(),
        }
    }

    /// Moves the pipeline's clock forward by `seconds` (tests: token expiry, cache freshness,
    /// in-process rate limits).
    pub fn advance_clock(&self, seconds: f64) {
        let ns = (seconds.max(0.0) * 1e9) as u64;
        self.shared.clock_offset_ns.fetch_add(ns, Ordering::Relaxed);
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
    shared: Arc<ServerState>,
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
    let threads = match plan.server.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::config(format!("listener: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::config(format!("listener: {e}")))?;
    let (timeouts, max_connections, max_header_bytes) =
        (plan.timeouts, plan.server.max_connections, plan.server.max_header_bytes);
    let admin = match &plan.server.admin_addr {
        None => None,
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| Error::config(format!("cannot listen on admin_addr {addr}: {e}")))?;
            Some(l)
        }
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let shared = Arc::new(ServerState::new(plan, bridge, threads)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(l) = admin {
        crate::rt::background().spawn(super::admin::admin_loop(shared.clone(), l, stop_rx.clone()));
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    if let Some(b) = shared.purge.clone() {
        let state = shared.clone();
        let apply = move |prefix: &str| {
            state.purge_local(prefix);
        };
        crate::rt::background().spawn(b.run(apply, stop_rx.clone()));
    }
    // What every worker shares: the connection cap, the connections (stop signal, header
    // timeout) and hyper's settings.
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
    let workers_state = Arc::new(Workers {
        permits: Arc::new(Semaphore::new(max_connections.clamp(1, Semaphore::MAX_PERMITS))),
        conns: Arc::new(Connections::new(timeouts.header_read, timeouts.keep_alive)),
        builder: http_builder(max_header_bytes),
        timeouts,
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
        let (shared, common, stop, done) = (shared.clone(), workers_state.clone(), stop_rx.clone(), done_tx.clone());
        let worker = std::thread::Builder::new()
            .name(format!("edgecore-worker-{index}"))
            .spawn(move || {
                set_worker_index(index);
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
        admin_addr,
        shared,
        stop: stop_tx,
        done: Some(done_rx),
        workers,
        grace: timeouts.grace,
    })
}
