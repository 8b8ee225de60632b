//! Origins: parsing an origin URL, forwarding a request to it over a pooled keep-alive
//! connection, and the fields the edge changes on the way.
//!
//! - [`origin`]: an origin URL of the plan, parsed once.
//! - [`balance`]: several targets behind one name: their health, ejection, retry budget and
//!   circuit breaking.
//! - [`choose`]: the balancing policies (round robin, least_conn, random_two, hashing).
//! - [`checks`]: active health checks.
//! - [`forwarding`]: hop-by-hop fields, `X-Forwarded-*`, `Via`, the origin-form target.
//! - [`pool`]: the idle connections to one origin, per worker thread.
//! - [`client`]: checking a connection out (or dialling one) and sending the request.

pub mod balance;
pub mod checks;
pub mod choose;
pub mod client;
pub mod forwarding;
pub mod origin;
pub mod pool;

pub use balance::{Busy, HealthCheck, OriginSet, Overflow, SetHealth, SetPolicy};
pub use choose::{Balance, HashKey};
pub use client::Upstreams;
pub use origin::Origin;
pub use pool::{OriginBody, OriginPool, SendBody};
