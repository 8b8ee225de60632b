//! What answers a request that no earlier phase answered: a Python route, else the origin. The
//! cache phase calls it on a miss (through [`fetch_for_cache`]); an uncached request goes straight
//! through it. (Python middleware ran before the cache: [`python::middleware_phase`].)

use bytes::Bytes;
use http_body_util::BodyExt;

use super::{proxy, python};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::{Request, Response};
use crate::server::body::Body;
use crate::server::ctx::{BodyState, CompressChoice};
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

/// What a cache fill got.
pub enum Fill {
    /// The whole response, its body in memory (it may be stored).
    Whole(Response),
    /// A response too large to store, streaming to the client (the bytes read so far first).
    Streaming(http::Response<Body>),
}

/// [`produce`] for the cache: the body is read into memory up to `limit` bytes (the most the
/// cache could store); a larger one streams through instead, so a fill holds at most `limit`
/// bytes however large the response. With `compress`, the response is compressed as the rule
/// says: a whole one before it is stored, so each coding is stored once.
pub async fn fetch_for_cache(
    state: &ServerState,
    active: &Active,
    request: Request,
    body: BodyState,
    prior_xff: Option<String>,
    limit: usize,
    compress: Option<CompressChoice>,
) -> Result<Fill> {
    let method = compress.map(|_| request.method.clone());
    let fill = fetch_whole(state, active, request, body, prior_xff, limit).await?;
    let (Some(choice), Some(method)) = (compress, method) else {
        return Ok(fill);
    };
    let plan = &active.plan;
    Ok(match fill {
        Fill::Whole(r) => Fill::Whole(super::compress::apply_whole(plan, choice, &method, r).await?),
        Fill::Streaming(r) => Fill::Streaming(super::compress::apply(plan, choice, &method, r)),
    })
}

/// [`fetch_for_cache`] before compression.
async fn fetch_whole(
    state: &ServerState,
    active: &Active,
    request: Request,
    body: BodyState,
    prior_xff: Option<String>,
    limit: usize,
) -> Result<Fill> {
    let (resp, _) = produce(state, active, request, body, prior_xff).await?;
    if hyper::body::Body::size_hint(resp.body()).lower() > limit as u64 {
        return Ok(Fill::Streaming(resp));
    }
    let (parts, mut b) = resp.into_parts();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut held = 0;
    while let Some(frame) = b.frame().await {
        let frame = frame.map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                ErrorSource::Upstream,
                format!("reading the response: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        held += data.len();
        chunks.push(data);
        if held > limit {
            let head = Bytes::from(chunks.concat());
            let body = Body::Prefixed(Some(head), Box::new(b));
            return Ok(Fill::Streaming(http::Response::from_parts(parts, body)));
        }
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => Bytes::from(chunks.concat()),
    };
    Ok(Fill::Whole(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    }))
}
