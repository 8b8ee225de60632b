//! What the edge changes on a message it forwards: hop-by-hop fields (RFC 9110 §7.6.1) and any
//! field named in `Connection` go, in both directions; toward the origin the target becomes
//! origin-form, `Host` the origin's, and `X-Forwarded-For/Proto/Host` and `Via` are set.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::origin::Origin;
use crate::error::{Error, ErrorKind, ErrorSource, Result};

/// `X-Forwarded-For` (the pipeline reads it too).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const VIA: HeaderValue = HeaderValue::from_static("1.1 edgecore");

/// The hop-by-hop fields (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop field `name` is (its constant), if it is one: by length first, so that most
/// names are passed over with one comparison (this runs for every field of every message, both
/// ways), and the constant removes the field without parsing its name again.
fn hop_by_hop(name: &HeaderName) -> Option<&'static HeaderName> {
    use http::header::{CONNECTION, PROXY_AUTHENTICATE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    let n = name.as_str();
    let known: &'static HeaderName = match n.len() {
        2 if *name == TE => &TE,
        7 if *name == TRAILER => &TRAILER,
        7 if *name == UPGRADE => &UPGRADE,
        10 if *name == CONNECTION => &CONNECTION,
        10 if n == "keep-alive" => &KEEP_ALIVE,
        16 if n == "proxy-connection" => &PROXY_CONNECTION,
        17 if *name == TRANSFER_ENCODING => &TRANSFER_ENCODING,
        18 if *name == PROXY_AUTHENTICATE => &PROXY_AUTHENTICATE,
        _ => return None,
    };
    Some(known)
}

/// Removes hop-by-hop fields and the fields `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names finds the few present (each name appears once in `keys`, so
    // there are at most as many as HOP_BY_HOP has); only those are removed. Most messages carry
    // none, or just `Connection`.
    let mut found: [Option<&'static HeaderName>; HOP_BY_HOP.len()] = [None; HOP_BY_HOP.len()];
    let mut n = 0;
    for k in h.keys() {
        if let Some(known) = hop_by_hop(k) {
            found[n] = Some(known);
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    // Fields named in Connection. The usual values, `keep-alive` and `close`, name nothing else
    // to remove: that case is two comparisons, no parsing.
    let names_others = || {
        h.get_all(http::header::CONNECTION).iter().any(|v| {
            let v = v.as_bytes();
            !(v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close"))
        })
    };
    if found[..n].contains(&Some(&http::header::CONNECTION)) && names_others() {
        let named: Vec<HeaderName> = h
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.eq_ignore_ascii_case("close") && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)))
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for name in found.into_iter().flatten() {
        h.remove(name);
    }
}

/// Rewrites a client's request head for `origin`: origin-form target under the base path, the
/// origin's `Host` (`host`), and the forwarding fields. The caller has removed the hop-by-hop
/// fields already ([`strip_hop_by_hop`]): the pipeline does so before any policy runs, so that a
/// field the client names in `Connection` can never take away one the edge set. `client_ip` and
/// `scheme` (how the client reached us) feed `X-Forwarded-For`/`-Proto`; `prior_xff`, when
/// given, is the whole `X-Forwarded-For` chain to send (a trusted proxy's, with it appended).
pub fn prepare_request(
    parts: &mut http::request::Parts,
    origin: &Origin,
    host: &HeaderValue,
    client_ip: IpAddr,
    scheme: &'static str,
    prior_xff: Option<String>,
) -> Result<()> {
    // The host the client asked for: its Host field, or the target's authority (HTTP/2's
    // :authority, or an absolute-form target), read before the target is rewritten.
    let original_host = parts.headers.get(http::header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) if origin.base_path.is_empty() => http::Uri::from(pq.clone()),
        pq => {
            let pq = pq.map_or("/", |p| p.as_str());
            http::Uri::try_from(format!("{}{pq}", origin.base_path)).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    ErrorSource::Internal,
                    format!("building the origin URI: {e}"),
                )
            })?
        }
    };
    let h = &mut parts.headers;
    h.insert(http::header::HOST, host.clone());
    let xff = match prior_xff {
        Some(chain) if !chain.is_empty() => chain,
        _ => {
            let mut s = String::with_capacity(40);
            crate::geo::client_ip::push_ip(&mut s, client_ip);
            s
        }
    };
    // From a String: the buffer becomes the value without another copy.
    h.insert(
        X_FORWARDED_FOR,
        HeaderValue::try_from(xff).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    );
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Some(host) = original_host {
        h.insert(X_FORWARDED_HOST, host);
    }
    h.append(http::header::VIA, VIA);
    parts.version = http::Version::HTTP_11;
    Ok(())
}

/// Rewrites an origin's response head for the client: no hop-by-hop fields, our `Via` added.
pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.append(http::header::VIA, VIA);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_rewritten_for_the_origin() {
        let mut parts = http::Request::get("http://shop.example/p?q=1")
            .header("connection", "x-drop")
            .header("x-drop", "1")
            .header("x-keep", "1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        strip_hop_by_hop(&mut parts.headers);
        let origin = Origin::parse("http://10.0.0.1:8080/base", 0).unwrap();
        let host = HeaderValue::from_static("10.0.0.1:8080");
        prepare_request(
            &mut parts,
            &origin,
            &host,
            "203.0.113.9".parse().unwrap(),
            "https",
            Some("198.51.100.1, 10.0.0.7".into()),
        )
        .unwrap();
        assert_eq!(parts.uri, "/base/p?q=1");
        let h = &parts.headers;
        assert_eq!(h["host"], "10.0.0.1:8080");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["via"], "1.1 edgecore");
        assert!(h.get("x-drop").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn many_hop_by_hop_fields_all_go() {
        let mut h = HeaderMap::new();
        for n in [
            "te",
            "trailer",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "x-kept",
        ] {
            h.insert(HeaderName::from_static(n), "1".parse().unwrap());
        }
        h.append("x-kept", "2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
        assert_eq!(h.get_all("x-kept").iter().count(), 2);
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["x-kept"]);
    }
}
