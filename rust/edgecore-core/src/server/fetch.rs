//! `env.fetch`: a handler or middleware calls the origin through the server's own proxy (the
//! same origin choice, connection pools, forwarding fields and timeouts as a proxied request)
//! and gets the whole response back to edit, as a Worker's `fetch(request)` does. The response
//! body is read into memory up to a bound; a larger one is an error, never an unbounded buffer.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};

use super::ctx::BodyState;
use super::phases::proxy;
use super::state::ServerState;
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::{Request, Response};

/// Calls the origin for a running server; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Fetcher {
    pub(crate) shared: Arc<ServerState>,
}

impl Fetcher {
    /// Sends `request` to its origin (chosen as for a proxied request) and reads the response,
    /// refusing one whose body exceeds `max_bytes`.
    pub async fn fetch(&self, mut request: Request, max_bytes: usize) -> Result<Response> {
        let active = self.shared.active.load_full();
        let body = std::mem::take(&mut request.body);
        let (resp, _) = proxy::forward(&self.shared, &active, request, BodyState::Read(body), None).await?;
        let (parts, body) = resp.into_parts();
        let body = match Limited::new(body, max_bytes).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(Error::new(
                    ErrorKind::Upstream,
                    ErrorSource::Upstream,
                    format!("the origin's response is larger than fetch's limit of {max_bytes} bytes"),
                ))
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Upstream,
                    ErrorSource::Upstream,
                    format!("reading the origin's response: {e}"),
                ))
            }
        };
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, plan, state, FakeOrigin};

    #[test]
    fn fetch_reads_the_origins_answer_within_its_bound() {
        block_on(async {
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-o: 1\r\n\r\nhello";
            let fetcher = |origin: &FakeOrigin| Fetcher {
                shared: state(plan(serde_json::json!({"origin": origin.url()})), None),
            };
            let mut req = Request::new(http::Method::POST, "/api/x".parse().unwrap());
            req.body = "ping".into();
            let origin = FakeOrigin::start(answer).await;
            let r = fetcher(&origin).fetch(req.clone(), 1024).await.unwrap();
            assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"hello"[..]));
            assert_eq!(r.headers["x-o"], "1");
            let seen = origin.received().await;
            assert!(seen.starts_with("POST /api/x HTTP/1.1\r\n"), "{seen}");
            let origin = FakeOrigin::start(answer).await;
            let err = fetcher(&origin).fetch(req, 3).await.unwrap_err();
            assert!(err.context.contains("larger than fetch's limit"), "{}", err.context);
        });
    }
}
