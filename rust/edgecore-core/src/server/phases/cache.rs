//! The cache: on a cache rule's paths, a GET or HEAD is answered from the rule's cache when it
//! holds a fresh (or servable stale) response for the request's key; otherwise one coalesced
//! fetch through [`produce`] fills it. An unsafe method on a cached path goes through, and a
//! success invalidates the URL.
//!
//! The key is the URL (with the rule's query options), the method, and every dimension the
//! response can differ by: each A/B variant, and the country when geo is on. `Vary` is the
//! cache's own business ([`crate::cache::HttpCache`]).
//!
//! What one client's request can never do to another's answer:
//! - a request with a body, or with a credential other than `Authorization` (a JWT cookie), goes
//!   past the cache: nothing is stored from it or served to it;
//! - a fill never carries the client's conditionals or `Range` (the origin answers the full
//!   representation; a 304 or 206 is never stored); a hit answers them from the stored response
//!   ([`crate::cache::ranges`]: 304, 206 or 416 for this client alone);
//! - coalescing is safe by construction: concurrent misses wait for one fetch, but a waiter is
//!   served only what the cache then holds for its own request (the leader's answer if it was
//!   stored and would be selected for the waiter: same key, same `Vary` values); otherwise the
//!   waiter fetches for itself. A `private`, `no-store` or `Set-Cookie` answer never reaches
//!   another client.
//! - a fill holds at most the cache's largest storable entry in memory: a larger response
//!   streams through to its client without being stored (nor shared with waiters).

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use parking_lot::Mutex;

use super::produce::{fetch_for_cache, produce, Fill};
use crate::cache::{ranges, url_key, Asks, Entry, Lookup};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::Request;
use crate::server::body::Body;
use crate::server::ctx::{BodyState, CacheStatus, CompressChoice, RequestCtx};
use crate::server::plan::{CacheRule, Plan};
use crate::server::respond::from_core;
use crate::server::state::{Active, ServerState};

/// The cache rule for the request's path, if any.
pub fn rule_for(plan: &Plan, request: &Request) -> Option<usize> {
    let path = request.path();
    plan.cache
        .iter()
        .position(|r| r.paths.matches(path) && r.when.hold(request))
}

/// The request's key under `rule`, built in one buffer: URL, method, then the dimensions.
pub fn key(plan: &Plan, rule: &CacheRule, request: &Request) -> String {
    let mut key = url_key(request, request.edge.scheme(), &rule.key);
    crate::cache::key::push_method(&mut key, request);
    for (experiment, variant) in &request.edge.variants {
        crate::cache::key::push_dimension(&mut key, "variant:", experiment, variant);
    }
    if !plan.geo.is_empty() || plan.server.dev_mode {
        let country = request.edge.geo.as_ref().and_then(|g| g.country.as_deref());
        crate::cache::key::push_dimension(&mut key, "", "country", country.unwrap_or_default());
    }
    key
}

/// What [`look`] found: a fresh hit answered, or what it leaves to [`serve`].
pub enum Look {
    /// A fresh hit, answered.
    Hit(http::Response<Body>),
    /// Anything else.
    Pending(Pending),
}

/// What [`look`] leaves to [`serve`].
pub enum Pending {
    /// An unsafe method on a cached path.
    Unsafe,
    /// The request's key, and what the cache holds for it (anything but a fresh hit).
    Looked(String, Lookup),
}

/// Answers a fresh hit on cache rule `index` at once (no future, no allocation for the fill:
/// most requests on a cached path end here); leaves anything else to [`serve`].
pub fn look(state: &ServerState, active: &Active, index: usize, ctx: &mut RequestCtx) -> Look {
    let rule = &active.plan.cache[index];
    let request = &ctx.request;
    if request.method != Method::GET && request.method != Method::HEAD {
        return Look::Pending(Pending::Unsafe);
    }
    let asks = Asks::of(request);
    let key = key(&active.plan, rule, request);
    let lookup = match ctx.notes.credentialed || (asks.framing && has_body(request)) {
        true => Lookup::Bypass,
        false => rule.cache.lookup_asked(request, &key, state.now(), asks),
    };
    match lookup {
        Lookup::Hit(r) => {
            ctx.notes.cache_status = Some(CacheStatus::Hit);
            Look::Hit(from_core(ranges::answer_asked(request, r, asks)))
        }
        other => Look::Pending(Pending::Looked(key, other)),
    }
}

/// Answers a request on cache rule `index` through the cache, from what [`look`] found. The
/// rule's tag fields are for the cache: they reach the client only when the rule forwards them
/// (a stored copy has none already: the cache keeps the tags beside the entry).
pub async fn serve(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    index: usize,
    ctx: &mut RequestCtx,
    pending: Pending,
) -> Result<http::Response<Body>> {
    let rule = &active.plan.cache[index];
    let compress = ctx.notes.compress;
    let (request, body, prior_xff) = ctx.take_exchange();
    let (key, lookup) = match pending {
        Pending::Looked(key, lookup) => (key, lookup),
        Pending::Unsafe => {
            // An unsafe method on a cached path: a success invalidates the URL.
            let method = request.method.clone();
            let url = url_key(&request, request.edge.scheme(), &rule.key);
            let (resp, outcome) = Box::pin(produce(state, active, request, body, prior_xff)).await?;
            ctx.notes.outcome = Some(outcome);
            rule.cache.invalidate(&method, resp.status(), &url);
            return Ok(untag(rule, resp));
        }
    };
    let exchange = (request, body, prior_xff);
    match lookup {
        Lookup::Hit(r) => {
            ctx.notes.cache_status = Some(CacheStatus::Hit);
            Ok(from_core(ranges::answer(&exchange.0, r)))
        }
        Lookup::Stale(r, _entry) => {
            ctx.notes.cache_status = Some(CacheStatus::Stale);
            let r = ranges::answer(&exchange.0, r);
            refresh_in_background(state, active, (index, compress), key, exchange.0, exchange.2);
            Ok(from_core(r))
        }
        Lookup::Revalidate(entry, cond) => revalidate(state, active, rule, key, exchange, (entry, cond), ctx)
            .await
            .map(|r| untag(rule, r)),
        Lookup::Miss(entry) => {
            ctx.notes.cache_status = Some(CacheStatus::Miss);
            fill(state, active, rule, key, exchange, entry, ctx)
                .await
                .map(|r| untag(rule, r))
        }
        Lookup::Bypass => {
            ctx.notes.cache_status = Some(CacheStatus::Bypass);
            let (request, body, prior_xff) = exchange;
            let (resp, outcome) = Box::pin(produce(state, active, request, body, prior_xff)).await?;
            ctx.notes.outcome = Some(outcome);
            Ok(untag(rule, resp))
        }
    }
}

/// `response` without the rule's tag fields, unless the rule forwards them.
fn untag(rule: &CacheRule, mut response: http::Response<Body>) -> http::Response<Body> {
    if !rule.forward_tags {
        for field in rule.cache.tag_fields() {
            response.headers_mut().remove(field);
        }
    }
    response
}

/// The statuses for which `stale-if-error` serves a stale copy instead (RFC 5861 §4).
fn is_origin_error(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Whether the request carries a body (a GET or HEAD with one is never cached).
fn has_body(request: &Request) -> bool {
    request.headers.contains(&http::header::TRANSFER_ENCODING)
        || request
            .headers
            .get_str(&http::header::CONTENT_LENGTH)
            .is_some_and(|n| n.trim() != "0")
}

/// The fields a fill never sends: the client's conditionals and `Range` ask for an answer to
/// that client alone (a 304 or 206), not for the representation to store.
const CLIENT_ONLY: [http::HeaderName; 6] = [
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::IF_RANGE,
    http::header::RANGE,
];

/// `request` as a fill sends it: without [`CLIENT_ONLY`] fields.
fn fill_request(request: &Request) -> Request {
    let mut r = request.clone();
    let h = r.headers.as_map_mut();
    for name in CLIENT_ONLY {
        h.remove(name);
    }
    r
}

/// Refreshes a stale entry in the background (one refresh per key at a time: the coalescer).
fn refresh_in_background(
    state: &Arc<ServerState>,
    active: &Arc<Active>,
    (index, compress): (usize, Option<CompressChoice>),
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
                let (fetch, limit) = (fill_request(&request), rule.cache.max_body_bytes());
                let empty = BodyState::Read(Bytes::new());
                match fetch_for_cache(&state, &active, fetch, empty, prior_xff, limit, compress).await {
                    Ok(Fill::Whole(resp)) => {
                        store(&state, rule, &request, &key, &resp);
                        Ok(Some(resp))
                    }
                    // Too large to store: dropped (its origin connection closes).
                    Ok(Fill::Streaming(_)) => Ok(None),
                    Err(e) => Err((e.http_status(), e.context.to_string())),
                }
            })
            .await;
    });
}

/// Asks the origin whether a stored entry is still good (the conditional headers given), and
/// serves it again on a 304, the new response otherwise, or the stale one if the origin fails
/// within `stale-if-error`.
async fn revalidate(
    state: &ServerState,
    active: &Active,
    rule: &CacheRule,
    key: String,
    (request, body, prior_xff): (Request, BodyState, Option<String>),
    (entry, cond): (Arc<Entry>, Vec<(http::HeaderName, http::HeaderValue)>),
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>> {
    let compress = ctx.notes.compress;
    let mut conditional = fill_request(&request);
    for (n, v) in cond {
        conditional.headers.as_map_mut().insert(n, v);
    }
    let limit = rule.cache.max_body_bytes();
    match Box::pin(fetch_for_cache(
        state,
        active,
        conditional,
        body,
        prior_xff,
        limit,
        compress,
    ))
    .await
    {
        Ok(Fill::Streaming(r)) => {
            ctx.notes.cache_status = Some(CacheStatus::Miss);
            Ok(r)
        }
        Ok(Fill::Whole(r)) if r.status == http::StatusCode::NOT_MODIFIED => {
            ctx.notes.cache_status = Some(CacheStatus::Revalidated);
            Ok(from_core(rule.cache.revalidated(
                &request,
                &key,
                &entry,
                &r,
                state.now_and_real(),
            )))
        }
        Ok(Fill::Whole(r)) if is_origin_error(r.status) => match rule.cache.stale_on_error(&entry, state.now()) {
            Some(stale) => {
                ctx.notes.cache_status = Some(CacheStatus::Stale);
                Ok(from_core(stale))
            }
            None => {
                ctx.notes.cache_status = Some(CacheStatus::Miss);
                Ok(from_core(r))
            }
        },
        Ok(Fill::Whole(r)) => {
            store(state, rule, &request, &key, &r);
            ctx.notes.cache_status = Some(CacheStatus::Miss);
            Ok(from_core(r))
        }
        Err(e) => rule.cache.stale_on_error(&entry, state.now()).map(from_core).ok_or(e),
    }
}

/// A miss: one fetch per key at a time (concurrent misses wait for it), stored when storable;
/// a failed fetch serves the stale entry within `stale-if-error`. A waiter gets only what the
/// cache holds for its own request once the fetch is done, else fetches for itself (see the
/// module's documentation).
async fn fill(
    state: &ServerState,
    active: &Active,
    rule: &CacheRule,
    key: String,
    (request, body, prior_xff): (Request, BodyState, Option<String>),
    entry: Option<Arc<Entry>>,
    ctx: &mut RequestCtx,
) -> Result<http::Response<Body>> {
    // A response too large to store streams through: it is kept here, not shared (each waiter
    // then fetches for itself, streaming too), so a fill holds at most the cache's entry limit.
    let streaming: Mutex<Option<http::Response<Body>>> = Mutex::new(None);
    let (limit, compress) = (rule.cache.max_body_bytes(), ctx.notes.compress);
    let fetch = |body, prior_xff| {
        let (request, key, streaming) = (&request, &key, &streaming);
        async move {
            match fetch_for_cache(state, active, fill_request(request), body, prior_xff, limit, compress).await {
                Ok(Fill::Whole(r)) => {
                    store(state, rule, request, key, &r);
                    Ok(Some(r))
                }
                Ok(Fill::Streaming(r)) => {
                    *streaming.lock() = Some(r);
                    Ok(None)
                }
                Err(e) => Err((e.http_status(), e.context.to_string())),
            }
        }
    };
    let xff = prior_xff.clone();
    let (fetched, leader) = Box::pin(rule.coalescer.run(&key, || fetch(body, prior_xff))).await;
    let fetched = match fetched {
        Ok(_) if !leader => match rule.cache.lookup(&request, &key, state.now()) {
            Lookup::Hit(r) => {
                ctx.notes.cache_status = Some(CacheStatus::Hit);
                Ok(Some(r))
            }
            // The leader's answer was not stored, or is not this request's: fetch for itself.
            _ => Box::pin(fetch(BodyState::Read(Bytes::new()), xff)).await,
        },
        other => other,
    };
    match fetched {
        // The origin answered with a server error: a stale copy is better, within
        // stale-if-error (RFC 5861 §4).
        Ok(Some(r)) if is_origin_error(r.status) => {
            let stale = entry.and_then(|e| rule.cache.stale_on_error(&e, state.now()));
            Ok(from_core(stale.unwrap_or(r)))
        }
        Ok(Some(r)) => Ok(from_core(r)),
        Ok(None) => streaming
            .into_inner()
            .ok_or_else(|| Error::new(ErrorKind::Internal, ErrorSource::Internal, "a streamed fill was lost")),
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

/// Stores an origin's answer (read on the pipeline's clock, its `Date` on the real one).
fn store(state: &ServerState, rule: &CacheRule, request: &Request, key: &str, resp: &crate::http::Response) {
    let (now, real) = state.now_and_real();
    rule.cache.store_received(request, key, resp, now, real);
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
