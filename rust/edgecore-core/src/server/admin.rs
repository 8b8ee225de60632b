//! What the edge serves about itself: the Prometheus metrics page (served by Rust: no Python,
//! no lock).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use http::header::HeaderValue;

use super::body::Body;
use super::plan::Plan;
use super::state::ServerState;

/// The Prometheus text for a scrape.
pub fn metrics_response(state: &ServerState, plan: &Plan) -> http::Response<Body> {
    let queued = state.bridge.as_ref().map_or(0, |b| b.queued()) as f64;
    let cache_bytes = plan.cache.iter().map(|c| c.cache.size_bytes()).sum::<usize>() as f64;
    let purge = state.purge.as_ref();
    let gauges = [
        ("edgecore_python_queue_depth", "Python jobs waiting.", queued),
        (
            "edgecore_cache_bytes",
            "Bytes held by the response caches.",
            cache_bytes,
        ),
        (
            "edgecore_purge_subscribed",
            "1 while subscribed to the Redis purge channel (0: purges cannot reach this node).",
            purge.map_or(0.0, |p| p.subscribed.load(Ordering::Relaxed) as u8 as f64),
        ),
        (
            "edgecore_purges_received",
            "Purge messages received from the Redis channel.",
            purge.map_or(0.0, |p| p.received.load(Ordering::Relaxed) as f64),
        ),
    ];
    let mut text = state.metrics.render(&gauges);
    text.push_str("# HELP edgecore_open_connections Client connections open, per worker thread.\n");
    text.push_str("# TYPE edgecore_open_connections gauge\n");
    for (i, n) in state.open_connections.iter().enumerate() {
        let _ = writeln!(
            text,
            "edgecore_open_connections{{worker=\"{i}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let mut r = http::Response::new(Body::full(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
