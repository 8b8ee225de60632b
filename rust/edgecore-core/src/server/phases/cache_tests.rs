//! Tests of the cache phase (`cache.rs`): which rule, which key, what a lookup answers in place,
//! and what goes to the origin, through the pipeline with a scripted origin on loopback.

use std::sync::atomic::Ordering;

use http_body_util::BodyExt;

use super::*;
use crate::server::phases::testing::{block_on, ctx_with, plan, state, with_country, ScriptedOrigin};
use crate::server::pipeline::run_phases;

const OK: &str = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nok";

/// A response the origin marks fresh for one second, with `extra` fields.
fn brief(extra: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncache-control: max-age=1{extra}\r\ncontent-length: 2\r\n\r\nok")
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cached(origin: &str, rule: serde_json::Value) -> Arc<ServerState> {
    let mut rule = rule;
    rule["paths"] = serde_json::json!(["/*"]);
    rule["ttl"] = serde_json::json!(60.0);
    state(plan(serde_json::json!({"origin": origin, "cache": [rule]})), None)
}

fn advance(s: &ServerState, seconds: u64) {
    s.clock_offset_ns.fetch_add(seconds * 1_000_000_000, Ordering::Relaxed);
}

/// Status, body, and the `X-Cache` field of `GET path` through the pipeline.
async fn fetch(s: &Arc<ServerState>, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let active = s.active.load_full();
    let mut c = ctx_with(path, headers);
    let r = run_phases(s, &active, &mut c).await.unwrap();
    let status = r.status().as_u16();
    // What the client sees: the stored copy's own field, else the one the service adds.
    let x_cache = match (r.headers().get("x-cache"), c.notes.cache_status) {
        (Some(v), _) => v.to_str().unwrap().to_owned(),
        (None, Some(st)) => st.as_header().to_str().unwrap().to_owned(),
        (None, None) => String::new(),
    };
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), x_cache)
}

#[test]
fn the_rule_is_the_first_whose_paths_match_and_whose_conditions_hold() {
    let p = plan(serde_json::json!({"cache": [
        {"paths": ["/a/*"], "ttl": 60.0},
        {"paths": ["/b/*"], "ttl": 60.0, "when": {"cookie": {"consent": null}}},
    ]}));
    let rule = |path: &str, headers: &[(&str, &str)]| rule_for(&p, &ctx_with(path, headers).request);
    assert_eq!(rule("/a/x", &[]), Some(0));
    assert_eq!(rule("/b/x", &[]), None, "its condition does not hold");
    assert_eq!(rule("/b/x", &[("cookie", "consent=1")]), Some(1));
    assert_eq!(rule("/c", &[("cookie", "consent=1")]), None);
}

#[test]
fn the_key_holds_the_url_the_method_and_the_country_only_where_responses_can_differ_by_it() {
    let key_of = |spec: serde_json::Value, country: &str| {
        let p = plan(spec);
        let c = with_country(ctx_with("/a?x=1", &[]), country);
        key(&p, &p.cache[0], &c.request)
    };
    let plain = serde_json::json!({"cache": [{"paths": ["/*"], "ttl": 60.0}]});
    assert_eq!(key_of(plain.clone(), "DE"), "http://shop.example/a?x=1\u{1f}GET");
    assert_eq!(
        key_of(plain, "DE"),
        key_of(serde_json::json!({"cache": [{"paths": ["/*"]}]}), "FR")
    );
    // With geo (or dev mode's country override) the country is a dimension of the key.
    let dev = serde_json::json!({"server": {"dev_mode": true}, "cache": [{"paths": ["/*"], "ttl": 60.0}]});
    let de = key_of(dev.clone(), "DE");
    assert!(de.ends_with("\u{1f}country=DE"), "{de}");
    assert_ne!(de, key_of(dev, "FR"));
}

#[test]
fn only_a_fresh_hit_of_a_bodiless_uncredentialed_get_is_answered_in_place() {
    block_on(async {
        let origin = ScriptedOrigin::start(&[OK]).await;
        let s = cached(&origin.url(), serde_json::json!({}));
        assert_eq!(fetch(&s, "/p", &[]).await, (200, "ok".into(), "MISS".into()));
        assert_eq!(fetch(&s, "/p", &[]).await, (200, "ok".into(), "HIT".into()));
        let active = s.active.load_full();
        let look_at = |method: http::Method, headers: &[(&str, &str)], credentialed: bool| {
            let mut c = ctx_with("/p", headers);
            c.request.method = method;
            c.notes.credentialed = credentialed;
            match look(&s, &active, 0, &mut c) {
                Look::Hit(r) => format!("hit {}", r.status()),
                Look::Pending(Pending::Unsafe) => "unsafe".into(),
                Look::Pending(Pending::Looked(_, lookup)) => lookup.status().to_owned(),
            }
        };
        assert_eq!(look_at(http::Method::GET, &[], false), "hit 200 OK");
        assert_eq!(
            look_at(http::Method::HEAD, &[], false),
            "MISS",
            "a HEAD has a key of its own"
        );
        assert_eq!(
            look_at(http::Method::GET, &[("content-length", "0")], false),
            "hit 200 OK"
        );
        assert_eq!(look_at(http::Method::POST, &[], false), "unsafe");
        assert_eq!(look_at(http::Method::GET, &[("content-length", "5")], false), "BYPASS");
        assert_eq!(
            look_at(http::Method::GET, &[("transfer-encoding", "chunked")], false),
            "BYPASS"
        );
        assert_eq!(look_at(http::Method::GET, &[], true), "BYPASS", "a cookie JWT");
        assert_eq!(origin.heads().len(), 1);
    });
}

#[test]
fn tag_fields_reach_the_client_only_when_the_rule_forwards_them() {
    block_on(async {
        let tagged = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncache-tag: t1\r\ncontent-length: 2\r\n\r\nok";
        for forward in [false, true] {
            let origin = ScriptedOrigin::start(&[tagged]).await;
            let s = cached(&origin.url(), serde_json::json!({"forward_tags": forward}));
            let active = s.active.load_full();
            let mut c = ctx_with("/p", &[]);
            let r = run_phases(&s, &active, &mut c).await.unwrap();
            assert_eq!(r.headers().contains_key("cache-tag"), forward, "forward_tags={forward}");
        }
    });
}

#[test]
fn a_stale_copy_stands_in_for_a_5xx_but_not_for_a_4xx() {
    block_on(async {
        for (answer, want) in [
            (
                "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n",
                (200, "ok".into(), "STALE".into()),
            ),
            (
                "HTTP/1.1 404 Gone\r\ncontent-length: 0\r\n\r\n",
                (404, String::new(), "MISS".into()),
            ),
        ] {
            let first = leak(brief(", stale-if-error=60"));
            let origin = ScriptedOrigin::start(&[first, answer]).await;
            let s = cached(&origin.url(), serde_json::json!({}));
            assert_eq!(fetch(&s, "/p", &[]).await.2, "MISS");
            advance(&s, 5);
            assert_eq!(fetch(&s, "/p", &[]).await, want, "{answer}");
        }
    });
}

#[test]
fn stale_while_revalidate_serves_the_copy_and_refreshes_it_in_the_background() {
    block_on(async {
        let first = leak(brief(", stale-while-revalidate=60"));
        let origin = ScriptedOrigin::start(&[first, OK]).await;
        let s = cached(&origin.url(), serde_json::json!({}));
        fetch(&s, "/p", &[]).await;
        advance(&s, 5);
        assert_eq!(fetch(&s, "/p", &[]).await, (200, "ok".into(), "STALE".into()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while origin.heads().len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no background refresh reached the origin"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The refresh stored the origin's fresh answer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fetch(&s, "/p", &[]).await.2 != "HIT" {
            assert!(
                std::time::Instant::now() < deadline,
                "the refreshed copy was not stored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn a_stale_copy_with_a_validator_is_revalidated() {
    block_on(async {
        let first = leak(brief("\r\netag: \"v1\"\r\ncache-control: stale-if-error=60"));
        for (answer, want) in [
            // 304: the stored copy again, fresh.
            (
                "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n",
                (200, "ok", "REVALIDATED"),
            ),
            // A new representation replaces it.
            (
                "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nnw",
                (200, "nw", "MISS"),
            ),
            // The origin failing: the stale copy, within stale-if-error.
            ("HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n", (200, "ok", "STALE")),
        ] {
            let origin = ScriptedOrigin::start(&[first, answer]).await;
            let s = cached(&origin.url(), serde_json::json!({}));
            fetch(&s, "/p", &[]).await;
            advance(&s, 5);
            let (status, body, x_cache) = fetch(&s, "/p", &[]).await;
            assert_eq!((status, body.as_str(), x_cache.as_str()), want, "{answer}");
            let heads = origin.heads();
            assert!(
                heads[1].to_ascii_lowercase().contains("if-none-match: \"v1\""),
                "{heads:?}"
            );
        }
    });
}

#[test]
fn concurrent_misses_make_one_fetch_unless_the_answer_is_not_for_sharing() {
    block_on(async {
        let private = "HTTP/1.1 200 OK\r\ncache-control: private\r\nset-cookie: s=alice\r\ncontent-length: 2\r\n\r\nhi";
        for (first, fetches, waiter) in [
            // Stored: the waiter is served the stored copy (a hit), the origin asked once.
            (OK, 1, CacheStatus::Hit),
            // Not storable (private, with a cookie): the waiter asks the origin for itself.
            (private, 2, CacheStatus::Miss),
        ] {
            let origin = ScriptedOrigin::start(&[first, OK]).await;
            let s = cached(&origin.url(), serde_json::json!({}));
            let active = s.active.load_full();
            let (mut a, mut b) = (ctx_with("/p", &[]), ctx_with("/p", &[]));
            let (ra, rb) = tokio::join!(run_phases(&s, &active, &mut a), run_phases(&s, &active, &mut b));
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (200, 200));
            assert_eq!(origin.heads().len(), fetches, "{first}");
            assert_eq!(a.notes.cache_status, Some(CacheStatus::Miss), "the leader");
            assert_eq!(b.notes.cache_status, Some(waiter), "{first}");
            assert!(rb.headers().get("set-cookie").is_none(), "another client's cookie");
        }
    });
}

#[test]
fn a_fill_the_origin_never_answers_is_a_504_and_one_it_refuses_a_502() {
    block_on(async {
        // Accepts, reads, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        // Nothing listens there any more.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        for (origin, want) in [(silent_url, 504), (closed_url, 502)] {
            let spec = serde_json::json!({
                "origin": origin,
                "server": {"origin_timeout": 0.2},
                "cache": [{"paths": ["/*"], "ttl": 60.0}],
            });
            let s = state(plan(spec), None);
            let active = s.active.load_full();
            let mut c = ctx_with("/p", &[]);
            let got = run_phases(&s, &active, &mut c).await.err().map(|e| e.http_status());
            assert_eq!(got, Some(want), "{origin}");
        }
    });
}
