//! The outbound HTTP client (JWKS fetches; the origin proxy builds on the same connector):
//! hyper's pooled client over HTTP or HTTPS (rustls on aws-lc-rs, Mozilla's roots via webpki-roots).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, ErrorKind, ErrorSource, Result};

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

static CLIENT: OnceLock<HttpsClient> = OnceLock::new();

fn client() -> &'static HttpsClient {
    CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https)
    })
}

fn upstream(msg: String) -> Error {
    Error::new(ErrorKind::Upstream, ErrorSource::Upstream, msg)
}

/// GETs `url` and returns the body of a 200 response, at most `max_bytes` long, within `timeout`.
pub async fn get(url: &http::Uri, timeout: Duration, max_bytes: usize) -> Result<Bytes> {
    let fut = async {
        let resp = client()
            .get(url.clone())
            .await
            .map_err(|e| upstream(format!("GET {url}: {e}")))?;
        if resp.status() != http::StatusCode::OK {
            return Err(upstream(format!("GET {url}: status {}", resp.status())));
        }
        let body = Limited::new(resp.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| upstream(format!("GET {url}: body: {e}")))?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        Error::new(
            ErrorKind::UpstreamTimeout,
            ErrorSource::Upstream,
            format!("GET {url}: timed out"),
        )
    })?
}
