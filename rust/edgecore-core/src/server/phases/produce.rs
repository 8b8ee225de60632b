//! What answers a request that no earlier phase answered: Python middleware, then a Python
//! route, then the origin. The cache phase calls it on a miss (through [`fetch_full`]); an
//! uncached request goes straight through it.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use super::{proxy, python};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::{Request, Response};
use crate::server::body::Body;
use crate::server::ctx::BodyState;
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::state::{Active, ServerState};

/// Middleware, then a Python route or the origin.
pub async fn produce(
    state: &ServerState,
    active: &Active,
    mut request: Request,
    body: BodyState,
    prior_xff: Option<String>,
) -> Result<(http::Response<Body>, Outcome)> {
    let plan = &active.plan;
    let python_free = plan.middleware.is_empty() && plan.routes.is_empty();
    let (request, body) = if python_free || !python::wanted(plan, request.path()) {
        (request, body)
    } else {
        // Boxed: the Python path's futures stay off the proxied request's, which is moved on
        // every request.
        let python = Box::pin(async {
            request.body = read_body(plan, body).await?;
            if let Some(r) = python::middleware(state, plan, &mut request).await? {
                return Ok(Err((r, Outcome::Middleware)));
            }
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

/// The request body, read whole (413 past `max_body_bytes`).
pub async fn read_body(plan: &Plan, body: BodyState) -> Result<Bytes> {
    match body {
        BodyState::Read(b) => Ok(b),
        BodyState::Unread(inc) => match Limited::new(inc, plan.limits.max_body_bytes).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                Err(Error::downstream(ErrorKind::BodyTooLarge, "request body too large"))
            }
            Err(e) => Err(Error::bad_request(format!("reading the request body: {e}"))),
        },
    }
}
