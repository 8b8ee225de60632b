//! Redirects and rewrites: the first redirect whose paths (and conditions) match answers with
//! its status and rendered `Location`; otherwise the first matching rewrite replaces the path
//! (the query is kept) for every later phase and the origin. The client sees no rewrite.

use crate::error::{Error, Result};
use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::respond::from_core;

/// Answers with the first matching redirect.
pub fn redirect(plan: &Plan, ctx: &mut RequestCtx) -> Result<Flow> {
    let path = ctx.request.path();
    for r in &plan.redirects {
        if r.paths.matches(path) && r.when.hold(&ctx.request) {
            let location = r.to.render(&ctx.request);
            ctx.notes.outcome = Some(Outcome::Redirect);
            return Ok(Flow::Answer(from_core(crate::http::redirect(&location, r.status)?)));
        }
    }
    Ok(Flow::Continue)
}

/// Applies the first matching rewrite to the request's target.
pub fn rewrite(plan: &Plan, ctx: &mut RequestCtx) -> Result<()> {
    let req = &ctx.request;
    let path = req.path();
    let Some(r) = plan.rewrites.iter().find(|r| r.paths.matches(path) && r.when.hold(req)) else {
        return Ok(());
    };
    let new_path = r.to.render(req);
    let target = match req.uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    ctx.request.uri = target
        .parse()
        .map_err(|_| Error::config(format!("rewrite produced an invalid path {target:?}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan, with_country};

    #[test]
    fn a_redirect_answers_only_where_it_matches() {
        let p = plan(serde_json::json!({"redirects": [
            {"to": "https://example.de{path}", "status": 301, "paths": ["/shop/*"], "when": {"country": ["de"]}},
        ]}));
        let mut c = with_country(ctx_with("/shop/x", &[]), "DE");
        match redirect(&p, &mut c).unwrap() {
            Flow::Answer(r) => {
                assert_eq!(r.status(), 301);
                assert_eq!(r.headers()["location"], "https://example.de/shop/x");
            }
            Flow::Continue => panic!("no redirect"),
        }
        let mut fr = with_country(ctx_with("/shop/x", &[]), "FR");
        assert!(matches!(redirect(&p, &mut fr).unwrap(), Flow::Continue));
        let mut other = with_country(ctx_with("/blog", &[]), "DE");
        assert!(matches!(redirect(&p, &mut other).unwrap(), Flow::Continue));
    }

    #[test]
    fn a_rewrite_replaces_the_path_and_keeps_the_query() {
        let p = plan(serde_json::json!({"rewrites": [{"to": "/v2{path}", "paths": ["/api/*"]}]}));
        let mut c = ctx_with("/api/x?q=1", &[]);
        rewrite(&p, &mut c).unwrap();
        assert_eq!(c.request.uri, "/v2/api/x?q=1");
        let mut c = ctx_with("/other", &[]);
        rewrite(&p, &mut c).unwrap();
        assert_eq!(c.request.uri, "/other");
    }
}
