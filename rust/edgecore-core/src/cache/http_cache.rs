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
        // Sized for what the edge adds on the way out (Age, X-Cache, RateLimit-*, Via, a
        // template or two), so those never make the map grow and rehash.
        let stored = &self.response.headers;
        let mut headers = http::HeaderMap::with_capacity(stored.len() + 8);
        for (name, value) in stored {
            // Every value of a repeated name (several Set-Cookie), in order.
            headers.append(name.clone(), value.clone());
        }
        let mut r = Response {
            status: self.response.status,
            headers,
            body: self.response.body.clone(),
        };
        r.headers.insert(AGE, HeaderValue::from(self.age(now).floor() as u64));
        r.headers.insert(X_CACHE, HeaderValue::from_static(status));
        r
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
        if request.method != http::Method::GET && request.method != http::Method::HEAD {
            return Lookup::Bypass;
        }
        let req_cc = CacheControl::of_request(&request.headers);
        if req_cc.no_store {
            return Lookup::Bypass;
        }
        let Some(entry) = self.entry_for(request, key) else {
            return Lookup::Miss(None);
        };
        if request.headers.contains("authorization") && !entry.decision.auth_ok {
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
        let mut stored = response.clone();
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
mod tests {
    use super::*;
    use crate::cache::key::{cache_key, KeyOptions};

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut r = Request::new(http::Method::GET, "/a".parse().unwrap());
        r.headers.as_map_mut().insert("host", "h".parse().unwrap());
        for (n, v) in headers {
            r.headers
                .as_map_mut()
                .append(HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        r
    }

    fn resp(headers: &[(&str, &str)]) -> Response {
        let mut r = Response::new(200, "body").unwrap();
        for (n, v) in headers {
            r.headers
                .append(HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        r
    }

    #[test]
    fn tags_from_either_field_purge_exactly_their_entries() {
        let c = HttpCache::new(1 << 20, None, 8);
        let store = |path: &str, fields: &[(&str, &str)]| {
            let mut r = req(&[]);
            r.uri = path.parse().unwrap();
            let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
            let mut h = vec![("cache-control", "max-age=60")];
            h.extend_from_slice(fields);
            assert!(c.store(&r, &k, &resp(&h), 0.0).storable);
        };
        store("/a", &[("cache-tag", "product-1, catalog")]);
        store("/b", &[("surrogate-key", "product-2 catalog")]);
        store("/c", &[("cache-tag", "other")]);
        store("/d", &[]);
        assert_eq!(c.purge("tag:product-1"), 1);
        assert_eq!(c.purge("tag:product"), 0, "a tag matches whole, not as a prefix");
        assert_eq!(c.purge("tag:catalog"), 1);
        assert_eq!(c.len(), 2);
        let only_x = HttpCache::new(1 << 20, None, 8).with_tag_fields(vec![HeaderName::from_static("x-tags")]);
        let r = req(&[]);
        let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
        only_x.store(
            &r,
            &k,
            &resp(&[("cache-control", "max-age=60"), ("cache-tag", "t"), ("x-tags", "u")]),
            0.0,
        );
        assert_eq!(only_x.purge("tag:t"), 0);
        assert_eq!(only_x.purge("tag:u"), 1);
    }

    #[test]
    fn a_revalidated_entry_keeps_its_tags() {
        let c = HttpCache::new(1 << 20, None, 8);
        let r = req(&[]);
        let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
        let stored = resp(&[("cache-control", "max-age=1"), ("etag", "\"v1\""), ("cache-tag", "t")]);
        assert!(c.store(&r, &k, &stored, 0.0).storable);
        let Lookup::Revalidate(entry, _) = c.lookup(&r, &k, 100.0) else {
            panic!("not revalidated")
        };
        let mut not_modified = resp(&[("cache-control", "max-age=60")]);
        not_modified.status = http::StatusCode::NOT_MODIFIED;
        c.revalidated(&r, &k, &entry, &not_modified, (100.0, 100.0));
        assert_eq!(c.purge("tag:t"), 1, "the tags were lost on revalidation");
    }

    #[test]
    fn a_moved_clock_reads_the_origins_date_on_the_real_one() {
        // The cache's clock is an hour ahead of the origin's (a test's virtual time): the
        // answer, dated now on the real clock, is fresh for its max-age from the cache's now.
        let c = HttpCache::new(1 << 20, None, 8);
        let r = req(&[]);
        let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
        let dated = resp(&[
            ("cache-control", "max-age=60"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let real = crate::cache::policy::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let d = c.store_received(&r, &k, &dated, real + 3600.0, real);
        assert!(d.storable && d.initial_age == 0.0, "{d:?}");
        assert!(matches!(c.lookup(&r, &k, real + 3659.0), Lookup::Hit(_)));
        assert!(!matches!(c.lookup(&r, &k, real + 3661.0), Lookup::Hit(_)));
        // Read on one clock, the same answer is an hour old: stale on arrival.
        let stale = c.store(&r, &k, &dated, real + 3600.0);
        assert!(stale.initial_age >= 3600.0);
    }

    #[test]
    fn the_own_targeted_field_can_be_renamed() {
        let c = HttpCache::new(1 << 20, None, 8).with_targeted_field(HeaderName::from_static("acme-cache-control"));
        let r = req(&[]);
        let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
        let d = c.store(
            &r,
            &k,
            &resp(&[("cache-control", "no-store"), ("acme-cache-control", "max-age=30")]),
            0.0,
        );
        assert!(d.storable && d.ttl == 30.0, "{d:?}");
        let ignored = c.store(
            &r,
            &k,
            &resp(&[("edgecore-cache-control", "max-age=30"), ("cache-control", "no-store")]),
            0.0,
        );
        assert!(!ignored.storable, "the default name is no longer obeyed");
    }

    #[test]
    fn hit_then_stale_then_revalidate() {
        let c = HttpCache::new(1 << 20, None, 8);
        let r = req(&[]);
        let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
        assert!(
            c.store(
                &r,
                &k,
                &resp(&[
                    ("cache-control", "max-age=10, stale-while-revalidate=5"),
                    ("etag", "\"v1\"")
                ]),
                100.0
            )
            .storable
        );
        match c.lookup(&r, &k, 104.0) {
            Lookup::Hit(resp) => assert_eq!(
                (&resp.headers["age"], &resp.headers["x-cache"]),
                (&"4".parse::<HeaderValue>().unwrap(), &HeaderValue::from_static("HIT"))
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.lookup(&r, &k, 112.0).status(), "STALE");
        match c.lookup(&r, &k, 120.0) {
            Lookup::Revalidate(e, h) => {
                assert_eq!(h[0].1, "\"v1\"");
                let fresh = c.revalidated(&r, &k, &e, &resp(&[("cache-control", "max-age=30")]), (120.0, 120.0));
                assert_eq!(fresh.headers["x-cache"], "REVALIDATED");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.lookup(&r, &k, 140.0).status(), "HIT");
    }

    #[test]
    fn vary_keeps_variants_apart_and_capped() {
        let c = HttpCache::new(1 << 20, None, 2);
        let base = req(&[]);
        let k = cache_key(&base, "http", &KeyOptions::default(), &[]);
        for lang in ["en", "de", "fr"] {
            let r = req(&[("accept-language", lang)]);
            let mut body = resp(&[("cache-control", "max-age=60"), ("vary", "Accept-Language")]);
            body.body = bytes::Bytes::from(lang.to_owned());
            assert!(c.store(&r, &k, &body, 0.0).storable);
        }
        let get = |lang: &str| match c.lookup(&req(&[("accept-language", lang)]), &k, 1.0) {
            Lookup::Hit(r) => Some(r.body),
            _ => None,
        };
        assert_eq!(get("en"), None, "oldest variant evicted by the cap of 2");
        assert_eq!(get("de").as_deref(), Some(&b"de"[..]));
        assert_eq!(get("fr").as_deref(), Some(&b"fr"[..]));
    }
}
