//! The HTTP caching policy of a shared cache (RFC 9111, with RFC 5861's stale extensions), as
//! pure functions of the request, the response and the time: testable on their own, and the
//! single source of truth for the server.
//!
//! Deliberate choices (documented in the README):
//! - only GET responses to requests without a body are stored;
//! - responses with `Set-Cookie` are never stored (they are almost always per-user);
//! - a response to a request with `Authorization` is stored only with `public`, `s-maxage` or
//!   `must-revalidate` (RFC 9111 §3.5), and an authenticated request is only served an entry that
//!   was allowed that way;
//! - 4xx/5xx responses need explicit freshness (max-age, s-maxage or Expires);
//! - without explicit freshness, the route's configured TTL applies, else 10% of the time since
//!   `Last-Modified` (at most a day), else the response is not stored.

use http::{HeaderMap, Method, StatusCode};

use crate::http::{Request, Response};

/// Parsed `Cache-Control` directives we act on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (unqualified).
    pub no_cache: bool,
    /// `private` (unqualified or with fields: either way, not for a shared cache).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`.
    pub must_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// Read from a targeted field (RFC 9213) rather than `Cache-Control`: `Expires` is ignored.
    pub targeted: bool,
}

/// The targeted cache-control fields edgecore obeys, first found wins (RFC 9213): its own, then
/// the one every CDN obeys. Either replaces `Cache-Control` and `Expires` for the shared cache;
/// a browser still sees and obeys `Cache-Control`.
pub const TARGETED: [&str; 2] = ["edgecore-cache-control", "cdn-cache-control"];

impl CacheControl {
    /// Parses every `Cache-Control` field of `headers`. Unknown directives are ignored; a
    /// malformed delta-seconds makes that directive absent, except that a malformed `max-age`
    /// counts as stale (RFC 9111 §4.2.1: "treat as zero").
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        Self::parse_targeted(headers, &TARGETED)
    }

    /// [`Self::parse`], with `targeted` (first found wins) as the targeted fields.
    pub fn parse_targeted<N: http::header::AsHeaderName + Copy>(headers: &HeaderMap, targeted: &[N]) -> CacheControl {
        for &name in targeted {
            // Present with any non-empty value (found by fuzzing: an empty first line made the
            // field's `private` on a later line count for nothing).
            let values = headers.get_all(name);
            if values.iter().any(|v| !v.as_bytes().trim_ascii().is_empty()) {
                let mut cc = Self::from_values(values.iter().map(|v| v.as_bytes()));
                cc.targeted = true;
                return cc;
            }
        }
        Self::from_values(
            headers
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        )
    }

    /// Parses the `Cache-Control` fields of a request.
    pub fn of_request(headers: &crate::http::Headers) -> CacheControl {
        let mut cc = Self::from_values(headers.get_all(&http::header::CACHE_CONTROL));
        // Pragma: no-cache means no-cache when Cache-Control is absent (RFC 9111 §5.4).
        if !headers.contains(&http::header::CACHE_CONTROL)
            && headers
                .get_all(&http::header::PRAGMA)
                .any(|p| p.eq_ignore_ascii_case(b"no-cache"))
        {
            cc.no_cache = true;
        }
        cc
    }

    /// Parses `Cache-Control` field values.
    pub fn from_values<'a>(values: impl Iterator<Item = &'a [u8]>) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in values {
            let Ok(s) = std::str::from_utf8(value) else { continue };
            for part in split_directives(s) {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part.trim(), None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = arg.is_none() || cc.no_cache,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => cc.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = secs().or(Some(0)),
                    "stale-while-revalidate" => cc.stale_while_revalidate = secs(),
                    "stale-if-error" => cc.stale_if_error = secs(),
                    "only-if-cached" => cc.only_if_cached = true,
                    _ => {}
                }
            }
            if s.contains('"') {
                cc.restrict_unquoted(s);
            }
        }
        cc
    }

    /// Fails closed on quotes: a restrictive directive that a comma split finds counts even
    /// when the quote-aware split put it inside a quoted string, so a malformed value
    /// (`privAt", x, private="y`) can never hide `private`, `no-store` or `no-cache` from the
    /// cache (found by fuzzing: such a value was stored).
    fn restrict_unquoted(&mut self, s: &str) {
        for part in s.split(',') {
            let (name, bare) = match part.split_once('=') {
                Some((n, _)) => (n.trim(), false),
                None => (part.trim(), true),
            };
            let name = name.trim_matches('"');
            if name.eq_ignore_ascii_case("private") {
                self.private = true;
            } else if name.eq_ignore_ascii_case("no-store") {
                self.no_store = true;
            } else if bare && name.eq_ignore_ascii_case("no-cache") {
                self.no_cache = true;
            }
        }
    }
}

/// Splits on commas that are not inside a quoted string.
fn split_directives(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1, "heuristically
/// cacheable"), less 206 (we do not store partial content).
const HEURISTIC_STATUSES: [u16; 10] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 501];

/// Whether and how long a response may be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDecision {
    /// Whether the response may be stored.
    pub storable: bool,
    /// Why not (or "storable").
    pub reason: &'static str,
    /// Freshness lifetime in seconds (from s-maxage, max-age, Expires, the route TTL or heuristics).
    pub ttl: f64,
    /// Age the response already had when received (its `Age` header), seconds.
    pub initial_age: f64,
    /// Seconds past expiry during which it may be served while revalidating.
    pub stale_while_revalidate: f64,
    /// Seconds past expiry during which it may be served if the origin fails.
    pub stale_if_error: f64,
    /// Stale copies must never be served (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// Every reuse needs revalidation first (`no-cache`).
    pub no_cache: bool,
    /// It may be served to requests with `Authorization`.
    pub auth_ok: bool,
    /// The request headers named by `Vary` (lower-case), if any.
    pub vary: Vec<String>,
}

impl StoreDecision {
    fn no(reason: &'static str) -> Self {
        StoreDecision {
            storable: false,
            reason,
            ttl: 0.0,
            initial_age: 0.0,
            stale_while_revalidate: 0.0,
            stale_if_error: 0.0,
            must_revalidate: false,
            no_cache: false,
            auth_ok: false,
            vary: Vec::new(),
        }
    }
}

/// Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime) into seconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<f64> {
    httpdate(s.trim())
}

fn httpdate(s: &str) -> Option<f64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = s.split([' ', ',', '-']).filter(|p| !p.is_empty()).collect();
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT  -> [Sun, 06, Nov, 1994, 08:49:37, GMT]
    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT -> [Sunday, 06, Nov, 94, 08:49:37, GMT]
    // asctime:     Sun Nov  6 08:49:37 1994       -> [Sun, Nov, 6, 08:49:37, 1994]
    let (day, mon, year, time) = match parts.as_slice() {
        [_, d, m, y, t, "GMT"] => (*d, *m, *y, *t),
        [_, m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    let day: u32 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<u32> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else { return None };
    // A four-digit year at most (found by fuzzing: a huge year overflowed the arithmetic below).
    if !(1..=31).contains(&day) || *h > 23 || *mi > 59 || *se > 60 || !(0..=9999).contains(&year) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + (*h as i64) * 3600 + (*mi as i64) * 60 + *se as i64) as f64)
}

/// Why `response` to `request` may not be stored at all (None: it may, freshness permitting).
fn refusal(request: &Request, response: &Response, cc: &CacheControl) -> Option<&'static str> {
    if request.method != Method::GET {
        return Some("only GET responses are stored");
    }
    if !request.body.is_empty() {
        return Some("the request has a body");
    }
    if CacheControl::of_request(&request.headers).no_store {
        return Some("the request says no-store");
    }
    if cc.no_store {
        return Some("the response says no-store");
    }
    if cc.private {
        return Some("the response is private");
    }
    if response.headers.contains_key(http::header::SET_COOKIE) {
        return Some("the response sets a cookie");
    }
    // An answer to a client's conditional or Range request, or an interim response, is not a
    // representation to serve to anyone else.
    match response.status.as_u16() {
        304 => return Some("a 304 is not a response to store"),
        206 => return Some("a partial response is not stored"),
        s if s < 200 => return Some("an interim response is not stored"),
        _ => {}
    }
    if vary_names(&response.headers).iter().any(|v| v == "*") {
        return Some("the response varies on *");
    }
    let auth_ok = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    if request.headers.contains(&http::header::AUTHORIZATION) && !auth_ok {
        return Some("the request is authenticated and the response is not public");
    }
    None
}

/// The freshness lifetime (RFC 9111 §4.2.1): explicit (`s-maxage`, `max-age`, `Expires`), else
/// the route's TTL, else heuristic; or why there is none.
fn lifetime(response: &Response, cc: &CacheControl, date: f64, default_ttl: Option<f64>) -> Result<f64, &'static str> {
    let status = response.status;
    let explicit = cc.s_maxage.or(cc.max_age).map(|s| s as f64).or_else(|| {
        if cc.targeted {
            return None;
        }
        let expires = response.headers.get(http::header::EXPIRES)?;
        // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
        Some(
            expires
                .to_str()
                .ok()
                .and_then(parse_http_date)
                .map_or(0.0, |e| (e - date).max(0.0)),
        )
    });
    match explicit {
        Some(t) => Ok(t),
        None if status.as_u16() >= 400 => Err("error responses need explicit freshness"),
        // no-cache with validators: stored to be revalidated on every use.
        None if cc.no_cache && etag_or_last_modified(&response.headers).is_some() => Ok(0.0),
        None if !HEURISTIC_STATUSES.contains(&status.as_u16()) => {
            Err("the status is not cacheable without explicit freshness")
        }
        None => match (default_ttl, header_date(&response.headers, http::header::LAST_MODIFIED)) {
            (Some(t), _) => Ok(t),
            (None, Some(lm)) if lm < date => Ok(((date - lm) * 0.1).min(86_400.0)),
            _ => Err("no freshness information and no route TTL"),
        },
    }
}

/// Decides whether a shared cache may store `response` to `request`, received at `now`.
/// `default_ttl` is the route's configured TTL, used when the response has no explicit freshness.
pub fn storable(request: &Request, response: &Response, now: f64, default_ttl: Option<f64>) -> StoreDecision {
    storable_targeted(request, response, now, default_ttl, &TARGETED)
}

/// [`storable`], obeying `targeted` (first found wins) instead of the default targeted fields.
pub fn storable_targeted<N: http::header::AsHeaderName + Copy>(
    request: &Request,
    response: &Response,
    now: f64,
    default_ttl: Option<f64>,
    targeted: &[N],
) -> StoreDecision {
    let cc = CacheControl::parse_targeted(&response.headers, targeted);
    if let Some(why) = refusal(request, response, &cc) {
        return StoreDecision::no(why);
    }
    let date = header_date(&response.headers, http::header::DATE).unwrap_or(now);
    let ttl = match lifetime(response, &cc, date, default_ttl) {
        Ok(ttl) => ttl,
        Err(why) => return StoreDecision::no(why),
    };
    if ttl <= 0.0 && !cc.no_cache && etag_or_last_modified(&response.headers).is_none() {
        return StoreDecision::no("already stale and cannot be revalidated");
    }
    let auth_ok = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    let vary = vary_names(&response.headers);
    let initial_age = response
        .headers
        .get(http::header::AGE)
        .and_then(|a| a.to_str().ok()?.trim().parse::<u64>().ok())
        .map_or(0.0, |a| a as f64)
        .max(now - date);
    let strict = cc.must_revalidate || cc.s_maxage.is_some();
    StoreDecision {
        storable: true,
        reason: "storable",
        ttl,
        initial_age: initial_age.max(0.0),
        stale_while_revalidate: if strict {
            0.0
        } else {
            cc.stale_while_revalidate.unwrap_or(0) as f64
        },
        stale_if_error: if strict {
            0.0
        } else {
            cc.stale_if_error.unwrap_or(0) as f64
        },
        must_revalidate: strict,
        no_cache: cc.no_cache,
        auth_ok,
        vary,
    }
}

fn header_date(h: &HeaderMap, name: http::HeaderName) -> Option<f64> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(parse_http_date)
}

/// The validators of a response: (ETag, Last-Modified).
pub fn etag_or_last_modified(h: &HeaderMap) -> Option<(Option<http::HeaderValue>, Option<http::HeaderValue>)> {
    let etag = h.get(http::header::ETAG).cloned();
    let lm = h.get(http::header::LAST_MODIFIED).cloned();
    (etag.is_some() || lm.is_some()).then_some((etag, lm))
}

/// Lower-case field names listed in `Vary`.
///
/// A member that is not a field name (`*=`, a space inside, bytes that are not text) counts as
/// `*`: the cache cannot tell what the response varies on, so it is not stored (found by
/// fuzzing: `Vary: accept, *=` was keyed on a request field named `*=`, which no request has).
pub fn vary_names(h: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for value in h.get_all(http::header::VARY) {
        let Ok(text) = value.to_str() else {
            names.push("*".into());
            continue;
        };
        for member in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if member == "*" || !member.bytes().all(crate::http::token::is_tchar) {
                names.push("*".into());
            } else {
                names.push(member.to_ascii_lowercase());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Whether a successful response to an unsafe method must invalidate the target URL
/// (RFC 9111 §4.4): POST, PUT, DELETE or PATCH with a 2xx or 3xx status.
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::DELETE | Method::PATCH)
        && (status.is_success() || status.is_redirection())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_first_line_does_not_hide_a_targeted_field() {
        let mut h = HeaderMap::new();
        h.append("cdn-cache-control", http::HeaderValue::from_static(""));
        h.append("cdn-cache-control", http::HeaderValue::from_static("private"));
        h.append("cache-control", http::HeaderValue::from_static("public, max-age=60"));
        let cc = CacheControl::parse(&h);
        assert!(cc.targeted && cc.private && !cc.public);
    }

    #[test]
    fn a_stray_quote_never_hides_a_restrictive_directive() {
        let cc = |v: &'static str| CacheControl::from_values([v.as_bytes()].into_iter());
        // The fuzzer's value: the quote-aware split sees `private` inside a quoted string.
        let found = cc("privAt\", che-contr*.priv,private=\"marol-cooxmage=47");
        assert!(found.private);
        assert!(cc("x=\"a, no-store").no_store);
        assert!(cc("max-age=60, x=\"y, no-cache").no_cache);
        // Well-formed quoted arguments keep their meaning.
        let fine = cc("public, max-age=60, community=\"UCI\"");
        assert!(fine.public && !fine.private && !fine.no_store && fine.max_age == Some(60));
    }

    #[test]
    fn http_dates() {
        let t = 784_111_777.0;
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date("0"), None);
        assert_eq!(parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn a_targeted_field_replaces_cache_control_and_expires() {
        let req = Request::new(Method::GET, "/".parse().unwrap());
        let resp = |fields: &[(&str, &str)]| {
            let mut r = Response::new(200, "x").unwrap();
            for (n, v) in fields {
                r.headers
                    .append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
            }
            storable(&req, &r, 1000.0, None)
        };
        // The browser is told not to cache; the edge caches for an hour.
        let d = resp(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=3600")]);
        assert!(d.storable && d.ttl == 3600.0, "{d:?}");
        // edgecore's own field wins over the CDN one.
        let d = resp(&[
            ("cdn-cache-control", "max-age=60"),
            ("edgecore-cache-control", "no-store"),
        ]);
        assert!(!d.storable);
        // A targeted field ignores Expires; an empty one is no targeted field at all.
        let d = resp(&[
            ("cdn-cache-control", "public"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ]);
        assert!(!d.storable, "{d:?}");
        let d = resp(&[("cdn-cache-control", ""), ("cache-control", "max-age=5")]);
        assert!(d.storable && d.ttl == 5.0);
    }

    #[test]
    fn cache_control_parsing() {
        let mut h = HeaderMap::new();
        h.append(
            "cache-control",
            "public, max-age=60, stale-while-revalidate=30".parse().unwrap(),
        );
        h.append(
            "cache-control",
            r#"private="set-cookie,x", s-maxage=bad"#.parse().unwrap(),
        );
        let cc = CacheControl::parse(&h);
        assert!(cc.public && cc.private);
        assert_eq!(
            (cc.max_age, cc.s_maxage, cc.stale_while_revalidate),
            (Some(60), Some(0), Some(30))
        );
        let mut h = HeaderMap::new();
        h.insert("cache-control", "max-age=abc, no-cache=\"x\"".parse().unwrap());
        let cc = CacheControl::parse(&h);
        assert_eq!(cc.max_age, Some(0));
        assert!(!cc.no_cache, "qualified no-cache only concerns the named fields");
    }
}
