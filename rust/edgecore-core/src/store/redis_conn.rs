//! A Redis connection with a timeout per command and a circuit breaker.
//!
//! Invariants:
//! - no command waits longer than `timeout` (default 50 ms for the limiter);
//! - after a failure (error, timeout, dropped connection) the breaker opens: for `backoff`
//!   (50 ms, doubling to 2 s) every call fails at once without touching the network, so requests
//!   never queue behind a dead Redis; then one caller probes with a reconnect;
//! - only one connect runs at a time; callers arriving meanwhile wait for its outcome, within
//!   their own timeout (failing fast here would let a burst of requests at start-up or after a
//!   reconnect all take the fallback: a shared limit must not be exceeded just because the
//!   connection was being set up).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;

use crate::error::{Error, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Breaker {
    down_until: Option<Instant>,
    backoff: Duration,
}

/// A shared, self-healing Redis connection.
pub struct RedisConn {
    url: String,
    client: redis::Client,
    conn: ArcSwapOption<MultiplexedConnection>,
    breaker: Mutex<Breaker>,
    connecting: tokio::sync::Mutex<()>,
    timeout: Duration,
    /// Failures seen. Relaxed: a statistic.
    failures: AtomicU64,
}

impl RedisConn {
    /// A connection to `url` (`redis://host:port/db`); connects lazily.
    pub fn new(url: &str, timeout: Duration) -> Result<Arc<Self>> {
        let client = redis::Client::open(url).map_err(|e| Error::config(format!("invalid Redis URL {url:?}: {e}")))?;
        Ok(Arc::new(RedisConn {
            url: url.to_owned(),
            client,
            conn: ArcSwapOption::empty(),
            breaker: Mutex::new(Breaker {
                down_until: None,
                backoff: FIRST_BACKOFF,
            }),
            connecting: tokio::sync::Mutex::new(()),
            timeout,
            failures: AtomicU64::new(0),
        }))
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Failures seen so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether the breaker is open (Redis considered down) right now.
    pub fn is_down(&self) -> bool {
        self.breaker.lock().down_until.is_some_and(|t| Instant::now() < t)
    }

    fn trip(&self, why: &str) -> Error {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.conn.store(None);
        let mut b = self.breaker.lock();
        b.down_until = Some(Instant::now() + b.backoff);
        b.backoff = (b.backoff * 2).min(MAX_BACKOFF);
        Error::store(format!("Redis at {}: {why}", self.url))
    }

    fn heal(&self) {
        let mut b = self.breaker.lock();
        b.down_until = None;
        b.backoff = FIRST_BACKOFF;
    }

    /// The connection when there is one, or the fast failure while the breaker is open; None
    /// when a connect is needed.
    fn ready(&self) -> Option<Result<MultiplexedConnection>> {
        if let Some(c) = self.conn.load_full() {
            return Some(Ok((*c).clone()));
        }
        self.is_down().then(|| {
            Err(Error::store(format!(
                "Redis at {} is unavailable (backing off)",
                self.url
            )))
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection> {
        if let Some(r) = self.ready() {
            return r;
        }
        let Ok(_connecting) = tokio::time::timeout(self.timeout, self.connecting.lock()).await else {
            return Err(Error::store(format!("Redis at {} is still connecting", self.url)));
        };
        // Whoever held the lock may have connected (or failed) meanwhile.
        if let Some(r) = self.ready() {
            return r;
        }
        let result = tokio::time::timeout(
            self.timeout.max(Duration::from_millis(200)),
            self.client.get_multiplexed_async_connection(),
        )
        .await;
        match result {
            Ok(Ok(c)) => {
                self.conn.store(Some(Arc::new(c.clone())));
                self.heal();
                Ok(c)
            }
            Ok(Err(e)) => Err(self.trip(&format!("cannot connect: {e}"))),
            Err(_) => Err(self.trip("connect timed out")),
        }
    }

    /// Runs one command (or script) with the timeout and the breaker.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                Err(self.trip(&format!("connection failed: {e}")))
            }
            // A command error (wrong type, script error…): Redis is up but said no.
            Ok(Err(e)) => Err(Error::store(format!(
                "Redis at {} replied with an error: {e}",
                self.url
            ))),
            Err(_) => Err(self.trip(&format!("no reply within {} ms", self.timeout.as_millis()))),
        }
    }
}
