//! The shared HTTP cache: the policy of [`super::policy`] on the store of [`super::store`].
//!
//! - Variants: a response with `Vary` is stored under its primary key as a *vary index* (the
//!   listed field names and the variants seen), and under a secondary key per combination of the
//!   request's values for those fields. At most `max_variants` per URL; the oldest goes first.
//! - Lookups answer HIT (fresh), STALE (served while a revalidation runs, within
//!   `stale-while-revalidate`), REVALIDATE (an entry with validators that must be checked with the
//!   origin first: the caller sends the conditional headers given), or MISS.
//! - Served responses carry `Age` and `X-Cache`.
//! - `revalidated` applies a 304: the stored headers are updated from it and freshness restarts.
//! - `stale_on_error` gives the stale copy when the origin fails within `stale-if-error`.
//! - `invalidate` drops the URL (all variants) after a successful unsafe method.
//! - Tags: the values of the tag fields (`Cache-Tag`, comma-separated, and `Surrogate-Key`,
//!   space-separated, by default) are kept with each entry; `purge("tag:NAME")` removes every
//!   entry carrying that tag.
//! - Targeted cache control (RFC 9213): `Edgecore-Cache-Control` (its name configurable), then
//!   `CDN-Cache-Control`, replace `Cache-Control` for this cache.

use std::collections::VecDeque;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, AGE};
use parking_lot::Mutex;

use super::asks::Asks;
use super::key::{variant_key, SEP};
use super::policy::{etag_or_last_modified, invalidates, storable_targeted, CacheControl, StoreDecision, TARGETED};
use super::store::{ShardedLru, Weighted};
use crate::http::{Request, Response};

/// The status header edgecore adds to responses that passed through the cache.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// A stored response and what the policy decided about it.
#[derive(Debug)]
pub struct Entry {
    /// The response as received (without Age/X-Cache).
    pub response: Response,
    /// When it was stored (seconds).
    pub stored_at: f64,
    /// The policy decision at storage time.
    pub decision: StoreDecision,
    /// Its tags (from the cache's tag fields), for `purge("tag:NAME")`.
    pub tags: Vec<String>,
}

impl Entry {
    /// Current age in seconds (RFC 9111 §4.2.3, simplified: initial age plus resident time).
    pub fn age(&self, now: f64) -> f64 {
        self.decision.initial_age + (now - self.stored_at).max(0.0)
    }

    /// Seconds past its freshness lifetime (negative while fresh).
    pub fn staleness(&self, now: f64) -> f64 {
        self.age(now) - self.decision.ttl
    }

    fn served(&self, now: f64, status: &'static str) -> Response {
        // A clone of the stored map copies its table as it is (no name is hashed again); it was
        // stored with room for those fields ([`HttpCache::store`]).
        let mut r = Response {
            status: self.response.status,
            headers: self.response.headers.clone(),
            body: self.response.body.clone(),
        };
        let (age, status) = (
            HeaderValue::from(self.age(now).floor() as u64),
            HeaderValue::from_static(status),
        );
        // Both are in place in a stored map: set them in one pass over its few fields, by name
        // comparison (no hashing, as an insert would).
        let (mut age, mut status) = (Some(age), Some(status));
        for (name, value) in r.headers.iter_mut() {
            let slot = match name {
                n if n == AGE => &mut age,
                n if n == X_CACHE => &mut status,
                _ => continue,
            };
            if let Some(v) = slot.take() {
                *value = v;
            }
        }
        if let Some(age) = age {
            r.headers.insert(AGE, age);
        }
        if let Some(status) = status {
            r.headers.insert(X_CACHE, status);
        }
        r
    }
}

/// `response` in storage of its own: its field values and body copied into one buffer. What
/// the origin sent was read into connection buffers that the parsed values and a one-chunk body
/// are slices of; a stored slice would keep its whole buffer alive (kilobytes behind a small
/// entry) for as long as the entry lives, past what the cache's byte bound counts.
fn compact(response: &Response) -> Response {
    let values: usize = response.headers.values().map(HeaderValue::len).sum();
    let mut buf = bytes::BytesMut::with_capacity(values + response.body.len());
    for value in response.headers.values() {
        buf.extend_from_slice(value.as_bytes());
    }
    buf.extend_from_slice(&response.body);
    let buf = buf.freeze();
    let mut headers = http::HeaderMap::with_capacity(response.headers.len() + 8);
    let mut at = 0;
    for (name, value) in &response.headers {
        let copy = buf.slice(at..at + value.len());
        at += value.len();
        // The bytes are those of a valid value: this cannot fail, and keeps the original if it did.
        let mut copy = HeaderValue::from_maybe_shared(copy).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    Response {
        status: response.status,
        headers,
        body: buf.slice(at..),
    }
}

struct VaryIndex {
    names: Vec<String>,
    variants: Mutex<VecDeque<String>>,
}

#[derive(Clone)]
enum Stored {
    Response(Arc<Entry>),
    Vary(Arc<VaryIndex>),
}

impl Weighted for Stored {
    fn weight(&self) -> usize {
        match self {
            Stored::Response(e) => e.response.weight() + e.tags.iter().map(|t| t.len() + 24).sum::<usize>(),
            Stored::Vary(v) => v.names.iter().map(|n| n.len() + 24).sum::<usize>() + 64,
        }
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Fresh: serve this response (Age and `X-Cache: HIT` set).
    Hit(Response),
    /// Stale within stale-while-revalidate: serve this (`X-Cache: STALE`) and revalidate in the background.
    Stale(Response, Arc<Entry>),
    /// An entry exists but must be validated first: send the request with these extra headers.
    Revalidate(Arc<Entry>, Vec<(HeaderName, HeaderValue)>),
    /// Nothing usable (an entry may remain for stale-if-error).
    Miss(Option<Arc<Entry>>),
    /// The request may not be answered from the cache (method, no-store, Authorization).
    Bypass,
}

impl Lookup {
    /// The `X-Cache` status name.
    pub fn status(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "HIT",
            Lookup::Stale(..) => "STALE",
            Lookup::Revalidate(..) => "REVALIDATE",
            Lookup::Miss(_) => "MISS",
            Lookup::Bypass => "BYPASS",
        }
    }
}

/// The shared HTTP cache.
pub struct HttpCache {
    store: ShardedLru<Stored>,
    default_ttl: Option<f64>,
    max_variants: usize,
    tag_fields: Vec<HeaderName>,
    /// Stored responses keep their tag fields (off: removed when stored, kept as `Entry::tags`).
    keep_tag_fields: bool,
    targeted: [HeaderName; 2],
    /// `stale-if-error` for responses that give none (seconds; 0: none).
    stale_if_error: f64,
}

/// The default tag fields: Cloudflare's and Fastly's.
pub const TAG_FIELDS: [&str; 2] = ["cache-tag", "surrogate-key"];

impl HttpCache {
    /// A cache of `max_bytes`, with `default_ttl` for responses without explicit freshness.
    pub fn new(max_bytes: usize, default_ttl: Option<f64>, max_variants: usize) -> Self {
        HttpCache {
            store: ShardedLru::new(max_bytes, None),
            default_ttl,
            max_variants: max_variants.max(1),
            tag_fields: TAG_FIELDS.map(HeaderName::from_static).to_vec(),
            keep_tag_fields: false,
            targeted: TARGETED.map(HeaderName::from_static),
            stale_if_error: 0.0,
        }
    }

    /// Serves a stale copy for `seconds` past its freshness when the origin fails, for responses
    /// that say nothing themselves (a response's own `stale-if-error` wins; `must-revalidate`
    /// and `s-maxage` still forbid it).
    #[must_use]
    pub fn with_stale_if_error(mut self, seconds: f64) -> Self {
        self.stale_if_error = seconds.max(0.0);
        self
    }

    /// Reads tags from `fields` instead of `Cache-Tag` and `Surrogate-Key`.
    #[must_use]
    pub fn with_tag_fields(mut self, fields: Vec<HeaderName>) -> Self {
        self.tag_fields = fields;
        self
    }

    /// Keeps the tag fields in stored responses, so hits send them on (off by default: the tags
    /// are the edge's, kept beside the entry, and a hit carries no tag field).
    #[must_use]
    pub fn with_tag_fields_kept(mut self, keep: bool) -> Self {
        self.keep_tag_fields = keep;
        self
    }

    /// Obeys `name` as its own targeted cache-control field instead of `Edgecore-Cache-Control`
    /// (`CDN-Cache-Control` stays second).
    #[must_use]
    pub fn with_targeted_field(mut self, name: HeaderName) -> Self {
        self.targeted[0] = name;
        self
    }

    /// The fields tags are read from.
    pub fn tag_fields(&self) -> &[HeaderName] {
        &self.tag_fields
    }

    /// The tags of `response`: every value of the tag fields, split on commas and whitespace.
    fn tags_of(&self, response: &Response) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for field in &self.tag_fields {
            for value in response.headers.get_all(field) {
                let Ok(text) = value.to_str() else { continue };
                for tag in text.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                    if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
                        tags.push(tag.to_owned());
                    }
                }
            }
        }
        tags
    }

    /// The store (for size and purge).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The largest response body that can be stored (less, once headers and key are counted):
    /// a fill never needs to hold more than this to know whether it can store the response.
    pub fn max_body_bytes(&self) -> usize {
        self.store.max_entry_bytes()
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.store.size_bytes()
    }

    /// Removes every entry under `prefix`: a path prefix when it starts with `/` (`/products/`
    /// on any scheme and host), every entry tagged NAME for `tag:NAME`, else a prefix of the full
    /// key (`https://shop.example/products/`); `""` removes everything. Returns how many went.
    pub fn purge(&self, prefix: &str) -> usize {
        if let Some(tag) = prefix.strip_prefix("tag:") {
            return self
                .store
                .purge_entries_where(|_, v| matches!(v, Stored::Response(e) if e.tags.iter().any(|t| t == tag)));
        }
        if prefix.starts_with('/') {
            self.store.purge_where(|key| key_path(key).starts_with(prefix))
        } else {
            self.store.purge(prefix)
        }
    }

    fn entry_for(&self, request: &Request, key: &str) -> Option<Arc<Entry>> {
        match self.store.get_with_expiry(key)?.0 {
            Stored::Response(e) => Some(e),
            Stored::Vary(idx) => match self.store.get_with_expiry(&variant_key(key, request, &idx.names))?.0 {
                Stored::Response(e) => Some(e),
                Stored::Vary(_) => None,
            },
        }
    }

    /// Looks `request` up under `key` at `now`.
    pub fn lookup(&self, request: &Request, key: &str, now: f64) -> Lookup {
        self.lookup_asked(request, key, now, Asks::of(request))
    }

    /// [`Self::lookup`], with what the request asks already found ([`Asks::of`]).
    pub fn lookup_asked(&self, request: &Request, key: &str, now: f64, asks: Asks) -> Lookup {
        if request.method != http::Method::GET && request.method != http::Method::HEAD {
            return Lookup::Bypass;
        }
        let req_cc = match asks.directives {
            true => CacheControl::of_request(&request.headers),
            false => CacheControl::default(),
        };
        if req_cc.no_store {
            return Lookup::Bypass;
        }
        let Some(entry) = self.entry_for(request, key) else {
            return Lookup::Miss(None);
        };
        if asks.authorization && request.headers.contains(&http::header::AUTHORIZATION) && !entry.decision.auth_ok {
            return Lookup::Bypass;
        }
        let staleness = entry.staleness(now);
        let must_check = entry.decision.no_cache || req_cc.no_cache;
        if staleness < 0.0 && !must_check {
            return Lookup::Hit(entry.served(now, "HIT"));
        }
        if !must_check && !entry.decision.must_revalidate && staleness < entry.decision.stale_while_revalidate {
            let r = entry.served(now, "STALE");
            return Lookup::Stale(r, entry);
        }
        match etag_or_last_modified(&entry.response.headers) {
            Some((etag, lm)) => {
                let mut h = Vec::new();
                if let Some(e) = etag {
                    h.push((http::header::IF_NONE_MATCH, e));
                }
                if let Some(l) = lm {
                    h.push((http::header::IF_MODIFIED_SINCE, l));
                }
                Lookup::Revalidate(entry, h)
            }
            None => Lookup::Miss(Some(entry)),
        }
    }

    /// Stores `response` to `request` under `key` if the policy allows; returns the decision.
    pub fn store(&self, request: &Request, key: &str, response: &Response, now: f64) -> StoreDecision {
        self.store_tagged(request, key, response, (now, now), &[])
    }

    /// [`Self::store`] on a moved clock (a test's): `now` is the cache's time, `received` the
    /// real time the origin's `Date` and `Expires` are written in, so that a fresh answer is not
    /// taken for one as old as the clock was moved.
    pub fn store_received(
        &self,
        request: &Request,
        key: &str,
        response: &Response,
        now: f64,
        received: f64,
    ) -> StoreDecision {
        self.store_tagged(request, key, response, (now, received), &[])
    }

    /// [`Self::store`], with `inherited` as the tags when `response` carries none (a 304 merged
    /// into an entry whose tag fields were removed when it was stored keeps the entry's tags).
    fn store_tagged(
        &self,
        request: &Request,
        key: &str,
        response: &Response,
        (now, received): (f64, f64),
        inherited: &[String],
    ) -> StoreDecision {
        let targeted = self.targeted.each_ref();
        let mut decision = storable_targeted(request, response, received, self.default_ttl, &targeted);
        if !decision.storable {
            return decision;
        }
        if decision.stale_if_error == 0.0 && !decision.must_revalidate {
            decision.stale_if_error = self.stale_if_error;
        }
        let has_validators = etag_or_last_modified(&response.headers).is_some();
        let keep = decision.ttl
            + decision.stale_while_revalidate.max(decision.stale_if_error)
            + if has_validators { decision.ttl.max(60.0) } else { 0.0 };
        let expires = now - decision.initial_age + keep;
        let mut stored = compact(response);
        stored.headers.remove(AGE);
        stored.headers.remove(X_CACHE);
        let mut tags = self.tags_of(response);
        if tags.is_empty() {
            tags = inherited.to_vec();
        }
        if !self.keep_tag_fields {
            for field in &self.tag_fields {
                stored.headers.remove(field);
            }
        }
        // Each served copy is a clone of this map (its table as it is, no name hashed again):
        // `Age` and `X-Cache` are in place already, so setting them never grows the copy, and
        // the index table has room for what the edge adds on the way out (RateLimit-*, Via, a
        // template or two). (The clone's field list has no spare room, so the first field added
        // grows it once; building the copy field by field into a larger map, hashing each name
        // again, cost more: 26.5k against 25.8k instructions per pipeline request.)
        stored.headers.insert(AGE, HeaderValue::from_static("0"));
        stored.headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        stored.headers.reserve(8);
        let entry = Stored::Response(Arc::new(Entry {
            response: stored,
            stored_at: now,
            decision: decision.clone(),
            tags,
        }));
        if decision.vary.is_empty() {
            self.store.put(key, entry, expires);
            return decision;
        }
        let idx = match self.store.get_with_expiry(key) {
            Some((Stored::Vary(idx), _)) if idx.names == decision.vary => idx,
            _ => {
                // A new or changed Vary: earlier variants are unreachable now; drop them.
                self.store.purge(&format!("{key}{SEP}"));
                Arc::new(VaryIndex {
                    names: decision.vary.clone(),
                    variants: Mutex::new(VecDeque::new()),
                })
            }
        };
        let vkey = variant_key(key, request, &idx.names);
        let evict = {
            let mut v = idx.variants.lock();
            if !v.contains(&vkey) {
                v.push_back(vkey.clone());
            }
            if v.len() > self.max_variants {
                v.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = evict {
            self.store.delete(&old);
        }
        self.store.put(key, Stored::Vary(idx), f64::INFINITY);
        self.store.put(&vkey, entry, expires);
        decision
    }

    /// Applies a 304 from the origin to `entry`: updates its headers, restarts freshness,
    /// re-stores it, and returns the response to serve (`X-Cache: REVALIDATED`). `now` and
    /// `received` as for [`Self::store_received`].
    pub fn revalidated(
        &self,
        request: &Request,
        key: &str,
        entry: &Entry,
        not_modified: &Response,
        (now, received): (f64, f64),
    ) -> Response {
        let mut merged = entry.response.clone();
        for (name, value) in not_modified.headers.iter() {
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "content-encoding"
            ) {
                merged.headers.insert(name.clone(), value.clone());
            }
        }
        self.store_tagged(request, key, &merged, (now, received), &entry.tags);
        merged.headers.insert(AGE, HeaderValue::from_static("0"));
        merged.headers.insert(X_CACHE, HeaderValue::from_static("REVALIDATED"));
        merged
    }

    /// The stale copy to serve when the origin failed, if `stale-if-error` allows it.
    pub fn stale_on_error(&self, entry: &Entry, now: f64) -> Option<Response> {
        let s = entry.staleness(now);
        (!entry.decision.must_revalidate && s < entry.decision.stale_if_error).then(|| entry.served(now, "STALE"))
    }

    /// After an unsafe method's response, drops the cached URL: every method, variant and
    /// dimension stored under `url_key` (see [`super::key::url_key`]). Returns entries removed.
    pub fn invalidate(&self, method: &http::Method, status: http::StatusCode, url_key: &str) -> usize {
        if !invalidates(method, status) {
            return 0;
        }
        self.store.purge(&format!("{url_key}{SEP}"))
    }
}

/// The path (and what follows it) of a key `scheme://host/path?query…`.
fn key_path(key: &str) -> &str {
    key.split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(key)
}

#[cfg(test)]
#[path = "http_cache_tests.rs"]
mod tests;
