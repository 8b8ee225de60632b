//! A Redis connection with a timeout per command and a circuit breaker: to one server
//! (`redis://`, `rediss://` over TLS) or to a Redis Cluster (`redis-cluster://h1:p1,h2:p2`,
//! `rediss-cluster://` over TLS), where the `redis` crate routes each command to the master of
//! its key's slot, follows MOVED and ASK, and finds the new master after a failover. edgecore's
//! keys carry hash tags, so a script's keys always share a slot.
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
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::{Error, Result};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Breaker {
    down_until: Option<Instant>,
    backoff: Duration,
}

/// Where a store URL points: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://` or `rediss://`.
    Single(String),
    /// `redis-cluster://[auth@]h1:p1,h2:p2[/...]`: each seed as a `redis://` (or `rediss://`)
    /// URL with the same credentials.
    Cluster(Vec<String>),
}

impl Target {
    /// Parses a store URL (nothing connects); a malformed cluster URL is a `Config` error.
    pub fn parse(url: &str) -> Result<Target> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("redis-cluster", rest)) => ("redis", rest),
            Some(("rediss-cluster", rest)) => ("rediss", rest),
            _ => return Ok(Target::Single(url.to_owned())),
        };
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let (hosts, tail) = hosts
            .split_once(['/', '?', '#'])
            .map_or((hosts, ""), |(h, _)| (h, &hosts[h.len()..]));
        let seeds: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}{tail}"))
            .collect();
        if seeds.is_empty() {
            return Err(Error::config(format!(
                "Redis Cluster URL {url:?} names no node (redis-cluster://host:port,host:port)"
            )));
        }
        Ok(Target::Cluster(seeds))
    }
}

/// Plain clients for pub/sub on `url`: the server, or each seed of a cluster (a message
/// published on any node of a cluster reaches subscribers on every node).
pub fn pubsub_clients(url: &str) -> Result<Vec<redis::Client>> {
    let urls = match Target::parse(url)? {
        Target::Single(u) => vec![u],
        Target::Cluster(seeds) => seeds,
    };
    urls.iter()
        .map(|u| redis::Client::open(u.as_str()).map_err(|e| Error::config(format!("invalid Redis URL {url:?}: {e}"))))
        .collect()
}

enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to one server or to a cluster; commands go where their keys live.
#[derive(Clone)]
pub enum Conn {
    /// One server.
    Single(MultiplexedConnection),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A shared, self-healing Redis connection.
pub struct RedisConn {
    url: String,
    client: Client,
    conn: ArcSwapOption<Conn>,
    breaker: Mutex<Breaker>,
    connecting: tokio::sync::Mutex<()>,
    timeout: Duration,
    /// Failures seen. Relaxed: a statistic.
    failures: AtomicU64,
}

impl RedisConn {
    /// A connection to `url` (`redis://host:port/db`, or a cluster: see [`Target`]); connects
    /// lazily.
    pub fn new(url: &str, timeout: Duration) -> Result<Arc<Self>> {
        let invalid = |e: redis::RedisError| Error::config(format!("invalid Redis URL {url:?}: {e}"));
        let client = match Target::parse(url)? {
            Target::Single(u) => Client::Single(redis::Client::open(u).map_err(invalid)?),
            Target::Cluster(seeds) => Client::Cluster(
                redis::cluster::ClusterClient::builder(seeds)
                    .connection_timeout(timeout.max(Duration::from_millis(200)))
                    .response_timeout(timeout)
                    .build()
                    .map_err(invalid)?,
            ),
        };
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
        // A cluster connection heals itself (it refreshes the slot map and reconnects to the
        // nodes it needs); made anew, it would first wait on every seed, a dead one included.
        if !matches!(self.client, Client::Cluster(_)) {
            self.conn.store(None);
        }
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
    fn ready(&self) -> Option<Result<Conn>> {
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

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match &self.client {
            Client::Single(c) => c.get_multiplexed_async_connection().await.map(Conn::Single),
            Client::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
        }
    }

    async fn connection(&self) -> Result<Conn> {
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
        // A cluster's first connection reads the topology from the seeds: give it longer.
        let limit = match self.client {
            Client::Single(_) => self.timeout.max(Duration::from_millis(200)),
            Client::Cluster(_) => self.timeout.max(Duration::from_secs(2)),
        };
        let result = tokio::time::timeout(limit, self.connect()).await;
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
        F: FnOnce(Conn) -> Fut,
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

impl RedisConn {
    /// Every key matching `pattern` (a `SCAN MATCH` glob), on every master of a cluster.
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let nodes: Vec<Option<(String, u16)>> = match self.connection().await? {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self.masters().await?.into_iter().map(Some).collect(),
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
                let node = node.clone();
                let (next, batch): (u64, Vec<String>) = self
                    .run(|c| async move {
                        match (c, node) {
                            (Conn::Cluster(mut c), Some((host, port))) => {
                                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                                let at = SingleNodeRoutingInfo::ByAddress { host, port };
                                let v = c.route_command(&cmd, RoutingInfo::SingleNode(at)).await?;
                                redis::from_owned_redis_value(v)
                            }
                            (mut c, _) => cmd.query_async(&mut c).await,
                        }
                    })
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// The cluster's masters that are up, as (host, port), from `CLUSTER NODES`.
    async fn masters(&self) -> Result<Vec<(String, u16)>> {
        let text: String = self
            .run(|c| async move {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let Conn::Cluster(mut c) = c else {
                    return Ok(String::new());
                };
                let cmd = redis::cmd("CLUSTER").arg("NODES").to_owned();
                let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                redis::from_owned_redis_value(c.route_command(&cmd, at).await?)
            })
            .await?;
        Ok(masters_of(&text))
    }
}

/// The masters that are up in a `CLUSTER NODES` listing
/// (`<id> <host:port@cport> <flags> <master> ...`).
fn masters_of(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (addr, flags) = (f.nth(1)?, f.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|x| x.starts_with("fail") || *x == "noaddr") {
                return None;
            }
            let hostport = addr.split('@').next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_seed_urls_with_their_credentials_and_scheme() {
        assert_eq!(
            Target::parse("redis-cluster://a:7000,b:7001").unwrap(),
            Target::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(
            Target::parse("rediss-cluster://user:pw@a:7000,b:7001/?x=1").unwrap(),
            Target::Cluster(vec![
                "rediss://user:pw@a:7000/?x=1".into(),
                "rediss://user:pw@b:7001/?x=1".into()
            ])
        );
        assert_eq!(
            Target::parse("redis://a:1/0").unwrap(),
            Target::Single("redis://a:1/0".into())
        );
        let e = Target::parse("redis-cluster://").unwrap_err();
        assert!(e.context.contains("names no node"), "{e}");
        assert!(RedisConn::new("redis-cluster://127.0.0.1:1,127.0.0.1:2", Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn the_masters_that_are_up_are_scanned() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected
a4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
a5 ::1:7004@17004 master - 0 0 5 connected 10923-16383
";
        assert_eq!(
            masters_of(nodes),
            vec![
                ("127.0.0.1".into(), 7000),
                ("127.0.0.1".into(), 7001),
                ("::1".into(), 7004)
            ]
        );
    }
}
