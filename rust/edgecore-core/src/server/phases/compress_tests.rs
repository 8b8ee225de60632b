use std::io::Read;

use http_body_util::BodyExt;

use super::*;
use crate::server::phases::testing::{block_on, ctx_with, plan};

fn rules() -> Plan {
    plan(serde_json::json!({"compress": [
        {"paths": ["/app/*"], "exclude": ["/app/raw/*"], "algorithms": ["br", "gzip"], "min_bytes": 100},
        {"paths": ["/data/*"], "algorithms": ["zstd"], "min_bytes": 0, "types": ["application/*+json"],
         "levels": {"zstd": 9}},
    ]}))
}

fn choice(plan: &Plan, path: &str, accept: &[&str]) -> (Option<CompressChoice>, Option<String>) {
    let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
    let mut c = ctx_with(path, &headers);
    negotiate(plan, &mut c);
    let stated = c.request.headers.get_str("accept-encoding").map(str::to_owned);
    (c.notes.compress, stated)
}

#[test]
fn the_rule_on_the_path_settles_the_coding_and_the_origin_is_told_it() {
    let p = rules();
    let (c, stated) = choice(&p, "/app/x", &["gzip, deflate, br"]);
    assert_eq!((c.unwrap().rule, c.unwrap().coding), (0, Some(Coding::Br)));
    assert_eq!(stated.as_deref(), Some("br"));
    // Two fields are one list.
    let (c, _) = choice(&p, "/app/x", &["deflate", "gzip"]);
    assert_eq!(c.unwrap().coding, Some(Coding::Gzip));
    let (c, stated) = choice(&p, "/app/x", &[]);
    assert_eq!((c.unwrap().coding, stated.as_deref()), (None, Some("identity")));
    let (c, _) = choice(&p, "/data/x", &["gzip, br, zstd"]);
    assert_eq!((c.unwrap().rule, c.unwrap().coding), (1, Some(Coding::Zstd)));
    // Off the rules' paths (or excluded), nothing changes, not even the field.
    for path in ["/other", "/app/raw/file"] {
        assert_eq!(choice(&p, path, &["gzip, br"]), (None, Some("gzip, br".to_owned())));
    }
}

fn response(status: u16, fields: &[(&str, &str)], body: &'static [u8]) -> http::Response<Body> {
    let mut r = http::Response::new(Body::full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (n, v) in fields {
        r.headers_mut().append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

const PAGE: &[u8] = b"<html><body><p>edgecore compresses this page, which repeats, and repeats, and repeats, and repeats; and repeats again.</p></body></html>";

fn br() -> CompressChoice {
    CompressChoice {
        rule: 0,
        coding: Some(Coding::Br),
    }
}

fn unbr(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn an_eligible_response_is_compressed_as_it_streams_with_its_fields_fixed() {
    let p = rules();
    let html = [
        ("content-type", "text/html; charset=utf-8"),
        ("etag", "\"v1\""),
        ("accept-ranges", "bytes"),
        ("vary", "Origin"),
    ];
    let r = apply(&p, br(), &Method::GET, response(200, &html, PAGE));
    let h = r.headers().clone();
    assert_eq!(h["content-encoding"], "br");
    assert_eq!(h["etag"], "W/\"v1\"");
    assert!(h.get("accept-ranges").is_none() && h.get("content-length").is_none());
    let vary: Vec<_> = h.get_all("vary").iter().collect();
    assert_eq!(vary, ["Origin", "Accept-Encoding"]);
    let body = block_on(r.into_body().collect()).unwrap().to_bytes();
    assert_eq!(unbr(&body), PAGE);
    // HEAD: the fields a GET would get, no body.
    let head = apply(&p, br(), &Method::HEAD, response(200, &html, b""));
    assert_eq!(head.headers()["content-encoding"], "br");
    assert!(block_on(head.into_body().collect()).unwrap().to_bytes().is_empty());
}

#[test]
fn what_must_not_be_compressed_goes_as_it_is() {
    let p = rules();
    let html = ("content-type", "text/html");
    type Case = (u16, Vec<(&'static str, &'static str)>, &'static [u8]);
    let cases: Vec<Case> = vec![
        (200, vec![html], b"tiny"),
        (200, vec![html, ("content-encoding", "gzip")], PAGE),
        (200, vec![html, ("cache-control", "public, no-transform")], PAGE),
        (206, vec![html, ("content-range", "bytes 0-9/100")], PAGE),
        (200, vec![("content-type", "image/png")], PAGE),
        (200, vec![], PAGE),
        (304, vec![html], b""),
        (204, vec![html], b""),
    ];
    for (status, fields, body) in cases {
        let r = apply(&p, br(), &Method::GET, response(status, &fields, body));
        assert!(
            r.headers().get("content-encoding").is_none_or(|e| e == "gzip"),
            "{status} {fields:?}"
        );
        assert!(r.headers().get("vary").is_none(), "{status} {fields:?}");
        assert_eq!(block_on(r.into_body().collect()).unwrap().to_bytes(), body);
    }
    // Eligible, but this client takes no coding: as it is, with Vary (another would get br).
    let plain = CompressChoice { rule: 0, coding: None };
    let r = apply(&p, plain, &Method::GET, response(200, &[html], PAGE));
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    assert!(r.headers().get("content-encoding").is_none());
    // A declared length under the minimum counts for a HEAD.
    let head = apply(
        &p,
        br(),
        &Method::HEAD,
        response(200, &[html, ("content-length", "10")], b""),
    );
    assert!(head.headers().get("content-encoding").is_none());
}

#[test]
fn the_rules_media_types_and_levels_apply() {
    let p = rules();
    let z = CompressChoice {
        rule: 1,
        coding: Some(Coding::Zstd),
    };
    assert_eq!(p.compress[1].level(Coding::Zstd), 9);
    assert_eq!(p.compress[0].level(Coding::Br), Coding::Br.default_level());
    let json = apply(
        &p,
        z,
        &Method::GET,
        response(200, &[("content-type", "application/problem+json")], b"{}"),
    );
    assert_eq!(json.headers()["content-encoding"], "zstd");
    let body = block_on(json.into_body().collect()).unwrap().to_bytes();
    assert_eq!(zstd::stream::decode_all(&body[..]).unwrap(), b"{}");
    let plain_json = apply(
        &p,
        z,
        &Method::GET,
        response(200, &[("content-type", "application/json")], b"{}"),
    );
    assert!(plain_json.headers().get("content-encoding").is_none());
}

#[test]
fn a_whole_body_for_the_cache_is_compressed_before_it_is_stored() {
    let p = rules();
    let mut r = Response::new(200, Bytes::from_static(PAGE)).unwrap();
    r.headers.insert("content-type", HeaderValue::from_static("text/css"));
    r.headers.insert("content-length", HeaderValue::from(PAGE.len()));
    let z = block_on(apply_whole(&p, br(), &Method::GET, r)).unwrap();
    assert_eq!(z.headers["content-encoding"], "br");
    assert!(z.headers.get("content-length").is_none());
    assert_eq!(unbr(&z.body), PAGE);
    let big: Vec<u8> = PAGE.iter().cycle().take(super::BLOCKING_BYTES + 10).copied().collect();
    let mut r = Response::new(200, big.clone()).unwrap();
    r.headers.insert("content-type", HeaderValue::from_static("text/css"));
    let z = block_on(apply_whole(&p, br(), &Method::GET, r)).unwrap();
    assert_eq!(unbr(&z.body), big);
}

/// What the pipeline relies on to skip `apply` for a stored copy: on what `apply_whole` made of
/// a response (for the same rule and coding), `apply` changes nothing.
#[test]
fn applying_the_rule_again_to_what_was_stored_changes_nothing() {
    let p = rules();
    let css = [("content-type", "text/css")];
    type Case<'a> = (&'a [(&'static str, &'static str)], &'static [u8]);
    let cases: [Case; 6] = [
        (&css, PAGE),
        (&css, b"short"),
        (&[("content-type", "text/css"), ("vary", "Origin")], PAGE),
        (&[("content-type", "text/css"), ("cache-control", "no-transform")], PAGE),
        (&[("content-type", "text/css"), ("content-encoding", "gzip")], PAGE),
        (&[("content-type", "image/png")], PAGE),
    ];
    for (fields, body) in cases {
        for coding in [None, Some(Coding::Br), Some(Coding::Gzip)] {
            for method in [Method::GET, Method::HEAD] {
                let choice = CompressChoice { rule: 0, coding };
                let mut r = Response::new(200, Bytes::from_static(body)).unwrap();
                for (n, v) in fields {
                    r.headers.append(*n, HeaderValue::from_static(v));
                }
                let stored = block_on(apply_whole(&p, choice, &method, r)).unwrap();
                let (fields_stored, body_stored) = (stored.headers.clone(), stored.body.clone());
                let again = apply(&p, choice, &method, crate::server::respond::from_core(stored));
                assert_eq!(again.headers(), &fields_stored, "{fields:?} {coding:?} {method}");
                let body = block_on(again.into_body().collect()).unwrap().to_bytes();
                assert_eq!(body, body_stored, "{fields:?} {coding:?} {method}");
            }
        }
    }
}

#[test]
fn bad_rules_are_refused_with_what_is_wrong() {
    let cases = [
        (
            serde_json::json!({"algorithms": ["deflate"], "min_bytes": 0}),
            "unknown algorithm \"deflate\"",
        ),
        (
            serde_json::json!({"algorithms": [], "min_bytes": 0}),
            "at least one algorithm",
        ),
        (
            serde_json::json!({"algorithms": ["br", "BR"], "min_bytes": 0}),
            "listed twice",
        ),
        (
            serde_json::json!({"algorithms": ["br"], "min_bytes": 0, "levels": {"br": 12}}),
            "br takes 0..=11, not 12",
        ),
        (
            serde_json::json!({"algorithms": ["br"], "min_bytes": 0, "types": ["text"]}),
            "\"text\" is not a media type",
        ),
        (
            serde_json::json!({"algorithms": ["br"], "min_bytes": 0, "types": ["*/*"]}),
            "is not a media type",
        ),
    ];
    for (spec, want) in cases {
        let spec: crate::server::spec::CompressSpec = serde_json::from_value(spec).unwrap();
        let err = crate::server::plan::edge::build_compress(spec).err().expect("refused");
        assert!(err.context.contains(want), "{} (wanted {want})", err.context);
    }
}

#[test]
fn past_the_rules_concurrent_streams_a_response_goes_uncompressed_until_one_ends() {
    let p = plan(serde_json::json!({"compress": [
        {"paths": ["/*"], "algorithms": ["br"], "min_bytes": 0, "max_streams": 1},
    ]}));
    let html = [("content-type", "text/html")];
    let first = apply(&p, br(), &Method::GET, response(200, &html, PAGE));
    assert_eq!(first.headers()["content-encoding"], "br");
    let second = apply(&p, br(), &Method::GET, response(200, &html, PAGE));
    assert!(second.headers().get("content-encoding").is_none());
    assert_eq!(second.headers()["vary"], "Accept-Encoding");
    assert_eq!(block_on(second.into_body().collect()).unwrap().to_bytes(), PAGE);
    drop(first);
    let third = apply(&p, br(), &Method::GET, response(200, &html, PAGE));
    assert_eq!(third.headers()["content-encoding"], "br");
    // A cache fill's whole body takes no stream.
    let mut r = Response::new(200, Bytes::from_static(PAGE)).unwrap();
    r.headers.insert("content-type", HeaderValue::from_static("text/html"));
    assert_eq!(
        block_on(apply_whole(&p, br(), &Method::GET, r)).unwrap().headers["content-encoding"],
        "br"
    );
}
