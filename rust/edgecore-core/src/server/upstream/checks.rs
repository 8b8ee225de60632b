//! Active health checks: a background task per checked set asks each target for `path` every
//! `interval`. `unhealthy` failures in a row (no answer within `timeout`, a refused connection,
//! or a status outside 200–399) mark it down; `healthy` successes in a row bring it back. Targets
//! start up. The task ends when the set's health is dropped (a reload that changed the set).
//!
//! Checks use a client of their own (not the request pools), so a check never takes or returns a
//! connection a request could have used, and each is bounded by `timeout` as a whole.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;

use super::balance::{HealthCheck, OriginSet, SetHealth};

/// One target's streaks.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    ok: u32,
    failed: u32,
}

/// Starts checking `set`'s targets while `health` lives.
pub fn spawn(set: &OriginSet, health: &Arc<SetHealth>) {
    let Some(check) = set.check.clone() else { return };
    let weak = Arc::downgrade(health);
    let urls: Vec<http::Uri> = set
        .targets
        .iter()
        .map(|t| {
            http::Uri::builder()
                .scheme(t.scheme.clone())
                .authority(t.authority.clone())
                .path_and_query(format!("{}{}", t.base_path, check.path))
                .build()
                .expect("a target and a path make a URI")
        })
        .collect();
    crate::rt::background().spawn(run(check, urls, weak));
}

async fn run(check: HealthCheck, urls: Vec<http::Uri>, health: Weak<SetHealth>) {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(super::client::connector(check.timeout));
    let mut streaks = vec![Streak::default(); urls.len()];
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if health.strong_count() == 0 {
            return;
        }
        let results = futures_util::future::join_all(urls.iter().map(|u| probe(&client, u, check.timeout))).await;
        let Some(health) = health.upgrade() else { return };
        for ((ok, streak), target) in results.into_iter().zip(&mut streaks).zip(health.targets.iter()) {
            if ok {
                *streak = Streak {
                    ok: streak.ok.saturating_add(1),
                    failed: 0,
                };
                if streak.ok >= check.healthy {
                    target.down.store(false, Ordering::Relaxed);
                }
            } else {
                *streak = Streak {
                    ok: 0,
                    failed: streak.failed.saturating_add(1),
                };
                if streak.failed >= check.unhealthy {
                    target.down.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Whether `url` answers 200–399 within `timeout`.
async fn probe<C>(client: &Client<C, Empty<Bytes>>, url: &http::Uri, timeout: Duration) -> bool
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let request = http::Request::get(url.clone())
        .header(http::header::USER_AGENT, "edgecore-health-check")
        .body(Empty::new())
        .expect("a GET request");
    let answer = tokio::time::timeout(timeout, async {
        let resp = client.request(request).await.ok()?;
        let status = resp.status();
        // Read the body (at most 64 KiB) to its end so the connection is kept for the next round.
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024);
        http_body_util::BodyExt::collect(body).await.ok()?;
        Some(status)
    })
    .await;
    matches!(answer, Ok(Some(s)) if (200..400).contains(&s.as_u16()))
}
