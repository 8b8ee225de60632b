//! Forwarding to the origin: a pooled keep-alive hyper client.
//!
//! - Bodies stream both ways (the request body goes up as it arrives unless a policy already read
//!   it; the response body comes down as it arrives unless it is being cached).
//! - Hop-by-hop fields (RFC 9110 §7.6.1) and any field named in `Connection` are stripped in both
//!   directions; `X-Forwarded-For/Proto/Host` and `Via` are set. `Host` becomes the origin's.
//! - Connect timeout → 502, no response head within `origin_timeout` → 504, any other failure
//!   (refused, reset, malformed response) → 502. hyper never returns a connection that failed to
//!   the pool, and requests are never retried (`retry_canceled_requests(false)`), so a POST is
//!   sent at most once.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::plan::Origin;
use crate::error::{Error, ErrorKind, ErrorSource, Result};

/// The body type the server sends and forwards.
pub type Body = BoxBody<Bytes, BoxError>;
/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// Removes hop-by-hop fields and the fields `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The origin client.
pub struct Proxy {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    timeout: Duration,
}

impl Proxy {
    /// A client with these timeouts.
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .retry_canceled_requests(false)
            .build(https);
        Proxy { client, timeout }
    }

    /// Sends `parts` + `body` to `origin`. `client_ip` and the original scheme/host feed the
    /// X-Forwarded-* fields (`scheme`: how the client reached us); `prior_xff` is the X-Forwarded-For chain we trust (from a trusted peer).
    pub async fn forward(
        &self,
        origin: &Origin,
        mut parts: http::request::Parts,
        body: Body,
        client_ip: IpAddr,
        scheme: &'static str,
        prior_xff: Option<String>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri = http::Uri::builder()
            .scheme(origin.scheme.clone())
            .authority(origin.authority.clone())
            .path_and_query(format!("{}{pq}", origin.base_path))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    ErrorSource::Internal,
                    format!("building the origin URI: {e}"),
                )
            })?;
        let h = &mut parts.headers;
        let original_host = h.get(http::header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        strip_hop_by_hop(h);
        h.remove(http::header::HOST);
        let xff = match prior_xff {
            Some(chain) if !chain.is_empty() => format!("{chain}, {client_ip}"),
            _ => client_ip.to_string(),
        };
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&xff).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
        if let Some(host) = original_host {
            h.insert("x-forwarded-host", host);
        }
        h.append(http::header::VIA, HeaderValue::from_static("1.1 edgecore"));
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let req = http::Request::from_parts(parts, body);
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Error::new(
                ErrorKind::UpstreamTimeout,
                ErrorSource::Upstream,
                "the origin did not answer in time",
            )),
            Ok(Err(e)) => {
                let timeout = std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("timed out"));
                let kind = if timeout {
                    ErrorKind::UpstreamTimeout
                } else {
                    ErrorKind::Upstream
                };
                Err(Error::new(
                    kind,
                    ErrorSource::Upstream,
                    format!("origin request failed: {e}"),
                ))
            }
            Ok(Ok(mut resp)) => {
                strip_hop_by_hop(resp.headers_mut());
                resp.headers_mut()
                    .append(http::header::VIA, HeaderValue::from_static("1.1 edgecore"));
                Ok(resp)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
