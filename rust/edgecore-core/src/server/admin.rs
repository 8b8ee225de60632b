//! What the edge serves about itself: the Prometheus metrics page (served by Rust: no Python,
//! no lock), on the public port to the peers `metrics_allow` names, or on a listener of its own
//! (`admin_addr`), which keeps it off the public port altogether.

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
    upstream_metrics(state, &mut text);
    let mut r = http::Response::new(Body::full(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Each balanced upstream's targets (in or ejected, ejections) and its retries.
fn upstream_metrics(state: &ServerState, text: &mut String) {
    let active = state.active.load();
    let sets: Vec<_> = active.plan.upstreams.iter().filter(|s| s.name.is_some()).collect();
    if sets.is_empty() {
        return;
    }
    let mut up = String::new();
    let mut ejections = String::new();
    let mut retries = String::new();
    let mut overflows = String::new();
    let mut in_flight = String::new();
    for set in sets {
        let health = &active.health[set.id];
        let name = set.label();
        for (target, h) in set.targets.iter().zip(health.targets.iter()) {
            let labels = format!("upstream=\"{name}\",target=\"{target:?}\"");
            let _ = writeln!(
                up,
                "edgecore_upstream_target_up{{{labels}}} {}",
                u8::from(h.is_usable())
            );
            let total = h.ejected_total.load(Ordering::Relaxed);
            let _ = writeln!(ejections, "edgecore_upstream_ejections_total{{{labels}}} {total}");
        }
        let _ = writeln!(
            retries,
            "edgecore_upstream_retries_total{{upstream=\"{name}\"}} {}",
            health.retries()
        );
        let _ = writeln!(
            overflows,
            "edgecore_upstream_overflows_total{{upstream=\"{name}\"}} {}",
            health.overflows.load(Ordering::Relaxed)
        );
        if set.counts() {
            let _ = writeln!(
                in_flight,
                "edgecore_upstream_requests_in_flight{{upstream=\"{name}\"}} {}",
                health.in_flight()
            );
        }
    }
    text.push_str("# HELP edgecore_upstream_target_up Whether an upstream target takes requests (0: ejected or failing its health check).\n");
    text.push_str("# TYPE edgecore_upstream_target_up gauge\n");
    text.push_str(&up);
    text.push_str("# HELP edgecore_upstream_ejections_total Times a target was taken out after failing.\n");
    text.push_str("# TYPE edgecore_upstream_ejections_total counter\n");
    text.push_str(&ejections);
    text.push_str("# HELP edgecore_upstream_retries_total Requests tried again on another target.\n");
    text.push_str("# TYPE edgecore_upstream_retries_total counter\n");
    text.push_str(&retries);
    text.push_str("# HELP edgecore_upstream_overflows_total Requests answered 503 by the circuit breaker.\n");
    text.push_str("# TYPE edgecore_upstream_overflows_total counter\n");
    text.push_str(&overflows);
    if !in_flight.is_empty() {
        text.push_str("# HELP edgecore_upstream_requests_in_flight Requests sent and not yet answered in full.\n");
        text.push_str("# TYPE edgecore_upstream_requests_in_flight gauge\n");
        text.push_str(&in_flight);
    }
}

/// What the admin listener answers: the metrics at `metrics_path` (`/metrics` when unset), 404
/// for anything else.
fn admin_response(state: &ServerState, path: &str) -> http::Response<Body> {
    let active = state.active.load();
    let plan = &active.plan;
    if path == plan.server.metrics_path.as_deref().unwrap_or("/metrics") {
        return metrics_response(state, plan);
    }
    super::respond::status_response(http::StatusCode::NOT_FOUND, "Not Found")
}

/// Serves the admin listener (`admin_addr`) until `stop`: HTTP/1.1, each connection bounded by
/// a header timeout. It runs on the background runtime, apart from the public workers, and no
/// policy or origin is involved.
pub async fn admin_loop(
    state: std::sync::Arc<ServerState>,
    listener: std::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("edgecore: the admin listener cannot be used");
        return;
    };
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let resp = admin_response(&state, req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
