//! The phases of the request pipeline, one file each, in the order [`super::pipeline::run`]
//! calls them. Each is a function of the plan and the [`super::ctx::RequestCtx`]; one that can
//! answer returns [`super::ctx::Flow`]: `Continue` lets the next phase run, `Answer` ends the
//! pipeline with that response. Each runs only when its policy is configured and matches the
//! request's path; unconfigured, a phase costs one emptiness check.
//!
//! | phase | file | answers with |
//! |---|---|---|
//! | front door: size limits, framing | [`front`] | 400, 413, 414, 431 (as errors) |
//! | canonical target and Host | [`canonical`] | 400, 405, 421 (as errors) |
//! | client IP, dev overrides, geo | [`client`] | never |
//! | request ID, trace context | [`request_id`] | never |
//! | access lists, then HTTPS only | [`access`] | 403 (or the rule's status), the redirect |
//! | headers the edge owns removed | [`owned`] | 400 for two `Authorization` |
//! | bot check | [`bots`] | 403 |
//! | CORS | [`cors`] | the preflight's 204, or 403 |
//! | redirects, then rewrites | [`routing`] | the redirect |
//! | JWT | [`jwt`] | 401 |
//! | rate limits | [`rate_limit`] | 429 |
//! | A/B assignment | [`ab`] | never |
//! | request headers, response templates | [`headers`] | never |
//! | Accept-Encoding negotiated (then the response compressed) | [`compress`] | never |
//! | cache lookup (and fill) | [`cache`] | a stored response |
//! | Python middleware, then a Python route | [`python`] | the handler's response, 405 |
//! | proxy to the origin | [`proxy`] | the origin's response, 404 without one |
//!
//! [`produce`] chains the last two for the cache phase and for uncached requests.

pub mod ab;
pub mod access;
pub mod bots;
pub mod cache;
pub mod canonical;
pub mod client;
pub mod compress;
pub mod cors;
pub mod front;
pub mod headers;
pub mod jwt;
pub mod owned;
pub mod produce;
pub mod proxy;
pub mod python;
pub mod rate_limit;
pub mod request_id;
pub mod routing;

#[cfg(test)]
pub(crate) mod testing;
