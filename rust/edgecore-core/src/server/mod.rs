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
//!
//! Where each piece lives (no file imports one that imports it back; `scripts/check_cycles.py`
//! checks this for the whole workspace):
//!
//! - lifecycle: [`lifecycle`] (start, reload, shutdown), [`listener`] (accepting, hand-offs,
//!   the drain), [`conn`] (per-connection state and the timeout watchdog), [`guarded`] (the strict
//!   framing check on what clients send), [`worker`];
//! - a request: [`service`] (what hyper calls), [`pipeline`] (the phase order), [`phases`] (one
//!   file per phase), [`ctx`] (the request context), [`respond`] (responses the edge writes),
//!   [`body`], [`admin`] (the metrics page);
//! - configuration: [`spec`] (serde types), [`plan`] (compiled rules and their builder),
//!   [`matcher`], [`template`], [`tls`];
//! - what the server holds: [`state`], [`upstream`] (origins and their connection pools),
//!   [`bridge`] (to Python), [`metrics`], [`access_log`], [`purge`].

pub mod access_log;
pub mod admin;
pub mod body;
pub mod bridge;
pub mod conditions;
pub mod conn;
pub mod ctx;
pub mod error_pages;
pub mod explain;
pub mod fetch;
pub(crate) mod guarded;
pub mod lifecycle;
pub mod listener;
pub mod matcher;
pub mod metrics;
pub mod path_expr;
pub mod phases;
pub mod pipeline;
pub mod plan;
pub mod purge;
pub mod respond;
pub mod service;
pub mod spec;
pub mod state;
pub mod template;
pub mod tls;
pub mod trace;
pub mod tunnel;
pub mod upstream;
pub mod worker;

pub use lifecycle::{start, Purger, ServerHandle};
pub use plan::Plan;
pub use spec::{AppSpec, Objects, ServerSpec};
