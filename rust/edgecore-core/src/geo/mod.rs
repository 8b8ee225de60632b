//! Knowing where a client is: the client IP behind trusted proxies ([`client_ip`]) and geo-IP
//! lookups in MaxMind databases ([`db`]). [`Geo`] is the record the pipeline attaches to a request.

pub mod client_ip;
pub mod db;
mod record;

pub use client_ip::{client_ip, TrustedProxies};
pub use db::{GeoDb, MmdbValue};
pub use record::Geo;
