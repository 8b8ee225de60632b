//! One canonical request: before any policy runs, the target and the Host are brought to the
//! one form that every later phase, every key and the origin see.
//!
//! - `CONNECT` is refused (405) and the asterisk form is refused (400) except for `OPTIONS *`.
//! - The path is canonicalised ([`crate::http::canonical::canonical_path`]; 400 when refused) and
//!   the target becomes origin-form: an absolute-form target (or HTTP/2's `:authority`) gives its
//!   authority to `Host` and keeps only path and query.
//! - Host: exactly one valid `Host` for HTTP/1.1 (RFC 9112 §3.2: none, two, or an invalid value
//!   is 400); for HTTP/2, `:authority` and `host` must agree. The value is lower-cased, and hosts
//!   outside `allowed_hosts` get 421.

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Method, Version};

use crate::error::{Error, ErrorKind, Result};
use crate::http::canonical::{canonical_host, canonical_path, host_allowed};
use crate::server::ctx::RequestCtx;
use crate::server::plan::Plan;

/// Makes the request's target and Host canonical, or refuses the request.
pub fn request(plan: &Plan, ctx: &mut RequestCtx) -> Result<()> {
    let req = &mut ctx.request;
    if req.method == Method::CONNECT {
        return Err(Error::downstream(ErrorKind::MethodNotAllowed, "CONNECT is not served"));
    }
    host(plan, req)?;
    let uri = &req.uri;
    if uri.path() == "*" && uri.scheme().is_none() {
        return if req.method == Method::OPTIONS {
            Ok(())
        } else {
            Err(Error::bad_request("the asterisk form is only for OPTIONS"))
        };
    }
    let path = canonical_path(uri.path(), plan.request.path).map_err(Error::bad_request)?;
    let changed = matches!(path, std::borrow::Cow::Owned(_));
    if changed || uri.authority().is_some() {
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        let pq = PathAndQuery::try_from(pq).map_err(|_| Error::bad_request("invalid request target"))?;
        req.uri = http::Uri::from(pq);
    }
    Ok(())
}

/// Settles the one Host of the request (see the module's documentation).
fn host(plan: &Plan, req: &mut crate::http::Request) -> Result<()> {
    let headers = req.headers.as_map_mut();
    // One pass over the few fields, comparing names (no hashing, as a lookup would).
    let mut field = None;
    for (name, value) in headers.iter() {
        if name == http::header::HOST {
            if field.is_some() {
                return Err(Error::bad_request("more than one Host field"));
            }
            field = Some(value);
        }
    }
    // Every byte is checked by `canonical_host`; a value that is not ASCII fails there.
    let field = field.map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{0}"));
    let authority = req.uri.authority().map(|a| a.as_str());
    let chosen = match (req.version, authority, field) {
        (_, Some(a), _) if a.contains('@') => return Err(Error::bad_request("userinfo in the request target")),
        (Version::HTTP_2, Some(a), Some(f)) => {
            if !a.eq_ignore_ascii_case(f) {
                return Err(Error::bad_request(":authority and host disagree"));
            }
            a
        }
        // The target's authority wins over the Host field (RFC 9112 §3.2.2), which HTTP/1.1
        // still requires.
        (Version::HTTP_11, Some(_), None) | (Version::HTTP_11, None, None) => {
            return Err(Error::bad_request("no Host field"));
        }
        (_, Some(a), _) => a,
        (_, None, Some(f)) => f,
        (_, None, None) => return Ok(()),
    };
    let canonical = canonical_host(chosen).map_err(Error::bad_request)?;
    if let Some(allowed) = &plan.request.allowed_hosts {
        if !host_allowed(&canonical, allowed) {
            return Err(Error::downstream(
                ErrorKind::MisdirectedRequest,
                "this server does not answer for that host",
            ));
        }
    }
    if authority.is_some() || matches!(canonical, std::borrow::Cow::Owned(_)) {
        let value = HeaderValue::from_str(&canonical).map_err(|_| Error::bad_request("invalid Host"))?;
        headers.insert(http::header::HOST, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan};

    fn run(
        spec: serde_json::Value,
        method: &str,
        target: &str,
        version: Version,
        hosts: &[&str],
    ) -> Result<(String, Option<String>)> {
        let mut c = ctx_with("/", &[]);
        c.request.method = Method::from_bytes(method.as_bytes()).unwrap();
        c.request.uri = target.parse().unwrap();
        c.request.version = version;
        c.request.headers.as_map_mut().remove(http::header::HOST);
        for h in hosts {
            c.request
                .headers
                .as_map_mut()
                .append(http::header::HOST, HeaderValue::from_str(h).unwrap());
        }
        request(&plan(spec), &mut c)?;
        let host = c.request.header("host").map(str::to_owned);
        Ok((c.request.uri.to_string(), host))
    }

    fn status(target: &str, version: Version, hosts: &[&str]) -> u16 {
        run(serde_json::json!({}), "GET", target, version, hosts)
            .err()
            .map_or(200, |e| e.http_status())
    }

    #[test]
    fn the_target_becomes_canonical_and_origin_form() {
        let ok = |t: &str| run(serde_json::json!({}), "GET", t, Version::HTTP_11, &["shop.example"]).unwrap();
        assert_eq!(
            ok("//api/./x?a=%2F"),
            ("/api/x?a=%2F".into(), Some("shop.example".into()))
        );
        assert_eq!(ok("/%61pi/x").0, "/api/x");
        assert_eq!(status("/api%2Fx", Version::HTTP_11, &["h"]), 400);
        assert_eq!(status("/login;x", Version::HTTP_11, &["h"]), 400);
        let decoded = run(
            serde_json::json!({"server": {"escaped_slashes": "decode", "path_params": "strip"}}),
            "GET",
            "/api%2Fx;p",
            Version::HTTP_11,
            &["h"],
        );
        assert_eq!(decoded.unwrap().0, "/api/x");
    }

    #[test]
    fn exactly_one_valid_host() {
        assert_eq!(status("/", Version::HTTP_11, &["h.example"]), 200);
        assert_eq!(status("/", Version::HTTP_11, &[]), 400);
        assert_eq!(status("/", Version::HTTP_11, &["a", "b"]), 400);
        assert_eq!(status("/", Version::HTTP_11, &["a", "a"]), 400);
        assert_eq!(status("/", Version::HTTP_11, &["a b/c@x"]), 400);
        assert_eq!(status("/", Version::HTTP_11, &["x/../y"]), 400);
        assert_eq!(status("/", Version::HTTP_10, &[]), 200);
        assert_eq!(status("http://u@h/", Version::HTTP_11, &["h"]), 400);
    }

    #[test]
    fn the_target_authority_replaces_host_and_http2_must_agree() {
        let r = run(
            serde_json::json!({}),
            "GET",
            "http://Evil.example/p",
            Version::HTTP_11,
            &["shop.example"],
        )
        .unwrap();
        assert_eq!(r, ("/p".into(), Some("evil.example".into())));
        let r = run(
            serde_json::json!({}),
            "GET",
            "https://shop.example/p",
            Version::HTTP_2,
            &[],
        )
        .unwrap();
        assert_eq!(r, ("/p".into(), Some("shop.example".into())));
        assert_eq!(status("https://a.example/p", Version::HTTP_2, &["b.example"]), 400);
        assert_eq!(status("https://a.example/p", Version::HTTP_2, &["A.example"]), 200);
    }

    #[test]
    fn connect_asterisk_and_allowed_hosts() {
        let spec = serde_json::json!({"server": {"allowed_hosts": ["shop.example", "*.cdn.example"]}});
        let st = |m: &str, t: &str, h: &str| {
            run(spec.clone(), m, t, Version::HTTP_11, &[h])
                .err()
                .map_or(200, |e| e.http_status())
        };
        assert_eq!(st("CONNECT", "shop.example:443", "shop.example"), 405);
        assert_eq!(st("GET", "*", "shop.example"), 400);
        assert_eq!(st("OPTIONS", "*", "shop.example"), 200);
        assert_eq!(st("GET", "/", "shop.example"), 200);
        assert_eq!(st("GET", "/", "img.cdn.example:8443"), 200);
        assert_eq!(st("GET", "/", "evil.example"), 421);
        assert_eq!(st("GET", "http://evil.example/", "shop.example"), 421);
    }
}
