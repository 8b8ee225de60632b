use super::*;
use crate::server::phases::testing::{ctx_with, plan};

fn explaining() -> Plan {
    plan(serde_json::json!({"server": {"explain_allow": ["10.0.0.0/8"]}}))
}

#[test]
fn only_an_allowed_client_that_asks_gets_a_trace_and_the_ask_never_goes_on() {
    let p = explaining();
    for (path, ask, peer_allowed, traced) in [
        ("/x", Some("1"), true, true),
        ("/x", Some("0"), true, false),
        ("/x", None, true, false),
        ("/x?a=1&__explain&b=2", None, true, true),
        ("/x?__explain=1", None, true, true),
        ("/x", Some("1"), false, false),
        ("/x?__explain", None, false, false),
    ] {
        let headers: Vec<(&str, &str)> = ask.map(|a| vec![("x-edge-explain", a)]).unwrap_or_default();
        let mut c = ctx_with(path, &headers);
        c.request.edge.client_ip = Some(if peer_allowed { "10.1.2.3" } else { "192.0.2.1" }.parse().unwrap());
        start(&p, &mut c, Instant::now());
        assert_eq!(c.notes.trace.is_some(), traced, "{path} {ask:?} {peer_allowed}");
        assert!(!c.request.headers.contains("x-edge-explain"));
        assert!(!c.request.uri.to_string().contains("__explain"), "{}", c.request.uri);
    }
    let mut c = ctx_with("/x?a=1&__explain&b=2", &[]);
    c.request.edge.client_ip = Some("10.0.0.1".parse().unwrap());
    start(&p, &mut c, Instant::now());
    assert_eq!(c.request.uri.path_and_query().unwrap().as_str(), "/x?a=1&b=2");
    assert!(c.notes.trace.unwrap().as_body);
}

#[test]
fn nobody_may_explain_unless_configured_and_anyone_in_dev_mode() {
    let mut c = ctx_with("/x", &[("x-edge-explain", "1")]);
    assert!(plan(serde_json::json!({})).request.explain.is_none());
    start(
        &plan(serde_json::json!({"server": {"dev_mode": true}})),
        &mut c,
        Instant::now(),
    );
    assert!(c.notes.trace.is_some());
}

#[test]
fn the_field_lists_each_step_with_its_rule_and_time() {
    let mut t = Trace::new(false, Instant::now());
    t.mark("jwt", "continue", Some(2));
    t.mark("response", "200 proxied\u{7f}", None);
    let v = t.header();
    let v = v.to_str().unwrap();
    assert!(v.starts_with("jwt=continue rule#2 ("), "{v}");
    assert!(v.contains("; response=200 proxied? ("), "{v}");
}
