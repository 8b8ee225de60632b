//! [`ServerState`]: what every request and every worker of one server shares: the active plan
//! with its runtime objects (swapped whole on reload), the origin client, the bridge to Python,
//! the clock offset, metrics and the access log.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::access_log::AccessLog;
use super::body::Body;
use super::bridge::Bridge;
use super::metrics::Metrics;
use super::plan::Plan;
use super::purge::Broadcast;
use super::upstream::{OriginPool, SetHealth, Upstreams};
use crate::error::Result;

/// A plan and the runtime objects made for it: one connection pool per origin, by
/// [`crate::server::upstream::Origin::index`]. Swapped as one on reload, so a request never
/// pairs a plan with another plan's pools.
pub struct Active {
    /// The compiled configuration.
    pub plan: Plan,
    /// The pool of each of the plan's origins.
    pub pools: Box<[Arc<OriginPool<Body>>]>,
    /// The health of each origin set's targets, by [`crate::server::upstream::OriginSet::id`].
    pub health: Box<[Arc<SetHealth>]>,
}

impl Active {
    /// `plan` with the pools of its origins (existing pools are reused: warm connections stay)
    /// and their health: a set that `previous` had as it is keeps its health (and its active
    /// health check); a new or changed one starts with every target up and its check started.
    pub fn new(plan: Plan, upstreams: &Upstreams<Body>, previous: Option<&Active>) -> Active {
        let pools = plan.each_origin().map(|o| upstreams.pool(o)).collect();
        let health = plan
            .upstreams
            .iter()
            .map(|set| {
                let kept = previous.and_then(|p| {
                    let old = p.plan.upstreams.iter().find(|o| o.name.is_some() && o.same_as(set))?;
                    Some(p.health[old.id].clone())
                });
                kept.unwrap_or_else(|| {
                    let fresh = Arc::new(SetHealth::new(set));
                    crate::server::upstream::checks::spawn(set, &fresh);
                    fresh
                })
            })
            .collect();
        Active { plan, pools, health }
    }
}

/// Nanoseconds per second, for the test clock.
const NS: f64 = 1e9;

/// What every request of a server shares.
pub struct ServerState {
    /// Seconds added to the clock (nanoseconds): only `TestClient.advance` moves it, so that
    /// tests control token expiry, cache freshness and in-process rate limits. 0 in production.
    pub clock_offset_ns: AtomicU64,
    /// Prometheus counters.
    pub metrics: Metrics,
    /// The access log, when enabled.
    pub access_log: Option<AccessLog>,
    /// The plan in force and its runtime objects.
    pub active: ArcSwap<Active>,
    /// The origin client.
    pub upstreams: Upstreams<Body>,
    /// Python handlers, when any are registered.
    pub bridge: Option<Arc<dyn Bridge>>,
    /// Per-request unique ids for A/B units (mixed with a random seed).
    pub uid_counter: AtomicU64,
    /// Seed for unit ids.
    pub uid_seed: foldhash::fast::RandomState,
    /// Cache purge broadcast over Redis pub/sub, when configured.
    pub purge: Option<Arc<Broadcast>>,
    /// Client connections open, per worker thread.
    pub open_connections: Box<[AtomicUsize]>,
}

impl ServerState {
    /// The state for serving `plan` with `threads` workers.
    pub fn new(plan: Plan, bridge: Option<Arc<dyn Bridge>>, threads: usize) -> Result<ServerState> {
        let s = &plan.server;
        let access_log = s.access_log.as_deref().map(AccessLog::open).transpose()?;
        let purge = s
            .purge_redis
            .as_deref()
            .map(|url| Broadcast::new(url, &s.purge_channel))
            .transpose()?;
        let upstreams = Upstreams::new(plan.timeouts.origin_connect, plan.timeouts.origin, threads);
        Ok(ServerState {
            clock_offset_ns: AtomicU64::new(0),
            metrics: Metrics::default(),
            access_log,
            active: ArcSwap::from_pointee(Active::new(plan, &upstreams, None)),
            upstreams,
            bridge,
            uid_counter: AtomicU64::new(0),
            uid_seed: Default::default(),
            purge,
            open_connections: (0..threads.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The pipeline's clock: wall time plus the test offset.
    pub fn now(&self) -> f64 {
        crate::clock::now() + self.clock_offset_ns.load(Ordering::Relaxed) as f64 / NS
    }

    /// The pipeline's clock and the wall clock, read once: (now, real). An origin writes its
    /// `Date` on the real one.
    pub fn now_and_real(&self) -> (f64, f64) {
        let real = crate::clock::now();
        (real + self.clock_offset_ns.load(Ordering::Relaxed) as f64 / NS, real)
    }

    /// Purges `prefix` from every response cache of the current plan (see
    /// [`crate::cache::HttpCache::purge`] for what a prefix matches); returns the entries removed.
    pub fn purge_local(&self, prefix: &str) -> usize {
        self.active
            .load()
            .plan
            .cache
            .iter()
            .map(|r| r.cache.purge(prefix))
            .sum()
    }
}
