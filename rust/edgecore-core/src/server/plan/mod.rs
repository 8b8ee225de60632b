//! The plan: the application's configuration compiled once into immutable Rust values.
//!
//! The Python `Edge` object describes the app as a JSON-compatible spec ([`super::spec`]) plus
//! the objects it built with the library API (JWT verifiers, rate limiters, a geo database, bot
//! patterns). Building the plan ([`build`]) validates everything (a bad pattern, template, URL or
//! experiment fails there, at start-up, with a `Config` error) so that serving a request never
//! parses or validates configuration, and never touches Python unless a Python handler matched.
//! Runtime objects (origin connection pools, the purge subscription) live in the server state,
//! not here; the response caches are the one exception, carried across reloads by identity.
//!
//! - [`build`]: `Plan::build`, one `build_*` per policy.
//! - [`edge`]: access lists, HTTPS only, CORS and request IDs.
//! - [`report`]: warnings about rules that can never apply, and the start-up summary.
//! - `upstreams`: origin URLs and `upstream:NAME` resolved to sets of targets.

pub mod build;
pub mod edge;
pub mod report;
pub mod rules;
pub(crate) mod upstreams;

pub use build::check_settings;
pub use rules::{
    AbRule, BotPolicy, CacheRule, HeaderRule, JwtRule, LimitKey, Middleware, OriginRule, Plan, RateRule, Redirect,
    RequestPolicy, Rewrite, Route, Timeouts, VerifiedToken,
};
