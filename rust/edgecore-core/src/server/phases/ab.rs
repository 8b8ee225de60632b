//! A/B assignment: on an experiment's paths, the client keeps the variant in its sticky cookie
//! (`ec-ab-NAME` by default), or gets one assigned from its unit id (the unit cookie, `ec-uid` by
//! default, made when missing), with the cookies set on the response (`Secure` when the request
//! came over TLS). The variant goes to the origin as `x-ab-NAME` and joins the cache key. Never
//! answers.

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::HeaderValue;

use crate::error::{Error, Result};
use crate::server::ctx::RequestCtx;
use crate::server::plan::Plan;
use crate::server::state::ServerState;

/// A new unit id: a per-server counter mixed with a random seed and the time.
fn new_uid(state: &ServerState) -> String {
    let n = state.uid_counter.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        state.uid_seed.hash_one(n),
        state.uid_seed.hash_one(crate::clock::now().to_bits() ^ n)
    )
}

/// Assigns the request to a variant of each experiment whose paths match.
pub fn assign(state: &ServerState, plan: &Plan, ctx: &mut RequestCtx) -> Result<()> {
    // The path borrows the target only, so the headers and variants can change meanwhile.
    let path = crate::http::uri_path(&ctx.request.uri);
    // Over TLS the cookies say `Secure`: a browser never sends them back over plain HTTP.
    let secure = if ctx.request.edge.secure { "; Secure" } else { "" };
    for rule in plan.ab_tests.iter().filter(|r| r.paths.matches(path)) {
        let request = &ctx.request;
        let sticky = request
            .cookie(&rule.cookie)
            .filter(|v| rule.experiment.variants().any(|x| x == *v))
            .map(str::to_owned);
        let variant = match sticky {
            Some(v) => v,
            None => {
                let uid = match request.cookie(&rule.unit_cookie) {
                    Some(u) => u.to_owned(),
                    None => {
                        let uid = new_uid(state);
                        ctx.notes.set_cookies.push(
                            HeaderValue::from_str(&format!(
                                "{}={uid}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{secure}",
                                rule.unit_cookie
                            ))
                            .expect("ascii"),
                        );
                        uid
                    }
                };
                let v = rule.experiment.assign(&uid).to_owned();
                ctx.notes.set_cookies.push(
                    HeaderValue::from_str(&format!(
                        "{}={v}; Path=/; Max-Age=2592000; SameSite=Lax{secure}",
                        rule.cookie
                    ))
                    .map_err(|_| Error::config("variant names must be valid cookie values"))?,
                );
                v
            }
        };
        if let Ok(hv) = HeaderValue::from_str(&variant) {
            ctx.request.headers.as_map_mut().insert(rule.header.clone(), hv);
        }
        ctx.request
            .edge
            .variants
            .push((Arc::from(rule.experiment.name()), Arc::from(variant.as_str())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::phases::testing::{ctx_with, plan, state};

    #[test]
    fn a_new_client_is_assigned_and_a_returning_one_keeps_its_variant() {
        let spec = serde_json::json!({"ab_tests": [{"name": "hero", "variants": {"a": 50.0, "b": 50.0}, "paths": ["/shop/*"]}]});
        let (p, s) = (plan(spec.clone()), state(plan(spec), None));
        let mut c = ctx_with("/shop/x", &[]);
        assign(&s, &p, &mut c).unwrap();
        let v = c.request.edge.variant("hero").unwrap().to_owned();
        assert_eq!(c.request.header("x-ab-hero"), Some(v.as_str()));
        assert_eq!(c.notes.set_cookies.len(), 2, "a unit id and the variant");

        let other = if v == "a" { "b" } else { "a" };
        let mut c = ctx_with("/shop/x", &[("cookie", &format!("ec-ab-hero={other}"))]);
        assign(&s, &p, &mut c).unwrap();
        assert_eq!(c.request.edge.variant("hero"), Some(other));
        assert!(c.notes.set_cookies.is_empty());
        // A forged variant name is not kept.
        let mut c = ctx_with("/shop/x", &[("cookie", "ec-ab-hero=evil; ec-uid=u1")]);
        assign(&s, &p, &mut c).unwrap();
        assert_ne!(c.request.edge.variant("hero"), Some("evil"));
        assert_eq!(c.notes.set_cookies.len(), 1, "the variant only");
        assert!(!c.notes.set_cookies[0].to_str().unwrap().contains("Secure"));
        // Over TLS both cookies are Secure.
        let mut c = ctx_with("/shop/x", &[]);
        c.request.edge.secure = true;
        assign(&s, &p, &mut c).unwrap();
        assert!(c
            .notes
            .set_cookies
            .iter()
            .all(|v| v.to_str().unwrap().ends_with("; Secure")));
    }
}
