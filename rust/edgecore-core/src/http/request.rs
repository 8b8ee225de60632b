//! The request type shared by the parser, the policies and the server.
//!
//! A [`Request`] is the parsed message (`http` crate types, body as `Bytes`) plus [`EdgeInfo`]:
//! what the edge pipeline learned about the client (IP, geo, claims, variants, bot verdict, route
//! parameters). EdgeInfo is computed once, in Rust, and read by Python without re-parsing.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Uri, Version};

use super::headers::Headers;

pub use crate::geo::Geo as GeoInfo;

/// The client hint a browser sends to say whether it is a mobile device.
static SEC_CH_UA_MOBILE: http::HeaderName = http::HeaderName::from_static("sec-ch-ua-mobile");

/// What the edge pipeline knows about a request beyond its bytes.
#[derive(Debug, Clone, Default)]
pub struct EdgeInfo {
    /// The client IP after trusted-proxy resolution (None for a request parsed from bytes).
    pub client_ip: Option<IpAddr>,
    /// Geo-IP data for the client IP, when a database is configured and has it.
    pub geo: Option<Arc<GeoInfo>>,
    /// Verified JWT claims, when a JWT policy matched.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// A/B assignments: (experiment, variant).
    pub variants: Vec<(Arc<str>, Arc<str>)>,
    /// The bot detector's verdict (false when bot detection is not configured).
    pub is_bot: bool,
    /// Path parameters captured by a `/users/:id` pattern.
    pub params: Vec<(Arc<str>, String)>,
    /// The request arrived over TLS (the server terminated it).
    pub secure: bool,
    /// Where this edge runs (`Edge(location=...)`), set on requests handed to Python.
    pub location: Option<Arc<str>>,
}

impl EdgeInfo {
    /// "https" for a request that arrived over TLS, else "http".
    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }
}

impl EdgeInfo {
    /// The variant assigned for `experiment`, if any.
    pub fn variant(&self, experiment: &str) -> Option<&str> {
        self.variants
            .iter()
            .find(|(e, _)| &**e == experiment)
            .map(|(_, v)| &**v)
    }
}

/// An HTTP request: the message and what the edge learned about it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request method.
    pub method: Method,
    /// The request target as sent (origin-form, absolute-form, authority-form or `*`).
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1 (or HTTP/2 from the server).
    pub version: Version,
    /// Header fields: a case-insensitive multi-map.
    pub headers: Headers,
    /// The decoded body (chunked coding removed).
    pub body: Bytes,
    /// What the pipeline computed about the client.
    pub edge: EdgeInfo,
}

/// The parts of a request URL, derived from the target and the Host header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https` (from an absolute-form target; otherwise as the server was reached).
    pub scheme: String,
    /// The host name or address, without port ("" when unknown).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The path ("/" at least for origin-form targets).
    pub path: String,
    /// The query without `?` ("" when absent).
    pub query: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

impl Request {
    /// A request with no body and no headers.
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            version: Version::HTTP_11,
            headers: Headers::default(),
            body: Bytes::new(),
            edge: EdgeInfo::default(),
        }
    }

    /// The path of the target ("/" for `OPTIONS *` is not implied: `*` stays `*`).
    pub fn path(&self) -> &str {
        uri_path(&self.uri)
    }

    /// The query string without `?`.
    pub fn query(&self) -> &str {
        self.uri.query().unwrap_or("")
    }

    /// The first value of a header as a string, if present and visible ASCII.
    pub fn header<N: crate::http::headers::FieldName>(&self, name: N) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// The client's device class (the bot verdict, `Sec-CH-UA-Mobile`, the User-Agent).
    pub fn device(&self) -> crate::classify::Device {
        crate::classify::device::classify(
            self.header(&http::header::USER_AGENT),
            self.header(&SEC_CH_UA_MOBILE),
            self.edge.is_bot,
        )
    }

    /// Every cookie, in order (a name sent twice appears twice).
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .get_all("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
    }

    /// The value of cookie `name` (the first one, from any `Cookie` field), if present.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The URL: scheme and authority from an absolute-form target, else from the Host header.
    pub fn url(&self, default_scheme: &str) -> Url {
        let (host, port) = self.host_port();
        Url {
            scheme: self.uri.scheme_str().unwrap_or(default_scheme).to_owned(),
            host: host.to_owned(),
            port,
            path: self.path().to_owned(),
            query: self.query().to_owned(),
        }
    }

    /// Host and port, from an absolute-form target, else from the `Host` field; borrowed, not
    /// parsed into an owned authority.
    pub fn host_port(&self) -> (&str, Option<u16>) {
        match self.uri.authority() {
            Some(a) => (a.host(), a.port_u16()),
            None => self
                .headers
                .get_str(&http::header::HOST)
                .map_or(("", None), split_host_port),
        }
    }

    /// The request target as it appears on the request line.
    pub fn target(&self) -> String {
        if self.uri.scheme().is_none() && self.uri.authority().is_some() {
            return self.uri.authority().unwrap().to_string();
        }
        self.uri.to_string()
    }

    /// Serializes the request as HTTP/1.1 bytes with `Content-Length` framing.
    ///
    /// `Transfer-Encoding` and `Content-Length` fields are replaced by one `Content-Length`
    /// (written when the body is non-empty), so `parse(serialize(r))` gives back `r`'s method,
    /// target, version, other headers and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(256);
        let version = if self.version == Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        let _ = write!(head, "{} {} {}\r\n", self.method, self.target(), version);
        let mut out = head.into_bytes();
        for (name, value) in self.headers.iter() {
            if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// `host[:port]` (`[v6]:port` for an IPv6 literal) split in two, as `http::uri::Authority`
/// would; a port that is not a number leaves the whole text as the host.
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => (&s[..=end], s[end + 1..].strip_prefix(':')),
            None => (s, None),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    match port {
        None | Some("") => (host, None),
        Some(p) => match p.parse::<u16>() {
            Ok(n) => (host, Some(n)),
            Err(_) => (s, None),
        },
    }
}

/// The path of a request target ("" for the authority form of CONNECT).
pub fn uri_path(uri: &http::Uri) -> &str {
    if uri.scheme().is_none() && uri.authority().is_some() {
        // authority-form (CONNECT host:port): no path.
        return "";
    }
    uri.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_from_host_header_and_absolute_form() {
        let mut r = Request::new(Method::GET, "/a/b?x=1".parse().unwrap());
        r.headers
            .as_map_mut()
            .insert("host", "example.com:8080".parse().unwrap());
        let u = r.url("http");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str(), u.query.as_str()),
            ("example.com", Some(8080), "/a/b", "x=1")
        );
        assert_eq!(u.to_string(), "http://example.com:8080/a/b?x=1");
        let r = Request::new(Method::GET, "https://h.test/p".parse().unwrap());
        assert_eq!(r.url("http").to_string(), "https://h.test/p");
    }

    #[test]
    fn host_and_port_split_like_an_authority() {
        for text in [
            "example.com",
            "example.com:8080",
            "Ex.com:80",
            "[::1]",
            "[::1]:8443",
            "h:",
            "1.2.3.4:9",
        ] {
            let a: http::uri::Authority = text.parse().unwrap();
            assert_eq!(split_host_port(text), (a.host(), a.port_u16()), "{text}");
        }
        // Not an authority: the whole text is the host.
        assert_eq!(split_host_port("h:port"), ("h:port", None));
        assert_eq!(split_host_port("h:99999"), ("h:99999", None));
    }

    #[test]
    fn variants_lookup() {
        let mut e = EdgeInfo::default();
        e.variants.push((Arc::from("hero"), Arc::from("b")));
        assert_eq!(e.variant("hero"), Some("b"));
        assert_eq!(e.variant("other"), None);
    }
}
