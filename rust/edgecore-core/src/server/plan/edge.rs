//! The compiled rules of what every edge is expected to do: access lists, HTTPS only, CORS and
//! request IDs, with their builders (each checks its spec and fails with a `Config` error that
//! names what is wrong).

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::compress::Coding;
use crate::error::{Error, Result};
use crate::geo::TrustedProxies;
use crate::server::matcher::Matcher;
use crate::server::spec::{AccessSpec, CompressSpec, CorsSpec, HttpsSpec, RequestIdSpec};

/// An access list on some paths (`app.access`).
pub struct AccessRule {
    /// Shadow mode: evaluate and record, never refuse.
    pub shadow: bool,
    /// Where.
    pub paths: Matcher,
    /// Clients in these networks are refused.
    pub deny_ips: Option<TrustedProxies>,
    /// Clients from these countries are refused.
    pub deny_countries: Vec<String>,
    /// When set (either), only clients in these networks or from these countries are let in.
    pub allow_ips: Option<TrustedProxies>,
    /// See `allow_ips`.
    pub allow_countries: Vec<String>,
    /// The refusal's status.
    pub status: StatusCode,
}

/// `app.https_only`: plain HTTP is redirected; HTTPS responses get HSTS when configured.
pub struct HttpsOnly {
    /// The redirect's status (301, 302, 307 or 308).
    pub status: u16,
    /// The `Strict-Transport-Security` value.
    pub hsts: Option<HeaderValue>,
}

/// Which origins a CORS rule allows.
pub enum CorsOrigins {
    /// Any (`*`).
    Any,
    /// These exact origins (lower case), and any subdomain of the `*.` ones.
    Listed {
        /// Exact origins.
        exact: Vec<String>,
        /// `(scheme "://", ".example.com")` for `https://*.example.com`.
        wildcard: Vec<(String, String)>,
    },
}

/// CORS on some paths (`app.cors`).
pub struct CorsRule {
    /// Where.
    pub paths: Matcher,
    /// Allowed origins.
    pub origins: CorsOrigins,
    /// Allowed methods.
    pub methods: Vec<Method>,
    /// `Access-Control-Allow-Methods`.
    pub methods_value: HeaderValue,
    /// Allowed request headers (lower case); None: any the preflight asks for.
    pub headers: Option<Vec<String>>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age: HeaderValue,
}

impl CorsOrigins {
    /// Whether `origin` (as the client sent it) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::Listed { exact, wildcard } => {
                exact.iter().any(|o| o.eq_ignore_ascii_case(origin))
                    || wildcard.iter().any(|(scheme, suffix)| {
                        origin.len() > scheme.len() + suffix.len()
                            && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                            && origin.is_char_boundary(origin.len() - suffix.len())
                            && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    })
            }
        }
    }
}

/// Compression on some paths (`app.compress`).
pub struct CompressRule {
    /// Where.
    pub paths: Matcher,
    /// The codings offered, in order of preference.
    pub codings: Vec<Coding>,
    /// The level of each coding, by its place in [`Coding::ALL`].
    pub levels: [i32; 3],
    /// A response declared smaller than this is sent as it is.
    pub min_bytes: u64,
    /// The media types compressed.
    pub types: MediaTypes,
    /// At most this many responses are compressed as they stream at once.
    pub max_streams: usize,
    /// How many are.
    pub streams: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CompressRule {
    /// The level `coding` is compressed at.
    pub fn level(&self, coding: Coding) -> i32 {
        self.levels[Coding::ALL
            .iter()
            .position(|c| *c == coding)
            .expect("every coding is listed")]
    }
}

/// The media types compressed by default: text, and the structured and font types that are
/// text underneath (images, audio, video and archives are compressed already).
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/x-ndjson",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

/// A set of media types: exact (`application/json`) or with one `*` (`text/*`,
/// `application/*+json`), matched without regard to case or parameters.
#[derive(Debug, Clone)]
pub struct MediaTypes {
    /// (before the `*`, after it), lower case; an exact type has no `*` and an empty suffix.
    patterns: Vec<(String, Option<String>)>,
}

impl MediaTypes {
    /// The set of `types` (each `type/subtype`, at most one `*`, in the subtype).
    pub fn new(types: &[impl AsRef<str>]) -> Result<MediaTypes> {
        let mut patterns = Vec::new();
        for t in types {
            let t = t.as_ref().trim().to_ascii_lowercase();
            let ok = t.split_once('/').is_some_and(|(ty, sub)| {
                !ty.is_empty()
                    && !sub.is_empty()
                    && !ty.contains('*')
                    && sub.matches('*').count() <= 1
                    && t.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
            });
            if !ok {
                return Err(Error::config(format!(
                    "compress: {t:?} is not a media type (type/subtype, with at most one * in the subtype)"
                )));
            }
            patterns.push(match t.split_once('*') {
                Some((before, after)) => (before.to_owned(), Some(after.to_owned())),
                None => (t, None),
            });
        }
        Ok(MediaTypes { patterns })
    }

    /// Whether `content_type` (a `Content-Type` value) is in the set.
    pub fn contains(&self, content_type: &[u8]) -> bool {
        let end = memchr::memchr(b';', content_type).unwrap_or(content_type.len());
        let Ok(t) = std::str::from_utf8(&content_type[..end]) else {
            return false;
        };
        let t = t.trim();
        self.patterns.iter().any(|(p, suffix)| match suffix {
            None => t.eq_ignore_ascii_case(p),
            Some(s) => {
                t.len() >= p.len() + s.len()
                    && t.is_char_boundary(p.len())
                    && t[..p.len()].eq_ignore_ascii_case(p)
                    && t.is_char_boundary(t.len() - s.len())
                    && t[t.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        })
    }
}

/// Request IDs and trace context (`app.request_ids`).
pub struct RequestIds {
    /// The request-ID field (`x-request-id`).
    pub header: HeaderName,
    /// Continue or start W3C trace context (`traceparent`).
    pub trace: bool,
}

fn cidrs(list: &[String], what: &str) -> Result<Option<TrustedProxies>> {
    if list.is_empty() {
        return Ok(None);
    }
    TrustedProxies::new(list)
        .map(Some)
        .map_err(|e| Error::config(format!("{what}: {}", e.context)))
}

fn countries(list: Vec<String>, what: &str) -> Result<Vec<String>> {
    list.into_iter()
        .map(|c| {
            let up = c.to_ascii_uppercase();
            if up.len() == 2 && up.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(up)
            } else {
                Err(Error::config(format!("{what}: {c:?} is not a two-letter country code")))
            }
        })
        .collect()
}

pub(crate) fn build_access(a: AccessSpec) -> Result<AccessRule> {
    let status = StatusCode::from_u16(a.status)
        .ok()
        .filter(|s| s.is_client_error())
        .ok_or_else(|| Error::config(format!("access status must be a 4xx status, not {}", a.status)))?;
    let rule = AccessRule {
        shadow: a.shadow,
        paths: Matcher::excluding(&a.paths, &a.exclude)?,
        deny_ips: cidrs(&a.deny_ips, "deny_ips")?,
        deny_countries: countries(a.deny_countries, "deny_countries")?,
        allow_ips: cidrs(&a.allow_ips, "allow_ips")?,
        allow_countries: countries(a.allow_countries, "allow_countries")?,
        status,
    };
    if rule.deny_ips.is_none()
        && rule.deny_countries.is_empty()
        && rule.allow_ips.is_none()
        && rule.allow_countries.is_empty()
    {
        return Err(Error::config(
            "access needs at least one of allow_ips, deny_ips, allow_countries, deny_countries",
        ));
    }
    Ok(rule)
}

pub(crate) fn build_https(h: HttpsSpec) -> Result<HttpsOnly> {
    if !matches!(h.status, 301 | 302 | 307 | 308) {
        return Err(Error::config(format!(
            "https_only status must be 301, 302, 307 or 308, not {}",
            h.status
        )));
    }
    let hsts = h.hsts_max_age.map(|age| {
        let mut v = format!("max-age={age}");
        if h.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if h.preload {
            v.push_str("; preload");
        }
        HeaderValue::from_str(&v).expect("digits and tokens")
    });
    if hsts.is_none() && (h.include_subdomains || h.preload) {
        return Err(Error::config(
            "https_only: include_subdomains and preload need hsts_max_age",
        ));
    }
    Ok(HttpsOnly { status: h.status, hsts })
}

fn joined(list: &[String]) -> Result<Option<HeaderValue>> {
    if list.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&list.join(", "))
        .map(Some)
        .map_err(|_| Error::config(format!("CORS list {list:?} is not a field value")))
}

fn cors_origins(list: &[String], credentials: bool) -> Result<CorsOrigins> {
    if list.iter().any(|o| o == "*") {
        if credentials {
            return Err(Error::config(
                "cors: origins=\"*\" cannot be combined with credentials=True (browsers refuse it); list the origins",
            ));
        }
        return Ok(CorsOrigins::Any);
    }
    if list.is_empty() {
        return Err(Error::config("cors needs at least one origin (or \"*\")"));
    }
    let mut exact = Vec::new();
    let mut wildcard = Vec::new();
    for o in list {
        let Some((scheme, host)) = o.split_once("://") else {
            return Err(Error::config(format!(
                "cors origin {o:?} must be scheme://host[:port] (as browsers send it), or \"*\""
            )));
        };
        if host.is_empty() || host.contains('/') || !matches!(scheme, "http" | "https") {
            return Err(Error::config(format!(
                "cors origin {o:?} must be scheme://host[:port] with no path"
            )));
        }
        match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && !rest.contains('*') => {
                wildcard.push((format!("{scheme}://"), rest.to_ascii_lowercase()))
            }
            _ if host.contains('*') => {
                return Err(Error::config(format!(
                    "cors origin {o:?}: * may only start the host (*.example.com)"
                )))
            }
            _ => exact.push(o.to_ascii_lowercase()),
        }
    }
    Ok(CorsOrigins::Listed { exact, wildcard })
}

pub(crate) fn build_cors(c: CorsSpec) -> Result<CorsRule> {
    let methods = c
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| Error::config(format!("cors: invalid method {m:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    if methods.is_empty() {
        return Err(Error::config("cors needs at least one method"));
    }
    let names: Vec<String> = methods.iter().map(|m| m.as_str().to_owned()).collect();
    let headers = if c.headers.iter().any(|h| h == "*") {
        if c.credentials {
            return Err(Error::config(
                "cors: headers=\"*\" cannot be combined with credentials=True; list the headers",
            ));
        }
        None
    } else {
        for h in &c.headers {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| Error::config(format!("cors: {h:?} is not a header name")))?;
        }
        Some(c.headers.iter().map(|h| h.to_ascii_lowercase()).collect())
    };
    Ok(CorsRule {
        paths: Matcher::excluding(&c.paths, &c.exclude)?,
        origins: cors_origins(&c.origins, c.credentials)?,
        methods_value: joined(&names)?.expect("at least one method"),
        methods,
        headers,
        expose: joined(&c.expose)?,
        credentials: c.credentials,
        max_age: HeaderValue::from(c.max_age),
    })
}

pub(crate) fn build_request_ids(r: RequestIdSpec) -> Result<RequestIds> {
    let header = HeaderName::from_bytes(r.header.as_bytes())
        .map_err(|_| Error::config(format!("request_ids header {:?} is not a header name", r.header)))?;
    Ok(RequestIds { header, trace: r.trace })
}

pub(crate) fn build_compress(c: CompressSpec) -> Result<CompressRule> {
    let mut codings = Vec::new();
    for name in &c.algorithms {
        let coding = Coding::parse(name)
            .ok_or_else(|| Error::config(format!("compress: unknown algorithm {name:?} (zstd, br or gzip)")))?;
        if codings.contains(&coding) {
            return Err(Error::config(format!("compress: {name:?} is listed twice")));
        }
        codings.push(coding);
    }
    if codings.is_empty() {
        return Err(Error::config(
            "compress needs at least one algorithm (zstd, br or gzip)",
        ));
    }
    let mut levels = Coding::ALL.map(Coding::default_level);
    for (name, level) in &c.levels {
        let coding = Coding::parse(name).ok_or_else(|| {
            Error::config(format!(
                "compress levels: unknown algorithm {name:?} (zstd, br or gzip)"
            ))
        })?;
        if !coding.levels().contains(level) {
            let r = coding.levels();
            return Err(Error::config(format!(
                "compress levels: {name} takes {}..={}, not {level}",
                r.start(),
                r.end()
            )));
        }
        levels[Coding::ALL.iter().position(|x| *x == coding).expect("listed")] = *level;
    }
    let types = match c.types.is_empty() {
        true => MediaTypes::new(DEFAULT_TYPES)?,
        false => MediaTypes::new(&c.types)?,
    };
    Ok(CompressRule {
        paths: Matcher::excluding(&c.paths, &c.exclude)?,
        codings,
        levels,
        min_bytes: c.min_bytes,
        types,
        max_streams: c.max_streams,
        streams: Default::default(),
    })
}
