//! Cache keys: `scheme://host/path?normalized-query`, then the method and any dimensions.
//!
//! The URL comes first so that `purge("https://shop.example.com/products/")` removes everything
//! under a path. The query is normalized (parameters sorted by name, values of one name kept in
//! order, empty ones dropped), and parameters can be ignored by name or by `prefix*` (`utm_*`).
//! Dimensions (A/B variant, geo country, a claim) are appended as `name=value` so that responses
//! that differ by them never share an entry. A unit separator (0x1F) joins the parts: it cannot
//! appear in a valid request target or header value, so no two different inputs build one key.

use crate::http::Request;

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
    key.push(SEP);
    key.push_str(request.method.as_str());
    for (name, value) in dimensions {
        key.push(SEP);
        key.push_str(name);
        key.push('=');
        key.push_str(value);
    }
    key
}

/// The URL part of the key (`scheme://host/path?normalized-query`): every key of that URL, for
/// any method and dimension, starts with it followed by [`SEP`].
pub fn url_key(request: &Request, scheme: &str, opts: &KeyOptions) -> String {
    let url = request.url(scheme);
    let mut host = url.host.to_ascii_lowercase();
    let default_port = if url.scheme == "https" { 443 } else { 80 };
    if let Some(p) = url.port.filter(|p| *p != default_port) {
        host = format!("{host}:{p}");
    }
    let mut key = format!("{}://{host}{}", url.scheme, url.path);
    if !opts.ignore_query && !url.query.is_empty() {
        let mut params: Vec<&str> = url
            .query
            .split('&')
            .filter(|p| !p.is_empty() && !opts.ignored(p.split('=').next().unwrap_or("")))
            .collect();
        params.sort_by_key(|p| p.split('=').next().unwrap_or(""));
        if !params.is_empty() {
            key.push('?');
            key.push_str(&params.join("&"));
        }
    }
    key
}

/// The secondary key of a variant: the primary key plus the request's values of the `Vary` fields.
pub fn variant_key(primary: &str, request: &Request, vary: &[String]) -> String {
    let mut key = String::with_capacity(primary.len() + 32);
    key.push_str(primary);
    for name in vary {
        key.push(SEP);
        key.push_str(name);
        key.push(':');
        let values: Vec<String> = request
            .headers
            .get_all(name)
            .map(|v| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        key.push_str(&values.join(","));
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
