//! JWT: on a path with a JWT rule, a request needs a valid token (`Authorization: Bearer`, or
//! the rule's cookie), or it is answered 401 with a Bearer challenge. The verified claims join
//! the request (templates, rate-limit keys, handlers) and the configured ones become headers
//! toward the origin. An unknown `kid` refreshes a remote JWK Set once (rate-limited) and retries.

use std::sync::Arc;

use http::header::HeaderValue;

use crate::auth::claim_text;
use crate::error::ErrorKind;
use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::Outcome;
use crate::server::plan::Plan;
use crate::server::respond::unauthorized;
use crate::server::state::ServerState;

/// Verifies the token of a request on a JWT rule's paths.
pub async fn verify(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let request = &ctx.request;
    let Some(rule) = plan.jwt.iter().find(|r| r.paths.matches(request.path())) else {
        return Flow::Continue;
    };
    let token = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
        .map(str::trim)
        .or_else(|| rule.cookie.as_deref().and_then(|c| request.cookie(c)));
    let Some(token) = token else {
        ctx.notes.outcome = Some(Outcome::JwtRejected);
        return Flow::Answer(unauthorized(None));
    };
    let t = state.now();
    let mut result = rule.verifier.verify_now(token.as_bytes(), t);
    if matches!(&result, Err(e) if e.kind == ErrorKind::TokenKeyNotFound) {
        if let Some(remote) = rule.verifier.remote_jwks() {
            // Boxed: a rare path keeps its (large) future off the per-request one, which is
            // moved on every request.
            if Box::pin(remote.refresh_if_allowed()).await {
                result = rule.verifier.verify_now(token.as_bytes(), t);
            }
        }
    }
    match result {
        Ok(claims) => {
            let headers = ctx.request.headers.as_map_mut();
            for (claim, header) in &rule.claims_to_headers {
                let Some(v) = claims.get(claim) else { continue };
                if let Ok(v) = HeaderValue::from_str(&claim_text(v)) {
                    headers.insert(header.clone(), v);
                }
            }
            ctx.request.edge.claims = Some(Arc::new(claims));
            Flow::Continue
        }
        Err(e) => {
            ctx.notes.outcome = Some(Outcome::JwtRejected);
            Flow::Answer(unauthorized(Some(&e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, ctx_with, hs256_token, plan_with_jwt, state};

    #[test]
    fn no_token_or_a_bad_one_is_401_and_a_good_one_continues_with_claims() {
        let p = plan_with_jwt(serde_json::json!({"sub": "x-user-id"}));
        let s = state(plan_with_jwt(serde_json::json!({})), None);
        let mut c = ctx_with("/api/x", &[]);
        match block_on(verify(&s, &p, &mut c)) {
            Flow::Answer(r) => {
                assert_eq!(r.status(), 401);
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
            }
            Flow::Continue => panic!("let through"),
        }
        let mut c = ctx_with("/api/x", &[("authorization", "Bearer not.a.token")]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Answer(r) if r.status() == 401));
        assert_eq!(c.notes.outcome, Some(Outcome::JwtRejected));

        let token = hs256_token(&serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64}));
        let mut c = ctx_with("/api/x", &[("authorization", &format!("Bearer {token}"))]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Continue));
        assert_eq!(c.request.header("x-user-id"), Some("alice"));
        assert_eq!(c.request.edge.claims.as_ref().unwrap()["sub"], "alice");
        // Off the rule's paths, nothing is checked.
        let mut c = ctx_with("/public", &[]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Continue));
    }
}
