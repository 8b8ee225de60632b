//! What answers a request that no earlier phase answered: a Python route, else the origin. The
//! cache phase calls it on a miss (through [`fetch_full`]); an uncached request goes straight
//! through it. (Python middleware ran before the cache: [`python::middleware_phase`].)

use http_body_util::BodyExt;

use super::{proxy, python};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::{Request, Response};
use crate::server::body::Body;
use crate::server::ctx::BodyState;
use crate::server::metrics::Outcome;
use crate::server::state::{Active, ServerState};

/// A Python route, or the origin.
pub async fn produce(
    state: &ServerState,
    active: &Active,
    mut request: Request,
    body: BodyState,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let plan = &active.plan;
    let (request, body) = if plan.routes.is_empty() || !python::wanted(plan, request.path()) {
        (request, body)
    } else {
        // Boxed: the Python path's futures stay off the proxied request's, which is moved on
        // every request.
        let python = Box::pin(async {
            request.body = body.read(plan.limits.max_body_bytes).await?;
            let body = BodyState::Read(request.body.clone());
            match python::route(state, plan, request).await? {
                python::Routed::Answered(r, outcome) => Ok(Err((r, outcome))),
                python::Routed::NotMine(r) => Ok(Ok((r, body))),
            }
        });
        match python.await? {
            Err(answered) => return Ok(answered),
            Ok(going_on) => going_on,
        }
    };
    proxy::forward(state, active, request, body, prior_xff).await
}

/// [`produce`] with the response body read into memory (for the cache).
pub async fn fetch_full(
    state: &ServerState,
    active: &Active,
    request: Request,
    body: BodyState,
    prior_xff: Option<String>,
) -> Result<Response> {
    let (resp, _) = produce(state, active, request, body, prior_xff).await?;
    let (parts, b) = resp.into_parts();
    let bytes = b
        .collect()
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                ErrorSource::Upstream,
                format!("reading the response: {e}"),
            )
        })?
        .to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: bytes,
    })
}
