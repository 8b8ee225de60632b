//! Python: middleware whose matcher matches runs first, in order (answering ends the pipeline,
//! continuing may edit the headers and target); then the first route whose pattern and method
//! match answers (a route that matches only by path gives 405 with `Allow`). Nothing here
//! touches Python: a job goes to the bridge and the reply comes back on a oneshot.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, StatusCode};

use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::Request;
use crate::server::body::Body;
use crate::server::bridge::{Job, JobKind, Reply};
use crate::server::ctx::{BodyState, Flow, RequestCtx};
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::respond::{from_core, status_response};
use crate::server::state::ServerState;
use crate::server::upstream::forwarding::strip_hop_by_hop;

/// Whether any route matches `path` (then the body is read for Python).
pub fn wanted(plan: &Plan, path: &str) -> bool {
    plan.routes.iter().any(|r| r.path.matches(path, &mut Vec::new()))
}

/// Whether any middleware's matcher matches `path` (checked before the phase's future is made:
/// a path every matcher excludes costs no allocation).
pub fn middleware_wanted(plan: &Plan, path: &str) -> bool {
    plan.middleware.iter().any(|m| m.matcher.matches(path))
}

/// The middleware phase, on a path [`middleware_wanted`]: before the cache and the origin (as
/// Next.js middleware runs before cached content is served), the middleware whose matcher
/// matches the path runs, in order, with the body read. One that answers ends the pipeline;
/// one that continues may have edited the headers and the target.
pub async fn middleware_phase(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) -> Result<Flow> {
    let body = std::mem::replace(&mut ctx.body, BodyState::Read(bytes::Bytes::new()));
    ctx.request.body = body.read(plan.limits.max_body_bytes).await?;
    ctx.body = BodyState::Read(ctx.request.body.clone());
    match middleware(state, plan, &mut ctx.request, &mut ctx.notes.response_headers).await? {
        Some(r) => {
            ctx.notes.outcome = Some(Outcome::Middleware);
            Ok(Flow::Answer(r))
        }
        None => Ok(Flow::Continue),
    }
}

fn failed(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Internal, ErrorSource::Internal, msg)
}

/// Runs the matching middleware in order: Some(response) when one answers; otherwise the
/// request as the middleware left it, and the fields they asked to add to the response in
/// `response_headers`.
pub async fn middleware(
    state: &ServerState,
    plan: &Plan,
    request: &mut Request,
    response_headers: &mut Vec<(http::header::HeaderName, HeaderValue)>,
) -> Result<Option<http::Response<Body>>> {
    if plan.middleware.is_empty() {
        return Ok(None);
    }
    // Middleware may change the target: the path it matches on is a refcounted copy.
    let target = request.uri.clone();
    let path = crate::http::uri_path(&target);
    for mw in plan.middleware.iter().filter(|m| m.matcher.matches(path)) {
        match Box::pin(call(state, plan, JobKind::Middleware(mw.handler), request.clone())).await? {
            Reply::Respond(r) => return Ok(Some(from_core(r))),
            Reply::Continue(edited, add) => {
                request.headers = edited.headers;
                request.uri = edited.uri;
                response_headers.extend(add);
                // What Python set goes through the same door as the client's request.
                strip_hop_by_hop(request.headers.as_map_mut());
            }
            Reply::Failed(msg) => return Err(failed(msg)),
        }
    }
    Ok(None)
}

/// What the route phase found for a request.
pub enum Routed {
    /// A route answered (or a route matched the path but not the method: 405).
    Answered(http::Response<Body>, Outcome),
    /// No route matched: the request goes on (to the origin).
    NotMine(Request),
}

/// Runs the first route matching the request's path and method.
pub async fn route(state: &ServerState, plan: &Plan, mut request: Request) -> Result<Routed> {
    let path = request.path();
    let mut allowed: Vec<&Method> = Vec::new();
    for route in &plan.routes {
        let mut params = Vec::new();
        if !route.path.matches(path, &mut params) {
            continue;
        }
        let ok = if route.any_method {
            true
        } else if route.methods.is_empty() {
            request.method == Method::GET || request.method == Method::HEAD
        } else {
            route.methods.contains(&request.method)
        };
        if !ok {
            allowed.extend(route.methods.iter());
            continue;
        }
        request.edge.params = params.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect();
        return match Box::pin(call(state, plan, JobKind::Route(route.handler), request)).await? {
            Reply::Respond(r) => Ok(Routed::Answered(from_core(r), Outcome::Handler)),
            Reply::Continue(..) => Err(failed("a route handler must return a response")),
            Reply::Failed(msg) => Err(failed(msg)),
        };
    }
    if allowed.is_empty() {
        return Ok(Routed::NotMine(request));
    }
    let mut r = status_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    r.headers_mut().insert(
        http::header::ALLOW,
        HeaderValue::from_str(&list.join(", ")).expect("methods are tokens"),
    );
    Ok(Routed::Answered(r, Outcome::MethodNotAllowed))
}

/// Hands one job to the bridge and waits for the reply: 503 when the queue is full, 504 past
/// the handler timeout, a failed reply when the handler dropped it.
pub async fn call(state: &ServerState, plan: &Plan, kind: JobKind, mut request: Request) -> Result<Reply> {
    if !plan.location.is_empty() {
        request.edge.location = Some(plan.location.clone());
    }
    let bridge = state.bridge.as_ref().ok_or_else(|| failed("no Python bridge"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !bridge.submit(Job {
        kind,
        request,
        reply: tx,
    }) {
        return Err(Error::new(
            ErrorKind::Overloaded,
            ErrorSource::Internal,
            "the Python work queue is full",
        ));
    }
    match tokio::time::timeout(plan.timeouts.handler, rx).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Ok(Reply::Failed("the handler ended without answering".into())),
        Err(_) => Err(Error::new(
            ErrorKind::UpstreamTimeout,
            ErrorSource::Internal,
            "the handler timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, plan, state, FakeBridge};
    use http::header::HeaderName;

    fn app() -> serde_json::Value {
        serde_json::json!({
            "middleware": [{"matcher": ["/admin/*"], "handler": 7}],
            "routes": [{"path": "/hello/:name", "methods": ["GET"], "handler": 1}],
        })
    }

    #[test]
    fn a_route_answers_through_the_bridge_with_its_params() {
        let bridge = FakeBridge::answering(|job| {
            let name = job
                .request
                .edge
                .params
                .iter()
                .find(|(k, _)| &**k == "name")
                .map(|p| p.1.clone())
                .unwrap_or_default();
            Reply::Respond(crate::http::Response::new(200, format!("hi {name}")).unwrap())
        });
        let s = state(plan(app()), Some(bridge.clone()));
        let p = plan(app());
        let req = Request::new(Method::GET, "/hello/bob".parse().unwrap());
        match block_on(route(&s, &p, req)).unwrap() {
            Routed::Answered(r, Outcome::Handler) => assert_eq!(r.status(), 200),
            _ => panic!("not answered"),
        }
        assert_eq!(bridge.kinds(), [JobKind::Route(1)]);
        // Another method: 405 with Allow, and Python is not called.
        let req = Request::new(Method::POST, "/hello/bob".parse().unwrap());
        match block_on(route(&s, &p, req)).unwrap() {
            Routed::Answered(r, Outcome::MethodNotAllowed) => assert_eq!(r.headers()["allow"], "GET, HEAD"),
            _ => panic!("not 405"),
        }
        let req = Request::new(Method::GET, "/other".parse().unwrap());
        assert!(matches!(block_on(route(&s, &p, req)).unwrap(), Routed::NotMine(_)));
        assert_eq!(bridge.kinds().len(), 1);
        // HEAD is answered by the GET route.
        let req = Request::new(Method::HEAD, "/hello/bob".parse().unwrap());
        assert!(matches!(
            block_on(route(&s, &p, req)).unwrap(),
            Routed::Answered(_, Outcome::Handler)
        ));
        // methods="*": any method.
        let any = serde_json::json!({"routes": [{"path": "/any", "methods": ["*"], "handler": 2}]});
        let (p, s) = (plan(any.clone()), state(plan(any), Some(bridge.clone())));
        for m in [Method::DELETE, Method::PATCH, Method::OPTIONS] {
            let req = Request::new(m, "/any".parse().unwrap());
            assert!(matches!(
                block_on(route(&s, &p, req)).unwrap(),
                Routed::Answered(_, Outcome::Handler)
            ));
        }
    }

    #[test]
    fn middleware_continues_with_its_edits_or_answers() {
        let bridge = FakeBridge::answering(|job| {
            if job.request.header("x-token") == Some("ok") {
                let mut edited = job.request.clone();
                edited
                    .headers
                    .as_map_mut()
                    .insert("x-checked", HeaderValue::from_static("1"));
                Reply::Continue(
                    edited,
                    vec![(HeaderName::from_static("x-mw"), HeaderValue::from_static("1"))],
                )
            } else {
                Reply::Respond(crate::http::Response::new(403, "no").unwrap())
            }
        });
        let (p, s) = (plan(app()), state(plan(app()), Some(bridge.clone())));
        let mut req = Request::new(Method::GET, "/admin/x".parse().unwrap());
        let mut add = Vec::new();
        let answered = block_on(middleware(&s, &p, &mut req, &mut add)).unwrap();
        assert_eq!(answered.unwrap().status(), 403);
        req.headers
            .as_map_mut()
            .insert("x-token", HeaderValue::from_static("ok"));
        assert!(block_on(middleware(&s, &p, &mut req, &mut add)).unwrap().is_none());
        assert_eq!(req.header("x-checked"), Some("1"));
        assert_eq!(add.len(), 1);
        // Off its matcher the middleware is not called.
        let mut req = Request::new(Method::GET, "/public".parse().unwrap());
        assert!(block_on(middleware(&s, &p, &mut req, &mut add)).unwrap().is_none());
        assert_eq!(bridge.kinds().len(), 2);
    }

    #[test]
    fn a_dropped_reply_fails_and_a_full_queue_is_503() {
        let (p, s) = (plan(app()), state(plan(app()), Some(FakeBridge::dropping())));
        let req = Request::new(Method::GET, "/hello/x".parse().unwrap());
        assert_eq!(block_on(route(&s, &p, req)).err().unwrap().http_status(), 500);
        let s = state(plan(app()), Some(FakeBridge::full()));
        let req = Request::new(Method::GET, "/hello/x".parse().unwrap());
        assert_eq!(block_on(route(&s, &p, req)).err().unwrap().http_status(), 503);
    }
}
