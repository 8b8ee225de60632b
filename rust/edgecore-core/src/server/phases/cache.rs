//! The cache: on a cache rule's paths, a GET or HEAD is answered from the rule's cache when it
//! holds a fresh (or servable stale) response for the request's key; otherwise one coalesced
//! fetch through [`produce`] fills it. An unsafe method on a cached path goes through, and a
//! success invalidates the URL.
//!
//! The key is the URL (with the rule's query options), the method, and every dimension the
//! response can differ by: each A/B variant, and the country when geo is on. `Vary` is the
//! cache's own business ([`crate::cache::HttpCache`]).

use std::sync::Arc;

use bytes::Bytes;
use http::Method;

use super::produce::{fetch_full, produce};
use crate::cache::{url_key, Entry, Lookup};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::Request;
use crate::server::body::Body;
use crate::server::ctx::{BodyState, CacheStatus, RequestCtx};
use crate::server::plan::{CacheRule, Plan};
use crate::server::respond::from_core;
use crate::server::state::{Active, ServerState};

/// The cache rule for the request's path, if any.
pub fn rule_for(plan: &Plan, request: &Request) -> Option<usize> {
    let path = request.path();
    plan.cache.iter().position(|r| r.paths.matches(path))
}

/// The request's key under `rule`, built in one buffer: URL, method, then the dimensions.
pub fn key(plan: &Plan, rule: &CacheRule, request: &Request) -> String {
    let mut key = url_key(request, request.edge.scheme(), &rule.key);
    crate::cache::key::push_method(&mut key, request);
    for (experiment, variant) in &request.edge.variants {
        crate::cache::key::push_dimension(&mut key, "variant:", experiment, variant);
    }
    if plan.geo.is_some() || plan.server.dev_mode {
        let country = request.edge.geo.as_ref().and_then(|g| g.country.as_deref());
        crate::cache::key::push_dimension(&mut key, "", "country", country.unwrap_or_default());
    }
    key
}

/// Answers a request on cache rule `index`: from the cache, or through it.
pub async fn serve(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    index: usize,
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>> {
    let rule = &active.plan.cache[index];
    let (request, body, prior_xff) = ctx.take_exchange();
    if request.method != Method::GET && request.method != Method::HEAD {
        // An unsafe method on a cached path: a success invalidates the URL.
        let method = request.method.clone();
        let url = url_key(&request, request.edge.scheme(), &rule.key);
        let (resp, outcome) = Box::pin(produce(state, active, request, body, prior_xff)).await?;
        ctx.notes.outcome = Some(outcome);
        rule.cache.invalidate(&method, resp.status(), &url);
        return Ok(resp);
    }
    let key = key(&active.plan, rule, &request);
    let exchange = (request, body, prior_xff);
    match rule.cache.lookup(&exchange.0, &key, state.now()) {
        Lookup::Hit(r) => {
            ctx.notes.cache_status = Some(CacheStatus::Hit);
            Ok(from_core(r))
        }
        Lookup::Stale(r, _entry) => {
            ctx.notes.cache_status = Some(CacheStatus::Stale);
            refresh_in_background(state, active, index, key, exchange.0, exchange.2);
            Ok(from_core(r))
        }
        Lookup::Revalidate(entry, cond) => revalidate(state, active, rule, key, exchange, entry, cond, ctx).await,
        Lookup::Miss(entry) => {
            ctx.notes.cache_status = Some(CacheStatus::Miss);
            fill(state, active, rule, key, exchange, entry).await
        }
        Lookup::Bypass => {
            ctx.notes.cache_status = Some(CacheStatus::Bypass);
            let (request, body, prior_xff) = exchange;
            let (resp, outcome) = Box::pin(produce(state, active, request, body, prior_xff)).await?;
            ctx.notes.outcome = Some(outcome);
            Ok(resp)
        }
    }
}

/// Refreshes a stale entry in the background (one refresh per key at a time: the coalescer).
fn refresh_in_background(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    index: usize,
    key: String,
    request: Request,
    prior_xff: Option<String>,
) {
    let (state, active) = (state.clone(), active.clone());
    tokio::spawn(async move {
        let rule = &active.plan.cache[index];
        let _ = rule
            .coalescer
            .run(&key, || async {
                let fetched = fetch_full(
                    &state,
                    &active,
                    request.clone(),
                    BodyState::Read(Bytes::new()),
                    prior_xff,
                )
                .await;
                match fetched {
                    Ok(resp) => {
                        rule.cache.store(&request, &key, &resp, state.now());
                        Ok(resp)
                    }
                    Err(e) => Err((e.http_status(), e.context.to_string())),
                }
            })
            .await;
    });
}

/// Asks the origin whether a stored entry is still good (the conditional headers given), and
/// serves it again on a 304, the new response otherwise, or the stale one if the origin fails
/// within `stale-if-error`.
#[allow(clippy::too_many_arguments)]
async fn revalidate(
    state: &ServerState,
    active: &Active,
    rule: &CacheRule,
    key: String,
    (request, body, prior_xff): (Request, BodyState, Option<String>),
    entry: Arc<Entry>,
    cond: Vec<(http::HeaderName, http::HeaderValue)>,
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>> {
    let mut conditional = request.clone();
    for (n, v) in cond {
        conditional.headers.as_map_mut().insert(n, v);
    }
    match Box::pin(fetch_full(state, active, conditional, body, prior_xff)).await {
        Ok(r) if r.status == http::StatusCode::NOT_MODIFIED => {
            ctx.notes.cache_status = Some(CacheStatus::Revalidated);
            Ok(from_core(rule.cache.revalidated(
                &request,
                &key,
                &entry,
                &r,
                state.now(),
            )))
        }
        Ok(r) => {
            rule.cache.store(&request, &key, &r, state.now());
            ctx.notes.cache_status = Some(CacheStatus::Miss);
            Ok(from_core(r))
        }
        Err(e) => rule.cache.stale_on_error(&entry, state.now()).map(from_core).ok_or(e),
    }
}

/// A miss: one fetch per key at a time (concurrent misses wait for it), stored when storable;
/// a failed fetch serves the stale entry within `stale-if-error`.
async fn fill(
    state: &ServerState,
    active: &Active,
    rule: &CacheRule,
    key: String,
    (request, body, prior_xff): (Request, BodyState, Option<String>),
    entry: Option<Arc<Entry>>,
) -> Result<http::Response<Body>> {
    let cache = rule.cache.clone();
    let fetched = Box::pin(rule.coalescer.run(&key, || async {
        match fetch_full(state, active, request.clone(), body, prior_xff).await {
            Ok(r) => {
                cache.store(&request, &key, &r, state.now());
                Ok(r)
            }
            Err(e) => Err((e.http_status(), e.context.to_string())),
        }
    }))
    .await
    .0;
    match fetched {
        Ok(r) => Ok(from_core(r)),
        Err((status, msg)) => match entry.and_then(|e| rule.cache.stale_on_error(&e, state.now())) {
            Some(stale) => Ok(from_core(stale)),
            None => {
                let kind = if status == 504 {
                    ErrorKind::UpstreamTimeout
                } else {
                    ErrorKind::Upstream
                };
                Err(Error::new(kind, ErrorSource::Upstream, msg))
            }
        },
    }
}
