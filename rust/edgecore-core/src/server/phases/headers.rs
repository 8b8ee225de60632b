//! Header templates: request templates are rendered into the request toward the origin or
//! handler; response templates are rendered now (they depend only on the request and what the
//! edge learned about it, so the request can move on) and set on whatever answers from the cache,
//! a handler or the origin. A value that is not a valid field value is skipped, and so is a
//! template with an unknown value and no default (`{geo.region}` for an unlocated client: no
//! header, rather than an empty one; `{geo.region|unknown}` sends `unknown`).

use http::header::HeaderValue;

use crate::server::ctx::RequestCtx;
use crate::server::plan::Plan;

/// Renders the matching rules' request templates into the request and their response
/// templates into the notes.
pub fn render(plan: &Plan, ctx: &mut RequestCtx) {
    if plan.headers.is_empty() {
        return;
    }
    // The path borrows the target only, so the headers can change meanwhile.
    let path = crate::http::uri_path(&ctx.request.uri);
    for rule in plan.headers.iter().filter(|r| r.paths.matches(path)) {
        if !rule.when.hold(&ctx.request) {
            continue;
        }
        for (name, t) in &rule.request {
            if let Some(Ok(v)) = t.render_present(&ctx.request).map(|s| HeaderValue::from_str(&s)) {
                ctx.request.headers.as_map_mut().insert(name.clone(), v);
            }
        }
    }
    for rule in plan.headers.iter().filter(|r| r.paths.matches(path)) {
        if !rule.when.hold(&ctx.request) {
            continue;
        }
        for (name, t) in &rule.response {
            if let Some(Ok(v)) = t.render_present(&ctx.request).map(|s| HeaderValue::from_str(&s)) {
                ctx.notes.response_headers.push((name.clone(), v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan, with_country};

    #[test]
    fn templates_render_into_the_request_and_the_notes() {
        let p = plan(serde_json::json!({"headers": [
            {"paths": ["/shop/*"], "request": {"x-country": "{geo.country}"}, "response": {"x-path": "{path}"}},
            {"paths": ["/*"], "request": {"x-bad": "a{path}"}},
        ]}));
        let mut c = with_country(ctx_with("/shop/x", &[]), "DE");
        render(&p, &mut c);
        assert_eq!(c.request.header("x-country"), Some("DE"));
        assert_eq!(c.request.header("x-bad"), Some("a/shop/x"));
        assert_eq!(c.notes.response_headers.len(), 1);
        assert_eq!(c.notes.response_headers[0].1, "/shop/x");
        let mut c = ctx_with("/blog", &[]);
        render(&p, &mut c);
        assert!(c.request.header("x-country").is_none() && c.notes.response_headers.is_empty());
    }
}
