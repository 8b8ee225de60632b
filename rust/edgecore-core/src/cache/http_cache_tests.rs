//! Tests of the HTTP cache (`http_cache.rs`).

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

#[test]
fn stale_if_error_serves_within_its_window_and_never_past_must_revalidate() {
    // Found missing by breaking `stale_on_error` on purpose: only an end-to-end test noticed.
    let c = HttpCache::new(1 << 20, None, 8);
    let r = req(&[]);
    let k = cache_key(&r, "http", &KeyOptions::default(), &[]);
    assert!(
        c.store(
            &r,
            &k,
            &resp(&[("cache-control", "max-age=10, stale-if-error=60")]),
            0.0
        )
        .storable
    );
    let Lookup::Miss(Some(entry)) = c.lookup(&r, &k, 30.0) else {
        panic!("a stale entry without validators is a miss that keeps the entry")
    };
    let stale = c
        .stale_on_error(&entry, 30.0)
        .expect("20 s stale, within stale-if-error=60");
    assert_eq!(stale.headers.get("x-cache").unwrap(), "STALE");
    assert!(c.stale_on_error(&entry, 71.0).is_none(), "61 s stale: past the window");
    let strict = resp(&[("cache-control", "max-age=10, stale-if-error=60, must-revalidate")]);
    assert!(c.store(&r, &k, &strict, 0.0).storable);
    let Lookup::Miss(Some(entry)) = c.lookup(&r, &k, 30.0) else {
        panic!("a stale entry without validators is a miss that keeps the entry")
    };
    assert!(
        c.stale_on_error(&entry, 30.0).is_none(),
        "must-revalidate forbids serving stale"
    );
}

#[test]
fn a_stored_response_holds_none_of_the_buffers_it_was_read_from() {
    // What hyper reads from an origin: one buffer, the values and the body slices of it.
    let read = bytes::Bytes::from(vec![b'x'; 8192]);
    let mut r = Response::new(200, read.slice(100..200)).unwrap();
    r.headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_maybe_shared(bytes::Bytes::from_static(b"max-age=60")).unwrap(),
    );
    r.headers
        .insert("x-v", HeaderValue::from_maybe_shared(read.slice(0..5)).unwrap());
    let c = HttpCache::new(1 << 20, None, 8);
    let q = req(&[]);
    let k = cache_key(&q, "http", &KeyOptions::default(), &[]);
    assert!(c.store(&q, &k, &r, 0.0).storable);
    drop(r);
    assert!(read.is_unique(), "the entry keeps the read buffer alive");
    let Lookup::Hit(hit) = c.lookup(&q, &k, 1.0) else {
        panic!("a hit")
    };
    assert_eq!((hit.body.len(), hit.headers["x-v"].as_bytes()), (100, &b"xxxxx"[..]));
    assert_eq!(hit.headers["age"], "1");
}
