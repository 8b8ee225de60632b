//! JWT: on a path with a JWT rule, a request needs a valid token (`Authorization: Bearer`, or
//! the rule's cookie), or it is answered 401 with a Bearer challenge. The verified claims join
//! the request (templates, rate-limit keys, handlers) and the configured ones become headers
//! toward the origin. An unknown `kid` refreshes a remote JWK Set once (rate-limited) and retries.
//! A verified token is remembered by the rule (`auth::token_cache`): the next request with it
//! costs one hash and one lookup, and its `exp`/`nbf`/`iat` are still checked against the clock.

use std::sync::Arc;

use http::header::HeaderValue;

use crate::auth::{claim_text, TimeClaims};
use crate::error::{Error, ErrorKind};
use crate::server::ctx::{Flow, RequestCtx};
use crate::server::metrics::{Outcome, Policy};
use crate::server::plan::{JwtRule, Plan, VerifiedToken};
use crate::server::respond::unauthorized;
use crate::server::state::ServerState;

/// Longest claim value sent as a header.
const MAX_CLAIM_HEADER: usize = 4096;

/// A claim's text as a header value. The rule: visible ASCII and spaces pass as they are; a
/// value with other characters (non-ASCII) has every byte outside visible ASCII, and every `%`,
/// percent-encoded as UTF-8 (RFC 3986 §2.1), so `José` becomes `Jos%C3%A9`. None (the request
/// fails with 401, never leaving the header to the client) for control characters or a value
/// longer than 4096 bytes.
pub fn claim_header_value(text: &str) -> Option<HeaderValue> {
    if text.len() > MAX_CLAIM_HEADER || text.chars().any(|c| c.is_control()) {
        return None;
    }
    if text.is_ascii() {
        return HeaderValue::from_str(text).ok();
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    (out.len() <= MAX_CLAIM_HEADER)
        .then(|| HeaderValue::from_str(&out).ok())
        .flatten()
}

/// Verifies the token of a request on a JWT rule's paths. In shadow mode the verdict is
/// recorded and the request goes on either way (without claims when the token failed).
pub async fn verify(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) -> Flow {
    let Some(rule) = plan.jwt.iter().find(|r| r.paths.matches(ctx.request.path())) else {
        return Flow::Continue;
    };
    let flow = verify_rule(state, rule, ctx).await;
    if !rule.shadow {
        return flow;
    }
    let rejected = matches!(flow, Flow::Answer(_));
    if rejected {
        ctx.notes.outcome = None;
        ctx.notes.credentialed = false;
    }
    ctx.notes.shadow.push((Policy::Jwt, rejected));
    Flow::Continue
}

async fn verify_rule(state: &ServerState, rule: &JwtRule, ctx: &mut RequestCtx) -> Flow {
    let request = &ctx.request;
    // The token's bytes as sent: the verified-token cache is looked up with them, and the
    // verifier checks them (a token is base64url and dots; anything else fails there).
    let bearer = request
        .headers
        .get(&http::header::AUTHORIZATION)
        .and_then(|a| a.strip_prefix(b"Bearer ").or_else(|| a.strip_prefix(b"bearer ")))
        .map(<[u8]>::trim_ascii);
    let from_cookie = rule
        .cookie
        .as_deref()
        .and_then(|c| request.cookie(c))
        .map(str::as_bytes);
    if let (Some(b), Some(c)) = (bearer, from_cookie) {
        if b != c {
            // Only the verified credential may reach the origin: with two, which one the origin
            // reads is not ours to know.
            ctx.notes.outcome = Some(Outcome::JwtRejected);
            return Flow::Answer(unauthorized(Some(&Error::downstream(
                ErrorKind::TokenInvalidClaim,
                "two different credentials (Authorization and cookie)",
            ))));
        }
    }
    let token = bearer.or(from_cookie);
    ctx.notes.credentialed = bearer.is_none() && from_cookie.is_some();
    let Some(token) = token else {
        ctx.notes.outcome = Some(Outcome::JwtRejected);
        return Flow::Answer(unauthorized(None));
    };
    let t = state.now();
    let verified = match cached(rule, token, t) {
        Some(v) => Ok(v),
        None => verify_token(rule, token, t).await,
    };
    match verified {
        Ok(v) => {
            let headers = ctx.request.headers.as_map_mut();
            for (name, value) in v.headers.iter() {
                headers.insert(name.clone(), value.clone());
            }
            ctx.request.edge.claims = Some(v.claims.clone());
            Flow::Continue
        }
        Err(e) => {
            ctx.notes.outcome = Some(Outcome::JwtRejected);
            Flow::Answer(unauthorized(Some(&e)))
        }
    }
}

/// A verification this rule remembers, if its time claims still hold at `now` (one that no
/// longer holds is dropped, and the token is verified again, to get the precise error).
fn cached(rule: &JwtRule, token: &[u8], now: f64) -> Option<Arc<VerifiedToken>> {
    let cache = rule.cache.as_ref()?;
    let v = cache.get(token, rule.verifier.key_generation())?;
    if rule.verifier.check_times(&v.times, now).is_ok() {
        return Some(v);
    }
    cache.remove(token);
    None
}

/// Verifies `token` (refreshing a remote key set once on an unknown `kid`), renders the rule's
/// claim headers, and remembers the result.
async fn verify_token(rule: &JwtRule, token: &[u8], now: f64) -> Result<Arc<VerifiedToken>, Error> {
    let generation = rule.verifier.key_generation();
    let mut result = rule.verifier.verify_now(token, now);
    if matches!(&result, Err(e) if e.kind == ErrorKind::TokenKeyNotFound) {
        if let Some(remote) = rule.verifier.remote_jwks() {
            // Boxed: a rare path keeps its (large) future off the per-request one, which is
            // moved on every request.
            if Box::pin(remote.refresh_if_allowed()).await {
                result = rule.verifier.verify_now(token, now);
            }
        }
    }
    let claims = result?;
    let mut headers = Vec::with_capacity(rule.claims_to_headers.len());
    for (claim, header) in &rule.claims_to_headers {
        let Some(v) = claims.get(claim) else { continue };
        let Some(v) = claim_header_value(&claim_text(v)) else {
            return Err(Error::downstream(
                ErrorKind::TokenInvalidClaim,
                format!("claim {claim:?} cannot be a header value"),
            ));
        };
        headers.push((header.clone(), v));
    }
    let v = Arc::new(VerifiedToken {
        times: TimeClaims::of(&claims),
        claims: Arc::new(claims),
        headers: headers.into(),
    });
    if let Some(cache) = &rule.cache {
        // The generation read before verifying: a rotation meanwhile makes this entry stale.
        cache.insert(token, generation, v.times.exp, v.clone(), now);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{block_on, ctx_with, hs256_token, plan_with_jwt, state};

    #[test]
    fn claims_become_header_values_by_the_stated_rule() {
        assert_eq!(claim_header_value("alice").unwrap(), "alice");
        assert_eq!(claim_header_value("50% off").unwrap(), "50% off");
        assert_eq!(claim_header_value("José 50%").unwrap(), "Jos%C3%A9 50%25");
        for bad in ["a\r\nx-role: admin", "a\0b", "tab\tx", &"x".repeat(4097)] {
            assert!(claim_header_value(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_claim_that_cannot_be_a_header_or_a_second_credential_is_401() {
        let p = plan_with_jwt(serde_json::json!({"role": "x-user-role"}));
        let s = state(plan_with_jwt(serde_json::json!({})), None);
        let token = hs256_token(&serde_json::json!({"role": "admin\r\nx-evil: 1", "exp": 4_000_000_000u64}));
        let mut c = ctx_with("/api/x", &[("authorization", &format!("Bearer {token}"))]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Answer(r) if r.status() == 401));
        let good = hs256_token(&serde_json::json!({"role": "user", "exp": 4_000_000_000u64}));
        let mut with_cookie = plan_with_jwt(serde_json::json!({}));
        with_cookie.jwt[0].cookie = Some("session".into());
        let mut c = ctx_with(
            "/api/x",
            &[
                ("authorization", &format!("Bearer {good}")),
                ("cookie", "session=other"),
            ],
        );
        assert!(matches!(block_on(verify(&s, &with_cookie, &mut c)), Flow::Answer(r) if r.status() == 401));
        let mut c = ctx_with("/api/x", &[("cookie", &format!("session={good}"))]);
        assert!(matches!(block_on(verify(&s, &with_cookie, &mut c)), Flow::Continue));
    }

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
        // Spaces around the token are not part of it; other bytes (a non-ASCII space, bytes
        // that are not UTF-8) are, and fail the signature.
        let mut c = ctx_with("/api/x", &[("authorization", &format!("bearer  {token} "))]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Continue));
        for junk in [&b"\xc2\x85"[..], b"\xff"] {
            let mut value = format!("Bearer {token}").into_bytes();
            value.extend_from_slice(junk);
            let mut c = ctx_with("/api/x", &[]);
            let value = http::HeaderValue::from_bytes(&value).unwrap();
            c.request
                .headers
                .as_map_mut()
                .insert(http::header::AUTHORIZATION, value);
            assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Answer(r) if r.status() == 401));
        }
        // Off the rule's paths, nothing is checked.
        let mut c = ctx_with("/public", &[]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Continue));
    }

    #[test]
    fn a_remembered_token_still_expires_and_keeps_its_headers() {
        let p = plan_with_jwt(serde_json::json!({"sub": "x-user-id"}));
        let s = state(plan_with_jwt(serde_json::json!({})), None);
        let exp = s.now() + 60.0;
        let token = hs256_token(&serde_json::json!({"sub": "alice", "exp": exp}));
        for _ in 0..3 {
            let mut c = ctx_with(
                "/api/x",
                &[("authorization", &format!("Bearer {token}")), ("x-user-id", "admin")],
            );
            assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Continue));
            assert_eq!(
                c.request.header("x-user-id"),
                Some("alice"),
                "the claim, not the client's value"
            );
            assert_eq!(c.request.edge.claims.as_ref().unwrap()["sub"], "alice");
        }
        let cache = p.jwt[0].cache.as_ref().unwrap();
        assert_eq!(cache.len(), 1);
        // A tampered copy of a remembered token is verified, and fails.
        let mut forged = token.clone().into_bytes();
        *forged.last_mut().unwrap() ^= 1;
        let forged = String::from_utf8(forged).unwrap();
        let mut c = ctx_with("/api/x", &[("authorization", &format!("Bearer {forged}"))]);
        assert!(matches!(block_on(verify(&s, &p, &mut c)), Flow::Answer(r) if r.status() == 401));
        // Past its exp, the remembered token is refused and forgotten.
        s.clock_offset_ns
            .store(61_000_000_000, std::sync::atomic::Ordering::Relaxed);
        let mut c = ctx_with("/api/x", &[("authorization", &format!("Bearer {token}"))]);
        match block_on(verify(&s, &p, &mut c)) {
            Flow::Answer(r) => {
                assert_eq!(r.status(), 401);
                assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("expired"));
            }
            Flow::Continue => panic!("an expired token was let through from the cache"),
        }
        assert_eq!(cache.len(), 0);
    }
}
