//! Tests of the plan builder.

use super::*;

fn build(spec: serde_json::Value) -> Result<Plan> {
    let spec: AppSpec = serde_json::from_value(spec).expect("the spec's shape");
    Plan::build(spec, Objects::default())
}

fn err(spec: serde_json::Value) -> String {
    match build(spec) {
        Ok(_) => panic!("built"),
        Err(e) => e.context.to_string(),
    }
}

#[test]
fn settings_are_checked_by_name_with_the_closest_known_one() {
    let err = |j: &str| check_settings(j).unwrap_err().context.to_string();
    assert!(check_settings(r#"{"keep_alive_timeout": 5, "threads": 2}"#).is_ok());
    assert_eq!(
        err(r#"{"keep_alive_timout": 5}"#),
        "unknown setting 'keep_alive_timout' (did you mean 'keep_alive_timeout'?)"
    );
    assert_eq!(err(r#"{"zzzzzzzzzz": 1}"#), "unknown setting 'zzzzzzzzzz'");
    assert!(err(r#"{"threads": "two"}"#).starts_with("setting 'threads': invalid type"));
    assert!(err(r#"{"origin_timeout": 0}"#).contains("origin_timeout must be a positive number"));
    assert!(err(r#"{"escaped_slashes": "maybe"}"#).contains("escaped_slashes must be"));
    assert!(err(r#"{"admin_addr": "localhost"}"#).contains("admin_addr"));
    assert!(err(r#"{"max_header_bytes": 0}"#).contains("max_header_bytes"));
}

#[test]
fn an_empty_spec_builds_with_default_timeouts() {
    let plan = build(serde_json::json!({})).unwrap();
    assert_eq!(plan.timeouts.header_read, Duration::from_secs(10));
    assert_eq!(plan.timeouts.keep_alive, Duration::from_secs(30));
    assert_eq!(plan.timeouts.grace, Duration::from_secs(10));
    assert!(plan.tls.is_none() && plan.origin.is_none());
}

#[test]
fn origins_are_numbered_default_first() {
    let plan = build(serde_json::json!({
        "origin": "http://a:1",
        "origins": [{"url": "http://b:2", "when": {"country": ["de"]}}, {"url": "http://c:3"}],
    }))
    .unwrap();
    let seen: Vec<(usize, String)> = plan.each_origin().map(|o| (o.index, format!("{o:?}"))).collect();
    assert_eq!(
        seen,
        [
            (0, "http://a:1".into()),
            (1, "http://b:2".into()),
            (2, "http://c:3".into())
        ]
    );
    assert_eq!(plan.origins[0].when.countries(), Some(&["DE".to_owned()][..]));
    let plan = build(serde_json::json!({"origins": [{"url": "http://b:2"}]})).unwrap();
    assert_eq!(plan.each_origin().next().unwrap().index, 0);
}

#[test]
fn an_upstream_is_one_set_however_many_rules_name_it() {
    let plan = build(serde_json::json!({
        "origin": "upstream:api",
        "upstreams": [{"name": "api", "targets": ["http://a:1", "http://b:2"]}],
        "origins": [{"url": "upstream:api", "paths": ["/x/*"]}, {"url": "http://c:3"}],
    }))
    .unwrap();
    assert_eq!(plan.origin, Some(0));
    assert_eq!(plan.origins[0].origin, 0);
    assert_eq!(plan.upstreams.len(), 2);
    let seen: Vec<usize> = plan.each_origin().map(|o| o.index).collect();
    assert_eq!(seen, [0, 1, 2]);
    for (spec, message) in [
        (
            serde_json::json!({"origin": "upstream:nope"}),
            "unknown upstream \"nope\"",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": []}]}),
            "upstream \"a\" needs 1 to 256 targets, got 0",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "balance": "fastest"}]}),
            "balance \"fastest\" is not supported",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1", "http://x:1"]}]}),
            "lists \"http://x:1\" twice",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1", "http://y:1"], "weights": [1]}]}),
            "1 weights for 2 targets",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "weights": [0]}]}),
            "weights must be whole numbers from 1 to 100",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "health": {"path": "healthz"}}]}),
            "health path \"healthz\" must be a path",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "health": {"path": "/h", "interval": 0}}]}),
            "health interval must be a positive number",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "health": {"path": "/h", "unhealthy": 0}}]}),
            "must be at least 1",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"]}, {"name": "a", "targets": ["http://y:1"]}]}),
            "defined twice",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["http://x:1"], "retry_budget": 2}]}),
            "retry_budget",
        ),
        (
            serde_json::json!({"upstreams": [{"name": "a", "targets": ["ftp://x"]}]}),
            "must be http",
        ),
    ] {
        let e = build(spec).err().expect("refused");
        assert!(e.context.contains(message), "{e}");
    }
}

#[test]
fn each_builder_names_what_is_wrong() {
    use serde_json::json;
    let cases = [
        (
            json!({"server": {"origin_timeout": 0.0}}),
            "origin_timeout must be a positive number",
        ),
        (
            json!({"server": {"grace_period": -1.0}}),
            "grace_period must be a positive number",
        ),
        (
            json!({"server": {"tls_cert": "c.pem"}}),
            "TLS needs both tls_cert and tls_key",
        ),
        (json!({"origin": "ftp://x"}), "must be http:// or https://"),
        (json!({"bots": {"action": "block"}}), "bots() needs a bot detector"),
        (json!({"redirects": [{"to": "/x", "status": 200}]}), "redirect"),
        (json!({"rewrites": [{"to": "x"}]}), "must be a path starting with /"),
        (
            json!({"headers": [{"request": {"bad name": "v"}}]}),
            "invalid header name",
        ),
        (
            json!({"headers": [{"request": {"x-a": "{nope}"}}]}),
            "unknown template variable",
        ),
        (json!({"jwt": [{"paths": ["/*"], "verifier": 0}]}), "unknown verifier 0"),
        (
            json!({"rate_limits": [{"paths": ["/*"], "limiter": 0, "key": "cookie:x"}]}),
            "rate limit key must be",
        ),
        (
            json!({"rate_limits": [{"paths": ["/*"], "limiter": 1}]}),
            "unknown limiter 1",
        ),
        (
            json!({"ab_tests": [{"name": "a b", "variants": {"x": 1.0}}]}),
            "experiment name",
        ),
        (
            json!({"cache": [{"paths": ["/*"], "ttl": -1.0}]}),
            "cache ttl must be a positive number",
        ),
        (
            json!({"routes": [{"path": "/x", "methods": ["G T"], "handler": 0}]}),
            "invalid method",
        ),
        (
            json!({"middleware": [{"matcher": ["re:("], "handler": 0}]}),
            "invalid path regex",
        ),
    ];
    for (spec, want) in cases {
        let got = err(spec.clone());
        assert!(got.contains(want), "{spec}: {got:?} lacks {want:?}");
    }
}
