//! Cache keys: `scheme://host/path?normalized-query`, then the method and any dimensions.
//!
//! The URL comes first so that `purge("https://shop.example.com/products/")` removes everything
//! under a path. The query is normalized (parameters sorted by name, values of one name kept in
//! order, empty ones dropped), and parameters can be ignored by name or by `prefix*` (`utm_*`).
//! Dimensions (A/B variant, geo country, a claim) are appended as `name=value` so that responses
//! that differ by them never share an entry. A unit separator (0x1F) joins the parts: it cannot
//! appear in a valid request target or header value, so no two different inputs build one key.

use crate::http::{Headers, Request};

/// Separator between key parts; not allowed in request targets or header values.
pub const SEP: char = '\u{1f}';

/// How keys are built for a route.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// Drop the whole query.
    pub ignore_query: bool,
    /// Query parameters to drop: exact names, or `prefix*`.
    pub ignore_params: Vec<String>,
}

impl KeyOptions {
    fn ignored(&self, name: &str) -> bool {
        self.ignore_params.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }
}

/// The primary key of `request`: URL, method and dimensions.
pub fn cache_key(request: &Request, scheme: &str, opts: &KeyOptions, dimensions: &[(&str, &str)]) -> String {
    let mut key = url_key(request, scheme, opts);
    push_method(&mut key, request);
    for (name, value) in dimensions {
        push_dimension(&mut key, "", name, value);
    }
    key
}

/// Appends the method part of a primary key (after [`url_key`]).
pub fn push_method(key: &mut String, request: &Request) {
    key.push(SEP);
    key.push_str(request.method.as_str());
}

/// Appends one dimension, named `prefix` + `name` (after [`push_method`]).
pub fn push_dimension(key: &mut String, prefix: &str, name: &str, value: &str) {
    key.push(SEP);
    key.push_str(prefix);
    key.push_str(name);
    key.push('=');
    key.push_str(value);
}

/// The URL part of the key (`scheme://host/path?normalized-query`): every key of that URL, for
/// any method and dimension, starts with it followed by [`SEP`]. Built in one buffer, with room
/// for the method and a few dimensions.
pub fn url_key(request: &Request, scheme: &str, opts: &KeyOptions) -> String {
    let scheme = request.uri.scheme_str().unwrap_or(scheme);
    let authority = match (request.uri.authority(), &request.headers) {
        // `host[:port]`: userinfo (`user@`) is not part of what the key names.
        (Some(a), _) => a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, hp)| hp),
        // `to_str` checks for visible ASCII byte by byte, and needs no UTF-8 check after it.
        (None, Headers::Map(m)) => m
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        (None, raw) => raw.get_str(&http::header::HOST).unwrap_or_default(),
    };
    let path = request.path();
    let query = if opts.ignore_query { "" } else { request.query() };
    let mut key = String::with_capacity(scheme.len() + authority.len() + path.len() + query.len() + 64);
    key.push_str(scheme);
    key.push_str("://");
    push_authority(&mut key, authority, if scheme == "https" { 443 } else { 80 });
    key.push_str(path);
    if query.is_empty() {
        return key;
    }
    let kept = |p: &&str| !p.is_empty() && !opts.ignored(param_name(p));
    // The common case: a query already in order with nothing dropped goes in as it is.
    let in_order = query
        .split('&')
        .map(|p| (kept(&p), param_name(p)))
        .try_fold("", |prev, (keep, n)| (keep && prev <= n).then_some(n))
        .is_some();
    if in_order {
        key.push('?');
        key.push_str(query);
        return key;
    }
    let mut sorted: Vec<&str> = query.split('&').filter(kept).collect();
    sorted.sort_by_key(|p| param_name(p));
    for (i, p) in sorted.iter().enumerate() {
        key.push(if i == 0 { '?' } else { '&' });
        key.push_str(p);
    }
    key
}

/// Appends `host[:port]` (visible ASCII) as a key writes it: in lower case, without the
/// scheme's default port, the port without leading zeros (`h:0080` is `h`, `h:08080` is
/// `h:8080`); a port that is not a number below 65536 is kept as part of the host. No
/// formatting: the digits are the request's own.
fn push_authority(key: &mut String, authority: &str, default_port: u16) {
    let push_lower = |key: &mut String, text: &str| {
        let start = key.len();
        key.push_str(text);
        key[start..].make_ascii_lowercase();
    };
    // The last colon, unless it is inside an IPv6 literal (`[::1]`).
    let colon = authority.rfind(':').filter(|&i| !authority[i..].contains(']'));
    let Some(i) = colon else {
        return push_lower(key, authority);
    };
    let (host, digits) = (&authority[..i], &authority[i + 1..]);
    let port = (!digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|d| d.is_ascii_digit()))
        .then(|| digits.bytes().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
        .filter(|&n| n <= 65535);
    match port {
        _ if digits.is_empty() => push_lower(key, host),
        None => push_lower(key, authority),
        Some(n) if n == u32::from(default_port) => push_lower(key, host),
        Some(_) => {
            push_lower(key, host);
            key.push(':');
            key.push_str(digits.trim_start_matches('0'));
            if key.ends_with(':') {
                key.push('0');
            }
        }
    }
}

fn param_name(p: &str) -> &str {
    p.split('=').next().unwrap_or("")
}

/// The secondary key of a variant: the primary key plus the request's values of the `Vary` fields.
pub fn variant_key(primary: &str, request: &Request, vary: &[String]) -> String {
    let mut key = String::with_capacity(primary.len() + 32);
    key.push_str(primary);
    for name in vary {
        key.push(SEP);
        key.push_str(name);
        key.push(':');
        // Every field's list items, trimmed, joined with commas: one list however the client
        // split it into fields or spaced it. Written into the key as they are read.
        let mut first = true;
        for v in request.headers.get_all(name.as_str()) {
            for item in String::from_utf8_lossy(v).split(',') {
                if !first {
                    key.push(',');
                }
                first = false;
                key.push_str(item.trim());
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: &str) -> Request {
        let mut r = Request::new(http::Method::GET, target.parse().unwrap());
        r.headers.as_map_mut().insert("host", host.parse().unwrap());
        r
    }

    #[test]
    fn a_variant_names_each_varied_field_as_one_trimmed_list() {
        let vary = ["accept-encoding".to_owned(), "x-tier".to_owned()];
        let key = |fields: &[(&str, &[u8])]| {
            let mut r = req("/p", "h");
            for (n, v) in fields {
                let v = http::HeaderValue::from_bytes(v).unwrap();
                r.headers
                    .as_map_mut()
                    .append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v);
            }
            variant_key("P", &r, &vary)
        };
        let one = key(&[("accept-encoding", b"gzip, br"), ("x-tier", b"gold")]);
        assert_eq!(one, "P\u{1f}accept-encoding:gzip,br\u{1f}x-tier:gold");
        // However the list is split into fields or spaced, it is one variant.
        let split = key(&[
            ("accept-encoding", b" gzip"),
            ("accept-encoding", b"br "),
            ("x-tier", b"gold"),
        ]);
        assert_eq!(split, one);
        // Absent, empty and other values are other variants.
        assert_eq!(key(&[]), "P\u{1f}accept-encoding:\u{1f}x-tier:");
        assert_eq!(
            key(&[("accept-encoding", b""), ("accept-encoding", b"br")]),
            "P\u{1f}accept-encoding:,br\u{1f}x-tier:"
        );
        assert_ne!(key(&[("accept-encoding", b"br, gzip"), ("x-tier", b"gold")]), one);
        // Bytes that are not UTF-8 stand as U+FFFD, as before.
        assert_eq!(
            key(&[("x-tier", b"g\xffx")]),
            "P\u{1f}accept-encoding:\u{1f}x-tier:g\u{fffd}x"
        );
    }

    #[test]
    fn normalizes_query_and_host() {
        let o = KeyOptions {
            ignore_query: false,
            ignore_params: vec!["utm_*".into(), "fbclid".into()],
        };
        let a = cache_key(
            &req("/p?b=2&a=1&utm_source=x&fbclid=1&&a=0", "Shop.Example.com:80"),
            "http",
            &o,
            &[],
        );
        assert_eq!(a, "http://shop.example.com/p?a=1&a=0&b=2\u{1f}GET");
        let ignore = KeyOptions {
            ignore_query: true,
            ..Default::default()
        };
        assert_eq!(
            cache_key(&req("/p?x=1", "h"), "https", &ignore, &[]),
            "https://h/p\u{1f}GET"
        );
        // An absolute-form target's authority names the host, without its userinfo.
        let absolute = req("http://user:pw@Shop.Example:8080/p", "other.example");
        assert_eq!(url_key(&absolute, "http", &ignore), "http://shop.example:8080/p");
    }

    /// The key as first written (collect, sort, join), kept as the reference for the
    /// allocation-free builder.
    fn reference_url_key(target: &str, host: &str, scheme: &str, opts: &KeyOptions) -> String {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let a: http::uri::Authority = host.parse().unwrap();
        let mut h = a.host().to_ascii_lowercase();
        let default_port = if scheme == "https" { 443 } else { 80 };
        if let Some(p) = a.port_u16().filter(|p| *p != default_port) {
            h = format!("{h}:{p}");
        }
        let mut key = format!("{scheme}://{h}{path}");
        if !opts.ignore_query && !query.is_empty() {
            let mut params: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && !opts.ignored(param_name(p)))
                .collect();
            params.sort_by_key(|p| param_name(p));
            if !params.is_empty() {
                key.push('?');
                key.push_str(&params.join("&"));
            }
        }
        key
    }

    #[test]
    fn url_key_matches_the_reference_on_many_shapes() {
        let opts = KeyOptions {
            ignore_query: false,
            ignore_params: vec!["utm_*".into(), "x".into()],
        };
        let names = ["a", "b", "x", "utm_s", "ab", ""];
        let hosts = [
            "Shop.Example.com",
            "h:80",
            "h:443",
            "H:8080",
            "[::1]:8443",
            "[::1]",
            "h:0080",
            "Sub.H:08080",
            "h:0",
            "[::1]:00443",
        ];
        let mut n = 0u32;
        // Every query of up to three parameters drawn from `names` (in and out of order, with
        // ignored, repeated and empty ones), on hosts with and without (default) ports.
        for len in 0..=3u32 {
            for pick in 0..names.len().pow(len) {
                let mut parts = Vec::new();
                let mut i = pick;
                for k in 0..len {
                    let name = names[i % names.len()];
                    i /= names.len();
                    parts.push(if name.is_empty() {
                        String::new()
                    } else {
                        format!("{name}={k}")
                    });
                }
                let target = if len == 0 {
                    "/p".to_owned()
                } else {
                    format!("/p?{}", parts.join("&"))
                };
                for (h, scheme) in hosts.iter().zip(["http", "https"].iter().cycle()) {
                    let got = url_key(&req(&target, h), scheme, &opts);
                    assert_eq!(got, reference_url_key(&target, h, scheme, &opts), "{target} on {h}");
                    n += 1;
                }
            }
        }
        assert!(n > 1000);
    }

    #[test]
    fn dimensions_separate_keys() {
        let r = req("/p", "h");
        let o = KeyOptions::default();
        let de = cache_key(&r, "http", &o, &[("country", "DE")]);
        let fr = cache_key(&r, "http", &o, &[("country", "FR")]);
        assert_ne!(de, fr);
        assert!(de.starts_with("http://h/p"));
    }
}
